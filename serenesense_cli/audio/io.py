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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from serenesense_cli.errors import AudioFileError, BadInputError
from serenesense_cli.fileio import atomic_path

SAMPLE_RATE = 16_000
"""Every model in serenesense works on 16 kHz mono audio."""

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf"}
)
"""File extensions treated as audio when scanning folders."""


def audio_files_in(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` by extension, recursively, sorted.

    The one rule every command scans folders by (``data prepare``, ``detect``,
    ``pretrain``): hidden files and hidden folders (``.name``) are skipped, so
    editor and OS leftovers (``.DS_Store``, ``.git``, ``._x.wav``) never count.
    """
    root = Path(folder)
    found: list[Path] = []
    for where, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(
            Path(where) / name
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS
        )
    return sorted(found)


_DEFAULT_BLOCK_SECONDS = 30.0
_MAX_BLOCK_VALUES = 4_000_000
"""Samples (frames x channels) read at once: 16 MB of float32 whatever the
rate and channel count, so memory stays bounded for any header."""

MAX_CHANNELS = 64
"""Channel counts above this are refused as a corrupt header."""

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
"""Sample rates a file may declare: anything else is a corrupt header (a 56 KB
clip that says 1 Hz would decode to hours), refused before decoding."""


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
        info = sf.info(os.fsencode(path))  # bytes: also names that are not UTF-8
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
    if info.channels > MAX_CHANNELS:
        raise AudioFileError(
            path, f"{info.channels} channels: more than {MAX_CHANNELS} (a corrupt header?)"
        )
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioFileError(
            path,
            f"sample rate {info.samplerate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz "
            "(a corrupt header, or not a recording)",
        )
    if info.frames <= 0:
        raise AudioFileError(path, "contains no audio samples (zero length)")
    if str(info.format) in ("WAV", "WAVEX"):
        declared = _declared_wav_frames(path)
        if declared is not None and declared > info.frames:
            # libsndfile silently shortens such files to the bytes present.
            raise AudioFileError(
                path,
                f"file is truncated: header promises {declared} frames "
                f"({declared / info.samplerate:.3f} s) but data ends at frame {info.frames} "
                f"({info.frames / info.samplerate:.3f} s)",
                hint="copy or download the file again (or rewrite it, e.g. with sox, "
                "to keep the part that is there)",
            )
    return AudioInfo(
        path=path,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def _declared_wav_frames(path: Path) -> int | None:
    """Frames the RIFF ``data`` chunk header declares; ``None`` when unknown.

    Sizes 0 and 0xFFFFFFFF are the "still recording / streamed" placeholders
    that libsndfile rightly reads to the end of the file, so they count as unknown.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            for _ in range(64):  # a real header has a handful of chunks
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if chunk_id == b"data":
                    if size in (0, 0xFFFFFFFF) or block_align <= 0:
                        return None
                    return size // block_align
                if chunk_id == b"fmt ":
                    fmt = handle.read(min(size, 16))
                    if len(fmt) < 14:
                        return None
                    block_align = int.from_bytes(fmt[12:14], "little")
                    handle.seek(size - len(fmt), os.SEEK_CUR)
                else:
                    handle.seek(size, os.SEEK_CUR)
                if size % 2:  # chunks are padded to an even size
                    handle.seek(1, os.SEEK_CUR)
    except OSError:
        return None
    return None


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return text[:160]


RESAMPLE_QUALITY = "HQ"
"""soxr's high-quality preset: 20-bit precision, passband to 95 % of Nyquist."""


def resample(samples: np.ndarray, orig: int, new: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a 1-D signal (libsoxr, any rate ratio).

    Returns float32 of length ``ceil(len(samples) * new / orig)``. Why soxr:
    its filter is bounded whatever the ratio, so an odd rate (11,127 Hz) costs
    what 11,025 Hz does; a sinc resampler built on ``new / gcd`` phases needed
    gigabytes for such rates.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {samples.shape}")
    if orig == new:
        return samples
    stream = _ResampleStream(int(orig), int(new), samples.shape[0])
    return stream.push(samples, last=True)


class _ResampleStream:
    """soxr's streaming resampler, trimmed or padded to ``ceil(n * new / orig)``
    samples in all, so streamed blocks join to exactly :func:`resample`'s output."""

    def __init__(self, orig: int, new: int, n_input: int) -> None:
        import soxr

        self._stream = soxr.ResampleStream(orig, new, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        self._left = math.ceil(n_input * new / orig)

    def push(self, block: np.ndarray, *, last: bool) -> np.ndarray:
        out = self._stream.resample_chunk(np.ascontiguousarray(block, np.float32), last=last)
        out = np.asarray(out, dtype=np.float32)[: self._left]
        if last and out.shape[0] < self._left:
            out = np.pad(out, (0, self._left - out.shape[0]))
        self._left -= out.shape[0]
        return out


class MixCheck:
    """Energy of the channels and of their mono mix over a whole stream.

    Why: averaging channels in anti-phase (a miswired stereo microphone) gives
    near silence, which would be scored or stored as if it were the recording.
    """

    CANCEL_DB = -20.0
    """A mix this far below its channels' mean energy counts as cancelled."""

    def __init__(self) -> None:
        self.channel_energy = 0.0
        self.mix_energy = 0.0

    def add(self, channels: np.ndarray, mix: np.ndarray) -> None:
        if channels.ndim == 2 and channels.shape[1] > 1:
            per_frame = np.mean(np.square(channels, dtype=np.float64), axis=1)
            self.channel_energy += float(per_frame.sum())
            self.mix_energy += float(np.square(mix, dtype=np.float64).sum())

    def note(self, path: Path) -> str | None:
        """A one-line warning when the channels cancelled in the mix, else ``None``."""
        if self.channel_energy <= 1e-12:
            return None
        ratio_db = 10 * math.log10(max(self.mix_energy, 1e-30) / self.channel_energy)
        if ratio_db > self.CANCEL_DB:
            return None
        return (
            f"{path}: its channels cancel when mixed to mono (anti-phase stereo?): the mix "
            f"is {-ratio_db:.0f} dB quieter than the channels; use one channel of the file"
        )


def _to_mono(block: np.ndarray, mix_check: MixCheck | None = None) -> np.ndarray:
    if block.ndim == 2:
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        if mix_check is not None:
            mix_check.add(block, mono)
        block = mono
    return np.ascontiguousarray(block, dtype=np.float32)


def _read_exact(
    handle: sf.SoundFile, path: Path, start: int, count: int, mix_check: MixCheck | None = None
) -> np.ndarray:
    handle.seek(start)
    data = handle.read(count, dtype="float32", always_2d=True)
    if data.shape[0] < count:
        raise AudioFileError(
            path,
            f"file is truncated: header promises {handle.frames} frames but data ends "
            f"at frame {start + data.shape[0]}",
        )
    mono = _to_mono(data, mix_check)
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
    on_note: Callable[[str], None] | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 mono blocks at ``sample_rate``; memory stays constant.

    ``on_note`` gets a one-line warning, after the last block, when the
    channels cancelled each other in the mono mix (:class:`MixCheck`).

    The file is opened and checked when this is called (errors come at once, not
    at the first ``next()``). Blocks are at most ``block_seconds`` long at the
    output rate. Resampling streams through one soxr resampler, so the blocks
    join to exactly what resampling the whole segment at once gives, and memory
    is one block plus the filter's state whatever the rates.
    """
    if offset < 0:
        raise BadInputError(f"offset must be >= 0 seconds, got {offset}")
    if duration is not None and duration <= 0:
        raise BadInputError(f"duration must be > 0 seconds, got {duration}")
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be > 0, got {block_seconds}")
    info = probe_audio(path)
    path = info.path
    orig = info.sample_rate
    first = min(info.frames, round(offset * orig))
    last = info.frames if duration is None else min(info.frames, first + round(duration * orig))
    if first >= info.frames:
        raise AudioFileError(
            path, f"offset {offset:.3f} s is past the end of the file ({info.duration:.3f} s)"
        )
    segment = _Segment(path, orig, sample_rate, block_seconds, first, last)
    return _stream_blocks(segment, on_note)


class _Segment(NamedTuple):
    """Frames ``first..last`` of ``path`` (at its rate ``orig``), wanted at
    ``sample_rate`` in blocks of ``block_seconds``."""

    path: Path
    orig: int
    sample_rate: int
    block_seconds: float
    first: int
    last: int


def _stream_blocks(
    segment: _Segment, on_note: Callable[[str], None] | None
) -> Iterator[np.ndarray]:
    """The generator behind :func:`stream_audio`; opens the file on first ``next()``."""
    mix_check = MixCheck() if on_note is not None else None
    yield from _decoded_blocks(segment, mix_check)
    if on_note is not None and mix_check is not None:
        note = mix_check.note(segment.path)
        if note:
            on_note(note)


def _decoded_blocks(segment: _Segment, mix_check: MixCheck | None) -> Iterator[np.ndarray]:
    path, orig, sample_rate, block_seconds, first, last = segment
    try:
        handle = sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioFileError(path, f"cannot be decoded: {_short(error)}") from error
    with handle:
        block = max(1, min(round(block_seconds * orig), _MAX_BLOCK_VALUES // handle.channels))
        if orig == sample_rate:
            for start in range(first, last, block):
                yield _read_safe(handle, path, start, min(block, last - start), mix_check)
            return
        out_block = max(1, round(block_seconds * sample_rate))
        resampler = _ResampleStream(orig, sample_rate, last - first)
        for start in range(first, last, block):
            stop = min(last, start + block)
            samples = _read_safe(handle, path, start, stop - start, mix_check)
            out = resampler.push(samples, last=stop == last)
            for at in range(0, out.shape[0], out_block):  # the final flush can be longer
                yield out[at : at + out_block]


def _read_safe(
    handle: sf.SoundFile, path: Path, start: int, count: int, mix_check: MixCheck | None
) -> np.ndarray:
    try:
        return _read_exact(handle, path, start, count, mix_check)
    except AudioFileError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioFileError(
            path, f"cannot be decoded (corrupt or truncated data: {_short(error)})"
        ) from error


def load_audio(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode a whole file (or a segment) to float32 mono at ``sample_rate``."""
    blocks = list(stream_audio(path, sample_rate=sample_rate, offset=offset, duration=duration))
    if not blocks:
        raise AudioFileError(path, "contains no audio samples (zero length)")
    return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]


_WRITE_FORMATS = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".au": "AU",
    ".caf": "CAF",
}


def write_audio(
    path: str | Path,
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    subtype: str | None = None,
) -> Path:
    """Write float samples in [-1, 1] atomically (temp file + rename).

    The container follows the extension (WAV for unknown ones); ``subtype``
    defaults to PCM_16 where the container takes it, else the container's own
    default (Vorbis for .ogg, Opus for .opus, MPEG Layer III for .mp3).
    """
    path = Path(path)
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    suffix = path.suffix.lower()
    fmt = _WRITE_FORMATS.get(suffix, "WAV")
    if subtype is None:
        if suffix == ".opus":
            subtype = "OPUS"
        elif sf.check_format(fmt, "PCM_16"):
            subtype = "PCM_16"
        else:
            subtype = sf.default_subtype(fmt)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt)
    return path
