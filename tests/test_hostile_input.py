"""Hostile input: option ranges, model arguments, mutated audio, silent changes.

Every case ends in a one-line error (exit 2), a warning or correct output,
never in "unexpected ... this is a bug", and mutated files stay within a
memory bound (issue 14).
"""

from __future__ import annotations

import importlib.util
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer

from serenesense_cli.cli import app
from serenesense_cli.errors import SereneSenseError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _hostile_module():
    spec = importlib.util.spec_from_file_location("hostile_audio", BENCHMARKS / "hostile_audio.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_audio"] = module
    spec.loader.exec_module(module)
    return module


def _no_bug(result) -> None:
    assert "unexpected" not in result.output and "this is a bug" not in result.output, result.output


# ------------------------------------------------------------ option ranges


def _numeric_options():
    """(command path, option) for every int/float option of every command."""
    found = []

    def walk(command, prefix):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])
            return
        for param in command.params:
            annotation = getattr(param.type_descriptor, "annotation", None)
            if annotation in (int, float) and param.opts:
                found.append((" ".join(prefix), param))

    walk(typer.main.get_command(app), [])
    return found


def test_every_numeric_option_has_a_range():
    options = _numeric_options()
    assert len(options) > 40
    unbounded = [
        f"{command} {param.opts[0]}"
        for command, param in options
        if param.callback is None and (param.min is None or param.max is None)
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "m.onnx", "--threads", "100000"],
        ["bench", "m.onnx", "--batch", "100000"],
        ["bench", "m.onnx", "--duration", "1e9"],
        ["bench", "m.onnx", "--warmup", "-1"],
        ["train", "melcnn", "--data", "d", "--lr", "nan"],
        ["train", "melcnn", "--data", "d", "--lr", "1e30"],
        ["train", "melcnn", "--data", "d", "--seed", "-1"],
        ["train", "melcnn", "--data", "d", "--label-smoothing", "1"],
        ["train", "melcnn", "--data", "d", "--workers", "1000"],
        ["pretrain", "audiomae", "--data", "d", "--mask-ratio", "1"],
        ["detect", "x.wav", "--model", "m.onnx", "--smooth", "0"],
        ["detect", "x.wav", "--model", "m.onnx", "--threads", "0"],
        ["detect", "x.wav", "--model", "m.onnx", "--hop", "0.001"],
        ["detect", "x.wav", "--model", "m.onnx", "--silence-dbfs", "6"],
        ["evaluate", "run", "--data", "d", "--batch-size", "100000"],
        ["export", "run", "--out", "m.onnx", "--opset", "99"],
        ["quantize", "m.onnx", "--calib-clips", "0"],
        ["demo", "--out", "o", "--epochs", "0"],
        ["models", "--num-classes", "1"],
        ["data", "synth", "--out", "o", "--max-seconds", "1e9"],
        ["data", "prepare", "src", "--out", "o", "--val-fraction", "1"],
    ],
)
def test_out_of_range_values_are_refused_naming_the_range(runner, argv):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    _no_bug(result)
    line = result.stderr.strip().splitlines()[0]
    assert line.startswith("Error: --") and "must be within" in line, line


def test_silence_off_and_in_range_values_still_parse(runner, tmp_path):
    # -inf is the documented "off" for --silence-dbfs; the file check comes after parsing.
    result = runner.invoke(
        app,
        [
            "detect",
            str(tmp_path / "absent.wav"),
            "--model",
            str(tmp_path / "m.onnx"),
            "--silence-dbfs=-inf",
            "--smooth",
            "1",
        ],
    )
    assert "must be within" not in result.output


def test_config_file_values_get_the_flags_ranges(tmp_path):
    from serenesense_cli.errors import ConfigError
    from serenesense_cli.train.config import resolve_train_config

    for text, match in (
        ("lr = 1e30\n", "lr must be within"),
        ("seed = -5\n", "seed must be within"),
        ("betas = [2.0, 0.9]\n", "betas must each be within"),
        ("[model_args]\nnum_classes = 3\n", "must not set num_classes"),
    ):
        config = tmp_path / "c.toml"
        config.write_text(text)
        with pytest.raises(ConfigError, match=match):
            resolve_train_config("melcnn", config_file=config)


# ------------------------------------------------------------ model arguments


@pytest.mark.parametrize(
    ("model", "args", "match"),
    [
        ("cnn", "channels = [-4, 8, 8]", "negative dimension"),
        ("cnn", "head_dropout = 5", "dropout probability"),
        ("melcnn", "dropout = 5", "dropout probability"),
        ("melcnn", "channels = [-4, 8, 8]", "channels must be positive"),
        ("melcnn", "bogus = 1", "has no argument 'bogus'"),
    ],
)
def test_impossible_model_arguments_are_one_line_errors(
    runner, tone_prepared, tmp_path, model, args, match
):
    config = tmp_path / "c.toml"
    config.write_text(f"[model_args]\n{args}\n")
    result = runner.invoke(
        app,
        [
            "train",
            model,
            "--data",
            str(tone_prepared),
            "--epochs",
            "1",
            "--config",
            str(config),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert result.exit_code == 2, result.output
    _no_bug(result)
    assert result.stderr.count("\n") <= 2 and match in result.stderr  # Error: + Hint:


# ------------------------------------------------------------ mutated audio


def test_mutated_files_load_or_fail_cleanly_within_a_memory_bound(tmp_path):
    from serenesense_cli.audio.io import load_audio

    paths = _hostile_module().write_mutations(tmp_path / "m", 240, seed=7)
    outcomes = {"loaded": 0, "refused": 0}
    tracemalloc.start()
    try:
        for path in paths:
            try:
                samples = load_audio(path)
            except SereneSenseError as error:
                assert str(path) in error.message or path.name in error.message, error.message
                outcomes["refused"] += 1
                continue
            assert samples.dtype == np.float32 and samples.ndim == 1
            assert samples.size <= 16_000 * 3600, f"{path}: {samples.size} samples"
            outcomes["loaded"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcomes["loaded"] > 20 and outcomes["refused"] > 20, outcomes
    assert peak < 200e6, f"peak allocation {peak / 1e6:.0f} MB"


def test_mutated_files_through_prepare_are_skipped_or_kept(tmp_path):
    from serenesense_cli.data.prepare import prepare_dataset

    paths = _hostile_module().write_mutations(tmp_path / "m", 120, seed=11)
    tracemalloc.start()
    try:
        result = prepare_dataset([tmp_path / "m"], tmp_path / "prepared")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.decoded + len(result.skipped) == len(paths)
    assert len(result.skipped) > 10 and result.decoded > 10
    assert all(problem for _, problem in result.skipped)
    assert peak < 300e6, f"peak allocation {peak / 1e6:.0f} MB"


def test_a_header_with_absurd_channels_or_length_is_refused_before_decoding(tmp_path):
    from serenesense_cli.audio.io import probe_audio
    from serenesense_cli.data.prepare import MAX_CLIP_SECONDS, prepare_dataset
    from serenesense_cli.errors import AudioFileError

    wide = tmp_path / "wide.wav"
    sf.write(wide, np.zeros((100, 80), np.float32), 16_000)
    with pytest.raises(AudioFileError, match="80 channels"):
        probe_audio(wide)
    # A WAV whose header claims more than MAX_CLIP_SECONDS (the data is there: a
    # sparse file), next to a normal clip; prepare skips it without decoding.
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    long = source / "a" / "long.wav"
    rate = 1_000
    with sf.SoundFile(long, "w", rate, 1, subtype="PCM_U8", format="WAV") as handle:
        handle.write(np.zeros(10, np.float32))
    frames = (MAX_CLIP_SECONDS + 10) * rate
    raw = bytearray(long.read_bytes())
    raw[40:44] = frames.to_bytes(4, "little")
    raw[4:8] = (36 + frames).to_bytes(4, "little")
    with long.open("wb") as handle:
        handle.write(raw[:44])
        handle.truncate(44 + frames)
    for name in ("a/ok.wav", "b/ok.wav"):
        sf.write(source / name, np.full(8000, 0.1, np.float32), 16_000)
    result = prepare_dataset([source], tmp_path / "prepared")
    problems = dict(result.skipped)
    assert "too long" in problems[str(long)]


# ------------------------------------------------------------ silent changes


def _anti_phase(path: Path) -> Path:
    t = np.arange(16_000) / 16_000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([tone, -tone], axis=1).astype(np.float32), 16_000)
    return path


def test_channels_that_cancel_and_clipped_peaks_are_warned_in_prepare(runner, tmp_path):
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    _anti_phase(source / "a" / "anti.wav")
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)
    sf.write(source / "b" / "loud.wav", (5 * tone).astype(np.float32), 16_000, subtype="FLOAT")
    sf.write(source / "b" / "fine.wav", tone.astype(np.float32), 16_000)
    result = runner.invoke(app, ["data", "prepare", str(source), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("anti.wav" in w and "cancel when mixed to mono" in w for w in warnings)
    assert any("loud.wav" in w and "samples reach 1.5" in w and "clipped" in w for w in warnings)
    assert not any("fine.wav" in w for w in warnings)


def test_channels_that_cancel_are_warned_in_detect(runner, tmp_path):
    import torch

    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    torch.manual_seed(0)
    run = tmp_path / "run"
    save_model(run / "weights" / "best.safetensors", create_model("cnn", num_classes=2), ("a", "b"))
    wav = _anti_phase(tmp_path / "anti.wav")
    result = runner.invoke(app, ["detect", str(wav), "--model", str(run), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "anti.wav: its channels cancel when mixed to mono" in result.stderr


def test_a_group_pattern_without_a_capture_group_is_refused(runner, tmp_path):
    source = tmp_path / "src"
    for label in ("a", "b"):
        (source / label).mkdir(parents=True)
        sf.write(source / label / "rec1_0.wav", np.full(8000, 0.1, np.float32), 16_000)
    result = runner.invoke(
        app,
        [
            "data",
            "prepare",
            str(source),
            "--out",
            str(tmp_path / "p"),
            "--group-pattern",
            r"^rec\d+",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "has no capture group" in result.stderr and "parentheses" in result.stderr


# ------------------------------------------------------------ bench worker


def test_a_failing_benchmark_is_one_line_without_traceback(monkeypatch, tmp_path):
    import json

    from serenesense_cli.bench import latency, run, worker
    from serenesense_cli.bench.run import BenchError

    def broken(*args, **kwargs):
        raise ValueError("shapes (1,3) and (4,) not aligned\nsecond line")

    monkeypatch.setattr(latency, "measure_model", broken)
    result_path = tmp_path / "result.json"
    settings = json.dumps(latency.BenchSettings(threads=1).to_dict())
    assert worker.main(["m.onnx", settings, str(result_path)]) == worker.ERROR_EXIT
    document = json.loads(result_path.read_text())
    assert document["error"] == (
        "m.onnx: the benchmark failed (ValueError: shapes (1,3) and (4,) not aligned)"
    )
    # A worker that dies without a result: the exit status, never its stderr.
    monkeypatch.setattr(run.sys, "executable", "/bin/false")
    with pytest.raises(BenchError) as info:
        run.measure_isolated(tmp_path / "m.onnx", latency.BenchSettings(threads=1), stage="bench")
    assert info.value.message.endswith("ended without a result (exit code 1)")
    assert "Traceback" not in info.value.message
