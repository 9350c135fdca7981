"""Audio front ends as ``torch.nn.Module``s: waveform in, model input out.

Why modules: the front end lives inside each model's ``forward``, so an
exported ONNX graph takes raw 16 kHz audio and training and serving cannot
drift apart (the reference system fed the Pi a different preprocessing than
training). Every module here

* takes a float32 batch ``(B, T)`` at 16 kHz and fits it to the clip length
  with one policy: crop from the start, or right-pad with zeros (random
  training crops happen before, in the data pipeline);
* keeps its constants (window, mel filterbank, DCT matrix, normalisation) as
  buffers, so ``.to(device)`` moves everything and ``state_dict`` saves it;
* exports to ONNX with a dynamic batch axis through the dynamo exporter
  (``torch.onnx.export(..., dynamo=True)``; the TorchScript exporter cannot
  export the complex STFT);
* describes itself with ``config()`` / ``from_config()`` for model metadata.

Importing this module imports torch; commands import it lazily.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from serenesense_cli.errors import ConfigError

__all__ = [
    "FRONTENDS",
    "LogMel",
    "MFCCStack",
    "SpecAugment",
    "compute_normalization_stats",
    "fit_to_length",
    "frontend_from_config",
]


def fit_to_length(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Crop ``(B, T)`` to its first ``length`` samples or right-pad it with zeros.

    A length known when the graph is built (eager, or an export with a fixed
    input length, as ``serenesense export`` writes) that is already right
    costs nothing; otherwise one constant ``Pad`` by ``length - T`` (a negative
    pad crops), so a graph with a dynamic length has no branch on ``T``.
    """
    if waveform.dim() != 2:
        raise ValueError(
            f"expected a waveform batch of shape (batch, samples), got {tuple(waveform.shape)}"
        )
    waveform = waveform.to(torch.float32)
    samples = waveform.shape[1]
    if isinstance(samples, int) and samples == length:  # not a symbolic (dynamic) length
        return waveform
    return F.pad(waveform, (0, length - samples))


def width3_delta(x: torch.Tensor) -> torch.Tensor:
    """Delta over the last axis, ``(x[t+1] - x[t-1]) / 2`` with edge replication.

    Equals ``torchaudio.functional.compute_deltas(x, win_length=3)``, written
    with slices because ``compute_deltas`` builds a grouped convolution whose
    group count is the batch size, which ONNX cannot keep dynamic.
    """
    padded = torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)
    return (padded[..., 2:] - padded[..., :-2]) * 0.5


def _check_positive(**options: float) -> None:
    """Refuse the first option (in the order given) that is not positive."""
    for name, value in options.items():
        if not value > 0:
            raise ConfigError(f"front-end option {name} must be positive, got {value!r}")


def _check_band(sample_rate: int, f_min: float, f_max: float) -> None:
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ConfigError(
            f"front-end band f_min={f_min} .. f_max={f_max} Hz must satisfy "
            f"0 <= f_min < f_max <= sample_rate/2 = {sample_rate / 2}"
        )


class _ConfigMixin:
    """``config()`` / ``from_config()`` for modules whose arguments are all keywords."""

    _config_keys: tuple[str, ...] = ()

    def config(self) -> dict[str, Any]:
        """All constructor arguments as a JSON-able dict (saved in model metadata)."""
        return {key: _plain(getattr(self, f"_cfg_{key}")) for key in self._config_keys}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """Rebuild the module from :meth:`config` output; unknown keys are an error."""
        unknown = sorted(set(config) - set(cls._config_keys))
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, cls._config_keys, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise ConfigError(
                f"unknown {cls.__name__} option {key!r} (known: {', '.join(cls._config_keys)})",
                hint=hint,
            )
        return cls(**config)

    def _store_config(self, values: dict[str, Any]) -> None:
        for key in self._config_keys:
            setattr(self, f"_cfg_{key}", values[key])


def _plain(value: Any) -> Any:
    """Python scalars only, so ``json.dumps(config())`` always works."""
    if isinstance(value, torch.Tensor):
        return float(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


class _MelFrontend(_ConfigMixin, nn.Module):
    """What LogMel and MFCCStack share: the natural log of an HTK power mel
    spectrogram (periodic Hann window, no filter normalisation) of the clip
    fitted to its length. They differ in framing (centred or not) and in what
    follows the log, so that is all each of them writes.
    """

    def __init__(self, config: dict[str, Any], *, clip_samples: int, center: bool) -> None:
        """``config``: every constructor argument, typed, for :meth:`config`."""
        super().__init__()
        self._store_config(config)
        self.clip_samples = clip_samples
        self.log_floor: float = config["log_floor"]
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=config["sample_rate"],
            n_fft=config["n_fft"],
            hop_length=config["hop_length"],
            f_min=config["f_min"],
            f_max=config["f_max"],
            n_mels=config["n_mels"],
            power=2.0,
            center=center,
            pad_mode="reflect",
            mel_scale="htk",
            norm=None,
        )

        self.export_mel_power: nn.Module | None = None
        """Set by :meth:`use_export_form`: the mel power as matrix products."""

    def use_export_form(self, frames: list[int] | None = None) -> None:
        """Switch to the form exported graphs run: the STFT as small matrix products.

        onnxruntime's ``STFT`` op is slow on the CPU;
        :class:`~serenesense_cli.audio.fast_stft.WindowedMelPower` computes
        the same mel power spectrum (float32 rounding apart: the parity tests
        bound it) with the runtime's fastest kernels, and only at ``frames``
        (default: all). Training and torch inference keep torchaudio's FFT,
        which is cheaper in torch.
        """
        from serenesense_cli.audio.fast_stft import WindowedMelPower

        spectrogram = self.melspec.spectrogram
        self.export_mel_power = WindowedMelPower(
            spectrogram.window,
            self.melspec.mel_scale.fb,
            hop_length=int(spectrogram.hop_length),
            length=self.clip_samples,
            center=bool(spectrogram.center),
            frames=frames,
        )

    def _mel_power(self, x: torch.Tensor) -> torch.Tensor:
        """Power mel spectrogram ``(B, n_mels, frames)`` of fitted clips ``(B, T)``."""
        if self.export_mel_power is None:
            return self.melspec(x)
        return self.export_mel_power(x)

    def _log_melspec(self, waveform: torch.Tensor) -> torch.Tensor:
        """``log(mel + log_floor)`` of the fitted clip: ``(B, n_mels, frames)``."""
        x = fit_to_length(waveform, self.clip_samples)
        return torch.log(self._mel_power(x) + self.log_floor)


LEVEL_MODES = ("keep", "window")
"""What :class:`LogMel` does with a window's overall level: ``keep`` it, or
subtract the window's mean log-mel (``window``), which makes the features the
same at any recording gain while keeping the spectral shape and the window's
own dynamics."""


ZSCORE_MODES = ("clip", "dataset")
"""How :class:`MFCCStack` z-scores each coefficient: over the frames of the
clip itself (``clip``, the reference system's way: level and spectral
envelope are erased), or with the training set's statistics after removing
the window's level (``dataset``: the envelope is kept, the gain is not)."""


class LogMel(_MelFrontend):
    """The AudioMAE front end: 10 s -> normalised log-mel ``(B, 1, 128, 128)``.

    Power mel spectrogram (periodic Hann window, centred frames with reflect
    padding, HTK mel scale, no filter normalisation), natural log of
    ``mel + log_floor`` (the Kaldi/AudioSet convention, so published AudioMAE
    statistics stay comparable), bilinear resize along time to
    ``target_frames`` (``None`` keeps the native ~1001 frames), then
    ``(x - mean) / (2 * std)`` as in AST and AudioMAE, which puts typical
    inputs near [-1, 1]. ``mean`` and ``std`` are buffers: set them from the
    training set with :func:`compute_normalization_stats` and
    :meth:`set_normalization`; they are saved with the weights.

    Every clip is fitted to ``clip_seconds`` before the STFT, so the time axis
    always means the same thing (the reference squashed variable-length clips
    to 128 frames, so its time scale changed from clip to clip).
    """

    _config_keys = (
        "sample_rate",
        "n_fft",
        "hop_length",
        "n_mels",
        "f_min",
        "f_max",
        "clip_seconds",
        "target_frames",
        "log_floor",
        "level",
        "mean",
        "std",
    )

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        *,
        sample_rate: int = 16_000,
        n_fft: int = 1024,
        hop_length: int = 160,
        n_mels: int = 128,
        f_min: float = 50.0,
        f_max: float = 8000.0,
        clip_seconds: float = 10.0,
        target_frames: int | None = 128,
        log_floor: float = 1e-6,
        level: str = "keep",
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        if level not in LEVEL_MODES:
            raise ConfigError(
                f"log-mel level must be one of {', '.join(LEVEL_MODES)}, got {level!r}"
            )
        _check_positive(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            clip_seconds=clip_seconds,
            log_floor=log_floor,
            std=std,
        )
        if target_frames is not None:
            _check_positive(target_frames=target_frames)
        _check_band(sample_rate, f_min, f_max)
        super().__init__(
            {
                "sample_rate": int(sample_rate),
                "n_fft": int(n_fft),
                "hop_length": int(hop_length),
                "n_mels": int(n_mels),
                "f_min": float(f_min),
                "f_max": float(f_max),
                "clip_seconds": float(clip_seconds),
                "target_frames": None if target_frames is None else int(target_frames),
                "log_floor": float(log_floor),
                "level": level,
                "mean": None,  # read from the buffers in config()
                "std": None,
            },
            clip_samples=round(clip_seconds * sample_rate),
            center=True,
        )
        self.n_mels = int(n_mels)
        self.n_frames = 1 + self.clip_samples // int(hop_length)  # centred STFT
        self.target_frames = None if target_frames is None else int(target_frames)
        self.level = level
        self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(float(std), dtype=torch.float32))
        # The export form's time resize from the frames it reads (use_export_form).
        for name in ("resize_lower", "resize_upper", "resize_weight"):
            self.register_buffer(name, None, persistent=False)

    def config(self) -> dict[str, Any]:
        """All constructor arguments, ``mean``/``std`` as currently set."""
        config = super().config()
        config["mean"] = float(self.mean.item())
        config["std"] = float(self.std.item())
        return config

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(channels, mel bins, frames)`` of one example."""
        frames = self.n_frames if self.target_frames is None else self.target_frames
        return (1, self.n_mels, frames)

    def set_normalization(self, mean: float, std: float) -> None:
        """Store data-set statistics (from :func:`compute_normalization_stats`)."""
        _check_positive(std=std)
        with torch.no_grad():
            self.mean.fill_(float(mean))
            self.std.fill_(float(std))

    def use_export_form(self, frames: list[int] | None = None) -> None:
        """As the base class, computing only the frames the time resize reads.

        The bilinear resize (``align_corners=False``) of ``n_frames`` to
        ``target_frames`` reads two frames per output frame; the export form
        computes just those and blends them with the same weights, which is
        the same resize (1001 -> 128 frames: 256 computed).
        """
        if frames is not None or self.target_frames in (None, self.n_frames):
            super().use_export_form(frames)
            return
        scale = self.n_frames / self.target_frames
        source = (torch.arange(self.target_frames, dtype=torch.float64) + 0.5) * scale - 0.5
        source = source.clamp_min(0.0)
        lower = source.floor().long()
        upper = torch.clamp(lower + 1, max=self.n_frames - 1)
        read = sorted(set(lower.tolist()) | set(upper.tolist()))
        position = {frame: i for i, frame in enumerate(read)}
        super().use_export_form(read)
        for name, value in (
            ("resize_lower", torch.tensor([position[int(f)] for f in lower])),
            ("resize_upper", torch.tensor([position[int(f)] for f in upper])),
            ("resize_weight", (source - lower).to(torch.float32)),
        ):
            self.register_buffer(name, value, persistent=False)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel ``(B, 1, n_mels, frames)``, already resized."""
        features = self._log_melspec(waveform).unsqueeze(1)
        if self.resize_weight is not None:  # export form of a time resize
            low = features.index_select(3, self.resize_lower)
            high = features.index_select(3, self.resize_upper)
            return low + (high - low) * self.resize_weight
        if self.target_frames is not None and self.target_frames != self.n_frames:
            features = F.interpolate(
                features,
                size=(self.n_mels, self.target_frames),
                mode="bilinear",
                align_corners=False,
            )
        return features

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` waveform -> ``(B, 1, n_mels, target_frames)`` model input."""
        features = self.log_mel(waveform)
        if self.level == "window":
            features = features - features.mean(dim=(2, 3), keepdim=True)
        return (features - self.mean) / (2.0 * self.std)


class MFCCStack(_MelFrontend):
    """The CNN/CRNN front end: MFCC, delta and delta-delta as 3 channels.

    40 MFCCs (DCT-II, orthonormal) of the natural-log power mel spectrum
    (64 HTK bands, periodic Hann window, frames *not* centred, so 3 s gives
    ``1 + (48000 - 1024) // 512 = 92`` frames and 4 s gives 124), each
    coefficient z-scored over time within the clip (``eps`` guards silent
    clips), then width-3 deltas of the z-scored coefficients and deltas of
    those deltas. Output ``(B, 3, n_mfcc, frames)``. Per-clip z-scoring makes
    the log base and any gain irrelevant, so no data-set statistics are needed.
    ``zscore="dataset"`` z-scores with running training-set statistics instead
    (after removing the window's gain from c0), which keeps the spectral
    envelope that per-clip z-scoring erases.
    """

    _config_keys = (
        "sample_rate",
        "n_fft",
        "hop_length",
        "n_mels",
        "n_mfcc",
        "f_min",
        "f_max",
        "clip_seconds",
        "log_floor",
        "eps",
        "zscore",
    )

    dct: torch.Tensor

    def __init__(
        self,
        *,
        sample_rate: int = 16_000,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 64,
        n_mfcc: int = 40,
        f_min: float = 0.0,
        f_max: float = 8000.0,
        clip_seconds: float = 3.0,
        log_floor: float = 1e-6,
        eps: float = 1e-5,
        zscore: str = "clip",
    ) -> None:
        if zscore not in ZSCORE_MODES:
            raise ConfigError(
                f"MFCC zscore must be one of {', '.join(ZSCORE_MODES)}, got {zscore!r}"
            )
        _check_positive(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            n_mfcc=n_mfcc,
            clip_seconds=clip_seconds,
            log_floor=log_floor,
            eps=eps,
        )
        _check_band(sample_rate, f_min, f_max)
        if n_mfcc > n_mels:
            raise ConfigError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels})")
        clip_samples = round(clip_seconds * sample_rate)
        if clip_samples < n_fft:
            raise ConfigError(
                f"clip_seconds={clip_seconds} is shorter than one FFT window ({n_fft} samples)"
            )
        super().__init__(
            {
                "sample_rate": int(sample_rate),
                "n_fft": int(n_fft),
                "hop_length": int(hop_length),
                "n_mels": int(n_mels),
                "n_mfcc": int(n_mfcc),
                "f_min": float(f_min),
                "f_max": float(f_max),
                "clip_seconds": float(clip_seconds),
                "log_floor": float(log_floor),
                "eps": float(eps),
                "zscore": zscore,
            },
            clip_samples=clip_samples,
            center=False,
        )
        # Per-coefficient statistics of the training windows (buffers, no
        # parameters, so the model's parameter count does not change). The
        # front end is fixed, so a plain average over every batch seen
        # (momentum=None) is the data set's statistic, also after a few steps.
        self.data_norm = (
            nn.BatchNorm1d(int(n_mfcc), affine=False, eps=float(eps), momentum=None)
            if zscore == "dataset"
            else None
        )
        self.n_mfcc = int(n_mfcc)
        self.n_frames = 1 + (self.clip_samples - int(n_fft)) // int(hop_length)
        self.eps = float(eps)
        # (n_mels, n_mfcc); right-multiplied. torchaudio.transforms.MFCC is not
        # used: its dB conversion clamps to 80 dB below the maximum of the
        # whole *batch*, so one clip's features would depend on its neighbours.
        dct = torchaudio.functional.create_dct(int(n_mfcc), int(n_mels), norm="ortho")
        self.register_buffer("dct", dct.to(torch.float32))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(channels, coefficients, frames)`` of one example."""
        return (3, self.n_mfcc, self.n_frames)

    def mfcc(self, waveform: torch.Tensor) -> torch.Tensor:
        """Raw (not z-scored) MFCCs ``(B, n_mfcc, frames)``."""
        log_mel = self._log_melspec(waveform)  # (B, n_mels, frames)
        return torch.matmul(log_mel.transpose(1, 2), self.dct).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` waveform -> ``(B, 3, n_mfcc, frames)``."""
        coeffs = self.mfcc(waveform)
        if self.data_norm is not None:
            return self._stack(self._dataset_zscore(coeffs, self.data_norm))
        # Shift by the first frame before averaging: a constant coefficient (a
        # silent or padded clip) then centres to exactly 0 instead of float32
        # rounding noise that eps alone would blow up to O(1) values.
        shifted = coeffs - coeffs[..., :1]
        centred = shifted - shifted.mean(dim=-1, keepdim=True)
        std = torch.sqrt((centred * centred).mean(dim=-1, keepdim=True))
        return self._stack(centred / (std + self.eps))

    @staticmethod
    def _dataset_zscore(coeffs: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """The window's level removed from c0, then each coefficient z-scored
        with the training set's statistics: spectral envelope kept, gain gone.

        With the orthonormal DCT a constant log-mel offset only moves c0, so
        subtracting c0's mean over the window's frames removes the recording
        gain exactly and leaves every other coefficient as it is.
        """
        level = coeffs[:, :1].mean(dim=-1, keepdim=True)
        return norm(torch.cat([coeffs[:, :1] - level, coeffs[:, 1:]], dim=1))

    @staticmethod
    def _stack(z: torch.Tensor) -> torch.Tensor:
        """Coefficients, deltas and delta-deltas as 3 channels."""
        delta = width3_delta(z)
        return torch.stack([z, delta, width3_delta(delta)], dim=1)


class SpecAugment(_ConfigMixin, nn.Module):
    """Frequency and time masks on ``(B, C, F, T)``, only while training.

    Each example gets its own masks (widths uniform in ``[0, width)``), drawn
    by torchaudio's ``FrequencyMasking``/``TimeMasking`` with ``iid_masks``.
    All channels of one example share the masks: the masks are drawn on a
    ``(B, 1, F, 1)`` / ``(B, 1, 1, T)`` canvas and broadcast, because the
    delta channels of an MFCC stack describe the same time-frequency cells as
    the coefficients and masking them independently would leak what a mask
    hid. Masked cells get ``mask_value`` (0, the mean of normalised inputs).
    In eval mode (and so in ONNX export) this is the identity.
    """

    _config_keys = ("freq_masks", "freq_width", "time_masks", "time_width", "mask_value")

    def __init__(
        self,
        *,
        freq_masks: int = 2,
        freq_width: int = 15,
        time_masks: int = 2,
        time_width: int = 10,
        mask_value: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ):
            if value < 0:
                raise ConfigError(f"SpecAugment option {name} must be >= 0, got {value!r}")
        self._store_config(
            {
                "freq_masks": int(freq_masks),
                "freq_width": int(freq_width),
                "time_masks": int(time_masks),
                "time_width": int(time_width),
                "mask_value": float(mask_value),
            }
        )
        self.freq_masks = int(freq_masks)
        self.time_masks = int(time_masks)
        self.mask_value = float(mask_value)
        self.freq_masking = torchaudio.transforms.FrequencyMasking(int(freq_width), iid_masks=True)
        self.time_masking = torchaudio.transforms.TimeMasking(int(time_width), iid_masks=True)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Mask in training mode; return ``spec`` unchanged in eval mode."""
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return spec
        if spec.dim() != 4:
            raise ValueError(
                f"SpecAugment expects (batch, channels, freq, time), got {spec.dim()}-D input"
            )
        batch, _, n_freq, n_time = spec.shape
        keep_f = spec.new_ones(batch, 1, n_freq, 1)
        for _ in range(self.freq_masks):
            keep_f = self.freq_masking(keep_f)
        keep_t = spec.new_ones(batch, 1, 1, n_time)
        for _ in range(self.time_masks):
            keep_t = self.time_masking(keep_t)
        keep = (keep_f * keep_t) > 0.5
        return torch.where(keep, spec, torch.full_like(spec, self.mask_value))


FRONTENDS: dict[str, type[LogMel] | type[MFCCStack]] = {"logmel": LogMel, "mfcc": MFCCStack}
"""Front-end kinds as named in model metadata."""


def frontend_from_config(kind: str, config: dict[str, Any]) -> nn.Module:
    """Build the front end a model's metadata describes (``kind`` + ``config()``).

    ``kind`` is a key of :data:`FRONTENDS`; the class names ``LogMel`` and
    ``MFCCStack`` are accepted too (any case), as metadata may store those.
    """
    aliases = {name: name for name in FRONTENDS} | {
        cls.__name__.lower(): name for name, cls in FRONTENDS.items()
    }
    name = aliases.get(str(kind).lower())
    if name is None:
        raise ConfigError(
            f"unknown front-end kind {kind!r}", hint=f"use one of: {', '.join(FRONTENDS)}"
        )
    return FRONTENDS[name].from_config(dict(config))


def compute_normalization_stats(
    frontend: LogMel,
    waveforms: Iterable[torch.Tensor | np.ndarray],
    *,
    on_update: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """Mean and std of the un-normalised log-mel over a data set, streamed.

    ``waveforms`` yields batches ``(B, T)`` or single clips ``(T,)``; each is
    processed on the front end's device and folded into running float64
    moments (Chan et al.'s parallel update), so memory stays one batch.
    Statistics are over every value the network sees, including the padding
    of short clips, so they match what :meth:`LogMel.forward` normalises.
    ``on_update`` receives the number of clips done after each batch.
    """
    device = frontend.mean.device
    was_training = frontend.training
    frontend.eval()
    count = 0
    mean = 0.0
    m2 = 0.0
    clips = 0
    try:
        with torch.no_grad():
            for batch in waveforms:
                x = torch.as_tensor(batch, dtype=torch.float32, device=device)
                if x.dim() == 1:
                    x = x.unsqueeze(0)
                values = frontend.log_mel(x).to(torch.float64)
                n = values.numel()
                if n == 0:
                    continue
                b_mean = float(values.mean())
                b_m2 = float(((values - b_mean) ** 2).sum())
                total = count + n
                delta = b_mean - mean
                mean += delta * n / total
                m2 += b_m2 + delta * delta * count * n / total
                count = total
                clips += x.shape[0]
                if on_update is not None:
                    on_update(clips)
    finally:
        frontend.train(was_training)
    if count == 0:
        raise ValueError("no audio to compute normalisation statistics from")
    std = math.sqrt(m2 / count)
    return mean, std if std > 0 else 1.0
