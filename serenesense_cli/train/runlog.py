"""``train.log`` and the training plots: what a run did, kept in its own folder.

Why a log file: the per-epoch lines and notes go to stderr, which is gone
after the terminal closes or the machine crashes. The loop appends each line
as it happens (opened, written and closed per line), so the file holds
everything up to a crash, and a resumed run appends to it. The plots
(``curves.png``, ``confusion.png``) are drawn with the report's figure
functions at the end of every run (and resume), so the run folder shows how
training went without running ``serenesense report``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOG_FILE = "train.log"
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
_NOT_SHOWN = {"epoch", "step", "partial", "lr", "seconds", "samples_per_s"}


class RunLog:
    """Appends timestamped lines to ``RUN/train.log`` (main process only).

    A line that cannot be written (a full disk) is dropped: the log must never
    stop a run whose checkpoints can still be saved.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.path = Path(run_dir) / LOG_FILE
        self.enabled = enabled

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                for line in str(text).splitlines() or [""]:
                    handle.write(f"{stamp} {line}\n")
        except OSError:
            pass

    def epoch(self, row: dict[str, Any], columns: Sequence[str], *, improved: bool) -> None:
        """One epoch's line: its history values, learning rate, time, ``*`` for a new best."""
        self.write(epoch_line(row, columns, improved=improved))


def epoch_line(row: dict[str, Any], columns: Sequence[str], *, improved: bool) -> str:
    """``epoch 3: train_loss 0.4123 val_acc 0.8750 ... | lr 1.00e-03 | 2.1s *``."""
    partial = " (partial)" if row.get("partial") else ""
    values = [
        f"{key} {_number(row.get(key))}" for key in columns if key not in _NOT_SHOWN and key in row
    ]
    lr, seconds = row.get("lr"), row.get("seconds")
    tail = f" | lr {lr:.2e}" if isinstance(lr, float) else ""
    tail += f" | {seconds:.1f}s" if isinstance(seconds, float) else ""
    return f"epoch {row.get('epoch')}{partial}: {' '.join(values)}{tail}{' *' if improved else ''}"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "missing" if value is None else str(value)


def write_plots(
    run_dir: Path,
    history: Sequence[dict[str, Any]],
    *,
    name: str,
    best_epoch: int | None = None,
    pretrain: bool = False,
    confusion: dict[str, Any] | None = None,
) -> list[Path]:
    """``curves.png`` from the history and, given a confusion matrix (the shape
    ``serenesense evaluate`` writes), ``confusion.png``; ``name`` (the run's)
    heads both. matplotlib is imported here only (ImportError when it is not
    installed)."""
    from serenesense_cli.report import figures

    run_dir = Path(run_dir)
    written = []
    if history:
        curves = run_dir / CURVES_FILE
        if pretrain:
            figures.pretrain_curves(history, curves, title=f"{name}: pretraining")
        else:
            title = f"{name}: training"
            figures.training_curves(history, curves, title=title, best_epoch=best_epoch)
        written.append(curves)
    if confusion is not None:
        path = run_dir / CONFUSION_FILE
        figures.confusion_heatmap(confusion, path, title=f"{name}: validation, last epoch")
        written.append(path)
    return written
