"""``serenesense evaluate``: outputs, files, class checks, skipped files, ONNX = torch."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serenesense_cli.cli import app
from serenesense_cli.data.cache import open_prepared
from serenesense_cli.evaluate.run import PROB_PREFIX, evaluate_model
from serenesense_cli.evaluate.windows import slice_windows, window_starts
from tests.conftest import write_tone_dataset


@pytest.fixture(scope="module")
def tone_run(tone_prepared, tmp_path_factory) -> Path:
    """A cnn trained for two epochs on the tone set."""
    from serenesense_cli.train.engine import train

    result = train(
        data=tone_prepared,
        model="cnn",
        runs_dir=tmp_path_factory.mktemp("eval_runs"),
        name="cnn",
        overrides={"epochs": 2, "batch_size": 8},
    )
    return result.run_dir


def read_predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_json_output_and_written_files_agree(runner, tone_run, tone_prepared, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(tone_run),
            "--data",
            str(tone_prepared),
            "--format",
            "json",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    saved = json.loads((out / "metrics.json").read_text())
    assert payload["metrics_path"] == str(out / "metrics.json")
    assert {k: v for k, v in payload.items() if k != "metrics_path"} == saved

    prepared = open_prepared(tone_prepared)
    test_clips = prepared.indices("test")
    classes = saved["model"]["classes"]
    assert classes == ["high", "low", "noise"]  # the model's order
    assert saved["data"]["split"] == "test" and saved["data"]["kind"] == "prepared"
    assert saved["summary"]["clips"] == len(test_clips)
    assert saved["model"]["file"].endswith("best.safetensors")
    assert saved["window_policy"]["window_seconds"] == 3.0
    assert saved["window_policy"]["hop_seconds"] == 1.5
    assert saved["timing"]["mean_ms_per_clip"] > 0 and saved["timing"]["threads"] >= 1
    assert saved["skipped"] == []

    rows = read_predictions(out / "predictions.csv")
    assert len(rows) == len(test_clips)
    assert {r["path"] for r in rows} == {prepared.records[i].source_path for i in test_clips}
    accuracy = sum(int(r["correct"]) for r in rows) / len(rows)
    assert accuracy == pytest.approx(saved["summary"]["accuracy"])
    counts = Counter((r["true"], r["predicted"]) for r in rows)
    matrix = [[counts[(t, p)] for p in classes] for t in classes]
    assert matrix == saved["confusion_matrix"]["counts"]
    for row in rows:
        probs = [float(row[PROB_PREFIX + c]) for c in classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert classes[int(np.argmax(probs))] == row["predicted"]
        assert int(row["windows"]) == 1  # 1.2 s clips, 3 s window: one padded window
    true_counts = Counter(r["true"] for r in rows)
    assert [e["support"] for e in saved["per_class"]] == [true_counts[c] for c in classes]


def test_table_output_writes_metrics_into_the_run_folder(runner, tone_run, tone_prepared):
    result = runner.invoke(app, ["evaluate", str(tone_run), "--data", str(tone_prepared)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    kept = tone_run / "eval" / f"{tone_prepared.name}-test"
    assert lines[-1] == str(kept / "metrics.json")
    assert (kept / "metrics.json").is_file() and (kept / "predictions.csv").is_file()
    # the last evaluation is also where older readers look for it
    assert (tone_run / "metrics.json").is_file() and (tone_run / "predictions.csv").is_file()
    for text in ("macro-F1", "top-2 accuracy", "Window policy", "Confusion matrix", "noise"):
        assert text in result.stdout


def test_each_data_set_and_split_is_kept(runner, tone_run, tone_prepared):
    """val then test keeps both; `validation` is `val`; val writes the thresholds."""
    for split in ("validation", "test"):
        result = runner.invoke(
            app, ["evaluate", str(tone_run), "--data", str(tone_prepared), "--split", split]
        )
        assert result.exit_code == 0, result.output
    val = tone_run / "eval" / f"{tone_prepared.name}-val"
    test = tone_run / "eval" / f"{tone_prepared.name}-test"
    assert json.loads((val / "metrics.json").read_text())["data"]["split"] == "val"
    assert json.loads((test / "metrics.json").read_text())["data"]["split"] == "test"
    assert json.loads((tone_run / "metrics.json").read_text())["data"]["split"] == "test"
    assert not (test / "thresholds.csv").exists()  # chosen on validation only
    with (val / "thresholds.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["class", "threshold", "precision", "recall", "f1", "support"]
    predictions = read_predictions(val / "predictions.csv")
    present = {r["true"] for r in predictions}
    assert {r["class"] for r in rows} == present
    for row in rows:  # the best-F1 cut, checked against the predictions themselves
        cut = float(row["threshold"])
        hits = [float(r[PROB_PREFIX + row["class"]]) >= cut for r in predictions]
        truth = [r["true"] == row["class"] for r in predictions]
        tp = sum(h and t for h, t in zip(hits, truth, strict=True))
        assert tp / sum(truth) == pytest.approx(float(row["recall"]), abs=1e-4)
        assert tp / sum(hits) == pytest.approx(float(row["precision"]), abs=1e-4)
        assert 0.0 <= cut <= 1.0


def test_csv_output_is_long_format(runner, tone_run, tone_prepared, tmp_path):
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(tone_run),
            "--data",
            str(tone_prepared),
            "--split",
            "val",
            "-f",
            "csv",
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.stdout.splitlines()))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["data"]["split"] == "val"
    by_key = {(r["metric"], r["class"]): r["value"] for r in rows}
    assert float(by_key[("accuracy", "")]) == pytest.approx(saved["summary"]["accuracy"])
    assert int(by_key[("support", "low")]) == saved["per_class"][1]["support"]


def test_class_mismatch_is_a_clear_error(runner, tone_run, tmp_path):
    source = write_tone_dataset(tmp_path / "src", clips_per_class=2, seconds=0.5)
    (source / "low").rename(source / "siren")
    result = runner.invoke(app, ["evaluate", str(tone_run), "--data", str(source)])
    assert result.exit_code == 2
    assert "'siren'" in result.stderr and "not classes of the model" in result.stderr
    assert "Traceback" not in result.stderr


def test_raw_folder_with_fewer_classes_and_a_corrupt_file(runner, tone_run, tmp_path):
    source = write_tone_dataset(tmp_path / "src", clips_per_class=3, seconds=0.8)
    for item in (source / "noise").iterdir():
        item.unlink()
    (source / "noise").rmdir()  # a subset of the model's classes is fine
    (source / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["evaluate", str(tone_run), "--data", str(source), "-f", "json", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "broken.wav" in result.stderr
    saved = json.loads((out / "metrics.json").read_text())
    assert len(saved["skipped"]) == 1 and saved["skipped"][0]["path"].endswith("broken.wav")
    assert saved["summary"]["clips"] == 6
    assert saved["data"]["kind"] == "folder" and saved["data"]["split"] is None
    noise = next(e for e in saved["per_class"] if e["class"] == "noise")
    assert noise["support"] == 0 and noise["recall"] is None
    assert len(read_predictions(out / "predictions.csv")) == 6


def test_bad_arguments_exit_2(runner, tone_run, tone_prepared, tmp_path):
    source = write_tone_dataset(tmp_path / "src", clips_per_class=1, seconds=0.3)
    cases = [
        ["evaluate", str(tone_run), "--data", str(source), "--split", "test"],  # no splits
        ["evaluate", str(tmp_path / "nope"), "--data", str(tone_prepared)],
        ["evaluate", str(tone_run), "--data", str(tone_prepared), "--hop", "5"],
        ["evaluate", str(tone_run), "--data", str(tone_prepared), "--hop", "0.001"],
        ["evaluate", str(tone_run), "--data", str(tone_prepared), "--split", "holdout"],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("Error: "), result.stderr


def test_outputs_never_overwrite_the_data(runner, tone_run, tmp_path):
    manifest = tmp_path / "d" / "predictions.csv"  # a data manifest named like an output
    manifest.parent.mkdir()
    manifest.write_text("path,label\n", encoding="utf-8")
    result = runner.invoke(
        app, ["evaluate", str(tone_run), "--data", str(manifest), "--out", str(manifest.parent)]
    )
    assert result.exit_code == 2 and "would overwrite an input" in result.stderr
    assert manifest.read_text(encoding="utf-8") == "path,label\n"


@dataclass
class FakeBackend:
    """Probabilities that depend on each window's samples, calls recorded."""

    classes: tuple[str, ...] = ("high", "low", "noise")
    sample_rate: int = 16_000
    clip_samples: int = 8_000
    kind: str = "fake"
    path: Path = Path("fake.model")
    metadata: dict[str, Any] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        assert waves.dtype == np.float32 and waves.shape[1] == self.clip_samples
        self.batches.append(len(waves))
        return fake_probs(waves)


def fake_probs(waves: np.ndarray) -> np.ndarray:
    a = np.clip(np.abs(waves).mean(axis=1) * 2, 0, 1).astype(np.float64)
    b = np.clip(np.abs(waves[:, :100]).mean(axis=1), 0, 1) * (1 - a)
    return np.stack([a, b, 1 - a - b], axis=1)


def test_clip_probabilities_are_the_mean_of_window_probabilities(
    monkeypatch, tone_prepared, tmp_path
):
    backend = FakeBackend()
    monkeypatch.setattr("serenesense_cli.inference.backends.open_backend", lambda *a, **k: backend)
    result = evaluate_model(
        model=tmp_path / "fake.model", data=tone_prepared, split="test", batch_size=3, write=False
    )
    prepared = open_prepared(tone_prepared)
    test_clips = prepared.indices("test")
    hop = backend.clip_samples // 2
    expected_windows = 0
    for i, row in zip(test_clips, result.predictions, strict=True):
        wave = prepared.waveform(i)
        windows = slice_windows(wave, backend.clip_samples, hop)
        assert len(windows) == len(window_starts(len(wave), backend.clip_samples, hop)) == 4
        expected = fake_probs(windows).mean(axis=0)
        got = [row[PROB_PREFIX + c] for c in backend.classes]
        np.testing.assert_allclose(got, expected, rtol=1e-9)
        assert row["windows"] == len(windows)
        expected_windows += len(windows)
    assert result.summary["windows"] == expected_windows
    # windows are batched across clips: full batches of 3, then the rest
    assert sum(backend.batches) == expected_windows
    assert all(size == 3 for size in backend.batches[:-1])
    assert result.report["window_policy"]["hop_seconds"] == 0.25
    assert result.metrics_path is None


def test_gain_scales_every_clip_before_scoring(monkeypatch, tone_prepared, tmp_path):
    backend = FakeBackend()
    monkeypatch.setattr("serenesense_cli.inference.backends.open_backend", lambda *a, **k: backend)
    result = evaluate_model(
        model=tmp_path / "fake.model", data=tone_prepared, split="test", gain_db=-20, write=False
    )
    prepared = open_prepared(tone_prepared)
    for i, row in zip(prepared.indices("test"), result.predictions, strict=True):
        quiet = prepared.waveform(i) * np.float32(0.1)
        windows = slice_windows(quiet, backend.clip_samples, backend.clip_samples // 2)
        got = [row[PROB_PREFIX + c] for c in backend.classes]
        np.testing.assert_allclose(got, fake_probs(windows).mean(axis=0), rtol=1e-6)
    assert result.report["gain_db"] == -20.0


def test_cli_gain_is_logged_recorded_and_range_checked(runner, tone_run, tone_prepared, tmp_path):
    out = tmp_path / "quiet"
    args = ["evaluate", str(tone_run), "--data", str(tone_prepared), "-o", str(out)]
    result = runner.invoke(app, [*args, "--gain-db", "-10"])
    assert result.exit_code == 0, result.output
    assert "scaled by -10 dB" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["gain_db"] == -10.0
    for bad in ("-100", "nan"):
        refused = runner.invoke(app, [*args, "--gain-db", bad])
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.startswith("Error: ") or "Usage" in refused.stderr


def test_cli_no_spin_is_recorded_with_the_timing(runner, tone_run, tone_prepared, tmp_path):
    out = tmp_path / "sleep"
    args = ["evaluate", str(tone_run), "--data", str(tone_prepared), "-o", str(out)]
    result = runner.invoke(app, [*args, "--no-spin", "--threads", "1"])
    assert result.exit_code == 0, result.output
    timing = json.loads((out / "metrics.json").read_text())["timing"]
    assert timing["spin"] is False and timing["threads"] == 1


def _export_onnx(run_dir: Path, out_path: Path) -> Path:
    """The project's exporter when present, else a torch.onnx export that follows
    the same convention (input waveform, outputs logits/probabilities, metadata)."""
    try:
        from serenesense_cli.export.onnx import export_onnx
    except ImportError:
        pass
    else:
        return Path(export_onnx(run_dir, out_path).path)

    import onnx
    import torch

    from serenesense_cli.models.artifact import load_model

    loaded = load_model(run_dir)

    class Wrapper(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.model(waveform)
            return logits, torch.softmax(logits, dim=-1)

    program = torch.onnx.export(
        Wrapper(loaded.model).eval(),
        (torch.zeros(2, loaded.model.clip_samples),),
        dynamo=True,
        input_names=["waveform"],
        output_names=["logits", "probabilities"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
    )
    program.save(str(out_path))
    model = onnx.load(str(out_path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "serenesense", json.dumps(loaded.metadata)
    onnx.save(model, str(out_path))
    return out_path


@pytest.mark.slow
def test_onnx_model_scores_like_the_torch_model(runner, tone_run, tone_prepared, tmp_path):
    onnx_path = _export_onnx(tone_run, tmp_path / "model.onnx")
    result = runner.invoke(
        app, ["evaluate", str(onnx_path), "--data", str(tone_prepared), "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    onnx_metrics = json.loads(result.stdout)
    assert onnx_metrics["model"]["kind"] == "onnx"
    kept = tmp_path / "model.eval" / f"{tone_prepared.name}-test"
    assert Path(onnx_metrics["metrics_path"]) == kept / "metrics.json"
    assert (kept / "predictions.csv").is_file()
    assert (tmp_path / "model.metrics.json").is_file()  # the last evaluation
    assert (tmp_path / "model.predictions.csv").is_file()

    torch_result = evaluate_model(model=tone_run, data=tone_prepared, write=False)
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "top2_accuracy", "clips"):
        assert onnx_metrics["summary"][key] == torch_result.summary[key], key
    assert onnx_metrics["summary"]["ece"] == pytest.approx(torch_result.summary["ece"], abs=1e-4)
    assert onnx_metrics["confusion_matrix"] == torch_result.report["confusion_matrix"]
    onnx_rows = read_predictions(tmp_path / "model.predictions.csv")
    classes = torch_result.report["model"]["classes"]
    for a, b in zip(onnx_rows, torch_result.predictions, strict=True):
        assert a["path"] == b["path"]
        np.testing.assert_allclose(
            [float(a[PROB_PREFIX + c]) for c in classes],
            [b[PROB_PREFIX + c] for c in classes],
            atol=1e-4,
        )


def test_thresholds_best_f1_per_class_and_the_table_round_trips(tmp_path):
    from serenesense_cli.detect.thresholds import read_threshold_table
    from serenesense_cli.errors import BadInputError
    from serenesense_cli.evaluate.thresholds import class_curves, thresholds_csv

    y_true = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array(
        [[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.2, 0.8, 0], [0.45, 0.55, 0], [0.1, 0.9, 0]]
    )
    curves = class_curves(y_true, probs, ["a", "b", "absent"])
    a, b, absent = curves
    # a: at 0.3 all three a clips and one b clip pass: P 3/4, R 1, F1 6/7 (0.6 gives 0.8)
    assert a.threshold == pytest.approx(0.3) and a.best_f1 == pytest.approx(6 / 7)
    assert b.threshold == pytest.approx(0.55) and b.best_recall == 1.0
    assert absent.threshold is None and absent.support == 0
    path = tmp_path / "thresholds.csv"
    path.write_text(thresholds_csv(curves), encoding="utf-8")
    assert path.read_text().splitlines()[0] == "class,threshold,precision,recall,f1,support"
    # the table reads back with the reader `detect --thresholds` uses
    assert read_threshold_table(path) == {"a": pytest.approx(0.3), "b": pytest.approx(0.55)}
    path.write_text("class,threshold\na,high\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="line 2: threshold 'high' is not a number"):
        read_threshold_table(path)
    path.write_text("name,value\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="no column 'class'"):
        read_threshold_table(path)
