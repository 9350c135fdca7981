"""Training: the CLI, run folders, resume exactness, errors, distributed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from serenesense_cli.cli import app
from serenesense_cli.config import load_toml
from serenesense_cli.errors import DataSetError, TrainingError
from serenesense_cli.models.artifact import read_metadata
from serenesense_cli.train import engine
from serenesense_cli.train.engine import read_history, train

QUICK = {"epochs": 3, "batch_size": 8}
TINY_VIT = {"size": "tiny", "depth": 1, "drop_path": 0.0}


def _weights(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "weights" / f"{which}.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def test_cli_train_writes_a_complete_run_folder(runner, tone_prepared, tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "cnn",
            "--data",
            str(tone_prepared),
            "--recipe",
            "reference",  # a constant learning rate over two epochs
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--name",
            "demo",
        ],
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir == tmp_path / "runs" / "train" / "demo"
    for name in (
        "config.toml",
        "history.csv",
        "weights/best.safetensors",
        "weights/best.json",
        "weights/last.safetensors",
        "weights/last_state.pt",
        "train.log",
        "curves.png",
        "confusion.png",
    ):
        assert (run_dir / name).is_file(), name
    for png in ("curves.png", "confusion.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log_lines = (run_dir / "train.log").read_text(encoding="utf-8").splitlines()
    assert "started:" in log_lines[0]
    epochs = [line.split(" ", 2)[2] for line in log_lines if ": train_loss " in line]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1", "epoch 2"]
    assert "epoch 2: train_loss" in log_lines[-2] and "val_macro_f1" in log_lines[-2]
    assert "stopped (completed) after 2 epoch(s)" in log_lines[-1]
    history = read_history(run_dir)
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["lr"] == pytest.approx(1e-3) for row in history)
    saved = load_toml(run_dir / "config.toml")
    assert saved["model"] == "cnn" and saved["epochs"] == 2 and saved["batch_size"] == 8
    assert saved["optimizer"] == "adam" and saved["scheduler"] == "plateau"
    meta = read_metadata(run_dir)
    assert meta["classes"] == ["high", "low", "noise"]
    assert "val_macro_f1" in meta["metrics"]

    again = runner.invoke(
        app,
        [
            "train",
            "cnn",
            "--data",
            str(tone_prepared),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--name",
            "demo",
            "--format",
            "json",
        ],
    )
    assert again.exit_code == 0, again.output
    import json

    payload = json.loads(again.stdout)
    assert payload["run_dir"] == str(tmp_path / "runs" / "train" / "demo2")


def test_small_models_learn_the_tone_set(tone_prepared, tmp_path):
    result = train(
        data=tone_prepared,
        model="cnn",
        runs_dir=tmp_path,
        overrides={"epochs": 15, "batch_size": 8},  # the default recipe warms up first
    )
    assert result.stopped == "completed"
    best = max(row["val_acc"] for row in result.history)
    assert best >= 0.8, result.history


def test_interrupted_and_resumed_run_matches_uninterrupted(tone_prepared, tmp_path):
    full = train(data=tone_prepared, model="cnn", runs_dir=tmp_path, name="full", overrides=QUICK)
    cut = train(
        data=tone_prepared,
        model="cnn",
        runs_dir=tmp_path,
        name="cut",
        overrides={**QUICK, "max_steps": 4},
    )
    assert cut.stopped == "max_steps" and cut.global_step == 4
    assert read_history(cut.run_dir)[-1]["partial"] == 1
    resumed = train(data=None, resume=cut.run_dir, overrides={"max_steps": 0})
    assert resumed.stopped == "completed" and resumed.global_step == full.global_step
    log = (cut.run_dir / "train.log").read_text(encoding="utf-8")  # appended on resume
    assert "stopped (max_steps)" in log and "resumed:" in log
    assert log.index("stopped (max_steps)") < log.index("resumed:")
    assert log.rstrip().endswith(f"{full.global_step} steps; best epoch {resumed.best_epoch}")
    _assert_same_weights(_weights(full.run_dir), _weights(resumed.run_dir))
    assert [r["epoch"] for r in read_history(resumed.run_dir)] == [1, 2, 3]


def test_weight_average_is_the_ema_and_is_what_best_holds(tone_prepared, tmp_path):
    from torch import nn

    from serenesense_cli.train.averaging import WeightAverage

    layer = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(layer.weight)
    average = WeightAverage(layer, 0.5)
    average.update(layer)  # the first update copies: 0
    with torch.no_grad():
        layer.weight.fill_(4.0)
    average.update(layer)  # 0.5 * 0 + 0.5 * 4
    with average.swapped_into(layer):
        assert torch.allclose(layer.weight, torch.full((1, 2), 2.0))
    assert torch.allclose(layer.weight, torch.full((1, 2), 4.0))  # raw weights back

    overrides = {**QUICK, "ema_decay": 0.9, "select_metric": "loss"}
    run = train(data=tone_prepared, model="cnn", runs_dir=tmp_path, name="ema", overrides=overrides)
    best, last = _weights(run.run_dir, "best"), _weights(run.run_dir, "last")
    assert any(not torch.equal(best[k], last[k]) for k in best), "best holds the average"
    cut = train(
        data=tone_prepared,
        model="cnn",
        runs_dir=tmp_path,
        name="ema_cut",
        overrides={**overrides, "max_steps": 4},
    )
    resumed = train(data=None, resume=cut.run_dir, overrides={"max_steps": 0})
    for which in ("last", "best"):
        _assert_same_weights(_weights(run.run_dir, which), _weights(resumed.run_dir, which))


def test_audiomae_tiny_with_mixup_resumes_exactly(tone_prepared, tmp_path):
    overrides = {"epochs": 2, "batch_size": 4, "warmup_steps": 2}
    config_file = tmp_path / "vit.toml"
    config_file.write_text("[model_args]\nsize = 'tiny'\ndepth = 1\n")
    from serenesense_cli.train.config import resolve_train_config

    config = resolve_train_config("audiomae", config_file=config_file, overrides=overrides)
    assert config.mix_prob == 0.5 and config.label_smoothing == 0.1
    full = train(data=tone_prepared, config=config, runs_dir=tmp_path, name="full")
    cut_config = resolve_train_config(
        "audiomae", config_file=config_file, overrides={**overrides, "max_steps": 3}
    )
    cut = train(data=tone_prepared, config=cut_config, runs_dir=tmp_path, name="cut")
    resumed = train(data=None, resume=cut.run_dir, overrides={"max_steps": 0})
    _assert_same_weights(_weights(full.run_dir), _weights(resumed.run_dir))
    lrs = [row["lr"] for row in read_history(full.run_dir)]
    assert lrs[0] != lrs[1], "the LR schedule must move between epochs"
    norm = _weights(full.run_dir)
    assert float(norm["frontend.std"]) != 1.0, "log-mel statistics come from the data"


def test_audiomae_base_default_runs_one_step(tone_prepared, tmp_path):
    result = train(
        data=tone_prepared,
        model="audiomae",
        runs_dir=tmp_path,
        overrides={"batch_size": 2, "max_steps": 1},
    )
    assert result.global_step == 1
    assert 85_000_000 < result.parameters < 87_000_000
    meta = read_metadata(result.run_dir / "weights" / "last.safetensors")
    assert meta["model"]["args"].get("size", "base") == "base"


def test_config_file_precedence_and_unknown_keys(runner, tone_prepared, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 1\nlr = 0.01\nbatch_size = 8\n")
    result = runner.invoke(
        app,
        [
            "train",
            "cnn",
            "--data",
            str(tone_prepared),
            "--config",
            str(cfg),
            "--lr",
            "0.005",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = load_toml(Path(result.stdout.strip().splitlines()[-1]) / "config.toml")
    assert saved["epochs"] == 1 and saved["lr"] == 0.005

    cfg.write_text("epoch = 1\n")
    bad = runner.invoke(
        app,
        [
            "train",
            "cnn",
            "--data",
            str(tone_prepared),
            "--config",
            str(cfg),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert bad.exit_code == 2
    assert "unknown setting 'epoch'" in bad.output and "epochs" in bad.output


def test_bad_inputs_are_clear(runner, tone_prepared, tmp_path):
    unknown = runner.invoke(app, ["train", "cnnn", "--data", str(tone_prepared)])
    assert unknown.exit_code == 2 and "did you mean 'cnn'" in unknown.output
    not_prepared = runner.invoke(
        app, ["train", "cnn", "--data", str(tmp_path), "--runs-dir", str(tmp_path)]
    )
    assert not_prepared.exit_code == 2 and str(tmp_path) in not_prepared.output
    size = runner.invoke(app, ["train", "cnn", "--data", str(tone_prepared), "--size", "tiny"])
    assert size.exit_code == 2
    assert not (tmp_path / "train").exists(), "no run folder for a failed start"


def test_resume_refuses_other_classes(tone_prepared, tmp_path):
    from serenesense_cli.data.prepare import prepare_dataset
    from tests.conftest import write_tone_dataset

    run = train(
        data=tone_prepared, model="cnn", runs_dir=tmp_path, overrides={**QUICK, "max_steps": 1}
    )
    other_src = write_tone_dataset(tmp_path / "other", clips_per_class=6)
    (other_src / "noise").rename(other_src / "static")
    prepare_dataset([other_src], tmp_path / "other_prepared", val_fraction=0.3, test_fraction=0.0)
    with pytest.raises(DataSetError, match="do not match"):
        train(data=tmp_path / "other_prepared", resume=run.run_dir)


def test_resume_with_another_model_name_is_refused(runner, tone_prepared, tmp_path):
    """``train crnn --resume <cnn run>`` used to train the CNN silently."""
    from serenesense_cli.cli import app

    run = train(
        data=tone_prepared, model="cnn", runs_dir=tmp_path, overrides={**QUICK, "max_steps": 1}
    )
    result = runner.invoke(app, ["train", "crnn", "--resume", str(run.run_dir)])
    assert result.exit_code == 2, result.output
    assert "a 'cnn' run, not 'crnn'" in result.stderr
    same = runner.invoke(app, ["train", "cnn", "--resume", str(run.run_dir), "--max-steps", "2"])
    assert same.exit_code == 0, same.output


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tone_prepared, tmp_path, monkeypatch):
    real_step = engine._train_step
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        loss, logits = real_step(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 5 else loss), logits

    monkeypatch.setattr(engine, "_train_step", flaky)
    with pytest.raises(TrainingError, match="loss became nan at epoch 2"):
        train(data=tone_prepared, model="cnn", runs_dir=tmp_path, name="nan", overrides=QUICK)
    run_dir = tmp_path / "train" / "nan"
    meta = read_metadata(run_dir / "weights" / "last.safetensors")
    assert meta["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in _weights(run_dir).values())


def test_nan_validation_stops_and_keeps_the_last_good_best(tone_prepared, tmp_path, monkeypatch):
    """Weights that diverge in an epoch's last step give a NaN validation: never a "best"."""
    real_validate = engine.validate
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        calls["n"] += 1
        metrics = real_validate(*args, **kwargs)
        return {**metrics, "val_loss": float("nan")} if calls["n"] == 2 else metrics

    monkeypatch.setattr(engine, "validate", diverging)
    with pytest.raises(TrainingError, match="validation val_loss became nan at epoch 2"):
        train(data=tone_prepared, model="cnn", runs_dir=tmp_path, name="vnan", overrides=QUICK)
    weights = tmp_path / "train" / "vnan" / "weights"
    assert read_metadata(weights / "best.safetensors")["epoch"] == 1
    assert read_metadata(weights / "last.safetensors")["epoch"] == 1


@pytest.mark.parametrize("damage", ["truncate_weights", "empty_weights", "truncate_state"])
def test_damaged_checkpoint_on_resume_is_a_clear_error(runner, tone_prepared, tmp_path, damage):
    from serenesense_cli.cli import app

    run = train(
        data=tone_prepared, model="cnn", runs_dir=tmp_path, overrides={**QUICK, "max_steps": 2}
    )
    weights = run.run_dir / "weights"
    target = weights / ("last_state.pt" if damage == "truncate_state" else "last.safetensors")
    data = target.read_bytes()
    target.write_bytes(b"" if damage == "empty_weights" else data[: len(data) // 2])
    result = runner.invoke(app, ["train", "--resume", str(run.run_dir)])
    assert result.exit_code == 2, result.output
    assert "the run cannot be resumed" in result.stderr
    assert "best.safetensors is written separately and is not affected" in result.stderr
    assert "this is a bug" not in result.stderr and "weights_only=False" not in result.stderr


def test_full_disk_while_checkpointing_keeps_earlier_checkpoints(
    tone_prepared, tmp_path, monkeypatch
):
    import errno

    from serenesense_cli.train import loop

    real_save = loop.save_training_state
    calls = {"n": 0}

    def full_disk(path, state):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(path, state)

    monkeypatch.setattr(loop, "save_training_state", full_disk)
    with pytest.raises(TrainingError, match="No space left on device") as info:
        train(data=tone_prepared, model="cnn", runs_dir=tmp_path, name="full", overrides=QUICK)
    assert "are intact" in info.value.hint and "--resume" in info.value.hint
    weights = tmp_path / "train" / "full" / "weights"
    assert read_metadata(weights / "last.safetensors")["epoch"] >= 1


def test_early_stopping_and_time_limit(tone_prepared, tmp_path, monkeypatch):
    flat = {"val_loss": 1.0, "val_acc": 0.5, "val_macro_f1": 0.5}
    monkeypatch.setattr(engine, "validate", lambda *args, **kwargs: dict(flat))
    stalled = train(
        data=tone_prepared,
        model="cnn",
        runs_dir=tmp_path,
        overrides={
            "epochs": 10,
            "batch_size": 8,
            "patience": 2,
            "select_metric": "accuracy",
        },
    )
    assert stalled.stopped == "early_stop" and stalled.epochs_completed == 3
    limited = train(
        data=tone_prepared,
        model="cnn",
        runs_dir=tmp_path,
        overrides={"epochs": 10, "batch_size": 8, "time_limit": 1e-6},
    )
    assert limited.stopped == "time_limit" and limited.global_step == 1
    assert (limited.run_dir / "weights" / "best.safetensors").is_file()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "serenesense_cli", *args]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            _out, err = process.communicate()
            pytest.fail(f"training ended early ({process.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.05)


def test_sigint_saves_and_sigkill_resumes(tone_prepared, tmp_path):
    runs = tmp_path / "runs"
    base = [
        "train",
        "cnn",
        "--data",
        str(tone_prepared),
        "--batch-size",
        "8",
        "--runs-dir",
        str(runs),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # Ctrl-C: clean exit 130 with a checkpoint and a hint to resume.
    proc = subprocess.Popen(
        _cli(*base, "--epochs", "500", "--name", "sigint", "--checkpoint-every", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _wait_for(runs / "train" / "sigint" / "weights" / "last_state.pt", proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    assert (runs / "train" / "sigint" / "weights" / "last.safetensors").is_file()

    # SIGKILL mid-run: resume from the last checkpoint ends like an uninterrupted run.
    full = train(data=tone_prepared, model="cnn", runs_dir=tmp_path, name="full", overrides=QUICK)
    proc = subprocess.Popen(
        _cli(*base, "--epochs", "3", "--name", "killed", "--checkpoint-every", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _wait_for(runs / "train" / "killed" / "weights" / "last_state.pt", proc)
    proc.kill()
    proc.communicate(timeout=60)
    resumed = subprocess.run(
        _cli("train", "--resume", str(runs / "train" / "killed")),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_weights(_weights(full.run_dir), _weights(runs / "train" / "killed"))


def test_torchrun_two_processes_match_one(tone_prepared, tmp_path):
    """DDP over gloo on the same global batch gives the single-process weights."""
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(
        "epochs = 2\nbatch_size = 4\nmix_prob = 0.0\nwarmup_steps = 2\n"
        "[model_args]\nsize = 'tiny'\ndepth = 1\ndrop_path = 0.0\nhead_dropout = 0.0\n"
        "freq_masks = 0\ntime_masks = 0\n"
    )
    args = [
        "train",
        "audiomae",
        "--data",
        str(tone_prepared),
        "--config",
        str(cfg),
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        _cli(*args, "--name", "single"), capture_output=True, text=True, env=env, check=False
    )
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "serenesense_cli",
            *args,
            "--name",
            "ddp",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = _weights(tmp_path / "runs" / "train" / "single")
    b = _weights(tmp_path / "runs" / "train" / "ddp")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    assert not (tmp_path / "runs" / "train" / "ddp2").exists(), "only rank 0 creates the run"


def test_a_runs_saved_config_is_reusable(tone_prepared, tmp_path):
    from serenesense_cli.train.config import resolve_train_config

    run = train(
        data=tone_prepared, model="cnn", runs_dir=tmp_path, overrides={**QUICK, "max_steps": 1}
    )
    config = resolve_train_config("cnn", config_file=run.run_dir / "config.toml")
    assert config.epochs == 3 and config.batch_size == 8


def test_the_global_batch_must_split_evenly_over_processes():
    from serenesense_cli.errors import BadInputError
    from serenesense_cli.train.distributed import DistContext, local_batch_size

    assert local_batch_size(8, DistContext(world=2)) == 4
    with pytest.raises(BadInputError, match="not divisible by the 3 processes"):
        local_batch_size(8, DistContext(world=3))
