"""Machine-readable detection output: JSON, JSON lines, CSV, Raven, Audacity, BirdNET CSV.

Writers take records as the detector produces them and write to a text
stream the caller owns (stdout or a temporary file renamed into place).
JSON lines, CSV and Raven rows are written (and flushed) as they come, so
output of a long recording or a live microphone never piles up in memory;
the single JSON document is written at the end.

Every record names its source (``file``: the path, or ``mic:<device>``).
Times are seconds from the start of the source; with a wall-clock origin
(the microphone) events also carry ISO 8601 UTC times.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from serenesense_cli.detect.decisions import Event, WindowDecision
from serenesense_cli.evaluate.run import prob_column
from serenesense_cli.fileio import json_text

FORMATS = ("json", "jsonl", "csv", "raven", "audacity", "birdnet-csv")
WINDOW_FORMATS = ("json", "jsonl", "csv")
"""Formats that can hold window scores (``--windows``)."""
SINGLE_SOURCE_FORMATS = ("audacity",)
"""Formats that hold one recording (an Audacity label track has no file column)."""

EVENT_COLUMNS = (
    "file",
    "id",
    "class",
    "start",
    "end",
    "duration",
    "peak",
    "mean",
    "windows",
    "state",
)
WINDOW_COLUMNS = ("file", "index", "start", "end", "label", "confidence", "level_dbfs", "silent")
RAVEN_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Common Name",
    "Species Code",
    "Confidence",
    "Begin Path",
    "File Offset (s)",
    "Species",
    "Mean Confidence",
)
"""BirdNET-Analyzer's selection table columns (the class as name and code), then
``Species`` (the class again, as earlier versions wrote it) and ``Mean Confidence``."""
BIRDNET_CSV_COLUMNS = (
    "Start (s)",
    "End (s)",
    "Scientific name",
    "Common name",
    "Confidence",
    "File",
)
"""BirdNET-Analyzer's CSV result columns; the class stands for both names."""


def _t(value: float) -> float:
    return round(float(value), 3)


def _p(value: float) -> float:
    return round(float(value), 4)


def _iso(origin: datetime, seconds: float) -> str:
    return (origin + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def event_record(event: Event, *, origin: datetime | None = None) -> dict[str, Any]:
    """One event as a flat dict (the JSON lines / JSON / CSV shape)."""
    record: dict[str, Any] = {
        "type": "event",
        "file": event.source,
        "id": event.id,
        "class": event.class_name,
        "start": _t(event.start),
        "end": _t(event.end),
        "duration": _t(event.duration),
        "peak": _p(event.peak),
        "mean": _p(event.mean),
        "windows": event.windows,
        "state": event.state,
    }
    if origin is not None:
        record["time_start"] = _iso(origin, event.start)
        record["time_end"] = _iso(origin, event.end)
    return record


def window_record(window: WindowDecision, classes: Sequence[str]) -> dict[str, Any]:
    """One window's scores and decision as a dict."""
    return {
        "type": "window",
        "file": window.source,
        "index": window.index,
        "start": _t(window.start),
        "end": _t(window.end),
        "slot_start": _t(window.slot_start),
        "slot_end": _t(window.slot_end),
        "label": window.label,
        "confidence": _p(window.confidence),
        "level_dbfs": round(float(window.level_dbfs), 1),
        "silent": window.silent,
        "scores": {c: _p(v) for c, v in zip(classes, window.scores, strict=True)},
        "smoothed": {c: _p(v) for c, v in zip(classes, window.smoothed, strict=True)},
    }


class DetectionWriter:
    """Base writer: receives the stream of a detection run; subclasses write it."""

    def __init__(
        self,
        stream: TextIO,
        *,
        classes: Sequence[str],
        sample_rate: int,
        windows: bool = False,
        header: dict[str, Any] | None = None,
    ) -> None:
        self.stream = stream
        self.classes = tuple(classes)
        self.sample_rate = sample_rate
        self.windows = windows
        self.header = dict(header or {})
        self.origin: datetime | None = None

    def start_source(self, name: str, *, duration: float | None = None) -> None:
        """A file (or the microphone) starts."""

    def event(self, event: Event) -> None:
        """An event opened or closed (the caller picks which to pass)."""

    def window(self, window: WindowDecision) -> None:
        """A window's decision (only called with ``windows=True``)."""

    def finish_source(
        self, name: str, *, seconds: float, error: str | None = None, **info: Any
    ) -> None:
        """A file (or the microphone) ended."""

    def close(self, summary: dict[str, Any]) -> None:
        """The run ended; ``summary`` holds its totals."""
        self.stream.flush()

    def _event(self, event: Event) -> dict[str, Any]:
        return event_record(event, origin=self.origin)


class JsonLinesWriter(DetectionWriter):
    """One JSON object per line, flushed at once (events, windows, errors)."""

    def _line(self, record: dict[str, Any]) -> None:
        self.stream.write(json_text(record) + "\n")
        self.stream.flush()

    def event(self, event: Event) -> None:
        self._line(self._event(event))

    def window(self, window: WindowDecision) -> None:
        self._line(window_record(window, self.classes))

    def finish_source(
        self, name: str, *, seconds: float, error: str | None = None, **info: Any
    ) -> None:
        if error is not None:
            self._line({"type": "error", "file": name, "error": error})


class JsonWriter(DetectionWriter):
    """One JSON document, written at the end: header, sources with their events."""

    def __init__(self, stream: TextIO, **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        self._sources: dict[str, dict[str, Any]] = {}

    def _source(self, name: str) -> dict[str, Any]:
        if name not in self._sources:
            self._sources[name] = {"path": name, "duration": None, "status": "running"}
            self._sources[name]["events"] = {}
            if self.windows:
                self._sources[name]["windows"] = []
        return self._sources[name]

    def start_source(self, name: str, *, duration: float | None = None) -> None:
        self._source(name)["duration"] = None if duration is None else _t(duration)

    def event(self, event: Event) -> None:
        self._source(event.source)["events"][event.id] = self._event(event)

    def window(self, window: WindowDecision) -> None:
        self._source(window.source)["windows"].append(window_record(window, self.classes))

    def finish_source(
        self, name: str, *, seconds: float, error: str | None = None, **info: Any
    ) -> None:
        source = self._source(name)
        source["seconds"] = _t(seconds)
        source["status"] = "failed" if error else "ok"
        if error:
            source["error"] = error
        source.update(info)

    def close(self, summary: dict[str, Any]) -> None:
        sources = []
        for source in self._sources.values():
            source = dict(source)
            source["events"] = list(source["events"].values())
            sources.append(source)
        document = {**self.header, "files": sources, "summary": summary}
        self.stream.write(json_text(document, indent=2) + "\n")
        self.stream.flush()


def window_csv_row(window: WindowDecision, classes: Sequence[str]) -> dict[str, Any]:
    """A window as a CSV row: booleans as 0/1 and ``p_<class>`` probability columns,
    as ``evaluate``'s ``predictions.csv`` has them."""
    row = window_record(window, classes)
    row["silent"] = int(bool(row["silent"]))
    for name, value in row.pop("scores").items():
        row[prob_column(name)] = value
    return row


class CsvWriter(DetectionWriter):
    """One row per event (or, with ``windows``, one row per window with every class's score)."""

    def __init__(self, stream: TextIO, **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        if self.windows:
            columns = [*WINDOW_COLUMNS, *(prob_column(c) for c in self.classes)]
        else:
            columns = list(EVENT_COLUMNS)
            if self.header.get("source") == "mic":
                columns += ["time_start", "time_end"]
        self._writer = csv.DictWriter(
            stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        self._writer.writeheader()

    def event(self, event: Event) -> None:
        if not self.windows:
            self._writer.writerow(self._event(event))
            self.stream.flush()

    def window(self, window: WindowDecision) -> None:
        self._writer.writerow(window_csv_row(window, self.classes))


class RavenWriter(DetectionWriter):
    """A Raven Pro selection table (tab-separated), one selection per event.

    With several files, ``Begin Time (s)`` runs on across them in order (as
    when Raven opens the same files as one file list) and ``File Offset (s)``
    is the time within ``Begin Path``.
    """

    def __init__(self, stream: TextIO, **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        self._writer = csv.writer(stream, delimiter="\t", lineterminator="\n")
        self._writer.writerow(RAVEN_COLUMNS)
        self._offset = 0.0
        self._count = 0

    def event(self, event: Event) -> None:
        self._count += 1
        self._writer.writerow(
            [
                self._count,
                "Spectrogram 1",
                1,
                f"{self._offset + event.start:.3f}",
                f"{self._offset + event.end:.3f}",
                "0.0",
                f"{self.sample_rate / 2:.1f}",
                event.class_name,
                event.class_name,
                f"{event.peak:.4f}",
                event.source,
                f"{event.start:.3f}",
                event.class_name,
                f"{event.mean:.4f}",
            ]
        )
        self.stream.flush()

    def finish_source(
        self, name: str, *, seconds: float, error: str | None = None, **info: Any
    ) -> None:
        self._offset += seconds


class AudacityWriter(DetectionWriter):
    """Audacity labels: ``start<TAB>end<TAB>class<TAB>peak`` per event, no header.

    Audacity imports one label track per file, so a file holds one recording
    (the CLI refuses several on one stream). The fourth column is the
    confidence, as BirdNET-Analyzer writes it; Audacity shows it with the label.
    """

    def event(self, event: Event) -> None:
        self.stream.write(
            f"{event.start:.3f}\t{event.end:.3f}\t{event.class_name}\t{event.peak:.4f}\n"
        )
        self.stream.flush()


class BirdnetCsvWriter(DetectionWriter):
    """BirdNET-Analyzer's CSV result table (:data:`BIRDNET_CSV_COLUMNS`), one row per event.

    For tools that read BirdNET results; the class is both the scientific and
    the common name and the confidence is the event's peak score.
    """

    def __init__(self, stream: TextIO, **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(BIRDNET_CSV_COLUMNS)

    def event(self, event: Event) -> None:
        self._writer.writerow(
            [
                f"{event.start:.3f}",
                f"{event.end:.3f}",
                event.class_name,
                event.class_name,
                f"{event.peak:.4f}",
                event.source,
            ]
        )
        self.stream.flush()


WRITERS: dict[str, type[DetectionWriter]] = {
    "json": JsonWriter,
    "jsonl": JsonLinesWriter,
    "csv": CsvWriter,
    "raven": RavenWriter,
    "audacity": AudacityWriter,
    "birdnet-csv": BirdnetCsvWriter,
}


def make_writer(fmt: str, stream: TextIO, **kwargs: Any) -> DetectionWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`)."""
    return WRITERS[fmt](stream, **kwargs)
