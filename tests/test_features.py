"""Front ends: shapes, values against an independent numpy pipeline, SpecAugment,
normalisation state, config round trips and ONNX export."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from torch import nn

from serenesense_cli.audio.features import (
    FRONTENDS,
    LogMel,
    MFCCStack,
    SpecAugment,
    compute_normalization_stats,
    fit_to_length,
    frontend_from_config,
    width3_delta,
)
from serenesense_cli.errors import ConfigError

SR = 16_000


def tone(freq: float, seconds: float, batch: int = 1) -> torch.Tensor:
    t = np.arange(round(seconds * SR)) / SR
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return torch.tensor(np.tile(x, (batch, 1)), dtype=torch.float32)


def noisy_tone(seconds: float, seed: int = 0, freq: float = 700.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    return 0.3 * rng.standard_normal(t.shape) + 0.5 * np.sin(2 * np.pi * freq * t)


# --- an independent numpy pipeline -------------------------------------------------------------


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale (what torchaudio uses by default)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_centres(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))[1:-1]


def mel_matrix(n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular HTK filters, peak 1 at each centre, on the rfft bin frequencies."""
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    freqs = np.linspace(0, SR / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_freqs)


def dct_ortho(n_out: int, n_in: int) -> np.ndarray:
    """DCT-II with orthonormal scaling, (n_out, n_in)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis


def numpy_log_mel(
    x: np.ndarray,
    *,
    n_fft: int,
    hop: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    center: bool,
    floor: float = 1e-6,
) -> np.ndarray:
    if center:
        x = np.pad(x, n_fft // 2, mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([x[i * hop : i * hop + n_fft] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, freqs)
    mel = power @ mel_matrix(n_fft, n_mels, f_min, f_max).T
    return np.log(mel + floor).T  # (n_mels, frames)


def numpy_delta(c: np.ndarray) -> np.ndarray:
    padded = np.concatenate([c[..., :1], c, c[..., -1:]], axis=-1)
    return (padded[..., 2:] - padded[..., :-2]) / 2.0


# --- shapes and length policy --------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(
    ("frontend", "seconds", "shape"),
    [
        (LogMel(), 10.0, (1, 128, 128)),
        (MFCCStack(), 3.0, (3, 40, 92)),
        (MFCCStack(clip_seconds=4.0), 4.0, (3, 40, 124)),
    ],
    ids=["logmel-10s", "mfcc-3s", "mfcc-4s"],
)
def test_output_shapes(frontend: nn.Module, seconds: float, shape: tuple, batch: int) -> None:
    x = torch.randn(batch, round(seconds * SR))
    y = frontend(x)
    assert y.shape == (batch, *shape) and y.dtype == torch.float32
    assert frontend.output_shape == shape
    assert torch.isfinite(y).all()


def test_native_frames_without_resize() -> None:
    frontend = LogMel(target_frames=None)
    assert frontend.output_shape == (1, 128, 1001)
    assert frontend(torch.randn(1, 160_000)).shape == (1, 1, 128, 1001)


@pytest.mark.parametrize(
    "frontend", [LogMel(clip_seconds=1.0), MFCCStack()], ids=["logmel", "mfcc"]
)
def test_short_input_is_right_padded_and_long_input_cropped(frontend: nn.Module) -> None:
    n = frontend.clip_samples
    x = torch.randn(2, n + 999)
    assert torch.equal(frontend(x), frontend(x[:, :n]))  # crop keeps the start
    short = x[:, : n // 2]
    padded = torch.cat([short, torch.zeros(2, n - n // 2)], dim=1)
    assert torch.equal(frontend(short), frontend(padded))


def test_fit_to_length_rejects_unbatched_input() -> None:
    assert fit_to_length(torch.ones(2, 3, dtype=torch.float64), 5).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        fit_to_length(torch.zeros(100), 50)


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [250.0, 440.0, 1000.0, 3000.0, 7000.0])
def test_logmel_peak_is_the_band_centred_nearest_the_tone(freq: float) -> None:
    frontend = LogMel()
    features = frontend(tone(freq, 10.0))[0, 0]  # (128 mel, 128 frames)
    centres = mel_centres(128, 50.0, 8000.0)
    expected = int(np.argmin(np.abs(centres - freq)))
    assert int(features.mean(dim=1).argmax()) == expected


def test_logmel_matches_numpy_reference() -> None:
    x = noisy_tone(1.0)
    frontend = LogMel(clip_seconds=1.0, target_frames=None)
    ours = frontend.log_mel(torch.tensor(x[None], dtype=torch.float32))[0, 0].numpy()
    ref = numpy_log_mel(x, n_fft=1024, hop=160, n_mels=128, f_min=50.0, f_max=8000.0, center=True)
    assert ours.shape == ref.shape == (128, 101)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=0)


def test_logmel_uses_natural_log_with_floor() -> None:
    silent = LogMel(clip_seconds=1.0).log_mel(torch.zeros(1, SR))
    assert torch.allclose(silent, torch.full_like(silent, math.log(1e-6)))


def test_mfcc_matches_numpy_reference() -> None:
    x = noisy_tone(3.0)
    frontend = MFCCStack()
    ours = frontend.mfcc(torch.tensor(x[None], dtype=torch.float32))[0].numpy()
    log_mel = numpy_log_mel(
        x, n_fft=1024, hop=512, n_mels=64, f_min=0.0, f_max=8000.0, center=False
    )
    ref = dct_ortho(40, 64) @ log_mel
    assert ours.shape == ref.shape == (40, 92)
    np.testing.assert_allclose(ours, ref, atol=5e-3, rtol=0)


def test_mfcc_channels_are_zscore_delta_and_delta_delta() -> None:
    x = torch.tensor(noisy_tone(3.0, seed=1)[None], dtype=torch.float32)
    frontend = MFCCStack()
    stack = frontend(x)[0].double().numpy()
    raw = frontend.mfcc(x)[0].double().numpy()
    z = (raw - raw.mean(axis=1, keepdims=True)) / (raw.std(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(stack[0], z, atol=1e-4, rtol=0)
    np.testing.assert_allclose(stack[0].mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(stack[0].std(axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(stack[1], numpy_delta(stack[0]), atol=1e-6, rtol=0)
    np.testing.assert_allclose(stack[2], numpy_delta(stack[1]), atol=1e-6, rtol=0)


def test_width3_delta_equals_torchaudio_compute_deltas() -> None:
    x = torch.randn(2, 3, 40, 92)
    expected = torchaudio.functional.compute_deltas(x, win_length=3)
    torch.testing.assert_close(width3_delta(x), expected)


def test_mfcc_of_silence_is_finite_zero() -> None:
    out = MFCCStack()(torch.zeros(2, 48_000))
    assert torch.equal(out, torch.zeros_like(out))


def test_batch_items_do_not_influence_each_other() -> None:
    x = torch.randn(3, 48_000)
    x[1] *= 100.0
    for frontend in (MFCCStack(), LogMel(clip_seconds=3.0)):
        torch.testing.assert_close(frontend(x)[0], frontend(x[:1])[0])


# --- SpecAugment -----------------------------------------------------------------------------


def test_specaugment_masks_in_training_only() -> None:
    augment = SpecAugment()
    x = torch.randn(4, 3, 40, 92) + 10.0  # no value is 0 by chance
    augment.eval()
    assert augment(x) is x
    augment.train()
    torch.manual_seed(0)
    y = augment(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    masked = y == 0
    assert torch.equal(y[~masked], x[~masked])
    # Every channel of an example shares the mask; examples get their own masks.
    assert torch.equal(masked[:, 0], masked[:, 1]) and torch.equal(masked[:, 0], masked[:, 2])
    assert any(not torch.equal(masked[0, 0], masked[i, 0]) for i in range(1, 4))
    # Masks are whole rows / columns of bounded width (< 15 bins, < 10 frames each).
    for example in masked[:, 0]:
        full_rows = example.all(dim=1)
        full_cols = example.all(dim=0)
        assert torch.equal(example, full_rows[:, None] | full_cols[None, :])
        assert int(full_rows.sum()) <= 2 * 14 and int(full_cols.sum()) <= 2 * 9


def test_specaugment_mask_value_and_disabled() -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 1, 128, 128)
    y = SpecAugment(freq_width=30, time_width=30, mask_value=-7.0)(x)
    assert (y == -7.0).any()
    off = SpecAugment(freq_masks=0, time_masks=0)
    assert off(x) is x
    assert SpecAugment.from_config(SpecAugment(freq_width=20).config()).config()["freq_width"] == 20


# --- normalisation and config -----------------------------------------------------------------


def test_normalisation_buffers_round_trip_and_apply() -> None:
    frontend = LogMel(clip_seconds=1.0)
    x = torch.randn(2, SR)
    raw = frontend.log_mel(x)
    torch.testing.assert_close(frontend(x), raw / 2.0)  # mean 0, std 1 -> (x - 0) / 2
    frontend.set_normalization(-5.0, 4.0)
    torch.testing.assert_close(frontend(x), (raw + 5.0) / 8.0)
    state = frontend.state_dict()
    assert float(state["mean"]) == -5.0 and float(state["std"]) == 4.0
    fresh = LogMel(clip_seconds=1.0)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(x), frontend(x))
    assert fresh.config()["mean"] == -5.0 and fresh.config()["std"] == 4.0
    with pytest.raises(ConfigError):
        frontend.set_normalization(0.0, 0.0)


@pytest.mark.parametrize(
    ("kind", "frontend"),
    [("logmel", LogMel(mean=-4.27, std=4.57, target_frames=None)), ("mfcc", MFCCStack())],
)
def test_config_round_trip(kind: str, frontend: nn.Module) -> None:
    config = json.loads(json.dumps(frontend.config()))
    rebuilt = frontend_from_config(kind, config)
    assert type(rebuilt) is FRONTENDS[kind] and rebuilt.config() == config
    by_class_name = frontend_from_config(type(frontend).__name__, config)
    assert type(by_class_name) is FRONTENDS[kind]
    x = torch.randn(1, frontend.clip_samples)
    torch.testing.assert_close(rebuilt(x), frontend(x))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown front-end kind"):
        frontend_from_config("wavelet", {})
    with pytest.raises(ConfigError, match="unknown LogMel option 'n_mel'") as caught:
        LogMel.from_config({"n_mel": 64})
    assert caught.value.hint == "did you mean 'n_mels'?"
    with pytest.raises(ConfigError, match="f_max"):
        LogMel(f_max=9000.0)
    with pytest.raises(ConfigError, match="n_mfcc"):
        MFCCStack(n_mfcc=80)


def test_compute_normalization_stats_streams_batches() -> None:
    frontend = LogMel(clip_seconds=1.0)
    rng = np.random.default_rng(3)
    clips = [rng.standard_normal((b, SR)).astype(np.float32) * s for b, s in [(2, 0.1), (3, 1.0)]]
    single = rng.standard_normal(SR // 2).astype(np.float32)  # (T,) and short: padded
    seen: list[int] = []
    mean, std = compute_normalization_stats(
        frontend, [*clips, torch.from_numpy(single)], on_update=seen.append
    )
    everything = torch.cat(
        [frontend.log_mel(torch.from_numpy(c)) for c in clips]
        + [frontend.log_mel(torch.from_numpy(single)[None])]
    ).double()
    assert mean == pytest.approx(float(everything.mean()), abs=1e-6)
    assert std == pytest.approx(float(everything.std(correction=0)), rel=1e-6)
    assert seen == [2, 5, 6]
    with pytest.raises(ValueError, match="no audio"):
        compute_normalization_stats(frontend, [])


def test_constants_are_buffers_so_devices_follow() -> None:
    for frontend in (LogMel(), MFCCStack(), SpecAugment()):
        for module in frontend.modules():
            stray = [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]
            assert not stray, f"{type(module).__name__} keeps tensors outside buffers: {stray}"
        assert not list(frontend.parameters())  # nothing trainable hides in a front end


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    for frontend in (LogMel(mean=-4.0, std=4.0), MFCCStack()):
        x = torch.randn(2, frontend.clip_samples)
        cpu = frontend(x)
        gpu = frontend.to("cuda")(x.to("cuda"))
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)
        augment = SpecAugment().to("cuda").train()
        assert augment(gpu).device.type == "cuda"


# --- ONNX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("export_form", [False, True], ids=["stft", "matmul-dft"])
@pytest.mark.parametrize(
    "make",
    [lambda: LogMel(mean=-4.27, std=4.57), lambda: MFCCStack(clip_seconds=4.0)],
    ids=["logmel", "mfcc"],
)
def test_onnx_export_matches_torch(tmp_path: Path, make, export_form: bool) -> None:
    """The dynamo exporter (the TorchScript one cannot export the complex STFT),
    in torchaudio's form and in the export form, both against torch's FFT."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    frontend = make()
    reference = nn.Sequential(copy.deepcopy(frontend), SpecAugment()).eval()
    if export_form:
        frontend.use_export_form()
    model = nn.Sequential(frontend, SpecAugment()).eval()  # SpecAugment: identity in eval
    n = frontend.clip_samples
    path = tmp_path / "frontend.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, n),),
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=["waveform"],
        output_names=["features"],
        dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("samples")},),
    )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ("STFT" in ops) is not export_form and "MatMul" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for batch, length in [(2, n), (3, n - 4321)]:  # dynamic batch and length
        x = torch.randn(batch, length, generator=generator)
        (got,) = session.run(None, {"waveform": x.numpy()})
        with torch.no_grad():
            expected = reference(x).numpy()
        assert got.shape == expected.shape == (batch, *frontend.output_shape)
        span = float(expected.max() - expected.min())
        assert float(np.abs(got - expected).max()) < 1e-3 * span


@pytest.mark.parametrize(
    "make",
    [
        LogMel,  # 1001 frames resized to 128: only the 256 it reads are computed
        lambda: LogMel(f_min=0.0, target_frames=None, clip_seconds=3.0, hop_length=320),
        MFCCStack,
        lambda: MFCCStack(hop_length=500),  # no factor of 1024 divides the hop: direct product
    ],
    ids=["logmel-resized", "logmel-native", "mfcc", "mfcc-direct"],
)
def test_export_form_equals_torchaudio(make) -> None:
    """The STFT as small matrix products (fast_stft): the same log-mel as
    torchaudio's FFT on tones, noise and silence (float32 rounding only),
    the state dict untouched."""
    frontend = make().eval()
    keys = set(frontend.state_dict())
    n = frontend.clip_samples
    t = torch.arange(n) / 16_000
    x = torch.stack(
        [
            0.5 * torch.sin(2 * math.pi * 440.0 * t),
            0.1 * torch.randn(n, generator=torch.Generator().manual_seed(0)),
            torch.zeros(n),
        ]
    )
    log_mel = getattr(frontend, "log_mel", frontend._log_melspec)  # the resized one for LogMel
    with torch.no_grad():
        expected = log_mel(x)
        frontend.use_export_form()
        got = log_mel(x)
    assert got.shape == expected.shape
    span = float(expected.max() - expected.min())
    assert float((got - expected).abs().max()) < 1e-3 * span
    assert set(frontend.state_dict()) == keys  # the basis is not saved with the weights


@pytest.mark.parametrize(
    ("n_fft", "hop", "length", "center", "pairs"),
    [
        (1024, 512, 48000, False, 16),  # the CNN: 32 x 32, even n1
        (400, 160, 16000, True, 10),  # AudioMAE's frames: 20 x 20
        (375, 75, 8000, False, 13),  # odd n1 (25 x 15): k1 = 0 has no partner
        (1024, 500, 48000, False, 128),  # 256 x 4
    ],
)
def test_mel_power_products_equal_torchaudio(n_fft, hop, length, center, pairs) -> None:
    """The factored mel power (first stage on half the bins: the input is real,
    so the other half are complex conjugates) equals torchaudio's, even and odd
    first-stage sizes alike, to float32 rounding of the peak power."""
    from serenesense_cli.audio.fast_stft import WindowedMelPower

    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=16_000, n_fft=n_fft, hop_length=hop, n_mels=64, power=2.0,
        center=center, pad_mode="reflect", mel_scale="htk", norm=None,
    )  # fmt: skip
    spectrogram = reference.spectrogram
    products = WindowedMelPower(
        spectrogram.window, reference.mel_scale.fb, hop_length=hop, length=length, center=center
    )
    assert products.pairs == pairs
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(length) / 16_000
    x = torch.stack([0.3 * torch.randn(length, generator=generator), torch.sin(1000.0 * t)])
    with torch.no_grad():
        expected, got = reference(x), products(x)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) < 2e-6 * float(expected.max())


def test_mfcc_dataset_zscore_keeps_the_envelope_and_ignores_the_gain() -> None:
    """``zscore="dataset"``: training-set statistics per coefficient, no per-clip
    z-scoring, so two clips with different spectra stay apart while a gain
    change (a constant log-mel offset, which only moves c0) is removed."""
    low = torch.tensor(noisy_tone(3.0, freq=300.0)[None], dtype=torch.float32)
    high = torch.tensor(noisy_tone(3.0, freq=3000.0)[None], dtype=torch.float32)
    frontend = MFCCStack(zscore="dataset")
    frontend.train()
    for _ in range(20):  # running statistics of a small "training set"
        frontend(torch.cat([low, high, low * 0.3, high * 2.0]))
    frontend.eval()
    torch.testing.assert_close(frontend(low * 0.1), frontend(low), atol=1e-3, rtol=0)
    gap = (frontend(low)[0, 0].mean(-1) - frontend(high)[0, 0].mean(-1)).abs().max()
    clip_gap = (MFCCStack()(low)[0, 0].mean(-1) - MFCCStack()(high)[0, 0].mean(-1)).abs().max()
    assert float(gap) > 0.5 and float(clip_gap) < 1e-4  # per-clip z-scoring erases it
    assert frontend.config()["zscore"] == "dataset"
    assert sum(p.numel() for p in frontend.parameters()) == 0  # buffers only


def test_mfcc_zscore_mode_is_checked() -> None:
    with pytest.raises(ConfigError, match="zscore"):
        MFCCStack(zscore="global")


def test_logmel_window_level_removes_the_gain_only() -> None:
    x = torch.tensor(noisy_tone(3.0)[None], dtype=torch.float32)
    keep, window = LogMel(clip_seconds=3.0), LogMel(clip_seconds=3.0, level="window")
    torch.testing.assert_close(window(x * 0.2), window(x), atol=1e-3, rtol=0)
    diff = keep(x) - window(x)  # a constant offset per window, nothing else
    torch.testing.assert_close(diff, torch.full_like(diff, float(diff.mean())), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="level"):
        LogMel(level="clip")
