"""Procedural signatures of the seven MAD sound classes, for demos and tests.

Why synthetic audio at all: the real MAD set is large and cannot be shipped or
downloaded in CI, yet training, evaluation, export and detection need a data
set with the same layout and classes. These generators make one: each models
the physics that gives a class its character (engine firing harmonics, rotor
blade passing, jet roar with Doppler, muzzle blasts, low-frequency blasts,
footstep rhythm, band-limited radio speech), so a small MFCC model has to learn
real cues, not an artefact. They are still not recordings: accuracy on them
says nothing about accuracy on real audio.

Every generator has the same shape::

    generate(rng, seconds, sample_rate=16000, *, source=None) -> float32 array

and returns exactly ``round(seconds * sample_rate)`` samples with a peak of 1.0
(a clean signature, no background). ``source`` holds the parameters of one
synthetic *source* (one "video": one engine, one rotor, one voice...); clips
made from the same source share its character and differ in their details.
:func:`make_event` adds the recording around a signature: channel colour,
background noise at a signal-to-noise ratio and a level.

Filtering is done with FFT-domain gains (zero phase, padded so nothing wraps)
and events are added by slicing, so a 10 s clip costs tens of milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Protocol

import numpy as np

from serenesense_cli.audio.io import SAMPLE_RATE
from serenesense_cli.data.mad import MAD_CLASSES
from serenesense_cli.errors import BadInputError

GENERATOR_VERSION = 1
"""Bump when any generator's output changes, so old synthetic sets are told apart."""

SNR_DB_RANGE: tuple[float, float] = (0.0, 30.0)
"""Signal-to-background ratios (dB, RMS over the clip) a clip may get."""

PEAK_DBFS_RANGE: tuple[float, float] = (-26.0, -1.0)
"""Peak levels (dB full scale) a finished clip may get: never clipped."""

BACKGROUND_RMS = 0.1
"""RMS of :func:`background` output (-20 dBFS), so it can be written as is."""

_SPEED_OF_SOUND = 343.0
_FILTER_PAD = 4096  # samples of zero padding: filter responses die out well within it

Gain = Callable[[np.ndarray], np.ndarray]
"""A magnitude response: frequencies in Hz -> linear gains."""


@dataclass(frozen=True)
class SourceParams:
    """The fixed parameters of one synthetic sound source (one MAD "video").

    Clips of one source share these (engine firing rate, rotor rate, voice
    pitch, room, recording level...), which is why data splits must group by
    video. The values also hold the recording conditions every class shares:
    ``snr_db`` (mean signal-to-background ratio), ``level_db`` (mean peak
    level), ``colour`` (microphone and channel tilt: -0.5 dull to +0.5 bright)
    and ``wind`` (0 = pink noise background, 1 = gusty wind).
    """

    class_name: str
    values: Mapping[str, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def replace(self, **values: float) -> SourceParams:
        """A copy with some values changed (tests use it to force a property)."""
        unknown = sorted(set(values) - set(self.values))
        if unknown:
            raise KeyError(f"{self.class_name} sources have no parameter(s) {unknown}")
        return SourceParams(self.class_name, {**self.values, **values})


class SoundGenerator(Protocol):
    """The shape every class generator has."""

    def __call__(
        self,
        rng: np.random.Generator,
        seconds: float,
        sample_rate: int = SAMPLE_RATE,
        *,
        source: SourceParams | None = None,
    ) -> np.ndarray: ...


# --------------------------------------------------------------------------- helpers


def _length(seconds: float, sample_rate: int) -> int:
    """Samples in a clip; every generator returns exactly this many."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInputError(f"clip length must be a positive number of seconds, not {seconds}")
    if sample_rate < 8000:
        raise BadInputError(f"sample rate must be at least 8000 Hz, not {sample_rate}")
    return max(1, round(seconds * sample_rate))


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes that pocketfft handles fast."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


@lru_cache(maxsize=64)
def _freqs(m: int, sample_rate: int) -> np.ndarray:
    """Bin frequencies of an ``m``-point rfft, cached (clip lengths repeat) and read-only."""
    freqs = np.fft.rfftfreq(m, 1.0 / sample_rate)
    freqs.flags.writeable = False
    return freqs


def _spectrum(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Padded spectrum of ``x``, its frequencies and FFT size, to filter it several ways."""
    m = _fast_len(x.shape[0] + _FILTER_PAD)
    return np.fft.rfft(x, m), _freqs(m, sample_rate), m


def _filter(x: np.ndarray, sample_rate: int, gain: Gain) -> np.ndarray:
    """Zero-phase FFT filter; the padding keeps responses from wrapping around."""
    spectrum, freqs, m = _spectrum(x, sample_rate)
    spectrum *= gain(freqs)
    return np.fft.irfft(spectrum, m)[: x.shape[0]]


def _noise(rng: np.random.Generator, n: int, sample_rate: int, gain: Gain) -> np.ndarray:
    """Gaussian noise coloured by ``gain``, made in the frequency domain, unit RMS."""
    m = _fast_len(n)
    freqs = _freqs(m, sample_rate)
    # Complex Gaussian bins straight from pairs of float32 draws (half the cost of two
    # float64 arrays combined with 1j *); the gain multiply widens them to float64.
    pairs = rng.standard_normal(2 * freqs.shape[0], dtype=np.float32)
    spectrum = pairs.view(np.complex64) * gain(freqs)
    return _unit_rms(np.fft.irfft(spectrum, m)[:n])


def _mix_filtered(sample_rate: int, *layers: tuple[np.ndarray, float, Gain]) -> np.ndarray:
    """Filter each layer and mix them at RMS ``level`` relative to the first, with one
    inverse FFT (levels come from the spectra by Parseval's theorem)."""
    n = layers[0][0].shape[0]
    m = _fast_len(n + _FILTER_PAD)
    freqs = _freqs(m, sample_rate)
    total = np.zeros(freqs.shape[0], dtype=np.complex128)
    reference = 0.0
    for index, (layer, level, gain) in enumerate(layers):
        part = np.fft.rfft(layer, m) * gain(freqs)
        energy = float(np.sum(np.square(part.real)) + np.sum(np.square(part.imag)))
        if index == 0:
            reference = energy
        if energy > 0 and reference > 0:
            total += part * (level * math.sqrt(reference / energy))
    return np.fft.irfft(total, m)[:n]


def _convolve(
    x: np.ndarray, h: np.ndarray, sample_rate: int, gain: Gain | None = None
) -> np.ndarray:
    """Linear convolution via FFT (then an optional zero-phase filter), cut to ``len(x)``."""
    n = x.shape[0]
    m = _fast_len(n + h.shape[0] + _FILTER_PAD)
    spectrum = np.fft.rfft(x, m) * np.fft.rfft(h, m)
    if gain is not None:
        spectrum *= gain(_freqs(m, sample_rate))
    return np.fft.irfft(spectrum, m)[:n]


def _butterworth(ratio: np.ndarray, order: int) -> np.ndarray:
    """1 / sqrt(1 + ratio^(2 order)), with integer powers by multiplication (fast)."""
    with np.errstate(over="ignore"):  # far outside the pass band: inf -> gain 0
        square = np.square(ratio)
        power = square
        for _ in range(order - 1):
            power = power * square
        return 1.0 / np.sqrt(1.0 + power)


def _lowpass(cutoff: float, order: int = 2) -> Gain:
    return lambda f: _butterworth(f / cutoff, order)


def _highpass(cutoff: float, order: int = 2) -> Gain:
    return lambda f: _butterworth(cutoff / np.maximum(f, 1e-3), order)


def _bandpass(low: float, high: float, order: int = 2) -> Gain:
    lo, hi = _highpass(low, order), _lowpass(high, order)
    return lambda f: lo(f) * hi(f)


def _resonance(centre: float, q: float) -> Gain:
    """Magnitude of a second-order resonator (peak gain 1 at ``centre``)."""

    def gain(f: np.ndarray) -> np.ndarray:
        safe = np.maximum(f, 1e-3)
        return 1.0 / np.sqrt(1.0 + q * q * (safe / centre - centre / safe) ** 2)

    return gain


def _unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale to RMS 1 (a dot product: one pass, no temporary array)."""
    rms = math.sqrt(float(np.mean(np.square(x)))) if x.size else 0.0
    return x / rms if rms > 1e-12 else x


def _unit_peak(x: np.ndarray) -> np.ndarray:
    """Scale to a peak of 1."""
    peak = max(float(x.max()), -float(x.min())) if x.size else 0.0
    return x / peak if peak > 1e-12 else x


def _wander(rng: np.random.Generator, n: int, sample_rate: int, rate_hz: float) -> np.ndarray:
    """A smooth random curve (about unit variance) that changes ``rate_hz`` times a second.

    Cosine interpolation between random knots at a 200 Hz control rate, then
    linear interpolation to the sample rate (cheap, and smooth enough).
    """
    knots = rng.standard_normal(math.ceil(n / sample_rate * rate_hz) + 2)
    control_rate = max(200.0, 4.0 * rate_hz)
    pos = np.arange(math.ceil(n / sample_rate * control_rate) + 2) * (rate_hz / control_rate)
    i = pos.astype(np.int64)
    w = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    curve = knots[i] * (1.0 - w) + knots[i + 1] * w
    return np.interp(np.arange(n) * (control_rate / sample_rate), np.arange(curve.shape[0]), curve)


def _cycles(freq: np.ndarray, sample_rate: int, start: float = 0.0) -> np.ndarray:
    """Running phase in cycles of a tone whose frequency (Hz) changes per sample."""
    return start + np.cumsum(freq, dtype=np.float64) / sample_rate


def _wrap(cycles: np.ndarray) -> np.ndarray:
    """Position within the current cycle, 0-1 (x - floor(x) is far faster than x % 1)."""
    return cycles - np.floor(cycles)


def _onsets(cycles: np.ndarray) -> np.ndarray:
    """Sample indices where a running phase crosses a whole cycle."""
    whole = np.floor(cycles)
    return np.flatnonzero(whole[1:] > whole[:-1]) + 1


def _place(out: np.ndarray, kernel: np.ndarray, start: int) -> None:
    """Add ``kernel`` into ``out`` at ``start``, cutting what falls outside."""
    n = out.shape[0]
    if start >= n or start + kernel.shape[0] <= 0:
        return
    k0 = max(0, -start)
    s0 = max(0, start)
    s1 = min(n, start + kernel.shape[0])
    out[s0:s1] += kernel[k0 : k0 + s1 - s0]


def _decay_burst(
    rng: np.random.Generator, length: int, sample_rate: int, attack_s: float, decay_s: float
) -> np.ndarray:
    """White noise with a linear attack and an exponential decay (an impact)."""
    t = np.arange(length) / sample_rate
    env = np.exp(-t / decay_s) * np.minimum(1.0, t / max(attack_s, 1e-5))
    return rng.standard_normal(length) * env


def _tone_limit(freq: np.ndarray | float, sample_rate: int) -> np.ndarray:
    """Keep synthetic tones below Nyquist whatever the sample rate."""
    return np.minimum(freq, 0.45 * sample_rate)


def _source(class_name: str, source: SourceParams | None, rng: np.random.Generator) -> SourceParams:
    if source is None:
        return draw_source(class_name, rng)
    if source.class_name != class_name:
        raise BadInputError(
            f"a {source.class_name} source cannot drive the {class_name} generator",
            hint=f"draw one with draw_source({class_name!r}, rng)",
        )
    return source


def _finish(x: np.ndarray) -> np.ndarray:
    """Remove DC, scale to a peak of 1, float32 (every generator ends here)."""
    x = x - float(np.mean(x)) if x.size > 1 else x
    return _unit_peak(x).astype(np.float32)


# --------------------------------------------------------------------------- sources


def _common(rng: np.random.Generator) -> dict[str, float]:
    """Recording conditions of one video, shared by every class."""
    return {
        "snr_db": rng.uniform(4.0, 26.0),
        "level_db": rng.uniform(-20.0, -4.0),
        "colour": rng.uniform(-0.5, 0.5),
        "wind": rng.uniform(0.0, 1.0),
    }


def _draw_vehicle(rng: np.random.Generator) -> dict[str, float]:
    return {
        "f0": rng.uniform(20.0, 60.0),  # engine firing rate (Hz)
        "rpm_drift": rng.uniform(0.03, 0.15),  # relative RPM wander
        "drift_rate": rng.uniform(0.1, 0.5),  # how fast RPM wanders (Hz)
        "sharpness": rng.uniform(4.0, 14.0),  # firing pulse sharpness -> harmonic richness
        "cylinders": float(rng.choice([4, 6, 8, 12])),
        "irregularity": rng.uniform(0.05, 0.3),  # cylinder-to-cylinder variation
        "engine_cutoff": rng.uniform(300.0, 1500.0),
        "exhaust": rng.uniform(0.1, 0.5),
        "tracked": float(rng.uniform() < 0.75),  # tracked (clatter) or wheeled (tyres)
        "clatter_ratio": rng.uniform(0.25, 1.0),  # track link impacts per firing
        "clatter_freq": rng.uniform(1200.0, 4500.0),  # metallic ring of a track link
        "clatter_decay": rng.uniform(0.003, 0.012),
        "clatter_level": rng.uniform(0.3, 1.0),
    }


def _draw_helicopter(rng: np.random.Generator) -> dict[str, float]:
    return {
        "bpf": rng.uniform(10.0, 25.0),  # main rotor blade-passing frequency (Hz)
        "floor": rng.uniform(0.1, 0.4),  # noise between blade slaps
        "sharpness": rng.uniform(3.0, 10.0),
        "slap_low": rng.uniform(100.0, 300.0),
        "slap_high": rng.uniform(1500.0, 4000.0),
        "thump": rng.uniform(0.4, 1.0),  # low harmonics of the blade passing
        "thump_cutoff": rng.uniform(80.0, 200.0),
        "tail_f": rng.uniform(55.0, 140.0),  # tail rotor blade-passing tone (Hz)
        "tail": rng.uniform(0.1, 0.4),
        "whine_f": rng.uniform(2000.0, 6000.0),  # turbine
        "whine": rng.uniform(0.0, 0.05),
        "distance_db": rng.uniform(1.0, 6.0),  # slow level changes as it moves
    }


def _draw_fighter(rng: np.random.Generator) -> dict[str, float]:
    return {
        "speed": rng.uniform(60.0, 180.0),  # m/s (Doppler factor up to about 2)
        "dmin": rng.uniform(150.0, 1500.0),  # closest approach (m)
        "peak_f": rng.uniform(150.0, 600.0),  # jet noise spectral peak (Hz)
        "width": rng.uniform(1.2, 2.2),  # octaves
        "crackle": rng.uniform(0.05, 0.3),
        "whine_f": rng.uniform(1200.0, 3200.0),
        "whine": rng.uniform(0.03, 0.15),
        "rumble": rng.uniform(0.1, 0.4),
    }


def _draw_shooting(rng: np.random.Generator) -> dict[str, float]:
    return {
        "automatic": float(rng.uniform() < 0.5),
        "rate": rng.uniform(8.0, 15.0),  # rounds per second in a burst
        "burst_min": float(rng.integers(2, 5)),
        "burst_max": float(rng.integers(5, 12)),
        "gap": rng.uniform(0.3, 2.0),  # seconds between bursts or single shots
        "decay": rng.uniform(0.0015, 0.008),  # muzzle blast decay (s)
        "blast_f": rng.uniform(200.0, 900.0),
        "supersonic": float(rng.uniform() < 0.5),  # bullet crack before the blast
        "crack_lead": rng.uniform(0.01, 0.06),
        "brightness": rng.uniform(2500.0, 7000.0),  # distance low-pass
        "rt60": rng.uniform(0.2, 1.5),
        "reverb": rng.uniform(0.15, 0.6),
        "echo_delay": rng.uniform(0.05, 0.4),
        "echo_gain": rng.uniform(0.15, 0.5),
    }


def _draw_shelling(rng: np.random.Generator) -> dict[str, float]:
    return {
        "rate": rng.uniform(0.08, 0.35),  # extra blasts per second (sparse)
        "blast_f": rng.uniform(25.0, 70.0),  # body resonance of the blast (Hz)
        "decay": rng.uniform(0.25, 0.9),
        "cutoff": rng.uniform(90.0, 200.0),
        "rumble_decay": rng.uniform(0.8, 2.5),
        "rumble": rng.uniform(0.4, 1.0),
        "crack": rng.uniform(0.02, 0.08),  # the little energy above 200 Hz
        "whistle": float(rng.uniform() < 0.35),
        "whistle_f": rng.uniform(1200.0, 2500.0),
    }


def _draw_footsteps(rng: np.random.Generator) -> dict[str, float]:
    return {
        "rate": rng.uniform(1.5, 2.5),  # steps per second
        "jitter": rng.uniform(0.01, 0.05),
        "thud_f": rng.uniform(60.0, 150.0),
        "thud_decay": rng.uniform(0.012, 0.03),
        "toe_gap": rng.uniform(0.04, 0.12),
        "gravel": rng.uniform(0.2, 1.0),
        "crunch_f": rng.uniform(1500.0, 5000.0),
        "crunch_len": rng.uniform(0.06, 0.2),
        "limp": rng.uniform(0.6, 1.0),  # left/right loudness ratio
    }


def _draw_communication(rng: np.random.Generator) -> dict[str, float]:
    return {
        "f0": rng.uniform(90.0, 230.0),  # voice pitch (Hz)
        "pitch_range": rng.uniform(0.1, 0.35),  # octaves of intonation
        "syllable_rate": rng.uniform(4.0, 6.0),
        "tract": rng.uniform(0.85, 1.2),  # formant scale (vocal tract length)
        "glottal": rng.uniform(4.0, 9.0),  # glottal pulse sharpness
        "band_low": rng.uniform(300.0, 450.0),
        "band_high": rng.uniform(2700.0, 3400.0),
        "hiss": rng.uniform(0.03, 0.15),
        "drive": rng.uniform(1.0, 4.0),  # transmitter overdrive
        "fricative": rng.uniform(0.2, 0.6),
    }


_DRAWS: dict[str, Callable[[np.random.Generator], dict[str, float]]] = {
    "vehicle": _draw_vehicle,
    "helicopter": _draw_helicopter,
    "fighter": _draw_fighter,
    "shooting": _draw_shooting,
    "shelling": _draw_shelling,
    "footsteps": _draw_footsteps,
    "communication": _draw_communication,
}


def _check_class(class_name: str) -> None:
    if class_name not in _DRAWS:
        raise BadInputError(
            f"no synthetic generator for class {class_name!r}",
            hint=f"choose one of: {', '.join(MAD_CLASSES)}",
        )


def draw_source(class_name: str, rng: np.random.Generator) -> SourceParams:
    """Draw the parameters of one new source ("video") of ``class_name``."""
    _check_class(class_name)
    values = _DRAWS[class_name](rng)
    values.update(_common(rng))
    return SourceParams(class_name, {k: float(v) for k, v in values.items()})


# --------------------------------------------------------------------------- classes


def vehicle(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
) -> np.ndarray:
    """Engine firing harmonics (20-60 Hz fundamental, drifting RPM) plus track clatter.

    The engine is a train of firing pulses whose per-cylinder strengths differ
    (so sub-harmonics at f0/cylinders appear, as in real engines); the track
    clatter is a train of short ringing metallic impacts whose rate follows the
    engine speed, as link impacts follow road speed in gear.
    """
    p = _source("vehicle", source, rng)
    sr = sample_rate
    n = _length(seconds, sr)
    drift = 1.0 + p["rpm_drift"] * _wander(rng, n, sr, p["drift_rate"])
    f0 = np.maximum(10.0, p["f0"] * rng.uniform(0.9, 1.1) * drift)
    cycles = _cycles(f0, sr, rng.uniform())
    frac = _wrap(cycles)
    cylinders = int(p["cylinders"])
    strength = 1.0 + p["irregularity"] * rng.standard_normal(cylinders)
    firing = strength[np.floor(cycles).astype(np.int64) % cylinders] * np.exp(
        -p["sharpness"] * frac
    )
    engine = _unit_rms(_filter(firing - firing.mean(), sr, _lowpass(p["engine_cutoff"], 2)))
    exhaust = _noise(rng, n, sr, _bandpass(60.0, 2.0 * p["engine_cutoff"], 1))
    engine += p["exhaust"] * exhaust * (0.4 + np.exp(-3.0 * frac))

    if p["tracked"] >= 0.5:
        links = _cycles(f0 * p["clatter_ratio"], sr, rng.uniform())
        hits = _onsets(links)
        jitter = max(1, int(0.002 * sr))
        hits = np.clip(hits + rng.integers(-jitter, jitter + 1, hits.shape[0]), 0, n - 1)
        impulses = np.zeros(n)
        np.add.at(impulses, hits, rng.uniform(0.4, 1.0, hits.shape[0]))
        ring = _decay_burst(rng, int(6 * p["clatter_decay"] * sr) + 1, sr, 2e-4, p["clatter_decay"])
        clatter = _convolve(impulses, ring, sr, _resonance(p["clatter_freq"], 2.0))
    else:
        clatter = _noise(rng, n, sr, _bandpass(100.0, 900.0, 1)) * drift  # tyre roar
    x = engine + p["clatter_level"] * _unit_rms(clatter)
    return _finish(x)


def helicopter(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
) -> np.ndarray:
    """Main rotor "chop" (broadband noise pulsed at 10-25 Hz), its low harmonics, tail rotor.

    Each passing blade slaps the air (blade-vortex interaction), so broadband
    noise is amplitude-modulated at the blade-passing frequency; the same
    periodicity gives low harmonic thumps, and the faster tail rotor adds a
    tone with a few harmonics near 55-140 Hz.
    """
    p = _source("helicopter", source, rng)
    sr = sample_rate
    n = _length(seconds, sr)
    drift = 1.0 + 0.01 * _wander(rng, n, sr, 0.3)
    bpf = p["bpf"] * rng.uniform(0.97, 1.03) * drift
    frac = _wrap(_cycles(bpf, sr, rng.uniform()))
    chop = p["floor"] + (1.0 - p["floor"]) * np.exp(-p["sharpness"] * frac)
    slap = _noise(rng, n, sr, _bandpass(p["slap_low"], p["slap_high"], 1)) * chop
    pulse = np.exp(-2.0 * p["sharpness"] * frac)
    thump = _unit_rms(_filter(pulse - pulse.mean(), sr, _lowpass(p["thump_cutoff"], 3)))
    rotor = np.exp(2j * np.pi * _cycles(_tone_limit(p["tail_f"] * drift, sr), sr))
    harmonic = rotor
    tail = np.zeros(n, dtype=np.complex128)
    for k in range(4):  # harmonics as powers of one complex tone: one exp, not four sins
        tail += (0.6**k) * np.exp(1j * rng.uniform(0, 2 * np.pi)) * harmonic
        harmonic = harmonic * rotor
    tail = tail.imag
    whine = np.sin(2 * np.pi * _cycles(_tone_limit(p["whine_f"] * drift, sr), sr))
    x = _unit_rms(slap) + p["thump"] * thump + p["tail"] * _unit_rms(tail) + p["whine"] * whine
    distance = 10.0 ** (p["distance_db"] * _wander(rng, n, sr, 0.2) / 20.0)
    return _finish(x * distance)


def fighter(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
) -> np.ndarray:
    """Jet roar in a slow pass-by: 1/distance envelope, Doppler tilt and a gliding whine.

    The aircraft flies a straight line past the microphone; its broadband roar
    (a hump one to two octaves wide around 150-600 Hz, plus crackle) is louder
    and brighter while it approaches and darker as it recedes, and the
    compressor whine glides down with the Doppler factor 1 / (1 - v/c cos a).
    """
    p = _source("fighter", source, rng)
    sr = sample_rate
    n = _length(seconds, sr)
    t = np.arange(n) / sr
    duration = n / sr
    speed = p["speed"] * rng.uniform(0.9, 1.1)
    dmin = p["dmin"] * rng.uniform(0.8, 1.25)
    rel = t - rng.uniform(-0.2, 1.2) * duration
    distance = np.sqrt(dmin**2 + (speed * rel) ** 2)
    cos_a = -speed * rel / distance  # +1 approaching, -1 receding
    doppler = 1.0 / (1.0 - (speed / _SPEED_OF_SOUND) * cos_a)
    loudness = np.maximum(dmin / distance, 0.03)

    def hump(centre: float) -> Gain:
        def gain(f: np.ndarray) -> np.ndarray:
            octaves = np.log2(np.maximum(f, 1.0) / centre)
            body = np.exp(-0.5 * (octaves / p["width"]) ** 2)
            return body * _highpass(25.0, 2)(f) + p["crackle"] * _highpass(2000.0, 1)(f)

        return gain

    lo_d = 1.0 / (1.0 + speed / _SPEED_OF_SOUND)
    hi_d = 1.0 / (1.0 - speed / _SPEED_OF_SOUND)
    bright = _noise(rng, n, sr, hump(p["peak_f"] * hi_d))
    dark = _noise(rng, n, sr, hump(p["peak_f"] * lo_d))
    w = (doppler - lo_d) / (hi_d - lo_d)
    roar = w * bright + (1.0 - w) * dark
    # Jet noise is beamed aft: it keeps its level longer after the pass.
    roar *= loudness * (0.7 + 0.3 * (1.0 - cos_a) / 2.0)
    rumble = _noise(rng, n, sr, _lowpass(90.0, 2)) * loudness
    whine_f = _tone_limit(p["whine_f"] * doppler, sr)
    cycles = _cycles(whine_f, sr, rng.uniform())
    whine = np.sin(2 * np.pi * cycles) + 0.3 * np.sin(4 * np.pi * cycles)
    # The compressor whine radiates forward: strongest while approaching.
    whine *= loudness**1.5 * (0.3 + 0.7 * (1.0 + cos_a) / 2.0)
    x = roar + p["rumble"] * rumble + p["whine"] * whine
    return _finish(x)


def shooting(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
) -> np.ndarray:
    """Gunfire: muzzle blasts (sub-ms attack, ms decay) singly or in bursts, echo, reverb.

    A supersonic round adds its N-wave crack ahead of the blast; a reflecting
    wall adds a discrete echo and the surroundings a diffuse exponential tail.
    """
    p = _source("shooting", source, rng)
    sr = sample_rate
    n = _length(seconds, sr)
    duration = n / sr
    times: list[float] = []
    t = rng.uniform(0.0, min(0.5, 0.3 * duration))
    while t < duration:
        if p["automatic"] >= 0.5:
            rounds = int(rng.integers(int(p["burst_min"]), int(p["burst_max"]) + 1))
            period = 1.0 / (p["rate"] * rng.uniform(0.95, 1.05))
            times.extend(t + k * period + rng.normal(0.0, 0.002) for k in range(rounds))
            t += rounds * period + p["gap"] * rng.uniform(0.5, 1.5)
        else:
            times.append(t)
            t += p["gap"] * rng.uniform(0.6, 1.6)
    dry = np.zeros(n)
    length = int(8 * p["decay"] * sr) + 1
    crack = np.concatenate([np.linspace(1.0, -1.0, max(2, int(0.0015 * sr))), [0.0]])
    for when in times:
        start = round(when * sr)
        gain = rng.uniform(0.7, 1.0)
        _place(dry, gain * _decay_burst(rng, length, sr, 2e-4, p["decay"]), start)
        if p["supersonic"] >= 0.5:
            _place(dry, 0.6 * gain * crack, start - round(p["crack_lead"] * sr))
    # Room response: direct sound, one wall echo, a diffuse exponential tail.
    echo = round(p["echo_delay"] * sr)
    tail_len = max(int(p["rt60"] * sr), echo) + 1
    room = rng.standard_normal(tail_len) * np.exp(-6.9 * np.arange(tail_len) / (p["rt60"] * sr))
    room[: max(1, int(0.01 * sr))] = 0.0  # the tail starts after the direct sound
    room *= p["reverb"] * 4.0 / math.sqrt(p["rt60"] * sr)  # tail energy ~ reverb^2
    room[0] += 1.0
    room[echo] += p["echo_gain"]

    def colour(f: np.ndarray) -> np.ndarray:
        body = 0.35 + _resonance(p["blast_f"], 0.7)(f)
        return body * _lowpass(p["brightness"], 2)(f) * _highpass(40.0, 2)(f)

    return _finish(_convolve(dry, room, sr, colour))


def shelling(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
) -> np.ndarray:
    """Artillery: sparse big blasts with energy below 200 Hz and a long rumble; optional whistle.

    Distance strips the high frequencies from an explosion, leaving a
    low-passed pressure pulse, a damped body resonance and ground rumble that
    lasts seconds; an incoming shell may be heard as a falling whistle first.
    """
    p = _source("shelling", source, rng)
    sr = sample_rate
    n = _length(seconds, sr)
    duration = n / sr
    times = [rng.uniform(0.0, 0.6) * duration]
    extra = int(rng.poisson(p["rate"] * duration))
    times.extend(rng.uniform(0.0, duration, extra).tolist())
    body = np.zeros(n)
    rumble = np.zeros(n)
    crack = np.zeros(n)
    whistle = np.zeros(n)
    for when in times:
        start = round(when * sr)
        room = n - start  # kernels stop at the clip's end: no work on what is cut
        gain = rng.uniform(0.5, 1.0)
        decay = p["decay"] * rng.uniform(0.8, 1.25)
        length = min(room, int(5 * decay * sr) + 1)
        _place(body, gain * _decay_burst(rng, length, sr, 0.012, decay), start)
        t = np.arange(length) / sr
        f = p["blast_f"] * rng.uniform(0.9, 1.1)
        ring = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        ring *= np.exp(-t / (0.5 * decay)) * np.minimum(1.0, t / 0.01)
        _place(body, 0.8 * gain * ring, start)
        r_decay = p["rumble_decay"] * rng.uniform(0.8, 1.25)
        r_len = min(room, int(4 * r_decay * sr) + 1)
        _place(rumble, gain * _decay_burst(rng, r_len, sr, 0.05, r_decay), start)
        c_len = min(room, int(0.05 * sr) + 1)
        _place(crack, gain * _decay_burst(rng, c_len, sr, 5e-4, 0.008), start)
        fall = rng.uniform(0.8, 2.0)
        if p["whistle"] >= 0.5 and when > 0.3:
            w_len = round(min(fall, when) * sr)
            u = np.arange(w_len) / max(1, w_len)
            freq = _tone_limit(p["whistle_f"] * (1.0 - 0.4 * u), sr)
            tone = np.sin(2 * np.pi * _cycles(freq, sr)) * (0.2 + u) * 0.04 * gain
            _place(whistle, tone, start - w_len)
    x = _mix_filtered(
        sr,
        (body, 1.0, lambda f: _lowpass(p["cutoff"], 3)(f) * _highpass(15.0, 2)(f)),
        (rumble, p["rumble"], lambda f: _lowpass(70.0, 3)(f) * _highpass(15.0, 2)(f)),
        (crack, p["crack"], _bandpass(200.0, 3000.0, 2)),
    )
    x += float(np.max(np.abs(x))) * whistle
    return _finish(x)


def footsteps(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
) -> np.ndarray:
    """Walking: steps at 1.5-2.5 Hz, each a soft heel thud, a toe thud and a gravel crunch.

    The thuds are damped low resonances (the body and the ground), the crunch
    is grainy band-passed noise from stones shifting under the sole; the two
    feet differ a little in loudness and the timing jitters by a few percent.
    """
    p = _source("footsteps", source, rng)
    sr = sample_rate
    n = _length(seconds, sr)
    duration = n / sr
    period = 1.0 / (p["rate"] * rng.uniform(0.97, 1.03))
    thud = np.zeros(n)
    crunch = np.zeros(n)
    t = rng.uniform(0.0, min(period, 0.3 * duration))  # short clips still hold a step
    step = int(rng.integers(0, 2))
    length = int(6 * p["thud_decay"] * sr) + 1
    k = np.arange(length) / sr
    c_len = int(p["crunch_len"] * sr) + 1
    while t < duration:
        gain = (1.0 if step % 2 == 0 else p["limp"]) * rng.uniform(0.8, 1.0)
        start = round(t * sr)
        for offset, part in ((0, 1.0), (round(p["toe_gap"] * sr), 0.6)):
            f = p["thud_f"] * rng.uniform(0.9, 1.1)
            kernel = np.sin(2 * np.pi * f * k) * np.exp(-k / p["thud_decay"])
            _place(thud, gain * part * kernel, start + offset)
            grains = rng.standard_normal(c_len) ** 3  # heavy tails: discrete stone clicks
            env = np.exp(-np.arange(c_len) / (0.35 * c_len)) * np.minimum(
                1.0, np.arange(c_len) / (0.004 * sr)
            )
            _place(crunch, gain * part * grains * env, start + offset)
        step += 1
        t += period * (1.0 + p["jitter"] * rng.standard_normal())
    return _finish(
        _mix_filtered(
            sr,
            (thud, 1.0, _highpass(30.0, 2)),
            (crunch, p["gravel"], _resonance(p["crunch_f"], 1.2)),
        )
    )


# Formants (F1, F2, F3 in Hz) of five vowels of an average adult voice.
_VOWELS = np.array(
    [
        [730.0, 1090.0, 2440.0],  # a
        [530.0, 1840.0, 2480.0],  # e
        [270.0, 2290.0, 3010.0],  # i
        [570.0, 840.0, 2410.0],  # o
        [300.0, 870.0, 2240.0],  # u
    ]
)


def communication(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
) -> np.ndarray:
    """Radio speech: a formant-filtered voice, 4-6 syllables/s, in a 300-3400 Hz channel.

    A glottal pulse train with a pitch contour (intonation, declination)
    excites vowel formants; syllables switch vowels and add fricative noise.
    The radio band-limits and overdrives the voice, hisses while keyed, and
    clicks with a burst of noise (the squelch tail) when the key is released.
    """
    p = _source("communication", source, rng)
    sr = sample_rate
    n = _length(seconds, sr)
    duration = n / sr
    keyed = np.zeros(n)
    voice_env = np.zeros(n)
    vowel_of = np.full(n, -1, dtype=np.int64)
    fricatives = np.zeros(n)
    declination = np.ones(n)
    clicks: list[int] = []
    tails: list[int] = []
    vowels = rng.choice(len(_VOWELS), size=3, replace=False)

    t = 0.0 if rng.uniform() < 0.3 else rng.uniform(0.0, min(0.4, 0.2 * duration))
    while t < duration:
        end = min(duration, t + rng.uniform(1.2, 4.0))
        s0, s1 = round(t * sr), round(end * sr)
        keyed[s0:s1] = 1.0
        if s0 > 0:
            clicks.append(s0)
        if s1 < n:
            clicks.append(s1)
            tails.append(s1)
        declination[s0:s1] = np.linspace(1.05, 0.9, s1 - s0)
        margin = min(0.08, 0.1 * duration)  # short clips still hold a syllable
        u = t + margin
        while u < end - margin:
            syllables = int(rng.integers(3, 12))
            for _ in range(syllables):
                length = min(rng.uniform(0.6, 1.4) / p["syllable_rate"], end - margin - u)
                if length < 0.04:
                    break
                a, b = round(u * sr), round((u + length) * sr)
                shape = np.sin(np.linspace(0.0, np.pi, b - a)) ** 0.7
                voice_env[a:b] = np.maximum(voice_env[a:b], shape * rng.uniform(0.6, 1.0))
                vowel_of[a:b] = int(rng.integers(0, 3))
                if rng.uniform() < 0.5:
                    f_len = round(rng.uniform(0.03, 0.09) * sr)
                    _place(fricatives, np.hanning(f_len + 2)[1:-1], a - f_len // 2)
                u += length
            u += rng.uniform(0.15, 0.5)  # a breath between phrases
        t = end + rng.uniform(0.3, 1.5)

    pitch = p["f0"] * rng.uniform(0.95, 1.05) * declination
    pitch *= np.exp2(p["pitch_range"] * 0.5 * _wander(rng, n, sr, 2.5))
    frac = _wrap(_cycles(_tone_limit(pitch, sr), sr, rng.uniform()))
    glottis = np.exp(-p["glottal"] * frac)
    glottis -= glottis.mean()
    # One forward FFT of the voice source, one inverse per vowel: formants and
    # the radio band in one gain. Syllables start and end at zero loudness, so
    # switching vowels between them needs no cross-fade.
    spectrum, freqs, m = _spectrum(glottis, sr)
    band = _bandpass(p["band_low"], p["band_high"], 4)
    band_gain = band(freqs)
    voiced = np.zeros(n)
    for slot, vowel in enumerate(vowels):
        tract = np.zeros_like(freqs)
        for centre, width, amp in zip(
            _VOWELS[vowel] / p["tract"], (80.0, 100.0, 130.0), (1.0, 0.7, 0.4), strict=True
        ):
            tract += amp * _resonance(centre, centre / width)(freqs)
        voiced += (vowel_of == slot) * np.fft.irfft(spectrum * tract * band_gain, m)[:n]
    hissy = rng.standard_normal(n)
    hissy = np.diff(hissy, n=2, prepend=[0.0, 0.0])  # +12 dB/octave: the "s" of fricatives
    speech = _unit_rms(voiced) * voice_env + p["fricative"] * 0.5 * hissy * fricatives
    # Overdriven transmitter: a cubic soft clipper (cheaper than tanh, same idea).
    driven = np.clip(p["drive"] * _unit_peak(speech), -1.0, 1.0)
    speech = 1.5 * driven - 0.5 * driven**3
    squelch = np.zeros(n)
    for at in tails:
        length = round(rng.uniform(0.1, 0.25) * sr)
        _place(squelch, np.full(length, 3.0), at)
        keyed[at : at + length] = 0.0  # the noise burst replaces the carrier hiss
    x = speech + p["hiss"] * rng.standard_normal(n) * (keyed + squelch)
    x = _filter(x, sr, band)  # the receiver's audio band, after the distortion
    pop = np.exp(-np.arange(max(2, int(0.002 * sr))) / (0.0004 * sr))
    for at in clicks:
        _place(x, 0.3 * rng.choice([-1.0, 1.0]) * pop, at)
    return _finish(x)


def background(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    wind: float | None = None,
) -> np.ndarray:
    """Outdoor background: pink noise mixed with gusty low-frequency wind, RMS 0.1.

    ``wind`` (0-1) sets the mix; ``None`` draws it. Used under every clip so
    that a model cannot tell classes apart by the silence around them.
    """
    sr = sample_rate
    n = _length(seconds, sr)
    mix = rng.uniform() if wind is None else float(np.clip(wind, 0.0, 1.0))
    corner = rng.uniform(80.0, 300.0)

    def gain(f: np.ndarray) -> np.ndarray:
        pink = _highpass(20.0, 2)(f) / np.sqrt(np.maximum(f, 20.0))
        air = _bandpass(15.0, corner, 2)(f)
        return (1.0 - mix) * _unit_rms(pink) + mix * _unit_rms(air)

    gusts = np.exp(0.8 * mix * _wander(rng, n, sr, rng.uniform(0.2, 1.0)))
    x = _noise(rng, n, sr, gain) * gusts
    return (BACKGROUND_RMS * _unit_rms(x)).astype(np.float32)


SOUND_GENERATORS: dict[str, SoundGenerator] = {
    name: {
        "communication": communication,
        "shooting": shooting,
        "footsteps": footsteps,
        "shelling": shelling,
        "vehicle": vehicle,
        "helicopter": helicopter,
        "fighter": fighter,
    }[name]
    for name in MAD_CLASSES
}
"""One generator per MAD class, in MAD label order."""


def make_event(
    class_name: str,
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    source: SourceParams | None = None,
    background_noise: bool = True,
    snr_db: float | None = None,
    peak_dbfs: float | None = None,
) -> np.ndarray:
    """One recorded clip of ``class_name``: signature, channel colour, background, level.

    ``None`` for ``source``, ``snr_db`` or ``peak_dbfs`` draws them (around the
    source's recording conditions); ``background_noise=False`` gives the
    coloured signature alone, for mixing into a longer recording.
    """
    _check_class(class_name)
    src = _source(class_name, source, rng)
    clean = SOUND_GENERATORS[class_name](rng, seconds, sample_rate, source=src).astype(np.float64)
    if background_noise:
        if snr_db is None:
            snr_db = float(np.clip(src["snr_db"] + rng.normal(0.0, 3.0), *SNR_DB_RANGE))
        noise = background(rng, seconds, sample_rate, wind=src["wind"]).astype(np.float64)
        clean = _unit_rms(clean) * 10.0 ** (snr_db / 20.0) + _unit_rms(noise)
    # Microphone and channel colour: a two-tap filter tilts the spectrum by up
    # to about +-10 dB between low and high frequencies.
    x = clean.copy()
    x[1:] += src["colour"] * clean[:-1]
    if peak_dbfs is None:
        peak_dbfs = float(np.clip(src["level_db"] + rng.uniform(-4.0, 4.0), *PEAK_DBFS_RANGE))
    return (_unit_peak(x) * 10.0 ** (peak_dbfs / 20.0)).astype(np.float32)
