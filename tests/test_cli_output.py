"""cli/_output.py: notes print above live progress bars, not glued onto them."""

from __future__ import annotations

import io
import sys

from rich.console import Console
from rich.progress import Progress

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


def _terminal_bars(monkeypatch) -> tuple[io.StringIO, list[Console]]:
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    made: list[Console] = []

    def terminal() -> Console:
        made.append(Console(file=buffer, force_terminal=True, width=160, soft_wrap=True))
        return made[-1]

    monkeypatch.setattr(_output, "stderr_console", terminal)
    return buffer, made


def _steps(epoch: int, done: int, eta: float | None) -> ProgressUpdate:
    info = {"epoch": epoch, "loss": 1.0, "lr": 1e-3, "samples_per_s": 10.0, "eta_s": eta}
    return ProgressUpdate(stage="steps", done=done, total=4, info=info)


def test_training_bars_reuse_one_epoch_bar_and_show_the_run_eta(monkeypatch):
    from serenesense_cli.cli._training_output import RunProgress

    buffer, _ = _terminal_bars(monkeypatch)
    displays: list[Progress] = []

    class Recorded(Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            displays.append(self)

    monkeypatch.setattr(_output, "Progress", Recorded)
    during_validation: list[list[str]] = []
    with _output.progress_bars() as bars:
        run = RunProgress(bars, lambda row: f"epoch {row['epoch']}: val loss 0.5")
        run(ProgressUpdate(stage="epochs", done=0, total=3))
        for epoch in (1, 2):
            for step in range(1, 5):
                run(_steps(epoch, step, eta=100.0))
            run(ProgressUpdate(stage="validation", done=0, total=None))
            during_validation.append([t.description for t in displays[0].tasks])
            run(ProgressUpdate(stage="validation", done=1, total=1, info={"finished": True}))
            row = {"epoch": epoch, "lr": 1e-3, "seconds": 1.0}
            run(ProgressUpdate(stage="epochs", done=epoch, total=3, info={"row": row}))
        tasks = displays[0].tasks
        # One bar for the run, one reused for the current epoch; validation's spinner is gone.
        assert [t.description for t in tasks] == ["epochs", "epoch 2"]
        assert tasks[1].completed == 4 and tasks[0].completed == 2
        eta = _output._RunTimeLeft().render(tasks[0])
        assert eta.plain == "0:01:40"  # the run's own ETA (100 s), not -:--:--
    assert during_validation == [
        ["epochs", "epoch 1", "validating"],
        ["epochs", "epoch 2", "validating"],
    ]
    lines = buffer.getvalue().replace("\r", "\n").splitlines()
    notes = [line for line in lines if "val loss 0.5" in line]
    assert len(notes) == 2 and all("━" not in line for line in notes)


def test_numbers_are_formatted_one_way_per_kind():
    fmt = _output.format_value
    assert fmt(0.07692, "precision") == "7.7%"
    assert fmt(1.0, "f1") == "100.0%"
    assert fmt(0.5283, "macro_f1") == "52.8%"
    assert fmt(0.943, "top1_agreement") == "94.3%"
    assert fmt(-0.004, "accuracy_change") == "-0.4 pp"
    assert fmt(2.71828, "p50_ms") == "2.72"
    assert fmt(123.456, "peak_rss_mb") == "123"
    assert fmt(0.123456, "train_loss") == "0.1235"
    assert fmt(12345.6, "seconds") == "12,346"
    assert fmt(16000, "sample_rate") == "16,000"
    assert fmt(True, "budget_ok") == "yes"
    assert fmt(None, "f1") == "-"


def test_tables_show_rates_as_percentages(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    _output.emit_table([{"class": "jet", "f1": 0.5, "support": 3}], ["class", "f1", "support"])
    _output.emit_fields(
        {"accuracy": 0.9431, "p50_ms": 2.7049}, _output.OutputFormat.table, title="t"
    )
    text = buffer.getvalue()
    assert "50.0%" in text and "94.3%" in text and "2.7" in text and "2.7049" not in text
