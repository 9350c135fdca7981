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
