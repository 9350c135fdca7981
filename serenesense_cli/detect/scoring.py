"""How well detected events match a known ground truth (the demo's and the tests' yardstick).

Why a function of its own: "the detector works" must be a number that anyone
can check against the recording's ``.events.csv``. The rule is the loosest
fair one for event detection: a true event is *found* when a detected event of
the same class overlaps it in time; a detected event is *unmatched* when it
overlaps no true event of its class (a false alarm, or a wrong class).

Imports nothing heavy, so it serves the edge box too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Span:
    """A class over a time span in seconds."""

    class_name: str
    start: float
    end: float

    def overlaps(self, other: Span) -> bool:
        """Same class and a shared stretch of time (touching ends do not count)."""
        return (
            self.class_name == other.class_name
            and self.start < other.end
            and other.start < self.end
        )


@dataclass
class EventMatch:
    """Found true events and unmatched detections."""

    truth: list[Span]
    detected: list[Span]
    found: list[Span] = field(default_factory=list)
    missed: list[Span] = field(default_factory=list)
    unmatched: list[Span] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts for tables and JSON."""
        return {
            "true_events": len(self.truth),
            "found": len(self.found),
            "missed": len(self.missed),
            "detected": len(self.detected),
            "unmatched_detections": len(self.unmatched),
        }


def as_span(event: Any) -> Span:
    """A Span from a mapping (``class``/``start``/``end``) or an object with
    ``class_name``/``start``/``end`` (detector events, scene events)."""
    if isinstance(event, dict):
        return Span(str(event["class"]), float(event["start"]), float(event["end"]))
    return Span(str(event.class_name), float(event.start), float(event.end))


def match_events(truth: Iterable[Any], detected: Iterable[Any]) -> EventMatch:
    """Which true events were found, and which detections match none (see module doc)."""
    true_spans = [as_span(e) for e in truth]
    found_spans = [as_span(e) for e in detected]
    result = EventMatch(truth=true_spans, detected=found_spans)
    for span in true_spans:
        hit = any(span.overlaps(d) for d in found_spans)
        (result.found if hit else result.missed).append(span)
    result.unmatched = [d for d in found_spans if not any(d.overlaps(t) for t in true_spans)]
    return result
