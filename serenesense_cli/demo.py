"""The main job on built-in data: every stage of serenesense, end to end.

Synthesise a MAD-layout data set, prepare it, train the recommended model
within a time budget, evaluate it on the test split, export it to ONNX,
quantize it to INT8, benchmark both, detect events in a synthesised recording
with known event times and count how many were found, and write a report.
Each stage is the library function behind its own command, so the demo is
also a living integration test of the whole chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serenesense_cli.progress import ProgressCallback, report

STAGES = (
    "synthesise",
    "prepare",
    "train",
    "evaluate",
    "export",
    "quantize",
    "bench",
    "detect",
    "report",
)


@dataclass
class DemoResult:
    """Where everything went, and the headline figures."""

    out_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    matches: dict[str, Any] = field(default_factory=dict)
    """Found true events and unmatched detections (:func:`match_events`)."""
    truth_found: list[bool] = field(default_factory=list)
    """For each of ``truth``: whether a detected event of its class overlaps it."""


DEMO_EPOCHS = 20
"""Training epochs of the demo: a fixed count, so the demo gives the same
figures on every run of a machine (a time budget ends at a different step each
time); 20 epochs take about 2 minutes on 2 CPU cores."""

DEMO_TIME_LIMIT = 300.0
"""A cap in seconds, so a slow machine still finishes (it then ends earlier)."""


def run_demo(
    out_dir: str | Path,
    *,
    model: str | None = None,
    epochs: int = DEMO_EPOCHS,
    time_limit: float = DEMO_TIME_LIMIT,
    clips_per_class: int = 80,
    videos_per_class: int = 16,
    scene_seconds: float = 60.0,
    seed: int = 0,
    bench_runs: int = 20,
    on_progress: ProgressCallback | None = None,
) -> DemoResult:
    """Run every stage into ``out_dir`` (re-runs replace earlier demo output).

    ``model`` defaults to the registry's recommended model, trained for
    ``epochs`` (its recipe's schedule over them), stopping after
    ``time_limit`` seconds at the latest (0: no cap). The
    synthetic set has twice ``data synth``'s default clips and sources per
    class (a quarter of the sources held out for test): with 6 training
    sources per class a model learns the sources rather than the classes
    (docs/synthetic-data.md).
    """
    from serenesense_cli.bench.run import bench_models
    from serenesense_cli.data.background import BACKGROUND_CLASS, write_background_clips
    from serenesense_cli.data.prepare import prepare_dataset
    from serenesense_cli.data.scenes import synthesize_scene, write_scene
    from serenesense_cli.data.synth import synthesize_dataset
    from serenesense_cli.detect.decisions import Event
    from serenesense_cli.detect.detector import DetectConfig
    from serenesense_cli.detect.files import detect_files
    from serenesense_cli.detect.scoring import match_events
    from serenesense_cli.evaluate.run import evaluate_model
    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.inference.backends import open_backend
    from serenesense_cli.models import recommended_model
    from serenesense_cli.report.build import build_report
    from serenesense_cli.train.engine import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out_dir=out)
    total = len(STAGES)

    def stage(index: int) -> None:
        report(on_progress, "demo", index, total, note=STAGES[index] if index < total else "done")

    stage(0)
    synth = synthesize_dataset(
        out / "synth",
        clips_per_class=clips_per_class,
        videos_per_class=videos_per_class,
        test_videos_per_class=max(1, videos_per_class // 4),
        seed=seed,
    )
    result.paths["synthetic data"] = synth.root
    # A detector needs a "nothing to report" class (see data/background.py).
    quiet = write_background_clips(out / "background", clips=clips_per_class, seed=seed)
    result.paths["background clips"] = quiet
    stage(1)
    prepared = prepare_dataset([synth.root, quiet], out / "prepared", seed=seed)
    result.paths["prepared data"] = prepared.root
    stage(2)
    runs_dir = out / "runs"
    result.model = model or recommended_model()
    run_name = f"demo-{result.model}"
    _clear_previous_run(runs_dir / "train" / run_name)
    overrides: dict[str, Any] = {"seed": seed, "epochs": epochs, "time_limit": time_limit}
    trained = train(
        data=prepared.root,
        model=result.model,
        runs_dir=runs_dir,
        name=run_name,
        overrides=overrides,
    )
    run_dir = trained.run_dir
    result.paths["training run"] = run_dir
    best = next((r for r in trained.history if r["epoch"] == trained.best_epoch), {})
    result.figures["model"] = result.model
    result.figures["training (s)"] = round(trained.seconds, 1)
    result.figures["best val accuracy"] = best.get("val_acc")
    stage(3)
    evaluation = evaluate_model(model=run_dir, data=prepared.root, split="test")
    summary = evaluation.report["summary"]
    result.figures["test accuracy"] = summary.get("accuracy")
    result.figures["test macro-F1"] = summary.get("macro_f1")
    result.paths["metrics"] = evaluation.metrics_path or run_dir / "metrics.json"
    stage(4)
    exported = export_onnx(run_dir, parity_data=prepared.root)
    result.paths["ONNX FP32"] = exported.path
    result.figures["export max abs diff"] = exported.max_abs_diff
    stage(5)
    quantized = quantize_onnx(
        exported.path, mode="auto", calib=prepared.root, data=prepared.root, split="test"
    )
    result.paths["ONNX INT8"] = quantized.path
    result.figures["INT8 top-1 agreement"] = quantized.top1_agreement
    result.figures["size FP32 / INT8 (KB)"] = (
        f"{quantized.size_fp32 / 1024:.0f} / {quantized.size_int8 / 1024:.0f}"
    )
    stage(6)
    bench = bench_models([exported.path, quantized.path], runs=bench_runs, warmup=3)
    for row in bench.results:
        name = Path(str(row.get("model", ""))).name
        latency = row.get("latency_ms") or {}
        result.figures[f"p50 latency {name} (ms)"] = latency.get("p50")
    stage(7)
    classes = [c for c in synth.classes]
    scene = synthesize_scene(seconds=scene_seconds, classes=classes, seed=seed)
    audio_path, truth_path = write_scene(scene, out / "scene" / "scene.wav")
    result.paths["test recording"] = audio_path
    result.paths["true events"] = truth_path
    result.truth = [{"class": e.class_name, "start": e.start, "end": e.end} for e in scene.events]
    backend = open_backend(quantized.path)
    latest: dict[int, Event] = {}  # an event is reported when it opens and when it closes
    detect_config = DetectConfig(ignore=(BACKGROUND_CLASS,))
    for record in detect_files([audio_path], backend=backend, config=detect_config):
        if isinstance(record, Event):
            latest[record.id] = record
    result.events = [
        {
            "class": event.class_name,
            "start": round(event.start, 2),
            "end": round(event.end, 2),
            "peak": round(event.peak, 3),
        }
        for event in sorted(latest.values(), key=lambda e: e.start)
    ]
    matched = match_events(result.truth, result.events)
    result.matches = matched.summary()
    result.truth_found = [span in matched.found for span in matched.truth]
    result.figures["true events found"] = f"{len(matched.found)} of {len(matched.truth)}"
    result.figures["unmatched detections"] = len(matched.unmatched)
    stage(8)
    built = build_report(runs=[run_dir], out=out / "report", title="serenesense demo")
    result.paths["report"] = built.html
    stage(9)
    return result


def _clear_previous_run(run_dir: Path) -> None:
    """Re-running the demo replaces its run instead of numbering a new one."""
    import shutil

    if run_dir.is_dir() and (run_dir / "config.toml").is_file():
        shutil.rmtree(run_dir)
