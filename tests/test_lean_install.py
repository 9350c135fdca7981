"""The lean install (``pip install serenesense``, no extras) on an exported model.

The commands run in fresh interpreters where the ``train`` extra's modules
cannot be imported: a ``sitecustomize`` on ``PYTHONPATH`` puts a finder in
front of ``sys.meta_path`` that refuses them (and notes each attempt), and
child processes (the bench worker) inherit it. The models are built here, in
the test process, with torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.errors import EXTRA_MODULES, MissingExtraError, missing_extra
from tests.conftest import REPO_ROOT

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, os, sys

    BLOCKED = set(os.environ["LEAN_TEST_BLOCKED"].split(","))
    LOG = os.environ["LEAN_TEST_LOG"]

    class _NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                with open(LOG, "a") as log:
                    log.write(name + "\\n")
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
    """
)


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    """Run ``serenesense ARGS`` without the train extra: (result, blocked imports)."""
    root = tmp_path_factory.mktemp("lean")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(BLOCKER)
    log = root / "blocked.txt"

    def run(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        log.write_text("")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(root / "site"), str(REPO_ROOT)]),
            "LEAN_TEST_BLOCKED": ",".join(EXTRA_MODULES),
            "LEAN_TEST_LOG": str(log),
            "COLUMNS": "120",
        }
        env.pop("SERENESENSE_DEBUG", None)
        done = subprocess.run(
            [sys.executable, "-m", "serenesense_cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=REPO_ROOT,
            env=env,
        )
        return done, log.read_text().split()

    return run


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> Path:
    """A tiny untrained CNN, exported and quantized to static INT8 (with torch)."""
    import torch

    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    root = tmp_path_factory.mktemp("lean_model")
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=3, clip_seconds=1.0).eval()
    weights = save_model(root / "run" / "weights" / "best.safetensors", model, ("a", "b", "c"))
    clips = np.random.default_rng(0).normal(0, 0.1, (4, model.clip_samples)).astype(np.float32)
    fp32 = export_onnx(weights, root / "model.onnx", parity_clips=clips).path
    return quantize_onnx(fp32, root / "model.int8.onnx", calib_clips=8, agreement_clips=8).path


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lean_audio") / "noise.wav"
    wave = np.random.default_rng(1).normal(0, 0.1, 5 * 22_050).astype(np.float32)
    sf.write(path, wave, 22_050, subtype="PCM_16")  # not 16 kHz: detect resamples (soxr)
    return path


@pytest.mark.slow
def test_detect_on_an_int8_model_needs_no_extra(lean, int8_model, recording):
    done, blocked = lean(
        "detect", str(recording), "--model", str(int8_model), "--threshold", "0.2",
        "--format", "jsonl", "--no-spin",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert blocked == []
    events = [json.loads(line) for line in done.stdout.splitlines()]
    # an untrained model scores about 1/3 per class: a low threshold gives events
    assert {e["class"] for e in events} == {"a", "b", "c"}
    assert "1 file(s), 0 failed" in done.stderr


@pytest.mark.slow
def test_bench_on_an_int8_model_needs_no_extra(lean, int8_model):
    done, blocked = lean(
        "bench", str(int8_model), "--runs", "3", "--warmup", "1", "--batch", "2",
        "--no-save", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert blocked == []  # the worker process ran under the same finder
    (result,) = json.loads(done.stdout)["results"]
    assert result["kind"] == "onnx" and result["precision"] == "int8"


def test_data_commands_need_no_extra(lean, tmp_path):
    synth = tmp_path / "synth"
    done, blocked = lean(
        "data", "synth", "--out", str(synth), "--clips-per-class", "8", "--max-seconds", "1.5"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done, more = lean("data", "prepare", str(synth), "--out", str(tmp_path / "prepared"))
    assert done.returncode == 0, done.stderr[-3000:]
    done, info = lean("data", "info", str(tmp_path / "prepared"), "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert blocked == more == info == []


def test_train_says_which_extra_in_one_line(lean, tmp_path):
    done, blocked = lean("train", "cnn", "--data", str(tmp_path))
    assert "torch" in blocked  # the finder works: what the other tests rely on
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: serenesense train needs the training extra (torch is not installed)",
        "Hint: pip install 'serenesense[train]'",
    ]
    assert done.stdout == ""


@pytest.mark.slow
def test_a_torch_model_on_the_lean_install_points_to_onnx(lean, int8_model, recording):
    weights = int8_model.parent / "run" / "weights" / "best.safetensors"
    for args in (
        ["detect", str(recording), "--model", str(weights)],
        ["bench", str(weights), "--runs", "2", "--warmup", "1", "--no-save"],
    ):
        done, _ = lean(*args)
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith(("Error", "Hint"))]
        assert "needs the training extra (" in lines[0], done.stderr
        assert "serenesense[train]" in lines[1] and ".onnx" in lines[1]
        assert "bug" not in done.stderr


def test_only_absent_extra_modules_map_to_the_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    lean = missing_extra(ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib"))
    assert isinstance(lean, MissingExtraError) and lean.package == "matplotlib"
    assert missing_extra(ValueError("torch")) is None
    assert missing_extra(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None
    assert missing_extra(ModuleNotFoundError("no name")) is None
    pytest.importorskip("torch")
    # torch is there, one of its parts is not: a broken install, not a lean one
    broken = ModuleNotFoundError("No module named 'torch._nothing'", name="torch._nothing")
    assert missing_extra(broken) is None


def test_the_hint_names_the_distribution_not_the_import():
    error = MissingExtraError("sklearn", command="evaluate")
    assert (
        error.message
        == "serenesense evaluate needs the training extra (scikit-learn is not installed)"
    )
    assert error.hint == "pip install 'serenesense[train]'" and error.exit_code == 2
