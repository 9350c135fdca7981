"""CNN-MFCC: the reference system's small convolutional classifier.

3 x [Conv 3x3 (48, 96, 192), BatchNorm, ReLU, MaxPool 2x2, Dropout], global
average pool, Linear 192->160, ReLU, Dropout 0.35, Linear 160->C.
241,671 parameters for 7 classes, on MFCC(40)+deltas of 3 s clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from serenesense_cli.audio.features import MFCCStack
from serenesense_cli.models.blocks import conv_stack, mlp_head, spec_augment
from serenesense_cli.models.registry import AudioClassifier, register_model
from serenesense_cli.recipes import CNN_RECIPE, reference_and_default


class CNNMFCC(AudioClassifier):
    """Reference CNN on MFCC + delta + delta-delta."""

    def __init__(
        self,
        *,
        num_classes: int,
        clip_seconds: float = 3.0,
        sample_rate: int = 16000,
        channels: Sequence[int] = (48, 96, 192),
        dropouts: Sequence[float] = (0.25, 0.30, 0.30),
        hidden: int = 160,
        head_dropout: float = 0.35,
        freq_masks: int = 2,
        freq_mask_width: int = 15,
        time_masks: int = 2,
        time_mask_width: int = 10,
        mfcc_zscore: str = "clip",
    ) -> None:
        super().__init__(
            num_classes=num_classes, sample_rate=sample_rate, clip_seconds=clip_seconds
        )
        self.frontend = MFCCStack(
            sample_rate=sample_rate, clip_seconds=clip_seconds, zscore=mfcc_zscore
        )
        self.augment = spec_augment(freq_masks, freq_mask_width, time_masks, time_mask_width)
        self.body, width = conv_stack(channels, dropouts, pool=(2, 2))
        self.head = mlp_head(width, hidden, head_dropout, num_classes)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        x = self.body(features)
        return self.head(x.mean(dim=(2, 3)))


@register_model(
    "cnn",
    description="reference CNN-MFCC",
    default_clip_seconds=3.0,
    frontend="mfcc",
    recipes=reference_and_default("cnn", CNN_RECIPE),
)
def cnn(*, num_classes: int, **args: object) -> CNNMFCC:
    """The reference CNN-MFCC."""
    return CNNMFCC(num_classes=num_classes, **args)  # type: ignore[arg-type]
