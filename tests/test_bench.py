"""Benchmarks: results saved for reports, side-by-side table, pi5 profile and budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serenesense_cli.cli import app

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

RESULT_KEYS = {
    "model",
    "kind",
    "latency_ms",
    "load_s",
    "throughput_clips_per_s",
    "batch",
    "peak_rss_mb",
    "threads",
    "rtf",
    "hop_s",
    "host",
    "profile",
    "budget",
    "created",
}
QUICK = ["--runs", "3", "--warmup", "1", "--batch", "2"]


def toy_onnx(path: Path, *, samples: int = 1600) -> Path:
    """A serenesense-style ONNX model without the exporter: waveform -> 3 class scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from serenesense_cli.export.graph import set_metadata

    weights = np.random.default_rng(0).standard_normal((samples, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["waveform", "w"], ["logits"], name="head"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", samples])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
        ],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    set_metadata(
        model,
        {
            "classes": ["a", "b", "c"],
            "sample_rate": 16000,
            "clip_seconds": samples / 16000,
            "model": {"name": "toy", "args": {}},
            "export": {"quantization": None},
        },
    )
    onnx.save(model, str(path))
    return path


@pytest.fixture
def toy(tmp_path) -> Path:
    return toy_onnx(tmp_path / "toy.onnx")


def test_bench_onnx_saves_json_for_reports(runner, toy):
    result = runner.invoke(app, ["bench", str(toy), *QUICK])
    assert result.exit_code == 0, result.output
    saved = toy.with_name("toy.bench.json")
    assert result.stdout.strip().splitlines()[-1] == str(saved)
    data = json.loads(saved.read_text())
    assert set(data) >= RESULT_KEYS
    assert set(data["latency_ms"]) >= {"p50", "p90", "p99", "max", "mean"}
    assert data["kind"] == "onnx" and data["precision"] == "fp32"
    assert data["batch"] == 2 and data["runs"] == 3 and data["hop_s"] == 1.0
    assert data["budget"] is None and data["profile"] == "default"
    assert data["rtf"] == pytest.approx(data["latency_ms"]["mean"] / 1000.0)
    assert data["peak_rss_mb"] > 0 and data["throughput_clips_per_s"] > 0
    assert "p99 ms" in result.stdout and "peak RSS MB" in result.stdout


def test_onnx_and_torch_side_by_side(runner, toy, tmp_path):
    import torch

    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    torch.manual_seed(0)
    run = tmp_path / "run"
    model = create_model("cnn", num_classes=3, clip_seconds=1.0).eval()
    save_model(run / "weights" / "best.safetensors", model, ["a", "b", "c"])
    result = runner.invoke(
        app, ["bench", str(toy), str(run), *QUICK, "--hop", "0.5", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    kinds = [r["kind"] for r in report["results"]]
    assert kinds == ["onnx", "torch"]
    assert all(r["hop_s"] == 0.5 for r in report["results"])
    assert (run / "bench.json").is_file()
    assert json.loads((run / "bench.json").read_text())["kind"] == "torch"


def test_table_puts_models_side_by_side(runner, toy, tmp_path):
    other = toy_onnx(tmp_path / "other.onnx", samples=800)
    table = runner.invoke(app, ["bench", str(toy), str(other), *QUICK, "--no-save"])
    assert table.exit_code == 0, table.output
    header = next(line for line in table.stdout.splitlines() if "metric" in line)
    assert "toy.onnx" in header and "other.onnx" in header
    assert "real-time factor" in table.stdout and "budget" not in table.stdout


def test_pi5_profile_budget_pass_and_fail(runner, toy):
    quick = ["--duration", "1", "--warmup", "1"]
    passed = runner.invoke(app, ["bench", str(toy), "--profile", "pi5", *quick, "--no-save"])
    assert passed.exit_code == 0, passed.output
    assert "PASS" in passed.stdout
    failed = runner.invoke(
        app,
        ["bench", str(toy), "--profile", "pi5", *quick, "--budget-ms", "0.0001", "-f", "json"],
    )
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    result = report["results"][0]
    assert report["passed"] is False
    assert result["budget"]["latency_ok"] is False and result["budget"]["ok"] is False
    assert result["threads"] == 4 and result["batch"] == 1 and result["profile"] == "pi5"
    assert result["sustained"]["calls"] >= 1
    from serenesense_cli.bench.host import is_raspberry_pi5

    if not is_raspberry_pi5():
        assert "not a Raspberry Pi" in failed.stderr
    memory = runner.invoke(app, ["bench", str(toy), *QUICK, "--budget-mb", "1", "--no-save"])
    assert memory.exit_code == 1 and "FAIL" in memory.stdout


def test_bad_requests_exit_2(runner, toy, tmp_path):
    assert runner.invoke(app, ["bench", str(tmp_path / "none.onnx")]).exit_code == 2
    text = tmp_path / "notes.txt"
    text.write_text("x")
    assert runner.invoke(app, ["bench", str(text)]).exit_code == 2
    assert runner.invoke(app, ["bench", str(toy), "--hop", "0"]).exit_code == 2
    assert runner.invoke(app, ["bench", str(toy), "--threads", "0"]).exit_code == 2


def test_host_info_reads_a_raspberry_pi(tmp_path, monkeypatch):
    from serenesense_cli.bench import host

    model = tmp_path / "model"
    model.write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("61250\n")
    freq = tmp_path / "cpufreq"
    freq.mkdir()
    (freq / "scaling_cur_freq").write_text("2400000\n")
    (freq / "cpuinfo_max_freq").write_text("2400000\n")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nModel\t\t: Raspberry Pi 5 Model B\n")
    monkeypatch.setattr(host, "DEVICE_TREE_MODEL", (model,))
    monkeypatch.setattr(host, "THERMAL_GLOB", str(tmp_path / "thermal_zone*"))
    monkeypatch.setattr(host, "CPUFREQ", freq)
    monkeypatch.setattr(host, "CPUINFO", cpuinfo)
    info = host.host_info()
    assert info["board"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert info["raspberry_pi5"] is True
    assert info["temp_c"] == pytest.approx(61.25)
    assert info["clock_mhz"] == pytest.approx(2400.0)
    assert info["cpu"] == "Raspberry Pi 5 Model B"

    from serenesense_cli.bench.latency import BenchSettings
    from serenesense_cli.bench.run import host_notes

    notes = host_notes("pi5", info, BenchSettings(threads=4))
    assert not any("not a Raspberry Pi" in n for n in notes)


def test_host_info_says_not_available(tmp_path, monkeypatch):
    from serenesense_cli.bench import host

    monkeypatch.setattr(host, "DEVICE_TREE_MODEL", (tmp_path / "none",))
    monkeypatch.setattr(host, "THERMAL_GLOB", str(tmp_path / "none*"))
    monkeypatch.setattr(host, "CPUFREQ", tmp_path / "none")
    info = host.host_info()
    assert info["board"] is None and info["temp_c"] is None and info["clock_mhz"] is None
    assert info["raspberry_pi"] is False


def test_statistics_and_budget_helpers():
    from serenesense_cli.bench.latency import percentiles, sustained_summary
    from serenesense_cli.bench.run import check_budget, resolve_budget, resolve_settings

    stats = percentiles(list(range(1, 101)))
    assert stats["max"] == 100 and stats["p50"] == pytest.approx(50.5)
    assert stats["mean"] == pytest.approx(50.5)

    latencies = [10.0] * 10 + [20.0] * 10
    stamps = [0.1 * (i + 1) for i in range(20)]
    summary = sustained_summary(latencies, stamps, [{"temp_c": 50.0, "clock_mhz": 2400.0}])
    assert summary["first_mean_ms"] == 10.0 and summary["last_mean_ms"] == 20.0
    assert summary["slowdown"] == pytest.approx(1.0)

    settings = resolve_settings("pi5")
    assert (settings.threads, settings.batch, settings.duration) == (4, 1, 60.0)
    assert resolve_settings("pi5", runs=5).duration == 0.0
    budget = resolve_budget("pi5", None, None)
    assert budget == {"latency_ms": 500.0, "latency_stat": "p99", "memory_mb": 2048.0}
    assert resolve_budget("default", None, None) is None
    ok = check_budget({"latency_ms": {"p99": 400.0}, "peak_rss_mb": 300.0}, budget)
    assert ok["ok"] is True
    slow = check_budget({"latency_ms": {"p99": 600.0}, "peak_rss_mb": 300.0}, budget)
    assert slow["ok"] is False and slow["memory_ok"] is True
