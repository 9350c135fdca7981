"""Turn per-window class probabilities into decisions and events.

The rules, in the order they apply to each window (defaults in brackets):

1. **Silence gate** [-60 dBFS]: a window whose RMS level is below the gate
   gets no decision (label ``silence``); its scores count as zeros below.
2. **Smoothing** [3 windows]: a class's score is the mean of its probability
   over ``smooth`` windows centred on this one (``smooth // 2`` before,
   ``(smooth - 1) // 2`` after; so decisions wait that many hops for the
   windows after them).
3. **Hysteresis**: an event of a class opens when its smoothed score reaches
   the class's threshold [0.5] and closes when it falls below the class's
   close threshold [0.75 x the threshold], so a score wavering around the
   threshold does not split one sound into many events. The event's span runs
   from its first to its last window *at or above the threshold* (the windows
   between the threshold and the close threshold only keep it open), so
   hysteresis does not push offsets late. Classes are independent, so two
   events may overlap.
4. **Minimum duration** [0 s]: shorter events are dropped (an event is
   announced as open only once it is long enough).
5. **Unknown**: a window during which no event is open is labelled ``unknown``.
6. **Ignored classes** [none]: classes named with ``--ignore`` (a model's
   ``background`` class, say) never open events; their windows are
   ``unknown`` unless another class's event is open.

Time: each window stands for a *slot* of one hop around its centre,
``[centre - hop/2, centre + hop/2)``, the first slot starting at 0 and slots
following on without gaps; an event spans the slots of its windows. A
window's score rises past 0.5 when about half of it holds the sound, that is
when its centre crosses the sound's edge, so onsets and offsets land within
about one hop of the truth whatever the window length.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from serenesense_cli.errors import BadInputError

DEFAULT_THRESHOLD = 0.5
DEFAULT_CLOSE_RATIO = 0.75
DEFAULT_SMOOTH = 3
DEFAULT_SILENCE_DBFS = -60.0

UNKNOWN = "unknown"
SILENCE = "silence"


@dataclass(frozen=True)
class DecisionRules:
    """Per-class thresholds and the other decision settings (see the module doc)."""

    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    close_thresholds: tuple[float, ...]
    smooth: int = DEFAULT_SMOOTH
    silence_dbfs: float = DEFAULT_SILENCE_DBFS
    min_event_seconds: float = 0.0
    ignored: tuple[str, ...] = ()
    """Classes that never open events (e.g. ``background``)."""

    def as_dict(self) -> dict[str, object]:
        """For reports and JSON output."""
        return {
            "ignored": list(self.ignored),
            "thresholds": dict(zip(self.classes, self.thresholds, strict=True)),
            "close_thresholds": dict(zip(self.classes, self.close_thresholds, strict=True)),
            "smooth": self.smooth,
            "silence_dbfs": self.silence_dbfs,
            "min_event_seconds": self.min_event_seconds,
        }


def parse_thresholds(
    spec: str | float | Mapping[str, float] | None,
    classes: Sequence[str],
    *,
    default: Sequence[float],
    option: str = "--threshold",
) -> tuple[float, ...]:
    """Per-class values from ``0.6``, ``helicopter=0.8,vehicle=0.7`` or ``0.6,helicopter=0.8``.

    A bare number sets every class; ``class=value`` pairs override single
    classes; classes not named keep ``default``.
    """
    values = list(default)
    if spec is None:
        return tuple(values)
    if isinstance(spec, (int, float)):
        items: list[tuple[str | None, float | str]] = [(None, spec)]
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for part in (p.strip() for p in str(spec).split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            items.append((name.strip(), value.strip()) if sep else (None, part))
    bare = [raw for name, raw in items if name is None]
    if len(bare) > 1:
        raise BadInputError(
            f"{option}: {len(bare)} values for every class ({', '.join(map(str, bare))}); "
            "give one, or name the classes",
            hint=f"e.g. {option} 0.6,helicopter=0.8",
        )
    index = {name: i for i, name in enumerate(classes)}
    for name, raw in sorted(items, key=lambda item: item[0] is not None):  # bare number first
        try:
            value = float(raw)
        except ValueError:
            raise BadInputError(
                f"{option}: {raw!r} is not a number", hint=f"e.g. {option} 0.6"
            ) from None
        if not (0.0 < value <= 1.0) or math.isnan(value):
            raise BadInputError(f"{option}: {value:g} is not in (0, 1]")
        if name is None:
            values = [value] * len(values)
        elif name in index:
            values[index[name]] = value
        else:
            raise BadInputError(
                f"{option}: the model has no class {name!r}",
                hint=f"its classes are: {', '.join(classes)}",
            )
    return tuple(values)


def make_rules(
    classes: Sequence[str],
    *,
    threshold: str | float | Mapping[str, float] | None = None,
    close_threshold: str | float | Mapping[str, float] | None = None,
    smooth: int = DEFAULT_SMOOTH,
    silence_dbfs: float = DEFAULT_SILENCE_DBFS,
    min_event_seconds: float = 0.0,
    ignore: Sequence[str] = (),
) -> DecisionRules:
    """Check and resolve the decision settings for a model's classes."""
    classes = tuple(classes)
    unknown = [name for name in ignore if name not in classes]
    if unknown:
        raise BadInputError(
            f"--ignore: the model has no class {unknown[0]!r}",
            hint=f"its classes are: {', '.join(classes)}",
        )
    if ignore and set(ignore) >= set(classes):
        raise BadInputError("--ignore names every class of the model: nothing could be detected")
    opens = parse_thresholds(threshold, classes, default=[DEFAULT_THRESHOLD] * len(classes))
    closes = parse_thresholds(
        close_threshold,
        classes,
        default=[v * DEFAULT_CLOSE_RATIO for v in opens],
        option="--close-threshold",
    )
    for name, high, low in zip(classes, opens, closes, strict=True):
        if low > high:
            raise BadInputError(
                f"--close-threshold for {name} ({low:g}) is above its threshold ({high:g})",
                hint="an event closes below a lower score than the one that opened it",
            )
    if smooth < 1:
        raise BadInputError(f"--smooth must be at least 1 window, got {smooth}")
    if min_event_seconds < 0 or math.isnan(min_event_seconds):
        raise BadInputError(f"--min-duration must be >= 0 seconds, got {min_event_seconds}")
    if math.isnan(silence_dbfs):
        raise BadInputError("--silence-dbfs must be a number (use -inf to turn the gate off)")
    return DecisionRules(
        classes=classes,
        thresholds=opens,
        close_thresholds=closes,
        smooth=int(smooth),
        silence_dbfs=float(silence_dbfs),
        min_event_seconds=float(min_event_seconds),
        ignored=tuple(dict.fromkeys(ignore)),
    )


@dataclass(frozen=True)
class ScoredWindow:
    """A window's class probabilities and level; times in seconds of the stream."""

    index: int
    start: float
    """Start of the audio the window holds (padding excluded)."""
    end: float
    probs: np.ndarray
    level_dbfs: float

    @property
    def centre(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class WindowDecision:
    """What was decided for one window."""

    index: int
    start: float
    end: float
    slot_start: float
    """The stretch of time this decision stands for (see the module doc)."""
    slot_end: float
    level_dbfs: float
    silent: bool
    scores: np.ndarray
    """The model's probabilities for this window."""
    smoothed: np.ndarray
    label: str
    """The strongest class with an open event, ``unknown`` or ``silence``."""
    confidence: float
    """Smoothed score of ``label`` (the highest smoothed score when unknown)."""
    source: str = ""


@dataclass(frozen=True)
class Event:
    """A stretch of time during which one class was detected."""

    id: int
    class_name: str
    start: float
    end: float
    """For an open event: the end of the latest slot so far."""
    peak: float
    """Highest smoothed score of the class during the event."""
    mean: float
    """Mean smoothed score of the class over the event's windows."""
    windows: int
    state: str
    """``open`` (announced when it starts) or ``closed`` (final)."""
    source: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class _Track:
    """An event being built."""

    start: float
    end: float
    peak: float = 0.0
    total: float = 0.0
    windows: int = 0
    id: int | None = None  # given when the event is long enough to announce

    def add(self, score: float, end: float, *, core: bool) -> None:
        if core:  # the span runs to the last window at or above the open threshold
            self.end = end
        self.peak = max(self.peak, score)
        self.total += score
        self.windows += 1


@dataclass
class Decider:
    """Applies :class:`DecisionRules` to scored windows, in stream order."""

    rules: DecisionRules
    hop_seconds: float
    source: str = ""
    first_id: int = 1
    _before: int = field(init=False)
    _after: int = field(init=False)
    _history: deque = field(init=False)
    _pending: deque = field(init=False)
    _tracks: dict = field(init=False)
    _slot_end: float = field(init=False, default=0.0)
    _next_id: int = field(init=False)

    def __post_init__(self) -> None:
        k = self.rules.smooth
        self._before, self._after = k // 2, (k - 1) // 2
        self._history = deque(maxlen=k)  # (index, effective probs)
        self._pending = deque()  # windows waiting for the windows after them
        self._tracks = {}
        self._next_id = self.first_id

    def add(self, window: ScoredWindow) -> list[WindowDecision | Event]:
        """Take the next window; return the decisions (and event changes) now due."""
        silent = window.level_dbfs < self.rules.silence_dbfs
        effective = np.zeros_like(window.probs) if silent else window.probs
        self._history.append((window.index, np.asarray(effective, dtype=np.float64)))
        self._pending.append((window, silent))
        out: list[WindowDecision | Event] = []
        while len(self._pending) > self._after:
            out.extend(self._decide(*self._pending.popleft(), last_end=None))
        return out

    def finish(self, stream_seconds: float) -> list[WindowDecision | Event]:
        """Decide the windows still waiting and close every open event at the stream's end."""
        out: list[WindowDecision | Event] = []
        while self._pending:
            window, silent = self._pending.popleft()
            last = stream_seconds if not self._pending else None
            out.extend(self._decide(window, silent, last_end=last))
        for class_index in sorted(self._tracks):
            track = self._tracks.pop(class_index)
            if track.end >= self._slot_end:  # still above the threshold at the end
                track.end = max(track.end, stream_seconds)
            if track.id is None and track.end - track.start >= self.rules.min_event_seconds:
                track.id = self._next_id
                self._next_id += 1
                out.append(self._event(class_index, track, "open"))
            out.extend(self._close(class_index, track))
        return out

    def _smoothed(self, index: int) -> np.ndarray:
        lo, hi = index - self._before, index + self._after
        rows = [probs for i, probs in self._history if lo <= i <= hi]
        return np.mean(rows, axis=0)

    def _decide(
        self, window: ScoredWindow, silent: bool, *, last_end: float | None
    ) -> list[WindowDecision | Event]:
        smoothed = self._smoothed(window.index)
        slot_start = self._slot_end
        slot_end = (
            last_end
            if last_end is not None
            else max(slot_start, window.centre + 0.5 * self.hop_seconds)
        )
        self._slot_end = slot_end
        out: list[WindowDecision | Event] = []
        rules = self.rules
        for c in range(len(rules.classes)):
            if rules.classes[c] in rules.ignored:
                continue
            score = 0.0 if silent else float(smoothed[c])
            track = self._tracks.get(c)
            if track is None and score >= rules.thresholds[c]:
                track = self._tracks[c] = _Track(start=slot_start, end=slot_end)
            elif track is not None and score < rules.close_thresholds[c]:
                out.extend(self._close(c, self._tracks.pop(c)))
                continue
            if track is not None:
                track.add(score, slot_end, core=score >= rules.thresholds[c])
                if track.id is None and track.end - track.start >= rules.min_event_seconds:
                    track.id = self._next_id
                    self._next_id += 1
                    out.append(self._event(c, track, "open"))
        if silent:
            label, confidence = SILENCE, float(np.max(smoothed)) if smoothed.size else 0.0
        elif self._tracks:
            best = max(self._tracks, key=lambda c: smoothed[c])
            label, confidence = rules.classes[best], float(smoothed[best])
        else:
            label, confidence = UNKNOWN, float(np.max(smoothed)) if smoothed.size else 0.0
        decision = WindowDecision(
            index=window.index,
            start=window.start,
            end=window.end,
            slot_start=slot_start,
            slot_end=slot_end,
            level_dbfs=window.level_dbfs,
            silent=silent,
            scores=np.asarray(window.probs, dtype=np.float32),
            smoothed=smoothed.astype(np.float32),
            label=label,
            confidence=confidence,
            source=self.source,
        )
        return [decision, *out]

    def _close(self, class_index: int, track: _Track) -> list[Event]:
        if track.id is None:  # never long enough to announce: dropped
            return []
        return [self._event(class_index, track, "closed")]

    def _event(self, class_index: int, track: _Track, state: str) -> Event:
        assert track.id is not None
        return Event(
            id=track.id,
            class_name=self.rules.classes[class_index],
            start=track.start,
            end=track.end,
            peak=track.peak,
            mean=track.total / max(1, track.windows),
            windows=track.windows,
            state=state,
            source=self.source,
        )
