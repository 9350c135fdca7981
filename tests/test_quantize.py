"""INT8 quantization: modes, front end kept in float, no ConvInteger, loads and runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serenesense_cli.cli import app

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> dict[str, Path]:
    """A CNN and a tiny AudioMAE with the tone classes, exported once."""
    import torch

    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    root = tmp_path_factory.mktemp("quantize")
    out = {}
    for name, args in (("cnn", {}), ("audiomae", {"size": "tiny", "depth": 1})):
        torch.manual_seed(0)
        model = create_model(name, num_classes=3, **args).eval()
        weights = save_model(root / name / "model.safetensors", model, ["high", "low", "noise"])
        out[name] = export_onnx(weights, parity_count=4).path
    return out


def _frontend(path: Path) -> dict[str, str]:
    from serenesense_cli.export import graph

    model = onnx.load(str(path))
    names = set(graph.frontend_nodes(model))
    return {n.name: n.op_type for n in model.graph.node if n.name in names}


def test_auto_mode_follows_the_model():
    from serenesense_cli.export.quantize import resolve_mode

    assert resolve_mode("auto", "audiomae") == "dynamic"
    assert resolve_mode("auto", "cnn") == "static"
    assert resolve_mode("auto", "crnn") == "static"
    assert resolve_mode("dynamic", "cnn") == "dynamic"


def test_export_records_the_registry_int8_mode_and_auto_reads_it(fp32):
    from serenesense_cli.export import graph
    from serenesense_cli.export.quantize import resolve_mode

    for name, mode in (("cnn", "static"), ("audiomae", "dynamic")):
        meta = graph.read_metadata(graph.load_model(fp32[name]))
        assert meta["export"]["int8_mode"] == mode
    # the declared mode wins over the name; a name the registry lacks is static
    assert resolve_mode("auto", "cnn", "dynamic") == "dynamic"
    assert resolve_mode("auto", "not-a-model") == "static"


def test_dynamic_audiomae_keeps_front_end_float_and_runs(fp32):
    from serenesense_cli.export import graph
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.inference.backends import open_onnx

    source = fp32["audiomae"]
    result = quantize_onnx(source, agreement_clips=4)
    assert result.path == source.with_name("model.int8.onnx")
    assert result.mode == "dynamic"
    assert result.size_int8 < result.size_fp32
    assert 0.0 <= result.top1_agreement <= 1.0
    assert result.quantized_ops.get("MatMulInteger", 0) > 0

    model = onnx.load(str(result.path))
    counts = graph.op_counts(model)
    assert "ConvInteger" not in counts
    assert counts.get("Conv") == 1  # the patch embedding stays float
    before = _frontend(source)
    after = {n.name: n.op_type for n in model.graph.node}
    assert all(after.get(name) == op for name, op in before.items())
    assert "STFT" not in before.values() and "MatMul" in before.values()  # DFT and mel
    for node in graph.frontend_nodes(model):
        assert after[node] not in graph.INTEGER_OPS

    meta = graph.read_metadata(graph.load_model(result.path))
    assert meta["export"]["quantization"]["mode"] == "dynamic"
    backend = open_onnx(result.path)
    probs = backend.predict_proba(np.zeros((2, backend.clip_samples), np.float32))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-4)


def test_static_cnn_through_the_cli_with_accuracy(runner, fp32, tone_prepared, tmp_path):
    from serenesense_cli.export import graph

    out = tmp_path / "cnn.int8.onnx"
    args = ["quantize", str(fp32["cnn"]), "--out", str(out), "--calib", str(tone_prepared)]
    args += ["--calib-clips", "8", "--data", str(tone_prepared), "--split", "test"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert "top-1 agreement" in result.stderr and "accuracy" in result.stderr
    saved = json.loads((tmp_path / "cnn.int8.quantize.json").read_text())  # for the report
    assert saved["format"] == "serenesense-quantize" and saved["mode"] == "static"
    assert saved["calibration_clips"] == 8 and saved["measured"]["split"] == "test"
    assert isinstance(saved["accuracy_int8"], float) and saved["top1_agreement"] >= 0
    assert str(tmp_path / "cnn.int8.quantize.json") in result.stderr

    model = onnx.load(str(out))
    counts = graph.op_counts(model)
    assert counts.get("QuantizeLinear", 0) > 0 and counts.get("DequantizeLinear", 0) > 0
    assert "ConvInteger" not in counts
    before = _frontend(fp32["cnn"])
    after = {n.name: n.op_type for n in model.graph.node}
    assert all(after.get(name) == op for name, op in before.items())

    as_json = runner.invoke(app, [*args[:3], str(tmp_path / "again.onnx"), *args[4:], "-f", "json"])
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert summary["mode"] == "static"
    assert summary["split"] == "test" and summary["split_clips"] > 0
    assert 0.0 <= summary["split_clip_agreement"] <= 1.0
    for key in ("accuracy_fp32", "accuracy_int8", "accuracy_change", "macro_f1_change"):
        assert isinstance(summary[key], float)
    assert "tone" in summary["calibration"] or "prepared set" in summary["calibration"]


def test_static_cnn_runs_its_inner_pools_and_relus_in_int8(fp32, tone_prepared, tmp_path):
    """Between integer convolutions nothing may fall back to float: a float
    Relu or pool there makes onnxruntime wrap each int8 conv in layout
    transposes (docs/performance.md)."""
    from serenesense_cli.export.quantize import quantize_onnx

    out = quantize_onnx(fp32["cnn"], tmp_path / "cnn.int8.onnx", calib=tone_prepared).path
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 3
    inner = pools[1:]  # the first follows the float first layer
    for pool in inner:
        assert producer[pool.input[0]].op_type == "DequantizeLinear", pool.name
        assert [c.op_type for c in consumers[pool.output[0]]] == ["QuantizeLinear"], pool.name
    # the inner convolutions' Relus were folded into their output ranges
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    relus_after_inner_convs = [
        c
        for conv in convs[1:]
        for q in consumers.get(conv.output[0], [])
        for c in consumers.get(q.output[0], [])
        if c.op_type == "Relu"
    ]
    assert not relus_after_inner_convs


def test_dynamic_mode_never_quantizes_conv(fp32, tmp_path):
    from serenesense_cli.export import graph
    from serenesense_cli.export.quantize import quantize_onnx

    result = quantize_onnx(
        fp32["cnn"], tmp_path / "cnn.dyn.onnx", mode="dynamic", agreement_clips=4
    )
    counts = graph.op_counts(onnx.load(str(result.path)))
    assert "ConvInteger" not in counts and counts["Conv"] == 3


def _toy_graph(op: str) -> object:
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x", "w"], ["y"], name="body_op")
    return helper.make_model(
        helper.make_graph(
            [node],
            "toy",
            [
                helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 4, 4]),
                helper.make_tensor_value_info("w", TensorProto.UINT8, [1, 1, 1, 1]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        )
    )


def test_int8_graph_check_refuses_convinteger_and_a_quantized_front_end():
    from serenesense_cli.export.quantize import QuantizationError, check_int8_graph

    with pytest.raises(QuantizationError, match="ConvInteger"):
        check_int8_graph(_toy_graph("ConvInteger"), {}, "x.onnx")
    with pytest.raises(QuantizationError, match="front end"):
        check_int8_graph(_toy_graph("MatMulInteger"), {"body_op": "MatMul"}, "x.onnx")
    assert check_int8_graph(_toy_graph("MatMulInteger"), {}, "x.onnx") == {"MatMulInteger": 1}


def test_refuses_bad_inputs(runner, fp32, tmp_path):
    from serenesense_cli.export.quantize import quantize_onnx

    int8 = quantize_onnx(fp32["audiomae"], tmp_path / "a.int8.onnx", agreement_clips=2).path
    again = runner.invoke(app, ["quantize", str(int8)])
    assert again.exit_code == 2 and "already quantized" in again.stderr
    assert runner.invoke(app, ["quantize", str(tmp_path / "none.onnx")]).exit_code == 2
    assert runner.invoke(app, ["quantize", str(fp32["cnn"]), "--mode", "fast"]).exit_code == 2
    same = runner.invoke(app, ["quantize", str(fp32["cnn"]), "--out", str(fp32["cnn"])])
    assert same.exit_code == 2 and "would overwrite an input" in same.stderr
    link = tmp_path / "link.onnx"
    link.symlink_to(fp32["cnn"])
    linked = runner.invoke(app, ["quantize", str(fp32["cnn"]), "--out", str(link)])
    assert linked.exit_code == 2 and "would overwrite an input" in linked.stderr
