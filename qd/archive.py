"""The novelty archive: an unbounded, append-only store of individuals and their descriptors.

As in SERENE (qd.md §1.4), there is no novelty threshold and duplicates are allowed; the archive
only ever grows by a few individuals per generation, so its descriptors live in an incremental
`kernels.knn.NoveltyIndex` that is never rebuilt from scratch.
"""

from __future__ import annotations

import numpy as np

from kernels.knn import NoveltyIndex

FIELDS = ("genome", "descriptor", "gt", "reward", "reward_area", "generation")


class NoveltyArchive:
    """Structure-of-arrays storage with amortised growth, plus the kNN index."""

    def __init__(self, genome_size: int, descriptor_dim: int, gt_dim: int) -> None:
        self._shapes = {
            "genome": (genome_size,),
            "descriptor": (descriptor_dim,),
            "gt": (gt_dim,),
            "reward": (),
            "reward_area": (),
            "generation": (),
        }
        dtypes = {"reward_area": np.int64, "generation": np.int64}
        self._data = {
            k: np.empty((64, *s), dtype=dtypes.get(k, np.float64)) for k, s in self._shapes.items()
        }
        self._size = 0
        self.index = NoveltyIndex(descriptor_dim)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name][: self._size]

    def add(self, **columns: np.ndarray) -> None:
        """Append rows; every field of `FIELDS` must be given with the same length."""
        if set(columns) != set(FIELDS):
            raise ValueError(
                f"archive rows need exactly the fields {FIELDS}, got {sorted(columns)}"
            )
        n = len(columns["genome"])
        for name, values in columns.items():
            values = np.asarray(values)
            if values.shape != (n, *self._shapes[name]):
                raise ValueError(
                    f"archive field {name!r}: expected shape {(n, *self._shapes[name])}, "
                    f"got {values.shape}"
                )
        if not np.all(np.isfinite(columns["descriptor"])):
            raise ValueError("archive: NaN or inf in the descriptors of the rows to add")
        need = self._size + n
        capacity = len(self._data["genome"])
        if need > capacity:
            new_cap = max(need, 2 * capacity)
            for name, arr in self._data.items():
                grown = np.empty((new_cap, *arr.shape[1:]), dtype=arr.dtype)
                grown[: self._size] = arr[: self._size]
                self._data[name] = grown
        for name, values in columns.items():
            self._data[name][self._size : need] = values
        self._size = need
        self.index.add(np.asarray(columns["descriptor"], dtype=np.float64))

    def __getstate__(self) -> dict:
        # Only the rows, and how many of them the index holds in its static structure: the
        # index is rebuilt on load with the same split, since a k-d tree's distances differ
        # from the brute-force buffer's in the last bits (a resumed run must match exactly).
        return {
            "shapes": self._shapes,
            "rows": {k: self[k].copy() for k in FIELDS},
            "index_bulk": self.index.bulk,
        }

    def __setstate__(self, state: dict) -> None:
        shapes, rows = state["shapes"], state["rows"]
        self.__init__(shapes["genome"][0], shapes["descriptor"][0], shapes["gt"][0])
        # Older checkpoints: every row in the static structure, as they were restored then.
        bulk = int(state.get("index_bulk", len(rows["genome"])))
        if bulk:
            self.add(**{k: v[:bulk] for k, v in rows.items()})
        self.index.settle()
        if len(rows["genome"]) > bulk:
            self.add(**{k: v[bulk:] for k, v in rows.items()})
