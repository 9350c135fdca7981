"""Pictures of recordings: log-mel spectrogram with detected and reference events."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.cli import app
from serenesense_cli.data.scenes import synthesize_scene
from serenesense_cli.detect.plot import log_mel_image, mel_filterbank, plot_recording
from tests.reference_models import write_loudness_onnx

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scene():
    return synthesize_scene(seconds=20, seed=2, classes=("vehicle", "helicopter"), wind=0.0)


@pytest.fixture(scope="module")
def scene_wav(scene, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "scene.wav"
    sf.write(path, scene.audio, 16_000, subtype="PCM_16")
    return path


def _is_png(path: Path, *, most: int = 600_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert 5_000 < len(data) < most, len(data)


def test_mel_filterbank_covers_the_band():
    bank = mel_filterbank(16_000, 1024, 64)
    assert bank.shape == (64, 513) and (bank >= 0).all()
    assert (bank.max(axis=1) > 0.5).all()  # no empty filter


def test_log_mel_image_shows_a_tone_in_its_band(tmp_path):
    t = np.arange(16_000 * 4) / 16_000
    wave = np.where(t < 2, 0.5 * np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 4000 * t))
    path = tmp_path / "tones.wav"
    sf.write(path, wave.astype(np.float32), 16_000)
    image, seconds = log_mel_image(path, max_columns=100)
    assert image.shape == (64, 100) and seconds == pytest.approx(4.0)
    first, second = image[:, :40].mean(axis=1), image[:, 60:].mean(axis=1)
    assert first.argmax() < second.argmax()  # the low tone sits in a lower band


def _image_peak(path: Path, columns: int) -> tuple[np.ndarray, float, int]:
    tracemalloc.start()
    try:
        image, seconds = log_mel_image(path, max_columns=columns)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return image, seconds, peak


def test_long_recordings_give_a_bounded_image_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(0)
    peaks = {}
    for minutes in (1, 5):
        path = tmp_path / f"{minutes}.wav"
        with sf.SoundFile(path, "w", 16_000, 1, subtype="PCM_16") as handle:
            for _ in range(minutes):
                handle.write((0.1 * rng.standard_normal(16_000 * 60)).astype(np.float32))
        image, seconds, peaks[minutes] = _image_peak(path, 800)
        assert image.shape == (64, 800) and seconds == pytest.approx(60.0 * minutes)
        assert np.isfinite(image).all()
        assert image.std(axis=1).max() < 3  # white noise: every column alike in each band
    assert peaks[5] < 16_000 * 300 * 4 / 3, f"peak {peaks[5] / 1e6:.1f} MB"  # the file: 19 MB
    assert peaks[5] < 1.25 * peaks[1], peaks  # five times the audio, the same memory


def test_plot_recording_writes_a_png(scene, scene_wav, tmp_path):
    out = plot_recording(
        scene_wav,
        [{"class": "vehicle", "start": 2.0, "end": 6.0}],
        tmp_path / "pics" / "scene.png",
        reference=scene.events,
    )
    assert out == tmp_path / "pics" / "scene.png"
    _is_png(out)
    assert not list(out.parent.glob(".*.tmp"))


def test_cli_plot_command(runner, scene_wav, tmp_path):
    events = tmp_path / "scene.detections.csv"
    events.write_text(f"file,class,start,end\n{scene_wav},vehicle,2,6\nother.wav,vehicle,1,2\n")
    reference = tmp_path / "scene.labels.txt"
    reference.write_text("2.5\t6.5\tvehicle\n")
    out = tmp_path / "p.png"
    result = runner.invoke(
        app, ["plot", str(scene_wav), "--events", str(events), "-r", str(reference), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    _is_png(out)
    result = runner.invoke(app, ["plot", str(scene_wav), "-o", str(tmp_path / "p.jpg")])
    assert result.exit_code == 2 and "written as .png" in result.stderr
    result = runner.invoke(app, ["plot", str(tmp_path / "missing.wav"), "-o", str(out)])
    assert result.exit_code == 2 and "missing.wav" in result.stderr


def test_cli_detect_plot_draws_one_picture_per_recording(runner, scene, scene_wav, tmp_path):
    model = write_loudness_onnx(
        tmp_path / "m.onnx", floor_dbfs=scene.background_dbfs, classes=("sound", "quiet")
    )
    out = tmp_path / "results"
    result = runner.invoke(
        app, ["detect", str(scene_wav), "--model", str(model), "--out", str(out), "--plot"]
    )
    assert result.exit_code == 0, result.output
    _is_png(out / "scene.png")
    assert (out / "scene.selections.txt").is_file()
