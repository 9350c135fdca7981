"""Masked-autoencoder pretraining: the model, the loop, the run folder, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from serenesense_cli.cli import app
from serenesense_cli.config import load_toml
from serenesense_cli.errors import BadInputError, ConfigError, DataSetError
from serenesense_cli.models.artifact import read_metadata
from serenesense_cli.models.mae import MaskedAutoencoder
from serenesense_cli.train.config import resolve_pretrain_config
from serenesense_cli.train.pretrain import HISTORY_COLUMNS, collect_unlabelled, pretrain
from tests.conftest import write_tone_dataset

TINY = {"size": "tiny", "depth": 1, "decoder_depth": 1, "clip_seconds": 2.0}


def _mae(**kwargs) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return MaskedAutoencoder(**{**TINY, **kwargs})


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "pretrain.toml"
    path.write_text(
        "epochs = 2\nbatch_size = 8\nfigure_every = 1\nfigure_clips = 3\n\n"
        '[model_args]\nsize = "tiny"\ndepth = 1\ndecoder_depth = 1\nclip_seconds = 2.0\n'
    )
    return path


def test_forward_shapes_and_parameter_counts():
    model = _mae()
    out = model(torch.randn(2, 32000) * 0.1)
    assert out.pred.shape == (2, 64, 256)
    assert out.target.shape == (2, 64, 256)
    assert out.mask.shape == (2, 64)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert model.reconstruct(out).shape == (2, 1, 128, 128)
    base = MaskedAutoencoder(size="base")
    encoder = sum(p.numel() for p in base.encoder.parameters())
    assert encoder == 85_304_064  # ViT-B/16 on one channel, 8 x 8 patches
    assert len(base.decoder_blocks) == 8 and base.decoder_embed.out_features == 512
    assert base.decoder_blocks[0].attn.num_heads == 16


@pytest.mark.parametrize(
    ("mode", "ratio", "hidden"),
    [
        ("unstructured", 0.8, 51),
        ("unstructured", 0.5, 32),
        ("time", 0.8, 48),
        ("frequency", 0.75, 48),
        ("time_frequency", 0.8, 48),
    ],
)
def test_masks_hide_an_exact_count(mode, ratio, hidden):
    model = _mae(mask_mode=mode, mask_ratio=ratio)
    assert model.masked_count() == hidden
    mask = model.random_mask(16, device=torch.device("cpu"))
    assert mask.shape == (16, 64)
    assert torch.all(mask.sum(dim=1) == hidden)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    grid = mask.reshape(16, 8, 8)  # (freq rows, time columns)
    if mode == "time":  # whole columns
        assert torch.all(grid == grid[:, :1, :])
    if mode == "frequency":  # whole rows
        assert torch.all(grid == grid[:, :, :1])
    # masks differ between examples
    assert not torch.all(mask == mask[:1])


def test_loss_counts_hidden_patches_only():
    model = _mae().eval()
    out = model(torch.randn(2, 32000) * 0.1, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out.loss, model.masked_loss(out.pred, out.target, out.mask))
    changed = out.pred.detach().clone()
    visible = out.mask == 0
    changed[visible] += 5.0
    assert torch.allclose(model.masked_loss(changed, out.target, out.mask), out.loss)
    changed = out.pred.detach().clone()
    changed[out.mask == 1] += 5.0
    assert model.masked_loss(changed, out.target, out.mask) > out.loss + 1.0


def test_encoder_sees_only_visible_patches():
    model = _mae().eval()
    features = torch.randn(1, 1, 128, 128)
    mask = model.random_mask(1, device=torch.device("cpu"))
    pred = model.forward_features(features, mask=mask).pred
    pixels = model.patchify(features).clone()
    pixels[mask == 1] = torch.randn_like(pixels[mask == 1])  # change hidden patches only
    again = model.forward_features(model.unpatchify(pixels), mask=mask).pred
    assert torch.allclose(pred, again, atol=1e-5)
    recon = model.reconstruct(model.forward_features(features, mask=mask))
    kept = model.patchify(recon)[mask == 0]
    assert torch.allclose(kept, model.patchify(features)[mask == 0], atol=1e-5)


def test_bad_settings_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="mask_ratio"):
        resolve_pretrain_config(overrides={"mask_ratio": 1.0})
    with pytest.raises(ConfigError, match="mask_mode"):
        resolve_pretrain_config(overrides={"mask_mode": "diagonal"})
    with pytest.raises(ConfigError, match="unknown setting 'mask_ratoi'"):
        resolve_pretrain_config(overrides={"mask_ratoi": 0.5})


def test_cli_pretrain_writes_the_run_folder_contract(runner, tone_prepared, tmp_path):
    result = runner.invoke(
        app,
        [
            "pretrain",
            "audiomae",
            "--data",
            str(tone_prepared),
            "--config",
            str(_config_file(tmp_path)),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--name",
            "mae",
        ],
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir == tmp_path / "runs" / "pretrain" / "mae"
    for name in (
        "config.toml",
        "history.csv",
        "weights/best.safetensors",
        "weights/best.json",
        "weights/last.safetensors",
        "weights/last.json",
        "weights/last_state.pt",
        "figures/reconstruction_epoch001.png",
        "figures/reconstruction_epoch002.png",
        "train.log",
        "curves.png",
    ):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "confusion.png").exists()  # no classes, no confusion
    assert "epoch 2: train_loss" in (run_dir / "train.log").read_text(encoding="utf-8")
    assert (run_dir / "figures/reconstruction_epoch002.png").read_bytes()[:4] == b"\x89PNG"
    header = (run_dir / "history.csv").read_text().splitlines()[0]
    assert header == ",".join(HISTORY_COLUMNS)
    saved = load_toml(run_dir / "config.toml")
    assert saved["task"] == "pretrain" and saved["model"] == "audiomae"
    assert saved["data"] == [str(Path(tone_prepared).resolve())]
    assert saved["model_args"]["depth"] == 1 and saved["mask_ratio"] == 0.8
    meta = read_metadata(run_dir / "weights" / "best.safetensors")
    assert meta["model"]["name"] == "audiomae-mae"
    assert meta["model"]["encoder"] == {
        "name": "audiomae",
        "args": {
            "size": "tiny",
            "clip_seconds": 2.0,
            "sample_rate": 16000,
            "n_mels": 128,
            "target_frames": 128,
            "patch_size": 16,
            "depth": 1,
        },
    }
    assert meta["task"] == "pretrain" and meta["classes"] == []
    assert "Pretraining summary" in result.stdout
    assert "val loss" in result.stderr

    evaluated = runner.invoke(app, ["evaluate", str(run_dir), "--data", str(tone_prepared)])
    assert evaluated.exit_code != 0
    assert "pretraining checkpoint, not a classifier" in evaluated.output
    assert "--init" in evaluated.output


def test_resumed_run_matches_uninterrupted(tone_prepared, tmp_path):
    config = resolve_pretrain_config(
        overrides={"epochs": 2, "batch_size": 8, "figure_every": 0}, model_args=TINY
    )
    whole = pretrain(data=[tone_prepared], config=config, runs_dir=tmp_path, name="whole")
    stopped = pretrain(
        data=[tone_prepared],
        config=config.__class__(**{**config.__dict__, "max_steps": 3}),
        runs_dir=tmp_path,
        name="parts",
    )
    assert stopped.stopped == "max_steps" and stopped.global_step == 3
    resumed = pretrain(data=None, resume=stopped.run_dir, overrides={"max_steps": 0})
    assert resumed.stopped == "completed" and resumed.global_step == whole.global_step
    a = load_file(str(whole.last_weights))
    b = load_file(str(resumed.last_weights))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[-1]["val_loss"] == pytest.approx(whole.history[-1]["val_loss"])
    assert (resumed.run_dir / "figures" / "reconstruction_epoch002.png").is_file()


def test_plain_folders_are_decoded_and_split(tmp_path):
    source = write_tone_dataset(tmp_path / "audio", clips_per_class=4, seconds=0.5)
    (source / "notes.txt").write_text("not audio")
    (source / "broken.wav").write_bytes(b"RIFF garbage")
    data = collect_unlabelled([source], val_fraction=0.25, seed=0)
    assert data.train_clips + data.val_clips == 12
    assert data.val_clips == 3
    assert data.skipped and data.skipped[0][0].endswith("broken.wav")
    again = collect_unlabelled([source], val_fraction=0.25, seed=0)
    assert again.val[0][1] == data.val[0][1]
    config = resolve_pretrain_config(
        overrides={"epochs": 1, "batch_size": 4, "val_fraction": 0.25}, model_args=TINY
    )
    result = pretrain(data=[source], config=config, runs_dir=tmp_path / "runs")
    assert result.train_clips == 9 and result.val_clips == 3
    assert result.history[0]["val_loss"] is not None


def test_bad_data_is_clear(runner, tmp_path, tone_prepared):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSetError, match="neither a prepared set nor a folder"):
        collect_unlabelled([empty], val_fraction=0.1, seed=0)
    result = runner.invoke(app, ["pretrain", "audiomae", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such folder" in result.stderr
    result = runner.invoke(app, ["pretrain", "cnn", "--data", str(tone_prepared)])
    assert result.exit_code == 2 and "only the audiomae encoder" in result.stderr
    with pytest.raises(BadInputError, match="not a pretraining run"):
        pretrain(data=None, resume=tmp_path)
