"""Flags that ``serenesense train`` and ``serenesense pretrain`` share.

Both commands drive the same loop (``train/loop.py``) and take the same
run-control flags; declaring them once keeps the two ``--help`` pages in step.
Each alias is a parameter type: ``seed: run_flags.Seed = None``. Imports stay
light (no torch): the root ``--help`` loads this module.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._options import option
from serenesense_cli.limits import TRAINING
from serenesense_cli.train.config import (
    CROPS,
    DEVICES,
    OPTIMIZERS,
    PRECISIONS,
    PRETRAIN_MASK_MODES,
    RECIPE_NAMES,
    SCHEDULERS,
    SELECT_METRICS,
    VAL_WINDOWS,
)

PANEL_RECIPE = "Recipe overrides (default: the model's recipe; train --show-recipe prints it)"
PANEL_RUN = "Run control"


opt = functools.partial(option, panel=PANEL_RECIPE)
"""A flag in the recipe-overrides panel unless ``panel=`` says otherwise."""


Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file of settings (and \\[model_args])."),
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
# Choices are Literal types: Typer checks them while parsing, before any heavy import.
OptimizerName = Literal[OPTIMIZERS]
SchedulerName = Literal[SCHEDULERS]
CropName = Literal[CROPS]
ValWindowsName = Literal[VAL_WINDOWS]
RecipeName = Literal[RECIPE_NAMES]
SelectMetricName = Literal[SELECT_METRICS]
MaskModeName = Literal[PRETRAIN_MASK_MODES]

Device = Annotated[
    Literal[DEVICES] | None,
    opt("Compute device (auto: cuda, then mps, then cpu).", "--device", panel=PANEL_RUN),
]
Precision = Annotated[
    Literal[PRECISIONS] | None,
    opt("Numeric precision (auto: bf16 on CUDA, else fp32).", "--precision", panel=PANEL_RUN),
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


RUN_CONTROL: dict[str, Any] = {
    "seed": Seed,
    "deterministic": Deterministic,
    "device": Device,
    "precision": Precision,
    "workers": Workers,
    "max_steps": MaxSteps,
    "time_limit": TimeLimit,
    "checkpoint_every": CheckpointEvery,
}
"""The run-control flags every training command takes, in ``--help`` order."""


@dataclass(frozen=True)
class FlagGroup:
    """Marks a parameter that stands for several flags declared once (:func:`shared_flags`)."""

    name: str
    given_only: bool = True
    """The command gets only the flags given (as :func:`given` makes), else every value."""


RunFolder = Annotated[dict[str, Any] | None, FlagGroup("run_folder", given_only=False)]
"""``--name``, ``--runs-dir``, ``--resume``: the command gets all three values."""
Optimiser = Annotated[dict[str, Any] | None, FlagGroup("optimiser")]
"""``--epochs``, ``--batch-size``, ``--lr``, ``--weight-decay``: the command gets those given."""
RunControl = Annotated[dict[str, Any] | None, FlagGroup("run_control")]
"""The :data:`RUN_CONTROL` flags: the command gets those given."""


def _with_default(text: str, key: str, defaults: dict[str, Any]) -> str:
    return f"{text} ({defaults[key]:g})." if key in defaults else f"{text}."


def _group_flags(group: str, task: str, defaults: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(name, annotation, default)`` of each flag of ``group`` for ``serenesense TASK``."""
    if group == "run_folder":
        return [
            (
                "name",
                Annotated[
                    str | None,
                    opt("Run name (default: the model name).", "--name", panel=PANEL_RUN),
                ],
                None,
            ),
            (
                "runs_dir",
                Annotated[
                    Path,
                    opt(
                        f"Parent of run folders (runs/{task}/<name>).",
                        "--runs-dir",
                        panel=PANEL_RUN,
                    ),
                ],
                Path("runs"),
            ),
            ("resume", Resume, None),
        ]
    if group == "optimiser":
        flags = (
            ("epochs", "Epochs to train", ("--epochs", "--max-epochs"), int),
            ("batch_size", "Global batch size", ("--batch-size", "-b"), int),
            ("lr", "Peak learning rate", ("--lr",), float),
            ("weight_decay", "Weight decay", ("--weight-decay",), float),
        )
        return [
            (
                key,
                Annotated[
                    kind | None,
                    opt(_with_default(text, key, defaults), *names, callback=within(TRAINING[key])),
                ],
                None,
            )
            for key, text, names, kind in flags
        ]
    return [(name, kind, None) for name, kind in RUN_CONTROL.items()]


def _group_of(annotation: Any) -> FlagGroup | None:
    for extra in getattr(annotation, "__metadata__", ()):
        if isinstance(extra, FlagGroup):
            return extra
    return None


def shared_flags(
    task: str, defaults: dict[str, Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the flags ``train`` and ``pretrain`` share once, so their help cannot drift.

    Each parameter of the command annotated :data:`RunFolder`,
    :data:`Optimiser` or :data:`RunControl` is replaced, in place, by its
    group's flags (``task`` names the run folder in the help; ``defaults``
    show the optimiser's fixed defaults); the command receives the group as a
    dict under that parameter's name.
    """
    values = dict(defaults or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command, include_extras=True)
        parameters: list[inspect.Parameter] = []
        groups: dict[str, tuple[FlagGroup, list[str]]] = {}
        for param in inspect.signature(command).parameters.values():
            group = _group_of(hints[param.name])
            if group is None:
                parameters.append(param.replace(annotation=hints[param.name]))
                continue
            flags = _group_flags(group.name, task, values)
            groups[param.name] = (group, [name for name, _, _ in flags])
            parameters.extend(
                inspect.Parameter(name, param.POSITIONAL_OR_KEYWORD, default=default, annotation=a)
                for name, a, default in flags
            )

        @functools.wraps(command)
        def wrapper(**given_values: Any) -> Any:
            for param_name, (group, names) in groups.items():
                chosen = {name: given_values.pop(name) for name in names}
                given_values[param_name] = given(**chosen) if group.given_only else chosen
            return command(**given_values)

        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def given(**flags: Any) -> dict[str, Any]:
    """The flags actually given (``None`` = not given), in order: only these override."""
    return {key: value for key, value in flags.items() if value is not None}
