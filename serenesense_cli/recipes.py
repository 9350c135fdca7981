"""The training recipes of the registered models, as plain data (no torch).

Each model's registration (``models/<model>.py``) names its recipes, so the
registry is the one place that knows which recipe a model trains with;
``train/config.py`` turns a recipe into a :class:`TrainConfig`. Recipe keys
are TrainConfig fields (``model_args`` merges into the model's arguments).
"""

from __future__ import annotations

from typing import Any

REFERENCE_RECIPES: dict[str, dict[str, Any]] = {
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
"""The reference system's hyper-parameters per model (SPEC.md), with its data
pipeline: uniform random training crops, validation on the centred window.
Anything unset uses TrainConfig's defaults."""

REFERENCE_PIPELINE = {"crop": "random", "val_windows": "center"}
"""The reference data pipeline every reference recipe adds: uniform crops, centred validation."""

MODERN_RECIPE: dict[str, Any] = {
    "epochs": 60,
    "batch_size": 32,
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 0.01,
    "scheduler": "warmup_cosine",
    "warmup_steps": 60,
    "min_lr": 1e-5,
    "grad_clip": 5.0,
    "label_smoothing": 0.1,
    "class_weighted": False,
    "balanced": True,
    "select_metric": "loss",
}
"""The recipe of serenesense's own CNN (docs/training.md has the measurements):
AdamW, linear warm-up then one cosine decay (which follows the time budget
under ``--time-limit``), label smoothing, class-balanced sampling, SpecAugment
(in the model), energy crops; the best checkpoint by validation loss, which is
far less noisy than macro-F1 on a small validation set. Mixup is available
(``--mix-prob``) but did not help in the measured runs."""

CNN_RECIPE: dict[str, Any] = {
    **REFERENCE_RECIPES["cnn"],
    **{k: v for k, v in MODERN_RECIPE.items() if k not in ("epochs", "min_lr")},
    "model_args": {"mfcc_zscore": "dataset"},
}
"""The reference CNN, unchanged in architecture and size, with each MFCC
coefficient z-scored with the training set's statistics instead of per clip
(which erased the spectral envelope; docs/training.md measures +10 points of
macro-F1) and melcnn's optimiser, schedule and sampling."""


def reference_and_default(model: str, default: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``recipes`` of a model the reference system had: its reference recipe
    with the reference data pipeline, and ``default`` (else the reference
    hyper-parameters with serenesense's data pipeline, the TrainConfig defaults)."""
    reference = REFERENCE_RECIPES[model]
    return {
        "default": dict(default if default is not None else reference),
        "reference": {**reference, **REFERENCE_PIPELINE},
    }
