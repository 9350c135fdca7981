"""ONNX export: checker, metadata, parity, dynamic batch, failure modes, edge bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serenesense_cli import __version__
from serenesense_cli.cli import app

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CLASSES = ["high", "low", "noise"]  # the tone_prepared classes, in order

SMALL_MODELS = {
    "cnn": {"mfcc_zscore": "dataset"},  # the default recipe's front end; crnn covers "clip"
    # A narrow, 1 s CRNN keeps the test quick; the LSTM path is the same.
    "crnn": {"clip_seconds": 1.0, "channels": [8, 16, 32], "lstm_sizes": [16, 8], "hidden": 16},
    "audiomae": {"size": "tiny", "depth": 1},
    "melcnn": {"width": 0.25, "clip_seconds": 1.0},
}


def _save(path: Path, name: str, seed: int = 0, **args) -> Path:
    import torch

    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    torch.manual_seed(seed)
    model = create_model(name, num_classes=len(CLASSES), **args).eval()
    return save_model(path, model, CLASSES)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each small model saved as .safetensors and exported once: name -> (weights, onnx)."""
    from serenesense_cli.export.onnx import export_onnx

    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, args in SMALL_MODELS.items():
        weights = _save(root / f"{name}.safetensors", name, **args)
        result = export_onnx(weights, parity_count=6)
        out[name] = (weights, result.path)
    return out


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_export_is_checked_and_carries_metadata(exported, name):
    from serenesense_cli.export import graph
    from serenesense_cli.export.graph import load_model, read_metadata

    weights, path = exported[name]
    assert path == weights.with_suffix(".onnx")  # default: beside the weights
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["waveform"]
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    assert model.opset_import[0].version >= 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)

    meta = read_metadata(load_model(path))
    assert meta["classes"] == CLASSES
    assert meta["sample_rate"] == 16000
    assert meta["model"]["name"] == name
    assert meta["export"]["opset"] == 18
    assert meta["export"]["quantization"] is None
    assert meta["export"]["parity"]["max_abs_diff"] <= 1e-3
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["classes"]) == CLASSES
    assert props["model_name"] == name
    assert graph.frontend_nodes(model), "front-end nodes must be findable for quantization"
    # The input length is fixed, so no ops fit it to the window (the only Pad
    # left is the reflect padding of centred frames), and no STFT op.
    assert not {"ConstantOfShape", "STFT"} & set(graph.op_counts(model))
    for pad in (n for n in model.graph.node if n.op_type == "Pad"):
        assert any(a.name == "mode" and a.s == b"reflect" for a in pad.attribute), pad.name
    if name == "crnn":
        assert "LSTM" in graph.op_counts(model)


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_onnx_matches_torch_with_a_dynamic_batch(exported, name):
    import torch

    from serenesense_cli.inference.backends import open_onnx
    from serenesense_cli.models.artifact import load_model

    weights, path = exported[name]
    backend = open_onnx(path)
    model = load_model(weights).model
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        waves = (0.1 * rng.standard_normal((batch, backend.clip_samples))).astype(np.float32)
        got = backend.predict_proba(waves)
        with torch.no_grad():
            expected = torch.softmax(model(torch.from_numpy(waves)), -1).numpy()
        assert got.shape == (batch, len(CLASSES))
        assert np.abs(got - expected).max() < 1e-4


def test_lstm_swap_exports_layers_and_directions(tmp_path):
    import onnxruntime as ort
    import torch
    from torch import nn

    from serenesense_cli.export.lstm import replace_lstms

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 3, num_layers=2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    torch.manual_seed(0)
    reference = Toy().eval()
    exportable = Toy().eval()
    exportable.load_state_dict(reference.state_dict())
    assert replace_lstms(exportable) == 1
    x = torch.randn(2, 5, 4)
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(
        exportable,
        (x,),
        str(path),
        dynamo=True,
        opset_version=18,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = torch.randn(3, 5, 4)
    (got,) = session.run(None, {session.get_inputs()[0].name: y.numpy()})
    with torch.no_grad():
        assert np.abs(got - reference(y).numpy()).max() < 1e-5
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("LSTM") == 2


@pytest.fixture
def cached_export(exported, monkeypatch):
    """Skip the (slow) dynamo exporter: hand back the CNN graph exported earlier."""
    from serenesense_cli.export import onnx as export_module

    proto_bytes = Path(exported["cnn"][1]).read_bytes()

    def fake_export(model, clip_samples, opset):
        return onnx.load_from_string(proto_bytes)

    monkeypatch.setattr(export_module, "_export_proto", fake_export)
    return exported["cnn"][0]


def test_cli_exports_a_run_folder_with_its_own_data(runner, cached_export, tone_prepared, tmp_path):
    run = tmp_path / "runs" / "cnn"
    (run / "weights").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        target = run / "weights" / f"best{suffix}"
        target.write_bytes(cached_export.with_suffix(suffix).read_bytes())
    (run / "config.toml").write_text(f'model = "cnn"\ndata = "{tone_prepared}"\n')

    result = runner.invoke(app, ["export", str(run)])
    assert result.exit_code == 0, result.output
    path = run / "export" / "model.onnx"
    assert result.stdout.strip().splitlines()[-1] == str(path)
    assert "parity: max |Δp|" in result.stderr
    assert "the model's training data" in result.stderr
    from serenesense_cli.export.graph import load_model, read_metadata

    meta = read_metadata(load_model(path))
    assert meta["export"]["data"] == str(Path(tone_prepared).resolve())
    assert "val" in meta["export"]["parity"]["source"]

    as_json = runner.invoke(
        app,
        ["export", str(run), "--out", str(tmp_path / "x.onnx"), "--format", "json"],
    )
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert summary["top1_agreement"] == 1.0
    assert summary["max_abs_diff"] <= 1e-3


def test_broken_parity_fails_loudly_and_writes_nothing(runner, cached_export, tmp_path):
    other = _save(tmp_path / "other.safetensors", "cnn", seed=123)  # different weights
    out = tmp_path / "broken.onnx"
    result = runner.invoke(app, ["export", str(other), "--out", str(out), "--tolerance", "1e-6"])
    assert result.exit_code == 1
    assert "parity check failed" in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".broken.onnx.*"))


def test_bad_requests_exit_2(runner, exported, tmp_path):
    weights, path = exported["cnn"]
    assert runner.invoke(app, ["export", str(weights), "--opset", "13"]).exit_code == 2
    assert runner.invoke(app, ["export", str(path)]).exit_code == 2  # already ONNX
    assert runner.invoke(app, ["export", str(tmp_path / "missing")]).exit_code == 2
    bad_out = runner.invoke(app, ["export", str(weights), "--out", str(tmp_path / "m.txt")])
    assert bad_out.exit_code == 2


def test_bundle_from_fp32_onnx(runner, exported, tmp_path):
    _, path = exported["audiomae"]
    bundle = tmp_path / "pi-bundle"
    result = runner.invoke(app, ["export", str(path), "--bundle", str(bundle)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(bundle)
    names = sorted(p.name for p in bundle.iterdir())
    assert names == sorted(
        [
            "model.int8.onnx",
            "model.int8.quantize.json",
            "requirements.txt",
            "serenesense-detect.service",
            "README.md",
        ]
    )

    from serenesense_cli.export.graph import load_model, read_metadata
    from serenesense_cli.inference.backends import open_onnx

    meta = read_metadata(load_model(bundle / "model.int8.onnx"))
    assert meta["export"]["quantization"]["mode"] == "dynamic"
    backend = open_onnx(bundle / "model.int8.onnx")
    assert backend.predict_proba(np.zeros((1, backend.clip_samples), np.float32)).shape == (1, 3)

    requirements = (bundle / "requirements.txt").read_text()
    packages = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    # the lean install: serenesense without extras (its core is the ONNX runtime)
    assert packages == [f"serenesense~={__version__}"]

    service = (bundle / "serenesense-detect.service").read_text()
    assert "serenesense detect" in service and "--mic" in service
    assert "--model /opt/serenesense/model.int8.onnx" in service
    assert "--format jsonl" in service and "--no-spin" in service
    assert "Restart=on-failure" in service
    assert "StandardOutput=append:/var/log/serenesense/events.jsonl" in service
    assert "[Install]" in service

    readme = (bundle / "README.md").read_text()
    for step in ("pip install -r", "systemctl enable", "journalctl", "--profile pi5"):
        assert step in readme
    assert "--no-deps" not in readme and "[train]" not in readme


def test_bundle_copies_an_int8_model(exported, tmp_path):
    from serenesense_cli.export.bundle import make_bundle
    from serenesense_cli.export.quantize import quantize_onnx

    _, path = exported["audiomae"]
    int8 = quantize_onnx(path, tmp_path / "given.int8.onnx", mode="dynamic").path
    made = make_bundle(int8, tmp_path / "bundle")
    assert made.quantize is None
    assert (tmp_path / "bundle" / "model.int8.onnx").read_bytes() == int8.read_bytes()
