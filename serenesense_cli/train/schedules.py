"""Learning-rate schedules, stepped every optimiser step (or epoch for plateau).

The AudioMAE recipe is linear warm-up over ``warmup_steps`` followed by cosine
annealing with warm restarts (SGDR: first period ``restart_epochs`` epochs,
each next one ``restart_mult`` times longer, down to ``min_lr``). It is written
as a pure function of the step so it can be plotted, tested and resumed
exactly; the post-warm-up part matches ``torch.optim.lr_scheduler.
CosineAnnealingWarmRestarts`` (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from serenesense_cli.train.config import TrainConfig
from serenesense_cli.train.setup import capped_warmup


def warmup_cosine_restarts_lr(
    step: int,
    *,
    base_lr: float,
    min_lr: float,
    warmup_steps: int,
    period_steps: int,
    period_mult: int,
) -> float:
    """The learning rate at optimiser ``step`` (0-based) of the AudioMAE recipe."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = step - warmup_steps
    period = max(1, period_steps)
    if period_mult == 1:
        t_cur = t % period
    else:
        # index of the current period: sum_{i<n} period * mult^i <= t
        n = int(math.log(t / period * (period_mult - 1) + 1, period_mult))
        start = period * (period_mult**n - 1) // (period_mult - 1)
        # guard float rounding at period boundaries
        while start > t:
            n -= 1
            start = period * (period_mult**n - 1) // (period_mult - 1)
        while start + period * period_mult**n <= t:
            start += period * period_mult**n
            n += 1
        period = period * period_mult**n
        t_cur = t - start
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t_cur / period)) / 2


def warmup_cosine_lr(
    step: int,
    *,
    base_lr: float,
    min_lr: float,
    warmup_steps: int,
    total_steps: int,
    time_fraction: float = 0.0,
) -> float:
    """Linear warm-up, then one cosine decay from ``base_lr`` to ``min_lr``.

    Progress is the larger of the step fraction ``step / total_steps`` and
    ``time_fraction`` (the share of a ``--time-limit`` budget used), so a run
    cut short by its time budget still ends at a low learning rate instead of
    being stopped at its peak.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    total = max(1, total_steps)
    progress = max(step / total, min(1.0, max(0.0, time_fraction)))
    start = min(warmup_steps / total, 0.999)
    t = min(1.0, max(0.0, (progress - start) / (1.0 - start)))
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t)) / 2


WARMUP_SCHEDULERS = ("warmup_cosine_restarts", "warmup_cosine")
"""Schedulers that start with a linear warm-up over ``warmup_steps``."""


def effective_warmup(config: TrainConfig, total_steps: int) -> int:
    """Warm-up steps actually used: the recipe's, capped for short runs (:func:`capped_warmup`)."""
    if config.scheduler not in WARMUP_SCHEDULERS:
        return 0
    return capped_warmup(config.warmup_steps, total_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    *,
    steps_per_epoch: int,
    total_steps: int,
    time_fraction: Callable[[], float] | None = None,
) -> tuple[Any, str]:
    """A scheduler and how to step it: ``"step"`` (per batch) or ``"epoch"`` (plateau).

    ``time_fraction`` (the share of the time budget used so far) makes
    ``warmup_cosine`` follow the time budget as well as the step count.
    """
    if config.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
        return scheduler, "epoch"
    warmup = effective_warmup(config, total_steps)
    if config.scheduler == "warmup_cosine_restarts":
        period = config.restart_epochs * max(1, steps_per_epoch)
        return _per_step(
            optimizer,
            config,
            lambda step: warmup_cosine_restarts_lr(
                step,
                base_lr=config.lr,
                min_lr=config.min_lr,
                warmup_steps=warmup,
                period_steps=period,
                period_mult=config.restart_mult,
            ),
        )
    if config.scheduler == "warmup_cosine":
        clock = time_fraction or (lambda: 0.0)
        return _per_step(
            optimizer,
            config,
            lambda step: warmup_cosine_lr(
                step,
                base_lr=config.lr,
                min_lr=config.min_lr,
                warmup_steps=warmup,
                total_steps=total_steps,
                time_fraction=clock(),
            ),
        )
    return _per_step(optimizer, config, lambda _step: config.lr)


def _per_step(
    optimizer: torch.optim.Optimizer, config: TrainConfig, lr_at: Callable[[int], float]
) -> tuple[Any, str]:
    """A scheduler stepped every batch that sets the rate ``lr_at(step)``."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step) / config.lr)
    return scheduler, "step"
