"""Fine-tuning from a pretraining run: ``--init``, ``--layer-decay``, ``--linear-probe``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from serenesense_cli.cli import app
from serenesense_cli.config import load_toml
from serenesense_cli.models import create_model
from serenesense_cli.models.init import load_encoder_init
from serenesense_cli.train import engine
from serenesense_cli.train.config import TrainConfig, resolve_pretrain_config
from serenesense_cli.train.engine import read_history
from serenesense_cli.train.pretrain import pretrain

TINY = {"size": "tiny", "depth": 1, "decoder_depth": 1, "clip_seconds": 2.0}


@pytest.fixture(scope="module")
def pretrain_run(tone_prepared, tmp_path_factory) -> Path:
    config = resolve_pretrain_config(
        overrides={"epochs": 1, "batch_size": 8, "figure_every": 0}, model_args=TINY
    )
    runs = tmp_path_factory.mktemp("pretrain_runs")
    return pretrain(data=[tone_prepared], config=config, runs_dir=runs, name="mae").run_dir


def _encoder(weights: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(weights)).items() if k.startswith("encoder.")}


def _train_args(data: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "train",
        "audiomae",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--runs-dir",
        str(runs),
        *extra,
    ]


def test_init_loads_the_pretrained_encoder(pretrain_run):
    pretrained = _encoder(pretrain_run / "weights" / "last.safetensors")
    model = create_model("audiomae", num_classes=3, size="tiny", depth=1, clip_seconds=2.0)
    report = load_encoder_init(model, pretrain_run)
    assert report.loaded == len(pretrained)
    assert report.ignored and all(
        k.startswith("decoder") or k == "mask_token" for k in report.ignored
    )
    for key, value in model.state_dict().items():
        if key.startswith("encoder."):
            assert torch.equal(value, pretrained[key]), key
    stored = load_file(str(pretrain_run / "weights" / "last.safetensors"))
    assert report.normalization == (float(stored["frontend.mean"]), float(stored["frontend.std"]))


def test_linear_probe_keeps_the_encoder_and_takes_its_args(
    runner, pretrain_run, tone_prepared, tmp_path
):
    result = runner.invoke(
        app,
        _train_args(
            tone_prepared, tmp_path, "--init", str(pretrain_run), "--linear-probe", "--epochs", "2"
        ),
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert "encoder initialised from" in result.stderr and "linear probe" in result.stderr
    saved = load_toml(run_dir / "config.toml")
    assert saved["linear_probe"] is True
    assert saved["init"] == str((pretrain_run / "weights" / "last.safetensors").resolve())
    # encoder arguments come from the pretraining run
    assert saved["model_args"]["depth"] == 1 and saved["model_args"]["clip_seconds"] == 2.0
    pretrained = load_file(str(pretrain_run / "weights" / "last.safetensors"))
    tuned = load_file(str(run_dir / "weights" / "last.safetensors"))
    for key, value in tuned.items():
        if key.startswith("encoder.") or key in ("frontend.mean", "frontend.std"):
            assert torch.equal(value, pretrained[key]), key
    history = read_history(run_dir)
    assert [row["epoch"] for row in history] == [1, 2] and history[-1]["train_loss"] > 0


def test_full_fine_tune_with_layer_decay_resumes(runner, pretrain_run, tone_prepared, tmp_path):
    pretrained = _encoder(pretrain_run / "weights" / "last.safetensors")
    args = _train_args(
        tone_prepared,
        tmp_path,
        "--init",
        str(pretrain_run),
        "--layer-decay",
        "0.75",
        "--epochs",
        "2",
        "--max-steps",
        "3",
        "--lr",
        "1e-3",
        "--scheduler",
        "constant",
    )
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    run_dir = Path(first.stdout.strip().splitlines()[-1])
    saved = load_toml(run_dir / "config.toml")
    assert saved["layer_decay"] == 0.75 and saved["linear_probe"] is False
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir), "--max-steps", "0"])
    assert resumed.exit_code == 0, resumed.output
    history = read_history(run_dir)
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["lr"] == pytest.approx(1e-3)  # the head's (top) rate
    tuned = _encoder(run_dir / "weights" / "last.safetensors")
    assert not torch.equal(
        tuned["encoder.blocks.0.mlp.fc1.weight"], pretrained["encoder.blocks.0.mlp.fc1.weight"]
    )


def test_layer_decay_groups_scale_the_learning_rate():
    model = create_model("audiomae", num_classes=3, size="tiny", depth=2, clip_seconds=2.0)
    config = TrainConfig(
        model="audiomae", optimizer="adamw", lr=1.0, weight_decay=0.05, layer_decay=0.5
    )
    optimizer = engine._build_optimizer(model, config)
    lr_of = {}
    wd_of = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            lr_of[id(param)] = group["lr"]
            wd_of[id(param)] = group["weight_decay"]
    params = dict(model.named_parameters())
    expected = {
        "encoder.patch_embed.proj.weight": 0.125,
        "encoder.cls_token": 0.125,
        "encoder.pos_embed": 0.125,
        "encoder.blocks.0.attn.qkv.weight": 0.25,
        "encoder.blocks.1.mlp.fc2.weight": 0.5,
        "encoder.norm.weight": 1.0,
        "head.0.weight": 1.0,
        "head.3.bias": 1.0,
    }
    for name, lr in expected.items():
        assert lr_of[id(params[name])] == pytest.approx(lr), name
    assert wd_of[id(params["encoder.blocks.0.attn.qkv.weight"])] == 0.05
    assert wd_of[id(params["encoder.blocks.0.attn.qkv.bias"])] == 0.0
    assert wd_of[id(params["encoder.cls_token"])] == 0.0
    assert len(lr_of) == len(params)
    assert engine.peak_lr(optimizer) == pytest.approx(1.0)


def test_fine_tune_options_are_checked(runner, pretrain_run, tone_prepared, tmp_path):
    result = runner.invoke(
        app, ["train", "cnn", "--data", str(tone_prepared), "--init", str(pretrain_run)]
    )
    assert result.exit_code == 2 and "--init initialises the audiomae encoder" in result.stderr
    result = runner.invoke(
        app,
        [
            "train",
            "cnn",
            "--data",
            str(tone_prepared),
            "--layer-decay",
            "0.75",
            "--epochs",
            "1",
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "--layer-decay" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(tmp_path), "--linear-probe"])
    assert result.exit_code == 2 and "cannot change a resumed run" in result.stderr
    result = runner.invoke(
        app, _train_args(tone_prepared, tmp_path, "--init", str(tmp_path / "nothing.pth"))
    )
    assert result.exit_code == 2 and "checkpoint not found" in result.stderr
    result = runner.invoke(
        app, _train_args(tone_prepared, tmp_path, "--init", str(pretrain_run), "--size", "small")
    )
    assert result.exit_code == 2 and "does not fit the encoder" in result.stderr
    assert not (tmp_path / "train").exists() or not any((tmp_path / "train").iterdir())
