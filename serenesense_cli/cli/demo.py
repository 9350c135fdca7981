"""``serenesense demo``: every stage on built-in synthetic data, in a few minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serenesense_cli.cli._output import (
    OutputFormat,
    emit_json,
    emit_result_path,
    emit_table,
    log,
    progress_bars,
)


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything.")] = Path("demo"),
    epochs: Annotated[int, typer.Option("--epochs", help="CNN training epochs.")] = 15,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data and training.")] = 0,
    output_format: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """Synthesise, prepare, train, evaluate, export, quantize, bench, detect, report.

    No download needed: the data set and the test recording are synthesised.
    """
    from serenesense_cli.demo import run_demo

    with progress_bars() as on_progress:
        result = run_demo(out, epochs=epochs, seed=seed, on_progress=on_progress)
    if output_format is OutputFormat.json:
        emit_json(
            {
                "paths": {k: str(v) for k, v in result.paths.items()},
                "figures": result.figures,
                "events": result.events,
                "true_events": result.truth,
            }
        )
        return
    emit_table(
        [{"what": k, "value": v} for k, v in result.figures.items()],
        ["what", "value"],
        title="Demo figures (synthetic data, this host)",
    )
    emit_table(
        [
            {"detected": f"{e['class']} {e['start']:.1f}-{e['end']:.1f} s (peak {e['peak']:.2f})"}
            for e in result.events
        ]
        or [{"detected": "none"}],
        ["detected"],
        title="Events in the synthesised recording",
    )
    emit_table(
        [{"true event": f"{e['class']} {e['start']:.1f}-{e['end']:.1f} s"} for e in result.truth],
        ["true event"],
    )
    emit_table(
        [{"what": k, "where": str(v)} for k, v in result.paths.items()],
        ["what", "where"],
        title="Where everything went",
    )
    log(f"open {result.paths['report']} in a browser for the report")
    emit_result_path(result.out_dir)
