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
from serenesense_cli.train.config import PretrainConfig, TrainConfig
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


class ClipDataset(Dataset):
    """Fixed-length windows of prepared clips with their label index.

    ``train=True``: a random crop of the model's window from each clip (shorter
    clips are zero-padded); ``train=False``: the centred window.
    """

    def __init__(
        self,
        prepared: PreparedSet,
        indices: Sequence[int],
        *,
        clip_samples: int,
        train: bool,
        seed: int = 0,
    ) -> None:
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
        wave = self.prepared.waveform(index)
        slack = wave.shape[0] - self.clip_samples
        if self.train and slack > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, slack + 1))
        else:
            start = center_start(wave.shape[0], self.clip_samples)
        window = fit_length(wave, self.clip_samples, start=start)
        return torch.from_numpy(window), self.prepared.records[index].label_index


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order, sharded across ranks, skippable for resume.

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
    ) -> None:
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
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
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
    sampler = EpochSampler(len(train_set), seed=config.seed, rank=context.rank, world=context.world)
    loader = DataLoader(
        train_set,
        batch_size=local_batch,
        sampler=sampler,
        generator=torch.Generator().manual_seed(config.seed),
        **loader_args,
    )
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    return EpochData(train_set, loader, sampler, local_batch, steps_per_epoch, loader_args)
