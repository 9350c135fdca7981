"""``--init`` loaders: official AudioMAE and timm ViT checkpoints (tiny ones,
written here with the real key names and layouts), and their error messages."""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import save_file

from serenesense_cli.errors import ModelError
from serenesense_cli.models import create_model
from serenesense_cli.models.init import (
    KIND_AUDIOMAE,
    KIND_TIMM,
    load_encoder_init,
    read_init,
)

WIDTH = 192  # ViT-Ti
TIME, FREQ = 64, 8  # official AudioMAE grid: 1024 frames x 128 mel bins, 16 x 16 patches


def _classifier(**args):
    torch.manual_seed(0)
    return create_model("audiomae", num_classes=3, size="tiny", depth=1, **args)


def _block(prefix: str, width: int) -> dict[str, torch.Tensor]:
    shapes = {
        "norm1.weight": (width,),
        "norm1.bias": (width,),
        "attn.qkv.weight": (3 * width, width),
        "attn.qkv.bias": (3 * width,),
        "attn.proj.weight": (width, width),
        "attn.proj.bias": (width,),
        "norm2.weight": (width,),
        "norm2.bias": (width,),
        "mlp.fc1.weight": (4 * width, width),
        "mlp.fc1.bias": (4 * width,),
        "mlp.fc2.weight": (width, 4 * width),
        "mlp.fc2.bias": (width,),
    }
    return {f"{prefix}{k}": torch.randn(shape) for k, shape in shapes.items()}


def _official_state(*, fine_tuned: bool = False) -> dict[str, torch.Tensor]:
    """models_mae.MaskedAutoencoderViT keys (pretrained) or models_vit keys (fine-tuned)."""
    torch.manual_seed(1)
    time_idx = torch.arange(TIME).repeat_interleave(FREQ)  # token i = (i // 8, i % 8)
    freq_idx = torch.arange(FREQ).repeat(TIME)
    pos = torch.zeros(1, 1 + TIME * FREQ, WIDTH)
    pos[0, 0] = 7.0  # CLS position
    pos[0, 1:, 0] = freq_idx.float()  # channel 0 encodes the frequency row
    pos[0, 1:, 1] = time_idx.float() / (TIME - 1)  # channel 1 ramps along time
    state = {
        "cls_token": torch.randn(1, 1, WIDTH),
        "pos_embed": pos,
        "patch_embed.proj.weight": torch.randn(WIDTH, 1, 16, 16),
        "patch_embed.proj.bias": torch.randn(WIDTH),
        **_block("blocks.0.", WIDTH),
    }
    if fine_tuned:
        state |= {
            "fc_norm.weight": torch.randn(WIDTH),
            "fc_norm.bias": torch.randn(WIDTH),
            "head.weight": torch.randn(527, WIDTH),
            "head.bias": torch.randn(527),
        }
    else:
        state |= {
            "norm.weight": torch.randn(WIDTH),
            "norm.bias": torch.randn(WIDTH),
            "mask_token": torch.randn(1, 1, 512),
            "decoder_embed.weight": torch.randn(512, WIDTH),
            "decoder_embed.bias": torch.randn(512),
            "decoder_pos_embed": torch.randn(1, 1 + TIME * FREQ, 512),
            **_block("decoder_blocks.0.", 512),
            "decoder_norm.weight": torch.randn(512),
            "decoder_norm.bias": torch.randn(512),
            "decoder_pred.weight": torch.randn(256, 512),
            "decoder_pred.bias": torch.randn(256),
        }
    return state


def _save_official(path, state):
    """As the official scripts save: a dict with the state under ``model``, plus extras."""
    args = argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.8, epochs=33)
    torch.save({"model": state, "epoch": 32, "args": args}, path)
    return path


def _timm_state(width: int = WIDTH, depth: int = 1) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(2)
    heads = {192: 3, 384: 6}[width]
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, embed_dim=width, depth=depth, num_heads=heads
    )
    return {k: v.clone() for k, v in vit.state_dict().items()}


def test_official_pretrained_checkpoint_maps_onto_our_grid(tmp_path):
    state = _official_state()
    path = _save_official(tmp_path / "pretrained.pth", state)
    checkpoint = read_init(path)
    assert checkpoint.kind == KIND_AUDIOMAE
    assert checkpoint.model_args() == {"size": "tiny", "depth": 1}
    model = _classifier()
    report = load_encoder_init(model, checkpoint)
    enc = model.encoder.state_dict()
    assert torch.equal(enc["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    assert torch.equal(enc["norm.weight"], state["norm.weight"])
    assert torch.equal(enc["cls_token"], state["cls_token"])
    # kernel (time, freq) -> ours (freq, time)
    assert torch.equal(
        enc["patch_embed.proj.weight"], state["patch_embed.proj.weight"].transpose(-1, -2)
    )
    pos = enc["pos_embed"][0]
    assert pos.shape == (65, WIDTH) and pos[0, 0] == 7.0
    grid = pos[1:].reshape(8, 8, WIDTH)  # our (freq rows, time columns)
    expected_freq = torch.arange(8).float()[:, None].expand(8, 8)
    assert torch.allclose(grid[..., 0], expected_freq, atol=1e-4)
    ramp = grid[..., 1]
    assert torch.allclose(ramp, ramp[:1].expand(8, 8), atol=1e-5)  # same in every row
    assert torch.all(ramp[0, 1:] > ramp[0, :-1])  # rises along time
    assert report.loaded == len(enc)
    assert "mask_token" in report.ignored and "decoder_pred.weight" in report.ignored
    assert any("64 (time) x 8 (freq)" in note for note in report.notes)


def test_official_fine_tuned_checkpoint_uses_fc_norm(tmp_path):
    state = _official_state(fine_tuned=True)
    path = tmp_path / "finetuned.safetensors"
    save_file(state, str(path))
    model = _classifier()
    report = load_encoder_init(model, path)
    assert torch.equal(model.encoder.norm.weight.detach(), state["fc_norm.weight"])
    assert "head.weight" in report.ignored
    assert any("fc_norm" in note for note in report.notes)


def test_timm_checkpoint_averages_rgb_and_resamples_positions(tmp_path):
    state = _timm_state()
    assert state["pos_embed"].shape == (1, 197, WIDTH)
    assert state["patch_embed.proj.weight"].shape == (WIDTH, 3, 16, 16)
    path = tmp_path / "vit_tiny.safetensors"
    save_file(state, str(path))
    checkpoint = read_init(path)
    assert checkpoint.kind == KIND_TIMM
    model = _classifier()
    report = load_encoder_init(model, checkpoint)
    enc = model.encoder.state_dict()
    assert torch.allclose(
        enc["patch_embed.proj.weight"], state["patch_embed.proj.weight"].mean(1, keepdim=True)
    )
    assert torch.equal(enc["pos_embed"][:, :1], state["pos_embed"][:, :1])
    assert enc["pos_embed"].shape == (1, 65, WIDTH)
    assert torch.equal(enc["blocks.0.mlp.fc2.weight"], state["blocks.0.mlp.fc2.weight"])
    assert "head.weight" in report.ignored
    # the .pth form (plain state dict) reads the same
    torch.save(state, tmp_path / "vit_tiny.pth")
    other = _classifier()
    load_encoder_init(other, tmp_path / "vit_tiny.pth")
    assert torch.equal(other.encoder.pos_embed, model.encoder.pos_embed)


def test_mismatched_checkpoints_list_the_offending_keys(tmp_path):
    small = tmp_path / "vit_small.safetensors"
    save_file(_timm_state(width=384), str(small))
    with pytest.raises(ModelError) as info:
        load_encoder_init(_classifier(), small)
    message = str(info.value)
    assert "mismatched 18 (file vs model)" in message
    assert "blocks.0.mlp.fc2.weight (384, 1536) vs (192, 768)" in message
    assert "384-wide" in info.value.hint

    state = _timm_state()
    del state["blocks.0.norm1.weight"]
    state["blocks.0.ls1.gamma"] = torch.ones(WIDTH)
    odd = tmp_path / "odd.safetensors"
    save_file(state, str(odd))
    with pytest.raises(ModelError) as info:
        load_encoder_init(_classifier(), odd)
    message = str(info.value)
    assert "missing 1: blocks.0.norm1.weight" in message
    assert "unexpected 1: blocks.0.ls1.gamma" in message

    deeper = tmp_path / "deep.pth"
    _save_official(deeper, _official_state())
    with pytest.raises(ModelError, match=r"missing 12: blocks\.1\."):
        load_encoder_init(create_model("audiomae", num_classes=3, size="tiny", depth=2), deeper)


def test_unusable_files_are_clear(tmp_path):
    with pytest.raises(ModelError, match="checkpoint not found"):
        read_init(tmp_path / "missing.pth")
    not_vit = tmp_path / "cnn.safetensors"
    save_file({"conv.weight": torch.zeros(4, 1, 3, 3)}, str(not_vit))
    with pytest.raises(ModelError, match="not a ViT checkpoint"):
        read_init(not_vit)
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="unsupported checkpoint type"):
        read_init(text)


class _Payload:
    """Anything beyond tensors and plain containers must not be unpickled."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _timm_state(), "extra": _Payload()}, path)
    with pytest.raises(ModelError, match="weights_only=True") as info:
        read_init(path)
    # torch's own text goes on to advise weights_only=False, which would run the file's code
    assert "weights_only=False" not in info.value.message
    assert "trust the source" not in info.value.message
    assert "not unpickled" in info.value.message
    truncated = tmp_path / "short.pth"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelError, match="truncated or damaged"):
        read_init(truncated)


def test_serenesense_classifier_weights_initialise_a_new_head(tmp_path):
    from serenesense_cli.models.artifact import save_model

    trained = create_model("audiomae", num_classes=3, size="tiny", depth=1, clip_seconds=2.0)
    trained.set_normalization(-5.0, 3.0)
    save_model(tmp_path / "cls.safetensors", trained, ["a", "b", "c"])
    checkpoint = read_init(tmp_path / "cls.safetensors")
    args = checkpoint.model_args()
    assert args["depth"] == 1 and args["clip_seconds"] == 2.0 and "num_classes" not in args
    fresh = create_model("audiomae", num_classes=5, **args)
    report = load_encoder_init(fresh, checkpoint)
    assert report.normalization == (-5.0, 3.0)
    assert "head.3.weight" in report.ignored
    assert torch.equal(
        fresh.encoder.blocks[0].attn.qkv.weight, trained.encoder.blocks[0].attn.qkv.weight
    )
    assert fresh.head[3].out_features == 5

    cnn = create_model("cnn", num_classes=3)
    save_model(tmp_path / "cnn.safetensors", cnn, ["a", "b", "c"])
    with pytest.raises(ModelError, match="a 'cnn' model cannot initialise"):
        read_init(tmp_path / "cnn.safetensors")
