from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.observations import hardmaze_frames
from qd.autoencoder import AutoEncoder, ConvAE, check_frames


def maze_frames(n, seed, size=32):
    rng = np.random.default_rng(seed)
    return hardmaze_frames(rng.uniform(30, 570, (n, 2)), size)


@pytest.mark.parametrize("kind", ["taxons", "stax"])
@pytest.mark.parametrize("size", [32, 64])
def test_shapes(kind, size):
    ae = AutoEncoder(kind, latent=10, frame_size=size, seed=0)
    frames = maze_frames(5, 0, size)
    z, s = ae.encode(frames)
    assert z.shape == (5, 10) and s.shape == (5,)
    assert np.all(np.isfinite(z)) and np.all(s > 0)
    _, y = ae.model(torch.zeros(2, 3, size, size))
    assert y.shape == (2, 3, size, size)
    assert ae.reconstruct(frames).shape == frames.shape
    # k frames per individual: latents concatenated, surprises summed.
    multi = np.stack([frames, frames[::-1]], axis=1)
    zm, sm = ae.encode(multi)
    assert zm.shape == (5, 20)
    np.testing.assert_allclose(zm[:, :10], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sm, s + s[::-1], rtol=1e-5)


@pytest.mark.parametrize("kind", ["taxons", "stax"])
def test_descriptors_and_channels_last_agree_with_encode(kind):
    frames = maze_frames(7, 1)
    ae = AutoEncoder(kind, frame_size=32, seed=2, inference_batch=3)
    ae.train_epochs(frames, 1, 4)  # BatchNorm statistics away from their initial values
    z, _ = ae.encode(frames)
    np.testing.assert_array_equal(ae.descriptors(frames), z)
    multi = np.stack([frames, frames[::-1]], axis=1)
    np.testing.assert_array_equal(ae.descriptors(multi), ae.encode(multi)[0])
    cl = AutoEncoder(kind, frame_size=32, seed=2, deterministic=False, channels_last=True)
    cl.load_state_dict(ae.state_dict())
    assert cl.model.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    zc, sc = cl.encode(frames)
    np.testing.assert_allclose(zc, z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sc, ae.encode(frames)[1], rtol=1e-4)
    np.testing.assert_allclose(cl.descriptors(frames), zc, rtol=1e-6, atol=1e-7)


def test_thread_count_is_reasserted_on_every_call():
    # Numba's OpenMP layer (kernels.knn) resets libgomp's count, which is torch's too.
    before = torch.get_num_threads()
    try:
        ae = AutoEncoder("stax", frame_size=32, seed=0, threads=1)
        torch.set_num_threads(3)
        ae.descriptors(maze_frames(2, 0))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        ae.train_epochs(maze_frames(4, 0), 1, 2)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            AutoEncoder("stax", frame_size=32, threads=-1)
    finally:
        torch.set_num_threads(before)


def test_batchnorm_only_in_the_taxons_variant():
    def has_bn(kind):
        return any(isinstance(m, torch.nn.BatchNorm2d) for m in ConvAE(kind).modules())

    assert has_bn("taxons") and not has_bn("stax")


def test_seeded_initialisation_leaves_global_state_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = AutoEncoder("stax", seed=5), AutoEncoder("stax", seed=5)
    assert torch.equal(torch.rand(1), before)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    c = AutoEncoder("stax", seed=6)
    assert not torch.equal(next(a.model.parameters()), next(c.model.parameters()))


# TAXONS's architecture at 32x32 plateaus near the constant-image loss (a third of its ReLU
# outputs die early); at its native 64x64 it overfits, so it is tested there.
@pytest.mark.parametrize("kind,size,epochs", [("stax", 32, 80), ("taxons", 64, 200)])
def test_overfits_a_handful_of_frames(kind, size, epochs):
    torch.set_num_threads(1)
    frames = maze_frames(6, 1, size)
    ae = AutoEncoder(kind, frame_size=size, seed=0)
    before = ae.encode(frames)[1].mean()
    report = ae.train_epochs(frames, epochs=epochs, batch_size=6)
    after = ae.encode(frames)[1].mean()
    assert report.epochs == epochs and not report.recovered
    assert after < before / 10


def test_surprise_ranks_unseen_frames_above_seen_ones():
    torch.set_num_threads(1)
    seen = hardmaze_frames(np.column_stack([np.linspace(400, 560, 8), np.full(8, 500.0)]), 32)
    unseen = hardmaze_frames(np.array([[80.0, 60.0]]), 32)
    ae = AutoEncoder("stax", frame_size=32, seed=0)
    ae.train_epochs(seen, epochs=120, batch_size=8)
    s_seen = ae.encode(seen)[1]
    s_unseen = ae.encode(unseen)[1]
    assert s_unseen[0] > s_seen.max()


def test_non_finite_loss_restores_the_weights():
    frames = maze_frames(4, 2)
    ae = AutoEncoder("stax", frame_size=32, seed=0)
    ae.train_epochs(frames, epochs=1, batch_size=4)
    before = {k: v.clone() for k, v in ae.model.state_dict().items()}
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 2 else output

    handle = ae.model.decoder.register_forward_hook(poison)
    report = ae.train_epochs(frames, epochs=5, batch_size=2)
    handle.remove()
    assert report.recovered and report.epochs == 1  # the poison strikes in epoch 2
    for k, v in ae.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert np.all(np.isfinite(ae.encode(frames)[0]))


def test_state_dict_resumes_training_exactly():
    frames = maze_frames(10, 3)
    a = AutoEncoder("taxons", frame_size=32, seed=1)
    a.train_epochs(frames, epochs=1, batch_size=4)
    b = AutoEncoder("taxons", frame_size=32, seed=99)
    b.load_state_dict(a.state_dict())
    ra = a.train_epochs(frames, epochs=2, batch_size=4)
    rb = b.train_epochs(frames, epochs=2, batch_size=4)
    assert ra.train_loss == rb.train_loss
    np.testing.assert_array_equal(a.encode(frames)[0], b.encode(frames)[0])
    with pytest.raises(ValueError, match="latent"):
        AutoEncoder("taxons", latent=4, frame_size=32).load_state_dict(a.state_dict())


def test_early_stopping_schedule():
    frames = maze_frames(20, 4)
    ae = AutoEncoder("stax", frame_size=32, seed=0)
    report = ae.train_early_stopping(frames, max_epochs=6, batch_size=8, validation=0.2)
    assert 1 <= report.epochs <= 6
    assert len(report.val_loss) == report.epochs and report.samples == 20
    with pytest.raises(ValueError, match="validation"):
        ae.train_early_stopping(frames, validation=1.5)


def test_early_stopping_split_keeps_a_frame_to_train_on():
    # 0.8 of 2 frames rounds to both: the split must still leave one to train on.
    ae = AutoEncoder("stax", latent=4, frame_size=32, seed=0)
    report = ae.train_early_stopping(maze_frames(2, 5), max_epochs=2, batch_size=8, validation=0.8)
    assert report.epochs == 2 and all(np.isfinite(report.train_loss))


def test_bad_frames_are_named():
    with pytest.raises(ValueError, match="shape"):
        check_frames(np.zeros((2, 3, 64, 64), np.uint8), 32)
    with pytest.raises(ValueError, match="uint8"):
        check_frames(np.zeros((2, 3, 32, 32)), 32)
    with pytest.raises(ValueError, match="kind"):
        ConvAE("vae")
    with pytest.raises(ValueError, match="CUDA"):
        if torch.cuda.is_available():
            raise ValueError("CUDA present: nothing to check")
        AutoEncoder(device="cuda")


def test_tensor_swap_order_is_what_numpy_shuffle_does_to_a_torch_tensor():
    """The original's quirk, replayed: numpy's shuffle swaps rows ``x[i], x[j] = x[j], x[i]``
    for i = n-1..1 with j uniform on 0..i; on a torch tensor both sides are views, so x[i]
    becomes a copy of row j and row j stays. ``epoch_order`` must give that very result for
    its own draws of j."""
    ae = AutoEncoder("taxons", frame_size=32, seed=5)
    n = 500
    order = ae.epoch_order(n, "tensor_swap")
    assert order[0] == 0 and np.all(order <= np.arange(n)) and np.all(order >= 0)
    x = torch.arange(n).unsqueeze(1).repeat(1, 3)
    for i in range(n - 1, 0, -1):
        j = int(order[i])
        x[i], x[j] = x[j], x[i]
    np.testing.assert_array_equal(x[:, 0].numpy(), order)
    np.testing.assert_array_equal(x[:, 2].numpy(), order)
    # Row m survives with probability 1 - m/n: (n + 1) / 2 distinct rows expected, and the
    # last tenth of the rows (where the archive's frames sit) keeps about 5 % of its share.
    orders = np.stack([ae.epoch_order(n, "tensor_swap") for _ in range(200)])
    distinct = np.mean([len(np.unique(o)) for o in orders])
    assert distinct == pytest.approx((n + 1) / 2, rel=0.02)
    assert np.mean(orders >= 0.9 * n) == pytest.approx(0.1 * 0.053, rel=0.1)
    perm = ae.epoch_order(n)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    with pytest.raises(ValueError, match="shuffle must be one of"):
        ae.train_epochs(maze_frames(4, 0), epochs=1, shuffle="numpy")


def test_deterministic_mode_keeps_cudnn_on_with_deterministic_kernels():
    """``deterministic=True`` must restrict cuDNN to deterministic kernels, not switch it off
    (``torch.backends.cudnn.flags`` defaults ``enabled`` to False), and restore the flags."""
    cudnn = torch.backends.cudnn
    before = (cudnn.enabled, cudnn.deterministic, cudnn.benchmark)
    ae = AutoEncoder("stax", frame_size=32, seed=0, deterministic=True)
    seen = []
    ae.model.encoder.register_forward_hook(
        lambda *_: seen.append((cudnn.enabled, cudnn.deterministic, cudnn.benchmark))
    )
    frames = maze_frames(4, 0)
    ae.encode(frames)
    ae.train_epochs(frames, epochs=1, batch_size=4)
    assert seen and all(s == (before[0], True, False) for s in seen)
    assert (cudnn.enabled, cudnn.deterministic, cudnn.benchmark) == before


def test_early_stopping_validates_from_the_second_epoch():
    """The original validates from epoch 2 on: its loss is the first best, and the 4th
    consecutive increase after it stops the training, so a validation loss that rises every
    epoch stops it after 2 + 4 = 6 epochs (the first epoch's loss is no baseline)."""
    frames = maze_frames(20, 4)
    ae = AutoEncoder("stax", frame_size=32, seed=0)
    ae._epoch = lambda flat, batch_size, shuffle="permutation": 1.0
    rising = iter(np.arange(1.0, 100.0))
    ae._loss = lambda flat: float(next(rising))
    report = ae.train_early_stopping(frames, max_epochs=20, batch_size=8, patience=4)
    assert report.epochs == 6 and report.val_loss == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # A first epoch better than everything after it does not count against the second.
    ae = AutoEncoder("stax", frame_size=32, seed=0)
    ae._epoch = lambda flat, batch_size, shuffle="permutation": 1.0
    losses = iter([0.1, 5.0, 4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    ae._loss = lambda flat: next(losses)
    report = ae.train_early_stopping(frames, max_epochs=12, batch_size=8, patience=4)
    assert report.epochs == 10


def test_zero_frames_per_individual_is_named():
    with pytest.raises(ValueError, match="k >= 1"):
        AutoEncoder("stax", frame_size=32).encode(np.zeros((2, 0, 3, 32, 32), np.uint8))


def test_infinite_gradient_under_a_finite_loss_restores_the_weights():
    """One infinite gradient makes Adam's step NaN while the loss that produced it is finite;
    a training whose last step does that must not hand back NaN weights as a success."""
    frames = maze_frames(8, 5)
    ae = AutoEncoder("stax", frame_size=32, seed=0)
    before = {k: v.clone() for k, v in ae.model.state_dict().items()}
    handle = next(ae.model.parameters()).register_hook(lambda g: g * float("inf"))
    report = ae.train_epochs(frames, epochs=1, batch_size=8)
    handle.remove()
    assert report.recovered and report.epochs == 0
    for k, v in ae.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert np.all(np.isfinite(ae.encode(frames)[0]))
