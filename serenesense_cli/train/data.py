"""Training data from a prepared set: crops, padding, and a resumable sampler.

Randomness is a pure function of (seed, epoch, clip): crops come from a
per-clip generator and the shuffle order from a per-epoch generator. So an
interrupted run resumes exactly, DataLoader workers need no seeding, and
``torchrun`` ranks see disjoint slices of one global order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from serenesense_cli.data.cache import PreparedSet
from serenesense_cli.train.config import CROPS, VAL_WINDOWS, PretrainConfig, TrainConfig
from serenesense_cli.train.distributed import DistContext, local_batch_size


def fit_length(wave: np.ndarray, length: int, *, start: int = 0) -> np.ndarray:
    """Crop ``wave[start:start+length]``, zero-padding on the right when short."""
    piece = wave[start : start + length]
    if piece.shape[0] < length:
        piece = np.pad(piece, (0, length - piece.shape[0]))
    return np.ascontiguousarray(piece, dtype=np.float32)


def center_start(n_samples: int, length: int) -> int:
    """Start of a centred window (0 when the clip is shorter than the window)."""
    return max(0, (n_samples - length) // 2)


ENERGY_FRAME = 1600
"""Frame of the crop energy profile: 0.1 s at 16 kHz."""

ENERGY_KEEP = 0.5
"""A candidate window qualifies when it holds at least this share of the best one's energy."""


def energetic_start(
    wave: np.ndarray,
    length: int,
    rng: np.random.Generator,
    *,
    frame: int = ENERGY_FRAME,
    keep: float = ENERGY_KEEP,
) -> int:
    """Start of a random training window that holds the clip's sound.

    Why: labels describe the sound in a clip, but long clips are mostly
    silence or background (a 20 s "gunshot" clip with one shot); a uniform
    random crop of it often holds no gunshot at all, so the label is noise.
    Candidate windows start on a ``frame`` grid; each one's energy is the sum
    of the frame energies it covers; one is drawn uniformly among those with at
    least ``keep`` times the best window's energy, then shifted by a random
    part of a frame. A stationary sound (an engine) qualifies everywhere, so
    it is cropped uniformly; a single shot is kept, at a random place in the
    window.
    """
    slack = wave.shape[0] - length
    if slack <= 0:
        return 0
    n_frames = wave.shape[0] // frame
    win_frames = length // frame
    if n_frames <= win_frames or win_frames == 0:
        return int(rng.integers(0, slack + 1))
    power = np.square(wave[: n_frames * frame].astype(np.float64)).reshape(n_frames, frame)
    cumulative = np.concatenate([[0.0], np.cumsum(power.sum(axis=1))])
    window_energy = cumulative[win_frames:] - cumulative[:-win_frames]
    candidates = np.flatnonzero(window_energy >= keep * window_energy.max())
    start = int(candidates[rng.integers(0, candidates.size)]) * frame
    return min(slack, start + int(rng.integers(0, frame)))


GAIN_DB = 6.0
"""Waveform augmentation: random gain within +-GAIN_DB dB."""

TILT = 0.4
"""Waveform augmentation: first-order spectral tilt ``y[t] = x[t] + c x[t-1]``, ``|c| <= TILT``."""


def _rms(wave: np.ndarray) -> float:
    """Root mean square of a window, summed in float64."""
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))


def augment_waveform(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gain and spectral tilt: what another microphone, distance or channel does.

    Why: a small data set has few recording set-ups per class, and a model
    can learn a set-up's colour and level instead of the sound. The tilt
    (up to about +-7 dB between low and high frequencies) is renormalised to
    the window's RMS before the gain, so gain and colour vary independently.
    """
    rms = _rms(window)
    c = rng.uniform(-TILT, TILT)
    tilted = window.copy()
    tilted[1:] += np.float32(c) * window[:-1]
    new_rms = _rms(tilted)
    if new_rms > 0 and rms > 0:
        tilted *= np.float32(rms / new_rms)
    gain = np.float32(10.0 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20.0))
    return np.clip(tilted * gain, -1.0, 1.0).astype(np.float32)


MIX_BACK_DB = (-24.0, -12.0)
"""``--mix-back``: level of the mixed-in window relative to the main one (RMS, dB)."""


def mix_under(
    window: np.ndarray,
    other: np.ndarray,
    rng: np.random.Generator,
    *,
    level_db: tuple[float, float] = MIX_BACK_DB,
) -> np.ndarray:
    """``window`` with ``other`` added 12-24 dB below it (RMS); the label stays.

    Why: each class of a small data set comes from few recordings, so a model
    can learn what else is audible in them (rain, wind, a room) instead of the
    sound. Hearing other recordings faintly under every class teaches it that
    such things do not change the label. Silent windows are returned as they are.
    """
    rms = _rms(window)
    other_rms = _rms(other)
    if rms <= 0 or other_rms <= 0:
        return window
    gain = rms / other_rms * 10.0 ** (rng.uniform(*level_db) / 20.0)
    return np.clip(window + np.float32(gain) * other, -1.0, 1.0).astype(np.float32)


class ClipDataset(Dataset):
    """Fixed-length windows of prepared clips with their label index.

    ``train=True``: a random crop of the model's window from each clip, drawn
    where the sound is (``crop="energy"``, :func:`energetic_start`) or
    uniformly (``crop="random"``, the reference recipe); shorter clips are
    zero-padded. ``train=False``: the centred window. ``wave_augment``
    (training only): :func:`augment_waveform` on each window.
    """

    def __init__(
        self,
        prepared: PreparedSet,
        indices: Sequence[int],
        *,
        clip_samples: int,
        train: bool,
        seed: int = 0,
        crop: str = "energy",
        wave_augment: bool = False,
        mix_back: float = 0.0,
    ) -> None:
        self.wave_augment = wave_augment
        self.mix_back = float(mix_back)
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, not {crop!r}")
        self.crop = crop
        self.prepared = prepared
        self.indices = list(indices)
        self.clip_samples = int(clip_samples)
        self.train = train
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Crops change every epoch (and are reproducible per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def labels(self) -> list[int]:
        """Label index of every item, in order."""
        return [self.prepared.records[i].label_index for i in self.indices]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        index = self.indices[item]
        window = self._window(index, np.random.default_rng([self.seed, self.epoch, index]))
        if self.train and self.mix_back > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index, 2])
            if rng.random() < self.mix_back:
                other = self.indices[int(rng.integers(0, len(self.indices)))]
                window = mix_under(window, self._window(other, rng), rng)
        if self.train and self.wave_augment:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            window = augment_waveform(window, rng)
        return torch.from_numpy(window), self.prepared.records[index].label_index

    def _window(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Clip ``index`` cut to the model's window (a training crop or the centre)."""
        wave = self.prepared.waveform(index)
        slack = wave.shape[0] - self.clip_samples
        if self.train and slack > 0:
            if self.crop == "energy":
                start = energetic_start(wave, self.clip_samples, rng)
            else:
                start = int(rng.integers(0, slack + 1))
        else:
            start = center_start(wave.shape[0], self.clip_samples)
        return fit_length(wave, self.clip_samples, start=start)


class ValidationWindows(Dataset):
    """Validation windows with the position of the clip they come from.

    ``windows="all"`` scores every window of each clip with the same policy as
    ``serenesense evaluate`` (half-window hop, tail window aligned to the end),
    so the checkpoint is chosen on the figure users will see;
    ``windows="center"`` scores one centred window per clip (the reference).
    Items are ``(window, label, clip position)``.
    """

    def __init__(
        self,
        prepared: PreparedSet,
        indices: Sequence[int],
        *,
        clip_samples: int,
        windows: str = "all",
    ) -> None:
        from serenesense_cli.evaluate.windows import hop_samples, window_starts

        if windows not in VAL_WINDOWS:
            raise ValueError(f"windows must be one of {', '.join(VAL_WINDOWS)}")
        self.prepared = prepared
        self.indices = list(indices)
        self.clip_samples = int(clip_samples)
        hop = hop_samples(None, prepared.sample_rate, self.clip_samples)  # evaluate's default
        self.items: list[tuple[int, int]] = []
        for position, index in enumerate(self.indices):
            n = self.prepared.records[index].frames
            if windows == "center":
                starts = [center_start(n, self.clip_samples)]
            else:
                starts = window_starts(n, self.clip_samples, hop)
            self.items.extend((position, start) for start in starts)

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> list[int]:
        """Label index of every clip (not window), in order."""
        return [self.prepared.records[i].label_index for i in self.indices]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int, int]:
        position, start = self.items[item]
        index = self.indices[position]
        window = fit_length(self.prepared.waveform(index), self.clip_samples, start=start)
        return torch.from_numpy(window), self.prepared.records[index].label_index, position


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order, sharded across ranks, skippable for resume.

    With ``weights`` (balanced sampling) each epoch draws ``size`` items with
    replacement, item ``i`` with probability proportional to ``weights[i]``.
    Rank ``r`` of ``world`` takes positions ``r, r+world, ...`` of one global
    permutation (padded to a multiple of ``world``), so with a per-rank batch
    of ``B/world`` the union of the ranks' k-th batches is exactly the k-th
    global batch of a single-process run.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world: int = 1,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and len(self.weights) != size:
            raise ValueError("one sampling weight per item is needed")
        self.size = int(size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = int(rank)
        self.world = int(world)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        """Select the epoch's order; ``skip`` drops this rank's first items (resume)."""
        self.epoch = int(epoch)
        self.skip = int(skip)

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            # Balanced: draw with replacement, each item by its weight (1 / class size).
            order = torch.multinomial(
                self.weights, self.size, replacement=True, generator=generator
            ).tolist()
        elif self.shuffle:
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = -(-self.size // self.world) * self.world
        order += order[: padded - self.size]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        yield from self._order()[self.skip :]

    def __len__(self) -> int:
        return max(0, -(-self.size // self.world) - self.skip)


def balanced_weights(labels: Sequence[int]) -> list[float]:
    """Per-item sampling weights ``1 / n_c``: every class is drawn equally often."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return [1.0 / counts[label] for label in labels]


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (C * n_c)`` (absent classes get weight 0)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    weights = np.zeros(num_classes, dtype=np.float32)
    present = counts > 0
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.from_numpy(weights)


@dataclass
class EpochData:
    """A run's training data as the shared loop (``train/loop.py``) consumes it."""

    train_set: Any
    """Has ``set_epoch(epoch)``: random windows are seeded per epoch."""
    loader: DataLoader
    sampler: EpochSampler
    local_batch: int
    """This process's share of the global batch."""
    steps_per_epoch: int
    loader_args: dict[str, Any]
    """Worker and pinning options, for the task's validation loader too."""


def epoch_data(
    train_set: Any, config: TrainConfig | PretrainConfig, context: DistContext
) -> EpochData:
    """Split the global batch over the processes and build the training loader.

    The loader has its own generator: creating a loader iterator must not draw
    from the global RNG, or a resumed run would see different dropout/augmentation draws.
    """
    local_batch = local_batch_size(config.batch_size, context)
    loader_args = {"num_workers": config.workers, "pin_memory": context.device.type == "cuda"}
    weights = None
    if getattr(config, "balanced", False):
        weights = balanced_weights(train_set.labels())
    sampler = EpochSampler(
        len(train_set), seed=config.seed, rank=context.rank, world=context.world, weights=weights
    )
    loader = DataLoader(
        train_set,
        batch_size=local_batch,
        sampler=sampler,
        generator=torch.Generator().manual_seed(config.seed),
        **loader_args,
    )
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    return EpochData(train_set, loader, sampler, local_batch, steps_per_epoch, loader_args)
