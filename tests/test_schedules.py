"""The learning-rate schedule follows the designed curve, step by step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from serenesense_cli.train.config import recipe
from serenesense_cli.train.schedules import (
    build_scheduler,
    effective_warmup,
    warmup_cosine_restarts_lr,
)


def _torch_sgdr(total: int, *, base: float, min_lr: float, t0: int, mult: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=t0, T_mult=mult, eta_min=min_lr
    )
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("mult", [1, 2, 3])
def test_post_warmup_matches_torch_sgdr(mult):
    base, min_lr, t0, warmup = 1e-4, 1e-6, 7, 5
    expected = _torch_sgdr(120, base=base, min_lr=min_lr, t0=t0, mult=mult)
    ours = [
        warmup_cosine_restarts_lr(
            warmup + i,
            base_lr=base,
            min_lr=min_lr,
            warmup_steps=warmup,
            period_steps=t0,
            period_mult=mult,
        )
        for i in range(120)
    ]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_warmup_is_linear_to_peak():
    lrs = [
        warmup_cosine_restarts_lr(
            s, base_lr=1e-3, min_lr=0.0, warmup_steps=10, period_steps=5, period_mult=2
        )
        for s in range(11)
    ]
    assert lrs[:10] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1e-3)  # first step after warm-up: the peak


def test_scheduler_really_steps_the_optimizer():
    config = dataclasses.replace(recipe("audiomae"), warmup_steps=4, restart_epochs=2)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=config.lr)
    sched, mode = build_scheduler(opt, config, steps_per_epoch=3, total_steps=1000)
    assert mode == "step"
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [
        warmup_cosine_restarts_lr(
            s,
            base_lr=config.lr,
            min_lr=config.min_lr,
            warmup_steps=4,
            period_steps=6,
            period_mult=2,
        )
        for s in range(30)
    ]
    assert seen == pytest.approx(expected)
    assert min(seen[4:]) >= config.min_lr - 1e-12
    assert max(seen) == pytest.approx(config.lr)


def test_short_runs_shorten_the_warmup():
    config = recipe("audiomae")
    assert effective_warmup(config, 100_000) == 1000
    assert effective_warmup(config, 200) == 20
    assert effective_warmup(recipe("cnn"), 200) == 0


def test_plateau_recipe_for_small_models():
    config = recipe("cnn")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=config.lr)
    sched, mode = build_scheduler(opt, config, steps_per_epoch=3, total_steps=30)
    assert mode == "epoch"
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for _ in range(config.plateau_patience + 2):
        sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(config.lr * config.plateau_factor)
