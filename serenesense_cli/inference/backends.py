"""Score waveform windows with a trained model, whatever form it takes.

Two backends behind one protocol:

- ``OnnxBackend`` for ``.onnx`` files (FP32 or INT8). It imports onnxruntime
  and numpy only — never torch — so a deployed box needs neither torch nor
  torchaudio.
- ``TorchBackend`` for training run folders and ``.safetensors`` weights.

Both take float32 waveform batches ``(B, clip_samples)`` at the model's sample
rate and return class probabilities ``(B, C)``.

ONNX files written by ``serenesense export`` carry their metadata as the model
property ``serenesense`` (a JSON document with at least ``classes``,
``sample_rate``, ``clip_seconds`` and ``model``), take the input ``waveform``
``(batch, samples)`` and give the outputs ``logits`` and ``probabilities``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from serenesense_cli.errors import DependencyError, ModelError

DISABLED_OPTIMIZERS = ("QDQPropagationTransformer",)
"""onnxruntime graph optimisers turned off for every session, by measurement.

QDQ propagation moves dequantisation past each ``MaxPool``, which makes the
CPU provider run it as an int8 ``MaxPool`` between layout transposes: the
static INT8 reference CNN took 1.87 ms end to end with it and 1.39 ms
without (FP32: 1.59 ms), melcnn 2.42 vs 2.28 ms; dynamic INT8 (AudioMAE) and
FP32 graphs are unaffected (docs/performance.md). The results are the same:
a max commutes with the monotonic dequantisation."""

ONNX_METADATA_KEY = "serenesense"
ONNX_INPUT = "waveform"
ONNX_PROBABILITIES = "probabilities"
ONNX_OUTPUTS = ("logits", ONNX_PROBABILITIES)
"""The exported graph's outputs, in order (export names them; backends read them)."""


@runtime_checkable
class Backend(Protocol):
    """What every backend offers."""

    path: Path
    kind: str
    classes: tuple[str, ...]
    sample_rate: int
    clip_samples: int
    metadata: dict[str, Any]

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, C)`` for float32 windows ``(B, clip_samples)``."""
        ...


def _check_batch(waves: np.ndarray, clip_samples: int) -> np.ndarray:
    waves = np.asarray(waves, dtype=np.float32)
    if waves.ndim == 1:
        waves = waves[None, :]
    if waves.ndim != 2 or waves.shape[1] != clip_samples:
        raise ValueError(f"expected windows of shape (B, {clip_samples}), got {waves.shape}")
    return np.ascontiguousarray(waves)


@dataclass
class OnnxBackend:
    """onnxruntime session on the CPU (or another available provider)."""

    path: Path
    session: Any
    classes: tuple[str, ...]
    sample_rate: int
    clip_samples: int
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = "onnx"
    device: str = "cpu"
    """Where it runs: ``cpu`` or ``cuda`` (the first provider onnxruntime took)."""
    notes: list[str] = field(default_factory=list)
    """E.g. a ``--device cuda`` that fell back to the CPU (the CLI shows them)."""

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        batch = _check_batch(waves, self.clip_samples)
        (probs,) = self.session.run([ONNX_PROBABILITIES], {ONNX_INPUT: batch})
        return np.asarray(probs, dtype=np.float32)


@dataclass
class TorchBackend:
    """A torch model rebuilt from its safetensors artefact."""

    path: Path
    model: Any
    classes: tuple[str, ...]
    sample_rate: int
    clip_samples: int
    device: str = "cpu"
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = "torch"
    notes: list[str] = field(default_factory=list)

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        import torch

        batch = torch.from_numpy(_check_batch(waves, self.clip_samples)).to(self.device)
        with torch.inference_mode():
            logits = self.model(batch).float()
        return torch.softmax(logits, dim=-1).cpu().numpy()


def _parse_onnx_metadata(raw: str | None, path: str | Path) -> dict[str, Any]:
    """The serenesense metadata document from the raw ``serenesense`` property."""
    if not raw:
        raise ModelError(
            f"{path}: this ONNX model has no serenesense metadata",
            hint="export models with `serenesense export`",
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ModelError(f"{path}: corrupt serenesense metadata ({error})") from error
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: corrupt serenesense metadata (not a JSON object)")
    return meta


_EXPORT_HINT = "export the model again with `serenesense export`"


def _check_onnx_contract(meta: dict[str, Any], session: Any, path: Path) -> None:
    """What detect/evaluate rely on, checked once at load: classes, rate, window,
    and a graph whose input and outputs match them (metadata is not trusted)."""

    def bad(problem: str) -> ModelError:
        return ModelError(f"{path}: {problem}", hint=_EXPORT_HINT)

    classes = meta.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise bad("metadata 'classes' must list at least 2 distinct class names")
    from serenesense_cli.audio.io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    rate = meta.get("sample_rate")
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int)
        or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE
    ):
        raise bad(
            f"metadata 'sample_rate' must be an integer of {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} "
            f"Hz, not {rate!r}"
        )
    seconds = meta.get("clip_seconds")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 < seconds <= 600
        or round(seconds * rate) < 1
    ):
        raise bad(f"metadata 'clip_seconds' must be a number of 0-600 s, not {seconds!r}")
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != ONNX_INPUT:
        names = ", ".join(i.name for i in inputs) or "none"
        raise bad(f"the graph must take one input named {ONNX_INPUT!r}, not: {names}")
    outputs = {o.name: o for o in session.get_outputs()}
    if ONNX_PROBABILITIES not in outputs:
        raise bad(f"the graph has no {ONNX_PROBABILITIES!r} output")
    width = (outputs[ONNX_PROBABILITIES].shape or [None])[-1]
    if isinstance(width, int) and width != len(classes):
        raise bad(f"the graph scores {width} classes but the metadata names {len(classes)}")


def open_onnx(
    path: str | Path, *, threads: int | None = None, spin: bool = True, device: str = "cpu"
) -> OnnxBackend:
    """Load an exported ``.onnx`` model with onnxruntime (nothing else imported).

    ``spin=False`` lets idle worker threads sleep (``allow_spinning=0``): steadier
    latency and less CPU burnt between windows on a busy or small machine.
    ``device`` picks the execution providers (:mod:`.devices`).
    """
    from serenesense_cli.inference.devices import CPU_PROVIDER, onnx_providers

    try:
        import onnxruntime as ort
    except ImportError as error:  # pragma: no cover - a dependency
        raise DependencyError(
            "onnxruntime is not installed", hint="pip install onnxruntime"
        ) from error
    path = Path(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    providers, note = onnx_providers(device, ort.get_available_providers())
    try:
        session = ort.InferenceSession(
            str(path),
            options,
            providers=providers,
            disabled_optimizers=list(DISABLED_OPTIMIZERS),
        )
    except Exception as error:
        raise ModelError(f"{path}: onnxruntime cannot load this model ({error})") from error
    custom = session.get_modelmeta().custom_metadata_map or {}
    meta = _parse_onnx_metadata(custom.get(ONNX_METADATA_KEY), path)
    _check_onnx_contract(meta, session, path)
    sample_rate = int(meta["sample_rate"])
    return OnnxBackend(
        path=path,
        session=session,
        classes=tuple(meta["classes"]),
        sample_rate=sample_rate,
        clip_samples=round(float(meta["clip_seconds"]) * sample_rate),
        metadata=meta,
        device="cpu" if session.get_providers()[0] == CPU_PROVIDER else "cuda",
        notes=[note] if note else [],
    )


def open_torch(
    path: str | Path, *, device: str = "cpu", threads: int | None = None
) -> TorchBackend:
    """Load a run folder or ``.safetensors`` weights for inference on ``device``
    (cpu, cuda or auto; cuda without a GPU falls back to the CPU with a note)."""
    import torch

    from serenesense_cli.inference.devices import torch_device
    from serenesense_cli.models.artifact import load_model

    if threads:
        torch.set_num_threads(int(threads))
    device, note = torch_device(device)
    loaded = load_model(path, device=device)
    return TorchBackend(
        path=loaded.path,
        model=loaded.model,
        classes=loaded.classes,
        sample_rate=loaded.model.sample_rate,
        clip_samples=loaded.model.clip_samples,
        device=device,
        metadata=loaded.metadata,
        notes=[note] if note else [],
    )


def open_backend(
    path: str | Path,
    *,
    device: str = "cpu",
    threads: int | None = None,
    spin: bool = True,
) -> Backend:
    """ONNX for ``.onnx`` files, torch for run folders and ``.safetensors``.

    ``spin`` applies to onnxruntime only (torch's threads follow OMP_WAIT_POLICY);
    ``device`` is cpu, cuda or auto for both (see :mod:`.devices`).
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    if path.is_file() and path.suffix.lower() == ".onnx":
        return open_onnx(path, threads=threads, spin=spin, device=device)
    return open_torch(path, device=device, threads=threads)


def default_threads() -> int:
    """Threads for inference when none are given: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)
