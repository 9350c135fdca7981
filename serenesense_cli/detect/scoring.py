"""How well detected events match a known ground truth: the demo's overlap count and
DCASE-style event-based F1 (``serenesense score``).

Why a function of its own: "the detector works" must be a number that anyone
can check against the recording's ``.events.csv``. The rule is the loosest
fair one for event detection: a true event is *found* when a detected event of
the same class overlaps it in time; a detected event is *unmatched* when it
overlaps no true event of its class (a false alarm, or a wrong class).

:func:`score_events` is the stricter, standard measure: one-to-one matches
within an onset (and offset) collar, precision/recall/F1 per class and
overall, as ``sed_eval`` computes them. ``sed_eval`` itself is not used: it
needs ``dcase_util``, which pulls in librosa, matplotlib, scipy and more.

Imports nothing heavy, so it serves the edge box too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from serenesense_cli.errors import BadInputError


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


# --------------------------------------------------------------------------- event-based F1

DEFAULT_COLLAR = 0.5
"""Onset collar in seconds (DCASE uses 0.2 s; the detector's times are within about one
hop, 1 s by default, so a tighter collar mostly measures the hop)."""
DEFAULT_OFFSET_FRACTION = 0.2
"""The offset collar is ``max(collar, this x the reference event's length)``, as in DCASE."""


@dataclass(frozen=True)
class FileSpan(Span):
    """A span in a named recording (``file`` may be empty: a one-recording annotation)."""

    file: str = ""


def _onset_ok(ref: Span, est: Span, collar: float) -> bool:
    return abs(ref.start - est.start) <= collar


def _offset_ok(ref: Span, est: Span, collar: float, fraction: float) -> bool:
    return abs(ref.end - est.end) <= max(collar, fraction * (ref.end - ref.start))


def _max_matching(candidates: list[list[int]], n_est: int) -> dict[int, int]:
    """A maximum one-to-one matching (reference -> estimate) by augmenting paths."""
    owner: dict[int, int] = {}  # estimate -> reference

    def augment(ref: int, seen: set[int]) -> bool:
        for est in candidates[ref]:
            if est in seen:
                continue
            seen.add(est)
            if est not in owner or augment(owner[est], seen):
                owner[est] = ref
                return True
        return False

    for ref in range(len(candidates)):
        augment(ref, set())
    return {ref: est for est, ref in owner.items()}


@dataclass
class ClassCounts:
    """True positives, false positives and false negatives of one class (or all)."""

    reference: int = 0
    detected: int = 0
    tp: int = 0

    @property
    def fp(self) -> int:
        return self.detected - self.tp

    @property
    def fn(self) -> int:
        return self.reference - self.tp

    def row(self) -> dict[str, Any]:
        precision = self.tp / self.detected if self.detected else None
        recall = self.tp / self.reference if self.reference else None
        f1 = (
            2 * self.tp / (self.detected + self.reference)
            if self.detected + self.reference
            else None
        )
        return {
            "reference": self.reference,
            "detected": self.detected,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }


@dataclass
class EventScores:
    """Event-based precision, recall and F1 per class and over all events."""

    collar: float
    offset_fraction: float | None
    """None: onsets only."""
    per_class: dict[str, ClassCounts] = field(default_factory=dict)
    substitutions: int = 0
    files: int = 0

    @property
    def overall(self) -> ClassCounts:
        total = ClassCounts()
        for counts in self.per_class.values():
            total.reference += counts.reference
            total.detected += counts.detected
            total.tp += counts.tp
        return total

    def error_rate(self) -> float | None:
        """DCASE's ``(substitutions + deletions + insertions) / reference events``."""
        overall = self.overall
        if not overall.reference:
            return None
        s = self.substitutions
        return (s + (overall.fn - s) + (overall.fp - s)) / overall.reference

    def summary(self) -> dict[str, Any]:
        """Everything as plain data (for JSON, tables and CSV)."""
        f1s = [c.row()["f1"] for c in self.per_class.values() if c.reference]
        return {
            "collar": self.collar,
            "offset_fraction": self.offset_fraction,
            "files": self.files,
            "overall": self.overall.row(),
            "macro_f1": sum(f or 0.0 for f in f1s) / len(f1s) if f1s else None,
            "error_rate": self.error_rate(),
            "substitutions": self.substitutions,
            "per_class": {name: c.row() for name, c in sorted(self.per_class.items())},
        }


def score_events(
    reference: Iterable[FileSpan],
    detected: Iterable[FileSpan],
    *,
    collar: float = DEFAULT_COLLAR,
    offset_fraction: float | None = DEFAULT_OFFSET_FRACTION,
) -> EventScores:
    """Event-based scores as DCASE computes them (``sed_eval``'s optimal matching).

    Per recording, a detection matches a reference event of the same class when
    its onset is within ``collar`` seconds and (unless ``offset_fraction`` is
    None) its offset within ``max(collar, offset_fraction x reference length)``;
    each event matches at most one other, and the matching is a maximum one.
    Unmatched pairs that would match but for the class count as substitutions
    (for the error rate only).
    """
    if not (math.isfinite(collar) and collar >= 0):
        raise BadInputError(f"--collar must be a number of seconds >= 0, not {collar!r}")
    by_file: dict[str, tuple[list[FileSpan], list[FileSpan]]] = {}
    for span in reference:
        by_file.setdefault(span.file, ([], []))[0].append(span)
    for span in detected:
        by_file.setdefault(span.file, ([], []))[1].append(span)
    scores = EventScores(collar=collar, offset_fraction=offset_fraction, files=len(by_file))

    def near(ref: Span, est: Span) -> bool:
        if not _onset_ok(ref, est, collar):
            return False
        return offset_fraction is None or _offset_ok(ref, est, collar, offset_fraction)

    for refs, ests in by_file.values():
        for span in refs:
            scores.per_class.setdefault(span.class_name, ClassCounts()).reference += 1
        for span in ests:
            scores.per_class.setdefault(span.class_name, ClassCounts()).detected += 1
        candidates = [
            [j for j, est in enumerate(ests) if est.class_name == ref.class_name and near(ref, est)]
            for ref in refs
        ]
        matched = _max_matching(candidates, len(ests))
        for ref_index in matched:
            scores.per_class[refs[ref_index].class_name].tp += 1
        used = set(matched.values())
        for i, ref in enumerate(refs):  # substitutions, greedily as sed_eval counts them
            if i in matched:
                continue
            for j, est in enumerate(ests):
                if j not in used and near(ref, est):
                    used.add(j)
                    scores.substitutions += 1
                    break
    return scores


def _recording_key(name: str) -> str:
    """A file name without folders and audio extension: ``field/a.wav`` -> ``a``."""
    from pathlib import PurePath

    pure = PurePath(name.replace("\\", "/"))
    return pure.stem if pure.suffix else pure.name


def pair_recordings(
    reference: list[FileSpan], detected: list[FileSpan], *, reference_name: str = "reference"
) -> tuple[list[FileSpan], list[FileSpan], list[str]]:
    """Give both sides the same recording names; returns them and the recordings with
    detections but no reference (left out: nobody said what is in them).

    One recording on each side (or a reference without file names and one
    recording detected) is compared as is; a reference without file names
    whose own name starts with a recording's (``a.labels.txt``, ``a.events.csv``
    for ``field/a.wav``) is compared with that recording. Otherwise names are
    compared as given, or, when that pairs nothing, without folders and audio
    extensions.
    """
    ref_files = {s.file for s in reference}
    det_files = {s.file for s in detected}
    if len(ref_files) <= 1 and len(det_files) <= 1:
        same = [FileSpan(s.class_name, s.start, s.end, file="") for s in reference]
        return same, [FileSpan(s.class_name, s.start, s.end, file="") for s in detected], []
    if ref_files == {""}:  # one recording's annotation, e.g. a.labels.txt for a.wav
        from pathlib import PurePath

        own = PurePath(reference_name).name.split(".")[0]
        named = sorted(f for f in det_files if _recording_key(f) == own)
        if len(named) == 1:
            kept = [
                FileSpan(s.class_name, s.start, s.end, "") for s in detected if s.file == named[0]
            ]
            return reference, kept, sorted(det_files - set(named))
    if "" in ref_files:
        raise BadInputError(
            f"{reference_name}: events without a file name, but the detections cover "
            f"{len(det_files)} recordings",
            hint="score one recording at a time, or give the reference a file column",
        )
    if not ref_files & det_files:
        keys = {f: _recording_key(f) for f in ref_files | det_files}
        clash = len({keys[f] for f in ref_files}) < len(ref_files) or len(
            {keys[f] for f in det_files}
        ) < len(det_files)
        if not clash:
            reference = [FileSpan(s.class_name, s.start, s.end, keys[s.file]) for s in reference]
            detected = [FileSpan(s.class_name, s.start, s.end, keys[s.file]) for s in detected]
            ref_files = {s.file for s in reference}
    kept = [s for s in detected if s.file in ref_files]
    unannotated = sorted({s.file for s in detected if s.file not in ref_files})
    return reference, kept, unannotated


def score_event_files(
    detections: str | Any,
    reference: str | Any,
    *,
    collar: float = DEFAULT_COLLAR,
    offset_fraction: float | None = DEFAULT_OFFSET_FRACTION,
) -> tuple[EventScores, list[str]]:
    """Score an event file (any format detect writes) against a reference annotation.

    Returns the scores and the recordings that had detections but no reference.
    """
    from serenesense_cli.detect.readers import read_events

    ref, det, unannotated = pair_recordings(
        read_events(reference), read_events(detections), reference_name=str(reference)
    )
    return score_events(ref, det, collar=collar, offset_fraction=offset_fraction), unannotated
