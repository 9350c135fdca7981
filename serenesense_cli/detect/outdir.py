"""``detect --out DIR``: one result file per recording, plus a combined table.

Why: a folder of recordings is reviewed one recording at a time (a selection
table opened next to its recording in Raven, a label track in Audacity), as
BirdNET-Analyzer writes its results, while counting over the whole run wants
one table. So a folder output holds both:

- ``DIR/<path of the recording under its input folder, without extension><tag>``
  per recording, the input folders mirrored (a recording given as a file goes
  to ``DIR/<its name>``); ``<tag>`` names the format (:data:`RESULT_TAGS`);
- ``DIR/combined<tag>`` over all recordings (CSV for Audacity, whose labels
  hold one recording);
- with ``--windows`` and CSV, ``<stem>.windows.csv`` and ``combined.windows.csv``;
- with ``--plot``, ``<stem>.png`` (see :mod:`serenesense_cli.detect.plot`).

Every file is written atomically (a temporary file renamed into place when
it is complete). A recording that fails gets no result file of its own (the
error is in the combined JSON / JSON lines and reported by the caller). Two
recordings whose outputs would share a name get the audio extension in the
name (``a.wav.detections.csv`` and ``a.flac.detections.csv``); no output may be
an input.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from serenesense_cli.detect.decisions import Event, WindowDecision
from serenesense_cli.detect.writers import DetectionWriter, make_writer
from serenesense_cli.errors import BadInputError, SereneSenseError
from serenesense_cli.fileio import atomic_path

RESULT_TAGS = {
    "json": ".detections.json",
    "jsonl": ".detections.jsonl",
    "csv": ".detections.csv",
    "raven": ".selections.txt",
    "audacity": ".labels.txt",
    "birdnet-csv": ".birdnet.csv",
}
"""What ends a result file's name, by format (``.events.csv`` is left to ground
truths: :func:`~serenesense_cli.data.scenes.write_scene` writes one beside its recording)."""
WINDOWS_TAG = ".windows.csv"
PLOT_TAG = ".png"
COMBINED = "combined"
COMBINED_FORMAT = {"audacity": "csv"}
"""The combined table's format where the per-recording one holds a single recording."""
DEFAULT_FOLDER_FORMAT = "raven"
"""What BirdNET-Analyzer writes by default: a selection table per recording."""


def is_folder_output(out: Path) -> bool:
    """Whether ``--out`` names a folder: an existing one, or a new path without an extension
    (an existing file without one stays a file, whose format cannot be told)."""
    return out.is_dir() or (out.suffix == "" and not out.exists())


@dataclass(frozen=True)
class OutputLayout:
    """Where each recording's results go under one output folder."""

    folder: Path
    fmt: str
    bases: dict[str, Path]
    """Recording (as the detector names its source) -> its path without the tag."""
    windows_csv: bool = False
    plot: bool = False

    @property
    def combined_format(self) -> str:
        return COMBINED_FORMAT.get(self.fmt, self.fmt)

    @property
    def combined(self) -> Path:
        return self.folder / f"{COMBINED}{RESULT_TAGS[self.combined_format]}"

    @property
    def combined_windows(self) -> Path:
        return self.folder / f"{COMBINED}{WINDOWS_TAG}"

    def result(self, source: str) -> Path:
        return _tagged(self.bases[source], RESULT_TAGS[self.fmt])

    def windows(self, source: str) -> Path:
        return _tagged(self.bases[source], WINDOWS_TAG)

    def picture(self, source: str) -> Path:
        return _tagged(self.bases[source], PLOT_TAG)

    def paths(self) -> list[Path]:
        """Every file this layout may write."""
        out = [self.combined] + ([self.combined_windows] if self.windows_csv else [])
        for source in self.bases:
            out.append(self.result(source))
            if self.windows_csv:
                out.append(self.windows(source))
            if self.plot:
                out.append(self.picture(source))
        return out


def _tagged(base: Path, tag: str) -> Path:
    return base.with_name(base.name + tag)


def _relative(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` under the input folder it was found in, else its name."""
    for root in roots:
        if Path(root) != path:  # a recording given as a file goes to DIR/<its name>
            with contextlib.suppress(ValueError):
                return path.relative_to(root)
    return Path(path.name)


def plan_outputs(
    files: Sequence[Path],
    roots: Sequence[Path],
    folder: Path,
    fmt: str,
    *,
    windows: bool = False,
    plot: bool = False,
) -> OutputLayout:
    """Each recording's output names under ``folder``; refused if one would be an input."""
    rel = {str(f): _relative(f, roots) for f in files}
    reserved = {Path(COMBINED)}
    short = {s: r.with_suffix("") for s, r in rel.items()}
    counts: dict[Path, int] = {}
    for base in short.values():
        counts[base] = counts.get(base, 0) + 1
    bases: dict[str, Path] = {}
    taken: dict[Path, str] = {}
    for source, base in short.items():
        if counts[base] > 1 or base in reserved:
            base = rel[source]  # keep the audio extension: a.wav / a.flac
        if base in taken:
            raise BadInputError(
                f"--out {folder}: {taken[base]} and {source} would write the same result "
                f"file ({base})",
                hint="detect them in separate runs, or into separate --out folders",
            )
        taken[base] = source
        bases[source] = folder / base
    layout = OutputLayout(
        folder=folder, fmt=fmt, bases=bases, windows_csv=windows and fmt == "csv", plot=plot
    )
    inputs = {os.path.realpath(f) for f in files}
    for path in layout.paths():
        if os.path.realpath(path) in inputs:
            raise BadInputError(
                f"{path}: --out would overwrite an input of this command",
                hint="choose another folder for --out",
            )
    return layout


class _PendingFile:
    """A text file being written to a temporary path, renamed into place on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._context = atomic_path(path)
        tmp = self._context.__enter__()
        self.stream: TextIO = tmp.open("w", encoding="utf-8", newline="")

    def commit(self) -> Path:
        self.stream.close()
        self._context.__exit__(None, None, None)
        return self.path

    def discard(self) -> None:
        self.stream.close()
        with contextlib.suppress(_Discarded):
            self._context.__exit__(_Discarded, _Discarded(), None)


class _Discarded(Exception):
    """Thrown into an atomic write to make it delete its temporary file."""


PictureFunction = Callable[..., Any]


class FolderWriter(DetectionWriter):
    """A writer that fans records out to per-recording files and the combined table(s).

    Takes the same calls as any :class:`DetectionWriter`; ``written`` lists the
    files completed so far. With ``picture`` (a function like
    :func:`~serenesense_cli.detect.plot.plot_recording`), each recording that
    was read to the end also gets a PNG of its spectrogram and events.
    """

    def __init__(
        self,
        layout: OutputLayout,
        *,
        classes: Sequence[str],
        sample_rate: int,
        windows: bool = False,
        header: dict[str, Any] | None = None,
        picture: PictureFunction | None = None,
    ) -> None:
        super().__init__(
            _NullStream(), classes=classes, sample_rate=sample_rate, windows=windows, header=header
        )
        self.layout = layout
        self.picture = picture
        self.written: list[Path] = []
        self.problems: list[str] = []
        """Pictures that could not be drawn (the results were still written)."""
        self._pending: list[_PendingFile] = []
        self._combined = self._open_set(layout.combined, layout.combined_windows, combined=True)
        self._current: list[tuple[_PendingFile, DetectionWriter]] = []
        self._events: list[Event] = []
        self._counts: dict[str, int] = {}

    def _writer(self, fmt: str, pending: _PendingFile, *, windows: bool) -> DetectionWriter:
        return make_writer(
            fmt,
            pending.stream,
            classes=self.classes,
            sample_rate=self.sample_rate,
            windows=windows,
            header=self.header,
        )

    def _open_set(
        self, result: Path, windows_path: Path, *, combined: bool
    ) -> list[tuple[_PendingFile, DetectionWriter]]:
        """The writers of one output set: results, and window scores where they need a file."""
        fmt = self.layout.combined_format if combined else self.layout.fmt
        opened: list[tuple[_PendingFile, DetectionWriter]] = []
        pending = self._open(result)
        opened.append((pending, self._writer(fmt, pending, windows=self.windows and fmt != "csv")))
        if self.windows and self.layout.windows_csv:
            pending = self._open(windows_path)
            opened.append((pending, self._writer("csv", pending, windows=True)))
        return opened

    def _open(self, path: Path) -> _PendingFile:
        pending = _PendingFile(path)
        self._pending.append(pending)
        return pending

    def _commit(self, pending: _PendingFile) -> None:
        self._pending.remove(pending)
        self.written.append(pending.commit())

    def _all(self) -> list[DetectionWriter]:
        return [w for _, w in self._combined + self._current]

    # ------------------------------------------------------------- the writer protocol

    def start_source(self, name: str, *, duration: float | None = None) -> None:
        self._close_current()
        self._current = self._open_set(
            self.layout.result(name), self.layout.windows(name), combined=False
        )
        self._events, self._counts = [], {}
        for writer in self._all():
            writer.origin = self.origin
            writer.start_source(name, duration=duration)

    def event(self, event: Event) -> None:
        if event.state == "closed":
            self._events.append(event)
            self._counts[event.class_name] = self._counts.get(event.class_name, 0) + 1
        for writer in self._all():
            writer.event(event)

    def window(self, window: WindowDecision) -> None:
        for writer in self._all():
            if writer.windows:
                writer.window(window)

    def finish_source(
        self, name: str, *, seconds: float, error: str | None = None, **info: Any
    ) -> None:
        for writer in self._all():
            writer.finish_source(name, seconds=seconds, error=error, **info)
        current, self._current = self._current, []
        if error is not None:
            for pending, _ in current:
                self._pending.remove(pending)
                pending.discard()
            return
        self._close_set(current, self._source_summary(seconds))
        if self.picture is not None:
            target = self.layout.picture(name)
            try:
                self.written.append(self.picture(Path(name), self._events, target, seconds=seconds))
            except (SereneSenseError, OSError) as error:
                self.problems.append(f"{target}: no picture ({error})")

    def close(self, summary: dict[str, Any]) -> None:
        self._close_current()
        self._close_set(self._combined, summary)
        self._combined = []

    def discard(self) -> None:
        """Remove every file not completed yet (the run was interrupted or failed)."""
        for pending in list(self._pending):
            pending.discard()
        self._pending.clear()

    # ------------------------------------------------------------- helpers

    def _close_current(self) -> None:
        """A source that never finished (``--until`` stopped inside it): keep what it has."""
        if self._current:
            self._close_set(self._current, self._source_summary(None))
            self._current = []

    def _close_set(self, opened: list[tuple[_PendingFile, DetectionWriter]], summary: Any) -> None:
        for pending, writer in opened:
            writer.close(summary)
            self._commit(pending)

    def _source_summary(self, seconds: float | None) -> dict[str, Any]:
        return {
            "files": 1,
            "failed": 0,
            "events": sum(self._counts.values()),
            "events_by_class": dict(self._counts),
            "audio_seconds": None if seconds is None else round(seconds, 3),
        }


class _NullStream:
    """The base writer's stream, unused: a folder writer writes to its files."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def folder_writer(layout: OutputLayout, **kwargs: Any) -> Iterator[FolderWriter]:
    """A :class:`FolderWriter` whose unfinished files are removed if the block fails."""
    writer = FolderWriter(layout, **kwargs)
    try:
        yield writer
    except BaseException:
        writer.discard()
        raise
