"""One model artefact: safetensors weights + JSON metadata, loadable by path.

A trained model carries everything needed to use it: architecture name and
arguments, class names, front-end parameters (the normalisation statistics
live in the weights as buffers, and are copied into the metadata for
readers), training metrics and library versions. The metadata is stored
twice: inside the safetensors header (so the single file is enough) and in a
sidecar ``.json`` for people. Weights are never unpickled.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from serenesense_cli import __version__
from serenesense_cli.errors import ModelError
from serenesense_cli.fileio import atomic_path, write_json_atomic
from serenesense_cli.models.registry import AudioClassifier, create_model

WEIGHTS_FORMAT = "serenesense-weights"
WEIGHTS_VERSION = 1
_META_KEY = "serenesense"
_FRONTEND_KINDS = {"LogMel": "logmel", "MFCCStack": "mfcc"}


@dataclass
class LoadedModel:
    """A model rebuilt from an artefact, in eval mode, with its metadata."""

    model: AudioClassifier
    classes: tuple[str, ...]
    metadata: dict[str, Any]
    path: Path


def library_versions() -> dict[str, str]:
    """Versions recorded in every artefact (for reproducibility)."""
    versions = {
        "serenesense": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for name in ("torchaudio", "timm"):
        try:
            module = __import__(name)
            versions[name] = str(module.__version__)
        except Exception:  # pragma: no cover - optional
            continue
    return versions


def model_metadata(
    model: AudioClassifier, classes: tuple[str, ...] | list[str], **extra: Any
) -> dict[str, Any]:
    """The JSON-able description of ``model`` saved beside its weights."""
    frontend = model.frontend
    meta: dict[str, Any] = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_VERSION,
        "model": model.config(),
        "classes": list(classes),
        "sample_rate": model.sample_rate,
        "clip_seconds": model.clip_seconds,
        "frontend": {
            "kind": _FRONTEND_KINDS.get(type(frontend).__name__, type(frontend).__name__.lower()),
            "config": frontend.config() if hasattr(frontend, "config") else {},
        },
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta.update(extra)
    return meta


def save_model(
    path: str | Path,
    model: AudioClassifier,
    classes: tuple[str, ...] | list[str],
    **extra: Any,
) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = model_metadata(model, classes, **extra)
    state = {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    write_json_atomic(path.with_suffix(".json"), meta)
    return path


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def resolve_weights(path: str | Path, *, which: str = "best") -> Path:
    """A run folder means its ``weights/{which}.safetensors``; a file is itself."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "weights" / f"{which}.safetensors"
        if candidate.is_file():
            return candidate
        raise ModelError(
            f"{path}: no weights/{which}.safetensors in this folder",
            hint="pass a training run folder or a .safetensors file",
        )
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    if path.suffix != ".safetensors":
        raise ModelError(
            f"{path}: not a serenesense weights file (.safetensors expected)",
            hint="pass a training run folder or a .safetensors file (or, where supported, .onnx)",
        )
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of a weights file, from the safetensors header (no tensors read)."""
    from safetensors import safe_open

    weights = resolve_weights(path)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(_META_KEY)
    except Exception as error:
        raise ModelError(f"{weights}: unreadable weights file ({error})") from error
    if not raw:
        raise ModelError(f"{weights}: no serenesense metadata in this safetensors file")
    meta = json.loads(raw)
    if meta.get("format") != WEIGHTS_FORMAT or int(meta.get("format_version", 0)) > WEIGHTS_VERSION:
        raise ModelError(
            f"{weights}: unsupported weights format {meta.get('format')!r} "
            f"version {meta.get('format_version')!r}",
            hint="upgrade serenesense",
        )
    return meta


def build_model_from_metadata(meta: dict[str, Any]) -> AudioClassifier:
    """Rebuild the architecture (random weights) that ``meta`` describes."""
    spec = meta["model"]
    args = dict(spec.get("args", {}))
    num_classes = int(args.pop("num_classes", len(meta["classes"])))
    return create_model(spec["name"], num_classes=num_classes, **args)


def load_model(path: str | Path, *, which: str = "best", device: str = "cpu") -> LoadedModel:
    """Load a model artefact (run folder or .safetensors) for inference."""
    from safetensors.torch import load_file

    weights = resolve_weights(path, which=which)
    meta = read_metadata(weights)
    if meta.get("task") == "pretrain":
        raise ModelError(
            f"{weights}: a masked-autoencoder pretraining checkpoint, not a classifier",
            hint="fine-tune it first: serenesense train audiomae --init RUN --data DIR",
        )
    model = build_model_from_metadata(meta)
    state = load_file(str(weights), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{weights}: weights do not match the {meta['model']['name']!r} architecture "
            f"(missing: {', '.join(missing[:5]) or 'none'}; unexpected: "
            f"{', '.join(unexpected[:5]) or 'none'})"
        )
    model.to(device).eval()
    return LoadedModel(model=model, classes=tuple(meta["classes"]), metadata=meta, path=weights)
