"""Training crops where the sound is, every-window validation, balanced sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serenesense_cli.train.data import (
    ClipDataset,
    EpochSampler,
    ValidationWindows,
    balanced_weights,
    energetic_start,
)

SR = 16_000


def _clip_with_burst(seconds: float, burst_at: float, burst_len: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(1)
    wave = rng.normal(0, 0.003, int(seconds * SR)).astype(np.float32)  # quiet background
    a, b = int(burst_at * SR), int((burst_at + burst_len) * SR)
    wave[a:b] += rng.normal(0, 0.5, b - a).astype(np.float32)
    return wave


@pytest.mark.parametrize("burst_at", [0.5, 9.7, 19.0])
def test_energy_crop_always_holds_the_event(burst_at):
    wave = _clip_with_burst(20.0, burst_at)
    length = 3 * SR
    a, b = int(burst_at * SR), int((burst_at + 0.3) * SR)
    starts = [energetic_start(wave, length, np.random.default_rng(i)) for i in range(200)]
    assert all(0 <= s <= wave.size - length for s in starts)
    held = [(min(b, s + length) - max(a, s)) / (b - a) for s in starts]
    # The drawn window holds at least half the burst; the random shift of under
    # one 0.1 s frame can move a third of this 0.3 s burst out again.
    assert min(held) > 0.3, "every crop holds the burst"
    assert np.mean(held) > 0.8
    assert len(set(starts)) > 20, "the event's place within the window still varies"


def test_random_crops_of_the_same_clip_often_miss_it():
    """Why energy crops exist: a uniform 3 s crop of a 20 s clip misses a lone shot."""
    wave = _clip_with_burst(20.0, 9.7)
    a = int(9.7 * SR)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, wave.size - 3 * SR + 1, size=200)
    assert np.mean((starts <= a) & (a + int(0.3 * SR) <= starts + 3 * SR)) < 0.3


def test_stationary_sound_is_cropped_all_over():
    wave = np.random.default_rng(0).normal(0, 0.1, 20 * SR).astype(np.float32)
    starts = [energetic_start(wave, 3 * SR, np.random.default_rng(i)) for i in range(300)]
    assert min(starts) < 2 * SR and max(starts) > 15 * SR


def test_short_clips_start_at_zero_and_draws_are_reproducible():
    wave = _clip_with_burst(2.0, 1.0)
    assert energetic_start(wave, 3 * SR, np.random.default_rng(0)) == 0
    long = _clip_with_burst(12.0, 5.0)
    first = energetic_start(long, 3 * SR, np.random.default_rng([0, 3, 7]))
    assert first == energetic_start(long, 3 * SR, np.random.default_rng([0, 3, 7]))


class _Records:
    """A stand-in prepared set: clip waveforms and labels in memory."""

    sample_rate = SR

    def __init__(self, waves, labels):
        from types import SimpleNamespace

        self.waves = waves
        self.records = [
            SimpleNamespace(label_index=lab, frames=w.size)
            for w, lab in zip(waves, labels, strict=True)
        ]

    def waveform(self, index):
        return self.waves[index]


def test_clip_dataset_energy_crops_hold_the_event_and_random_ones_may_not():
    waves = [_clip_with_burst(20.0, 4.0 + i) for i in range(6)]
    prepared = _Records(waves, [0] * 6)
    energy = ClipDataset(prepared, range(6), clip_samples=3 * SR, train=True, crop="energy")
    for epoch in range(3):
        energy.set_epoch(epoch)
        for i in range(6):
            window, _ = energy[i]
            assert float(window.abs().max()) > 0.5, "the burst is in every energy crop"
    with pytest.raises(ValueError, match="crop"):
        ClipDataset(prepared, range(6), clip_samples=3 * SR, train=True, crop="loudest")


def test_validation_windows_cover_every_clip_like_evaluate():
    from serenesense_cli.evaluate.windows import window_starts

    waves = [np.zeros(int(s * SR), dtype=np.float32) for s in (1.0, 3.0, 10.0)]
    prepared = _Records(waves, [0, 1, 2])
    every = ValidationWindows(prepared, [0, 1, 2], clip_samples=3 * SR, windows="all")
    expected = sum(len(window_starts(w.size, 3 * SR, 3 * SR // 2)) for w in waves)
    assert len(every) == expected
    positions = [every[i][2] for i in range(len(every))]
    assert sorted(set(positions)) == [0, 1, 2]
    assert every.labels() == [0, 1, 2]
    centre = ValidationWindows(prepared, [0, 1, 2], clip_samples=3 * SR, windows="center")
    assert len(centre) == 3
    assert all(window.shape == (3 * SR,) for window, _, _ in (centre[i] for i in range(3)))


def test_validate_pools_window_probabilities_per_clip():
    from torch import nn
    from torch.utils.data import DataLoader

    from serenesense_cli.train.engine import validate

    class Loudness(nn.Module):
        """Class 1 when a window is loud, else class 0."""

        def forward(self, waves):
            loud = waves.abs().amax(dim=1) > 0.25
            return torch.stack([(~loud).float(), loud.float()], dim=1) * 10

    waves = [_clip_with_burst(10.0, 8.0), np.zeros(10 * SR, dtype=np.float32)]
    prepared = _Records(waves, [1, 0])
    windows = ValidationWindows(prepared, [0, 1], clip_samples=3 * SR, windows="all")
    loader = DataLoader(windows, batch_size=4)
    metrics = validate(
        Loudness(), loader, device=torch.device("cpu"), precision="fp32", num_classes=2
    )
    # The loud clip's burst is in 2 of its 6 windows: mean probability < 0.5, so it is missed.
    assert metrics["val_acc"] == pytest.approx(0.5)
    assert metrics["val_loss"] > 0


def test_balanced_sampler_draws_classes_evenly_and_reproducibly():
    labels = [0] * 90 + [1] * 10
    sampler = EpochSampler(len(labels), seed=3, weights=balanced_weights(labels))
    sampler.set_epoch(0)
    order = list(sampler)
    assert len(order) == 100
    share = np.mean([labels[i] == 1 for i in order])
    assert 0.35 < share < 0.65
    sampler.set_epoch(0)
    assert list(sampler) == order
    sampler.set_epoch(1)
    assert list(sampler) != order
    with pytest.raises(ValueError):
        EpochSampler(5, seed=0, weights=[1.0, 2.0])


def test_mix_under_adds_another_clip_quietly_and_keeps_silence():
    from serenesense_cli.train.data import mix_under

    rng = np.random.default_rng(0)
    main = (rng.standard_normal(3 * SR) * 0.1).astype(np.float32)
    other = (rng.standard_normal(3 * SR) * 0.5).astype(np.float32)
    for seed in range(5):
        mixed = mix_under(main, other, np.random.default_rng(seed))
        added = mixed - main
        ratio_db = 20 * np.log10(np.sqrt(np.mean(added**2)) / np.sqrt(np.mean(main**2)))
        assert -24.1 <= ratio_db <= -11.9
    silent = np.zeros(3 * SR, np.float32)
    assert np.array_equal(mix_under(silent, other, np.random.default_rng(0)), silent)


def test_clip_dataset_mix_back_is_reproducible_and_keeps_labels():
    waves = [_clip_with_burst(5.0, 1.0 + i) for i in range(4)]
    prepared = _Records(waves, [0, 1, 2, 3])
    mixed = ClipDataset(prepared, range(4), clip_samples=3 * SR, train=True, mix_back=1.0)
    plain = ClipDataset(prepared, range(4), clip_samples=3 * SR, train=True)
    for i in range(4):
        window, label = mixed[i]
        again, _ = mixed[i]
        assert label == i and torch.equal(window, again)
        assert not torch.equal(window, plain[i][0])  # something was mixed under it
    val = ClipDataset(prepared, range(4), clip_samples=3 * SR, train=False, mix_back=1.0)
    assert torch.equal(
        val[0][0], ClipDataset(prepared, range(4), clip_samples=3 * SR, train=False)[0][0]
    )
