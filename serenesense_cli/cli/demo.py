"""``serenesense demo``: every stage on built-in synthetic data, in a few minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._output import (
    OutputFormat,
    emit_json,
    emit_result_path,
    emit_table,
    format_value,
    log,
    progress_bars,
)
from serenesense_cli.demo import DEMO_EPOCHS, DEMO_TIME_LIMIT
from serenesense_cli.limits import COMMANDS, SEED


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything.")] = Path("demo"),
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model to train (default: the recommended one)."),
    ] = None,
    epochs: Annotated[
        int,
        typer.Option(
            "--epochs",
            help="Training epochs (a fixed count: the same figures on every run).",
            callback=within(COMMANDS["demo_epochs"]),
        ),
    ] = DEMO_EPOCHS,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            help="Stop training after this many seconds at the latest (0: no cap).",
            callback=within(COMMANDS["demo_time_limit"]),
        ),
    ] = DEMO_TIME_LIMIT,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for data and training.", callback=within(SEED))
    ] = 0,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Summary as a table, JSON or CSV.")
    ] = OutputFormat.table,
) -> None:
    """Synthesise, prepare, train, evaluate, export, quantize, bench, detect, report.

    No download needed: the data set and the test recording are synthesised.

    Examples:

      serenesense demo

      serenesense demo --out /tmp/demo --seed 1 -f json | jq .paths.report
    """
    from serenesense_cli.demo import run_demo

    with progress_bars() as on_progress:
        result = run_demo(
            out,
            model=model,
            epochs=epochs,
            time_limit=time_limit,
            seed=seed,
            on_progress=on_progress,
        )
    if output_format is OutputFormat.json:
        emit_json(
            {
                "paths": {k: str(v) for k, v in result.paths.items()},
                "figures": result.figures,
                "events": result.events,
                "true_events": result.truth,
                "event_match": result.matches,
            }
        )
        return
    emit_table(
        [{"what": k, "value": format_value(v, k)} for k, v in result.figures.items()],
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
        [
            {
                "true event": f"{e['class']} {e['start']:.1f}-{e['end']:.1f} s",
                "found": "yes" if found else "no",
            }
            for e, found in zip(result.truth, result.truth_found, strict=True)
        ],
        ["true event", "found"],
        title=(
            f"True events: {result.matches.get('found', 0)} of {len(result.truth)} found, "
            f"{result.matches.get('unmatched_detections', 0)} detection(s) matching none"
        ),
    )
    emit_table(
        [{"what": k, "where": str(v)} for k, v in result.paths.items()],
        ["what", "where"],
        title="Where everything went",
    )
    log(f"open {result.paths['report']} in a browser for the report")
    emit_result_path(result.out_dir)
