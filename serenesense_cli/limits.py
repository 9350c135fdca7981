"""The allowed range of every numeric setting, in one table.

Why one table: a value far outside a sane range (``--threads 100000``,
``--batch 100000``, ``--duration 1e9``, a NaN learning rate) does not fail
fast by itself; it hangs, exhausts memory or ends deep inside torch. The
command line checks each flag against its range here before any heavy import
(``cli/_bounds.py``), and the training settings check config-file values
against the same ranges, so the two can never disagree. Light module: no
torch, no numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SEED_MAX = 2**32 - 1
"""numpy's seed range: a seed outside it is refused, not wrapped."""


@dataclass(frozen=True)
class Bound:
    """A closed or half-open interval of allowed values."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        """True for a number inside the interval (NaN never is)."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        if math.isnan(number):
            return False
        above = number > self.low if self.low_open else number >= self.low
        below = number < self.high if self.high_open else number <= self.high
        return above and below

    def describe(self) -> str:
        """The interval in mathematical notation, e.g. ``(0, 10]``."""
        return (
            f"{'(' if self.low_open else '['}{_number(self.low)}, "
            f"{_number(self.high)}{')' if self.high_open else ']'}"
        )

    def problem(self, name: str, value: object) -> str | None:
        """A one-line message when ``value`` is outside, else ``None``."""
        if self.contains(value):  # type: ignore[arg-type]
            return None
        return f"{name} must be within {self.describe()}, not {value!r}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def closed(low: float, high: float) -> Bound:
    """``[low, high]``."""
    return Bound(low, high)


def above(low: float, high: float) -> Bound:
    """``(low, high]``: for values that must be strictly greater than ``low``."""
    return Bound(low, high, low_open=True)


FRACTION = closed(0.0, 1.0)
SEED = closed(0, SEED_MAX)
THREADS = closed(1, 256)
HOP_SECONDS = closed(0.05, 3600.0)
"""Seconds between scored windows; the floor is explained in ``evaluate.windows``."""
INFERENCE_BATCH = closed(1, 4096)

TRAINING: dict[str, Bound] = {
    "epochs": closed(1, 100_000),
    "batch_size": closed(1, 4096),
    "lr": above(0.0, 10.0),
    "weight_decay": closed(0.0, 10.0),
    "eps": above(0.0, 1.0),
    "warmup_steps": closed(0, 10_000_000),
    "restart_epochs": closed(1, 100_000),
    "restart_mult": closed(1, 100),
    "min_lr": closed(0.0, 10.0),
    "plateau_factor": above(0.0, 1.0),
    "plateau_patience": closed(0, 100_000),
    "grad_clip": closed(0.0, 1e6),
    "mixup_alpha": closed(0.0, 100.0),
    "cutmix_alpha": closed(0.0, 100.0),
    "mix_prob": FRACTION,
    "label_smoothing": Bound(0.0, 1.0, high_open=True),
    "mix_back": FRACTION,
    "ema_decay": Bound(0.0, 1.0, high_open=True),
    "patience": closed(0, 100_000),
    "seed": SEED,
    "workers": closed(0, 64),
    "max_steps": closed(0, 1_000_000_000),
    "time_limit": closed(0.0, 3e7),
    "checkpoint_every": closed(0, 1_000_000_000),
    "layer_decay": above(0.0, 1.0),
    # pretraining
    "mask_ratio": Bound(0.0, 1.0, low_open=True, high_open=True),
    "warmup_epochs": closed(0.0, 100_000.0),
    "val_fraction": Bound(0.0, 1.0, high_open=True),
    "figure_every": closed(0, 100_000),
    "figure_clips": closed(1, 8),
    "depth": closed(1, 64),
    "decoder_depth": closed(1, 64),
    "decoder_dim": closed(8, 4096),
}
"""Training and pretraining settings (flags and config-file keys alike)."""

COMMANDS: dict[str, Bound] = {
    "threads": THREADS,
    "hop": HOP_SECONDS,
    "batch": INFERENCE_BATCH,
    "mic_duration": above(0.0, 7 * 24 * 3600.0),
    "smooth": closed(1, 1000),
    "silence_dbfs": closed(-math.inf, 0.0),
    "min_duration": closed(0.0, 86_400.0),
    "collar": closed(0.0, 60.0),
    "offset_fraction": closed(0.0, 1.0),
    "opset": closed(13, 23),
    "tolerance": above(0.0, 1.0),
    "calib_clips": closed(1, 100_000),
    "bench_runs": closed(1, 1_000_000),
    "bench_warmup": closed(0, 100_000),
    "bench_duration": above(0.0, 3600.0),
    "budget_ms": above(0.0, 1e7),
    "budget_mb": above(0.0, 1e7),
    "demo_epochs": closed(1, 10_000),
    "demo_time_limit": closed(0.0, 86_400.0),
    "num_classes": closed(2, 10_000),
    "clips_per_class": closed(1, 100_000),
    "videos_per_class": closed(1, 10_000),
    "test_videos_per_class": closed(0, 10_000),
    "synth_seconds": closed(0.1, 600.0),
    "split_fraction": Bound(0.0, 1.0, high_open=True),
    "prepare_min_seconds": closed(0.0, 600.0),
    "gain_db": closed(-60.0, 40.0),
}
"""Options of the other commands, by role (several commands share a role)."""
