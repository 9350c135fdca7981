"""Pieces the classifiers share, so each architecture file says only what is its own.

The reference CNN and CRNN stack the same conv blocks (the CRNN pools only
frequency, to keep time) and end in the same MLP head; every classifier maps
its SpecAugment arguments the same way. Building them here keeps the two
reference models' weights (names, shapes, initialisation order) in step.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from serenesense_cli.audio.features import SpecAugment

MFCC_CHANNELS = 3
"""Input channels of the MFCC front end: coefficients, deltas, delta-deltas."""


def spec_augment(
    freq_masks: int, freq_mask_width: int, time_masks: int, time_mask_width: int
) -> SpecAugment:
    """SpecAugment from the classifiers' argument names (``*_mask_width`` is its ``*_width``)."""
    return SpecAugment(
        freq_masks=freq_masks,
        freq_width=freq_mask_width,
        time_masks=time_masks,
        time_width=time_mask_width,
    )


def conv_block(
    in_channels: int, out_channels: int, *, pool: tuple[int, int], dropout: float
) -> nn.Sequential:
    """Conv 3x3 + BatchNorm + ReLU + MaxPool + Dropout (the reference block)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool),
        nn.Dropout(dropout),
    )


def conv_stack(
    channels: Sequence[int], dropouts: Sequence[float], *, pool: tuple[int, int]
) -> tuple[nn.Sequential, int]:
    """One :func:`conv_block` per entry of ``channels`` on the MFCC stack.

    Returns the blocks and the channels they output (those of the input when
    ``channels`` is empty); ``channels`` and ``dropouts`` must be as long.
    """
    blocks, in_ch = [], MFCC_CHANNELS
    for out_ch, p in zip(channels, dropouts, strict=True):
        blocks.append(conv_block(in_ch, out_ch, pool=pool, dropout=p))
        in_ch = out_ch
    return nn.Sequential(*blocks), in_ch


def mlp_head(in_features: int, hidden: int, dropout: float, num_classes: int) -> nn.Sequential:
    """The reference head: Linear, ReLU, Dropout, Linear to the class logits."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
