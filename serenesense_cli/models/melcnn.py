"""MelCNN: serenesense's own log-mel CNN for small data sets and the Raspberry Pi.

In the style of PANNs CNN6/CNN10 (Kong et al. 2020), sized for a 2-core CPU:

* log-mel front end (64 bands, 20 ms hop) with the window's mean level
  removed, so a recording's gain does not change the input (docs/training.md
  measures why), then batch-norm per mel band on the input (PANNs' ``bn0``),
  which learns the data set's per-band statistics;
* a cheap full-resolution stem (one 3x3 conv, 2x2 average pool), then
  ``len(channels)`` blocks of two 3x3 conv + BN + ReLU and a 2x2 average pool;
* mean over frequency, then mean + max over time, so any window length works
  and a short event anywhere in the window still reaches the head;
* dropout and a linear layer to the classes.

``width`` scales every channel count (``width=1``: ~1.2 M parameters at
(32, 64, 128, 256); ``width=0.5``: ~0.3 M; ``width=2``: ~4.7 M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from serenesense_cli.audio.features import LogMel
from serenesense_cli.errors import ModelError
from serenesense_cli.models.blocks import spec_augment
from serenesense_cli.models.registry import AudioClassifier, register_model
from serenesense_cli.recipes import MODERN_RECIPE


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 conv (no bias: BN follows), BatchNorm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def double_conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """PANNs' ConvBlock: two conv-BN-ReLU and a 2x2 average pool."""
    return nn.Sequential(
        *conv_bn_relu(in_channels, out_channels),
        *conv_bn_relu(out_channels, out_channels),
        nn.AvgPool2d(2),
    )


def scaled_channels(channels: Sequence[int], width: float) -> list[int]:
    """Channel counts times ``width``, rounded to multiples of 8 (at least 8)."""
    if not width > 0:
        raise ModelError(f"melcnn width must be positive, got {width!r}")
    if not all(isinstance(c, int) and c > 0 for c in channels):
        raise ModelError(f"melcnn channels must be positive integers, got {list(channels)!r}")
    return [max(8, round(c * width / 8) * 8) for c in channels]


class MelCNN(AudioClassifier):
    """Log-mel CNN with per-band input batch-norm and mean+max time pooling."""

    def __init__(
        self,
        *,
        num_classes: int,
        clip_seconds: float = 3.0,
        sample_rate: int = 16000,
        n_mels: int = 64,
        hop_length: int = 320,
        n_fft: int = 1024,
        f_min: float = 50.0,
        f_max: float = 8000.0,
        level: str = "window",
        width: float = 1.0,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.3,
        freq_masks: int = 2,
        freq_mask_width: int = 8,
        time_masks: int = 2,
        time_mask_width: int = 20,
    ) -> None:
        super().__init__(
            num_classes=num_classes, sample_rate=sample_rate, clip_seconds=clip_seconds
        )
        if not channels:
            raise ModelError("melcnn needs at least one conv block (channels is empty)")
        if n_mels < 2 ** (len(channels) + 1):
            raise ModelError(
                f"melcnn with {len(channels)} blocks needs n_mels >= {2 ** (len(channels) + 1)}"
            )
        self.frontend = LogMel(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            clip_seconds=clip_seconds,
            target_frames=None,
            level=level,
        )
        self.augment = spec_augment(freq_masks, freq_mask_width, time_masks, time_mask_width)
        self.input_norm = nn.BatchNorm2d(n_mels)
        widths = scaled_channels(channels, width)
        stem = max(8, widths[0] // 2)
        self.stem = nn.Sequential(*conv_bn_relu(1, stem), nn.AvgPool2d(2))
        blocks, in_ch = [], stem
        for out_ch in widths:
            blocks.append(double_conv_block(in_ch, out_ch))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_ch, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        # (B, 1, M, T): batch-norm each mel band over the batch and time.
        x = self.input_norm(features.transpose(1, 2)).transpose(1, 2)
        x = self.blocks(self.stem(x))  # (B, C, F', T')
        x = x.mean(dim=2)  # over frequency
        pooled = x.mean(dim=2) + x.amax(dim=2)  # over time
        return self.classifier(self.dropout(pooled))


@register_model(
    "melcnn",
    description="log-mel CNN (PANNs-style, mean+max time pooling), our own",
    default_clip_seconds=3.0,
    frontend="logmel",
    recommended=True,
    recipes={"default": MODERN_RECIPE},
)
def melcnn(*, num_classes: int, **args: object) -> MelCNN:
    """serenesense's log-mel CNN; ``width`` scales it."""
    return MelCNN(num_classes=num_classes, **args)  # type: ignore[arg-type]
