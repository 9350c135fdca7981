"""The epoch driver shared by training (``engine.py``) and pretraining (``pretrain.py``).

Both loops promise the same things: randomness seeded per epoch and a
resumable sampler (a run resumed from any checkpoint ends with the same
weights), ``last`` weights plus the training state at every epoch end and every
``checkpoint_every`` steps, ``best`` weights when the score improves, stops at a
step boundary (Ctrl-C, ``max_steps``, ``time_limit``), one ``history.csv`` row
per epoch and the same progress updates. They live here once, so a fix reaches
both; an :class:`EpochTask` supplies what differs (the forward pass, the
running sums, validation, what "better" means, extra hooks).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serenesense_cli.errors import SereneSenseError, TrainingError
from serenesense_cli.fileio import write_text_atomic
from serenesense_cli.models.artifact import save_model
from serenesense_cli.progress import ProgressCallback, report
from serenesense_cli.train import distributed as dist_utils
from serenesense_cli.train.averaging import WeightAverage
from serenesense_cli.train.checkpoint import (
    capture_rng_state,
    restore_rng_state,
    save_training_state,
)
from serenesense_cli.train.config import PretrainConfig, TrainConfig
from serenesense_cli.train.data import EpochData
from serenesense_cli.train.history import history_csv, read_history
from serenesense_cli.train.runlog import RunLog, write_plots
from serenesense_cli.train.stopping import StopRequest, stop_reason


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed torch, numpy and random from (seed, epoch): epochs are reproducible alone."""
    value = (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


class EpochTask(ABC):
    """What one kind of run does inside :class:`EpochLoop`.

    The loop steps the task's ``optimizer`` (and calls :meth:`scheduler_step`),
    clips and saves its unwrapped ``model`` and reads its ``config`` and
    ``context``. Class attributes name what the shared code writes:
    ``history_columns`` (``history.csv``), ``best_key`` (the best score's key
    in the training state) and ``nan_hint`` (the hint when the loss diverges).
    """

    config: TrainConfig | PretrainConfig
    context: dist_utils.DistContext
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any

    history_columns: tuple[str, ...]
    best_key: str
    nan_hint: str
    pretraining: bool = False
    """Which curves ``curves.png`` draws (losses only for pretraining)."""

    @property
    @abstractmethod
    def classes(self) -> Sequence[str]:
        """Class names saved with the weights (none for pretraining)."""

    @property
    @abstractmethod
    def select_metric(self) -> str:
        """What the best checkpoint was chosen on, recorded in its metadata."""

    def artifact_meta(self) -> dict[str, Any]:
        """Metadata written first into every weights file of the run."""
        return {}

    @abstractmethod
    def new_sums(self) -> dict[str, Any]:
        """Zeroed running sums of an epoch (needs a ``seconds`` entry)."""

    def train_mode(self) -> None:
        """Put the model in training mode at the start of an epoch."""
        return None

    @abstractmethod
    def forward(self, batch: Any) -> tuple[torch.Tensor, Any]:
        """The loss of one batch and whatever :meth:`tally` needs from the step."""

    @abstractmethod
    def scheduler_step(self) -> None:
        """Called after every optimiser step."""

    @abstractmethod
    def tally(self, sums: dict[str, Any], step_loss: torch.Tensor, outputs: Any) -> None:
        """Add one step to ``sums``; ``step_loss`` is the loss summed over ranks."""

    @abstractmethod
    def progress(self, sums: dict[str, Any]) -> dict[str, Any]:
        """Running values for the per-step progress update (loss, lr, ...)."""

    @abstractmethod
    def evaluate(
        self, *, epoch: int, global_step: int, partial: bool, sums: dict[str, Any]
    ) -> dict[str, Any]:
        """Validate and return the epoch's ``history.csv`` row."""

    @abstractmethod
    def score(self, row: dict[str, Any]) -> float:
        """The number the best checkpoint is chosen on."""

    @abstractmethod
    def improved(self, score: float, best: float | None) -> bool:
        """Whether ``score`` beats the best so far."""

    def partial_epoch(self, epoch: int) -> bool:
        """A stop other than Ctrl-C cut epoch ``epoch`` short; True = validate it anyway."""
        return True

    def epoch_completed(self, row: dict[str, Any], improved: bool) -> None:
        """A whole epoch was validated; called before the counters move on."""
        return None

    def after_epoch(self, epochs_done: int, stopped: str) -> str:
        """After the end-of-epoch checkpoint; returns the (possibly new) stop reason."""
        return stopped

    def on_interrupt(self, sums: dict[str, Any]) -> None:
        """A second Ctrl-C broke into a step; ``sums`` are about to be saved."""
        return None

    def best_state(self, best: float | None, best_epoch: int | None) -> dict[str, Any]:
        """The best-so-far part of the training state."""
        return {self.best_key: best, "best_epoch": best_epoch}

    def run_state(self) -> dict[str, Any]:
        """Anything else the training state keeps (e.g. class names, checked on resume)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`best_state` and :meth:`run_state` added."""
        return None

    def last_confusion(self) -> dict[str, Any] | None:
        """The latest validation's confusion matrix, for ``confusion.png`` (none by default)."""
        return None


@dataclass
class LoopState:
    """Counters and results; what the training state saves and resume restores."""

    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    best: float | None = None
    best_epoch: int | None = None
    sums: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "completed"
    improved: bool = False
    """Whether the latest validation improved on the best so far."""


class EpochLoop:
    """Runs epochs of ``task`` over ``data`` until done or stopped, writing to ``run_dir``.

    ``started`` is ``time.perf_counter()`` at the start of the run: ``time_limit``
    counts from there, set-up included.
    """

    def __init__(
        self,
        task: EpochTask,
        data: EpochData,
        *,
        run_dir: Path,
        started: float,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.task = task
        self.data = data
        self.run_dir = run_dir
        self.weights_dir = run_dir / "weights"
        self.started = started
        self.on_progress = on_progress
        self.log = RunLog(run_dir, enabled=task.context.is_main)
        self.state = LoopState(sums=task.new_sums())
        decay = float(getattr(task.config, "ema_decay", 0.0) or 0.0)
        self.average = WeightAverage(task.model, decay) if decay > 0 else None

    def resume(self, saved: dict[str, Any]) -> None:
        """Continue from a training state written by :meth:`_checkpoint`."""
        task, state = self.task, self.state
        task.optimizer.load_state_dict(saved["optimizer"])
        task.scheduler.load_state_dict(saved["scheduler"])
        state.epoch = int(saved["epoch"])
        state.global_step = int(saved["global_step"])
        state.step_in_epoch = int(saved["step_in_epoch"])
        state.best = saved.get(task.best_key)
        state.best_epoch = saved.get("best_epoch")
        task.restore(saved)
        if self.average is not None and saved.get("ema") is not None:
            self.average.load_state_dict(saved["ema"])
        state.sums = dict(saved.get("partial_sums") or state.sums)
        state.history = [
            r
            for r in read_history(self.run_dir)
            if r["epoch"] <= state.epoch and not r.get("partial")
        ]
        restore_rng_state(saved["rng"])

    def run(self, notes: list[str] | None = None) -> LoopState:
        """Train until ``epochs`` are done or a stop; always leaves a checkpoint.

        ``train.log`` gets a start line, ``notes``, every epoch and how the run
        ended (or failed); ``curves.png`` and ``confusion.png`` are drawn at the end.
        A note is added to ``notes`` when the plots cannot be drawn.
        """
        state, config = self.state, self.task.config
        notes = notes if notes is not None else []
        began = "resumed" if state.global_step else "started"
        self.log.write(
            f"{began}: {self.run_dir} at epoch {state.epoch + 1} of {config.epochs} "
            f"(step {state.global_step})"
        )
        for note in notes:
            self.log.write(f"note: {note}")
        try:
            self._run_epochs()
        except SereneSenseError as error:
            self.log.write(f"failed: {error.message}")
            raise
        best = f"; best epoch {state.best_epoch}" if state.best_epoch else ""
        self.log.write(
            f"stopped ({state.stopped}) after {state.epoch} epoch(s), "
            f"{state.global_step} steps{best}"
        )
        self._plots(notes)
        return state

    def _plots(self, notes: list[str]) -> None:
        """``curves.png`` and ``confusion.png`` in the run folder (main process)."""
        if not self.task.context.is_main:
            return
        try:
            write_plots(
                self.run_dir,
                self.state.history,
                name=self.run_dir.name,
                best_epoch=self.state.best_epoch,
                pretrain=self.task.pretraining,
                confusion=self.task.last_confusion(),
            )
        except ImportError:
            notes.append("matplotlib is not installed: no training plots (pip install matplotlib)")
        except (OSError, ValueError, RuntimeError) as error:
            notes.append(f"the training plots could not be drawn ({error})")
        else:
            return
        self.log.write(f"note: {notes[-1]}")

    def _run_epochs(self) -> None:
        state, config = self.state, self.task.config
        stop_request = StopRequest()
        deadline = self.started + config.time_limit if config.time_limit > 0 else None
        self._pace = _Pace(state.global_step, self._total_steps(), deadline)
        report(self.on_progress, "epochs", state.epoch, config.epochs)
        try:
            stop_request.install()
            while state.epoch < config.epochs and state.stopped == "completed":
                mid_epoch = self._train_epoch(stop_request, deadline)
                if mid_epoch:  # save before validation touches anything
                    self._checkpoint(next_epoch=state.epoch, in_epoch=state.step_in_epoch)
                    if state.stopped == "interrupted":  # Ctrl-C: leave quickly, no validation
                        break
                    if not self.task.partial_epoch(state.epoch):
                        break
                self._end_epoch(partial=mid_epoch)
            self._write_history()  # also when no epoch finished: the file always exists
        except KeyboardInterrupt:
            state.stopped = "interrupted"
            self.task.on_interrupt(state.sums)
            self._checkpoint(next_epoch=state.epoch, in_epoch=state.step_in_epoch)
            self._write_history()
        except torch.OutOfMemoryError as error:
            raise TrainingError(
                f"out of memory at batch size {config.batch_size} on {self.task.context.device}",
                hint=f"try --batch-size {max(1, config.batch_size // 2)}",
            ) from error
        except OSError as error:  # a full disk or a lost mount while writing checkpoints
            where = error.filename or self.run_dir
            raise TrainingError(
                f"{where}: {error.strerror or error} at epoch {state.epoch + 1}",
                hint=f"files are written atomically, so the checkpoints already in "
                f"{self.weights_dir} are intact; free space, then resume with "
                f"--resume {self.run_dir}",
            ) from error
        finally:
            stop_request.uninstall()

    def _total_steps(self) -> int:
        """Optimiser steps the run is set to take (``max_steps`` may cut it short)."""
        config = self.task.config
        total = config.epochs * self.data.steps_per_epoch
        return min(total, config.max_steps) if config.max_steps else total

    def _train_epoch(self, stop_request: StopRequest, deadline: float | None) -> bool:
        """The (rest of the) current epoch's steps; True when a stop cut it short."""
        task, data, state = self.task, self.data, self.state
        config = task.config
        if state.step_in_epoch == 0:
            seed_everything(config.seed, state.epoch + 1)
            state.sums = task.new_sums()
        data.sampler.set_epoch(state.epoch, skip=state.step_in_epoch * data.local_batch)
        data.train_set.set_epoch(state.epoch)
        task.train_mode()
        epoch_start = time.perf_counter() - state.sums["seconds"]
        mid_epoch = False
        for batch in data.loader:
            self._step(batch)
            elapsed = time.perf_counter() - epoch_start
            report(
                self.on_progress,
                "steps",
                state.step_in_epoch,
                data.steps_per_epoch,
                epoch=state.epoch + 1,
                **task.progress(state.sums),
                samples_per_s=state.sums["seen"] / max(elapsed, 1e-9),
                eta_s=self._pace.seconds_left(state.global_step),
            )
            if config.checkpoint_every and state.global_step % config.checkpoint_every == 0:
                state.sums["seconds"] = elapsed
                self._checkpoint(next_epoch=state.epoch, in_epoch=state.step_in_epoch)
            state.stopped = stop_reason(stop_request, config.max_steps, state.global_step, deadline)
            if state.stopped != "completed":
                mid_epoch = state.step_in_epoch < data.steps_per_epoch
                break
        state.sums["seconds"] = time.perf_counter() - epoch_start
        return mid_epoch

    def _step(self, batch: Any) -> None:
        """One optimiser step; a NaN/inf loss stops the run before the weights change."""
        task, state = self.task, self.state
        loss, outputs = task.forward(batch)
        task.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if task.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(task.model.parameters(), task.config.grad_clip)
        step_loss = dist_utils.all_reduce_sum(loss.detach().float().clone(), task.context)
        if not torch.isfinite(step_loss):
            raise TrainingError(
                f"loss became {float(step_loss)} at epoch {state.epoch + 1}, "
                f"step {state.global_step + 1}",
                hint=f"{task.nan_hint}; the last good checkpoint is in {self.weights_dir}",
            )
        task.optimizer.step()
        if self.average is not None:
            self.average.update(task.model)
        task.scheduler_step()
        state.global_step += 1
        state.step_in_epoch += 1
        task.tally(state.sums, step_loss, outputs)

    def _end_epoch(self, *, partial: bool) -> None:
        """Validate, keep the best weights, checkpoint, write the history row."""
        task, state = self.task, self.state
        with self._averaged_weights():  # validation and `best` use the average (if any)
            self._validate_and_keep_best(partial=partial)
        if not partial:
            task.epoch_completed(state.history[-1], state.improved)
            state.epoch += 1
            state.step_in_epoch = 0
            self._checkpoint(next_epoch=state.epoch, in_epoch=0, sums={})
            state.stopped = task.after_epoch(state.epoch, state.stopped)
        self._write_history()
        self.log.epoch(state.history[-1], task.history_columns, improved=state.improved)
        report(
            self.on_progress,
            "epochs",
            state.epoch,
            task.config.epochs,
            row=state.history[-1],
            improved=state.improved,
        )

    def _averaged_weights(self) -> contextlib.AbstractContextManager[None]:
        if self.average is None:
            return contextlib.nullcontext()
        return self.average.swapped_into(self.task.model)

    def _validate_and_keep_best(self, *, partial: bool) -> None:
        """Validate the model as it is now; save it as ``best`` when it improved."""
        task, state = self.task, self.state
        report(self.on_progress, "validation", 0, None)  # a spinner while it runs
        row = task.evaluate(
            epoch=state.epoch, global_step=state.global_step, partial=partial, sums=state.sums
        )
        report(self.on_progress, "validation", 1, 1, finished=True)
        diverged = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if diverged:  # the weights went bad in the epoch's last steps: keep what was good
            raise TrainingError(
                f"validation {', '.join(diverged)} became {row[diverged[0]]} at epoch "
                f"{state.epoch + 1} (the weights diverged)",
                hint=f"{task.nan_hint}; the last good checkpoint is in {self.weights_dir}",
            )
        score = task.score(row)
        improved = state.improved = task.improved(score, state.best)
        state.history.append(row)
        if improved:
            state.best, state.best_epoch = score, state.epoch + 1
            if task.context.is_main:
                save_model(
                    self.weights_dir / "best.safetensors",
                    task.model,
                    task.classes,
                    **task.artifact_meta(),
                    metrics=row,
                    epoch=state.epoch + 1,
                    global_step=state.global_step,
                    select_metric=task.select_metric,
                    train_config=task.config.to_dict(),
                )

    def _checkpoint(
        self, *, next_epoch: int, in_epoch: int, sums: dict[str, Any] | None = None
    ) -> None:
        """``last`` weights and the resumable state (main process only)."""
        task, state = self.task, self.state
        if not task.context.is_main:
            return
        save_model(
            self.weights_dir / "last.safetensors",
            task.model,
            task.classes,
            **task.artifact_meta(),
            metrics=state.history[-1] if state.history else {},
            epoch=next_epoch,
            global_step=state.global_step,
            train_config=task.config.to_dict(),
        )
        save_training_state(
            self.weights_dir,
            {
                "optimizer": task.optimizer.state_dict(),
                "scheduler": task.scheduler.state_dict(),
                "epoch": next_epoch,
                "global_step": state.global_step,
                "step_in_epoch": in_epoch,
                **task.best_state(state.best, state.best_epoch),
                "partial_sums": dict(state.sums if sums is None else sums),
                **task.run_state(),
                "ema": self.average.state_dict() if self.average is not None else None,
                "rng": capture_rng_state(),
            },
        )

    def _write_history(self) -> None:
        if self.task.context.is_main:
            text = history_csv(self.state.history, self.task.history_columns)
            write_text_atomic(self.run_dir / "history.csv", text)


@dataclass(kw_only=True)
class RunResult:
    """What every finished (or stopped) run produced; training and pretraining add their own."""

    run_dir: Path
    stopped: str
    epochs_completed: int
    global_step: int
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    parameters: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    world_size: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def best_weights(self) -> Path:
        return self.run_dir / "weights" / "best.safetensors"

    @property
    def last_weights(self) -> Path:
        return self.run_dir / "weights" / "last.safetensors"


class _Pace:
    """Time left in a run, from this session's pace (validation included) and
    the time limit: the estimate the progress display shows as the run's ETA."""

    def __init__(self, first_step: int, total_steps: int, deadline: float | None) -> None:
        self.first_step = first_step
        self.total_steps = total_steps
        self.deadline = deadline
        self.began = time.perf_counter()

    def seconds_left(self, step: int) -> float | None:
        """``None`` until a step of this session has been timed."""
        now = time.perf_counter()
        done = step - self.first_step
        if done <= 0:
            return None
        left = max(0, self.total_steps - step) * (now - self.began) / done
        if self.deadline is not None:
            left = min(left, max(0.0, self.deadline - now))
        return left


def run_totals(
    state: LoopState,
    *,
    run_dir: Path,
    started: float,
    context: Any,
    parameters: int,
    notes: list[str],
) -> dict[str, Any]:
    """The :class:`RunResult` fields of a loop that has run."""
    return {
        "run_dir": run_dir,
        "stopped": state.stopped,
        "epochs_completed": state.epoch,
        "global_step": state.global_step,
        "best_epoch": state.best_epoch,
        "history": state.history,
        "parameters": parameters,
        "seconds": time.perf_counter() - started,
        "device": str(context.device),
        "world_size": context.world,
        "notes": notes,
    }


__all__ = ["EpochLoop", "EpochTask", "LoopState", "RunResult", "run_totals", "seed_everything"]
