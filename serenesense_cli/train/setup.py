"""Run set-up that classifier training and MAE pretraining share.

Why a module of its own: both drive the same loop (``train/loop.py``); what
they set up around it (determinism, mixed precision) must not drift apart.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels where torch has them (``--deterministic``)."""
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def autocast_context(device: torch.device, precision: str) -> Any:
    """bf16 autocast for ``precision`` ``bf16`` (or ``auto`` on CUDA); else a no-op."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


NORMALIZATION_CLIPS = 256
"""Training clips the log-mel normalisation statistics are measured on."""

NO_DECAY_NAMES = ("cls_token", "pos_embed", "mask_token")
"""Parameters (besides norms and biases) that AdamW's weight decay leaves alone."""


def decays(name: str, param: torch.nn.Parameter) -> bool:
    """Whether weight decay applies: not to norms, biases (1-D) or tokens/tables."""
    return param.ndim > 1 and not name.endswith(NO_DECAY_NAMES)


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters in two AdamW groups: with and without decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param) else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
