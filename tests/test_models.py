"""Every registered model: forward, backward, parameter counts, metadata round-trip."""

from __future__ import annotations

import pytest
import torch

from serenesense_cli.errors import ModelError
from serenesense_cli.models import create_model, list_models
from serenesense_cli.models.artifact import load_model, read_metadata, save_model
from serenesense_cli.models.registry import count_parameters, get_model_spec

# Tiny variants keep the suite fast; the real default sizes get their own test.
TINY_ARGS: dict[str, dict] = {
    "cnn": {},
    "crnn": {},
    "audiomae": {"size": "tiny", "depth": 2},
    "melcnn": {"width": 0.25, "clip_seconds": 1.0},
}


def test_registry_lists_builtin_models():
    assert {"cnn", "crnn", "audiomae"} <= set(list_models())


def test_unknown_model_suggests_closest():
    with pytest.raises(ModelError) as info:
        get_model_spec("cnnn")
    assert "cnn" in (info.value.hint or "")


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **TINY_ARGS.get(name, {}))
    waves = torch.randn(2, model.clip_samples) * 0.1
    model.train()
    logits = model(waves)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        out1, out2 = model(waves), model(waves)
    assert torch.equal(out1, out2), "eval mode must be deterministic (no augmentation)"


@pytest.mark.parametrize(("name", "expected"), [("cnn", 241_671), ("crnn", 1_532_935)])
def test_reference_parameter_counts(name, expected):
    assert count_parameters(create_model(name, num_classes=7)) == expected


def test_reference_input_shapes():
    cnn = create_model("cnn", num_classes=7).eval()
    crnn = create_model("crnn", num_classes=7).eval()
    assert cnn.frontend(torch.zeros(1, cnn.clip_samples)).shape == (1, 3, 40, 92)
    assert crnn.frontend(torch.zeros(1, crnn.clip_samples)).shape == (1, 3, 40, 124)


def test_crnn_n_mfcc_sizes_its_front_end_and_its_lstm_alike():
    crnn = create_model("crnn", num_classes=3, n_mfcc=24, clip_seconds=1.0).eval()
    waves = torch.randn(2, crnn.clip_samples) * 0.1
    assert crnn.frontend(waves).shape[1:3] == (3, 24)
    assert crnn.lstms[0].input_size == 192 * 3  # 24 coefficients pooled three times by 2
    with torch.no_grad():
        assert crnn(waves).shape == (2, 3)


def test_audiomae_base_is_vit_b16():
    model = create_model("audiomae", num_classes=7)
    assert 85_000_000 <= model.encoder_parameters() <= 86_000_000
    assert model.clip_samples == 160_000
    assert model.frontend(torch.zeros(1, model.clip_samples)).shape == (1, 1, 128, 128)
    head = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(h.in_features, h.out_features) for h in head] == [(768, 768), (768, 7)]


def test_audiomae_sizes():
    widths = {
        size: int(create_model("audiomae", num_classes=3, size=size, depth=1).encoder.embed_dim)
        for size in ("tiny", "small", "base")
    }
    assert widths == {"tiny": 192, "small": 384, "base": 768}
    with pytest.raises(ModelError):
        create_model("audiomae", num_classes=3, size="huge")


def test_bad_model_arguments_are_model_errors():
    with pytest.raises(ModelError):
        create_model("cnn", num_classes=3, no_such_argument=1)


@pytest.mark.parametrize("name", list_models())
def test_artifact_round_trip(tmp_path, name):
    torch.manual_seed(1)
    model = create_model(name, num_classes=3, **TINY_ARGS.get(name, {})).eval()
    classes = ("a", "b<script>", "c")
    path = save_model(tmp_path / "m.safetensors", model, classes, metrics={"val_acc": 0.5})
    meta = read_metadata(path)
    assert meta["classes"] == list(classes)
    assert meta["model"]["name"] == name
    assert (tmp_path / "m.json").is_file()
    loaded = load_model(path)
    waves = torch.randn(2, model.clip_samples) * 0.1
    with torch.no_grad():
        assert torch.allclose(loaded.model(waves), model(waves), atol=1e-6)
    assert loaded.classes == classes


def test_load_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "run").mkdir()
    with pytest.raises(ModelError, match="no weights"):
        load_model(tmp_path / "run")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="unreadable"):
        load_model(bad)


def test_models_command_lists_reference_sizes(runner):
    import json

    from serenesense_cli.cli import app

    result = runner.invoke(app, ["models", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["cnn"]["parameters"] == 241_671
    assert rows["crnn"]["parameters"] == 1_532_935
    assert rows["audiomae --size base"]["window_s"] == 10.0
