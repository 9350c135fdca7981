"""Flags that ``serenesense train`` and ``serenesense pretrain`` share.

Both commands drive the same loop (``train/loop.py``) and take the same
run-control flags; declaring them once keeps the two ``--help`` pages in step.
Each alias is a parameter type: ``seed: run_flags.Seed = None``. Imports stay
light (no torch): the root ``--help`` loads this module.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._options import option
from serenesense_cli.limits import TRAINING

PANEL_RECIPE = "Recipe overrides"
PANEL_RUN = "Run control"


opt = functools.partial(option, panel=PANEL_RECIPE)
"""A flag in the recipe-overrides panel unless ``panel=`` says otherwise."""


Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file of settings (and [model_args])."),
]
Resume = Annotated[
    Path | None,
    opt("Continue this run folder exactly where it stopped.", "--resume", panel=PANEL_RUN),
]
GradClip = Annotated[
    float | None,
    opt("Gradient-norm clip (0 = off).", "--grad-clip", callback=within(TRAINING["grad_clip"])),
]
Seed = Annotated[
    int | None, opt("Random seed.", "--seed", panel=PANEL_RUN, callback=within(TRAINING["seed"]))
]
Deterministic = Annotated[
    bool | None,
    opt(
        "Deterministic algorithms (slower on GPUs).",
        "--deterministic/--no-deterministic",
        panel=PANEL_RUN,
    ),
]
Device = Annotated[str | None, opt("auto, cpu, cuda or mps.", "--device", panel=PANEL_RUN)]
Precision = Annotated[
    str | None, opt("auto (bf16 on CUDA), fp32 or bf16.", "--precision", panel=PANEL_RUN)
]
Workers = Annotated[
    int | None,
    opt(
        "DataLoader worker processes.",
        "--workers",
        panel=PANEL_RUN,
        callback=within(TRAINING["workers"]),
    ),
]
MaxSteps = Annotated[
    int | None,
    opt(
        "Stop after this many optimiser steps.",
        "--max-steps",
        panel=PANEL_RUN,
        callback=within(TRAINING["max_steps"]),
    ),
]
TimeLimit = Annotated[
    float | None,
    opt(
        "Stop after this many seconds.",
        "--time-limit",
        panel=PANEL_RUN,
        callback=within(TRAINING["time_limit"]),
    ),
]
CheckpointEvery = Annotated[
    int | None,
    opt(
        "Also checkpoint every N steps (0 = per epoch).",
        "--checkpoint-every",
        panel=PANEL_RUN,
        callback=within(TRAINING["checkpoint_every"]),
    ),
]


def given(**flags: Any) -> dict[str, Any]:
    """The flags actually given (``None`` = not given), in order: only these override."""
    return {key: value for key, value in flags.items() if value is not None}
