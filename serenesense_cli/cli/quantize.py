"""``serenesense quantize MODEL.onnx``: INT8 that loads, runs and keeps the front end float.

The INT8 model is loaded and run on onnxruntime's CPU provider before the
command reports success; its path is the last line on stdout.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._output import (
    OutputFormat,
    emit_fields,
    emit_result_path,
    log,
    progress_bars,
    warn,
)
from serenesense_cli.limits import COMMANDS


class QuantMode(str, Enum):
    """INT8 mode: dynamic (MatMul/Gemm), static (QDQ, calibrated) or auto (per model)."""

    auto = "auto"
    dynamic = "dynamic"
    static = "static"


def quantize_command(
    model: Annotated[
        Path, typer.Argument(help="FP32 .onnx from `serenesense export`.", show_default=False)
    ],
    mode: Annotated[
        QuantMode,
        typer.Option(
            "--mode",
            help="dynamic (MatMul/Gemm weights; transformers), static (QDQ with calibration; "
            "CNN/CRNN) or auto (dynamic for audiomae, static otherwise).",
        ),
    ] = QuantMode.auto,
    calib: Annotated[
        Path | None,
        typer.Option(
            "--calib",
            help="Calibrate on this set instead of --data (old spelling of --data's role).",
            hidden=True,
        ),
    ] = None,
    calib_clips: Annotated[
        int,
        typer.Option(
            "--calib-clips",
            help="Calibration clips (centred windows).",
            callback=within(COMMANDS["calib_clips"]),
        ),
    ] = 64,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="Prepared data set: calibrates static INT8 (its train split) and measures the "
            "accuracy / macro-F1 change on --split. Default calibration: the model's training "
            "set, else synthetic clips.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data to measure.")] = "test",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="INT8 file (default: <stem>.int8.onnx beside MODEL)."),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Summary as a table, JSON or CSV.")
    ] = OutputFormat.table,
) -> None:
    """Quantize an exported model to INT8 with onnxruntime.quantization.

    The audio front end stays in float; Conv is never quantized dynamically
    (no ConvInteger). Reports sizes, top-1 agreement with FP32 and, with
    --data, the accuracy / macro-F1 change on a split.

    Examples:

      serenesense quantize runs/train/audiomae/export/model.onnx

      serenesense quantize runs/train/cnn/export/model.onnx --data prepared/
    """
    from serenesense_cli.export.quantize import quantize_onnx

    with progress_bars() as on_progress:
        result = quantize_onnx(
            model,
            out,
            mode=mode.value,
            calib=calib if calib is not None else data,
            calib_clips=calib_clips,
            data=data,
            split=split,
            on_progress=on_progress,
        )
    for note in result.notes:
        warn(note)
    log(
        f"INT8 ({result.mode}): {result.size_fp32 / 1e6:.2f} MB -> {result.size_int8 / 1e6:.2f} MB,"
        f" top-1 agreement {result.top1_agreement:.1%} on {result.agreement_clips} clips from "
        f"{result.agreement_source}"
    )
    if result.accuracy_change is not None:
        log(
            f"{result.data['split'] if result.data else split}: accuracy "
            f"{result.accuracy_fp32:.1%} -> {result.accuracy_int8:.1%} "
            f"({100 * result.accuracy_change:+.1f} pp), macro-F1 "
            f"{result.macro_f1_fp32:.1%} -> {result.macro_f1_int8:.1%}; same top class for "
            f"{result.summary()['split_clip_agreement']:.1%} of clips"
        )
    if result.saved is not None:
        log(f"wrote the measured results to {result.saved}")
    emit_fields(result.summary(), output_format, title="INT8 quantization")
    if output_format is OutputFormat.table:
        emit_result_path(result.path)
