"""Rendering for people and scripts: tables on stdout, logs and progress on stderr.

Results go to stdout (a rich table, or JSON / CSV with ``--format``); anything
else goes to stderr, so ``serenesense ... --format json | jq`` always works.
Progress bars switch themselves off when stderr is not a terminal.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Any

from rich.console import Console
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
        table.add_row(*(Text(_format_cell(row.get(c))) for c in columns))
    stdout_console().print(table)


def emit_fields(summary: dict[str, Any], output_format: OutputFormat, *, title: str) -> None:
    """A one-record result: JSON as is, else ``field,value`` rows (lists joined by ", ")."""
    if output_format is OutputFormat.json:
        emit_json(summary)
        return
    rows = [
        {"field": key, "value": ", ".join(map(str, value)) if isinstance(value, list) else value}
        for key, value in summary.items()
    ]
    if output_format is OutputFormat.csv:
        emit_csv(rows, ["field", "value"])
    else:
        emit_table(rows, ["field", "value"], title=title)


def _format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def emit_result_path(path: Any) -> None:
    """Print a produced path as the last stdout line, so scripts can chain commands."""
    sys.stdout.write(f"{path}\n")
    sys.stdout.flush()


@contextmanager
def progress_bars(*, transient: bool = False) -> Iterator[Any]:
    """A rich progress display on stderr and a callback that feeds it.

    Yields ``on_progress`` for library functions. One bar per ``stage``.
    Disabled (but still a valid callback) when stderr is not a terminal.
    """
    console = stderr_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def on_progress(update: ProgressUpdate) -> None:
        note = str(update.info.get("note", ""))
        if update.stage not in tasks:
            tasks[update.stage] = progress.add_task(update.stage, total=update.total, note=note)
        progress.update(tasks[update.stage], completed=update.done, total=update.total, note=note)

    with progress:
        _LIVE_CONSOLES.append(console)
        try:
            yield on_progress
        finally:
            _LIVE_CONSOLES.remove(console)
