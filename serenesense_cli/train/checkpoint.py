"""Resumable training state, written atomically and loaded without unpickling.

The model weights go to ``weights/{best,last}.safetensors`` (see
:mod:`serenesense_cli.models.artifact`). Everything else needed to continue a
run exactly — optimiser, scheduler, RNG states, epoch/step counters, the best
score so far — goes to ``weights/last_state.pt``, saved with ``torch.save`` and
read back with ``torch.load(weights_only=True)``: tensors, numbers, strings,
lists and dicts only.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serenesense_cli.errors import ModelError
from serenesense_cli.fileio import atomic_path

STATE_FILE = "last_state.pt"


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states in weights_only-safe types."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    random.setstate(_python_state_from_list(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def save_training_state(weights_dir: Path, state: dict[str, Any]) -> Path:
    """Write the resumable state atomically."""
    path = weights_dir / STATE_FILE
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_training_state(weights_dir: Path) -> dict[str, Any]:
    """Read the resumable state (``weights_only=True``: nothing is unpickled)."""
    path = weights_dir / STATE_FILE
    if not path.is_file():
        raise ModelError(
            f"{weights_dir.parent}: no resumable state ({STATE_FILE}) in this run",
            hint="resume needs a run folder written by `serenesense train`",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's own text may advise weights_only=False: unsafe
        raise ModelError(
            f"{path}: unreadable training state (truncated or damaged, "
            f"{type(error).__name__}); the run cannot be resumed",
            hint=_BEST_INTACT_HINT.format(weights=weights_dir),
        ) from None


_BEST_INTACT_HINT = (
    "{weights}/best.safetensors is written separately and is not affected: evaluate or "
    "export it, or start a new run"
)


def load_last_weights(weights_dir: Path) -> dict[str, torch.Tensor]:
    """The ``last`` weights a resume continues from, with a clear error when damaged
    (a full disk or a kill while writing, on a file system without atomic rename)."""
    from safetensors.torch import load_file

    path = weights_dir / "last.safetensors"
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:
        raise ModelError(
            f"{path}: unreadable weights (missing, truncated or damaged: "
            f"{type(error).__name__}); the run cannot be resumed",
            hint=_BEST_INTACT_HINT.format(weights=weights_dir),
        ) from None
