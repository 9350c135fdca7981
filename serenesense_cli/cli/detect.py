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
import sys
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
    stdout_console,
    warn,
)
from serenesense_cli.limits import COMMANDS

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
    audacity = "audacity"
    birdnet_csv = "birdnet-csv"


_opt = option


def detect_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="The model (an .onnx file: onnxruntime, no torch; a run folder or a "
            ".safetensors file), then audio files or folders (searched recursively by "
            "extension). With --model, every argument is audio.",
            show_default=False,
            metavar="MODEL [PATH]...",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        _opt(
            "The model, given as an option (then the arguments are all audio).",
            "--model",
            "-m",
            panel=_PANEL_INPUT,
        ),
    ] = None,
    mic: Annotated[
        bool, _opt("Listen to a microphone instead of files.", "--mic", panel=_PANEL_INPUT)
    ] = False,
    input_device: Annotated[
        str | None,
        _opt(
            "Sound card for --mic: a number or part of a name (see --list-devices).",
            "--input-device",
            panel=_PANEL_INPUT,
        ),
    ] = None,
    device: Annotated[
        str,
        _opt(
            "Compute device: cpu, cuda (GPU providers / torch CUDA; the CPU if there is "
            "none, said in one line) or auto.",
            "--device",
            panel=_PANEL_INPUT,
            metavar="cpu|cuda|auto",
        ),
    ] = "cpu",
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
            "Seconds between scored windows: the time resolution of events (evaluate uses "
            "half a window for clip scores).",
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
    batch_size: Annotated[
        int | None,
        _opt(
            "Windows per model call (files; the results do not depend on it). Default: 16, "
            "fewer for long windows (at most 80 s of audio a call, which bounds memory).",
            "--batch-size",
            "-b",
            panel=_PANEL_INPUT,
            callback=within(COMMANDS["batch"]),
        ),
    ] = None,
    windows: Annotated[
        bool, _opt("Also output every window's scores.", "--windows", panel=_PANEL_OUTPUT)
    ] = False,
    output_format: Annotated[
        DetectFormat,
        _opt(
            "table (people), json, jsonl, csv, raven (selection table), audacity (labels) "
            "or birdnet-csv (BirdNET-Analyzer's CSV columns).",
            "--format",
            "-f",
            panel=_PANEL_OUTPUT,
        ),
    ] = DetectFormat.table,
    out: Annotated[
        Path | None,
        _opt(
            "Write results to this file (format from --format, else from the extension), or "
            "to a folder (existing, or no extension): a file per recording and a combined one.",
            "--out",
            "-o",
            panel=_PANEL_OUTPUT,
        ),
    ] = None,
    thresholds: Annotated[
        Path | None,
        _opt(
            "Per-class thresholds from a CSV with class,threshold columns (the report's "
            "threshold table); classes it does not name keep --threshold.",
            "--thresholds",
            panel=_PANEL_DECIDE,
        ),
    ] = None,
    plot: Annotated[
        bool,
        _opt(
            "Also draw each recording's spectrogram with its events as a PNG (needs --out DIR).",
            "--plot",
            panel=_PANEL_OUTPUT,
        ),
    ] = False,
) -> None:
    """Find events in recordings, or live from a microphone.

    Examples:

      serenesense detect model.onnx field/

      serenesense detect runs/train/cnn long.flac --format raven --out long.txt

      serenesense detect model.onnx field/ --out results/ --plot

      serenesense detect model.onnx --mic --until helicopter && notify-send heli

      serenesense detect model.onnx --mic --format jsonl | jq .class
    """
    from serenesense_cli.errors import BadInputError

    if list_devices:
        _list_devices(output_format)
        return
    if model is None and paths:
        model, paths = paths[0], paths[1:]
    if model is None:
        raise BadInputError(
            "no model given", hint="serenesense detect MODEL.onnx RECORDING... (or --mic)"
        )
    device, input_device = _split_devices(device, input_device, mic=mic)
    if mic and paths:
        raise BadInputError("give files or --mic, not both")
    if not mic and not paths:
        raise BadInputError(
            "nothing to listen to", hint="pass audio files or folders, or --mic for a microphone"
        )
    if duration is not None and not mic:
        raise BadInputError("--duration is for --mic", hint="files are always read to the end")
    if input_device is not None and not mic:
        raise BadInputError("--input-device is for --mic")
    from serenesense_cli.evaluate.windows import check_hop_seconds

    check_hop_seconds(hop)  # before the model loads
    from serenesense_cli.detect.outdir import DEFAULT_FOLDER_FORMAT, is_folder_output
    from serenesense_cli.detect.writers import SINGLE_SOURCE_FORMATS, WINDOW_FORMATS

    folder = out is not None and is_folder_output(out)
    if folder and mic:
        raise BadInputError(
            f"--out {out}: a folder holds one result file per recording; with --mic give a file",
            hint="e.g. --out session.jsonl",
        )
    if folder:
        requested = output_format.value
        fmt = DEFAULT_FOLDER_FORMAT if requested == "table" else requested
    else:
        fmt = _resolve_format(output_format.value, out, mic=mic)
    if out is not None and not folder:
        _refuse_overwriting_inputs(out, paths or [], model)
    if fmt not in ("table", *WINDOW_FORMATS) and windows:
        raise BadInputError(
            f"--windows is not available with --format {fmt}",
            hint="use --format csv, json or jsonl for window scores",
        )
    if plot and not folder:
        raise BadInputError(
            "--plot needs --out DIR: one picture per recording goes beside its results",
            hint="or draw one recording with `serenesense plot RECORDING --events FILE`",
        )
    if mic and fmt in SINGLE_SOURCE_FORMATS:
        raise BadInputError(f"--format {fmt} is for recordings, not --mic")
    threshold_table = None
    if thresholds is not None:
        from serenesense_cli.detect.thresholds import read_threshold_table

        threshold_table = read_threshold_table(thresholds)
    if plot:
        from serenesense_cli.detect.plot import check_plotting

        check_plotting()

    from serenesense_cli.cli._detect_run import make_sink_writer, run_files, run_mic
    from serenesense_cli.detect.detector import DetectConfig
    from serenesense_cli.detect.session import DetectSession
    from serenesense_cli.inference.backends import open_backend

    if mic:  # fail fast (no PortAudio, no device) before loading a model
        from serenesense_cli.detect.mic import resolve_input_device

        resolve_input_device(input_device)

    config = DetectConfig(
        hop_seconds=hop,
        threshold=threshold,
        close_threshold=close_threshold,
        smooth=smooth,
        silence_dbfs=silence_dbfs,
        min_event_seconds=min_duration,
        pad_start=pad_start,
        ignore=tuple(ignore or ()),
        batch_size=batch_size,
        threshold_table=threshold_table,
        threshold_table_source=str(thresholds or ""),
    )
    backend = open_backend(model, threads=threads, spin=not no_spin, device=device)
    for note in backend.notes:
        warn(note)
    session = DetectSession(backend, config, until=until, source="mic" if mic else "files")
    files = [] if mic else session.find_files(paths or [])
    if fmt in SINGLE_SOURCE_FORMATS and not folder and len(files) > 1:
        raise BadInputError(
            f"--format {fmt} holds one recording, and {len(files)} were found",
            hint="use --out DIR/ for one label file per recording",
        )
    if folder:
        assert out is not None
        code = _run_into_folder(session, files, paths or [], out, model, fmt, windows, plot)
        emit_result_path(out)
        if code:
            raise typer.Exit(code)
        return
    with _sink(out) as stream:
        writer = make_sink_writer(session, fmt, stream, windows=windows)
        try:
            if mic:
                code = run_mic(
                    session,
                    writer,
                    fmt=fmt,
                    windows=windows,
                    device=input_device,
                    duration=duration,
                )
            else:
                code = run_files(session, writer, files, windows=windows)
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(0) from None
    if out is not None:
        emit_result_path(out)
    if code:
        raise typer.Exit(code)


def _split_devices(device: str, input_device: str | None, *, mic: bool) -> tuple[str, str | None]:
    """``--device`` is the compute device; a sound card given there (the old
    spelling, kept for one release) moves to ``--input-device`` with a warning."""
    from serenesense_cli.errors import BadInputError
    from serenesense_cli.inference.devices import INFERENCE_DEVICES

    if device in INFERENCE_DEVICES:
        return device, input_device
    if mic and input_device is None:
        warn(f"--device {device}: the sound card is now --input-device (--device is cpu|cuda)")
        return "cpu", device
    raise BadInputError(
        f"--device {device}: not a compute device",
        hint=f"use one of {', '.join(INFERENCE_DEVICES)}; the sound card is --input-device",
    )


MODEL_FILE_SUFFIXES = frozenset({".onnx", ".safetensors", ".json"})
"""Files a model path (a run folder) is read from."""


def _run_into_folder(
    session: Any,
    files: list[Path],
    roots: list[Path],
    out: Path,
    model: Path,
    fmt: str,
    windows: bool,
    plot: bool,
) -> int:
    """``--out DIR``: a result file per recording and a combined table; the exit status."""
    from serenesense_cli.cli._detect_run import run_files
    from serenesense_cli.detect.outdir import folder_writer, plan_outputs
    from serenesense_cli.fileio import refuse_input_as_output

    layout = plan_outputs(files, roots, out, fmt, windows=windows, plot=plot)
    for path in layout.paths():
        refuse_input_as_output(path, [model], read_from_folders=MODEL_FILE_SUFFIXES)
    picture = None
    if plot:
        from serenesense_cli.detect.plot import plot_recording

        picture = plot_recording
    with folder_writer(
        layout,
        classes=session.classes,
        sample_rate=session.backend.sample_rate,
        windows=windows,
        header=session.header(),
        picture=picture,
    ) as writer:
        code = run_files(session, writer, files, windows=windows)
    for problem in writer.problems:
        warn(problem)
    log(f"{len(writer.written)} file(s) written under {out} (all recordings: {layout.combined})")
    return code


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
                hint="add --format (json, jsonl, csv, raven, audacity, birdnet-csv) or use "
                ".json, .jsonl, .csv, .txt; for a folder, a new path without an extension",
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
