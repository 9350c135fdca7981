"""``serenesense evaluate MODEL --data DIR``: score a model on a data set.

MODEL is a run folder, a ``.safetensors`` file or an ``.onnx`` file; the same
windows and metrics apply to each. The path of ``metrics.json`` is the last
stdout line in table format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._output import (
    OutputFormat,
    emit_csv,
    emit_json,
    emit_result_path,
    emit_table,
    format_value,
    log,
    progress_bars,
    warn,
)
from serenesense_cli.inference.devices import INFERENCE_DEVICES
from serenesense_cli.limits import COMMANDS

_MAX_LISTED = 20
"""Skipped files listed on stderr; all of them are in metrics.json."""

_SUMMARY_KEYS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("macro_f1", "macro-F1"),
    ("weighted_f1", "weighted F1"),
    ("top2_accuracy", "top-2 accuracy"),
    ("ece", "expected calibration error (15 bins)"),
    ("log_loss", "log loss"),
    ("clips", "clips"),
    ("windows", "windows"),
    ("mean_inference_ms_per_clip", "mean inference time per clip (ms)"),
)


def evaluate_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="Run folder, .safetensors weights or .onnx model (FP32 or INT8).",
            show_default=False,
        ),
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Prepared set, or a raw source (folder per class, MAD tree, manifest CSV).",
            show_default=False,
        ),
    ],
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="train, val or test (also training, validation, testing). Prepared sets: "
            "default test. Raw sources: default every clip; with --split, the clips the "
            "source assigns to it. val also writes thresholds.csv (per-class thresholds).",
        ),
    ] = None,
    hop: Annotated[
        float | None,
        typer.Option(
            "--hop",
            help="Seconds between window starts (default: half the model's window: a clip's score "
            "averages overlapping windows; detect uses 1 s for event timing).",
            callback=within(COMMANDS["hop"]),
        ),
    ] = None,
    gain_db: Annotated[
        float,
        typer.Option(
            "--gain-db",
            help="Scale every clip by this gain (dB, clipped to full scale) before scoring: "
            "how the model does on a quieter or louder microphone.",
            min=-60.0,
            max=40.0,
        ),
    ] = 0.0,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            "-b",
            help="Windows per model call.",
            min=1,
            callback=within(COMMANDS["batch"]),
        ),
    ] = 32,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="Inference threads (default: CPUs available).",
            min=1,
            callback=within(COMMANDS["threads"]),
        ),
    ] = None,
    no_spin: Annotated[
        bool,
        typer.Option(
            "--no-spin",
            help="Idle inference threads sleep instead of spinning (.onnx models): "
            "steadier on small or busy machines.",
        ),
    ] = False,
    device: Annotated[
        Literal[INFERENCE_DEVICES],
        typer.Option(
            "--device",
            help="Compute device (cuda: GPU providers / torch CUDA, else the CPU, said).",
        ),
    ] = "cpu",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for metrics.json and predictions.csv (default: RUN/eval/<data>-<split>/ "
            "for a run folder, <stem>.eval/<data>-<split>/ beside a model file).",
            file_okay=False,
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output: a table, JSON or CSV.")
    ] = OutputFormat.table,
) -> None:
    """Score every clip of a data set with MODEL and compute all metrics.

    Accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1,
    confusion matrix, top-2 accuracy, calibration (ECE) and inference time;
    clips longer than the model window are scored with sliding windows
    (see docs/evaluation.md).

    Examples:

      serenesense evaluate runs/train/cnn --data prepared/

      serenesense evaluate runs/train/cnn/export/model.int8.onnx --data prepared/ -f json

      serenesense evaluate runs/train/cnn --data my_recordings/ --out eval_field/

      serenesense evaluate runs/train/cnn --data prepared/ --split val --gain-db -10 --out quiet/
    """
    if hop is not None:
        from serenesense_cli.evaluate.windows import check_hop_seconds

        check_hop_seconds(hop)  # before the model loads
    from serenesense_cli.evaluate.run import evaluate_model

    with progress_bars(transient=True) as on_progress:
        result = evaluate_model(
            model=model,
            data=data,
            split=split,
            hop_seconds=hop,
            gain_db=gain_db,
            batch_size=batch_size,
            threads=threads,
            spin=not no_spin,
            device=device,
            out=out,
            on_progress=on_progress,
        )
    for note in result.notes:
        warn(note)
    for path, problem in result.skipped[:_MAX_LISTED]:
        warn(f"skipped {path}: {problem}")
    if len(result.skipped) > _MAX_LISTED:
        warn(f"... and {len(result.skipped) - _MAX_LISTED} more (see {result.metrics_path})")
    if gain_db:
        log(f"every clip was scaled by {gain_db:+g} dB before scoring")
    log(f"wrote {result.metrics_path} and {result.predictions_path}")
    if result.thresholds_path is not None:
        log(f"wrote per-class thresholds (best F1 on this split) to {result.thresholds_path}")
    if result.latest_path is not None:
        log(f"the last evaluation is also in {result.latest_path}")
    _render(result, output_format)


def _render(result: Any, output_format: OutputFormat) -> None:
    from rich.markup import escape  # user strings (class names, paths) are not markup

    payload = result.report
    if output_format is OutputFormat.json:
        emit_json({**payload, "metrics_path": str(result.metrics_path)})
        return
    if output_format is OutputFormat.csv:
        emit_csv(_long_rows(payload), ["metric", "class", "value"])
        return
    summary, data = payload["summary"], payload["data"]
    where = f"{data['path']} ({data['kind']}" + (
        f", {data['split']} split)" if data["split"] else ", all clips)"
    )
    emit_table(
        # Each value formatted by its own metric's kind (a rate, ms, a count).
        [
            {"metric": label, "value": format_value(summary.get(key), key)}
            for key, label in _SUMMARY_KEYS
        ],
        ["metric", "value"],
        title=escape(f"{payload['model']['path']} on {where}"),
        caption=escape(
            f"Window policy: {payload['window_policy']['description']}. "
            f"Timing: {payload['timing']['note']}."
        ),
    )
    emit_table(
        payload["per_class"],  # cells are plain text, never markup: names stay as they are
        ["class", "precision", "recall", "f1", "support", "predicted"],
        title="Per class",
    )
    matrix = payload["confusion_matrix"]
    classes = [escape(c) for c in matrix["classes"]]
    columns = [f"c{j}" for j in range(len(classes))]
    rows = [
        {"true": name, **dict(zip(columns, matrix["counts"][i], strict=True))}
        for i, name in enumerate(matrix["classes"])
    ]
    emit_table(
        rows,
        ["true", *columns],
        headers=["true \\ predicted", *classes],
        title="Confusion matrix (counts; rows = true class)",
    )
    emit_result_path(result.metrics_path)


def _long_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """``metric,class,value`` rows: the summary, then per-class scores."""
    rows = [
        {"metric": key, "class": "", "value": payload["summary"].get(key)}
        for key, _ in _SUMMARY_KEYS
    ]
    for entry in payload["per_class"]:
        for key in ("precision", "recall", "f1", "support"):
            rows.append({"metric": key, "class": entry["class"], "value": entry[key]})
    return rows
