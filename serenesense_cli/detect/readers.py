"""Read events back: detect's own outputs and reference annotations.

Why: scoring (``serenesense score``) and pictures (``serenesense plot``)
take the files ``detect`` writes and the annotations people make, in
whichever of the usual forms they come:

- ``.json``: ``detect --format json`` (``files[].events``) or a list of events;
- ``.jsonl`` / ``.ndjson``: ``detect --format jsonl`` (``"type": "event"`` lines);
- ``.csv``: ``detect --format csv``, ``--format birdnet-csv``, a ground truth
  ``class,start,end`` (``data.scenes.write_scene``), DCASE-style
  ``filename,onset,offset,event_label``;
- ``.txt`` / ``.tsv``: a Raven selection table (a header with ``Begin Time (s)``),
  else Audacity labels (``start<TAB>end<TAB>label``, more columns ignored).

Every event becomes a :class:`~serenesense_cli.detect.scoring.FileSpan`; one
without a file name (Audacity labels, a ``class,start,end`` truth) has
``file == ""``. A malformed file is refused in one line naming it.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from serenesense_cli.detect.scoring import FileSpan
from serenesense_cli.errors import BadInputError

CLASS_COLUMNS = (
    "class",
    "event_label",
    "label",
    "Species",
    "Common Name",
    "Common name",
    "Annotation",
    "Class",
    "Scientific name",
)
START_COLUMNS = ("start", "onset", "Start (s)", "Begin Time (s)", "start_time")
END_COLUMNS = ("end", "offset", "End (s)", "End Time (s)", "end_time")
FILE_COLUMNS = ("file", "filename", "File", "Begin Path", "path")
TABLE_SUFFIXES = (".txt", ".tsv")


def read_events(path: str | Path) -> list[FileSpan]:
    """The events in ``path`` (format from the extension and, for text, the header)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a folder, not an event file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"{path}: cannot read it ({error})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(path, text)
    if suffix in (".jsonl", ".ndjson"):
        return _from_json_lines(path, text)
    if suffix == ".csv":
        return _from_table(path, list(csv.DictReader(text.splitlines())), first_line=2)
    if suffix in TABLE_SUFFIXES:
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and "Begin Time (s)" in lines[0].split("\t"):
            rows = list(csv.DictReader(lines, delimiter="\t"))
            return _from_table(path, rows, first_line=2, raven=True)
        return _from_audacity(path, lines)
    raise BadInputError(
        f"{path}: cannot tell the event format from {suffix or 'no extension'}",
        hint="use .json, .jsonl, .csv, or .txt (Raven selection table or Audacity labels)",
    )


def _number(path: Path, line: int, what: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadInputError(f"{path}: line {line}: {what} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise BadInputError(f"{path}: line {line}: {what} {raw!r} is not a finite number")
    return value


def _span(path: Path, line: int, name: Any, start: Any, end: Any, file: Any = "") -> FileSpan:
    begin = _number(path, line, "start", start)
    finish = _number(path, line, "end", end)
    if finish < begin:
        raise BadInputError(f"{path}: line {line}: the event ends ({finish:g} s) before it starts")
    if name is None or str(name).strip() == "":
        raise BadInputError(f"{path}: line {line}: the event has no class")
    return FileSpan(str(name).strip(), begin, finish, file=str(file or "").strip())


def _pick(columns: Sequence[str], names: Iterable[str]) -> str | None:
    return next((name for name in names if name in columns), None)


def _from_table(
    path: Path, rows: list[dict[str, Any]], *, first_line: int, raven: bool = False
) -> list[FileSpan]:
    if not rows:
        return []
    columns = [c for c in rows[0] if c is not None]
    name_col = _pick(columns, CLASS_COLUMNS)
    start_col = _pick(columns, ("File Offset (s)", *START_COLUMNS) if raven else START_COLUMNS)
    end_col = _pick(columns, END_COLUMNS)
    file_col = _pick(columns, FILE_COLUMNS)
    for what, column in (("class", name_col), ("start", start_col), ("end", end_col)):
        if column is None:
            raise BadInputError(
                f"{path}: no {what} column (has: {', '.join(columns)})",
                hint="an event table has class, start and end columns (file when it covers "
                "several recordings)",
            )
    events = []
    for line, row in enumerate(rows, start=first_line):
        if row.get("state", "closed") not in ("closed", None, ""):
            continue  # a jsonl-style opening, not an event
        start, end = row[start_col], row[end_col]
        if raven and start_col == "File Offset (s)":  # times within Begin Path
            offset = _number(path, line, "start", start)
            length = _number(path, line, "end", row[end_col]) - _number(
                path, line, "start", row["Begin Time (s)"]
            )
            start, end = offset, offset + length
        events.append(_span(path, line, row[name_col], start, end, row.get(file_col or "", "")))
    return events


def _from_audacity(path: Path, lines: list[str]) -> list[FileSpan]:
    events = []
    for line, text in enumerate(lines, start=1):
        if text.startswith("\\"):  # Audacity's frequency-range line of the label above
            continue
        fields = text.split("\t")
        if len(fields) < 3:
            raise BadInputError(
                f"{path}: line {line}: not an Audacity label (start<TAB>end<TAB>label)",
                hint="or use .csv / .json / .jsonl for other event tables",
            )
        events.append(_span(path, line, fields[2], fields[0], fields[1]))
    return events


def _event_dicts(path: Path, records: Iterable[Any]) -> list[FileSpan]:
    events = []
    for line, record in enumerate(records, start=1):
        if not isinstance(record, dict) or record.get("type", "event") != "event":
            continue
        if record.get("state", "closed") != "closed":
            continue
        for key in ("class", "start", "end"):
            if key not in record:
                raise BadInputError(f"{path}: event {line} has no {key!r}")
        events.append(
            _span(path, line, record["class"], record["start"], record["end"], record.get("file"))
        )
    return events


def _from_json(path: Path, text: str) -> list[FileSpan]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInputError(f"{path}: not JSON ({error})") from None
    if isinstance(document, list):
        return _event_dicts(path, document)
    if isinstance(document, dict) and isinstance(document.get("files"), list):
        events: list[dict[str, Any]] = []
        for entry in document["files"]:
            for event in entry.get("events") or []:
                events.append({"file": entry.get("path", ""), **event})
        return _event_dicts(path, events)
    raise BadInputError(
        f"{path}: not an event document (expected detect's JSON or a list of events)"
    )


def _from_json_lines(path: Path, text: str) -> list[FileSpan]:
    records = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except json.JSONDecodeError as error:
            raise BadInputError(f"{path}: line {line}: not JSON ({error.msg})") from None
    return _event_dicts(path, records)
