"""The one streaming detector that files and the microphone both feed.

``Detector.push(block)`` takes audio blocks of any size at the model's sample
rate; windows are cut by :class:`~serenesense_cli.detect.stream.WindowScheduler`,
scored by the backend (the windows a block completes, ``batch_size`` per call) and
turned into decisions and events by :class:`~serenesense_cli.detect.decisions.Decider`.
``finish()`` scores the tail and closes open events. Nothing here knows
whether the blocks come from a file or a sound card.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serenesense_cli.detect.decisions import (
    DEFAULT_SILENCE_DBFS,
    DEFAULT_SMOOTH,
    DEFAULT_THRESHOLD,
    Decider,
    DecisionRules,
    Event,
    ScoredWindow,
    WindowDecision,
    make_rules,
    parse_thresholds,
)
from serenesense_cli.detect.stream import Window, WindowScheduler, window_level
from serenesense_cli.detect.thresholds import merge_threshold_table
from serenesense_cli.evaluate.windows import check_hop_seconds
from serenesense_cli.inference.backends import Backend

DEFAULT_HOP_SECONDS = 1.0
DEFAULT_BATCH_SIZE = 16
"""Windows per model call: large enough to amortise the runtime's per-call cost."""
MAX_BATCH_AUDIO_SECONDS = 80.0
"""Audio one model call may hold by default: long windows get smaller batches.

Why: batching hardly speeds up a large model on long windows but its buffers
grow with the batch: base AudioMAE (10 s windows) INT8 on a 1-hour recording
peaked at 439 MB RSS with 16 windows a call and 333 MB with 8, at 58x and 56x
real time (docs/performance.md)."""


def batch_size_for(config_batch: int | None, window_seconds: float) -> int:
    """``config_batch`` when given, else :data:`DEFAULT_BATCH_SIZE` windows but at
    most :data:`MAX_BATCH_AUDIO_SECONDS` of audio a call (at least one window)."""
    if config_batch is not None:
        return max(1, int(config_batch))
    fits = int(MAX_BATCH_AUDIO_SECONDS // max(window_seconds, 1e-9))
    return max(1, min(DEFAULT_BATCH_SIZE, fits))


Record = WindowDecision | Event
"""What a detector hands out, in stream order."""


@dataclass(frozen=True)
class DetectConfig:
    """Everything that decides how a stream is scored (see docs/detection.md)."""

    hop_seconds: float = DEFAULT_HOP_SECONDS
    threshold: str | float | Mapping[str, float] | None = None
    close_threshold: str | float | Mapping[str, float] | None = None
    smooth: int = DEFAULT_SMOOTH
    silence_dbfs: float = DEFAULT_SILENCE_DBFS
    min_event_seconds: float = 0.0
    pad_start: bool = False
    """Score zero-padded windows from the first hop instead of waiting for a full window."""
    ignore: tuple[str, ...] = ()
    """Classes that never open events (a model's background class)."""
    batch_size: int | None = None
    """Windows per model call at most (default: :func:`batch_size_for`); the
    results do not depend on it."""
    threshold_table: Mapping[str, float] | None = None
    """Per-class open thresholds read from a file (``--thresholds``); they win over
    ``threshold`` for the classes they name."""
    threshold_table_source: str = ""
    """Where :attr:`threshold_table` came from, for error messages."""

    def rules_for(self, classes: tuple[str, ...]) -> DecisionRules:
        """Check the settings against a model's classes."""
        check_hop_seconds(self.hop_seconds)
        threshold = self.threshold
        if self.threshold_table is not None:
            base = parse_thresholds(threshold, classes, default=[DEFAULT_THRESHOLD] * len(classes))
            threshold = merge_threshold_table(
                base, self.threshold_table, classes, source=self.threshold_table_source
            )
        return make_rules(
            classes,
            threshold=threshold,
            close_threshold=self.close_threshold,
            smooth=self.smooth,
            silence_dbfs=self.silence_dbfs,
            min_event_seconds=self.min_event_seconds,
            ignore=self.ignore,
        )


def hop_samples_for(hop_seconds: float, sample_rate: int) -> int:
    """The hop in samples (at least one): what the detector really steps by."""
    return max(1, round(hop_seconds * sample_rate))


def stream_settings(backend: Backend, config: DetectConfig, rules: DecisionRules) -> dict[str, Any]:
    """The settings a stream is scored with, as output headers and reports record them."""
    sample_rate = int(backend.sample_rate)
    return {
        "sample_rate": sample_rate,
        "window_seconds": backend.clip_samples / sample_rate,
        "hop_seconds": hop_samples_for(config.hop_seconds, sample_rate) / sample_rate,
        "pad_start": config.pad_start,
        **rules.as_dict(),
    }


@dataclass
class Detector:
    """Streams blocks through window scheduling, scoring and decisions."""

    backend: Backend
    config: DetectConfig = field(default_factory=DetectConfig)
    source: str = ""
    rules: DecisionRules | None = None
    windows_scored: int = field(init=False, default=0)
    scoring_seconds: float = field(init=False, default=0.0)
    """Wall time spent in the backend (for the real-time factor)."""
    events_closed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        check_hop_seconds(self.config.hop_seconds)
        if self.rules is None:
            self.rules = self.config.rules_for(tuple(self.backend.classes))
        self.sample_rate = int(self.backend.sample_rate)
        hop = hop_samples_for(self.config.hop_seconds, self.sample_rate)
        self.hop_seconds = hop / self.sample_rate
        self._scheduler = WindowScheduler(
            int(self.backend.clip_samples), hop, pad_start=self.config.pad_start
        )
        self._decider = Decider(self.rules, self.hop_seconds, source=self.source)
        self._batch_size = batch_size_for(self.config.batch_size, self.window_seconds)
        self._finished = False

    @property
    def window_seconds(self) -> float:
        return self.backend.clip_samples / self.sample_rate

    @property
    def seconds(self) -> float:
        """Audio pushed so far, in seconds."""
        return self._scheduler.total / self.sample_rate

    def push(self, block: np.ndarray) -> list[Record]:
        """Add float32 mono samples; return what they completed (oldest first)."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        return self._decide(self._scheduler.push(block))

    def finish(self) -> list[Record]:
        """Score the tail of the stream and close every open event."""
        if self._finished:
            return []
        self._finished = True
        out = self._decide(self._scheduler.finish())
        out.extend(self._count(self._decider.finish(self.seconds)))
        return out

    def settings(self) -> dict[str, Any]:
        """The effective settings, for output headers and reports."""
        assert self.rules is not None
        return stream_settings(self.backend, self.config, self.rules)

    def _decide(self, windows: list[Window]) -> list[Record]:
        if not windows:
            return []
        started = time.perf_counter()
        size = self._batch_size
        probs = np.concatenate(
            [
                np.asarray(
                    self.backend.predict_proba(np.stack([w.samples for w in windows[i : i + size]]))
                )
                for i in range(0, len(windows), size)
            ]
        )
        self.scoring_seconds += time.perf_counter() - started
        self.windows_scored += len(windows)
        sr = self.sample_rate
        out: list[Record] = []
        for window, row in zip(windows, probs, strict=True):
            scored = ScoredWindow(
                index=window.index,
                start=window.real_start / sr,
                end=window.real_end / sr,
                probs=row,
                level_dbfs=window_level(window),
            )
            out.extend(self._count(self._decider.add(scored)))
        return out

    def _count(self, records: list[Record]) -> list[Record]:
        self.events_closed += sum(
            1 for r in records if isinstance(r, Event) and r.state == "closed"
        )
        return records
