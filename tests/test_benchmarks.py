"""The benchmark scripts: the baseline's figures, the training table and its doc block."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_baseline_fits_train_chooses_on_val_and_scores_test(tone_prepared):
    baseline = _load("baseline")
    result = baseline.run_baseline(tone_prepared)
    assert result["C"] in baseline.C_GRID
    for key in ("val_acc", "val_macro_f1", "test_acc", "test_macro_f1"):
        assert 0.0 <= result[key] <= 1.0
    assert result["test_acc"] >= 0.9, "three tone classes are easy for clip statistics"
    assert baseline.clip_features([0.0] * 100).shape == (2 * 64 + 2 * 20,)


def _row(model: str, seed: int, f1: float) -> dict:
    return {
        "model": model,
        "args": {},
        "recipe": "default",
        "select_metric": "loss",
        "seed": seed,
        "parameters": 1000,
        "seconds": 600.0,
        "epochs": 10,
        "val_acc": 0.9,
        "val_macro_f1": f1,
        "test_acc": 0.8,
        "test_macro_f1": f1,
        "int8_test_macro_f1": f1,
        "int8_agreement": 1.0,
    }


def test_training_table_has_the_baseline_every_run_and_the_spread(tmp_path):
    bench = _load("train_real")
    rows = [_row("melcnn", 0, 0.8), _row("melcnn", 1, 0.9), _row("cnn", 0, 0.7)]
    baseline = {"val_acc": 0.7, "val_macro_f1": 0.6, "test_acc": 0.7, "test_macro_f1": 0.6}
    table = bench.render_table(rows, baseline)
    assert "baseline" in table and table.count("| melcnn |") == 3  # two runs + the spread
    assert "0.850 ± 0.071" in table
    doc = tmp_path / "training.md"
    doc.write_text(f"# T\n\n{bench.BEGIN}\nold\n{bench.END}\n\nafter\n", encoding="utf-8")
    bench.write_doc(doc, table, "header")
    text = doc.read_text(encoding="utf-8")
    assert "old" not in text and "header" in text and text.endswith("after\n")


@pytest.mark.parametrize("argv", [["--help"]])
def test_scripts_have_a_usage(argv, capsys):
    for name in ("baseline", "train_real", "gain_robustness"):
        with pytest.raises(SystemExit) as info:
            _load(name).main(argv)
        assert info.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_gain_robustness_scores_every_gain_and_tabulates(monkeypatch, tone_prepared):
    bench = _load("gain_robustness")
    seen = []

    class _Result:
        def __init__(self, gain):
            self.summary = {"accuracy": 1.0, "macro_f1": 1.0 + gain / 100}

    def fake_evaluate(*, model, data, split, gain_db, write):
        seen.append((split, gain_db, write))
        return _Result(gain_db)

    monkeypatch.setattr("serenesense_cli.evaluate.run.evaluate_model", fake_evaluate)
    row = bench.gain_scores("m.onnx", tone_prepared, gains=(-10.0, 0.0))
    assert seen == [("val", -10.0, False), ("val", 0.0, False)]
    table = bench.render_table([row])
    assert "| -10 dB | 0 dB |" in table and "| m.onnx | 0.900 | 1.000 |" in table
