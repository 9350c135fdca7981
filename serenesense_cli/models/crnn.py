"""CRNN-MFCC: the reference system's convolutional-recurrent classifier.

The CNN's conv blocks with MaxPool (2, 1) so time is kept, frames as a sequence
(124 x 960 for 4 s), BiLSTM 128, BiLSTM 64, mean and max over time concatenated
(256), Linear 256->160, ReLU, Dropout 0.35, Linear 160->C.
1,532,935 parameters for 7 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from serenesense_cli.audio.features import MFCCStack
from serenesense_cli.models.blocks import conv_stack, mlp_head, spec_augment
from serenesense_cli.models.registry import AudioClassifier, register_model
from serenesense_cli.recipes import reference_and_default


class CRNNMFCC(AudioClassifier):
    """Reference CRNN on MFCC + delta + delta-delta."""

    def __init__(
        self,
        *,
        num_classes: int,
        clip_seconds: float = 4.0,
        sample_rate: int = 16000,
        channels: Sequence[int] = (48, 96, 192),
        dropouts: Sequence[float] = (0.20, 0.25, 0.30),
        lstm_sizes: Sequence[int] = (128, 64),
        hidden: int = 160,
        head_dropout: float = 0.35,
        n_mfcc: int = 40,
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
            sample_rate=sample_rate, clip_seconds=clip_seconds, n_mfcc=n_mfcc, zscore=mfcc_zscore
        )
        self.augment = spec_augment(freq_masks, freq_mask_width, time_masks, time_mask_width)
        self.body, body_channels = conv_stack(channels, dropouts, pool=(2, 1))
        freq = n_mfcc // 2 ** len(self.body)  # each block's (2, 1) pool halves the coefficients
        lstms, width = [], body_channels * freq
        for size in lstm_sizes:
            lstms.append(nn.LSTM(width, size, batch_first=True, bidirectional=True))
            width = 2 * size
        self.lstms = nn.ModuleList(lstms)
        self.head = mlp_head(2 * width, hidden, head_dropout, num_classes)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        x = self.body(features)  # (B, C, F, T)
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)
        for lstm in self.lstms:
            x, _ = lstm(x)
        pooled = torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=1)
        return self.head(pooled)


@register_model(
    "crnn",
    description="reference CRNN-MFCC (2 BiLSTM)",
    default_clip_seconds=4.0,
    frontend="mfcc",
    recipes=reference_and_default("crnn"),
)
def crnn(*, num_classes: int, **args: object) -> CRNNMFCC:
    """The reference CRNN-MFCC."""
    return CRNNMFCC(num_classes=num_classes, **args)  # type: ignore[arg-type]
