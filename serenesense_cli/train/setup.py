"""Run set-up that classifier training and MAE pretraining share.

Why a module of its own: both drive the same loop (``train/loop.py``); what
they set up around it (determinism, mixed precision, the run folder and its
config.toml, resuming from it, the log-mel normalisation statistics, AdamW's
parameter groups, the warm-up cap) must not drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import numpy as np
import torch

from serenesense_cli.config import load_toml, merge_config, to_toml
from serenesense_cli.errors import BadInputError
from serenesense_cli.fileio import write_text_atomic
from serenesense_cli.paths import DEFAULT_RUNS_DIR, new_run_dir
from serenesense_cli.train import distributed as dist_utils

_Config = TypeVar("_Config")
_Result = TypeVar("_Result")


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

_NORMALIZATION_BATCH = 16


def measure_normalization(
    frontend: Any, window: Callable[[int], torch.Tensor], count: int, seed: int
) -> tuple[float, float]:
    """Log-mel mean/std of up to :data:`NORMALIZATION_CLIPS` of ``count`` training clips.

    ``window(i)`` is clip ``i``'s centred window; the clips are a seeded
    sample, so a run and its resume agree. The statistics are measured on the
    un-normalised front end; the caller installs them.
    """
    from serenesense_cli.audio.features import compute_normalization_stats

    chosen = sorted(np.random.default_rng(seed).permutation(count)[:NORMALIZATION_CLIPS].tolist())
    batches = (
        torch.stack([window(i) for i in chosen[s : s + _NORMALIZATION_BATCH]])
        for s in range(0, len(chosen), _NORMALIZATION_BATCH)
    )
    frontend.set_normalization(0.0, 1.0)
    mean, std = compute_normalization_stats(frontend, batches)
    return float(mean), float(std)


def capped_warmup(wanted: int, total_steps: int) -> int:
    """Warm-up steps actually used: ``wanted``, at most a tenth of a short run.

    A run that would never leave warm-up learns nothing (the reference's 1,000
    warm-up steps outlast a whole quick CPU run), so short runs warm up over a
    tenth of their steps instead; the run log says so.
    """
    if not wanted or not total_steps:
        return 0
    return min(wanted, max(1, total_steps // 10))


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


# -- the run folder ------------------------------------------------------------------


@dataclass(frozen=True)
class RunStart:
    """Where a run goes and how it begins: a new folder under ``runs_dir``, or ``resume``."""

    runs_dir: Path
    name: str | None = None
    resume: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    """Flags given now; on resume they go on top of the run's saved settings."""


def create_run_folder(
    runs_dir: Path, task: str, name: str, context: dist_utils.DistContext
) -> Path:
    """``runs_dir/task/name[N]``, made by the main process and shared with the others."""
    run_dir = new_run_dir(runs_dir, task, name) if context.is_main else None
    run_dir = dist_utils.broadcast_object(run_dir, context)
    assert run_dir is not None
    return run_dir


def write_run_config(
    run_dir: Path, values: dict[str, Any], header: str, context: dist_utils.DistContext
) -> None:
    """The run's resolved settings as ``config.toml`` (and its weights folder)."""
    if context.is_main:
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.toml", f"# {header}\n" + to_toml(values))


def read_run_config(run_dir: Path, *, command: str) -> dict[str, Any]:
    """The saved ``config.toml`` of a run folder that ``serenesense COMMAND`` made."""
    path = run_dir / "config.toml"
    if not run_dir.is_dir() or not path.is_file():
        what = "training" if command == "train" else "pretraining"
        raise BadInputError(
            f"{run_dir}: not a {what} run folder (no config.toml)",
            hint=f"pass the folder printed by `serenesense {command}`",
        )
    return dict(load_toml(path))


def resumed_config(
    base: _Config, saved: dict[str, Any], overrides: dict[str, Any], *, where: str
) -> _Config:
    """``base`` < the run's saved settings < flags given now (e.g. more epochs).

    ``saved`` holds the settings only (its data set entry already taken out);
    its ``[model_args]`` replace the base's.
    """
    values = dict(saved)
    model_args = values.pop("model_args", {}) or {}
    config = merge_config(base, values, where=where)
    if overrides:
        config = merge_config(config, overrides, where="command line")
    return dataclasses.replace(config, model_args=dict(model_args))  # type: ignore[type-var]


class RunOptions(TypedDict, total=False):
    """Where a run goes and how it reports: the keyword arguments ``train()`` and
    ``pretrain()`` share (``runs_dir`` defaults to ``runs``)."""

    runs_dir: str | Path
    name: str | None
    """Run folder name (default: the model's); a taken name gets a number."""
    resume: str | Path | None
    """A run folder to continue exactly where it stopped."""
    overrides: dict[str, Any] | None
    """Settings given now: for a new run (with ``model``), or on top of a resumed run's."""
    on_progress: Any
    """A :data:`~serenesense_cli.progress.ProgressCallback`."""


def launch_run(
    body: Callable[..., _Result], *, config: Any, options: RunOptions, **arguments: Any
) -> _Result:
    """Run ``body(context=, config=, start=, on_progress=, **arguments)`` in the torchrun
    context, on the device the config (or, when resuming, the ``device`` flag) asks for."""
    unknown = set(options) - set(RunOptions.__annotations__)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    overrides = options.get("overrides")
    device = (config.device if config is not None else (overrides or {}).get("device")) or "auto"
    resume = options.get("resume")
    start = RunStart(
        runs_dir=Path(options.get("runs_dir", DEFAULT_RUNS_DIR)),
        name=options.get("name"),
        resume=Path(resume) if resume is not None else None,
        overrides=dict(overrides or {}),
    )
    on_progress = options.get("on_progress")
    return dist_utils.launch(body, device, on_progress, config=config, start=start, **arguments)
