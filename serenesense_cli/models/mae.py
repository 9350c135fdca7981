"""Masked-autoencoder pretraining of the AudioMAE encoder (after Huang et al., 2022).

The encoder is exactly the one the ``audiomae`` classifier uses (a timm
``VisionTransformer`` from :func:`build_logmel_vit`), held under the same
attribute name ``encoder`` with the same ``frontend``, so the pretrained
weights load into a classifier key for key (``--init``). Pretraining adds a
light transformer decoder that sees the encoded visible patches plus mask
tokens and predicts the pixels of the masked log-mel patches; the loss is the
MSE on the masked patches only, against per-patch normalised targets
(``norm_pix_loss``).

Patch order follows the encoder's patch embedding: the input is
``(B, 1, n_mels, frames)`` so patch ``i`` sits at frequency row
``i // time_patches`` and time column ``i % time_patches``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from serenesense_cli.errors import ConfigError, ModelError
from serenesense_cli.models.audiomae import build_logmel_vit, check_vit_size, with_overrides

MAE_MODEL_NAME = "audiomae-mae"
"""Model name in the metadata of pretraining checkpoints (not a classifier)."""

DECODER_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"decoder_depth": 2, "decoder_dim": 128, "decoder_heads": 4},
    "small": {"decoder_depth": 4, "decoder_dim": 256, "decoder_heads": 8},
    "base": {"decoder_depth": 8, "decoder_dim": 512, "decoder_heads": 16},
}
"""Decoder per encoder size: base is the paper's 8 blocks x 512 x 16 heads;
tiny/small are scaled down so the decoder stays light next to the encoder."""

MASK_MODES = ("unstructured", "time", "frequency", "time_frequency")
"""``unstructured``: any patches; ``time``: whole time columns; ``frequency``:
whole mel rows; ``time_frequency``: the union of masked columns and rows
(AudioMAE's 2-D masking)."""

ENCODER_ARG_KEYS = (
    "size",
    "clip_seconds",
    "sample_rate",
    "n_mels",
    "target_frames",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
)
"""Arguments shared with the ``audiomae`` classifier: they fix the encoder and
its front end, so a fine-tuning run takes them from the pretraining run."""


def sincos_pos_embed_2d(dim: int, rows: int, cols: int, *, cls_token: bool = True) -> np.ndarray:
    """Fixed 2-D sine-cosine position embeddings ``(1 + rows*cols, dim)``.

    Half of the channels encode the row, half the column, each as sines and
    cosines of geometrically spaced frequencies (the MAE/AudioMAE choice);
    the CLS position is all zeros.
    """
    if dim % 4:
        raise ConfigError(f"position-embedding width {dim} must be a multiple of 4")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    row, col = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = positions.reshape(-1, 1) * omega.reshape(1, -1)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([encode(row), encode(col)], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return table.astype(np.float32)


@dataclass
class MAEOutput:
    """One masked-autoencoder pass.

    ``pred`` and ``target`` are ``(B, L, p*p)`` patch pixels (``target`` is
    normalised per patch when ``norm_pix_loss``); ``mask`` is ``(B, L)`` with
    1 for masked (hidden) patches and 0 for visible ones.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    features: torch.Tensor


class MaskedAutoencoder(nn.Module):
    """AudioMAE encoder + light decoder, trained to fill in masked log-mel patches."""

    model_name = MAE_MODEL_NAME

    def __init__(
        self,
        *,
        size: str = "base",
        clip_seconds: float = 10.0,
        sample_rate: int = 16000,
        n_mels: int = 128,
        target_frames: int = 128,
        patch_size: int = 16,
        drop_path: float = 0.0,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        decoder_depth: int | None = None,
        decoder_dim: int | None = None,
        decoder_heads: int | None = None,
        mask_ratio: float = 0.8,
        mask_mode: str = "unstructured",
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__()
        check_vit_size(size)
        if mask_mode not in MASK_MODES:
            raise ConfigError(
                f"mask_mode must be one of {', '.join(MASK_MODES)}, not {mask_mode!r}"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be within (0, 1), not {mask_ratio!r}")
        if n_mels % patch_size or target_frames % patch_size:
            raise ConfigError(
                f"n_mels ({n_mels}) and target_frames ({target_frames}) must be multiples "
                f"of patch_size ({patch_size})"
            )
        decoder = with_overrides(
            DECODER_SIZES[size],
            decoder_depth=decoder_depth,
            decoder_dim=decoder_dim,
            decoder_heads=decoder_heads,
        )
        self.sample_rate = int(sample_rate)
        self.clip_seconds = float(clip_seconds)
        self.patch_size = int(patch_size)
        self.grid = (n_mels // patch_size, target_frames // patch_size)  # (freq rows, time cols)
        self.mask_ratio = float(mask_ratio)
        self.mask_mode = mask_mode
        self.norm_pix_loss = bool(norm_pix_loss)
        self.encoder_args: dict[str, Any] = with_overrides(
            {
                "size": size,
                "clip_seconds": float(clip_seconds),
                "sample_rate": int(sample_rate),
                "n_mels": int(n_mels),
                "target_frames": int(target_frames),
                "patch_size": int(patch_size),
            },
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
        )
        self.model_args: dict[str, Any] = {
            **self.encoder_args,
            "drop_path": float(drop_path),
            **decoder,
            "mask_ratio": self.mask_ratio,
            "mask_mode": mask_mode,
            "norm_pix_loss": self.norm_pix_loss,
        }

        # built from the recorded encoder arguments: what ``--init`` rebuilds
        self.frontend, self.encoder = build_logmel_vit(drop_path=drop_path, **self.encoder_args)
        width = int(self.encoder.embed_dim)
        num_patches = self.grid[0] * self.grid[1]
        dec_dim = decoder["decoder_dim"]
        if dec_dim % decoder["decoder_heads"]:
            raise ConfigError(
                f"decoder_dim {dec_dim} is not divisible by decoder_heads "
                f"{decoder['decoder_heads']}"
            )
        from timm.models.vision_transformer import Block

        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_embed = nn.Linear(width, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer(
            "decoder_pos_embed",
            torch.from_numpy(sincos_pos_embed_2d(dec_dim, *self.grid)).unsqueeze(0),
        )
        heads = decoder["decoder_heads"]
        self.decoder_blocks = nn.ModuleList(
            Block(dec_dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder["decoder_depth"])
        )
        self.decoder_norm = norm_layer(dec_dim)
        self.decoder_pred = nn.Linear(dec_dim, patch_size * patch_size)
        self._init_weights(width, num_patches)

    def _init_weights(self, width: int, num_patches: int) -> None:
        """MAE initialisation: sin-cos positions (still trainable in the encoder,
        so fine-tuning keeps the classifier's learnable table), Xavier linears."""
        with torch.no_grad():
            table = torch.from_numpy(sincos_pos_embed_2d(width, *self.grid))
            self.encoder.pos_embed.copy_(table.unsqueeze(0))
            weight = self.encoder.patch_embed.proj.weight
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            nn.init.normal_(self.encoder.cls_token, std=0.02)
            nn.init.normal_(self.mask_token, std=0.02)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_pred):
            module.apply(_xavier_linear)

    # -- bookkeeping shared with classifiers (artefact metadata) -------------

    @property
    def clip_samples(self) -> int:
        """Window length in samples of one example."""
        return round(self.clip_seconds * self.sample_rate)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def config(self) -> dict[str, Any]:
        """Name and arguments, plus the encoder's (what ``--init`` rebuilds)."""
        return {
            "name": MAE_MODEL_NAME,
            "args": dict(self.model_args),
            "encoder": {"name": "audiomae", "args": dict(self.encoder_args)},
        }

    def set_normalization(self, mean: float, std: float) -> None:
        """Data-set log-mel statistics, saved with the weights."""
        self.frontend.set_normalization(mean, std)

    # -- patches and masks ---------------------------------------------------

    def patchify(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, T)`` -> ``(B, L, p*p)`` in the patch embedding's order."""
        p = self.patch_size
        rows, cols = self.grid
        x = features.reshape(features.shape[0], rows, p, cols, p)
        return x.permute(0, 1, 3, 2, 4).reshape(features.shape[0], rows * cols, p * p)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`."""
        p = self.patch_size
        rows, cols = self.grid
        x = patches.reshape(patches.shape[0], rows, cols, p, p).permute(0, 1, 3, 2, 4)
        return x.reshape(patches.shape[0], 1, rows * p, cols * p)

    def masked_count(self) -> int:
        """Patches hidden per example: fixed, so every example keeps as many."""
        rows, cols = self.grid
        ratio = self.mask_ratio
        if self.mask_mode == "unstructured":
            return _hidden(rows * cols, ratio)
        if self.mask_mode == "time":
            return rows * _hidden(cols, ratio)
        if self.mask_mode == "frequency":
            return cols * _hidden(rows, ratio)
        # union of masked rows and columns: each axis hides 1 - sqrt(1 - ratio)
        axis_ratio = 1.0 - (1.0 - ratio) ** 0.5
        kept = (rows - _hidden(rows, axis_ratio)) * (cols - _hidden(cols, axis_ratio))
        return rows * cols - kept

    def random_mask(
        self, batch: int, *, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A ``(B, L)`` float mask (1 = hidden) with exactly :meth:`masked_count` ones.

        Noise is drawn on the CPU (from ``generator`` or the global RNG), so
        validation and figures can use a fixed mask on any device.
        """
        rows, cols = self.grid

        def pick(n: int, axis_len: int, hide: int) -> torch.Tensor:
            noise = torch.rand(n, axis_len, generator=generator)
            order = noise.argsort(dim=1)
            hidden = torch.zeros(n, axis_len)
            hidden.scatter_(1, order[:, :hide], 1.0)
            return hidden

        ratio = self.mask_ratio
        if self.mask_mode == "unstructured":
            mask = pick(batch, rows * cols, _hidden(rows * cols, ratio))
        else:
            axis_ratio = ratio if self.mask_mode != "time_frequency" else 1 - (1 - ratio) ** 0.5
            hide_rows = torch.zeros(batch, rows)
            hide_cols = torch.zeros(batch, cols)
            if self.mask_mode in ("frequency", "time_frequency"):
                hide_rows = pick(batch, rows, _hidden(rows, axis_ratio))
            if self.mask_mode in ("time", "time_frequency"):
                hide_cols = pick(batch, cols, _hidden(cols, axis_ratio))
            grid = 1.0 - (1.0 - hide_rows[:, :, None]) * (1.0 - hide_cols[:, None, :])
            mask = grid.reshape(batch, rows * cols)
        return mask.to(device)

    # -- forward ---------------------------------------------------------------

    def forward_encoder(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode the visible patches only (plus CLS): ``(B, 1 + kept, D)``."""
        enc = self.encoder
        tokens = enc.patch_embed(features) + enc.pos_embed[:, 1:, :]
        keep = (mask == 0).nonzero(as_tuple=False)[:, 1].reshape(mask.shape[0], -1)
        tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        cls = (enc.cls_token + enc.pos_embed[:, :1, :]).expand(tokens.shape[0], -1, -1)
        x = enc.pos_drop(torch.cat([cls, tokens], dim=1))
        x = enc.norm_pre(x)
        for block in enc.blocks:
            x = block(x)
        return enc.norm(x)

    def forward_decoder(self, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scatter the encoded visible tokens back among mask tokens; predict pixels."""
        x = self.decoder_embed(encoded)
        batch, length = mask.shape
        full = self.mask_token.to(x.dtype).expand(batch, length, -1).clone()
        visible = mask == 0
        full[visible] = x[:, 1:, :].reshape(-1, x.shape[-1])
        x = torch.cat([x[:, :1, :], full], dim=1) + self.decoder_pos_embed.to(x.dtype)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def target_patches(self, features: torch.Tensor) -> torch.Tensor:
        """What the decoder must predict: patches, normalised per patch if asked."""
        target = self.patchify(features)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    @staticmethod
    def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the hidden patches only."""
        per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward_features(
        self,
        features: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MAEOutput:
        """Mask, encode, decode and score front-end features ``(B, 1, F, T)``."""
        if mask is None:
            mask = self.random_mask(features.shape[0], device=features.device, generator=generator)
        encoded = self.forward_encoder(features, mask)
        pred = self.forward_decoder(encoded, mask)
        target = self.target_patches(features.float())
        return MAEOutput(
            loss=self.masked_loss(pred, target, mask),
            pred=pred,
            target=target,
            mask=mask,
            features=features,
        )

    def forward(
        self,
        waveform: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MAEOutput:
        """Waveform batch ``(B, samples)`` -> loss and predictions."""
        return self.forward_features(self.frontend(waveform), mask=mask, generator=generator)

    @torch.no_grad()
    def reconstruct(self, output: MAEOutput) -> torch.Tensor:
        """Features with the hidden patches replaced by the predictions,
        un-normalised with each true patch's mean/std (for figures)."""
        patches = self.patchify(output.features.float())
        pred = output.pred.float()
        if self.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred * std + mean
        mask = output.mask[..., None]
        return self.unpatchify(patches * (1 - mask) + pred * mask)


def _hidden(count: int, ratio: float) -> int:
    """Hidden items out of ``count``: ``round(count * ratio)``, leaving at least one visible."""
    return int(min(count - 1, max(1, round(count * ratio))))


def _xavier_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def create_mae(**args: Any) -> MaskedAutoencoder:
    """Build a masked autoencoder; bad arguments become a ModelError."""
    try:
        return MaskedAutoencoder(**args)
    except TypeError as error:
        raise ModelError(f"bad arguments for model {MAE_MODEL_NAME!r}: {error}") from error


def encoder_args_from_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Classifier arguments that rebuild the encoder and front end of an artefact."""
    spec = meta.get("model", {})
    if spec.get("name") == MAE_MODEL_NAME:
        args = dict(spec.get("encoder", {}).get("args") or spec.get("args", {}))
    else:
        args = dict(spec.get("args", {}))
    return {k: v for k, v in args.items() if k in ENCODER_ARG_KEYS}


__all__ = [
    "DECODER_SIZES",
    "ENCODER_ARG_KEYS",
    "MAE_MODEL_NAME",
    "MASK_MODES",
    "MAEOutput",
    "MaskedAutoencoder",
    "create_mae",
    "encoder_args_from_metadata",
    "sincos_pos_embed_2d",
]
