"""Rendering for people and scripts: tables on stdout, logs and progress on stderr.

Results go to stdout (a rich table, or JSON / CSV with ``--format``); anything
else goes to stderr, so ``serenesense ... --format json | jq`` always works.
Progress bars switch themselves off when stderr is not a terminal.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from serenesense_cli.fileio import json_text, json_value
from serenesense_cli.progress import ProgressUpdate


class OutputFormat(str, Enum):
    """How a command renders its result on stdout."""

    table = "table"
    json = "json"
    csv = "csv"


PIPE_WIDTH = 1000
"""Columns a table may use when stdout is not a terminal: wide enough that no
cell is cut (``evaluate ... | cat`` keeps whole class names)."""


def stdout_console() -> Console:
    """A console on the *current* stdout (CliRunner swaps sys.stdout per call).

    In a terminal tables fit the screen; in a pipe or a file they are as wide
    as their content (rich would otherwise assume 80 columns and cut cells).
    """
    console = Console(file=sys.stdout, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def stderr_console() -> Console:
    """A console on the current stderr, for logs, warnings and progress."""
    return Console(file=sys.stderr, soft_wrap=True)


_LIVE_CONSOLES: list[Console] = []
"""Consoles of the progress displays now running (innermost last)."""


def _log_console() -> Console:
    """The running progress display's console, so a note prints above its bars
    instead of being glued onto them; else a fresh one on the current stderr."""
    # While bars run, rich wraps sys.stderr in a proxy that knows the real file.
    current = getattr(sys.stderr, "rich_proxied_file", sys.stderr)
    if _LIVE_CONSOLES and _LIVE_CONSOLES[-1].file is current:
        return _LIVE_CONSOLES[-1]
    return stderr_console()


def log(message: str) -> None:
    """A human-readable note on stderr (never mixed into machine output)."""
    _log_console().print(message, highlight=False)


def warn(message: str) -> None:
    """A warning on stderr."""
    _log_console().print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def emit_json(payload: Any) -> None:
    """Write ``payload`` as pretty JSON on stdout."""
    sys.stdout.write(json_text(payload, indent=2) + "\n")
    sys.stdout.flush()


def emit_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write rows as CSV (with a header) on stdout."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json_value(row.get(k)) for k in columns})
    sys.stdout.write(buffer.getvalue())
    sys.stdout.flush()


def emit_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    headers: Sequence[str] | None = None,
    caption: str | None = None,
) -> None:
    """Render rows as a rich table on stdout; numbers are right-aligned."""
    table = Table(title=title, caption=caption)
    for i, column in enumerate(columns):
        sample = next((r.get(column) for r in rows if r.get(column) is not None), None)
        numeric = isinstance(sample, (int, float)) and not isinstance(sample, bool)
        table.add_column(headers[i] if headers else column, justify="right" if numeric else "left")
    for row in rows:
        # Text(), not markup: cells hold user strings (paths, class names like "[red]").
        table.add_row(*(Text(format_value(row.get(c), c)) for c in columns))
    stdout_console().print(table)


def emit_fields(summary: dict[str, Any], output_format: OutputFormat, *, title: str) -> None:
    """A one-record result: JSON as is, else ``field,value`` rows (lists joined by ", ")."""
    if output_format is OutputFormat.json:
        emit_json(summary)
        return
    if output_format is OutputFormat.csv:
        rows = [{"field": key, "value": _joined(value)} for key, value in summary.items()]
        emit_csv(rows, ["field", "value"])
        return
    # The table formats each value by its own field's kind (a rate, a time, ...).
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for key, value in summary.items():
        table.add_row(Text(key), Text(format_value(_joined(value), key)))
    stdout_console().print(table)


def _joined(value: Any) -> Any:
    return ", ".join(map(str, value)) if isinstance(value, list) else value


_RATE_WORDS = ("accuracy", "acc", "f1", "precision", "recall", "agreement", "rate")
"""Name parts of a column that holds a fraction of 1 (shown as a percentage)."""


def value_kind(column: str) -> str:
    """How a column's numbers read best: ``rate``, ``points``, ``ms``, ``mb`` or ``number``.

    Why: one rule by column name keeps every table (evaluate, quantize, bench,
    demo, train) formatting the same kind of number the same way, and as the
    report does (rates as percentages).
    """
    parts = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_").split("_")
    if "ms" in parts:
        return "ms"
    if "mb" in parts:
        return "mb"
    if any(part in _RATE_WORDS for part in parts):
        return "points" if {"change", "delta", "drop"} & set(parts) else "rate"
    return "number"


def format_value(value: Any, column: str = "") -> str:
    """A table cell: rates as ``94.3%``, their changes as ``-0.4 pp``, times and
    sizes with three significant digits, other floats with four, integers with
    thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    kind = value_kind(column)
    if kind == "rate" and -1e-9 <= value <= 1 + 1e-9:
        return f"{100 * value:.1f}%"
    if kind == "points":
        return f"{100 * value:+.1f} pp"
    return _significant(value, 3 if kind in ("ms", "mb") else 4)


def _significant(value: float, digits: int) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 10**digits:  # large: no decimals needed
        return f"{value:,.0f}"
    return f"{value:,.{digits}g}"


def emit_result_path(path: Any) -> None:
    """Print a produced path as the last stdout line, so scripts can chain commands."""
    sys.stdout.write(f"{path}\n")
    sys.stdout.flush()


class _RunTimeLeft(TimeRemainingColumn):
    """Rich's time-remaining estimate, or the task's own (``eta_s``) when it sends one.

    A training run knows its ETA better than rich can guess from one bar's
    recent speed: epochs finish minutes apart and a time limit may end it first.
    """

    def render(self, task: Any) -> Text:
        eta = task.fields.get("eta_s")
        if eta is None or task.finished:
            return super().render(task)
        minutes, seconds = divmod(round(eta), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


@contextmanager
def progress_bars(*, transient: bool = False) -> Iterator[Any]:
    """A rich progress display on stderr and a callback that feeds it.

    Yields ``on_progress`` for library functions. One bar per ``stage``,
    labelled ``info["label"]`` when given (one bar reused for each epoch);
    ``info["eta_s"]`` overrides the time-remaining estimate; a stage whose
    update says ``finished`` disappears (a spinner while validating).
    Disabled (but still a valid callback) when stderr is not a terminal.
    """
    console = stderr_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        _RunTimeLeft(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )
    tasks: dict[str, Any] = {}
    labels: dict[str, str] = {}

    def on_progress(update: ProgressUpdate) -> None:
        info = update.info
        note = str(info.get("note", ""))
        label = escape(str(info.get("label", update.stage)))
        task = tasks.get(update.stage)
        if info.get("finished"):
            if task is not None:
                progress.remove_task(tasks.pop(update.stage))
            return
        if task is None:
            tasks[update.stage] = progress.add_task(
                label, total=update.total, note=note, eta_s=info.get("eta_s")
            )
        elif labels[update.stage] != label:
            progress.reset(task, total=update.total, description=label)  # the next epoch
        labels[update.stage] = label
        fields = {"eta_s": info["eta_s"]} if "eta_s" in info else {}
        progress.update(
            tasks[update.stage], completed=update.done, total=update.total, note=note, **fields
        )

    with progress:
        _LIVE_CONSOLES.append(console)
        try:
            yield on_progress
        finally:
            _LIVE_CONSOLES.remove(console)
