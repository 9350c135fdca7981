"""Detection on ONNX models runs in a process that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.data.scenes import synthesize_scene
from tests.reference_models import write_loudness_onnx

HEAVY = ("torch", "torchaudio", "timm", "onnx", "sklearn")


@pytest.fixture(scope="module")
def scene_wav(tmp_path_factory) -> tuple[Path, object]:
    scene = synthesize_scene(seconds=20, seed=2, classes=("vehicle", "helicopter"), wind=0.0)
    path = tmp_path_factory.mktemp("onnx_scene") / "scene.wav"
    sf.write(path, scene.audio, 16_000, subtype="PCM_16")
    return path, scene


def _detect_without_torch(*args: str) -> tuple[list[dict], str]:
    """Run ``serenesense detect ... --format jsonl`` in a fresh interpreter; fail if torch loads."""
    code = textwrap.dedent(
        f"""
        import sys
        from serenesense_cli.cli import main
        try:
            main(["detect", *{list(args)!r}, "--format", "jsonl"])
        except SystemExit as done:
            code = done.code
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        print("HEAVY=" + ",".join(heavy), "EXIT=" + str(code), file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert "HEAVY= EXIT=0" in done.stderr, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_onnx_detection_imports_no_torch(scene_wav, tmp_path):
    path, scene = scene_wav
    model = write_loudness_onnx(
        tmp_path / "loudness.onnx", floor_dbfs=scene.background_dbfs, classes=("sound", "quiet")
    )
    events, _ = _detect_without_torch(str(path), "--model", str(model), "--threshold", "quiet=1")
    found = [e for e in events if e["class"] == "sound"]
    truth = [e for e in scene.events if e.end < 19]
    assert len(found) == len(truth) >= 1
    for got, true in zip(found, truth, strict=True):
        assert abs(got["start"] - true.start) <= 1.0 and abs(got["end"] - true.end) <= 1.0


@pytest.mark.slow
def test_int8_onnx_detection_imports_no_torch(scene_wav, tmp_path):
    import torch

    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    path, _ = scene_wav
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=3)
    weights = save_model(tmp_path / "weights" / "best.safetensors", model, ("a", "b", "c"))
    clips = np.random.default_rng(0).normal(0, 0.1, (4, model.clip_samples)).astype(np.float32)
    fp32 = export_onnx(weights, tmp_path / "model.onnx", parity_clips=clips).path
    int8 = quantize_onnx(fp32, tmp_path / "model.int8.onnx", calib_clips=8, agreement_clips=8).path
    # an untrained model scores about 1/3 per class: a low threshold gives events
    events, stderr = _detect_without_torch(
        str(path), "--model", str(int8), "--threshold", "0.2", "--no-spin"
    )
    assert {e["class"] for e in events} == {"a", "b", "c"}
    assert all(e["state"] == "closed" and e["file"] == str(path) for e in events)
    assert "1 file(s), 0 failed" in stderr


def test_open_onnx_reads_metadata_from_the_session_and_can_sleep_idle_threads(tmp_path):
    from serenesense_cli.inference.backends import open_onnx

    model = write_loudness_onnx(tmp_path / "loudness.onnx", floor_dbfs=-60, classes=("a", "b"))
    spinning = open_onnx(model, threads=2)
    sleeping = open_onnx(model, threads=2, spin=False)
    assert spinning.classes == sleeping.classes == ("a", "b")
    assert sleeping.metadata == spinning.metadata and spinning.metadata["sample_rate"] == 16_000
    options = sleeping.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_open_onnx_turns_off_qdq_propagation(tmp_path, monkeypatch):
    """The measured setting (docs/performance.md): no int8 MaxPool between transposes."""
    import onnxruntime as ort

    from serenesense_cli.inference.backends import DISABLED_OPTIMIZERS, open_onnx

    seen: list[dict] = []
    real = ort.InferenceSession

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    model = write_loudness_onnx(tmp_path / "loudness.onnx", floor_dbfs=-60, classes=("a", "b"))
    open_onnx(model)
    assert seen and seen[0]["disabled_optimizers"] == list(DISABLED_OPTIMIZERS)
    assert "QDQPropagationTransformer" in DISABLED_OPTIMIZERS


def test_onnx_without_serenesense_metadata_is_refused_by_name(tmp_path, runner):
    import onnx

    from serenesense_cli.cli import app

    model = write_loudness_onnx(tmp_path / "loudness.onnx", floor_dbfs=-60)
    proto = onnx.load(str(model))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    wav = tmp_path / "quiet.wav"
    sf.write(wav, np.zeros(16_000, np.float32), 16_000)
    result = runner.invoke(app, ["detect", str(wav), "--model", str(bare)])
    assert result.exit_code != 0
    assert f"{bare}: this ONNX model has no serenesense metadata" in result.output


def test_cli_ignore_keeps_a_background_class_out_of_the_events(runner, scene_wav, tmp_path):
    from serenesense_cli.cli import app

    path, scene = scene_wav
    model = write_loudness_onnx(
        tmp_path / "loudness.onnx", floor_dbfs=scene.background_dbfs, classes=("sound", "quiet")
    )
    args = ["detect", str(path), "--model", str(model), "--format", "jsonl"]
    plain = [json.loads(line) for line in runner.invoke(app, args).stdout.splitlines()]
    assert "quiet" in {e["class"] for e in plain}, "without --ignore the gaps are events"
    result = runner.invoke(app, [*args, "--ignore", "quiet"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and {e["class"] for e in events} == {"sound"}
    bad = runner.invoke(app, [*args, "--ignore", "lorry"])
    assert bad.exit_code == 2 and "no class 'lorry'" in bad.output


def _with_metadata(source, path, meta):
    import json

    import onnx
    from onnx import helper

    proto = onnx.load(str(source))
    del proto.metadata_props[:]
    raw = meta if isinstance(meta, str) else json.dumps(meta)
    helper.set_model_props(proto, {"serenesense": raw})
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": ["a", "b", "c"]}, "scores 2 classes but the metadata names 3"),
        ({"classes": None}, "'classes' must list at least 2"),
        ({"classes": ["only"]}, "'classes' must list at least 2"),
        ({"sample_rate": 0}, "'sample_rate' must be an integer"),
        ({"sample_rate": "16000"}, "'sample_rate' must be an integer"),
        ({"clip_seconds": 0}, "'clip_seconds' must be a number"),
        ({"clip_seconds": -3.0}, "'clip_seconds' must be a number"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_onnx_metadata_is_checked_not_trusted(tmp_path, runner, change, message):
    import json

    import onnx

    from serenesense_cli.cli import app

    source = write_loudness_onnx(tmp_path / "loudness.onnx", floor_dbfs=-60)
    props = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    meta = change if isinstance(change, str) else {**json.loads(props["serenesense"]), **change}
    bad = _with_metadata(source, tmp_path / "bad.onnx", meta)
    wav = tmp_path / "quiet.wav"
    sf.write(wav, np.zeros(16_000 * 3, np.float32), 16_000)
    result = runner.invoke(app, ["detect", str(wav), "--model", str(bad), "--windows"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and str(bad) in result.stderr
    assert "this is a bug" not in result.stderr


def test_onnx_graph_with_another_input_name_is_refused(tmp_path, runner):
    import onnx

    from serenesense_cli.cli import app

    proto = onnx.load(str(write_loudness_onnx(tmp_path / "l.onnx", floor_dbfs=-60)))
    proto.graph.input[0].name = "audio"
    for node in proto.graph.node:
        node.input[:] = ["audio" if name == "waveform" else name for name in node.input]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(proto, str(renamed))
    wav = tmp_path / "quiet.wav"
    sf.write(wav, np.zeros(16_000 * 3, np.float32), 16_000)
    result = runner.invoke(app, ["detect", str(wav), "--model", str(renamed)])
    assert result.exit_code == 2, result.output
    assert "one input named 'waveform', not: audio" in result.stderr
