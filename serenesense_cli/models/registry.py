"""A small model registry in the spirit of timm: register, create, list.

Every model is an :class:`AudioClassifier`: it owns its audio front end, takes
raw 16 kHz waveform batches ``(B, samples)`` and returns logits ``(B, C)``.
Its constructor arguments are JSON-able and saved with the weights, so a model
can be rebuilt from metadata alone (``create_model(name, **args)``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from serenesense_cli.errors import ModelError


class AudioClassifier(nn.Module):
    """Base class: waveform in, logits out, front end inside.

    Subclasses set ``frontend`` (a feature module), ``augment`` (active only in
    training) and implement :meth:`classify_features`.
    """

    model_name: str = ""
    frontend: nn.Module
    augment: nn.Module

    def __init__(self, *, num_classes: int, sample_rate: int, clip_seconds: float) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.sample_rate = int(sample_rate)
        self.clip_seconds = float(clip_seconds)
        self.model_args: dict[str, Any] = {}

    @property
    def clip_samples(self) -> int:
        """Window length in samples that one forward pass scores."""
        return round(self.clip_seconds * self.sample_rate)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Front end (+ SpecAugment in training): ``(B, samples)`` -> model input."""
        feats = self.frontend(waveform)
        return self.augment(feats) if self.training else feats

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Model body on front-end features; returns logits."""
        raise NotImplementedError

    def forward(
        self,
        waveform: torch.Tensor,
        mix: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits for a waveform batch; ``mix`` (training only) mixes features,
        e.g. mixup/CutMix, between the front end and the body."""
        features = self.features(waveform)
        if mix is not None:
            features = mix(features)
        return self.classify_features(features)

    def config(self) -> dict[str, Any]:
        """Name and constructor arguments: enough to rebuild the architecture."""
        return {"name": self.model_name, "args": dict(self.model_args)}


ModelFactory = Callable[..., AudioClassifier]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one architecture."""

    name: str
    factory: ModelFactory
    description: str
    default_clip_seconds: float
    frontend: str
    recommended: bool = False
    """The one model the docs, the demo and ``serenesense models`` recommend."""
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Training recipes by name (``default``, and ``reference`` for the reference
    system's models): TrainConfig fields, see ``serenesense_cli/recipes.py``."""
    sizes: tuple[str, ...] = ()
    """Named size variants (``--size``, ``[model_args] size``); empty: none."""
    pretrainable: bool = False
    """Its encoder can be pretrained as a masked autoencoder and loaded with ``--init``."""
    quantization: str = "static"
    """INT8 mode ``quantize --mode auto`` picks: ``static`` (calibrated) or ``dynamic``."""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    description: str,
    default_clip_seconds: float,
    frontend: str,
    recommended: bool = False,
    recipes: Mapping[str, Mapping[str, Any]],
    sizes: tuple[str, ...] = (),
    pretrainable: bool = False,
    quantization: str = "static",
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make ``factory(num_classes=..., **args)`` available by ``name``,
    with every fact the commands need about it (:class:`ModelSpec`)."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        if recommended and any(spec.recommended for spec in _REGISTRY.values()):
            raise ValueError(f"model {name!r}: another model is already the recommended one")
        if "default" not in recipes:
            raise ValueError(f"model {name!r} needs a default recipe")
        if quantization not in ("static", "dynamic"):
            raise ValueError(f"model {name!r}: quantization must be static or dynamic")
        _REGISTRY[name] = ModelSpec(
            name,
            factory,
            description,
            default_clip_seconds,
            frontend,
            recommended,
            recipes=dict(recipes),
            sizes=tuple(sizes),
            pretrainable=pretrainable,
            quantization=quantization,
        )
        return factory

    return decorator


def recommended_model() -> str:
    """Name of the recommended model (the demo's and the docs' default)."""
    for name in list_models():
        if _REGISTRY[name].recommended:
            return name
    raise ModelError("no model is marked as recommended")


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def models_where(test: Callable[[ModelSpec], bool]) -> list[str]:
    """Registered model names, sorted, whose spec passes ``test`` (e.g. pretrainable)."""
    return [name for name in list_models() if test(_REGISTRY[name])]


def get_model_spec(name: str) -> ModelSpec:
    """The spec of ``name``, or a ModelError that suggests the closest name."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean {close[0]!r}?" if close else None
        raise ModelError(
            f"unknown model {name!r}; available: {', '.join(list_models())}", hint=hint
        ) from None


def create_model(name: str, *, num_classes: int, **args: Any) -> AudioClassifier:
    """Build a registered model; its arguments are recorded for the metadata."""
    spec = get_model_spec(name)
    try:
        model = spec.factory(num_classes=num_classes, **args)
    except (TypeError, ValueError, RuntimeError) as error:
        # torch refuses impossible sizes (negative channels, dropout 5) with
        # ValueError/RuntimeError while the layers are built: the arguments' fault.
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        unknown = re.search(r"unexpected keyword argument '(\w+)'", first_line)
        if unknown:
            raise ModelError(
                f"bad arguments for model {name!r}: it has no argument {unknown.group(1)!r}",
                hint="docs/training.md describes each model's [model_args]",
            ) from error
        raise ModelError(f"bad arguments for model {name!r}: {first_line}") from error
    model.model_name = name
    model.model_args = {"num_classes": int(num_classes), **args}
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
