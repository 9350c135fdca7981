"""``serenesense plot RECORDING --events FILE``: a recording's spectrogram with its events.

The picture ``detect --plot`` draws, from event files: detections (any format
``detect`` writes) and, as a second lane, a reference annotation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serenesense_cli.cli._options import option
from serenesense_cli.cli._output import emit_result_path, warn


def plot_command(
    recording: Annotated[Path, typer.Argument(help="The audio file to draw.", show_default=False)],
    events: Annotated[
        Path | None,
        option("Detected events: a file detect wrote (any format).", "--events", "-e"),
    ] = None,
    reference: Annotated[
        Path | None,
        option(
            "Reference events, drawn as a second lane (Audacity labels, Raven, CSV, ...).",
            "--reference",
            "-r",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        option("The PNG to write (default: the recording's name with .png).", "--out", "-o"),
    ] = None,
) -> None:
    """Draw a recording's log-mel spectrogram with detected (and reference) events as a PNG.

    Events of other recordings in the files are left out (matched by file
    name); events without a file name (Audacity labels) are taken as this
    recording's. The PNG's path is the last stdout line.

    Examples:

      serenesense plot night.flac --events results/night.selections.txt --out night.png

      serenesense plot clip.wav -e clip.detections.csv -r clip.labels.txt
    """
    from serenesense_cli.audio.io import AUDIO_EXTENSIONS
    from serenesense_cli.detect.plot import check_plotting, plot_recording
    from serenesense_cli.detect.readers import read_events
    from serenesense_cli.errors import BadInputError
    from serenesense_cli.fileio import refuse_input_as_output

    target = out if out is not None else recording.with_suffix(".png")
    if target.suffix.lower() != ".png":
        raise BadInputError(f"--out {target}: a picture is written as .png")
    given = [p for p in (recording, events, reference) if p is not None]
    refuse_input_as_output(target, given, read_from_folders=AUDIO_EXTENSIONS)
    check_plotting()
    detected = _of_recording(read_events(events), recording) if events else []
    truth = _of_recording(read_events(reference), recording) if reference else None
    if events is not None and not detected:
        warn(f"{events}: no events of {recording.name}")
    path = plot_recording(recording, detected, target, reference=truth)
    emit_result_path(path)


def _of_recording(spans: list, recording: Path) -> list:
    """The spans of ``recording``: same path, same file name, or no file name at all."""
    names = {s.file for s in spans}
    if len(names) <= 1 and (not names or "" in names or _same(next(iter(names)), recording)):
        return spans
    return [s for s in spans if s.file == "" or _same(s.file, recording)]


def _same(name: str, recording: Path) -> bool:
    return name == str(recording) or Path(name).name == recording.name
