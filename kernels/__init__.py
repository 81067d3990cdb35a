"""Numba kernels shared by every part of sparserl (DESIGN.md: ``cache=True``, fastmath only
where a reference allows it).

Numba's on-disk cache judges a cached function fresh by its own source file alone, but a kernel
compiled here carries the code and constants of the kernels it calls in other modules
(``raster.record_curling`` runs ``curling``'s physics on ``curling``'s state layout). After such
a module changed, Numba loaded the caller's stale machine code, which then read and wrote memory
by the old layout: heap corruption and crashes far from the cause. So every kernel's cache entry
is stamped with a digest of all the modules of this package as well, and any change here
recompiles them all on first use. The stamped locators go first in Numba's default locator
list (a user's ``NUMBA_CACHE_LOCATOR_CLASSES`` still replaces that list); functions outside
``kernels/`` keep Numba's own locators, and where the cache lives does not change. (Not through
Numba's ``config.CACHE_LOCATOR_CLASSES``: every compile after a change to any ``NUMBA_*``
environment variable reloads the config from the environment and would drop it.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core import caching

__all__ = ["source_digest"]

_HERE = Path(__file__).resolve().parent


def source_digest(folder: Path = _HERE) -> str:
    """SHA-256 over the names and contents of the ``*.py`` files of ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


_DIGEST = source_digest()


class _PackageStamp:
    """Locator mixin: serves only this package's files, stamped with the package's digest."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve().parent != _HERE:
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return (super().get_source_stamp(), _DIGEST)


class UserProvidedLocator(_PackageStamp, caching.UserProvidedCacheLocator):
    pass


class InTreeLocator(_PackageStamp, caching.InTreeCacheLocator):
    pass


class UserWideLocator(_PackageStamp, caching.UserWideCacheLocator):
    pass


# Numba's own order, each preceded by its package-stamped twin.
caching.CacheImpl._locator_classes = [
    UserProvidedLocator,
    caching.UserProvidedCacheLocator,
    InTreeLocator,
    caching.InTreeCacheLocator,
    UserWideLocator,
    caching.UserWideCacheLocator,
    caching.IPythonCacheLocator,
    caching.ZipCacheLocator,
]
