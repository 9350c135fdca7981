"""Training settings and the reference recipes (../shared/SPEC.md) per model.

``resolve_train_config(model, config_file, flags)`` applies the precedence:
the model's recipe < ``--config`` TOML < flags given on the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from serenesense_cli.config import load_toml, merge_config, to_toml
from serenesense_cli.errors import BadInputError, ConfigError
from serenesense_cli.limits import TRAINING, Bound
from serenesense_cli.recipes import REFERENCE_RECIPES  # noqa: F401  (the SPEC's table)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "warmup_cosine_restarts", "warmup_cosine", "constant")
CROPS = ("energy", "random")
VAL_WINDOWS = ("all", "center")
RECIPE_NAMES = ("default", "reference")
SELECT_METRICS = ("macro_f1", "accuracy", "loss")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")

_C = TypeVar("_C", bound="RunConfig")

_Check = tuple[bool, str]
"""One validation rule: (value is fine, message naming the setting)."""


_DATA_HINTS = {
    "train": "pass --data DIR (from `serenesense data prepare`)",
    "pretrain": "pass --data DIR (a prepared set or a folder of audio)",
}


def require_data(data: Any, command: str) -> None:
    """The one "no data" refusal of ``train`` and ``pretrain``: flags, library calls, resumes."""
    if not data:
        what = "data set" if command == "train" else "data"
        raise BadInputError(f"no {what} given", hint=_DATA_HINTS[command])


def _one_of(value: Any, name: str, options: tuple[str, ...]) -> _Check:
    """A rule that ``value`` is one of ``options``."""
    return value in options, f"{name} must be one of {', '.join(options)}"


def _pretrainable(model: str) -> bool:
    """Whether the registry says ``model``'s encoder can be pretrained."""
    from serenesense_cli.models import models_where

    return model in models_where(lambda spec: spec.pretrainable)


def _range_checks(config: Any) -> list[_Check]:
    """Every setting of ``config`` that :data:`~serenesense_cli.limits.TRAINING`
    bounds, against its range (config-file values get the flags' ranges)."""
    checks: list[_Check] = []
    for name, bound in TRAINING.items():
        if hasattr(config, name):
            value = getattr(config, name)
            checks.append((bound.contains(value), bound.problem(name, value) or ""))
    betas_ok = all(Bound(0.0, 1.0, high_open=True).contains(b) for b in config.betas)
    checks.append((betas_ok, "betas must each be within [0, 1)"))
    if "num_classes" in config.model_args:
        checks.append((False, "[model_args] must not set num_classes: the data set's classes do"))
    return checks


def _raise_first_failure(checks: list[_Check], what: str) -> None:
    """Raise a ConfigError for the first failed rule (``what``: training, pretraining)."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"invalid {what} setting: {message}")


@dataclass(frozen=True)
class RunConfig:
    """The settings every run has, training or pretraining, each checked once here.

    The model, the optimiser's basics and run control; :class:`TrainConfig`
    and :class:`PretrainConfig` add their own and set their own defaults.
    """

    what: ClassVar[str] = "run"
    """How error messages name the settings (``invalid training setting: ...``)."""

    model: str = ""
    model_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 1
    batch_size: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    min_lr: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    max_steps: int = 0
    time_limit: float = 0.0
    checkpoint_every: int = 0

    def own_checks(self) -> list[_Check]:
        """The rules of the settings a subclass adds (none here)."""
        return []

    def run_checks(self) -> list[_Check]:
        """The rules of the shared settings."""
        return [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.min_lr >= 0, "min_lr must be >= 0"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 = off)"),
            _one_of(self.precision, "precision", PRECISIONS),
            _one_of(self.device, "device", DEVICES),
            (self.workers >= 0, "workers must be >= 0"),
            (len(self.betas) == 2, "betas must hold two numbers"),
        ]

    def validate(self: _C) -> _C:
        """Reject impossible values with a message that names the setting."""
        _raise_first_failure(
            [*self.own_checks(), *self.run_checks(), *_range_checks(self)], self.what
        )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for TOML/JSON."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Every hyper-parameter of a training run (saved as the run's config.toml)."""

    what: ClassVar[str] = "training"

    model: str = "cnn"
    epochs: int = 150
    batch_size: int = 32
    optimizer: str = "adam"
    min_lr: float = 1e-6
    scheduler: str = "plateau"
    warmup_steps: int = 0
    restart_epochs: int = 10
    restart_mult: int = 2
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 0.0
    label_smoothing: float = 0.0
    class_weighted: bool = True
    select_metric: str = "macro_f1"
    patience: int = 0
    init: str | None = None
    layer_decay: float = 1.0
    linear_probe: bool = False
    crop: str = "energy"
    val_windows: str = "all"
    balanced: bool = False
    wave_augment: bool = False
    mix_back: float = 0.0
    ema_decay: float = 0.0
    """Validate and keep as ``best`` an EMA of the weights with this decay per step (0 = off)."""
    recipe: str = "default"

    def own_checks(self) -> list[_Check]:
        return [
            _one_of(self.optimizer, "optimizer", OPTIMIZERS),
            _one_of(self.scheduler, "scheduler", SCHEDULERS),
            _one_of(self.select_metric, "select_metric", SELECT_METRICS),
            (0.0 <= self.mix_prob <= 1.0, "mix_prob must be within [0, 1]"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing must be within [0, 1)"),
            (0.0 <= self.mix_back <= 1.0, "mix_back must be within [0, 1]"),
            (self.restart_epochs >= 1, "restart_epochs must be >= 1"),
            (self.restart_mult >= 1, "restart_mult must be >= 1"),
            (0.0 < self.layer_decay <= 1.0, "layer_decay must be within (0, 1] (1 = off)"),
            _one_of(self.crop, "crop", CROPS),
            _one_of(self.val_windows, "val_windows", VAL_WINDOWS),
            _one_of(self.recipe, "recipe", RECIPE_NAMES),
        ]

    def to_toml(self) -> str:
        """The resolved config as TOML, loadable again with ``--config``."""
        return to_toml(self.to_dict())


def recipe(model: str, name: str = "default") -> TrainConfig:
    """The named recipe of ``model``, from its registration (``serenesense_cli/recipes.py``).

    ``reference`` is the reference system's recipe and data pipeline exactly;
    a model the reference system did not have has no reference recipe.
    """
    if name not in RECIPE_NAMES:
        raise ConfigError(f"unknown recipe {name!r}", hint=f"use one of: {', '.join(RECIPE_NAMES)}")
    from serenesense_cli.models import get_model_spec

    recipes = get_model_spec(model).recipes
    if name not in recipes:
        raise ConfigError(
            f"model {model!r} has no {name} recipe (the reference system had "
            f"{', '.join(list_models_with_recipe(name))})",
            hint="use --recipe default",
        )
    values = dict(recipes[name])
    values["model_args"] = dict(values.get("model_args", {}))  # callers may edit it
    return dataclasses.replace(TrainConfig(model=model), **values, recipe=name)


def list_models_with_recipe(name: str) -> list[str]:
    """Registered models that have the recipe ``name``."""
    from serenesense_cli.models import models_where

    return models_where(lambda spec: name in spec.recipes)


def resolve_train_config(
    model: str,
    *,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
    recipe_name: str | None = None,
) -> TrainConfig:
    """Recipe < config file < flags; ``model_args`` merge the same way.

    The recipe is ``recipe_name`` (a flag), else the config file's ``recipe``
    key, else ``default``.
    """
    values = None
    if config_file is not None:
        values = dict(load_toml(config_file))
        values.pop("task", None)
    chosen = recipe_name or str((values or {}).get("recipe", "default"))
    return _layered(
        recipe(model, chosen),
        model,
        file_values=values,
        config_file=config_file,
        overrides=overrides,
        model_args=model_args,
        mismatch_hint="remove the `model` key or train the model it names",
    )


def _layered(
    config: _C,
    model: str,
    *,
    file_values: dict[str, Any] | None,
    config_file: str | Path | None,
    overrides: dict[str, Any] | None,
    model_args: dict[str, Any] | None,
    mismatch_hint: str | None,
) -> _C:
    """``config`` < the config file's values < flags; ``[model_args]`` merge the same way.

    A run's saved ``config.toml`` records its data set; that entry is ignored.
    """
    merged_args: dict[str, Any] = dict(config.model_args)
    if file_values is not None:
        file_values.pop("data", None)
        file_model = file_values.pop("model", model)
        if file_model != model:
            raise ConfigError(
                f"{config_file}: config is for model {file_model!r}, not {model!r}",
                hint=mismatch_hint,
            )
        file_args = file_values.pop("model_args", {}) or {}
        if not isinstance(file_args, dict):
            raise ConfigError(f"{config_file}: [model_args] must be a table")
        merged_args.update(file_args)
        config = merge_config(config, file_values, where=str(config_file))
    if overrides:
        config = merge_config(config, overrides, where="command line")
    merged_args.update(model_args or {})
    return dataclasses.replace(config, model=model, model_args=merged_args).validate()


PRETRAIN_MASK_MODES = ("unstructured", "time", "frequency", "time_frequency")


@dataclass(frozen=True)
class PretrainConfig(RunConfig):
    """Every setting of a masked-autoencoder pretraining run (``task = "pretrain"``).

    Defaults follow AudioMAE (AdamW, betas 0.9/0.95, weight decay 0.05, 80 %
    masking, normalised-pixel loss, warm-up then half-cosine, 32 epochs),
    adapted to a batch of 16: the paper's learning rate is 2e-4 x batch/256
    at a batch of 512; linear scaling down to 16 would give 1.25e-5, too little
    to move a ViT in 32 epochs, so 2e-4 is used as is (docs/pretraining.md).
    """

    what: ClassVar[str] = "pretraining"

    model: str = "audiomae"
    epochs: int = 32
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    mask_ratio: float = 0.8
    mask_mode: str = "unstructured"
    norm_pix_loss: bool = True
    warmup_epochs: float = 3.0
    val_fraction: float = 0.1
    figure_every: int = 5
    figure_clips: int = 4

    def own_checks(self) -> list[_Check]:
        return [
            (_pretrainable(self.model), f"the {self.model} encoder cannot be pretrained"),
            (0.0 < self.mask_ratio < 1.0, "mask_ratio must be within (0, 1)"),
            _one_of(self.mask_mode, "mask_mode", PRETRAIN_MASK_MODES),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be within [0, 1)"),
            (self.figure_every >= 0, "figure_every must be >= 0 (0 = only at the end)"),
            (1 <= self.figure_clips <= 8, "figure_clips must be within 1..8"),
        ]


def resolve_pretrain_config(
    model: str = "audiomae",
    *,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
) -> PretrainConfig:
    """Defaults < config file < flags, as for training. A saved pretraining
    ``config.toml`` works as a config file (its ``task`` and ``data`` are skipped)."""
    values = None
    if config_file is not None:
        values = dict(load_toml(config_file))
        task = values.pop("task", "pretrain")
        if task != "pretrain":
            raise ConfigError(
                f"{config_file}: config is for task {task!r}, not pretraining",
                hint="use a config written for `serenesense pretrain`",
            )
    return _layered(
        PretrainConfig(model=model),
        model,
        file_values=values,
        config_file=config_file,
        overrides=overrides,
        model_args=model_args,
        mismatch_hint=None,
    )
