"""Read any audio file libsndfile knows as float32 mono at 16 kHz, in blocks.

Why blocks: field recordings run for hours; :func:`stream_audio` never holds
more than one block (plus a small resampling margin) in memory. Why not
``torchaudio.load``: it needs torchcodec; soundfile (libsndfile) reads WAV,
FLAC, OGG/Vorbis/Opus and MP3 with no extra system libraries.

Every failure is an :class:`~serenesense_cli.errors.AudioFileError` that names
the file and the problem in one line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from serenesense_cli.errors import AudioFileError
from serenesense_cli.fileio import atomic_path

SAMPLE_RATE = 16_000
"""Every model in serenesense works on 16 kHz mono audio."""

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf"}
)
"""File extensions treated as audio when scanning folders."""

_DEFAULT_BLOCK_SECONDS = 30.0
_LOWPASS_FILTER_WIDTH = 6  # torchaudio's default sinc resampler
_ROLLOFF = 0.99


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says, checked for plausibility."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds at the file's own rate."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(path, "file not found", hint="check the path and spelling")
    if path.is_dir():
        raise AudioFileError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioFileError(path, "permission denied (file is not readable)")
    if path.stat().st_size == 0:
        raise AudioFileError(path, "file is empty (0 bytes)")


def probe_audio(path: str | Path) -> AudioInfo:
    """Read and validate an audio file's header without decoding samples."""
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except PermissionError as error:  # pragma: no cover - caught by _check_path first
        raise AudioFileError(path, "permission denied (file is not readable)") from error
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioFileError(
            path,
            f"not a readable audio file (unknown format, or a corrupt or truncated header: "
            f"{_short(error)})",
        ) from error
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioFileError(path, "corrupt header (no sample rate or channels)")
    if info.frames <= 0:
        raise AudioFileError(path, "contains no audio samples (zero length)")
    return AudioInfo(
        path=path,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return text[:160]


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> Any:
    import torchaudio

    return torchaudio.transforms.Resample(orig, new, lowpass_filter_width=_LOWPASS_FILTER_WIDTH)


def resample(samples: np.ndarray, orig: int, new: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a 1-D signal with torchaudio's sinc resampler."""
    if orig == new:
        return np.asarray(samples, dtype=np.float32)
    import torch

    with torch.no_grad():
        out = _resampler(int(orig), int(new))(torch.from_numpy(np.ascontiguousarray(samples)))
    return out.numpy().astype(np.float32, copy=False)


def _resample_margin(orig: int, new: int) -> tuple[int, int]:
    """(step, margin) in input samples: blocks start on ``step`` multiples, read
    ``margin`` extra samples each side so stitched blocks equal one whole pass."""
    g = math.gcd(orig, new)
    orig_g, new_g = orig // g, new // g
    base = min(orig_g, new_g) * _ROLLOFF
    width = math.ceil(_LOWPASS_FILTER_WIDTH * orig_g / base)
    margin = orig_g * math.ceil((width + 2) / orig_g)
    return orig_g, margin


def _to_mono(block: np.ndarray) -> np.ndarray:
    if block.ndim == 2:
        block = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
    return np.ascontiguousarray(block, dtype=np.float32)


def _read_exact(handle: sf.SoundFile, path: Path, start: int, count: int) -> np.ndarray:
    handle.seek(start)
    data = handle.read(count, dtype="float32", always_2d=True)
    if data.shape[0] < count:
        raise AudioFileError(
            path,
            f"file is truncated: header promises {handle.frames} frames but data ends "
            f"at frame {start + data.shape[0]}",
        )
    mono = _to_mono(data)
    if not np.isfinite(mono).all():
        bad = int(np.flatnonzero(~np.isfinite(mono))[0]) + start
        raise AudioFileError(
            path, f"contains NaN or infinite samples (first at {bad / handle.samplerate:.3f} s)"
        )
    return mono


def stream_audio(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    block_seconds: float = _DEFAULT_BLOCK_SECONDS,
    offset: float = 0.0,
    duration: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 mono blocks at ``sample_rate``; memory stays constant.

    Blocks are exactly ``block_seconds`` long at the output rate (the last may be
    shorter). Resampled blocks are computed with overlap so the concatenation is
    identical to resampling the whole file at once.
    """
    info = probe_audio(path)
    path = info.path
    orig = info.sample_rate
    first = min(info.frames, max(0, round(offset * orig)))
    last = info.frames if duration is None else min(info.frames, first + round(duration * orig))
    if offset > 0 and first >= info.frames:
        raise AudioFileError(
            path, f"offset {offset:.3f} s is past the end of the file ({info.duration:.3f} s)"
        )
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioFileError(path, f"cannot be decoded: {_short(error)}") from error
    with handle:
        if orig == sample_rate:
            block = max(1, round(block_seconds * orig))
            for start in range(first, last, block):
                yield _read_safe(handle, path, start, min(block, last - start))
            return
        step, margin = _resample_margin(orig, sample_rate)
        block = max(step, (round(block_seconds * orig) // step) * step)
        # Output sample k of the whole segment sits at input ``first + k*orig/new``.
        out_total = math.ceil((last - first) * sample_rate / orig)
        produced = 0
        for start in range(first, last, block):
            stop = min(last, start + block)
            lo, hi = max(first, start - margin), min(last, stop + margin)
            chunk = _read_safe(handle, path, lo, hi - lo)
            out = resample(chunk, orig, sample_rate)
            skip = (start - lo) * sample_rate // orig
            want = (
                out_total - produced if stop == last else (stop - start) * sample_rate // orig
            )
            piece = out[skip : skip + want]
            produced += piece.shape[0]
            yield piece


def _read_safe(handle: sf.SoundFile, path: Path, start: int, count: int) -> np.ndarray:
    try:
        return _read_exact(handle, path, start, count)
    except AudioFileError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioFileError(path, f"cannot be decoded: {_short(error)}") from error


def load_audio(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode a whole file (or a segment) to float32 mono at ``sample_rate``."""
    blocks = list(
        stream_audio(path, sample_rate=sample_rate, offset=offset, duration=duration)
    )
    if not blocks:
        raise AudioFileError(path, "contains no audio samples (zero length)")
    return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]


def write_audio(
    path: str | Path,
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    subtype: str = "PCM_16",
) -> Path:
    """Write float samples in [-1, 1] atomically (temp file + rename)."""
    path = Path(path)
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    fmt = {".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt)
    return path
