"""Initialise the AudioMAE encoder from a checkpoint (``train audiomae --init``).

Accepted, all read without unpickling arbitrary objects (safetensors, or
``torch.load(weights_only=True)``):

* a serenesense run folder or weights file: a pretraining run
  (``runs/pretrain/<name>``, its ``weights/last.safetensors`` by default) or an
  ``audiomae`` training run (``weights/best.safetensors``). The encoder
  arguments and the log-mel normalisation come along;
* the official AudioMAE release (Huang et al., 2022; ``pretrained.pth`` or a
  fine-tuned checkpoint, a dict with the state under ``model``): inputs of
  1024 frames x 128 mel bins, so the patch grid is 64 (time) x 8 (frequency)
  flattened time-major, and the patch kernel is (time, frequency). Our input
  is (mel, frames): the kernel is transposed and the position embeddings are
  re-ordered to (frequency, time) and resampled (bicubic, timm's
  ``resample_abs_pos_embed``) to our grid. Decoder, mask token and head are
  dropped; a global-pool ``fc_norm`` becomes the final ``norm``;
* timm ViT state dicts (ImageNet ViT-Ti/S/B 16, ``.safetensors`` or
  ``.pth``/``.bin``): the RGB patch kernels are averaged into one channel and
  the square position grid (14 x 14 for 224 px) is resampled to ours.

Any key the encoder lacks, any encoder key the file lacks, and any shape that
does not fit is a :class:`ModelError` that lists the offending keys.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from serenesense_cli.errors import ModelError
from serenesense_cli.models.audiomae import VIT_SIZES
from serenesense_cli.models.mae import MAE_MODEL_NAME, encoder_args_from_metadata

KIND_SERENESENSE = "serenesense"
KIND_AUDIOMAE = "audiomae-official"
KIND_TIMM = "timm-vit"

OFFICIAL_MEL_BINS = 128
"""Mel bins of the official AudioMAE input (1024 frames x 128 bins)."""

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_STATE_KEYS = ("model", "state_dict", "model_state", "module")
_HINT = (
    "pass a serenesense pretraining/training run, an official AudioMAE checkpoint "
    "or a timm ViT state dict (see docs/pretraining.md)"
)


@dataclass
class InitCheckpoint:
    """A checkpoint read for ``--init``, before it is fitted to a model."""

    path: Path
    kind: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any] | None = None

    def model_args(self) -> dict[str, Any]:
        """Classifier arguments this checkpoint implies (used where the user set none).

        serenesense artefacts give their encoder and front-end arguments; raw
        checkpoints give ``size`` (from the width) and ``depth`` (block count).
        """
        if self.kind == KIND_SERENESENSE:
            return encoder_args_from_metadata(self.metadata or {})
        if "cls_token" not in self.tensors:
            return {}
        width = int(self.tensors["cls_token"].shape[-1])
        size = next((name for name, dims in VIT_SIZES.items() if dims["embed_dim"] == width), None)
        if size is None:
            return {}
        args: dict[str, Any] = {"size": size}
        depth = _block_count(self.tensors, "")
        if depth and depth != VIT_SIZES[size]["depth"]:
            args["depth"] = depth
        return args

    def normalization(self) -> tuple[float, float] | None:
        """The log-mel mean/std stored with a serenesense artefact."""
        mean = self.tensors.get("frontend.mean")
        std = self.tensors.get("frontend.std")
        if mean is None or std is None:
            return None
        return float(mean), float(std)

    def frontend_config(self) -> dict[str, Any] | None:
        if self.metadata is None:
            return None
        return dict((self.metadata.get("frontend") or {}).get("config") or {})


@dataclass
class InitReport:
    """What ``--init`` loaded: for the run log."""

    path: Path
    kind: str
    loaded: int
    ignored: list[str] = field(default_factory=list)
    normalization: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"encoder initialised from {self.path} ({self.kind}): {self.loaded} tensors loaded"
        if self.ignored:
            text += f"; {len(self.ignored)} decoder/head tensors left out"
        return text


def resolve_init_path(path: str | Path) -> Path:
    """A run folder means its weights (pretraining: last, training: best); a file is itself."""
    path = Path(path)
    if path.is_dir():
        from serenesense_cli.config import load_toml

        config = path / "config.toml"
        task = load_toml(config).get("task") if config.is_file() else None
        order = ("last", "best") if task == "pretrain" else ("best", "last")
        for which in order:
            candidate = path / "weights" / f"{which}.safetensors"
            if candidate.is_file():
                return candidate
        raise ModelError(
            f"{path}: no weights/last.safetensors or weights/best.safetensors in this folder",
            hint=_HINT,
        )
    if not path.is_file():
        raise ModelError(f"{path}: --init checkpoint not found", hint=_HINT)
    return path


def read_init(path: str | Path) -> InitCheckpoint:
    """Read and classify a checkpoint for ``--init``."""
    weights = resolve_init_path(path)
    if weights.suffix == ".safetensors":
        tensors, metadata = _read_safetensors(weights)
    elif weights.suffix in _TORCH_SUFFIXES:
        tensors, metadata = _read_torch(weights), None
    else:
        raise ModelError(
            f"{weights}: unsupported checkpoint type {weights.suffix!r} "
            f"(expected .safetensors, {', '.join(_TORCH_SUFFIXES)})",
            hint=_HINT,
        )
    if metadata is not None:
        name = metadata.get("model", {}).get("name")
        if name not in (MAE_MODEL_NAME, "audiomae"):
            raise ModelError(
                f"{weights}: a {name!r} model cannot initialise an AudioMAE encoder",
                hint="pass a `serenesense pretrain audiomae` run or an audiomae training run",
            )
        return InitCheckpoint(weights, KIND_SERENESENSE, tensors, metadata)
    tensors = _strip_prefix(tensors, "module.")
    patch = tensors.get("patch_embed.proj.weight")
    if patch is None or patch.ndim != 4:
        raise ModelError(
            f"{weights}: not a ViT checkpoint (no 4-D patch_embed.proj.weight; "
            f"keys: {_list(sorted(tensors), 6)})",
            hint=_HINT,
        )
    kind = KIND_TIMM if patch.shape[1] == 3 else KIND_AUDIOMAE
    return InitCheckpoint(weights, kind, tensors, None)


def load_encoder_init(model: nn.Module, checkpoint: InitCheckpoint | str | Path) -> InitReport:
    """Load a checkpoint's encoder into ``model.encoder`` (strict on encoder keys).

    The classifier head is left as built (fresh). For serenesense artefacts
    the report carries the stored log-mel normalisation; the caller decides
    whether to apply it.
    """
    if not isinstance(checkpoint, InitCheckpoint):
        checkpoint = read_init(checkpoint)
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "pos_embed"):
        raise ModelError("--init needs the audiomae model (a ViT encoder)")
    grid = tuple(int(v) for v in encoder.patch_embed.grid_size)
    notes: list[str] = []
    if checkpoint.kind == KIND_SERENESENSE:
        state, ignored = _from_serenesense(checkpoint.tensors)
        _check_frontend(model, checkpoint, notes)
    elif checkpoint.kind == KIND_AUDIOMAE:
        state, ignored = _from_audiomae(checkpoint, grid, notes)
    else:
        state, ignored = _from_timm(checkpoint, grid, notes)
    _check_keys(encoder, state, checkpoint)
    encoder.load_state_dict(state, strict=True)
    return InitReport(
        path=checkpoint.path,
        kind=checkpoint.kind,
        loaded=len(state),
        ignored=ignored,
        normalization=checkpoint.normalization() if checkpoint.kind == KIND_SERENESENSE else None,
        notes=notes,
    )


# -- readers -------------------------------------------------------------------


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("serenesense")
        tensors = load_file(str(path), device="cpu")
    except Exception as error:
        raise ModelError(f"{path}: unreadable safetensors file ({error})", hint=_HINT) from error
    return tensors, (json.loads(raw) if raw else None)


def _torch_load_problem(error: Exception) -> str:
    """What is wrong with a file ``torch.load`` refused, in our words: torch's
    message goes on to suggest ``weights_only=False``, which would run code
    from the file, so it is never shown."""
    text = str(error)
    if "Weights only load failed" in text:
        return "it holds Python objects besides tensors; they are not unpickled, for safety"
    if "zip archive" in text or "central directory" in text:
        return "not a complete PyTorch checkpoint: truncated or damaged"
    return f"not a PyTorch checkpoint ({type(error).__name__})"


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)``; the official checkpoints also hold their
    training ``argparse.Namespace``, a plain attribute bag that is allowed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's own text advises weights_only=False: unsafe
        raise ModelError(
            f"{path}: cannot be read with torch.load(weights_only=True) "
            f"({_torch_load_problem(error)})",
            hint="save just the state dict (e.g. as .safetensors) and pass that file",
        ) from None
    if isinstance(loaded, dict):
        for key in _STATE_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ModelError(
            f"{path}: no state dict of tensors found (looked at the top level and "
            f"under {', '.join(_STATE_KEYS)})",
            hint=_HINT,
        )
    return dict(loaded)


# -- converters ----------------------------------------------------------------


def _from_serenesense(
    tensors: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    state = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
    ignored = sorted(k for k in tensors if not k.startswith(("encoder.", "frontend.")))
    return state, ignored


def _from_audiomae(
    checkpoint: InitCheckpoint, grid: tuple[int, int], notes: list[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    tensors = dict(checkpoint.tensors)
    ignored = sorted(
        k for k in tensors if k.startswith(("decoder", "mask_token", "head.", "head_"))
    )
    state = {k: v for k, v in tensors.items() if k not in ignored}
    _fold_fc_norm(state, notes)
    patch = state["patch_embed.proj.weight"]
    state["patch_embed.proj.weight"] = patch.transpose(-1, -2).contiguous()
    pos = state.get("pos_embed")
    if pos is not None and pos.ndim == 3:
        freq = OFFICIAL_MEL_BINS // int(patch.shape[-1])
        patches = pos.shape[1] - 1
        if patches % freq:
            raise ModelError(
                f"{checkpoint.path}: pos_embed holds {patches} patches, not a multiple of the "
                f"{freq} frequency rows of a {OFFICIAL_MEL_BINS}-bin AudioMAE input "
                "(overlapping-patch checkpoints are not supported)",
                hint=_HINT,
            )
        time = patches // freq
        table = pos[:, 1:, :].reshape(1, time, freq, -1).transpose(1, 2)
        table = table.reshape(1, freq * time, -1)
        state["pos_embed"] = _resample(torch.cat([pos[:, :1], table], 1), (freq, time), grid)
        notes.append(
            f"position embeddings: AudioMAE grid {time} (time) x {freq} (freq) -> "
            f"{grid[1]} x {grid[0]}; patch kernels transposed to (freq, time)"
        )
    return state, ignored


def _from_timm(
    checkpoint: InitCheckpoint, grid: tuple[int, int], notes: list[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    tensors = dict(checkpoint.tensors)
    ignored = sorted(k for k in tensors if k.startswith(("head.", "head_", "pre_logits.")))
    state = {k: v for k, v in tensors.items() if k not in ignored}
    _fold_fc_norm(state, notes)
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].mean(dim=1, keepdim=True)
    pos = state.get("pos_embed")
    if pos is not None and pos.ndim == 3:
        count = pos.shape[1]
        side = math.isqrt(count - 1)
        if side * side == count - 1:
            prefixed = pos
        elif math.isqrt(count) ** 2 == count:  # no class position: start it at zero
            side = math.isqrt(count)
            prefixed = torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], dim=1)
            notes.append("the checkpoint has no CLS position; it starts at zero")
        else:
            raise ModelError(
                f"{checkpoint.path}: pos_embed of {count} positions is not a square grid "
                "(with or without a CLS token)",
                hint=_HINT,
            )
        state["pos_embed"] = _resample(prefixed, (side, side), grid)
        notes.append(
            f"position embeddings: {side} x {side} -> {grid[0]} x {grid[1]}; "
            "RGB patch kernels averaged into one channel"
        )
    return state, ignored


def _fold_fc_norm(state: dict[str, torch.Tensor], notes: list[str]) -> None:
    """Global-pool checkpoints keep their last LayerNorm as ``fc_norm``."""
    if "norm.weight" not in state and "fc_norm.weight" in state:
        for part in ("weight", "bias"):
            if f"fc_norm.{part}" in state:
                state[f"norm.{part}"] = state.pop(f"fc_norm.{part}")
        notes.append("fc_norm (global-pool checkpoint) loaded as the final norm")
    elif "fc_norm.weight" in state and "norm.weight" in state:
        notes.append("fc_norm ignored (the encoder pools the CLS token)")
        state.pop("fc_norm.weight")
        state.pop("fc_norm.bias", None)


def _resample(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(
        pos.float(), new_size=list(new), old_size=list(old), num_prefix_tokens=1
    ).to(pos.dtype)


# -- checks --------------------------------------------------------------------


def _check_keys(encoder: nn.Module, state: dict[str, torch.Tensor], ckpt: InitCheckpoint) -> None:
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {_list(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {_list(unexpected)}")
    if mismatched:
        parts.append(f"mismatched {len(mismatched)} (file vs model): {_list(mismatched)}")
    prefix = "encoder." if ckpt.kind == KIND_SERENESENSE else ""
    width = ckpt.tensors.get(f"{prefix}cls_token")
    found = (
        f"the file holds a {int(width.shape[-1])}-wide, {_block_count(ckpt.tensors, prefix)}-block "
        "ViT"
        if width is not None
        else "the file has no cls_token"
    )
    model_width = int(expected["cls_token"].shape[-1])
    model_depth = _block_count(expected, "")
    raise ModelError(
        f"{ckpt.path}: the {ckpt.kind} checkpoint does not fit the encoder "
        f"({model_width} wide, {model_depth} blocks): " + "; ".join(parts),
        hint=f"{found}; choose --size / [model_args] depth to match it",
    )


def _check_frontend(model: nn.Module, ckpt: InitCheckpoint, notes: list[str]) -> None:
    theirs = ckpt.frontend_config() or {}
    ours = model.frontend.config() if hasattr(model.frontend, "config") else {}
    differ = sorted(
        k for k in set(theirs) & set(ours) if k not in ("mean", "std") and theirs[k] != ours[k]
    )
    if differ:
        notes.append(
            "front end differs from the checkpoint's in "
            + ", ".join(f"{k} ({theirs[k]} there, {ours[k]} here)" for k in differ)
        )


def _block_count(tensors: dict[str, Any], prefix: str) -> int:
    indices = set()
    head = f"{prefix}blocks."
    for key in tensors:
        if key.startswith(head):
            part = key[len(head) :].split(".", 1)[0]
            if part.isdigit():
                indices.add(int(part))
    return max(indices) + 1 if indices else 0


def _strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if tensors and all(k.startswith(prefix) for k in tensors):
        return {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


__all__ = [
    "KIND_AUDIOMAE",
    "KIND_SERENESENSE",
    "KIND_TIMM",
    "InitCheckpoint",
    "InitReport",
    "load_encoder_init",
    "read_init",
    "resolve_init_path",
]
