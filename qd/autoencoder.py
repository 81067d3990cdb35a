"""Convolutional autoencoders that learn behaviour spaces from frames (TAXONS, STAX).

Two architectures (qd.md §3.2 and §4.2), for square RGB frames of side S = 64 (or 32, an
option: every spatial size halves, the flattened sizes shrink by 4):

- ``"taxons"``: encoder Conv 3->32->128->128->64 (kernel 4, stride 2, padding 1), each
  followed by SELU then BatchNorm (64->32->16->8->4), flatten, Linear ->1024 ->256 ->latent with
  SELU after each (the latent too). Decoder Linear latent->256->512 (SELU), reshape 32x4x4,
  BatchNorm, ConvTranspose 32->64->32->32->3 each followed by SELU then BatchNorm, the last by
  ReLU. No layer has a bias. This is the original ``ConvAE``'s order (`core/metrics/ae.py` of
  GPaolo/taxons); qd.md §3.2 lists the layers without it, and an earlier version here put
  BatchNorm before SELU and gave the linear layers biases.
- ``"stax"``: encoder Conv 3->32->64->32->16 (bias, SELU), flatten, Linear ->latent, SELU; the
  decoder mirrors it (Linear latent->16x4x4, ConvTranspose 16->32->64->32->3, SELU between,
  ReLU output). No BatchNorm.

Conventions of ``AutoEncoder`` (the model, its Adam optimiser and its random stream):

- Input: uint8 frames ``(n, 3, S, S)``, or ``(n, k, 3, S, S)`` for k frames per individual;
  divided by 255. With k frames the descriptor concatenates the k latents (n, k * latent) and
  the surprise sums the k reconstruction errors (STAX, §4.3).
- Surprise = reconstruction error = per-frame mean squared error over C, H, W; the training loss
  is its batch mean (Adam, lr 1e-3).
- Inference runs in eval mode (BatchNorm uses its running statistics, so an individual's
  descriptor never depends on which other frames share its batch), under
  ``torch.inference_mode``, in batches of ``inference_batch``. ``descriptors`` runs the encoder
  only, for callers that have no use for the reconstruction (TAXONS's archive after training).
- Speed on the CPU (measured, see ``experiments.benchmarks.taxons``): inference batches of 64
  are about 1.4x faster than 512 (cache-sized activations). ``channels_last=True`` keeps weights
  and batches channels-last, about 1.2x faster training and 1.5x faster encoding with oneDNN,
  but it is off by default: oneDNN's channels-last kernels round differently on their first
  use in a process, and training amplifies it (in the TAXONS tests' small run, mean novelty
  moved by 0.6 % after two trainings), so two trainers in one process, or a run and its
  resumption, would disagree well beyond rounding.
- ``threads`` (> 0) is torch's intra-op thread count for every call of this object, set again
  whenever something else in the process changed it (0: leave torch alone).
- Randomness (weight initialisation, minibatch shuffling) comes from one ``torch.Generator``
  seeded by the caller and saved in ``state_dict``; nothing touches torch's global state.
  Training is on the CPU unless ``device`` names a GPU (``"auto"``: CUDA when present).
- ``deterministic=True`` (the default) keeps oneDNN out of the convolutions on the CPU (and
  cuDNN to deterministic kernels on a GPU): oneDNN picks kernels by the CPU's instruction set,
  so the same training rounds differently on a machine with other vector units (with oneDNN
  limited to SSE4.1 a TAXONS run parts from the default one in its first generation; in a new
  process on the same machine, resumed or not, it repeats bit for bit; BENCHMARKS.md,
  reproducibility). ATen's own vectorised loops also follow the instruction set
  (``ATEN_CPU_CAPABILITY``), with or without this. Measured cost on the CPU (64x64,
  batch 128, one thread): 2.8x the CPU time for training and 2.5x for encoding on one machine,
  1.6x and 2.0x on an AVX-512 Xeon without AMX, 1.5x and 2.0-2.4x on an AVX2 AMD EPYC
  (``experiments.benchmarks.taxons``, its "deterministic" column).
- A non-finite loss, or non-finite weights after an epoch (an infinite gradient under a finite
  loss), restores the weights and optimiser state from before the call and logs a warning
  (``TrainingReport.recovered``); a frame of the wrong shape or type is a ValueError.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["SHUFFLES", "AutoEncoder", "ConvAE", "TrainingReport", "check_frames"]

log = logging.getLogger(__name__)

Kind = Literal["taxons", "stax"]
KINDS = ("taxons", "stax")
# How an epoch orders its rows (`AutoEncoder.epoch_order`).
SHUFFLES = ("permutation", "tensor_swap")


def _conv(c_in: int, c_out: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=bias)


def _deconv(c_in: int, c_out: int, bias: bool) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=bias)


class ConvAE(nn.Module):
    """The TAXONS or STAX convolutional autoencoder (architectures in the module docstring)."""

    def __init__(self, kind: Kind = "taxons", latent: int = 10, frame_size: int = 64) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"autoencoder kind must be one of {KINDS}, got {kind!r}")
        if frame_size not in (32, 64):
            raise ValueError(f"autoencoder frame_size must be 32 or 64, got {frame_size!r}")
        if latent < 1:
            raise ValueError(f"autoencoder latent size must be >= 1, got {latent}")
        self.kind, self.latent, self.frame_size = kind, int(latent), int(frame_size)
        s = frame_size // 16
        self.bottom = s
        if kind == "taxons":
            enc: list[nn.Module] = []
            for a, b in ((3, 32), (32, 128), (128, 128), (128, 64)):
                enc += [_conv(a, b, False), nn.SELU(), nn.BatchNorm2d(b)]
            enc += [nn.Flatten(), nn.Linear(64 * s * s, 1024, bias=False), nn.SELU()]
            enc += [nn.Linear(1024, 256, bias=False), nn.SELU()]
            enc += [nn.Linear(256, latent, bias=False), nn.SELU()]
            self.decoder_channels = 32
            dec_lin = [nn.Linear(latent, 256, bias=False), nn.SELU()]
            dec_lin += [nn.Linear(256, 32 * s * s, bias=False), nn.SELU()]
            dec: list[nn.Module] = [nn.BatchNorm2d(32)]
            for a, b in ((32, 64), (64, 32), (32, 32)):
                dec += [_deconv(a, b, False), nn.SELU(), nn.BatchNorm2d(b)]
            dec += [_deconv(32, 3, False), nn.ReLU()]
        else:
            enc = []
            for a, b in ((3, 32), (32, 64), (64, 32), (32, 16)):
                enc += [_conv(a, b, True), nn.SELU()]
            enc += [nn.Flatten(), nn.Linear(16 * s * s, latent), nn.SELU()]
            self.decoder_channels = 16
            dec_lin = [nn.Linear(latent, 16 * s * s), nn.SELU()]
            dec = []
            for a, b in ((16, 32), (32, 64), (64, 32)):
                dec += [_deconv(a, b, True), nn.SELU()]
            dec += [_deconv(32, 3, True), nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self.decoder_linear = nn.Sequential(*dec_lin)
        self.decoder = nn.Sequential(*dec)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default initialisation, drawn from ``generator``."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    with torch.no_grad():
                        m.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder_linear(z).view(-1, self.decoder_channels, self.bottom, self.bottom)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


def check_frames(frames: np.ndarray, frame_size: int) -> tuple[np.ndarray, int]:
    """Validates uint8 frames (n, 3, S, S) or (n, k, 3, S, S); returns them as (n * k, 3, S, S)
    and k."""
    f = np.asarray(frames)
    tail = (3, frame_size, frame_size)
    if f.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (0-255), got dtype {f.dtype}")
    if f.ndim == 4 and f.shape[1:] == tail:
        return f, 1
    if f.ndim == 5 and f.shape[2:] == tail and f.shape[1] >= 1:
        return f.reshape(-1, *tail), f.shape[1]
    raise ValueError(
        f"frames must have shape (n, 3, {frame_size}, {frame_size}) or "
        f"(n, k >= 1, 3, {frame_size}, {frame_size}), got {f.shape}"
    )


@dataclass
class TrainingReport:
    """What one training call did: per-epoch mean training (and validation) losses."""

    epochs: int = 0
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    recovered: bool = False
    samples: int = 0


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


class AutoEncoder:
    """A ``ConvAE`` with its optimiser and random stream (conventions in the module docstring)."""

    def __init__(
        self,
        kind: Kind = "taxons",
        latent: int = 10,
        frame_size: int = 64,
        *,
        learning_rate: float = 1e-3,
        seed: int = 0,
        device: str = "cpu",
        inference_batch: int = 64,
        deterministic: bool = True,
        channels_last: bool = False,
        threads: int = 0,
    ) -> None:
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate}")
        if inference_batch < 1:
            raise ValueError(f"inference_batch must be >= 1, got {inference_batch}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0: torch's default), got {threads}")
        self.threads = int(threads)
        self.device = _resolve_device(device)
        self.generator = torch.Generator().manual_seed(int(seed))
        # The layers' constructors draw their default weights from torch's global stream:
        # fork it so that stays untouched, then draw the real weights from our generator.
        with torch.random.fork_rng(devices=[]):
            self.model = ConvAE(kind, latent, frame_size)
        self.model.reset_parameters(self.generator)
        self.channels_last = bool(channels_last)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.learning_rate = learning_rate
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.inference_batch = int(inference_batch)
        self.deterministic = bool(deterministic)

    def _backends(self) -> contextlib.ExitStack:
        if self.threads and torch.get_num_threads() != self.threads:
            # torch's thread count is process-wide and shares libgomp with Numba's OpenMP
            # layer: anything else in the process may change it, so ours is re-asserted.
            torch.set_num_threads(self.threads)
        stack = contextlib.ExitStack()
        if self.deterministic:
            with warnings.catch_warnings():
                # Setting oneDNN's flags warns about TF32 on Intel GPUs, irrelevant here.
                warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
                stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
            stack.enter_context(_cudnn_deterministic())
        return stack

    @property
    def frame_size(self) -> int:
        return self.model.frame_size

    @property
    def latent(self) -> int:
        return self.model.latent

    def _tensor(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames))
        if self.channels_last:
            # Reordering the uint8 frames is 4x cheaper than reordering the floats.
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.device).float().div_(255.0)

    # -- inference ------------------------------------------------------------------------
    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(descriptors (n, k * latent) float64, surprise (n,) float64) for frames (n[, k], 3,
        S, S)."""
        flat, k = check_frames(frames, self.frame_size)
        n = flat.shape[0] // k
        lat = np.empty((flat.shape[0], self.latent))
        err = np.empty(flat.shape[0])
        self.model.eval()
        with self._backends(), torch.inference_mode():
            for s in range(0, flat.shape[0], self.inference_batch):
                x = self._tensor(flat[s : s + self.inference_batch])
                z, y = self.model(x)
                lat[s : s + len(x)] = z.double().cpu().numpy()
                err[s : s + len(x)] = ((y - x) ** 2).mean(dim=(1, 2, 3)).double().cpu().numpy()
        return lat.reshape(n, k * self.latent), err.reshape(n, k).sum(axis=1)

    def descriptors(self, frames: np.ndarray) -> np.ndarray:
        """Descriptors (n, k * latent) float64 of frames (n[, k], 3, S, S), the encoder alone:
        the same values as ``encode``'s first result, without the decoder's cost."""
        flat, k = check_frames(frames, self.frame_size)
        n = flat.shape[0] // k
        lat = np.empty((flat.shape[0], self.latent))
        self.model.eval()
        with self._backends(), torch.inference_mode():
            for s in range(0, flat.shape[0], self.inference_batch):
                x = self._tensor(flat[s : s + self.inference_batch])
                lat[s : s + len(x)] = self.model.encode(x).double().cpu().numpy()
        return lat.reshape(n, k * self.latent)

    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """Reconstructions of (n, 3, S, S) frames as uint8 frames."""
        flat, _ = check_frames(frames, self.frame_size)
        self.model.eval()
        with self._backends(), torch.inference_mode():
            y = self.model(self._tensor(flat))[1]
        return (y.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()

    # -- training -------------------------------------------------------------------------
    def _snapshot(self) -> tuple[dict, dict]:
        model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        opt = _clone(self.optimizer.state_dict())
        return model, opt

    def _restore(self, snap: tuple[dict, dict]) -> None:
        self.model.load_state_dict(snap[0])
        self.optimizer.load_state_dict(snap[1])

    def _epoch(self, flat: np.ndarray, batch_size: int, shuffle: str = "permutation") -> float:
        with self._backends():
            return self._epoch_inner(flat, batch_size, shuffle)

    def epoch_order(self, n: int, shuffle: str = "permutation") -> np.ndarray:
        """The rows of one epoch, in minibatch order, drawn from the model's generator.

        ``"permutation"``: each row once, shuffled. ``"tensor_swap"``: what the original
        TAXONS trains on (``utils.split_array`` calls ``np.random.shuffle`` on a torch tensor,
        whose swaps go through views): position i holds a copy of row j, j uniform on 0..i, so
        about half the rows are duplicates and the last rows (the archive's frames, after the
        new ones) are mostly lost.
        """
        if shuffle == "permutation":
            return torch.randperm(n, generator=self.generator).numpy()
        if shuffle == "tensor_swap":
            u = torch.rand(n, generator=self.generator, dtype=torch.float64).numpy()
            return np.minimum((u * np.arange(1, n + 1)).astype(np.int64), np.arange(n))
        raise ValueError(f"shuffle must be one of {SHUFFLES}, got {shuffle!r}")

    def _epoch_inner(self, flat: np.ndarray, batch_size: int, shuffle: str) -> float:
        self.model.train()
        order = self.epoch_order(len(flat), shuffle)
        total = 0.0
        for s in range(0, len(flat), batch_size):
            idx = np.sort(order[s : s + batch_size])
            x = self._tensor(flat[idx])
            _, y = self.model(x)
            loss = ((y - x) ** 2).mean()
            if not torch.isfinite(loss):
                return float("nan")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(idx)
        return total / len(flat)

    def _loss(self, flat: np.ndarray) -> float:
        self.model.eval()
        total = 0.0
        with self._backends(), torch.inference_mode():
            for s in range(0, len(flat), self.inference_batch):
                x = self._tensor(flat[s : s + self.inference_batch])
                total += float(((self.model(x)[1] - x) ** 2).mean()) * len(x)
        return total / len(flat)

    def train_epochs(
        self,
        frames: np.ndarray,
        epochs: int = 5,
        batch_size: int = 128,
        shuffle: str = "permutation",
    ) -> TrainingReport:
        """TAXONS's schedule (§3.1): ``epochs`` passes over the frames in shuffled minibatches
        (``shuffle``: see `epoch_order`)."""
        if shuffle not in SHUFFLES:
            raise ValueError(f"shuffle must be one of {SHUFFLES}, got {shuffle!r}")
        flat, _ = check_frames(frames, self.frame_size)
        report = TrainingReport(samples=len(flat))
        if len(flat) == 0 or epochs < 1:
            return report
        snap = self._snapshot()
        for _ in range(epochs):
            loss = self._epoch(flat, batch_size, shuffle)
            if not (math.isfinite(loss) and self._weights_finite()):
                self._recover(snap, report)
                return report
            report.train_loss.append(loss)
            report.epochs += 1
        return report

    def train_early_stopping(
        self,
        frames: np.ndarray,
        max_epochs: int = 100,
        batch_size: int = 128,
        validation: float = 0.2,
        patience: int = 4,
    ) -> TrainingReport:
        """STAX's schedule (§4.4): shuffle, hold out ``validation`` of the frames, train up to
        ``max_epochs`` epochs; validation counts from the second epoch on (as the original's,
        whose first epoch is not validated): the second epoch's loss is the first best, then a
        validation loss above the best so far counts one strike, any other resets the count
        and becomes the best; stop at the ``patience``-th consecutive strike (at the earliest
        after 2 + ``patience`` epochs). The weights of the last epoch are kept, as the
        original's. The first epoch's validation loss is still reported."""
        flat, _ = check_frames(frames, self.frame_size)
        report = TrainingReport(samples=len(flat))
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
        if len(flat) < 2 or max_epochs < 1:
            return report
        perm = torch.randperm(len(flat), generator=self.generator).numpy()
        # At least one frame on each side: a split that rounds to every frame trains on none.
        n_val = min(max(1, int(round(validation * len(flat)))), len(flat) - 1)
        val, train = flat[np.sort(perm[:n_val])], flat[np.sort(perm[n_val:])]
        snap = self._snapshot()
        best, strikes = math.inf, 0
        for epoch in range(max_epochs):
            loss = self._epoch(train, batch_size)
            ok = math.isfinite(loss) and self._weights_finite()
            v = self._loss(val) if ok else float("nan")
            if not (math.isfinite(loss) and math.isfinite(v)):
                self._recover(snap, report)
                return report
            report.train_loss.append(loss)
            report.val_loss.append(v)
            report.epochs += 1
            if epoch == 0:
                continue
            if v > best:
                strikes += 1
                if strikes >= patience:
                    break
            else:
                best, strikes = v, 0
        return report

    def _weights_finite(self) -> bool:
        """Whether every weight and BatchNorm statistic is finite: an infinite gradient
        makes Adam's step NaN even when the loss it came from was finite."""
        return all(
            bool(torch.isfinite(v).all())
            for v in self.model.state_dict().values()
            if v.is_floating_point()
        )

    def _recover(self, snap: tuple[dict, dict], report: TrainingReport) -> None:
        log.warning(
            "autoencoder: non-finite loss or weights; weights restored from before this training"
        )
        self._restore(snap)
        report.recovered = True

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Model, optimiser and random stream, on the CPU."""
        return {
            "kind": self.model.kind,
            "latent": self.latent,
            "frame_size": self.frame_size,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": _clone(self.optimizer.state_dict(), cpu=True),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("kind", "latent", "frame_size"):
            mine = getattr(self.model, name)
            if state[name] != mine:
                raise ValueError(
                    f"autoencoder checkpoint has {name} = {state[name]!r}, this model {mine!r}"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])


@contextlib.contextmanager
def _cudnn_deterministic():
    """cuDNN restricted to deterministic kernels, everything else about it left alone
    (``torch.backends.cudnn.flags`` would also switch cuDNN off: its ``enabled`` defaults to
    False)."""
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = before


def _clone(obj, cpu: bool = False):
    """Deep copy of a (nested) state dict, tensors cloned (and moved to the CPU)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().clone()
        return t.cpu() if cpu else t
    if isinstance(obj, dict):
        return {k: _clone(v, cpu) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone(v, cpu) for v in obj)
    return obj
