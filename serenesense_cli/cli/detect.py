"""``serenesense detect``: find events in recordings or from a live microphone.

Files and the microphone go through one streaming detector (see
docs/detection.md). Results go to stdout (a table, or ``--format
json|jsonl|csv|raven``) or to ``--out``; logs and the summary go to stderr.

Exit codes: 0 every file was processed (events or not), 1 a file (or the
device) failed, 2 bad usage; with ``--until CLASS``: 0 as soon as an event of
CLASS opens, 3 when the input ended without one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._options import option
from serenesense_cli.cli._output import (
    emit_result_path,
    emit_table,
    log,
    progress_bars,
    stdout_console,
    warn,
)
from serenesense_cli.limits import COMMANDS

EXIT_NOT_SEEN = 3
"""``--until CLASS``: the input ended without an event of CLASS."""

_PANEL_INPUT = "Input"
_PANEL_DECIDE = "Decisions"
_PANEL_OUTPUT = "Output"
_SUFFIX_FORMATS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".txt": "raven",
    ".tsv": "raven",
}


class DetectFormat(str, Enum):
    """How detections are written."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    raven = "raven"


_opt = option


def detect_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Audio files or folders (searched recursively by extension).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        _opt(
            "Model: an .onnx file (onnxruntime, no torch), a run folder or a .safetensors file.",
            "--model",
            "-m",
            panel=_PANEL_INPUT,
        ),
    ] = None,
    mic: Annotated[
        bool, _opt("Listen to a microphone instead of files.", "--mic", panel=_PANEL_INPUT)
    ] = False,
    device: Annotated[
        str | None,
        _opt("Input device: a number or part of a name.", "--device", panel=_PANEL_INPUT),
    ] = None,
    duration: Annotated[
        float | None,
        _opt(
            "Stop after this many seconds of audio (--mic).",
            "--duration",
            panel=_PANEL_INPUT,
            callback=within(COMMANDS["mic_duration"]),
        ),
    ] = None,
    list_devices: Annotated[
        bool, _opt("List input devices and exit.", "--list-devices", panel=_PANEL_INPUT)
    ] = False,
    threads: Annotated[
        int | None,
        _opt(
            "Inference threads.",
            "--threads",
            panel=_PANEL_INPUT,
            callback=within(COMMANDS["threads"]),
        ),
    ] = None,
    no_spin: Annotated[
        bool,
        _opt(
            "Idle inference threads sleep instead of spinning (.onnx models): less CPU "
            "between windows, steadier on small or busy machines.",
            "--no-spin",
            panel=_PANEL_INPUT,
        ),
    ] = False,
    until: Annotated[
        str | None,
        _opt(
            "Exit 0 at the first event of this class (3 if the input ends without one).",
            "--until",
            panel=_PANEL_DECIDE,
        ),
    ] = None,
    hop: Annotated[
        float,
        _opt(
            "Seconds between scored windows.",
            "--hop",
            panel=_PANEL_DECIDE,
            callback=within(COMMANDS["hop"]),
        ),
    ] = 1.0,
    threshold: Annotated[
        str | None,
        _opt(
            "Score that opens an event: 0.6, or helicopter=0.8,vehicle=0.7 (default 0.5).",
            "--threshold",
            panel=_PANEL_DECIDE,
        ),
    ] = None,
    close_threshold: Annotated[
        str | None,
        _opt(
            "Score below which an event closes (same syntax; default 0.75 x threshold).",
            "--close-threshold",
            panel=_PANEL_DECIDE,
        ),
    ] = None,
    smooth: Annotated[
        int,
        _opt(
            "Average scores over this many windows.",
            "--smooth",
            panel=_PANEL_DECIDE,
            callback=within(COMMANDS["smooth"]),
        ),
    ] = 3,
    silence_dbfs: Annotated[
        float,
        _opt(
            "Windows quieter than this (RMS dBFS) get no decision; --silence-dbfs=-inf: off.",
            "--silence-dbfs",
            panel=_PANEL_DECIDE,
            callback=within(COMMANDS["silence_dbfs"]),
        ),
    ] = -60.0,
    min_duration: Annotated[
        float,
        _opt(
            "Drop events shorter than this (seconds).",
            "--min-duration",
            panel=_PANEL_DECIDE,
            callback=within(COMMANDS["min_duration"]),
        ),
    ] = 0.0,
    ignore: Annotated[
        list[str] | None,
        _opt(
            "A class that never opens events, e.g. the model's background class (repeatable).",
            "--ignore",
            panel=_PANEL_DECIDE,
        ),
    ] = None,
    pad_start: Annotated[
        bool,
        _opt(
            "Score zero-padded windows from the first hop, before a full window is in.",
            "--pad-start",
            panel=_PANEL_DECIDE,
        ),
    ] = False,
    windows: Annotated[
        bool, _opt("Also output every window's scores.", "--windows", panel=_PANEL_OUTPUT)
    ] = False,
    output_format: Annotated[
        DetectFormat,
        _opt(
            "table (people), json, jsonl, csv or raven (selection table).",
            "--format",
            panel=_PANEL_OUTPUT,
        ),
    ] = DetectFormat.table,
    out: Annotated[
        Path | None,
        _opt(
            "Write results to this file (format from --format, else from the extension).",
            "--out",
            "-o",
            panel=_PANEL_OUTPUT,
        ),
    ] = None,
) -> None:
    """Find events in recordings, or live from a microphone.

    Examples:

      serenesense detect field/ --model model.onnx

      serenesense detect long.flac --model runs/train/cnn --format raven --out long.txt

      serenesense detect --mic --model model.onnx --until helicopter && notify-send heli

      serenesense detect --mic --model model.onnx --format jsonl | jq .class
    """
    from serenesense_cli.errors import BadInputError

    if list_devices:
        _list_devices(output_format)
        return
    if model is None:
        raise BadInputError("no model given", hint="pass --model model.onnx (or a run folder)")
    if mic and paths:
        raise BadInputError("give files or --mic, not both")
    if not mic and not paths:
        raise BadInputError(
            "nothing to listen to", hint="pass audio files or folders, or --mic for a microphone"
        )
    if duration is not None and not mic:
        raise BadInputError("--duration is for --mic", hint="files are always read to the end")
    if device is not None and not mic:
        raise BadInputError("--device is for --mic")
    from serenesense_cli.evaluate.windows import check_hop_seconds

    check_hop_seconds(hop)  # before the model loads
    fmt = _resolve_format(output_format.value, out, mic=mic)
    if out is not None:
        _refuse_overwriting_inputs(out, paths or [], model)
    if fmt == "raven" and windows:
        raise BadInputError(
            "--windows is not available with --format raven",
            hint="use --format csv, json or jsonl for window scores",
        )

    from serenesense_cli.detect.detector import DetectConfig
    from serenesense_cli.inference.backends import open_backend

    if mic:  # fail fast (no PortAudio, no device) before loading a model
        from serenesense_cli.detect.mic import resolve_input_device

        resolve_input_device(device)

    config = DetectConfig(
        hop_seconds=hop,
        threshold=threshold,
        close_threshold=close_threshold,
        smooth=smooth,
        silence_dbfs=silence_dbfs,
        min_event_seconds=min_duration,
        pad_start=pad_start,
        ignore=tuple(ignore or ()),
    )
    backend = open_backend(model, threads=threads, spin=not no_spin)
    rules = config.rules_for(tuple(backend.classes))
    if until is not None and until not in backend.classes:
        raise BadInputError(
            f"--until: the model has no class {until!r}",
            hint=f"its classes are: {', '.join(backend.classes)}",
        )
    run = _Run(
        backend=backend,
        config=config,
        fmt=fmt,
        windows=windows,
        until=until,
        header={
            "model": str(backend.path),
            "backend": backend.kind,
            "classes": list(backend.classes),
            "source": "mic" if mic else "files",
            "settings": {
                "sample_rate": backend.sample_rate,
                "window_seconds": backend.clip_samples / backend.sample_rate,
                "hop_seconds": hop,
                "pad_start": pad_start,
                **rules.as_dict(),
            },
        },
    )
    with _sink(out) as stream:
        try:
            code = (
                run.mic(stream, device=device, duration=duration)
                if mic
                else run.files(stream, paths or [])
            )
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(0) from None
    if out is not None:
        emit_result_path(out)
    if code:
        raise typer.Exit(code)


MODEL_FILE_SUFFIXES = frozenset({".onnx", ".safetensors", ".json"})
"""Files a model path (a run folder) is read from."""


def _refuse_overwriting_inputs(out: Path, recordings: list[Path], model: Path) -> None:
    """``--out`` may be neither a recording (or a file a scanned folder holds) nor the model."""
    from serenesense_cli.audio.io import AUDIO_EXTENSIONS
    from serenesense_cli.fileio import refuse_input_as_output

    refuse_input_as_output(out, recordings, read_from_folders=AUDIO_EXTENSIONS)
    refuse_input_as_output(out, [model], read_from_folders=MODEL_FILE_SUFFIXES)


def _resolve_format(requested: str, out: Path | None, *, mic: bool) -> str:
    from serenesense_cli.errors import BadInputError

    if requested != "table":
        return requested
    if out is not None:
        suffix = out.suffix.lower()
        if suffix not in _SUFFIX_FORMATS:
            raise BadInputError(
                f"--out {out}: cannot tell the format from {suffix or 'no extension'}",
                hint="add --format json|jsonl|csv|raven (or use .json, .jsonl, .csv, .txt)",
            )
        return _SUFFIX_FORMATS[suffix]
    if mic and not stdout_console().is_terminal:
        return "jsonl"  # piped: events as JSON lines, for scripts
    return "table"


@contextlib.contextmanager
def _sink(out: Path | None) -> Iterator[TextIO]:
    if out is None:
        yield sys.stdout
        return
    from serenesense_cli.fileio import atomic_path

    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        yield handle


def _silence_stdout() -> None:
    """The reader went away (``| head``): stop writing without a traceback at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _list_devices(output_format: DetectFormat) -> None:
    from serenesense_cli.cli._output import emit_csv, emit_json
    from serenesense_cli.detect.mic import list_input_devices

    rows = [
        {
            "index": d.index,
            "name": d.name,
            "hostapi": d.hostapi,
            "channels": d.channels,
            "default_rate": d.default_samplerate,
            "default": "*" if d.default else "",
        }
        for d in list_input_devices()
    ]
    columns = ["index", "name", "hostapi", "channels", "default_rate", "default"]
    if output_format in (DetectFormat.json, DetectFormat.jsonl):
        emit_json(rows)
    elif output_format is DetectFormat.csv:
        emit_csv(rows, columns)
    else:
        emit_table(rows, columns, title="Input devices")
    if not rows:
        warn("no input devices found (on Linux, `arecord -l` lists the sound cards)")


class _Run:
    """One detect invocation: feeds records to a writer or the table view."""

    def __init__(
        self,
        *,
        backend: Any,
        config: Any,
        fmt: str,
        windows: bool,
        until: str | None,
        header: dict[str, Any],
    ) -> None:
        self.backend = backend
        self.config = config
        self.fmt = fmt
        self.windows = windows
        self.until = until
        self.header = header
        self.classes = tuple(backend.classes)
        self.counts: dict[str, int] = {}

    def _writer(self, stream: TextIO) -> Any:
        if self.fmt == "table":
            return None
        from serenesense_cli.detect.writers import make_writer

        return make_writer(
            self.fmt,
            stream,
            classes=self.classes,
            sample_rate=self.backend.sample_rate,
            windows=self.windows,
            header=self.header,
        )

    def _seen(self, record: Any) -> bool:
        return self.until is not None and record.state == "open" and record.class_name == self.until

    # ------------------------------------------------------------------ files

    def files(self, stream: TextIO, paths: list[Path]) -> int:
        from serenesense_cli.detect.decisions import Event, WindowDecision
        from serenesense_cli.detect.files import (
            FileFinished,
            FileStarted,
            detect_files,
            find_audio_files,
        )
        from serenesense_cli.errors import BadInputError

        if not find_audio_files(paths):
            raise BadInputError(
                "no audio files found in " + ", ".join(str(p) for p in paths),
                hint="folders are searched for .wav, .flac, .ogg, .mp3, ... files",
            )
        writer = self._writer(stream)
        failed = done = 0
        seconds = scoring = 0.0
        seen = False
        events: list[Any] = []
        window_rows: list[dict[str, Any]] = []
        current: Any = None
        with progress_bars(transient=True) as on_progress:
            records = detect_files(
                paths, backend=self.backend, config=self.config, on_progress=on_progress
            )
            try:
                for record in records:
                    if isinstance(record, FileStarted):
                        events, window_rows, current = [], [], record
                        if writer:
                            writer.start_source(str(record.path), duration=record.duration)
                    elif isinstance(record, Event):
                        if record.state == "closed" or self._seen(record):
                            self._count(record)
                            events.append(record)
                            if writer:
                                writer.event(record)
                        if self._seen(record):
                            seen = True
                            log(f"{record.class_name} at {record.start:.1f} s in {record.source}")
                            if writer is None:
                                self._file_table(current.path, record.end, events, window_rows)
                            break
                    elif isinstance(record, WindowDecision):
                        if self.windows:
                            if writer:
                                writer.window(record)
                            else:
                                from serenesense_cli.detect.render import window_row

                                window_rows.append(window_row(record, self.classes))
                    elif isinstance(record, FileFinished):
                        done += 1
                        seconds += record.seconds
                        scoring += record.scoring_seconds
                        if writer:
                            writer.finish_source(
                                str(record.path),
                                seconds=record.seconds,
                                error=record.error,
                                windows_scored=record.windows,
                            )
                        for note in record.notes:
                            warn(note)
                        if record.error:
                            failed += 1
                            warn(record.error + (f" ({record.hint})" if record.hint else ""))
                        elif writer is None:
                            self._file_table(record.path, record.seconds, events, window_rows)
            finally:
                records.close()
        summary = {
            "files": done + (1 if seen else 0),  # --until stops inside a file
            "failed": failed,
            "events": sum(self.counts.values()),
            "events_by_class": dict(self.counts),
            "audio_seconds": round(seconds, 3),
            "scoring_seconds": round(scoring, 3),
        }
        if self.until is not None:
            summary["until"] = {"class": self.until, "seen": seen}
        if writer:
            writer.close(summary)
        self._log_summary(summary)
        if self.until is not None:
            return 0 if seen else (1 if failed else EXIT_NOT_SEEN)
        return 1 if failed else 0

    def _count(self, event: Any) -> None:
        self.counts[event.class_name] = self.counts.get(event.class_name, 0) + 1

    def _file_table(
        self, path: Path, seconds: float, events: list[Any], window_rows: list[dict[str, Any]]
    ) -> None:
        from serenesense_cli.detect.render import (
            EVENT_COLUMNS,
            EVENT_HEADERS,
            WINDOW_COLUMNS,
            event_row,
            timeline,
        )

        if window_rows:
            emit_table(window_rows, WINDOW_COLUMNS, title=f"{path}: windows")
        title = f"{path} ({seconds:.1f} s): {len(events)} event(s)"
        if not events:
            stdout_console().print(title, highlight=False)
            return
        emit_table(
            [event_row(e) for e in events], EVENT_COLUMNS, headers=EVENT_HEADERS, title=title
        )
        stdout_console().print(timeline(events, seconds))

    def _log_summary(self, summary: dict[str, Any]) -> None:
        by_class = ", ".join(f"{k} {v}" for k, v in sorted(summary["events_by_class"].items()))
        speed = ""
        if summary["scoring_seconds"] > 0:
            speed = f", {summary['audio_seconds'] / summary['scoring_seconds']:.0f}x real time"
        log(
            f"{summary['files']} file(s), {summary['failed']} failed, "
            f"{summary['audio_seconds']:.1f} s of audio{speed}; "
            f"{summary['events']} event(s){': ' + by_class if by_class else ''}"
        )

    # ------------------------------------------------------------------ microphone

    def mic(self, stream: TextIO, *, device: str | None, duration: float | None) -> int:
        from serenesense_cli.detect.decisions import Event, WindowDecision
        from serenesense_cli.detect.mic import MicFinished, MicStarted, detect_mic

        writer = self._writer(stream)
        stop = threading.Event()
        view: Any = None
        live: Any = None
        seen = False
        finished: Any = None
        stats: Any = None
        records = detect_mic(
            backend=self.backend, config=self.config, device=device, duration=duration, stop=stop
        )
        with _stop_on_signals(stop):
            try:
                for record in records:
                    if isinstance(record, MicStarted):
                        if writer:
                            writer.origin = record.started_at
                            writer.start_source(record.source)
                        else:
                            view, live = self._start_live(record)
                        log(
                            f"listening on {record.device.name} (#{record.device.index}) at "
                            f"{record.sample_rate} Hz; Ctrl-C stops"
                        )
                        stats = record.stats
                    elif isinstance(record, (Event, WindowDecision)):
                        if view is not None:
                            view.update(record)
                            view.overflows = stats.overflows if stats is not None else 0
                            live.update(view.renderable())
                        if isinstance(record, Event):
                            if record.state == "closed":
                                self._count(record)
                            if writer and (
                                record.state == "closed"
                                or self.fmt == "jsonl"
                                or self._seen(record)
                            ):
                                writer.event(record)
                            if self._seen(record):
                                seen = True
                                log(f"{record.class_name} at {record.start:.1f} s (--until)")
                                break
                        elif writer and self.windows:
                            writer.window(record)
                    elif isinstance(record, MicFinished):
                        finished = record
                        if writer:
                            writer.finish_source(record.source, seconds=record.seconds)
            finally:
                records.close()
                if live is not None:
                    live.stop()
        summary = self._mic_summary(finished, seen)
        if writer:
            writer.close(summary)
        if view is not None and view.events:
            from serenesense_cli.detect.render import EVENT_COLUMNS, EVENT_HEADERS, event_row

            events = list(view.events)[::-1]
            emit_table([event_row(e) for e in events], EVENT_COLUMNS, headers=EVENT_HEADERS)
        if self.until is not None:
            return 0 if seen else EXIT_NOT_SEEN
        return 0

    def _start_live(self, record: Any) -> tuple[Any, Any]:
        from rich.live import Live

        from serenesense_cli.detect.render import LiveView

        view = LiveView(classes=self.classes, source=record.source)
        live = Live(view.renderable(), console=stdout_console(), refresh_per_second=8)
        live.start()
        return view, live

    def _mic_summary(self, finished: Any, seen: bool) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "events": sum(self.counts.values()),
            "events_by_class": dict(self.counts),
        }
        if finished is not None:
            summary.update(
                audio_seconds=round(finished.seconds, 3),
                windows=finished.windows,
                overflows=finished.overflows,
                dropped_seconds=round(finished.dropped_seconds, 3),
                scoring_seconds=round(finished.scoring_seconds, 3),
                interrupted=finished.interrupted,
            )
            by_class = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            load = (
                f"; scoring used {100 * finished.scoring_seconds / finished.seconds:.0f}% "
                "of real time"
                if finished.seconds > 0
                else ""
            )
            log(
                f"{'stopped' if finished.interrupted else 'done'}: {finished.seconds:.1f} s "
                f"recorded, {finished.windows} windows, {summary['events']} event(s)"
                f"{': ' + by_class if by_class else ''}{load}"
            )
            if finished.overflows or finished.dropped_seconds:
                warn(
                    f"{finished.overflows} input overflow(s), {finished.dropped_seconds:.1f} s "
                    "dropped because scoring fell behind (try a smaller model or more --threads)"
                )
        if self.until is not None:
            summary["until"] = {"class": self.until, "seen": seen}
        return summary


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (and systemd's SIGTERM) end the recording cleanly; a second Ctrl-C aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
