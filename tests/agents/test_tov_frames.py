from __future__ import annotations

import json

import numpy as np
import pytest

from agents.frames import (
    FRAME_SIZE,
    FrameDataset,
    collect_frames,
    make_atari_env,
    read_manifest,
    shard_items,
    write_manifest,
    write_shard,
)
from experiments.executor import SerialExecutor


def synthetic_shard(n: int, episodes: list[int], first: int, size: int = FRAME_SIZE) -> dict:
    """Frame i is filled with the value ``first + i`` (mod 256), so stacks can be checked."""
    values = (first + np.arange(n)) % 256
    return {
        "frames": np.broadcast_to(values[:, None, None], (n, size, size)).astype(np.uint8),
        "actions": np.arange(n, dtype=np.int16) % 4,
        "labels": np.full(n, -1, np.int16),
        "rewards": np.zeros(n, np.float32),
        "episode": np.asarray(episodes, np.int32),
        "ram": np.tile(np.arange(128, dtype=np.uint8), (n, 1)),
    }


@pytest.fixture
def synthetic_root(tmp_path):
    entries = []
    for name, n, eps, first, game in (
        ("a", 20, [0] * 12 + [1] * 8, 0, "Pong"),
        ("b", 15, [0] * 15, 20, "Pong"),
        ("c", 10, [0] * 10, 35, "Breakout"),
    ):
        entry = write_shard(tmp_path / f"{name}.npz", synthetic_shard(n, eps, first))
        entries.append({**entry, "game": game})
    write_manifest(tmp_path, entries, {"what": "synthetic"})
    return tmp_path


def test_triplets_stay_inside_episodes(synthetic_root):
    ds = FrameDataset(synthetic_root)
    assert len(ds) == 45 and ds.games == ("Pong", "Breakout")
    # shard a: episode 0 has frames 0..11 -> t in 3..6; episode 1 (8 frames) is too short;
    # shard b (frames 20..34) -> t in 23..29; shard c (35..44) -> t in 38..39
    assert ds.triplet_starts.tolist() == [3, 4, 5, 6, *range(23, 30), 38, 39]
    o_t, prev, nxt = ds.triplets(ds.triplet_starts)
    t = ds.triplet_starts
    assert o_t.shape == (len(t), 3, 84, 84) and o_t.dtype == np.uint8
    np.testing.assert_array_equal(o_t[:, :, 0, 0], t[:, None] + np.arange(3))
    np.testing.assert_array_equal(prev[:, :, 0, 0], t[:, None] - 3 + np.arange(3))
    np.testing.assert_array_equal(nxt[:, :, 0, 0], t[:, None] + 3 + np.arange(3))
    # probe stacks: [t, t+3) in one episode
    assert 9 in ds.stack_starts and 10 not in ds.stack_starts and 12 in ds.stack_starts
    assert ds.game_of(np.array([0, 34, 35])).tolist() == [0, 0, 1]
    assert ds.gather("ram", np.array([[1, 40]])).shape == (1, 2, 128)
    # memory-mapped, not loaded
    assert all(isinstance(a["frames"], np.memmap) for a in ds.arrays)
    assert FrameDataset(synthetic_root, games=("Breakout",)).triplet_starts.tolist() == [3, 4]
    with pytest.raises(IndexError):
        ds.gather("frames", np.array([45]))


def test_games_absent_from_the_manifest_are_an_error(synthetic_root):
    # `python -m agents.probes DIR --games Pong Breakuot` used to probe Pong alone, silently.
    with pytest.raises(ValueError, match=r"no shard of games \['Breakuot'\] in the manifest"):
        FrameDataset(synthetic_root, games=("Pong", "Breakuot"))
    assert FrameDataset(synthetic_root, games=("Pong",)).games == ("Pong",)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_shard_is_skipped_with_a_warning(synthetic_root, damage):
    path = synthetic_root / "b.npz"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    with pytest.warns(UserWarning, match=r"skipping shard .*b\.npz"):
        ds = FrameDataset(synthetic_root)
    assert len(ds) == 30 and ds.skipped == [str(path)]
    assert ds.triplet_starts.tolist() == [3, 4, 5, 6, 23, 24]  # c now starts at 20


def test_cache_of_an_earlier_collection_is_not_reused(synthetic_root):
    assert FrameDataset(synthetic_root).n_frames == 45  # unpacks a, b, c into the cache
    # a new collection in the same folder, same shard names: b now has 25 other frames
    entries = read_manifest(synthetic_root)["shards"]
    entry = write_shard(synthetic_root / "b.npz", synthetic_shard(25, [0] * 25, 100))
    entries[1] = {**entry, "game": "Pong"}
    write_manifest(synthetic_root, entries)
    ds = FrameDataset(synthetic_root)
    assert len(ds) == 55 and [len(a["frames"]) for a in ds.arrays] == [20, 25, 10]
    np.testing.assert_array_equal(
        ds.gather("frames", np.arange(20, 45))[:, 0, 0], 100 + np.arange(25)
    )
    np.testing.assert_array_equal(
        ds.gather("frames", np.arange(45, 55))[:, 0, 0], 35 + np.arange(10)
    )


def test_frames_of_another_size_are_an_error(tmp_path):
    entry = write_shard(tmp_path / "small.npz", synthetic_shard(12, [0] * 12, 0, size=64))
    write_manifest(tmp_path, [{**entry, "game": "Pong"}])
    with pytest.raises(ValueError, match=r"small\.npz: frames of shape \(64, 64\)"):
        FrameDataset(tmp_path)


def test_bad_manifest_and_missing_arrays(tmp_path):
    with pytest.raises(FileNotFoundError, match="no frame manifest"):
        FrameDataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="missing arrays"):
        write_shard(tmp_path / "x.npz", {"frames": np.zeros((2, 84, 84), np.uint8)})


def test_unknown_game_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown Atari game 'Pongg'"):
        make_atari_env("Pongg")
    with pytest.raises(ValueError, match="unknown Atari game 'pong'"):
        shard_items(tmp_path, ("pong",), 10, 10, np.random.SeedSequence(0))


def test_a_game_named_twice_is_an_error(tmp_path):
    # Its second set of shards used to overwrite the first (same file names, other seeds): the
    # manifest then listed each file twice and half of them were skipped as altered.
    with pytest.raises(ValueError, match=r"games \['Pong'\] are named more than once"):
        shard_items(tmp_path, ("Pong", "Breakout", "Pong"), 20, 10, np.random.SeedSequence(0))


def test_shard_items_carry_absolute_paths(tmp_path, monkeypatch):
    # Ray workers need not share the driver's working directory: shards and label policies
    # named relative to it must reach them as absolute paths.
    monkeypatch.chdir(tmp_path)
    seq = np.random.SeedSequence(0)
    items = shard_items("data", ("Pong",), 20, 10, seq, 0.5, {"Pong": "policies/Pong.zip"})
    root = tmp_path.resolve()
    assert [i.path for i in items] == [str(root / "data" / f"Pong-{k:04d}.npz") for k in (0, 1)]
    assert [i.policy_path for i in items] == [str(root / "policies" / "Pong.zip")] * 2
    assert [i.random_fraction for i in items] == [0.5, 0.5]


def test_ale_collection_is_deterministic_and_respects_episodes(tmp_path):
    seq = np.random.SeedSequence(5)
    items = shard_items(tmp_path / "a", ("Pong", "Breakout"), 70, 40, seq)
    assert [(i.game, i.frames) for i in items] == [
        ("Pong", 40),
        ("Pong", 30),
        ("Breakout", 40),
        ("Breakout", 30),
    ]
    collect_frames(tmp_path / "a", items, SerialExecutor(), {"k": 1})
    manifest = read_manifest(tmp_path / "a")
    assert manifest["collection"] == {"k": 1}
    assert [s["frames"] for s in manifest["shards"]] == [40, 30, 40, 30]
    again = shard_items(tmp_path / "b", ("Pong", "Breakout"), 70, 40, np.random.SeedSequence(5))
    collect_frames(tmp_path / "b", again, SerialExecutor())
    sha = [s["sha256"] for s in read_manifest(tmp_path / "b")["shards"]]
    assert sha == [s["sha256"] for s in manifest["shards"]]
    ds = FrameDataset(tmp_path / "a")
    assert ds.n_frames == 140
    frames = ds.gather("frames", np.arange(140))
    assert frames.std() > 0  # real screens, not blanks
    ram = ds.gather("ram", np.arange(140))
    assert ram.shape == (140, 128) and len(np.unique(ram, axis=0)) > 10
    actions = ds.gather("actions", np.arange(40))
    assert actions.min() >= 0 and actions.max() < manifest["shards"][0]["n_actions"]


def test_collection_through_ray_matches_serial(tmp_path, ray_executor):
    items = shard_items(tmp_path / "s", ("Pong",), 60, 30, np.random.SeedSequence(9))
    collect_frames(tmp_path / "s", items, SerialExecutor())
    items = shard_items(tmp_path / "r", ("Pong",), 60, 30, np.random.SeedSequence(9))
    collect_frames(tmp_path / "r", items, ray_executor)
    serial = [s["sha256"] for s in read_manifest(tmp_path / "s")["shards"]]
    ray = [s["sha256"] for s in read_manifest(tmp_path / "r")["shards"]]
    assert serial == ray


def _load_in_child(root, queue, start, finish, first):
    """Load ``root`` in a child process; ``first`` stalls after its first array is written until
    the other child has finished (or 1 s has passed: it may be waiting for this one)."""
    import agents.frames as frames

    if first:
        save = frames.np.save

        def stalled_save(path, array):
            save(path, array)
            if not start.is_set():
                start.set()
                finish.wait(timeout=1.0)

        frames.np.save = stalled_save
    else:
        start.wait(timeout=30)
    try:
        ds = FrameDataset(root)
        queue.put((first, int(ds.gather("frames", np.arange(ds.n_frames))[:, 0, 0].sum())))
    except Exception as exc:  # reported to the parent, which asserts there is none
        queue.put((first, f"{type(exc).__name__}: {exc}"))
    finally:
        if not first:
            finish.set()


def test_two_processes_unpacking_one_cache_both_load_it(synthetic_root):
    # Two runs sharing data.dir (README) unpack the same fresh cache at once: the second used to
    # delete the first's half-written copy (FileNotFoundError) or map a file being written.
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue, start, finish = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=_load_in_child, args=(synthetic_root, queue, start, finish, first))
        for first in (True, False)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    expected = int(np.arange(45).sum())  # frame i holds the value i
    assert results == {True: expected, False: expected}
