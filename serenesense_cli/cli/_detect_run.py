"""Where ``detect``'s records go: a writer (json, jsonl, csv, raven) or tables for people.

The counting, the ``--until`` outcome and the summary are the library's
(:class:`~serenesense_cli.detect.session.DetectSession`); this module only
passes records to the chosen sink and prints.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from serenesense_cli.cli._output import emit_table, log, progress_bars, stdout_console, warn


def make_sink_writer(session: Any, fmt: str, stream: TextIO, *, windows: bool) -> Any:
    """The writer for ``fmt``, or None for tables."""
    if fmt == "table":
        return None
    from serenesense_cli.detect.writers import make_writer

    return make_writer(
        fmt,
        stream,
        classes=session.classes,
        sample_rate=session.backend.sample_rate,
        windows=windows,
        header=session.header(),
    )


def run_files(session: Any, writer: Any, files: list[Path], *, windows: bool) -> int:
    """Detect in ``files`` (found by the session); returns the exit status."""
    from serenesense_cli.cli._detect_render import window_row
    from serenesense_cli.detect.decisions import Event, WindowDecision
    from serenesense_cli.detect.files import FileFinished, FileStarted

    events: list[Any] = []
    window_rows: list[dict[str, Any]] = []
    current: Any = None
    with progress_bars(transient=True) as on_progress:
        records = session.file_records(files, on_progress=on_progress)
        try:
            for record in records:
                if isinstance(record, FileStarted):
                    events, window_rows, current = [], [], record
                    if writer:
                        writer.start_source(str(record.path), duration=record.duration)
                elif isinstance(record, Event):
                    if session.take_event(record):
                        events.append(record)
                        if writer:
                            writer.event(record)
                    if session.seen:
                        log(f"{record.class_name} at {record.start:.1f} s in {record.source}")
                        if writer is None:
                            _file_table(current.path, record.end, events, window_rows)
                        break
                elif isinstance(record, WindowDecision) and windows:
                    if writer:
                        writer.window(record)
                    else:
                        window_rows.append(window_row(record, session.classes))
                elif isinstance(record, FileFinished):
                    session.take_file(record)
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
                        warn(record.error + (f" ({record.hint})" if record.hint else ""))
                    elif writer is None:
                        _file_table(record.path, record.seconds, events, window_rows)
        finally:
            records.close()
    summary = session.summary()
    if writer:
        writer.close(summary)
    _log_files_summary(summary)
    return session.exit_code()


def _file_table(
    path: Path, seconds: float, events: list[Any], window_rows: list[dict[str, Any]]
) -> None:
    from serenesense_cli.cli._detect_render import (
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
    emit_table([event_row(e) for e in events], EVENT_COLUMNS, headers=EVENT_HEADERS, title=title)
    stdout_console().print(timeline(events, seconds))


def _log_files_summary(summary: dict[str, Any]) -> None:
    by_class = ", ".join(f"{k} {v}" for k, v in sorted(summary["events_by_class"].items()))
    speed = ""
    if summary["scoring_seconds"] > 0:
        speed = f", {summary['audio_seconds'] / summary['scoring_seconds']:.0f}x real time"
    log(
        f"{summary['files']} file(s), {summary['failed']} failed, "
        f"{summary['audio_seconds']:.1f} s of audio{speed}; "
        f"{summary['events']} event(s){': ' + by_class if by_class else ''}"
    )


def run_mic(
    session: Any,
    writer: Any,
    *,
    fmt: str,
    windows: bool,
    device: str | None,
    duration: float | None,
) -> int:
    """Detect live from a microphone until the input ends or Ctrl-C; returns the exit status."""
    from serenesense_cli.detect.decisions import Event, WindowDecision
    from serenesense_cli.detect.mic import MicFinished, MicStarted

    stop = threading.Event()
    view: Any = None
    live: Any = None
    stats: Any = None
    records = session.mic_records(device=device, duration=duration, stop=stop)
    with _stop_on_signals(stop):
        try:
            for record in records:
                if isinstance(record, MicStarted):
                    if writer:
                        writer.origin = record.started_at
                        writer.start_source(record.source)
                    else:
                        view, live = _start_live(session, record)
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
                        reported = session.take_event(record)
                        if writer and (reported or fmt == "jsonl"):
                            writer.event(record)  # jsonl also streams openings
                        if session.seen:
                            log(f"{record.class_name} at {record.start:.1f} s (--until)")
                            break
                    elif writer and windows:
                        writer.window(record)
                elif isinstance(record, MicFinished):
                    session.take_recording(record)
                    if writer:
                        writer.finish_source(record.source, seconds=record.seconds)
        finally:
            records.close()
            if live is not None:
                live.stop()
    summary = session.summary()
    _log_recording(session)
    if writer:
        writer.close(summary)
    if view is not None and view.events:
        from serenesense_cli.cli._detect_render import EVENT_COLUMNS, EVENT_HEADERS, event_row

        events = list(view.events)[::-1]
        emit_table([event_row(e) for e in events], EVENT_COLUMNS, headers=EVENT_HEADERS)
    return session.exit_code()


def _start_live(session: Any, record: Any) -> tuple[Any, Any]:
    from rich.live import Live

    from serenesense_cli.cli._detect_render import LiveView

    view = LiveView(classes=session.classes, source=record.source)
    live = Live(view.renderable(), console=stdout_console(), refresh_per_second=8)
    live.start()
    return view, live


def _log_recording(session: Any) -> None:
    finished = session.recording
    if finished is None:
        return
    by_class = ", ".join(f"{k} {v}" for k, v in sorted(session.counts.items()))
    load = (
        f"; scoring used {100 * finished.scoring_seconds / finished.seconds:.0f}% of real time"
        if finished.seconds > 0
        else ""
    )
    log(
        f"{'stopped' if finished.interrupted else 'done'}: {finished.seconds:.1f} s "
        f"recorded, {finished.windows} windows, {session.events} event(s)"
        f"{': ' + by_class if by_class else ''}{load}"
    )
    if finished.overflows or finished.dropped_seconds:
        warn(
            f"{finished.overflows} input overflow(s), {finished.dropped_seconds:.1f} s "
            "dropped because scoring fell behind (try a smaller model or more --threads)"
        )


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
