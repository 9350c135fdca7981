"""`serenesense demo`: every stage runs end to end on built-in data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serenesense_cli.cli import app


@pytest.mark.slow
def test_demo_runs_every_stage(runner, tmp_path, monkeypatch):
    from serenesense_cli import demo

    real = demo.run_demo

    def small(out_dir, **kwargs):
        kwargs.update(clips_per_class=8, videos_per_class=4, scene_seconds=20.0, bench_runs=3)
        return real(out_dir, **kwargs)

    monkeypatch.setattr(demo, "run_demo", small)
    result = runner.invoke(
        app,
        ["demo", "--out", str(tmp_path), "--epochs", "1", "--time-limit", "60", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    paths = payload["paths"]
    for key in ("training run", "metrics", "ONNX FP32", "ONNX INT8", "report", "test recording"):
        assert Path(paths[key]).exists(), key
    assert 0.0 <= payload["figures"]["test accuracy"] <= 1.0
    assert payload["true_events"], "the synthesised recording has known events"
    ids = [(e["class"], e["start"]) for e in payload["events"]]
    assert len(ids) == len(set(ids)), "each event is listed once"
    assert payload["figures"]["model"] == "melcnn", "the demo trains the recommended model"
    match = payload["event_match"]
    assert match["true_events"] == len(payload["true_events"])
    assert match["found"] + match["missed"] == match["true_events"]
    assert match["detected"] == len(payload["events"])
    assert "background" not in {e["class"] for e in payload["events"]}, "background is ignored"
