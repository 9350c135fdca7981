"""``serenesense report RUN... --out DIR``: Markdown + HTML report over run folders.

Figures are PNGs in ``DIR/figures``; ``report.html`` embeds them, so it can be
mailed or archived alone. The path of ``report.html`` is the last stdout line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serenesense_cli.cli._output import (
    OutputFormat,
    emit_csv,
    emit_json,
    emit_result_path,
    emit_table,
    log,
    progress_bars,
    warn,
)


def report_command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders (training or pretraining runs) to report on and compare.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for report.md, report.html, report.json and figures/.",
            file_okay=False,
            show_default=False,
        ),
    ],
    title: Annotated[
        str | None, typer.Option("--title", help="Report title (default: the run names).")
    ] = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            "-f",
            help="The comparison on stdout as a table, JSON (with the files written) or CSV.",
        ),
    ] = OutputFormat.table,
) -> None:
    """Write a Markdown + HTML report comparing RUN folders.

    Training curves, confusion matrices, per-class F1, calibration, and a
    comparison table and figure; every kept evaluation, INT8 and benchmark
    results, clips per class and split, an example log-mel per class, the
    most confidently misclassified clips, and precision-recall curves with
    per-class thresholds from the validation predictions. Anything a run
    folder lacks is shown as missing (see docs/reports.md). A report already in --out is replaced,
    with a warning; --out cannot be one of the run folders.

    Examples:

      serenesense report runs/train/cnn runs/train/crnn runs/train/audiomae --out report/

      serenesense report runs/train/cnn --out report_cnn --title "CNN on SESA"

      serenesense report runs/train/* --out report/ -f csv > comparison.csv
    """
    from serenesense_cli.report.build import build_report

    with progress_bars(transient=True) as on_progress:
        result = build_report(runs=runs, out=out, title=title, on_progress=on_progress)
    for problem in result.problems:
        warn(f"{problem}; the report shows it as missing")
    if result.replaced:
        warn(f"replaced the report that was in {result.out_dir}")
    log(f"wrote {result.markdown}, {len(result.figures)} figure(s) in {result.out_dir / 'figures'}")
    from serenesense_cli.report.build import COMPARISON_COLUMNS

    columns = [key for key, _ in COMPARISON_COLUMNS]
    if output_format is OutputFormat.json:
        emit_json(
            {
                "html": str(result.html),
                "markdown": str(result.markdown),
                "json": str(result.json),
                "figures": [str(path) for path in result.figures],
                "comparison": result.rows,
                "problems": result.problems,
            }
        )
        return
    if output_format is OutputFormat.csv:
        emit_csv(result.rows, columns)
        return
    if result.rows:
        headers = [label for _, label in COMPARISON_COLUMNS]
        emit_table(result.rows, columns, headers=headers, title="Comparison")
    emit_result_path(result.html)
