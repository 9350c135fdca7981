"""Rich renderables for people: event tables, a timeline per file, the live view.

Builds objects only; the CLI decides where (and whether) they are printed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from serenesense_cli.detect.decisions import Event, WindowDecision

EVENT_COLUMNS = ("id", "class", "start", "end", "duration", "peak", "mean")
EVENT_HEADERS = ("#", "class", "start s", "end s", "dur s", "peak", "mean")
WINDOW_COLUMNS = ("start", "end", "label", "confidence", "level_dbfs", "top")
TIMELINE_WIDTH = 60
_FULL, _EMPTY = "█", "·"


def event_row(event: Event) -> dict[str, Any]:
    """An event as a table row."""
    return {
        "id": event.id,
        "class": event.class_name,
        "start": round(event.start, 2),
        "end": round(event.end, 2),
        "duration": round(event.duration, 2),
        "peak": round(event.peak, 3),
        "mean": round(event.mean, 3),
    }


def window_row(window: WindowDecision, classes: Sequence[str], top: int = 3) -> dict[str, Any]:
    """A window as a table row, with its ``top`` classes by probability."""
    order = sorted(range(len(classes)), key=lambda i: -float(window.scores[i]))[:top]
    return {
        "start": round(window.start, 2),
        "end": round(window.end, 2),
        "label": window.label,
        "confidence": round(window.confidence, 3),
        "level_dbfs": round(window.level_dbfs, 1),
        "top": "  ".join(f"{classes[i]} {float(window.scores[i]):.2f}" for i in order),
    }


def timeline(
    events: Sequence[Event], duration: float, *, width: int = TIMELINE_WIDTH
) -> RenderableType:
    """One line per detected class: where in the recording its events lie."""
    if duration <= 0 or not events:
        return Text("")
    names = list(dict.fromkeys(e.class_name for e in events))
    label_width = max(len(n) for n in names)
    lines = [Text(f"{'':{label_width}}  0 s{'':{max(0, width - 8)}}{duration:.0f} s", style="dim")]
    for name in names:
        cells = [_EMPTY] * width
        for event in (e for e in events if e.class_name == name):
            first = min(width - 1, int(event.start / duration * width))
            last = min(width - 1, max(first, int(event.end / duration * width - 1e-9)))
            for i in range(first, last + 1):
                cells[i] = _FULL
        line = Text(f"{name:{label_width}}  ")
        line.append("".join(cells), style="bold cyan")
        lines.append(line)
    return Group(*lines)


def _bar(value: float, width: int = 20) -> str:
    filled = max(0, min(width, round(value * width)))
    return _FULL * filled + _EMPTY * (width - filled)


@dataclass
class LiveView:
    """What the live microphone display shows: top classes, level, recent events."""

    classes: Sequence[str]
    source: str
    top: int = 3
    recent: int = 6
    seconds: float = 0.0
    level_dbfs: float | None = None
    label: str = "-"
    smoothed: Any = None
    overflows: int = 0
    events: deque = field(default_factory=lambda: deque(maxlen=6))
    open_events: dict = field(default_factory=dict)

    def update(self, record: WindowDecision | Event) -> None:
        """Take a record from the detector."""
        if isinstance(record, WindowDecision):
            self.seconds = max(self.seconds, record.end)
            self.level_dbfs = record.level_dbfs
            self.label = record.label
            self.smoothed = record.smoothed
        elif record.state == "open":
            self.open_events[record.id] = record
        else:
            self.open_events.pop(record.id, None)
            self.events.appendleft(record)

    def renderable(self) -> RenderableType:
        head = Text()
        head.append(f"{self.source}  ", style="bold")
        head.append(f"{self.seconds:7.1f} s  ")
        level = "-" if self.level_dbfs is None else f"{self.level_dbfs:6.1f} dBFS"
        head.append(f"level {level}  ")
        head.append(f"now: {self.label}", style="bold green" if self.label != "unknown" else "")
        if self.overflows:
            head.append(f"  overflows {self.overflows}", style="yellow")
        scores = Table(box=None, show_header=False, pad_edge=False)
        scores.add_column("class")
        scores.add_column("bar")
        scores.add_column("score", justify="right")
        if self.smoothed is not None:
            order = sorted(range(len(self.classes)), key=lambda i: -float(self.smoothed[i]))
            for i in order[: self.top]:
                value = float(self.smoothed[i])
                scores.add_row(self.classes[i], _bar(value), f"{value:.2f}")
        recent = Table(title="recent events", title_justify="left", box=None)
        for header in ("#", "class", "start s", "end s", "peak"):
            recent.add_column(header)
        for event in list(self.open_events.values())[::-1]:
            recent.add_row(
                str(event.id), event.class_name, f"{event.start:.1f}", "open", f"{event.peak:.2f}"
            )
        for event in list(self.events)[: self.recent]:
            recent.add_row(
                str(event.id),
                event.class_name,
                f"{event.start:.1f}",
                f"{event.end:.1f}",
                f"{event.peak:.2f}",
            )
        return Group(head, scores, recent)
