"""Background-only clips: the "nothing to report" class a detector needs.

Why: a classifier trained on MAD's seven classes must name one of them for
every window, so in a field recording the stretches between events (wind,
distant traffic, hiss) come out as the class that sounds most like them,
usually shelling rumble. Giving the model a ``background`` class, and telling
``detect`` to ignore it (``--ignore background``), is what lets the detector
stay quiet between events. With real data, add recordings of the deployment
site as a folder ``background/`` next to the data set (see docs/detection.md);
for the demo this module synthesises them.

The clips are :func:`~serenesense_cli.data.sounds.background` (pink noise
and gusty wind) at a level drawn over the range of the synthetic clips'
backgrounds, written as a folder-per-class source (one group per clip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serenesense_cli.audio.io import SAMPLE_RATE, write_audio
from serenesense_cli.data.sounds import background
from serenesense_cli.errors import BadInputError

BACKGROUND_CLASS = "background"
LEVEL_DBFS = (-55.0, -25.0)
"""RMS level range of the clips (dB full scale): that of the background under the
synthetic clips (their events peak at -26 to -1 dBFS, 0-30 dB above it)."""


def write_background_clips(
    out_dir: str | Path,
    *,
    clips: int = 40,
    seed: int = 0,
    min_seconds: float = 2.0,
    max_seconds: float = 10.0,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Write ``clips`` background WAVs to ``out_dir/background/``; returns ``out_dir``.

    The same arguments give the same files. ``out_dir`` can be passed to
    ``data prepare`` beside a MAD-layout set: the class union adds
    ``background``.
    """
    if clips < 1:
        raise BadInputError(f"background clips must be at least 1, not {clips}")
    if not 0 < min_seconds <= max_seconds:
        raise BadInputError(
            f"background clip lengths must satisfy 0 < min ({min_seconds}) <= max ({max_seconds})"
        )
    root = Path(out_dir)
    folder = root / BACKGROUND_CLASS
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7_001])
    for index in range(clips):
        seconds = float(rng.uniform(min_seconds, max_seconds))
        wave = background(rng, seconds, sample_rate).astype(np.float64)
        rms = float(np.sqrt(np.mean(np.square(wave))))
        target = 10.0 ** (rng.uniform(*LEVEL_DBFS) / 20.0)
        wave *= target / rms if rms > 0 else 0.0
        write_audio(
            folder / f"{index:03d}.wav", np.clip(wave, -1.0, 1.0).astype(np.float32), sample_rate
        )
    return root
