from __future__ import annotations

import json

import pytest
import torch

from agents.vit import (
    ENCODER_LAYOUT,
    ENCODER_VERSION,
    EncoderSpec,
    NatureCNN,
    VisionTransformer,
    build_encoder,
    count_parameters,
    encoder_header,
    load_encoder,
    read_encoder_header,
    save_encoder,
)


def vit_parameters(d: int, depth: int, patch: int, img: int = 84, chans: int = 3) -> int:
    """Closed form: patch conv + CLS + positional table + blocks + final LayerNorm."""
    hidden = 4 * d
    tokens = (img // patch) ** 2 + 1
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d)
    return chans * patch * patch * d + d + d + tokens * d + depth * block + 2 * d


def test_vit_tiny_matches_the_sheet():
    vit = VisionTransformer()
    # world_models.md §2.3: ~5.40 M parameters with a 101-entry positional table at 84 / patch 8.
    assert count_parameters(vit) == vit_parameters(192, 12, 8) == 5_395_392
    assert vit.pos_embed.shape == (1, 101, 192)
    assert vit.grid == 10 and len(vit.blocks) == 12
    assert vit.blocks[0].attn.num_heads == 3
    assert vit.blocks[0].norm1.eps == 1e-6 and vit.blocks[0].attn.qkv.bias is not None


@pytest.mark.parametrize(("d", "depth", "patch", "heads"), [(64, 2, 12, 4), (96, 3, 7, 3)])
def test_vit_is_configurable(d, depth, patch, heads):
    spec = EncoderSpec(embed_dim=d, depth=depth, patch_size=patch, num_heads=heads)
    vit = build_encoder(spec, generator_seed=0)
    assert count_parameters(vit) == vit_parameters(d, depth, patch)
    x = torch.rand(2, 3, 84, 84)
    assert vit(x).shape == (2, d)
    layers = vit.layer_outputs(x)
    assert len(layers) == depth
    torch.testing.assert_close(layers[-1], vit(x))
    attn = vit.cls_attention(x)
    g = 84 // patch
    assert attn.shape == (2, heads, g, g)
    # softmax over CLS + patches: the patches take a share strictly below 1
    total = attn.sum(dim=(2, 3))
    assert torch.all(total > 0) and torch.all(total < 1)


def test_vit_drops_the_pixels_the_patch_grid_does_not_cover():
    vit = build_encoder(EncoderSpec(depth=1), generator_seed=0)
    x = torch.rand(1, 3, 84, 84)
    y = x.clone()
    y[:, :, 80:, :] = 0.0  # 84 = 10 * 8 + 4: the last 4 rows are never seen
    y[:, :, :, 80:] = 1.0
    torch.testing.assert_close(vit(x), vit(y))


def test_nature_cnn_shapes():
    cnn = NatureCNN()
    x = torch.rand(3, 3, 84, 84)
    assert cnn(x).shape == (3, 512)
    sizes = [o.shape[1] for o in cnn.layer_outputs(x)]
    assert sizes == [32 * 20 * 20, 64 * 9 * 9, 64 * 7 * 7, 512]


@pytest.mark.parametrize("img_size", [84, 64])
def test_nature_cnn_header_names_its_linear_layer(img_size):
    spec = EncoderSpec(kind="nature_cnn", img_size=img_size)
    fc = NatureCNN(spec).fc
    assert encoder_header(spec)["features"] == f"ReLU(Linear({fc.in_features} -> 512)) (512)"


def test_same_seed_same_weights_and_caller_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_encoder(EncoderSpec(depth=1), generator_seed=7)
    after = torch.rand(1)
    b = build_encoder(EncoderSpec(depth=1), generator_seed=7)
    c = build_encoder(EncoderSpec(depth=1), generator_seed=8)
    assert torch.equal(before, after)
    assert torch.equal(a.pos_embed, b.pos_embed)
    assert not torch.equal(a.pos_embed, c.pos_embed)


@pytest.mark.parametrize(
    "spec",
    [EncoderSpec(depth=2, embed_dim=48, num_heads=3), EncoderSpec(kind="nature_cnn")],
    ids=["vit", "nature_cnn"],
)
def test_saved_encoder_reloads_weights_only_with_identical_features(tmp_path, spec):
    enc = build_encoder(spec, generator_seed=3).eval()
    path = save_encoder(tmp_path / "enc.pt", enc, method="test")
    blob = torch.load(path, weights_only=True)  # plain torch, no pickled classes
    header = json.loads(blob["header"])
    assert header["layout"] == ENCODER_LAYOUT and header["version"] == ENCODER_VERSION
    assert header["spec"]["kind"] == spec.kind and header["method"] == "test"
    assert read_encoder_header(path) == header
    before = torch.random.get_rng_state()
    loaded, _ = load_encoder(path)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream untouched
    x = torch.rand(4, 3, 84, 84)
    with torch.no_grad():
        assert torch.equal(enc(x), loaded(x))


def test_bad_encoder_files_and_inputs(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a sparserl encoder file"):
        load_encoder(other)
    wrong = tmp_path / "wrong.pt"
    torch.save({"header": json.dumps({"layout": "x", "version": 9}), "state_dict": {}}, wrong)
    with pytest.raises(ValueError, match="layout 'x' version 9"):
        load_encoder(wrong)
    with pytest.raises(FileNotFoundError):
        load_encoder(tmp_path / "absent.pt")
    vit = build_encoder(EncoderSpec(depth=1), generator_seed=0)
    with pytest.raises(ValueError, match=r"\(B, 3, 84, 84\), got \(2, 3, 64, 64\)"):
        vit(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="not divisible"):
        EncoderSpec(embed_dim=100, num_heads=3)
    with pytest.raises(ValueError, match="kind"):
        EncoderSpec(kind="resnet")


def test_encoder_file_whose_header_does_not_fit_its_weights_names_the_file(tmp_path):
    # A header edited or written by another version used to raise torch's RuntimeError (or a
    # TypeError from the spec) without naming the file.
    path = save_encoder(tmp_path / "enc.pt", build_encoder(EncoderSpec(depth=2), generator_seed=0))
    blob = torch.load(path, weights_only=True)
    for change, message in (
        ({"depth": 3}, r"deeper\.pt: the weights do not fit the header's spec \(Missing key"),
        ({"drop_rate": 0.1}, r"extra\.pt: no valid encoder spec in the header"),
    ):
        header = json.loads(blob["header"])
        header["spec"].update(change)
        name = "deeper.pt" if "depth" in change else "extra.pt"
        blob_out = {"header": json.dumps(header), "state_dict": blob["state_dict"]}
        torch.save(blob_out, tmp_path / name)
        with pytest.raises(ValueError, match=message):
            load_encoder(tmp_path / name)


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan")])
def test_mlp_ratio_without_units_is_an_error(ratio):
    # 0 used to build blocks with an empty MLP, a negative ratio crashed inside nn.Linear.
    with pytest.raises(ValueError, match="mlp_ratio must give an MLP of at least 1 unit"):
        EncoderSpec(mlp_ratio=ratio)
