"""Sliding windows over a clip: the one policy for scoring clips of any length.

Why a policy of its own: a model sees a fixed window (3 s, 4 s, 10 s), clips
are shorter or longer. Evaluation (and detection on recordings) must cover
every sample of a clip, including its tail, and pad short clips exactly as
training did (zeros on the right), or the numbers describe another input.

- windows of ``window`` samples start every ``hop`` samples from 0;
- when the last regular window stops short of the end, one more window is
  aligned to the clip's end, so the tail is always scored;
- a clip shorter than a window gives one window, zero-padded on the right;
- a clip's probabilities are the mean of its windows' probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from serenesense_cli.errors import BadInputError

AGGREGATE = "mean"
"""How window probabilities become a clip's probabilities."""


MIN_HOP_SECONDS = 0.05
"""Shortest hop ``detect`` and ``evaluate`` accept: 20 windows per second.

Why a floor: each hop scores a whole window, so the work and the memory of
the windows in flight grow as 1/hop (``--hop 0.001`` made ``evaluate`` of one
22 s clip take 4.3 GB); a finer hop than the model's own frame step adds
nothing a user could see."""


def check_hop_seconds(hop_seconds: float) -> float:
    """``hop_seconds`` if it is a finite number of seconds >= :data:`MIN_HOP_SECONDS`."""
    if not (math.isfinite(hop_seconds) and hop_seconds >= MIN_HOP_SECONDS):
        raise BadInputError(
            f"--hop must be at least {MIN_HOP_SECONDS:g} s (a finite number of seconds), "
            f"not {hop_seconds!r}"
        )
    return float(hop_seconds)


def hop_samples(hop_seconds: float | None, sample_rate: int, window: int) -> int:
    """Hop in samples: ``hop_seconds`` or, when not given, half a window (at least 1).

    A hop longer than the window is refused: it would skip audio between windows.
    """
    if hop_seconds is None:
        return max(1, window // 2)
    hop = max(1, round(check_hop_seconds(hop_seconds) * sample_rate))
    if hop > window:
        raise BadInputError(
            f"--hop {hop_seconds:g} s is longer than the model window ({window / sample_rate:g} s)",
            hint="audio between windows would never be scored; use a hop up to one window",
        )
    return hop


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of the windows over ``n_samples`` samples.

    Regular starts ``0, hop, 2*hop, ...`` while a whole window fits, plus one
    window aligned to the end when the regular ones miss the tail. A clip of at
    most one window gives ``[0]`` (the caller pads it).
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive (window={window}, hop={hop})")
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def slice_windows(wave: np.ndarray, window: int, hop: int) -> np.ndarray:
    """The windows of ``wave`` as a float32 array ``(W, window)``.

    Short clips are zero-padded on the right to one window, as in training.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size < window:
        padded = np.zeros(window, dtype=np.float32)
        padded[: wave.size] = wave
        return padded[None, :]
    starts = window_starts(wave.size, window, hop)
    return np.stack([wave[s : s + window] for s in starts]).astype(np.float32, copy=False)


@dataclass(frozen=True)
class WindowPolicy:
    """The window settings of one evaluation, recorded with its results."""

    sample_rate: int
    window: int
    hop: int

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    @property
    def hop_seconds(self) -> float:
        return self.hop / self.sample_rate

    def describe(self) -> str:
        """One sentence for tables and reports."""
        return (
            f"sliding windows of {self.window_seconds:g} s every {self.hop_seconds:g} s, "
            "last window aligned to the clip end; clips shorter than a window "
            "zero-padded on the right; clip probabilities = mean of window probabilities"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description for ``metrics.json``."""
        return {
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "window_samples": self.window,
            "hop_samples": self.hop,
            "sample_rate": self.sample_rate,
            "tail": "last window aligned to the clip end",
            "short_clips": "zero-padded on the right to one window",
            "aggregate": f"{AGGREGATE} of window probabilities",
            "description": self.describe(),
        }
