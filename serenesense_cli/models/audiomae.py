"""AudioMAE classifier: a ViT encoder (timm) on a (1, 128, 128) log-mel image.

Sizes: ``tiny`` (ViT-Ti: 192 wide, 12 deep, 3 heads) for tests and CPU demos,
``small`` (ViT-S: 384/12/6), ``base`` (ViT-B/16: 768/12/12, 85.3M encoder
parameters: the reference). Head as designed: Linear(D, D), GELU,
Dropout(0.5), Linear(D, C). The encoder is a plain timm ``VisionTransformer``
so masked-autoencoder pretraining and timm/AudioMAE checkpoints map onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from serenesense_cli.audio.features import LogMel
from serenesense_cli.errors import ModelError
from serenesense_cli.models.blocks import spec_augment
from serenesense_cli.models.registry import AudioClassifier, register_model
from serenesense_cli.recipes import reference_and_default

VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
}
"""Encoder widths per size name (ViT-Ti/S/B)."""


def with_overrides(defaults: Mapping[str, Any], **overrides: int | None) -> dict[str, Any]:
    """``defaults`` plus each override that was given (``None`` keeps the default), as int.

    Size presets (encoder widths, decoder sizes) take per-argument overrides
    this way, and recorded arguments list only the overrides that were set.
    """
    merged = dict(defaults)
    merged.update({key: int(value) for key, value in overrides.items() if value is not None})
    return merged


def check_vit_size(size: str) -> None:
    """Refuse a size name that is not in :data:`VIT_SIZES`."""
    if size not in VIT_SIZES:
        raise ModelError(f"unknown AudioMAE size {size!r}; choose from {', '.join(VIT_SIZES)}")


def build_vit_encoder(
    *,
    size: str = "base",
    input_size: tuple[int, int] = (128, 128),
    patch_size: int = 16,
    drop_path: float = 0.1,
    embed_dim: int | None = None,
    depth: int | None = None,
    num_heads: int | None = None,
) -> nn.Module:
    """A timm ViT without classifier (``num_classes=0``): returns the CLS feature."""
    from timm.models.vision_transformer import VisionTransformer

    check_vit_size(size)
    dims = with_overrides(VIT_SIZES[size], embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    return VisionTransformer(
        img_size=tuple(input_size),
        patch_size=patch_size,
        in_chans=1,
        num_classes=0,
        global_pool="token",
        mlp_ratio=4.0,
        qkv_bias=True,
        class_token=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=drop_path,
        **dims,
    )


def build_logmel_vit(
    *,
    size: str,
    clip_seconds: float,
    sample_rate: int,
    n_mels: int,
    target_frames: int,
    patch_size: int,
    drop_path: float,
    embed_dim: int | None = None,
    depth: int | None = None,
    num_heads: int | None = None,
) -> tuple[LogMel, nn.Module]:
    """The log-mel front end and ViT encoder for one input geometry.

    The classifier and the masked autoencoder both build theirs here, so
    pretrained ``frontend.*``/``encoder.*`` weights load into a classifier key for key.
    """
    frontend = LogMel(
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        n_mels=n_mels,
        target_frames=target_frames,
    )
    encoder = build_vit_encoder(
        size=size,
        input_size=(n_mels, target_frames),
        patch_size=patch_size,
        drop_path=drop_path,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
    )
    return frontend, encoder


class AudioMAEClassifier(AudioClassifier):
    """ViT on normalised log-mel with the designed MLP head."""

    def __init__(
        self,
        *,
        num_classes: int,
        size: str = "base",
        clip_seconds: float = 10.0,
        sample_rate: int = 16000,
        n_mels: int = 128,
        target_frames: int = 128,
        patch_size: int = 16,
        drop_path: float = 0.1,
        head_dropout: float = 0.5,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        freq_masks: int = 2,
        freq_mask_width: int = 20,
        time_masks: int = 2,
        time_mask_width: int = 12,
    ) -> None:
        super().__init__(
            num_classes=num_classes, sample_rate=sample_rate, clip_seconds=clip_seconds
        )
        frontend, encoder = build_logmel_vit(
            size=size,
            clip_seconds=clip_seconds,
            sample_rate=sample_rate,
            n_mels=n_mels,
            target_frames=target_frames,
            patch_size=patch_size,
            drop_path=drop_path,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
        )
        self.frontend = frontend  # modules in the order frontend, augment, encoder
        self.augment = spec_augment(freq_masks, freq_mask_width, time_masks, time_mask_width)
        self.encoder = encoder
        width = int(self.encoder.embed_dim)
        self.head = nn.Sequential(
            nn.Linear(width, width),
            nn.GELU(),
            nn.Dropout(head_dropout),
            nn.Linear(width, num_classes),
        )

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(features))

    def encoder_parameters(self) -> int:
        """Parameters of the encoder alone (the reference quotes 85.3M for base)."""
        return sum(p.numel() for p in self.encoder.parameters())

    def set_normalization(self, mean: float, std: float) -> None:
        """Store the data set's log-mel statistics inside the model."""
        self.frontend.set_normalization(mean, std)


@register_model(
    "audiomae",
    description="ViT on log-mel (base = ViT-B/16)",
    default_clip_seconds=10.0,
    frontend="logmel",
    recipes=reference_and_default("audiomae"),
    sizes=tuple(VIT_SIZES),
    pretrainable=True,
    quantization="dynamic",  # why: docs/deployment.md, "Quantization modes"
)
def audiomae(*, num_classes: int, **args: Any) -> AudioMAEClassifier:
    """The AudioMAE-style ViT classifier."""
    return AudioMAEClassifier(num_classes=num_classes, **args)
