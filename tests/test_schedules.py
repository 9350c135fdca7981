"""The learning-rate schedule follows the designed curve, step by step."""

from __future__ import annotations

import dataclasses
import itertools

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
    assert effective_warmup(recipe("cnn", "reference"), 200) == 0


def test_plateau_recipe_for_small_models():
    config = recipe("cnn", "reference")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=config.lr)
    sched, mode = build_scheduler(opt, config, steps_per_epoch=3, total_steps=30)
    assert mode == "epoch"
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for _ in range(config.plateau_patience + 2):
        sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(config.lr * config.plateau_factor)


def test_warmup_cosine_warms_up_then_decays_to_min_lr():
    from serenesense_cli.train.schedules import warmup_cosine_lr

    lrs = [
        warmup_cosine_lr(s, base_lr=1e-3, min_lr=1e-5, warmup_steps=10, total_steps=100)
        for s in range(101)
    ]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:])), "monotone decay"
    assert lrs[100] == pytest.approx(1e-5)
    assert lrs[55] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-6)  # half way after warm-up


def test_warmup_cosine_follows_the_time_budget_when_it_runs_ahead():
    from serenesense_cli.train.schedules import warmup_cosine_lr

    args = {"base_lr": 1e-3, "min_lr": 0.0, "warmup_steps": 0, "total_steps": 1000}
    assert warmup_cosine_lr(10, **args, time_fraction=1.0) == pytest.approx(0.0)
    assert warmup_cosine_lr(10, **args, time_fraction=0.5) == pytest.approx(5e-4)
    # Steps further along than time: steps decide.
    assert warmup_cosine_lr(500, **args, time_fraction=0.1) == pytest.approx(5e-4)


def test_warmup_cosine_scheduler_reads_the_clock():
    config = recipe("melcnn")
    assert config.scheduler == "warmup_cosine"
    clock = {"fraction": 0.0}
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=config.lr)
    sched, mode = build_scheduler(
        opt, config, steps_per_epoch=10, total_steps=10_000, time_fraction=lambda: clock["fraction"]
    )
    assert mode == "step"
    for _ in range(config.warmup_steps):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(config.lr, rel=1e-3)
    clock["fraction"] = 1.0
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(config.min_lr)
