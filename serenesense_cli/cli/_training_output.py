"""Progress and summary output shared by ``serenesense train`` and ``pretrain``.

Both commands get the same kind of updates from the shared loop
(``train/loop.py``) and end the same way: notes, a summary table (or JSON/CSV),
the run folder as the last line of stdout, and exit 130 after Ctrl-C.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import typer

from serenesense_cli.cli._output import (
    OutputFormat,
    emit_fields,
    emit_result_path,
    log,
    progress_bars,
)


class RunProgress:
    """Loop updates -> rich bars, plus one log line per finished epoch.

    One bar for the whole run (epochs done, with the run's own ETA: its pace
    so far and the time limit) and one for the current epoch's steps, reused
    each epoch so finished epochs do not pile up; a spinner while validating.
    ``epoch_head`` renders the task's part of the epoch line (losses,
    metrics); the learning rate, duration and the ``*`` for a new best follow.
    """

    def __init__(self, bars: Any, epoch_head: Callable[[dict[str, Any]], str]) -> None:
        self.bars = bars
        self.epoch_head = epoch_head
        self.epochs: tuple[int, int | None] = (0, None)

    def __call__(self, update: Any) -> None:
        from serenesense_cli.progress import ProgressUpdate

        info = update.info
        if update.stage == "steps":
            acc = f"acc {info['acc']:.1%}  " if "acc" in info else ""
            note = (
                f"loss {info['loss']:.4f}  {acc}lr {info['lr']:.2e}  "
                f"{info['samples_per_s']:.1f} samples/s"
            )
            label = f"epoch {info['epoch']}"
            self.bars(
                ProgressUpdate("steps", update.done, update.total, {"note": note, "label": label})
            )
            done, total = self.epochs
            self.bars(ProgressUpdate("epochs", done, total, {"eta_s": info.get("eta_s")}))
            return
        if update.stage == "epochs":
            self.epochs = (update.done, update.total)
            self.bars(ProgressUpdate("epochs", update.done, update.total, {}))
            row = info.get("row")
            if row:
                mark = " *" if info.get("improved") else ""
                log(f"{self.epoch_head(row)} | lr {row['lr']:.2e} | {row['seconds']:.1f}s{mark}")
            return
        if update.stage == "validation":
            self.bars(ProgressUpdate("validating", update.done, update.total, info))
            return
        self.bars(update)  # e.g. decoding audio folders before pretraining


def run_with_progress(
    run: Callable[..., Any], epoch_head: Callable[[dict[str, Any]], str], **arguments: Any
) -> Any:
    """``run(**arguments)`` (``train`` or ``pretrain``) with progress bars on stderr."""
    with progress_bars() as bars:
        return run(**arguments, on_progress=RunProgress(bars, epoch_head))


def run_and_finish(
    run: Callable[..., Any],
    epoch_head: Callable[[dict[str, Any]], str],
    output_format: OutputFormat,
    *,
    command: str,
    title: str,
    summarize: Callable[[Any], dict[str, Any]],
    run_folder: dict[str, Any],
    overrides: dict[str, Any],
    **arguments: Any,
) -> None:
    """The whole run of ``serenesense train|pretrain`` after its flags are checked.

    ``run_folder`` holds ``--name``, ``--runs-dir`` and ``--resume``; flags given
    on resume go on top of the run's saved settings (a new run has them in
    its resolved config already).
    """
    resume = run_folder["resume"]
    result = run_with_progress(
        run,
        epoch_head,
        runs_dir=run_folder["runs_dir"],
        name=run_folder["name"],
        resume=resume,
        overrides=overrides if resume is not None else None,
        **arguments,
    )
    finish_run(result, output_format, command=command, title=title, summarize=summarize)


def summary_head(result: Any) -> dict[str, Any]:
    """The fields every run summary starts with."""
    return {
        "run_dir": str(result.run_dir),
        "stopped": result.stopped,
        "epochs_completed": result.epochs_completed,
        "steps": result.global_step,
        "parameters": result.parameters,
    }


def summary_weights(result: Any) -> dict[str, Any]:
    """The fields every run summary ends with: its weights files, where written."""
    return {
        "best_weights": str(result.best_weights) if result.best_weights.exists() else None,
        "last_weights": str(result.last_weights) if result.last_weights.exists() else None,
    }


def finish_run(
    result: Any,
    output_format: OutputFormat,
    *,
    command: str,
    title: str,
    summarize: Callable[[Any], dict[str, Any]],
) -> None:
    """Notes, the summary and the run folder; exit 130 with a resume hint after Ctrl-C.

    Under torchrun only rank 0 reports.
    """
    if os.environ.get("RANK", "0") != "0":
        return
    for note in result.notes:
        log(f"note: {note}")
    emit_fields(summarize(result), output_format, title=title)
    if output_format is not OutputFormat.json:  # JSON carries run_dir itself
        emit_result_path(result.run_dir)
    if result.stopped == "interrupted":
        log(
            "interrupted: checkpoint saved; continue with "
            f"`serenesense {command} --resume {result.run_dir}`"
        )
        raise typer.Exit(130)
