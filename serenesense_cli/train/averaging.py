"""An exponential moving average (EMA) of the weights, for validation and ``best``.

Why: on a few hundred clips the weights of one step are noisy; their average
over the last few hundred steps usually generalises better and its
validation figures jump less from epoch to epoch, so choosing ``best`` by them
is less of a lottery. torch's :class:`~torch.optim.swa_utils.AveragedModel`
keeps the average (parameters and batch-norm statistics); the optimiser
still steps the raw weights, which ``last`` holds for resuming.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """EMA of ``model``'s parameters and buffers with ``decay`` per step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be within (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
        )

    def update(self, model: nn.Module) -> None:
        """Fold the weights after an optimiser step into the average."""
        self.averaged.update_parameters(model)

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[None]:
        """Inside the block ``model`` holds the averaged weights; the raw ones return after."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.averaged.module.state_dict())
        try:
            yield
        finally:
            model.load_state_dict(raw)

    def state_dict(self) -> dict[str, Any]:
        """Tensors only (``torch.load(weights_only=True)`` reads them back)."""
        return {"decay": self.decay, "weights": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["weights"])

    @property
    def steps(self) -> int:
        return int(torch.as_tensor(self.averaged.n_averaged).item())
