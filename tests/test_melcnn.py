"""MelCNN, the recommended model: sizes, any-length pooling, export and static INT8."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from serenesense_cli.cli import app
from serenesense_cli.errors import ModelError
from serenesense_cli.models import create_model, get_model_spec, list_models, recommended_model
from serenesense_cli.models.registry import count_parameters

TINY = {"width": 0.25, "clip_seconds": 1.0}


def test_exactly_one_model_is_recommended_and_it_is_melcnn():
    assert recommended_model() == "melcnn"
    assert [n for n in list_models() if get_model_spec(n).recommended] == ["melcnn"]


def test_models_command_marks_the_recommended_model(runner):
    result = runner.invoke(app, ["models", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows if r["recommended"]] == ["melcnn"]
    assert all(isinstance(r["recommended"], bool) for r in rows)
    table = runner.invoke(app, ["models"])
    assert "recommended" in table.stdout


@pytest.mark.parametrize(
    ("width", "expected"), [(0.5, 295_839), (1.0, 1_179_063), (2.0, 4_708_071)]
)
def test_default_sizes_and_width_multiplier(width, expected):
    model = create_model("melcnn", num_classes=7, width=width)
    assert count_parameters(model) == expected


def test_default_model_shapes():
    model = create_model("melcnn", num_classes=7).eval()
    assert model.clip_samples == 48_000
    features = model.frontend(torch.zeros(2, model.clip_samples))
    assert features.shape == (2, 1, 64, 151)  # 64 mel bands, 20 ms hop, centred frames
    with torch.no_grad():
        assert model(torch.randn(2, model.clip_samples) * 0.1).shape == (2, 7)


def test_pooling_accepts_any_number_of_frames():
    model = create_model("melcnn", num_classes=3, **TINY).eval()
    with torch.no_grad():
        for frames in (40, 101, 333):
            assert model.classify_features(torch.randn(2, 1, 64, frames)).shape == (2, 3)


def test_front_end_ignores_the_recording_gain():
    """The window's mean log-mel is removed: a quieter copy gives the same input."""
    model = create_model("melcnn", num_classes=3, **TINY).eval()
    wave = torch.randn(1, model.clip_samples) * 0.1
    wave[:, : model.clip_samples // 2] *= 0.2  # quieter first half: dynamics stay
    for gain in (0.3, 2.0):
        torch.testing.assert_close(
            model.frontend(wave * gain), model.frontend(wave), atol=1e-3, rtol=0
        )
    with torch.no_grad():
        torch.testing.assert_close(model(wave * 0.3), model(wave), atol=1e-3, rtol=0)


def test_front_end_keeps_spectral_shape_and_dynamics():
    model = create_model("melcnn", num_classes=3, **TINY).eval()
    t = torch.arange(model.clip_samples) / model.sample_rate
    low, high = torch.sin(2 * torch.pi * 200 * t), torch.sin(2 * torch.pi * 3000 * t)
    low_f, high_f = model.frontend(low[None] * 0.1), model.frontend(high[None] * 0.1)
    assert float((low_f - high_f).abs().max()) > 1.0  # colour is not normalised away
    burst = torch.randn(model.clip_samples, generator=torch.Generator().manual_seed(0)) * 0.001
    burst[: model.clip_samples // 4] *= 100  # 40 dB louder first quarter
    feats = model.frontend(burst[None] * 0.1)[0, 0]
    frames = feats.shape[-1]
    loud, quiet = feats[:, 2 : frames // 4 - 2].mean(), feats[:, -frames // 4 :].mean()
    assert float(loud - quiet) > 3.0  # 40 dB louder: 9.2 in ln power, halved by (x - m) / 2s


def test_level_can_be_kept_as_an_option():
    model = create_model("melcnn", num_classes=3, level="keep", **TINY).eval()
    wave = torch.randn(1, model.clip_samples) * 0.1
    loud, quiet = model.frontend(wave), model.frontend(wave * 0.1)
    assert float((loud - quiet).mean()) > 1.0
    assert model.frontend.config()["level"] == "keep"


def test_unknown_level_mode_is_refused():
    from serenesense_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="level"):
        create_model("melcnn", num_classes=3, level="clip", **TINY)


def test_bad_sizes_are_refused():
    with pytest.raises(ModelError, match="width"):
        create_model("melcnn", num_classes=3, width=0)
    with pytest.raises(ModelError, match="n_mels"):
        create_model("melcnn", num_classes=3, n_mels=16)


@pytest.fixture(scope="module")
def melcnn_onnx(tmp_path_factory):
    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.models.artifact import save_model

    torch.manual_seed(0)
    model = create_model("melcnn", num_classes=3, **TINY).eval()
    root = tmp_path_factory.mktemp("melcnn")
    weights = save_model(root / "model.safetensors", model, ["high", "low", "noise"])
    return weights, export_onnx(weights, parity_count=4).path


def test_exports_waveform_in_and_matches_torch(melcnn_onnx):
    ort = pytest.importorskip("onnxruntime")
    from serenesense_cli.models.artifact import load_model

    weights, onnx_path = melcnn_onnx
    model = load_model(weights).model.eval()
    waves = (np.random.default_rng(0).standard_normal((3, model.clip_samples)) * 0.1).astype(
        np.float32
    )
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(["logits"], {session.get_inputs()[0].name: waves})[0]
    with torch.no_grad():
        torch_out = model(torch.from_numpy(waves)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-3, rtol=1e-3)


def test_static_int8_keeps_front_end_float_and_runs(melcnn_onnx, tone_prepared):
    pytest.importorskip("onnxruntime")
    from serenesense_cli.export.quantize import quantize_onnx

    _, onnx_path = melcnn_onnx
    result = quantize_onnx(onnx_path, calib=tone_prepared, data=tone_prepared, split="test")
    assert result.mode == "static"
    assert result.excluded_nodes > 0
    assert "ConvInteger" not in result.quantized_ops
    assert sum(result.quantized_ops.values()) > 0
    assert result.path.is_file() and result.size_int8 < result.size_fp32


def test_static_int8_keeps_the_first_and_last_layer_float(melcnn_onnx, tone_prepared, tmp_path):
    onnx = pytest.importorskip("onnx")
    from serenesense_cli.export import graph
    from serenesense_cli.export.quantize import LAYER_OPS, quantize_onnx

    _, onnx_path = melcnn_onnx
    fp32 = onnx.load(str(onnx_path))
    edges = graph.edge_layers(fp32, LAYER_OPS, graph.frontend_nodes(fp32))
    assert len(edges) == 2
    out = quantize_onnx(onnx_path, tmp_path / "m.int8.onnx", calib=tone_prepared).path
    model = onnx.load(str(out))
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    nodes = {n.name: n for n in model.graph.node}
    for name in edges:
        assert nodes[name].input[1] in floats, f"{name} weights stay float"
    inner = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in edges]
    assert inner and all(n.input[1] not in floats for n in inner), "the rest is int8"
