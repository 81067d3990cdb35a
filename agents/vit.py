"""Encoders for 84x84 Atari frame stacks: a ViT (TOV-VICReg's ``vit_tiny``) and the Nature CNN.

Input convention for every encoder here: float tensors (B, C, H, W) in [0, 1], C consecutive
84x84 grayscale frames, oldest first (TOV-VICReg uses C = 3). Output: one feature vector per
frame stack, (B, features_dim).

ViT (world_models.md §2.3): DINO-style pre-norm blocks (LayerNorm eps 1e-6, qkv bias, GELU MLP),
a final LayerNorm and the CLS token as output. Two deliberate choices:

- the positional table is sized for the patch grid of the actual input (10x10 + CLS = 101 rows
  at 84x84 / patch 8: 5.40 M parameters for ViT-tiny), rather than the original's 224x224 table
  bicubically interpolated on every forward (5.53 M); an input of another size is an error;
- the patch convolution has stride = patch size, so when the size is not a multiple of the patch
  the last rows and columns are dropped, as in the original (84 / 8: 4 pixels).

Shared encoder files (`save_encoder` / `load_encoder`) are plain torch files read back with
``torch.load(weights_only=True)``: a state dict plus a JSON header naming the layout and version.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_LAYOUT = "sparserl.encoder"
ENCODER_VERSION = 1


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to rebuild an encoder; stored in the header of an encoder file."""

    kind: Literal["vit", "nature_cnn"] = "vit"
    img_size: int = 84
    in_chans: int = 3
    patch_size: int = 8
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.kind not in ("vit", "nature_cnn"):
            raise ValueError(f"encoder kind must be 'vit' or 'nature_cnn', got {self.kind!r}")
        for name in ("img_size", "in_chans", "patch_size", "embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"encoder {name} must be >= 1, got {getattr(self, name)}")
        if self.kind == "vit":
            hidden = self.embed_dim * self.mlp_ratio
            if not (math.isfinite(hidden) and int(hidden) >= 1):
                raise ValueError(
                    f"encoder mlp_ratio must give an MLP of at least 1 unit, got {self.mlp_ratio}"
                )
            if self.embed_dim % self.num_heads:
                raise ValueError(
                    f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
                )
            if self.patch_size > self.img_size:
                raise ValueError(f"patch_size {self.patch_size} exceeds img_size {self.img_size}")
        elif self.img_size < 36:
            # Nature CNN: 8/4, 4/2, 3/1 convolutions need at least 36 pixels.
            raise ValueError(f"the Nature CNN needs img_size >= 36, got {self.img_size}")

    @property
    def features_dim(self) -> int:
        return self.embed_dim if self.kind == "vit" else 512


def _check_input(x: torch.Tensor, in_chans: int, img_size: int) -> None:
    if x.ndim != 4 or x.shape[1] != in_chans or x.shape[2:] != (img_size, img_size):
        raise ValueError(
            f"encoder expects frames of shape (B, {in_chans}, {img_size}, {img_size}), "
            f"got {tuple(x.shape)}"
        )


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if return_attention:
            # Explicit softmax only when the weights are wanted (plots): the fused kernel is faster.
            attn = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            attn = attn.softmax(dim=-1)
            out = attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))
        return out, attn


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        y, attn = self.attn(self.norm1(x), return_attention)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class VisionTransformer(nn.Module):
    """ViT with a CLS-token output; ``vit_tiny`` sizes by default (see module docstring)."""

    def __init__(self, spec: EncoderSpec = EncoderSpec()) -> None:
        super().__init__()
        if spec.kind != "vit":
            raise ValueError(f"VisionTransformer needs kind 'vit', got {spec.kind!r}")
        self.spec = spec
        d = spec.embed_dim
        self.grid = spec.img_size // spec.patch_size
        self.patch_embed = nn.Conv2d(spec.in_chans, d, spec.patch_size, stride=spec.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, d))
        self.blocks = nn.ModuleList(
            [Block(d, spec.num_heads, spec.mlp_ratio) for _ in range(spec.depth)]
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_vit_weights)

    @property
    def features_dim(self) -> int:
        return self.spec.embed_dim

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.spec.in_chans, self.spec.img_size)
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], dim=1)
        return t + self.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(x)
        for block in self.blocks:
            t, _ = block(t)
        return self.norm(t)[:, 0]

    def layer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The CLS token after each block (the last one after the final LayerNorm)."""
        t = self.tokens(x)
        outs = []
        for block in self.blocks:
            t, _ = block(t)
            outs.append(t[:, 0])
        outs[-1] = self.norm(t)[:, 0]
        return outs

    def cls_attention(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Attention of the CLS token over the patches in ``layer``: (B, heads, grid, grid)."""
        t = self.tokens(x)
        index = range(len(self.blocks))[layer]
        for i, block in enumerate(self.blocks):
            t, attn = block(t, return_attention=i == index)
            if i == index:
                return attn[:, :, 0, 1:].reshape(len(x), -1, self.grid, self.grid)
        raise AssertionError("unreachable: layer index was validated by range()")


def _init_vit_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class NatureCNN(nn.Module):
    """Mnih et al. 2015: conv 32x8/4, 64x4/2, 64x3/1, then Linear to 512, ReLU throughout."""

    def __init__(self, spec: EncoderSpec = EncoderSpec(kind="nature_cnn")) -> None:
        super().__init__()
        if spec.kind != "nature_cnn":
            raise ValueError(f"NatureCNN needs kind 'nature_cnn', got {spec.kind!r}")
        self.spec = spec
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(spec.in_chans, 32, 8, stride=4),
                nn.Conv2d(32, 64, 4, stride=2),
                nn.Conv2d(64, 64, 3, stride=1),
            ]
        )
        self.fc = nn.Linear(_nature_cnn_flat(spec.img_size), 512)

    @property
    def features_dim(self) -> int:
        return 512

    def layer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Flattened activations after each ReLU (three convolutions, then the linear layer)."""
        _check_input(x, self.spec.in_chans, self.spec.img_size)
        outs = []
        for conv in self.convs:
            x = F.relu(conv(x))
            outs.append(x.flatten(1))
        outs.append(F.relu(self.fc(x.flatten(1))))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_outputs(x)[-1]


def _nature_cnn_flat(img_size: int) -> int:
    """Units after the Nature CNN's three convolutions (3136 at 84x84)."""
    side = img_size
    for k, s in ((8, 4), (4, 2), (3, 1)):
        side = (side - k) // s + 1
    return 64 * side * side


def build_encoder(spec: EncoderSpec, generator_seed: int | None = None) -> nn.Module:
    """A fresh encoder; with ``generator_seed`` its initial weights depend on that seed alone."""
    cls = VisionTransformer if spec.kind == "vit" else NatureCNN
    if generator_seed is None:
        return cls(spec)
    with torch.random.fork_rng(devices=[]):
        # nn.init draws from the global generator; fork it so the caller's stream is untouched.
        torch.random.default_generator.manual_seed(generator_seed)
        return cls(spec)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def encoder_header(spec: EncoderSpec, **extra: object) -> dict:
    return {
        "layout": ENCODER_LAYOUT,
        "version": ENCODER_VERSION,
        "spec": dataclasses.asdict(spec),
        "input": f"float (B, {spec.in_chans}, {spec.img_size}, {spec.img_size}) in [0, 1], "
        "consecutive grayscale frames oldest first",
        "features": (
            f"CLS token after the final LayerNorm ({spec.embed_dim})"
            if spec.kind == "vit"
            else f"ReLU(Linear({_nature_cnn_flat(spec.img_size)} -> 512)) (512)"
        ),
        **extra,
    }


def save_encoder(path: str | Path, encoder: nn.Module, **extra: object) -> Path:
    """Write ``{"header": JSON text, "state_dict": tensors}``; temporary file, then rename."""
    path = Path(path)
    header = json.dumps(encoder_header(encoder.spec, **extra), sort_keys=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"header": header, "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def read_encoder_header(path: str | Path) -> dict:
    return _load_encoder_file(path)[0]


def _load_encoder_file(path: str | Path) -> tuple[dict, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no encoder file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        header = json.loads(blob["header"])
        state = blob["state_dict"]
    except Exception as exc:
        raise ValueError(f"{path}: not a sparserl encoder file ({type(exc).__name__})") from None
    if header.get("layout") != ENCODER_LAYOUT or header.get("version") != ENCODER_VERSION:
        raise ValueError(
            f"{path}: layout {header.get('layout')!r} version {header.get('version')!r}, "
            f"expected {ENCODER_LAYOUT!r} version {ENCODER_VERSION}"
        )
    return header, state


def load_encoder(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild an encoder from a file written by `save_encoder`; returns it (eval mode) and its
    header."""
    header, state = _load_encoder_file(path)
    try:
        spec = EncoderSpec(**header["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: no valid encoder spec in the header ({exc})") from None
    encoder = build_encoder(spec, 0)  # seeded: the caller's random stream is left alone
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        # torch's first line only names the class; the next one names the culprit keys.
        detail = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise ValueError(
            f"{path}: the weights do not fit the header's spec "
            f"({detail[0][:200] if detail else exc})"
        ) from None
    encoder.eval()
    return encoder, header
