"""Audio I/O: every format we claim, resampling, streaming, and every bad input.

All files are written into ``tmp_path`` by the tests themselves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.audio import io as audio_io
from serenesense_cli.audio.io import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    load_audio,
    probe_audio,
    resample,
    stream_audio,
    write_audio,
)
from serenesense_cli.errors import EXIT_BAD_INPUT, AudioFileError, BadInputError


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, rate: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (round(seconds * rate), channels) if channels > 1 else (round(seconds * rate),)
    return (0.3 * rng.standard_normal(shape)).clip(-1, 1).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def write(path: Path, data: np.ndarray, rate: int, subtype: str, fmt: str | None = None) -> Path:
    sf.write(str(path), data, rate, subtype=subtype, format=fmt)
    return path


# --- formats ----------------------------------------------------------------------------------

WAV_SUBTYPES = {
    # subtype: quantisation step the round trip must respect
    "PCM_U8": 1 / 128,
    "PCM_16": 1 / 2**15,
    "PCM_24": 1 / 2**23,
    "PCM_32": 1 / 2**31,
    "FLOAT": 1e-7,
    "DOUBLE": 1e-7,
}


@pytest.mark.parametrize("subtype", sorted(WAV_SUBTYPES))
def test_wav_subtypes_decode_to_float32(tmp_path: Path, subtype: str) -> None:
    x = sine(440, 0.5, SAMPLE_RATE)
    path = write(tmp_path / f"{subtype}.wav", x, SAMPLE_RATE, subtype)
    info = probe_audio(path)
    assert (info.sample_rate, info.channels, info.frames, info.subtype) == (
        SAMPLE_RATE,
        1,
        len(x),
        subtype,
    )
    assert info.duration == pytest.approx(0.5)
    y = load_audio(path)
    assert y.dtype == np.float32
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=WAV_SUBTYPES[subtype] * 1.01, rtol=0)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_flac(tmp_path: Path, subtype: str) -> None:
    x = sine(440, 0.5, SAMPLE_RATE)
    path = write(tmp_path / "a.flac", x, SAMPLE_RATE, subtype)
    y = load_audio(path)
    assert probe_audio(path).format == "FLAC"
    np.testing.assert_allclose(y, x, atol=1 / 2**15, rtol=0)


def test_ogg_vorbis(tmp_path: Path) -> None:
    x = sine(1000, 1.0, SAMPLE_RATE)
    path = write(tmp_path / "a.ogg", x, SAMPLE_RATE, "VORBIS", "OGG")
    y = load_audio(path)
    assert y.shape == x.shape
    assert peak_hz(y, SAMPLE_RATE) == pytest.approx(1000, abs=2)
    assert np.corrcoef(x, y)[0, 1] > 0.99  # lossy, but the same signal


def test_mp3_if_libsndfile_writes_it(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} has no MP3 support")
    x = sine(1000, 1.0, SAMPLE_RATE)
    path = tmp_path / "a.mp3"
    try:
        sf.write(str(path), x, SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III")
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        pytest.skip(f"libsndfile cannot write MP3 here: {error}")
    y = load_audio(path)
    assert abs(len(y) - len(x)) <= 1152  # at most one MP3 frame of encoder padding
    assert peak_hz(y, SAMPLE_RATE) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_mean_of_channels(tmp_path: Path, channels: int) -> None:
    x = noise(0.5, SAMPLE_RATE, channels=channels)
    path = write(tmp_path / "multi.wav", x, SAMPLE_RATE, "FLOAT")
    assert probe_audio(path).channels == channels
    np.testing.assert_allclose(load_audio(path), x.mean(axis=1), atol=1e-7, rtol=0)


def test_extensions_cover_the_formats_we_read() -> None:
    assert {".wav", ".flac", ".ogg", ".mp3"} <= AUDIO_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in AUDIO_EXTENSIONS)


# --- resampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_to_16k_keeps_length_and_frequency(tmp_path: Path, rate: int) -> None:
    x = sine(1000, 1.0, rate)
    path = write(tmp_path / f"{rate}.wav", x, rate, "FLOAT")
    y = load_audio(path)
    assert y.dtype == np.float32
    assert len(y) == math.ceil(len(x) * SAMPLE_RATE / rate) == SAMPLE_RATE
    assert peak_hz(y, SAMPLE_RATE) == pytest.approx(1000, abs=1)
    # Amplitude survives in the middle (edges see the zero padding).
    assert np.abs(y[2000:-2000]).max() == pytest.approx(0.5, abs=0.02)


def test_resample_function() -> None:
    x = sine(1000, 0.5, 44100).astype(np.float64)  # any float dtype is accepted
    y = resample(x, 44100)
    assert y.dtype == np.float32 and len(y) == 8000
    assert resample(x, 16000, 16000).dtype == np.float32
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 100)), 8000)


# --- streaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 8000, 22050, 44100, 48000])
@pytest.mark.parametrize("block_seconds", [0.37, 1.0, 1.9, 5.0])
def test_streaming_equals_whole_file(tmp_path: Path, rate: int, block_seconds: float) -> None:
    x = noise(3.3, rate)[: round(3.3 * rate) - 7]  # odd length
    path = write(tmp_path / "x.wav", x, rate, "FLOAT")
    blocks = list(stream_audio(path, block_seconds=block_seconds))
    whole = load_audio(path)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert all(len(b) <= round(block_seconds * SAMPLE_RATE) for b in blocks)
    joined = np.concatenate(blocks)
    if rate == SAMPLE_RATE:
        assert np.array_equal(joined, whole)
        assert np.array_equal(joined, x)
    else:
        # Same samples, same arithmetic; only the convolution's summation order
        # differs with the chunk length, so allow float32 rounding.
        assert joined.shape == whole.shape
        np.testing.assert_allclose(joined, whole, atol=1e-6, rtol=0)
        np.testing.assert_allclose(joined, resample(x, rate), atol=1e-6, rtol=0)


def test_offset_and_duration(tmp_path: Path) -> None:
    x = noise(3.0, SAMPLE_RATE)
    path = write(tmp_path / "x.wav", x, SAMPLE_RATE, "FLOAT")
    assert np.array_equal(load_audio(path, offset=0.5, duration=1.0), x[8000:24000])
    assert np.array_equal(load_audio(path, offset=2.5), x[40000:])
    assert np.array_equal(load_audio(path, duration=10.0), x)  # clipped at the end
    blocks = list(stream_audio(path, offset=0.25, duration=2.0, block_seconds=0.3))
    assert np.array_equal(np.concatenate(blocks), x[4000:36000])


def test_offset_and_duration_with_resampling(tmp_path: Path) -> None:
    x = noise(3.0, 44100)
    path = write(tmp_path / "x.wav", x, 44100, "FLOAT")
    segment = load_audio(path, offset=0.5, duration=1.0)
    expected = resample(x[22050:66150], 44100)
    assert segment.shape == expected.shape == (16000,)
    np.testing.assert_allclose(segment, expected, atol=1e-6, rtol=0)
    streamed = np.concatenate(list(stream_audio(path, offset=0.5, duration=1.0, block_seconds=0.3)))
    np.testing.assert_allclose(streamed, expected, atol=1e-6, rtol=0)


def test_offset_past_end_and_bad_ranges(tmp_path: Path) -> None:
    path = write(tmp_path / "x.wav", noise(1.0, SAMPLE_RATE), SAMPLE_RATE, "PCM_16")
    with pytest.raises(AudioFileError, match=r"offset 2\.000 s is past the end"):
        load_audio(path, offset=2.0)
    with pytest.raises(BadInputError, match="offset must be"):
        load_audio(path, offset=-1.0)
    with pytest.raises(BadInputError, match="duration must be"):
        load_audio(path, duration=0.0)


def test_streaming_yields_bounded_blocks_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 20-minute file never sits in memory: reads and blocks stay ~10 s."""
    rate, minutes, block_seconds = 8000, 20, 10.0
    tile = noise(1.0, rate)
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_U8") as out:
        for _ in range(minutes * 60):
            out.write(tile)
    total_in = minutes * 60 * rate

    reads: list[int] = []
    original_read = sf.SoundFile.read

    def spy(self: sf.SoundFile, frames: int = -1, *args: object, **kwargs: object) -> np.ndarray:
        reads.append(frames)
        return original_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    blocks = stream_audio(path, block_seconds=block_seconds)
    first = next(blocks)
    assert sum(reads) < 2 * block_seconds * rate  # lazy: only one block read so far
    longest, produced = len(first), len(first)
    for block in blocks:
        longest = max(longest, len(block))
        produced += len(block)
    assert longest <= block_seconds * SAMPLE_RATE
    assert produced == 2 * total_in
    assert -1 not in reads and max(reads) <= block_seconds * rate + 2 * 100  # + resampler margin
    assert sum(reads) < 1.1 * total_in


# --- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt"), [("a.wav", "WAV"), ("a.flac", "FLAC"), ("a.ogg", "OGG")])
def test_write_audio_follows_extension(tmp_path: Path, name: str, fmt: str) -> None:
    x = sine(1000, 0.5, SAMPLE_RATE)
    path = write_audio(tmp_path / "sub" / name, x * 3)  # clipped to [-1, 1]
    assert probe_audio(path).format == fmt
    assert len(load_audio(path)) == len(x)
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temp file left
    if fmt != "OGG":
        assert np.abs(load_audio(path)).max() == pytest.approx(1.0, abs=1e-4)


# --- bad input ----------------------------------------------------------------------------------


def _missing(tmp: Path) -> Path:
    return tmp / "nope.wav"


def _directory(tmp: Path) -> Path:
    (tmp / "folder.wav").mkdir()
    return tmp / "folder.wav"


def _zero_bytes(tmp: Path) -> Path:
    (tmp / "zero.wav").write_bytes(b"")
    return tmp / "zero.wav"


def _header_only(tmp: Path) -> Path:
    return write(tmp / "header_only.wav", np.zeros(0, dtype=np.float32), SAMPLE_RATE, "PCM_16")


def _first_20_bytes(tmp: Path) -> Path:
    good = write(tmp / "good.wav", sine(440, 0.5, SAMPLE_RATE), SAMPLE_RATE, "PCM_16")
    (tmp / "cut_header.wav").write_bytes(good.read_bytes()[:20])
    return tmp / "cut_header.wav"


def _text(tmp: Path) -> Path:
    (tmp / "notes.wav").write_text("this is not audio\n" * 20, encoding="utf-8")
    return tmp / "notes.wav"


def _nan(tmp: Path) -> Path:
    x = sine(440, 0.5, SAMPLE_RATE)
    x[1600] = np.nan
    return write(tmp / "nan.wav", x, SAMPLE_RATE, "FLOAT")


def _inf(tmp: Path) -> Path:
    x = sine(440, 0.5, SAMPLE_RATE).astype(np.float64)
    x[4000] = -np.inf
    return write(tmp / "inf.wav", x, SAMPLE_RATE, "DOUBLE")


def _cut_short(tmp: Path) -> Path:
    good = write(tmp / "good.wav", sine(440, 1.0, SAMPLE_RATE), SAMPLE_RATE, "PCM_16")
    data = good.read_bytes()
    (tmp / "cut_short.wav").write_bytes(data[: len(data) // 2 + 1])  # also mid-frame
    return tmp / "cut_short.wav"


def _cut_short_stereo_float(tmp: Path) -> Path:
    x = noise(1.0, SAMPLE_RATE, channels=2)
    good = write(tmp / "good.wav", x, SAMPLE_RATE, "FLOAT")  # has fact and PEAK chunks
    data = good.read_bytes()
    (tmp / "cut_short.wav").write_bytes(data[: len(data) - 1001])
    return tmp / "cut_short.wav"


def _cut_short_flac(tmp: Path) -> Path:
    good = write(tmp / "good.flac", noise(2.0, SAMPLE_RATE), SAMPLE_RATE, "PCM_16")
    data = good.read_bytes()
    (tmp / "cut_short.flac").write_bytes(data[: len(data) // 2])
    return tmp / "cut_short.flac"


BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (_missing, "file not found"),
    "directory": (_directory, "is a directory"),
    "zero bytes": (_zero_bytes, r"empty \(0 bytes\)"),
    "header only": (_header_only, "no audio samples"),
    "first 20 bytes": (_first_20_bytes, "corrupt or truncated header"),
    "text file": (_text, "not a readable audio file"),
    "NaN sample": (_nan, r"NaN or infinite samples \(first at 0\.100 s\)"),
    "inf sample": (_inf, r"NaN or infinite samples \(first at 0\.250 s\)"),
    "cut short": (_cut_short, "truncated: header promises 16000 frames"),
    "cut short float stereo": (_cut_short_stereo_float, "truncated: header promises 16000"),
    "cut short flac": (_cut_short_flac, "corrupt or truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_is_an_audio_file_error(tmp_path: Path, case: str) -> None:
    make, problem = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(AudioFileError, match=problem) as caught:
        load_audio(path)
    error = caught.value
    assert error.path == path
    assert str(error).startswith(f"{path}: ")  # names the file, then the problem
    assert "\n" not in str(error)
    assert isinstance(error, BadInputError) and error.exit_code == EXIT_BAD_INPUT == 2


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_streaming_raises_at_call_not_first_block(tmp_path: Path, case: str) -> None:
    """Header problems surface when stream_audio() is called; decode problems may
    only show up while reading (NaN at 0.25 s, a FLAC cut in the middle)."""
    make, problem = BAD_FILES[case]
    path = make(tmp_path)
    try:
        blocks = stream_audio(path, block_seconds=0.05)
    except AudioFileError as error:
        assert error.path == path
        return
    with pytest.raises(AudioFileError, match=problem):
        for _ in blocks:
            pass


def test_unreadable_file_monkeypatched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "locked.wav", sine(440, 0.1, SAMPLE_RATE), SAMPLE_RATE, "PCM_16")
    real_access = os.access

    def deny(p: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(str(p)) == path and mode == os.R_OK:
            return False
        return real_access(p, mode, *args, **kwargs)

    monkeypatch.setattr(audio_io.os, "access", deny)
    with pytest.raises(AudioFileError, match="permission denied") as caught:
        load_audio(path)
    assert caught.value.path == path and str(path) in str(caught.value)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files regardless of mode"
)
def test_unreadable_file_chmod(tmp_path: Path) -> None:
    path = write(tmp_path / "locked.wav", sine(440, 0.1, SAMPLE_RATE), SAMPLE_RATE, "PCM_16")
    path.chmod(0)
    try:
        with pytest.raises(AudioFileError, match="permission denied"):
            probe_audio(path)
    finally:
        path.chmod(0o644)


def test_odd_sample_rates_resample_in_bounded_memory_and_time(tmp_path: Path) -> None:
    """11,127 Hz has no common factor with 16 kHz: a sinc resampler on
    ``16000 / gcd`` phases took 6.3 GB for a 2 s clip; soxr's filter is bounded."""
    import time
    import tracemalloc

    rate = 11_127
    path = write(tmp_path / "odd.wav", sine(1000, 2.0, rate), rate, "FLOAT")
    tracemalloc.start()
    started = time.perf_counter()
    y = load_audio(path)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(y) == math.ceil(2 * rate * SAMPLE_RATE / rate)
    assert peak_hz(y, SAMPLE_RATE) == pytest.approx(1000, abs=1)
    assert peak < 50_000_000 and seconds < 10  # generous: the old path needed gigabytes


@pytest.mark.parametrize("rate", [1, 999, 400_000])
def test_implausible_sample_rates_are_refused_before_decoding(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"r{rate}.wav"
    sf.write(str(path), np.zeros(200, np.float32), rate, subtype="PCM_16")
    with pytest.raises(AudioFileError, match=f"sample rate {rate} Hz is outside 1000-384000 Hz"):
        probe_audio(path)
    with pytest.raises(AudioFileError, match=str(path.name)):
        load_audio(path)


def test_file_names_that_are_not_utf8_are_read(tmp_path: Path) -> None:
    """Python keeps such names as surrogates; libsndfile gets the original bytes."""
    import os

    plain = write(tmp_path / "plain.wav", sine(440, 0.5, SAMPLE_RATE), SAMPLE_RATE, "PCM_16")
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9-\xff.wav")
    os.rename(plain, odd)
    name = os.fsdecode(odd)
    assert probe_audio(name).frames == SAMPLE_RATE // 2
    assert load_audio(name).shape == (SAMPLE_RATE // 2,)
