"""Detect events in recordings: files and folders, streamed block by block.

Each file is read with :func:`~serenesense_cli.audio.io.stream_audio` (constant
memory, however long the recording) and its blocks are pushed through the
same :class:`~serenesense_cli.detect.detector.Detector` the microphone feeds.
A file that cannot be read is reported as a :class:`FileFinished` with an
error and the next one is processed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from serenesense_cli.audio.io import audio_files_in, probe_audio, stream_audio
from serenesense_cli.detect.decisions import DecisionRules
from serenesense_cli.detect.detector import DetectConfig, Detector, Record, batch_size_for
from serenesense_cli.errors import SereneSenseError
from serenesense_cli.inference.backends import Backend
from serenesense_cli.progress import ProgressCallback, report

DEFAULT_BLOCK_SECONDS = 10.0
"""Seconds read per block: bounds memory (and the batch of windows scored at once)."""


@dataclass(frozen=True)
class FileStarted:
    """A file is about to be processed."""

    path: Path
    index: int
    total: int
    duration: float
    """Seconds, from the header."""


@dataclass(frozen=True)
class FileFinished:
    """A file is done (or failed: ``error`` says why)."""

    path: Path
    index: int
    total: int
    seconds: float
    """Audio processed."""
    windows: int
    events: int
    scoring_seconds: float
    error: str | None = None
    hint: str | None = None
    notes: tuple[str, ...] = ()
    """Warnings about how the file was read (e.g. channels that cancelled in the mix)."""

    @property
    def ok(self) -> bool:
        return self.error is None


FileRecord = FileStarted | FileFinished | Record


def find_audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for audio extensions (sorted).

    Hidden files and folders (``.name``) inside folders are skipped; a path
    that does not exist is kept, so that it is reported as a failed file.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        found.extend(audio_files_in(path) if path.is_dir() else [path])
    return found


def detect_files(
    paths: Iterable[str | Path],
    *,
    backend: Backend,
    config: DetectConfig | None = None,
    rules: DecisionRules | None = None,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    on_progress: ProgressCallback | None = None,
) -> Iterator[FileRecord]:
    """Stream every file through a fresh detector; yield records as they happen.

    Per file: :class:`FileStarted`, then window decisions and events (open
    and closed) in stream order, then :class:`FileFinished`. Settings are
    checked against the model before the first file is opened (``rules``:
    already checked ones).
    """
    config = config or DetectConfig()
    rules = rules or config.rules_for(tuple(backend.classes))
    files = find_audio_files(paths)
    total = len(files)
    # A block holds at least one full batch of windows (bounded: batch_size <= 4096).
    batch = batch_size_for(config.batch_size, backend.clip_samples / backend.sample_rate)
    block_seconds = max(block_seconds, batch * config.hop_seconds)
    for index, path in enumerate(files):
        report(on_progress, "files", index, total, note=path.name)
        detector = Detector(backend, config, source=str(path), rules=rules)
        notes: list[str] = []
        try:
            info = probe_audio(path)
            yield FileStarted(path=path, index=index, total=total, duration=info.duration)
            done = 0.0
            for block in stream_audio(
                path,
                sample_rate=detector.sample_rate,
                block_seconds=block_seconds,
                on_note=notes.append,
            ):
                yield from detector.push(block)
                done += block.shape[0] / detector.sample_rate
                report(on_progress, "audio", round(done), round(info.duration), note=path.name)
            yield from detector.finish()
        except (SereneSenseError, OSError) as error:
            message = getattr(error, "message", None) or str(error)
            hint = getattr(error, "hint", None)
            if detector.seconds > 0:  # keep what was found before the damage
                yield from detector.finish()
            yield _finished(path, index, total, detector, error=message, hint=hint)
            continue
        yield _finished(path, index, total, detector, notes=tuple(notes))
    report(on_progress, "files", total, total)


def _finished(
    path: Path,
    index: int,
    total: int,
    detector: Detector,
    *,
    error: str | None = None,
    hint: str | None = None,
    notes: tuple[str, ...] = (),
) -> FileFinished:
    return FileFinished(
        path=path,
        index=index,
        total=total,
        seconds=detector.seconds,
        windows=detector.windows_scored,
        events=detector.events_closed,
        scoring_seconds=detector.scoring_seconds,
        error=error,
        hint=hint,
        notes=notes,
    )
