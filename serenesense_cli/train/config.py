"""Training settings and the reference recipes (../shared/SPEC.md) per model.

``resolve_train_config(model, config_file, flags)`` applies the precedence:
the model's recipe < ``--config`` TOML < flags given on the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serenesense_cli.config import load_toml, merge_config, to_toml
from serenesense_cli.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "warmup_cosine_restarts", "constant")
SELECT_METRICS = ("macro_f1", "accuracy", "loss")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a training run (saved as the run's config.toml)."""

    model: str = "cnn"
    model_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 150
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: str = "plateau"
    warmup_steps: int = 0
    restart_epochs: int = 10
    restart_mult: int = 2
    min_lr: float = 1e-6
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    grad_clip: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 0.0
    label_smoothing: float = 0.0
    class_weighted: bool = True
    select_metric: str = "macro_f1"
    patience: int = 0
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    max_steps: int = 0
    time_limit: float = 0.0
    checkpoint_every: int = 0
    init: str | None = None
    layer_decay: float = 1.0
    linear_probe: bool = False

    def validate(self) -> TrainConfig:
        """Reject impossible values with a message that names the setting."""
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)}"),
            (
                self.select_metric in SELECT_METRICS,
                f"select_metric must be one of {', '.join(SELECT_METRICS)}",
            ),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (0.0 <= self.mix_prob <= 1.0, "mix_prob must be within [0, 1]"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing must be within [0, 1)"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 = off)"),
            (self.workers >= 0, "workers must be >= 0"),
            (self.restart_epochs >= 1, "restart_epochs must be >= 1"),
            (self.restart_mult >= 1, "restart_mult must be >= 1"),
            (len(self.betas) == 2, "betas must hold two numbers"),
            (0.0 < self.layer_decay <= 1.0, "layer_decay must be within (0, 1] (1 = off)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid training setting: {message}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for TOML/JSON."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    def to_toml(self) -> str:
        """The resolved config as TOML, loadable again with ``--config``."""
        return to_toml(self.to_dict())


RECIPES: dict[str, dict[str, Any]] = {
    # CNN-MFCC: Adam 1e-3, class-weighted CE, ReduceLROnPlateau(0.5, 10), SpecAugment.
    "cnn": {"epochs": 150, "batch_size": 32, "optimizer": "adam", "lr": 1e-3},
    # CRNN-MFCC: same recipe, batch 24, 100 epochs.
    "crnn": {"epochs": 100, "batch_size": 24, "optimizer": "adam", "lr": 1e-3},
    # AudioMAE (ViT-B/16): AdamW, warm-up + cosine warm restarts, mixup/CutMix.
    "audiomae": {
        "epochs": 100,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 1e-4,
        "weight_decay": 0.05,
        "betas": (0.9, 0.95),
        "eps": 1e-8,
        "scheduler": "warmup_cosine_restarts",
        "warmup_steps": 1000,
        "restart_epochs": 10,
        "restart_mult": 2,
        "min_lr": 1e-6,
        "grad_clip": 1.0,
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "mix_prob": 0.5,
        "label_smoothing": 0.1,
        "class_weighted": False,
    },
}
"""Reference hyper-parameters per model (SPEC.md); anything unset uses TrainConfig's."""


def recipe(model: str) -> TrainConfig:
    """The reference recipe of ``model`` (defaults for unknown models)."""
    return dataclasses.replace(TrainConfig(model=model), **RECIPES.get(model, {}))


def resolve_train_config(
    model: str,
    *,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
) -> TrainConfig:
    """Recipe < config file < flags; ``model_args`` merge the same way."""
    config = recipe(model)
    merged_args: dict[str, Any] = {}
    if config_file is not None:
        values = dict(load_toml(config_file))
        values.pop("data", None)  # a run's saved config.toml records its data set; ignore it
        values.pop("task", None)
        file_model = values.pop("model", model)
        if file_model != model:
            raise ConfigError(
                f"{config_file}: config is for model {file_model!r}, not {model!r}",
                hint="remove the `model` key or train the model it names",
            )
        file_args = values.pop("model_args", {}) or {}
        if not isinstance(file_args, dict):
            raise ConfigError(f"{config_file}: [model_args] must be a table")
        merged_args.update(file_args)
        config = merge_config(config, values, where=str(config_file))
    if overrides:
        config = merge_config(config, overrides, where="command line")
    merged_args.update(model_args or {})
    return dataclasses.replace(config, model=model, model_args=merged_args).validate()


PRETRAIN_MASK_MODES = ("unstructured", "time", "frequency", "time_frequency")


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting of a masked-autoencoder pretraining run (``task = "pretrain"``).

    Defaults follow AudioMAE (AdamW, betas 0.9/0.95, weight decay 0.05, 80 %
    masking, normalised-pixel loss, warm-up then half-cosine, 32 epochs),
    adapted to a batch of 16: the paper's learning rate is 2e-4 x batch/256
    at a batch of 512; linear scaling down to 16 would give 1.25e-5, too little
    to move a ViT in 32 epochs, so 2e-4 is used as is (docs/pretraining.md).
    """

    model: str = "audiomae"
    model_args: dict[str, Any] = field(default_factory=dict)
    mask_ratio: float = 0.8
    mask_mode: str = "unstructured"
    norm_pix_loss: bool = True
    epochs: int = 32
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_epochs: float = 3.0
    min_lr: float = 0.0
    grad_clip: float = 0.0
    val_fraction: float = 0.1
    figure_every: int = 5
    figure_clips: int = 4
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    max_steps: int = 0
    time_limit: float = 0.0
    checkpoint_every: int = 0

    def validate(self) -> PretrainConfig:
        """Reject impossible values with a message that names the setting."""
        checks = [
            (self.model == "audiomae", "only the audiomae encoder can be pretrained"),
            (0.0 < self.mask_ratio < 1.0, "mask_ratio must be within (0, 1)"),
            (
                self.mask_mode in PRETRAIN_MASK_MODES,
                f"mask_mode must be one of {', '.join(PRETRAIN_MASK_MODES)}",
            ),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.min_lr >= 0, "min_lr must be >= 0"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 = off)"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be within [0, 1)"),
            (self.figure_every >= 0, "figure_every must be >= 0 (0 = only at the end)"),
            (1 <= self.figure_clips <= 8, "figure_clips must be within 1..8"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.workers >= 0, "workers must be >= 0"),
            (len(self.betas) == 2, "betas must hold two numbers"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid pretraining setting: {message}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for TOML/JSON."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


def resolve_pretrain_config(
    model: str = "audiomae",
    *,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
) -> PretrainConfig:
    """Defaults < config file < flags, as for training. A saved pretraining
    ``config.toml`` works as a config file (its ``task`` and ``data`` are skipped)."""
    config = PretrainConfig(model=model)
    merged_args: dict[str, Any] = {}
    if config_file is not None:
        values = dict(load_toml(config_file))
        task = values.pop("task", "pretrain")
        if task != "pretrain":
            raise ConfigError(
                f"{config_file}: config is for task {task!r}, not pretraining",
                hint="use a config written for `serenesense pretrain`",
            )
        values.pop("data", None)
        file_model = values.pop("model", model)
        if file_model != model:
            raise ConfigError(f"{config_file}: config is for model {file_model!r}, not {model!r}")
        file_args = values.pop("model_args", {}) or {}
        if not isinstance(file_args, dict):
            raise ConfigError(f"{config_file}: [model_args] must be a table")
        merged_args.update(file_args)
        config = merge_config(config, values, where=str(config_file))
    if overrides:
        config = merge_config(config, overrides, where="command line")
    merged_args.update(model_args or {})
    return dataclasses.replace(config, model=model, model_args=merged_args).validate()
