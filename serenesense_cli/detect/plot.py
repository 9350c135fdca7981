"""A picture of a recording: its log-mel spectrogram over lanes of events.

Why: checking a detector means looking at what it found against the sound
itself, as a spectrogram in Raven or Audacity does, and a PNG can be opened
anywhere (and attached to a report). ``detect --plot`` draws one per
recording; ``serenesense plot`` draws one from a recording and event files.

The spectrogram is computed here with numpy while the file is streamed, so
memory stays bounded for a 12-hour recording: the image has at most
``max_columns`` time columns, each the mean power of up to
:data:`FRAMES_PER_COLUMN` frames spread over its span. matplotlib (Agg) is
imported only when a picture is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serenesense_cli.audio.io import SAMPLE_RATE, probe_audio, stream_audio
from serenesense_cli.errors import DependencyError
from serenesense_cli.fileio import atomic_path

N_FFT = 1024
N_MELS = 64
MIN_STEP = 256
"""Samples per image column at least (16 ms at 16 kHz): finer than any picture needs."""
FRAMES_PER_COLUMN = 8
MAX_COLUMNS = 2000
"""Time columns of the image at most (a PNG stays a few hundred kB)."""
BLOCK_SECONDS = 10.0
FRAME_BATCH = 128
"""Frames transformed at once: bounds the FFT's temporaries (a few MB)."""
DPI = 100
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def mel_filterbank(
    sample_rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS, f_min: float = 0.0
) -> np.ndarray:
    """Triangular HTK-mel filters, ``(n_mels, n_fft // 2 + 1)``."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(f_min), mel(sample_rate / 2), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    rise = np.maximum(edges[1:-1] - edges[:-2], 1e-9)[:, None]
    fall = np.maximum(edges[2:] - edges[1:-1], 1e-9)[:, None]
    lower = (freqs[None, :] - edges[:-2, None]) / rise
    upper = (edges[2:, None] - freqs[None, :]) / fall
    return np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)


def log_mel_image(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_columns: int = MAX_COLUMNS,
    n_mels: int = N_MELS,
) -> tuple[np.ndarray, float]:
    """``(image, seconds)``: the recording's log-mel power in dB, ``(n_mels, columns)``.

    Streams the file; memory is one block plus the image, however long it is.
    """
    info = probe_audio(path)
    total = max(1, round(info.duration * sample_rate))
    columns = max(1, min(max_columns, math.ceil(total / MIN_STEP)))
    span = total / columns
    step = max(MIN_STEP // 4, int(span // FRAMES_PER_COLUMN))  # <= FRAMES_PER_COLUMN a column
    window = np.hanning(N_FFT).astype(np.float32)
    bank = mel_filterbank(sample_rate, N_FFT, n_mels)
    power = np.zeros((columns, n_mels), dtype=np.float64)
    count = np.zeros(columns, dtype=np.int64)
    buffer = np.zeros(0, dtype=np.float32)
    origin = 0  # stream position of buffer[0]
    next_frame = 0
    seconds = 0.0
    for block in stream_audio(path, sample_rate=sample_rate, block_seconds=BLOCK_SECONDS):
        seconds += block.shape[0] / sample_rate
        buffer = np.concatenate([buffer, block.astype(np.float32, copy=False)])
        end = origin + buffer.shape[0]
        if next_frame + N_FFT <= end:
            starts = np.arange(next_frame, end - N_FFT + 1, step)
            view = np.lib.stride_tricks.sliding_window_view(buffer, N_FFT)
            for i in range(0, starts.shape[0], FRAME_BATCH):  # bounded temporaries
                chunk = starts[i : i + FRAME_BATCH]
                spectrum = np.abs(np.fft.rfft(view[chunk - origin] * window, axis=1)) ** 2
                cols = np.minimum((chunk / span).astype(np.int64), columns - 1)
                np.add.at(power, cols, spectrum @ bank.T)
                np.add.at(count, cols, 1)
            next_frame = int(starts[-1]) + step
        cut = min(buffer.shape[0], max(0, next_frame - origin))
        buffer = buffer[cut:]
        origin += cut
    if buffer.shape[0] and not count.any():  # shorter than one frame: one padded frame
        frame = np.zeros(N_FFT, dtype=np.float32)
        frame[: buffer.shape[0]] = buffer[:N_FFT]
        power[0] = (np.abs(np.fft.rfft(frame * window)) ** 2) @ bank.T
        count[0] = 1
    filled = count > 0
    power[filled] /= count[filled, None]
    if filled.any() and not filled.all():  # columns no frame fell in: the previous one
        index = np.maximum.accumulate(np.where(filled, np.arange(columns), 0))
        power = power[index]
    image = 10.0 * np.log10(np.maximum(power, 1e-10))
    return image.T.astype(np.float32), seconds


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise DependencyError(
            "matplotlib is not installed: no pictures", hint="pip install matplotlib"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_plotting() -> None:
    """Fail now, before a long run, if pictures cannot be drawn."""
    _pyplot()


def _plain(text: Any) -> str:
    """A user string safe for matplotlib (``$`` would start mathtext)."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def _spans(events: Iterable[Any]) -> list[tuple[str, float, float]]:
    out = []
    for event in events:
        if isinstance(event, dict):
            out.append((str(event["class"]), float(event["start"]), float(event["end"])))
        else:
            out.append((str(event.class_name), float(event.start), float(event.end)))
    return out


def _lane(ax: Any, spans: Sequence[tuple[str, float, float]], classes: Sequence[str], colors: dict,
          *, title: str, seconds: float) -> None:  # fmt: skip
    rows = {name: i for i, name in enumerate(classes)}
    for name, start, end in spans:
        ax.broken_barh(
            [(start, max(end - start, seconds / 2000))],
            (rows[name] - 0.4, 0.8),
            facecolors=colors[name],
        )
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels([_plain(c) for c in classes], fontsize=8)
    ax.set_ylim(-0.6, max(len(classes), 1) - 0.4)
    ax.invert_yaxis()
    ax.set_ylabel(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def plot_recording(
    path: str | Path,
    events: Iterable[Any],
    out: str | Path,
    *,
    reference: Iterable[Any] | None = None,
    seconds: float | None = None,
    title: str | None = None,
    sample_rate: int = SAMPLE_RATE,
    max_columns: int = MAX_COLUMNS,
) -> Path:
    """Write a PNG of ``path``'s log-mel spectrogram with ``events`` (and ``reference``) below.

    Events are detector events or mappings with ``class``/``start``/``end``;
    one lane row per class, one colour per class in both lanes. Returns ``out``.
    """
    plt = _pyplot()
    image, read_seconds = log_mel_image(path, sample_rate=sample_rate, max_columns=max_columns)
    duration = max(seconds or 0.0, read_seconds, 1e-3)
    detected = _spans(events)
    truth = _spans(reference) if reference is not None else None
    classes = list(dict.fromkeys([s[0] for s in detected] + [s[0] for s in truth or []]))
    colors = {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(classes)}
    lane_rows = max(1, len(classes))
    lanes = 1 + (truth is not None)
    heights = [4.0] + [0.35 * lane_rows + 0.4] * lanes
    fig, axes = plt.subplots(
        1 + lanes,
        1,
        figsize=(12, sum(heights) + 0.8),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    axes = axes[:, 0]
    spec = axes[0]
    low = float(np.percentile(image, 5)) if image.size else 0.0
    high = float(image.max()) if image.size else 1.0
    spec.imshow(
        image,
        origin="lower",
        aspect="auto",
        extent=(0.0, duration, 0, image.shape[0]),
        cmap="magma",
        vmin=low,
        vmax=max(high, low + 1.0),
        interpolation="nearest",
    )
    spec.set_ylabel("mel band", fontsize=9)
    spec.set_title(_plain(title if title is not None else Path(path).name), fontsize=10)
    _lane(axes[1], detected, classes, colors, title="detected", seconds=duration)
    if truth is not None:
        _lane(axes[2], truth, classes, colors, title="reference", seconds=duration)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0.0, duration)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return out
