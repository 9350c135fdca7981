"""The Python API (serenesense_cli.api, docs/api.md) on a tiny ONNX model."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import serenesense_cli
from serenesense_cli import api
from serenesense_cli.cli import app
from serenesense_cli.data.scenes import synthesize_scene
from serenesense_cli.errors import BadInputError, SereneSenseError
from tests.conftest import REPO_ROOT
from tests.reference_models import write_loudness_onnx

pytest.importorskip("onnx")  # builds the model; the API itself needs onnxruntime only


@pytest.fixture(scope="module")
def scene():
    return synthesize_scene(seconds=16, seed=2, classes=("vehicle", "helicopter"), wind=0.0)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, scene) -> Path:
    root = tmp_path_factory.mktemp("api")
    return write_loudness_onnx(
        root / "loudness.onnx", floor_dbfs=scene.background_dbfs, classes=("sound", "quiet")
    )


@pytest.fixture(scope="module")
def model(model_path):
    return api.load_model(model_path, threads=1)


def test_import_stays_light_and_top_level_names_are_the_api():
    code = (
        "import sys, serenesense_cli; "
        "print(sorted(m for m in ('numpy', 'serenesense_cli.api') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    assert done.stdout.strip() == "[]"
    assert set(serenesense_cli.__all__) == {*api.__all__, "__version__"}
    assert serenesense_cli.detect_file is api.detect_file
    assert set(api.__all__) <= set(dir(api))
    with pytest.raises(AttributeError):
        _ = serenesense_cli.no_such_name
    with pytest.raises(AttributeError):
        _ = api.no_such_name


def test_lazy_names_are_the_library_functions():
    for name, (module, attribute) in api._LAZY.items():
        if module.startswith(("serenesense_cli.train", "serenesense_cli.export")):
            pytest.importorskip("torch")
        assert getattr(api, name) is getattr(importlib.import_module(module), attribute)


def test_load_model_reads_the_metadata(model, model_path):
    assert model.kind == "onnx" and model.path == model_path
    assert model.classes == ("sound", "quiet")
    assert model.sample_rate == 16_000 and model.clip_samples == 48_000


def test_classify_scores_a_clip_at_any_rate(model, scene):
    loud = scene.audio[int(scene.events[0].start * 16_000) :][: 3 * 16_000]
    quiet = np.zeros(44_100, np.float32)
    sound = api.classify(loud, 16_000, model)
    assert list(sound) == ["sound", "quiet"] and sum(sound.values()) == pytest.approx(1.0)
    assert sound["sound"] > 0.5 > api.classify(quiet, 44_100, model)["sound"]
    # the evaluate policy: a short clip is one zero-padded window
    short = np.asarray(loud[:8000])
    padded = np.zeros(model.clip_samples, np.float32)
    padded[:8000] = short
    expected = model.predict_proba(padded[None, :])[0]
    assert list(api.classify(short, 16_000, model).values()) == pytest.approx(expected.tolist())


def test_detect_waveform_and_file_agree_with_the_command(model, model_path, scene, tmp_path):
    wav = tmp_path / "scene.wav"
    sf.write(wav, scene.audio, 16_000, subtype="FLOAT")
    settings = {"ignore": ("quiet",)}  # the background class opens no event
    in_memory = api.detect_waveform(scene.audio, 16_000, model, **settings)
    from_file = api.detect_file(wav, model, config=api.DetectConfig(**settings))
    truth = [e for e in scene.events if e.end < scene.audio.size / 16_000 - 1]
    assert len(in_memory) == len(truth) >= 1
    assert all(e.class_name == "sound" and e.state == "closed" for e in in_memory)
    for got, true in zip(in_memory, truth, strict=True):
        assert got.start < true.end and got.end > true.start  # timing: test_detect*.py
    key = [(e.class_name, e.start, e.end, round(e.peak, 6)) for e in from_file]
    assert key == [(e.class_name, e.start, e.end, round(e.peak, 6)) for e in in_memory]

    from typer.testing import CliRunner

    done = CliRunner().invoke(
        app,
        ["detect", str(wav), "--model", str(model_path), "--ignore", "quiet", "--format", "jsonl"],
    )
    assert done.exit_code == 0, done.output
    records = [json.loads(line) for line in done.stdout.splitlines()]
    closed = [(r["class"], r["start"], r["end"]) for r in records if r.get("state") == "closed"]
    assert closed == [(e.class_name, e.start, e.end) for e in from_file]


def test_bad_input_raises_the_library_errors(model, tmp_path):
    with pytest.raises(BadInputError, match="mono"):
        api.classify(np.zeros((100, 2)), 16_000, model)
    with pytest.raises(BadInputError, match="NaN"):
        api.detect_waveform(np.full(100, np.nan), 16_000, model)
    with pytest.raises(BadInputError, match="sample rate"):
        api.classify(np.zeros(100), 10, model)
    with pytest.raises(BadInputError, match="no class 'tank'"):
        api.detect_waveform(np.zeros(100), 16_000, model, ignore=("tank",))
    with pytest.raises(TypeError):
        api.detect_waveform(np.zeros(100), 16_000, model, config=api.DetectConfig(), smooth=2)
    with pytest.raises(SereneSenseError) as missing:
        api.detect_file(tmp_path / "missing.wav", model)
    assert "missing.wav" in missing.value.message
    with pytest.raises(SereneSenseError, match="not found"):
        api.load_model(tmp_path / "missing.onnx")
