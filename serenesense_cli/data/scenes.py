"""Long synthetic recordings with known event times, to test and demonstrate detection.

Why: a detector must be judged on *where* it finds events, not only on what
it calls a clip, and that needs a recording whose ground truth is exact. A
scene is outdoor background (:func:`~serenesense_cli.data.sounds.background`)
with class signatures (:func:`~serenesense_cli.data.sounds.make_event` with
``background_noise=False``) mixed in at a chosen signal-to-background ratio.
Events never overlap; each fades in and out over a few milliseconds so that
its truth boundaries are sample-exact and the mix has no clicks.

Imports numpy only (no torch), so detection code may use it on any box.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serenesense_cli.audio.io import SAMPLE_RATE, write_audio
from serenesense_cli.data.mad import MAD_CLASSES
from serenesense_cli.data.sounds import background, make_event
from serenesense_cli.errors import BadInputError
from serenesense_cli.fileio import write_text_atomic

FADE_SECONDS = 0.01
"""Raised-cosine fade at each event edge (clicks would be heard as shots)."""

PEAK_LIMIT = 0.98
"""A scene whose mix peaks above this is scaled down as a whole (no clipping)."""

TRUTH_COLUMNS = ("class", "start", "end")


@dataclass(frozen=True)
class SceneEvent:
    """One event of the ground truth: class and its span in seconds."""

    class_name: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Scene:
    """A synthesised recording and its ground truth."""

    audio: np.ndarray
    """float32 mono samples in [-1, 1]."""
    sample_rate: int
    events: tuple[SceneEvent, ...]
    background_dbfs: float
    """RMS level of the background after any peak scaling (dB full scale)."""
    snr_db: float
    """Event RMS (over each event's span) relative to the background RMS."""

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / self.sample_rate


def _plan(
    rng: np.random.Generator,
    seconds: float,
    classes: Sequence[str],
    event_seconds: tuple[float, float],
    gap_seconds: tuple[float, float],
) -> list[tuple[str, float, float]]:
    """Place events one after another with gaps; classes cycle through a shuffled order."""
    order = list(classes)
    planned: list[tuple[str, float, float]] = []
    t = rng.uniform(*gap_seconds)
    while True:
        length = rng.uniform(*event_seconds)
        if t + length + gap_seconds[0] > seconds:
            break
        if len(planned) % len(order) == 0:
            rng.shuffle(order)
        planned.append((order[len(planned) % len(order)], t, t + length))
        t += length + rng.uniform(*gap_seconds)
    return planned


def _check_events(events: Sequence[tuple[str, float, float]], seconds: float) -> None:
    previous_end = 0.0
    for name, start, end in sorted(events, key=lambda e: e[1]):
        if not (0.0 <= start < end <= seconds):
            raise BadInputError(
                f"event {name} {start:g}-{end:g} s does not fit in a {seconds:g} s scene"
            )
        if start < previous_end:
            raise BadInputError(f"event {name} at {start:g} s overlaps the one before it")
        previous_end = end


def _fade(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    n = min(samples.shape[0] // 2, max(1, round(FADE_SECONDS * sample_rate)))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    samples[:n] *= ramp
    samples[-n:] *= ramp[::-1]
    return samples


def synthesize_scene(
    *,
    seconds: float = 60.0,
    classes: Sequence[str] | None = None,
    events: Sequence[tuple[str, float, float]] | None = None,
    event_seconds: tuple[float, float] = (4.0, 8.0),
    gap_seconds: tuple[float, float] = (3.0, 6.0),
    snr_db: float = 12.0,
    background_dbfs: float = -30.0,
    wind: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
) -> Scene:
    """A ``seconds`` long recording with non-overlapping events and their exact times.

    ``events`` places given ``(class, start, end)`` spans; otherwise events of
    ``classes`` (default: MAD's seven) are placed one after another with
    lengths drawn from ``event_seconds`` and gaps from ``gap_seconds``. Each
    event's RMS over its span is ``snr_db`` above the background's RMS. The
    same arguments give the same samples.
    """
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInputError(f"scene length must be a positive number of seconds, not {seconds}")
    rng = np.random.default_rng(seed)
    names = tuple(classes) if classes else MAD_CLASSES
    if events is None:
        planned = _plan(rng, seconds, names, event_seconds, gap_seconds)
    else:
        planned = [(str(c), float(s), float(e)) for c, s, e in events]
        _check_events(planned, seconds)
    bed = background(rng, seconds, sample_rate, wind=wind).astype(np.float64)
    bed_rms = math.sqrt(float(np.mean(np.square(bed))))
    target_bed_rms = 10.0 ** (background_dbfs / 20.0)
    mix = bed * (target_bed_rms / bed_rms)
    event_rms = target_bed_rms * 10.0 ** (snr_db / 20.0)
    truth = []
    for name, start, end in sorted(planned, key=lambda e: e[1]):
        a, b = round(start * sample_rate), round(end * sample_rate)
        if b <= a:
            continue
        signature = make_event(
            name, rng, (b - a) / sample_rate, sample_rate, background_noise=False
        ).astype(np.float64)[: b - a]
        rms = math.sqrt(float(np.mean(np.square(signature))))
        if rms > 0:
            signature *= event_rms / rms
        mix[a : a + signature.shape[0]] += _fade(signature, sample_rate)
        truth.append(SceneEvent(name, a / sample_rate, b / sample_rate))
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    scale = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
    return Scene(
        audio=(mix * scale).astype(np.float32),
        sample_rate=sample_rate,
        events=tuple(truth),
        background_dbfs=background_dbfs + 20.0 * math.log10(scale),
        snr_db=snr_db,
    )


def truth_csv(events: Sequence[SceneEvent]) -> str:
    """The ground truth as CSV text (``class,start,end``, seconds)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRUTH_COLUMNS)
    for event in events:
        writer.writerow([event.class_name, f"{event.start:.6f}", f"{event.end:.6f}"])
    return buffer.getvalue()


def write_scene(scene: Scene, path: str | Path) -> tuple[Path, Path]:
    """Write the audio (format from the extension) and ``<stem>.events.csv`` beside it."""
    path = Path(path)
    audio_path = write_audio(path, scene.audio, scene.sample_rate)
    truth_path = write_text_atomic(
        path.with_name(f"{path.stem}.events.csv"), truth_csv(scene.events)
    )
    return audio_path, truth_path
