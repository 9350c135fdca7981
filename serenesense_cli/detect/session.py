"""One detect run as data: the header, the counts, the ``--until`` outcome, the summary.

Why a library object: the command line, the demo and scripts all run the same
bookkeeping over the detector's records (which events count, when ``--until``
is satisfied, what the summary holds, which exit status that means), so it
lives here once and the CLI only renders. The session checks the settings
against the model once and hands the checked rules to the record streams.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serenesense_cli.detect.decisions import DecisionRules, Event
from serenesense_cli.detect.detector import DetectConfig, stream_settings
from serenesense_cli.detect.files import FileFinished, FileRecord, detect_files, find_audio_files
from serenesense_cli.errors import BadInputError
from serenesense_cli.inference.backends import Backend
from serenesense_cli.progress import ProgressCallback

EXIT_FAILED = 1
"""A file (or the device) failed."""

EXIT_NOT_SEEN = 3
"""``--until CLASS``: the input ended without an event of CLASS."""


@dataclass
class DetectSession:
    """Settings checked once, and the running totals of one detect invocation."""

    backend: Backend
    config: DetectConfig = field(default_factory=DetectConfig)
    until: str | None = None
    """A class whose first event ends the run (exit status 0)."""
    source: str = "files"
    """``files`` or ``mic``: what the header names as the input."""
    rules: DecisionRules = field(init=False)
    counts: dict[str, int] = field(init=False, default_factory=dict)
    """Reported events per class (closed ones, and the one ``--until`` waited for)."""
    seen: bool = field(init=False, default=False)
    """Whether the ``--until`` class was seen."""
    files_done: int = field(init=False, default=0)
    files_failed: int = field(init=False, default=0)
    audio_seconds: float = field(init=False, default=0.0)
    scoring_seconds: float = field(init=False, default=0.0)
    recording: Any = field(init=False, default=None)
    """The microphone's :class:`~serenesense_cli.detect.mic.MicFinished`, once it came."""

    def __post_init__(self) -> None:
        self.rules = self.config.rules_for(self.classes)
        if self.until is not None and self.until not in self.classes:
            raise BadInputError(
                f"--until: the model has no class {self.until!r}",
                hint=f"its classes are: {', '.join(self.classes)}",
            )

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.backend.classes)

    def header(self) -> dict[str, Any]:
        """What output files record about the run before the first result."""
        return {
            "model": str(self.backend.path),
            "backend": self.backend.kind,
            "classes": list(self.classes),
            "source": self.source,
            "settings": stream_settings(self.backend, self.config, self.rules),
        }

    # ------------------------------------------------------------------ inputs

    def find_files(self, paths: Iterable[str | Path]) -> list[Path]:
        """Every audio file under ``paths``; refused at once if there is none."""
        files = find_audio_files(paths)
        if not files:
            raise BadInputError(
                "no audio files found in " + ", ".join(str(p) for p in paths),
                hint="folders are searched for .wav, .flac, .ogg, .mp3, ... files",
            )
        return files

    def file_records(
        self, files: list[Path], *, on_progress: ProgressCallback | None = None
    ) -> Iterator[FileRecord]:
        """The records of ``files`` (from :meth:`find_files`), one after another."""
        return detect_files(
            files,
            backend=self.backend,
            config=self.config,
            rules=self.rules,
            on_progress=on_progress,
        )

    def mic_records(
        self,
        *,
        device: str | None = None,
        duration: float | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[Any]:
        """The records of a live recording (see :func:`~serenesense_cli.detect.mic.detect_mic`)."""
        from serenesense_cli.detect.mic import detect_mic

        return detect_mic(
            backend=self.backend,
            config=self.config,
            rules=self.rules,
            device=device,
            duration=duration,
            stop=stop,
        )

    # ------------------------------------------------------------------ records

    def ends_run(self, event: Event) -> bool:
        """Whether ``event`` is the opening ``--until`` waits for (the run stops there)."""
        return self.until is not None and event.state == "open" and event.class_name == self.until

    def take_event(self, event: Event) -> bool:
        """Count ``event`` if it is one to report (closed, or the end of ``--until``).

        Returns whether it is reported; sets :attr:`seen` when it ends the run.
        """
        ends = self.ends_run(event)
        if ends:
            self.seen = True
        if event.state != "closed" and not ends:
            return False
        self.counts[event.class_name] = self.counts.get(event.class_name, 0) + 1
        return True

    def take_file(self, finished: FileFinished) -> None:
        """Add a finished (or failed) file to the totals."""
        self.files_done += 1
        self.audio_seconds += finished.seconds
        self.scoring_seconds += finished.scoring_seconds
        if finished.error:
            self.files_failed += 1

    def take_recording(self, finished: Any) -> None:
        """Keep the microphone's totals (a ``MicFinished``)."""
        self.recording = finished

    # ------------------------------------------------------------------ outcome

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        """The run's totals, as output files end with them."""
        if self.source == "mic":
            summary = self._recording_summary()
        else:
            summary = {
                "files": self.files_done + (1 if self.seen else 0),  # --until stops inside one
                "failed": self.files_failed,
                "events": self.events,
                "events_by_class": dict(self.counts),
                "audio_seconds": round(self.audio_seconds, 3),
                "scoring_seconds": round(self.scoring_seconds, 3),
            }
        if self.until is not None:
            summary["until"] = {"class": self.until, "seen": self.seen}
        return summary

    def _recording_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"events": self.events, "events_by_class": dict(self.counts)}
        finished = self.recording
        if finished is not None:
            summary.update(
                audio_seconds=round(finished.seconds, 3),
                windows=finished.windows,
                overflows=finished.overflows,
                dropped_seconds=round(finished.dropped_seconds, 3),
                scoring_seconds=round(finished.scoring_seconds, 3),
                interrupted=finished.interrupted,
            )
        return summary

    def exit_code(self) -> int:
        """0 done (or ``--until`` satisfied), 1 a file failed, 3 ``--until`` never satisfied."""
        if self.until is not None:
            if self.seen:
                return 0
            return EXIT_FAILED if self.files_failed else EXIT_NOT_SEEN
        return EXIT_FAILED if self.files_failed else 0
