"""``serenesense score DETECTIONS REFERENCE``: event-based F1 of detections against an annotation.

Both files may be in any format ``detect`` writes (json, jsonl, csv, raven,
audacity, birdnet-csv) or a ground truth ``class,start,end`` CSV; the rule is
DCASE's (see docs/detection.md, "Scoring against a reference").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._options import option
from serenesense_cli.cli._output import (
    OutputFormat,
    emit_csv,
    emit_json,
    emit_table,
    format_value,
    log,
    warn,
)
from serenesense_cli.limits import COMMANDS

DEFAULT_COLLAR = 0.5
"""detect/scoring.py's default, repeated so --help needs no import of the library."""
DEFAULT_OFFSET_FRACTION = 0.2
SCORE_COLUMNS = ("class", "reference", "detected", "tp", "fp", "fn", "precision", "recall", "f1")


def score_command(
    detections: Annotated[
        Path,
        typer.Argument(help="Detected events: a file detect wrote.", show_default=False),
    ],
    reference: Annotated[
        Path,
        typer.Argument(
            help="Reference events: Audacity labels, a Raven table, a CSV with "
            "class,start,end (and file), or any detect output.",
            show_default=False,
        ),
    ],
    collar: Annotated[
        float,
        option(
            "Onset collar in seconds: a detection's start within this of the reference's.",
            "--collar",
            callback=within(COMMANDS["collar"]),
        ),
    ] = DEFAULT_COLLAR,
    offset_fraction: Annotated[
        float,
        option(
            "Offset collar: max(--collar, this x the reference event's length).",
            "--offset-fraction",
            callback=within(COMMANDS["offset_fraction"]),
        ),
    ] = DEFAULT_OFFSET_FRACTION,
    onset_only: Annotated[
        bool, option("Match onsets only (ignore where events end).", "--onset-only")
    ] = False,
    output_format: Annotated[
        OutputFormat, option("Output: a table, JSON or CSV.", "--format", "-f")
    ] = OutputFormat.table,
) -> None:
    """Score detections against a reference annotation: event-based precision, recall, F1.

    A detection matches a reference event of the same class in the same
    recording when it starts within --collar seconds of it and ends within
    max(--collar, --offset-fraction x its length), one to one (DCASE's rule,
    as sed_eval computes it). Prints per-class and overall scores.

    Examples:

      serenesense score night.detections.csv night.labels.txt

      serenesense score results/combined.detections.csv truth.csv --collar 1 -f json
    """
    from serenesense_cli.detect.scoring import score_event_files

    scores, unannotated = score_event_files(
        detections,
        reference,
        collar=collar,
        offset_fraction=None if onset_only else offset_fraction,
    )
    if unannotated:
        shown = ", ".join(unannotated[:3]) + (" ..." if len(unannotated) > 3 else "")
        warn(f"{len(unannotated)} recording(s) with detections but no reference left out: {shown}")
    summary = scores.summary()
    rows = _rows(summary)
    if output_format is OutputFormat.json:
        emit_json({**summary, "unannotated": unannotated})
        return
    if output_format is OutputFormat.csv:
        emit_csv(rows, SCORE_COLUMNS)
        return
    offsets = (
        "onsets only" if onset_only else f"offsets max({collar:g} s, {offset_fraction:g} x length)"
    )
    emit_table(rows, SCORE_COLUMNS, title=f"events matched within {collar:g} s ({offsets})")
    macro, error_rate = summary["macro_f1"], summary["error_rate"]
    log(
        f"{summary['files']} recording(s); F1 {format_value(summary['overall']['f1'], 'f1')} "
        f"overall, macro {format_value(macro, 'f1')}; error rate {_fmt(error_rate)}"
    )


def _rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"class": name, **row} for name, row in summary["per_class"].items()]
    rows.append({"class": "(all)", **summary["overall"]})
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
