"""``serenesense export MODEL``: ONNX with the front end inside, checked for parity.

With ``--bundle DIR`` it writes a Raspberry Pi deployment folder instead
(INT8 model, requirements, systemd unit, README). The output path is the last
line on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from serenesense_cli.cli.quantize import QuantMode
from serenesense_cli.limits import COMMANDS


def export_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="Training run folder or .safetensors weights (.onnx too with --bundle).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="ONNX file to write (default: RUN/export/model.onnx, or beside the weights).",
        ),
    ] = None,
    opset: Annotated[
        int,
        typer.Option(
            "--opset", help="ONNX opset (17 or newer).", callback=within(COMMANDS["opset"])
        ),
    ] = 18,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            help="Largest allowed |p_onnx - p_torch| on the parity clips (probabilities).",
            callback=within(COMMANDS["tolerance"]),
        ),
    ] = 1e-3,
    parity_data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="Prepared data set whose clips check parity (and calibrate a --bundle). "
            "Default: the model's own training set, else synthetic clips.",
        ),
    ] = None,
    parity_data_old: Annotated[
        Path | None,
        typer.Option("--parity-data", help="Old spelling of --data.", hidden=True),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Write a Raspberry Pi folder: INT8 model, requirements, systemd unit, README.",
        ),
    ] = None,
    mode: Annotated[
        QuantMode, typer.Option("--mode", help="INT8 mode for --bundle (auto: per model).")
    ] = QuantMode.auto,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Summary as a table, JSON or CSV.")
    ] = OutputFormat.table,
) -> None:
    """Export MODEL to ONNX: raw 16 kHz waveform in, class scores out.

    The graph is checked with onnx.checker and compared with the torch model
    on real clips; the export fails (exit 1, no file) above --tolerance.

    Examples:

      serenesense export runs/train/cnn

      serenesense export runs/train/audiomae --out audiomae.onnx --data prepared/

      serenesense export runs/train/cnn --bundle pi-bundle/ --data prepared/
    """
    if parity_data is None:
        parity_data = parity_data_old
    from serenesense_cli.errors import BadInputError

    if bundle is not None:
        if out is not None:
            raise BadInputError("--out and --bundle do not go together", hint="use one of them")
        from serenesense_cli.export.bundle import make_bundle

        with progress_bars() as on_progress:
            made = make_bundle(
                model,
                bundle,
                mode=mode.value,
                parity_data=parity_data,
                on_progress=on_progress,
            )
        for note in made.notes:
            log(f"note: {note}")
        if made.export is not None:
            log(_parity_line(made.export))
        if made.quantize is not None:
            log(
                f"INT8 ({made.quantize.mode}): {made.quantize.size_fp32 / 1e6:.2f} MB -> "
                f"{made.quantize.size_int8 / 1e6:.2f} MB, top-1 agreement "
                f"{made.quantize.top1_agreement:.1%} on {made.quantize.agreement_clips} clips"
            )
        emit_fields(made.summary(), output_format, title="Edge bundle")
        if output_format is OutputFormat.table:
            emit_result_path(made.directory)
        return

    if model.suffix.lower() == ".onnx":
        raise BadInputError(
            f"{model}: already an ONNX model",
            hint="quantize it with `serenesense quantize`, or bundle it with --bundle DIR",
        )
    from serenesense_cli.export.onnx import export_onnx

    with progress_bars() as on_progress:
        result = export_onnx(
            model,
            out,
            opset=opset,
            parity_data=parity_data,
            tolerance=tolerance,
            on_progress=on_progress,
        )
    for note in result.notes:
        warn(note)
    log(_parity_line(result))
    emit_fields(result.summary(), output_format, title="ONNX export")
    if output_format is OutputFormat.table:
        emit_result_path(result.path)


def _parity_line(result: Any) -> str:
    return (
        f"parity: max |Δp| {result.max_abs_diff:.2e} (logits {result.max_abs_diff_logits:.2e}), "
        f"top-1 agreement {result.top1_agreement:.1%} on {result.parity_clips} clips from "
        f"{result.parity_source}"
    )
