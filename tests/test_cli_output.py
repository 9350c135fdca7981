"""cli/_output.py: notes print above live progress bars, not glued onto them."""

from __future__ import annotations

import io
import sys

from rich.console import Console

from serenesense_cli.cli import _output
from serenesense_cli.progress import ProgressUpdate


def test_log_inside_progress_goes_through_the_live_console(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    made: list[Console] = []

    def terminal() -> Console:  # a new console per call, like the real one
        made.append(Console(file=buffer, force_terminal=True, width=100, soft_wrap=True))
        return made[-1]

    monkeypatch.setattr(_output, "stderr_console", terminal)
    with _output.progress_bars() as on_progress:
        on_progress(ProgressUpdate(stage="steps", done=3, total=10, info={"note": ""}))
        assert _output._log_console() is made[0]  # the live display's own console
        _output.log("epoch 1: train loss 1.9451")
        on_progress(ProgressUpdate(stage="steps", done=6, total=10, info={"note": ""}))
    assert not _output._LIVE_CONSOLES
    lines = buffer.getvalue().replace("\r", "\n").splitlines()
    # rich moves the cursor back over the bars, prints the note on a line of
    # its own, then redraws the bars below it: no bar text on the note's line.
    note_lines = [line for line in lines if "epoch 1: train loss 1.9451" in line]
    assert note_lines
    assert all("steps" not in line and "━" not in line for line in note_lines)


def test_log_without_progress_uses_the_current_stderr(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    _output.log("plain note")
    assert buffer.getvalue() == "plain note\n"


def test_piped_tables_are_not_cut_to_80_columns(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    monkeypatch.delenv("COLUMNS", raising=False)
    long_name = "a_class_name_far_too_long_for_eighty_columns_" * 2
    rows = [{"class": long_name, "precision": 0.5, "recall": 0.25, "f1": 0.3333, "support": 12}]
    _output.emit_table(rows, ["class", "precision", "recall", "f1", "support"])
    assert long_name in buffer.getvalue()
