"""Atari frames for TOV-VICReg: collection with ale-py, compressed shards, a memory-mapped loader.

The DQN Replay Dataset cannot be downloaded here, so we collect our own (world_models.md §2.4):

- Environment: ``ALE/<Game>-v5`` (sticky actions 0.25, minimal action set) with gymnasium's
  ``AtariPreprocessing`` (frame skip 4 with max-pooling, up to 30 no-op starts, 84x84 grayscale
  through opencv), episodes capped at 27 000 agent steps (108 k emulator frames).
- Behaviour: uniform random actions, or a trained label policy (a Stable-Baselines3 PPO zip, run
  on the last 4 frames) with probability ``1 - random_fraction`` per step. When a label policy is
  given, its greedy action is recorded for *every* frame (``labels``), whoever acted: these are
  the targets of the action probe. Without one, ``labels`` are -1.
- One shard = one collection item: ``frames`` consecutive agent steps of one game from a fresh
  reset (episodes are cut at the shard end), written as a compressed ``.npz`` holding
  ``frames`` (N, 84, 84) uint8, ``actions`` int16, ``labels`` int16, ``rewards`` float32,
  ``episode`` int32 (episode id within the shard, contiguous runs) and ``ram`` (N, 128) uint8
  (the emulator RAM when the frame was shown, for AtariARI-style probes). Frame i is the
  observation on which action i was chosen; reward i follows it. ``manifest.json`` lists the
  shards with their game, sizes, seeds and SHA-256.

Loading (`FrameDataset`): each shard is checked against its SHA-256 and unpacked once into
uncompressed ``.npy`` files under ``<root>/cache/`` (again when the manifest names another
SHA-256), which are opened memory-mapped, so the set is never held in RAM. A truncated or
corrupt shard is skipped with a warning naming it.

Sampling: a sample at frame t is o_t = frames [t, t+3), o_{t-3} = [t-3, t) and
o_{t+3} = [t+3, t+6), three non-overlapping 3-frame stacks. Unlike the original loader (which
ignores episode boundaries and clamps at the file's ends), only t whose nine frames [t-3, t+6)
lie in one episode are sampled: neighbours never come from another episode.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
FRAME_SIZE = 84
RAM_SIZE = 128
STACK = 3
GAP = 3
# The ten pretraining games of the paper, and the three of the CPU scale.
PAPER_GAMES = (
    "Alien",
    "Assault",
    "BankHeist",
    "Breakout",
    "ChopperCommand",
    "Freeway",
    "Frostbite",
    "Kangaroo",
    "MsPacman",
    "Pong",
)
CPU_GAMES = ("Pong", "Breakout", "MsPacman")
SHARD_ARRAYS = ("frames", "actions", "labels", "rewards", "episode", "ram")
MAX_EPISODE_STEPS = 27_000


def env_id(game: str) -> str:
    return f"ALE/{game}-v5"


def check_game(game: str) -> str:
    """The gymnasium id of ``game``; a clear error when ale-py does not know it."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    if env_id(game) not in gym.registry:
        raise ValueError(
            f"unknown Atari game {game!r}: ale-py has no {env_id(game)!r} (names are CamelCase, "
            f"e.g. {', '.join(CPU_GAMES)})"
        )
    return env_id(game)


def make_atari_env(game: str, max_episode_steps: int = MAX_EPISODE_STEPS):
    """``ALE/<game>-v5`` + AtariPreprocessing (84x84 grayscale, frame skip 4, no-op starts)."""
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, TimeLimit

    env = gym.make(check_game(game), frameskip=1)
    env = AtariPreprocessing(
        env, noop_max=30, frame_skip=4, screen_size=FRAME_SIZE, grayscale_obs=True
    )
    return TimeLimit(env, max_episode_steps=max_episode_steps)


@functools.lru_cache(maxsize=4)
def _worker_env(game: str, max_episode_steps: int):
    # One environment per game per worker process; items reset it with their own seed.
    return make_atari_env(game, max_episode_steps)


@functools.lru_cache(maxsize=4)
def _worker_policy(path: str):
    from stable_baselines3 import PPO

    return PPO.load(path, device="cpu")


@dataclass(frozen=True)
class ShardItem:
    """One collection task: ``frames`` agent steps of ``game`` written to ``path``."""

    game: str
    seed: int
    frames: int
    path: str
    random_fraction: float = 1.0
    policy_path: str | None = None
    max_episode_steps: int = MAX_EPISODE_STEPS


def collect_shard(item: ShardItem) -> dict:
    """Play, write the shard (temporary file, then rename) and return its manifest entry."""
    if item.frames < 1:
        raise ValueError(f"shard {item.path}: frames must be >= 1, got {item.frames}")
    env = _worker_env(item.game, item.max_episode_steps)
    policy = _worker_policy(item.policy_path) if item.policy_path else None
    rng = np.random.default_rng(item.seed)
    n = item.frames
    out = {
        "frames": np.empty((n, FRAME_SIZE, FRAME_SIZE), np.uint8),
        "actions": np.empty(n, np.int16),
        "labels": np.full(n, -1, np.int16),
        "rewards": np.empty(n, np.float32),
        "episode": np.empty(n, np.int32),
        "ram": np.empty((n, RAM_SIZE), np.uint8),
    }
    n_actions = int(env.action_space.n)
    if policy is not None:
        _check_policy(policy, item.policy_path, item.game, n_actions)
    ale = env.unwrapped.ale
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    history: deque = deque([obs] * 4, maxlen=4)
    episode = 0
    for i in range(n):
        out["frames"][i] = obs
        out["ram"][i] = ale.getRAM()
        out["episode"][i] = episode
        action = int(rng.integers(n_actions))
        if policy is not None:
            greedy, _ = policy.predict(np.stack(history), deterministic=True)
            out["labels"][i] = int(greedy)
            if rng.random() >= item.random_fraction:
                action = int(greedy)
        out["actions"][i] = action
        obs, reward, terminated, truncated, _ = env.step(action)
        out["rewards"][i] = reward
        if terminated or truncated:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            history.extend([obs] * 4)
            episode += 1
        else:
            history.append(obs)
    entry = write_shard(item.path, out)
    entry.update(
        game=item.game,
        n_actions=n_actions,
        seed=item.seed,
        random_fraction=item.random_fraction,
        policy=Path(item.policy_path).name if item.policy_path else "random",
    )
    return entry


def _check_policy(policy, path: str, game: str, n_actions: int) -> None:
    """A label policy must read this collection's frames and choose among ``game``'s actions:
    one made for another game (another action count) would label frames with actions the probe
    does not know, or, acting, step the game with them."""
    want = (4, FRAME_SIZE, FRAME_SIZE)
    shape = tuple(policy.observation_space.shape)
    n = getattr(policy.action_space, "n", None)
    if shape != want or n is None or int(n) != n_actions:
        raise ValueError(
            f"label policy {path}: observations {shape}, actions {policy.action_space}; "
            f"{env_id(game)} gives {want} (4 stacked frames, channel-first) and has "
            f"{n_actions} actions"
        )


def write_shard(path: str | Path, arrays: dict[str, np.ndarray]) -> dict:
    """Write one compressed shard (temporary file, then rename); returns the manifest fields
    ``file``, ``frames``, ``episodes`` and ``sha256``."""
    missing = sorted(set(SHARD_ARRAYS) - set(arrays))
    if missing:
        raise ValueError(f"shard {path}: missing arrays {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **{k: arrays[k] for k in SHARD_ARRAYS})
    os.replace(tmp, path)
    return {
        "file": path.name,
        "frames": len(arrays["frames"]),
        "episodes": len(np.unique(arrays["episode"])),
        "sha256": file_sha256(path),
    }


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_items(
    root: str | Path,
    games: tuple[str, ...],
    frames_per_game: int,
    shard_frames: int,
    seed_seq: np.random.SeedSequence,
    random_fraction: float = 1.0,
    policies: dict[str, str] | None = None,
) -> list[ShardItem]:
    """The collection items for ``games``: ceil(frames_per_game / shard_frames) shards each,
    seeds spawned from ``seed_seq``."""
    if frames_per_game < 1 or shard_frames < 1:
        raise ValueError("frames_per_game and shard_frames must be >= 1")
    repeated = sorted({g for g in games if games.count(g) > 1})
    if repeated:
        # Their shards would share file names: the second set overwrites the first.
        raise ValueError(f"games {repeated} are named more than once")
    for game in games:
        check_game(game)
    # Absolute (shards and policies): Ray workers need not share the driver's working directory.
    root = Path(root).resolve()
    items = []
    for game in games:
        sizes = [shard_frames] * (frames_per_game // shard_frames)
        if frames_per_game % shard_frames:
            sizes.append(frames_per_game % shard_frames)
        seeds = seed_seq.spawn(len(sizes))
        policy = (policies or {}).get(game)
        policy = str(Path(policy).resolve()) if policy else None
        for k, (size, s) in enumerate(zip(sizes, seeds, strict=True)):
            items.append(
                ShardItem(
                    game=game,
                    seed=int(s.generate_state(1)[0]),
                    frames=size,
                    path=str(root / f"{game}-{k:04d}.npz"),
                    random_fraction=random_fraction if policy else 1.0,
                    policy_path=policy,
                )
            )
    return items


def collect_frames(
    root: str | Path, items: list[ShardItem], executor, collection: dict | None = None
) -> Path:
    """Run the items through ``executor`` and write the manifest (with ``collection``, what
    identifies this set); returns its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = executor.map(collect_shard, items)
    return write_manifest(root, entries, collection)


def write_manifest(root: str | Path, entries: list[dict], collection: dict | None = None) -> Path:
    """``manifest.json`` listing ``entries`` (each with at least the `write_shard` fields and
    ``game``)."""
    root = Path(root)
    manifest = {
        "version": MANIFEST_VERSION,
        "frame_shape": [FRAME_SIZE, FRAME_SIZE],
        "collection": collection or {},
        "shards": entries,
    }
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, root / MANIFEST)
    return root / MANIFEST


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no frame manifest (collect frames first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt manifest ({exc})") from None
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {manifest.get('version')!r} is not supported")
    return manifest


class CorruptShardError(ValueError):
    pass


def _unpacked(target: Path, sha256: str | None) -> bool:
    try:
        return (target / "done").read_text() == sha256
    except OSError:
        return False


def _unpack(shard: Path, entry: dict, cache: Path, frame_size: int) -> Path:
    """Check and unpack one shard into ``cache/<stem>/`` (once); returns that folder. The
    ``done`` marker holds the shard's SHA-256: a cache of another collection in the same folder
    (same shard names) is unpacked again, not reused.

    Several processes may load one folder at once (two runs sharing ``data.dir``, the probes
    beside a run): a lock file per shard lets one unpack it while the others wait, then use its
    copy."""
    target = cache / shard.stem
    if _unpacked(target, entry.get("sha256")):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{shard.stem}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _unpacked(target, entry.get("sha256")):
            return target  # unpacked by another process while this one waited
        arrays = _check_shard(shard, entry, frame_size)
        tmp = Path(tempfile.mkdtemp(prefix=f".{shard.stem}.", suffix=".tmp", dir=cache))
        try:
            for k, a in arrays.items():
                np.save(tmp / f"{k}.npy", a)
            (tmp / "done").write_text(entry["sha256"])
            shutil.rmtree(target, ignore_errors=True)  # a stale cache of another collection
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_shard(shard: Path, entry: dict, frame_size: int) -> dict[str, np.ndarray]:
    """The arrays of ``shard``, checked against its manifest ``entry``."""
    if not shard.is_file():
        raise CorruptShardError("file missing")
    if file_sha256(shard) != entry.get("sha256"):
        raise CorruptShardError("SHA-256 does not match the manifest (truncated or altered)")
    try:
        with np.load(shard) as data:
            arrays = {k: data[k] for k in SHARD_ARRAYS}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise CorruptShardError(f"unreadable ({type(exc).__name__}: {exc})") from None
    n = len(arrays["frames"])
    if arrays["frames"].shape[1:] != (frame_size, frame_size):
        raise ValueError(
            f"shard {shard}: frames of shape {arrays['frames'].shape[1:]}, "
            f"expected ({frame_size}, {frame_size})"
        )
    if any(len(a) != n for a in arrays.values()) or n != entry.get("frames"):
        raise CorruptShardError("array lengths disagree with each other or with the manifest")
    return arrays


class FrameDataset:
    """Memory-mapped view of a collected frame set (see module docstring).

    Global frame index = position in the concatenation of the loaded shards, in manifest order.
    ``triplet_starts`` are the t with [t-3, t+6) inside one episode; ``stack_starts`` the t with
    [t, t+3) inside one episode (probes).
    """

    def __init__(
        self, root: str | Path, games: tuple[str, ...] | None = None, frame_size: int = FRAME_SIZE
    ) -> None:
        self.root = Path(root)
        manifest = read_manifest(self.root)
        if games is not None:
            present = {e["game"] for e in manifest["shards"]}
            absent = [g for g in games if g not in present]
            if absent:
                # A misspelt or uncollected game would otherwise be left out without a word.
                raise ValueError(
                    f"{self.root}: no shard of games {absent} in the manifest "
                    f"(it holds {sorted(present)})"
                )
        cache = self.root / "cache"
        self.shards: list[dict] = []
        self.arrays: list[dict[str, np.ndarray]] = []
        self.skipped: list[str] = []
        for entry in manifest["shards"]:
            if games is not None and entry["game"] not in games:
                continue
            shard = self.root / entry["file"]
            try:
                folder = _unpack(shard, entry, cache, frame_size)
            except CorruptShardError as exc:
                warnings.warn(f"skipping shard {shard}: {exc}", stacklevel=2)
                self.skipped.append(str(shard))
                continue
            self.shards.append(entry)
            self.arrays.append(
                {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in SHARD_ARRAYS}
            )
        if not self.shards:
            raise ValueError(f"{self.root}: no readable shard for games {games or 'any'}")
        self.games = tuple(dict.fromkeys(e["game"] for e in self.shards))
        sizes = np.array([e["frames"] for e in self.shards])
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.n_frames = int(self.offsets[-1])
        self.shard_game = np.array([self.games.index(e["game"]) for e in self.shards])
        self.triplet_starts = self._starts(GAP, STACK + GAP)
        self.stack_starts = self._starts(0, STACK)

    def __len__(self) -> int:
        return self.n_frames

    def _starts(self, before: int, after: int) -> np.ndarray:
        """Global t with frames [t - before, t + after) in one episode of one shard."""
        out = []
        for k, a in enumerate(self.arrays):
            ep = np.asarray(a["episode"])
            n = len(ep)
            t = np.arange(before, n - after + 1)
            ok = ep[t - before] == ep[t + after - 1]
            out.append(t[ok] + self.offsets[k])
        return np.concatenate(out).astype(np.int64)

    def _locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shard = np.searchsorted(self.offsets, index, side="right") - 1
        return shard, index - self.offsets[shard]

    def gather(self, name: str, index: np.ndarray) -> np.ndarray:
        """``name`` (one of the shard arrays) at global frame indices of any shape."""
        index = np.asarray(index, dtype=np.int64)
        flat = index.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= self.n_frames):
            raise IndexError(f"frame index out of range [0, {self.n_frames})")
        shard, local = self._locate(flat)
        first = self.arrays[0][name]
        out = np.empty((len(flat), *first.shape[1:]), first.dtype)
        for k in np.unique(shard):
            mask = shard == k
            local_k = local[mask]
            # Sorted reads from the memory map, then scattered back into place.
            order = np.argsort(local_k, kind="stable")
            out[np.flatnonzero(mask)[order]] = self.arrays[k][name][local_k[order]]
        return out.reshape(*index.shape, *first.shape[1:])

    def stacks(self, starts: np.ndarray) -> np.ndarray:
        """(B, 3, 84, 84) uint8 stacks of frames [t, t+3) for each start t."""
        starts = np.asarray(starts, dtype=np.int64)
        return self.gather("frames", starts[:, None] + np.arange(STACK))

    def triplets(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(o_t, o_{t-3}, o_{t+3}) for each t of ``triplet_starts``."""
        starts = np.asarray(starts, dtype=np.int64)
        return self.stacks(starts), self.stacks(starts - GAP), self.stacks(starts + GAP)

    def game_of(self, index: np.ndarray) -> np.ndarray:
        return self.shard_game[self._locate(np.asarray(index, dtype=np.int64))[0]]

    def describe(self) -> dict:
        return {
            "frames": self.n_frames,
            "games": list(self.games),
            "shards": len(self.shards),
            "skipped": len(self.skipped),
            "triplets": len(self.triplet_starts),
        }


def dataset_summary(root: str | Path) -> str:
    """One line per game: frames, episodes, shards (for the CLI and logs)."""
    manifest = read_manifest(root)
    per: dict[str, list[int]] = {}
    for e in manifest["shards"]:
        acc = per.setdefault(e["game"], [0, 0, 0])
        acc[0] += e["frames"]
        acc[1] += e["episodes"]
        acc[2] += 1
    return "\n".join(f"{g}: {f} frames, {ep} episodes, {s} shards" for g, (f, ep, s) in per.items())
