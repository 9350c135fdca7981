"""``serenesense export``: a trained model as one self-contained ONNX file.

The graph takes raw 16 kHz mono waveform ``waveform (batch, samples)``
(dynamic batch, samples fixed to the model's window) and returns ``logits``
and ``probabilities``: the audio front end is inside, so a deployed box needs
neither torch nor torchaudio. The serenesense metadata (classes, sample rate,
window, model name and arguments, training metrics, export details) is stored
as the ``serenesense`` model property (see
:mod:`serenesense_cli.inference.backends`).

Every export is checked before it is renamed into place: ``onnx.checker``
(full check) and a parity check of onnxruntime against the torch model on
real clips when there are any. A parity failure raises :class:`ParityError`
and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serenesense_cli.errors import BadInputError, ModelError, SereneSenseError
from serenesense_cli.inference.backends import ONNX_INPUT, ONNX_OUTPUTS
from serenesense_cli.progress import ProgressCallback, report

DEFAULT_OPSET = 18
MIN_OPSET = 17
DEFAULT_TOLERANCE = 1e-3
"""Largest allowed |p_onnx - p_torch| over all parity clips and classes.

Probabilities are compared (bounded in [0, 1], unlike logits): float32
re-ordering between torch and onnxruntime gives about 1e-6 to 1e-5, a real
export bug (wrong normalisation, gate order, window) gives 1e-2 or more.
"""
PARITY_CLIPS = 16
PARITY_BATCH = 8


class ExportError(SereneSenseError):
    """The model could not be exported (exit code 1)."""


class ParityError(ExportError):
    """onnxruntime and torch disagree beyond the tolerance."""


@dataclass
class ExportResult:
    """What an export produced and how well it matches the torch model."""

    path: Path
    size_bytes: int
    opset: int
    model_name: str
    classes: tuple[str, ...]
    clip_seconds: float
    max_abs_diff: float
    """Largest |p_onnx - p_torch| (probabilities) over the parity clips."""
    max_abs_diff_logits: float
    top1_agreement: float
    parity_clips: int
    parity_source: str
    tolerance: float
    seconds: float
    frontend_nodes: int
    op_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A flat dict for tables and JSON."""
        return {
            "path": str(self.path),
            "model": self.model_name,
            "classes": len(self.classes),
            "window_s": self.clip_seconds,
            "opset": self.opset,
            "size_mb": round(self.size_bytes / 1e6, 3),
            "parity_clips": self.parity_clips,
            "parity_source": self.parity_source,
            "max_abs_diff": self.max_abs_diff,
            "max_abs_diff_logits": self.max_abs_diff_logits,
            "top1_agreement": self.top1_agreement,
            "tolerance": self.tolerance,
            "frontend_nodes": self.frontend_nodes,
            "seconds": round(self.seconds, 2),
        }


def default_onnx_path(model_path: str | Path) -> Path:
    """``RUN/export/model.onnx`` for a run folder, ``x.onnx`` beside ``x.safetensors``."""
    path = Path(model_path)
    if path.is_dir():
        return path / "export" / "model.onnx"
    return path.with_suffix(".onnx")


class _WaveformToScores:
    """Factory for the export wrapper (a torch module), built lazily."""

    @staticmethod
    def build(model: Any) -> Any:
        import torch
        from torch import nn

        class WaveformToScores(nn.Module):
            """``waveform -> (logits, probabilities)``: the graph's two outputs."""

            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.model = inner

            def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                logits = self.model(waveform)
                return logits, torch.softmax(logits, dim=-1)

        return WaveformToScores(model).eval()


def _export_proto(model: Any, clip_samples: int, opset: int) -> Any:
    """Run the dynamo exporter; returns the ModelProto (nothing written)."""
    import torch

    example = torch.zeros(2, clip_samples)
    example[1].normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    captured = io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(captured),
            warnings.catch_warnings(),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                None,
                dynamo=True,
                opset_version=opset,
                input_names=[ONNX_INPUT],
                output_names=list(ONNX_OUTPUTS),
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as error:
        raise ExportError(
            f"the ONNX exporter failed: {type(error).__name__}: {str(error).splitlines()[0]}",
            hint="run again with --debug for the exporter's traceback",
        ) from error
    if program is None:  # pragma: no cover - only with f given
        raise ExportError("the ONNX exporter returned no program")
    return program.model_proto


def _torch_scores(model: Any, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    logits = []
    with torch.inference_mode():
        for start in range(0, len(waves), PARITY_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(waves[start : start + PARITY_BATCH]))
            logits.append(model(batch).float())
    out = torch.cat(logits)
    return out.numpy(), torch.softmax(out, dim=-1).numpy()


def onnx_scores(
    session: Any, waves: np.ndarray, *, batch: int = PARITY_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and probabilities from an onnxruntime session; the first window
    alone (batch 1), the rest in batches, so the dynamic batch axis is exercised."""
    logits, probs = [], []
    bounds = [(0, 1)] + [(s, min(s + batch, len(waves))) for s in range(1, len(waves), batch)]
    for start, stop in bounds:
        if start >= stop:
            continue
        chunk = np.ascontiguousarray(waves[start:stop], dtype=np.float32)
        lo, pr = session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: chunk})
        logits.append(lo)
        probs.append(pr)
    return np.concatenate(logits), np.concatenate(probs)


def parity(
    reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """Max |difference| of logits and probabilities, and top-1 agreement."""
    ref_logits, ref_probs = reference
    got_logits, got_probs = candidate
    return {
        "max_abs_diff": float(np.max(np.abs(got_probs - ref_probs))),
        "max_abs_diff_logits": float(np.max(np.abs(got_logits - ref_logits))),
        "top1_agreement": float(np.mean(got_probs.argmax(1) == ref_probs.argmax(1))),
    }


def _check_request(
    model_path: Path, out_path: str | Path | None, opset: int, tolerance: float
) -> Path:
    """Refuse impossible settings before any heavy import; the output path."""
    if opset < MIN_OPSET:
        raise BadInputError(f"opset {opset} is too old; use {MIN_OPSET} or newer (default 18)")
    if not tolerance > 0:
        raise BadInputError(f"tolerance must be positive, not {tolerance!r}")
    if model_path.suffix.lower() == ".onnx":
        raise BadInputError(
            f"{model_path}: already an ONNX model",
            hint="export takes a training run folder or a .safetensors file",
        )
    from serenesense_cli.export.graph import onnx_output_path

    return onnx_output_path(out_path, default_onnx_path(model_path))


def _parity_windows(
    model_path: Path,
    meta: dict[str, Any],
    model: Any,
    parity_clips: np.ndarray | None,
    parity_data: str | Path | None,
    count: int,
) -> Any:
    """The clips parity is measured on (see :func:`export_onnx`)."""
    from serenesense_cli.export.clips import Windows, centred_window, choose_windows

    if parity_clips is not None:
        array = np.asarray(parity_clips, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        return Windows(
            waves=np.stack([centred_window(w, model.clip_samples) for w in array]),
            source=f"given clips ({len(array)})",
        )
    return choose_windows(
        model_path=model_path,
        meta=meta,
        clip_samples=model.clip_samples,
        sample_rate=model.sample_rate,
        count=count,
        data=parity_data,
        purpose="held_out",
    )


def _export_metadata(
    loaded: Any, model_path: Path, meta: dict[str, Any], opset: int, frontend_nodes: int
) -> dict[str, Any]:
    """What the ONNX file records about its making (``export`` in its metadata)."""
    import onnx
    import torch

    from serenesense_cli.export.clips import run_data_path
    from serenesense_cli.models import get_model_spec

    own = run_data_path(model_path, meta)
    return {
        "opset": opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "exporter": "torch.onnx.export(dynamo=True)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": str(loaded.path),
        "data": str(own.resolve()) if own is not None else None,
        "frontend_nodes": frontend_nodes,
        "quantization": None,
        # what `quantize --mode auto` picks
        "int8_mode": get_model_spec(str(meta["model"]["name"])).quantization,
    }


def _write_checked(proto: Any, tmp: Path, out: Path) -> None:
    """Save one self-contained ONNX file and run the full checker on it."""
    import onnx

    try:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    except ValueError as error:  # protobuf's 2 GB limit
        raise ExportError(f"{out}: cannot write one ONNX file ({error})") from error
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as error:
        raise ExportError(f"{out}: onnx.checker rejected the export ({error})") from error


def _measure_parity(model: Any, tmp: Path, out: Path, windows: Any, tolerance: float) -> dict:
    """onnxruntime against torch on ``windows``; a ParityError beyond ``tolerance``."""
    from serenesense_cli.inference.backends import open_onnx

    backend = open_onnx(tmp)
    reference = _torch_scores(model, windows.waves)
    scores = parity(reference, onnx_scores(backend.session, windows.waves))
    del backend
    if not scores["max_abs_diff"] <= tolerance:
        raise ParityError(
            f"{out}: parity check failed: onnxruntime and torch differ by up to "
            f"{scores['max_abs_diff']:.3g} in probability (tolerance {tolerance:g}; top-1 "
            f"agreement {scores['top1_agreement']:.1%} on {len(windows)} clips from "
            f"{windows.source}); the ONNX file was not written",
            hint="run again with --debug; report it if the model trains and evaluates well",
        )
    return scores


def export_onnx(
    model_path: str | Path,
    out_path: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    parity_clips: np.ndarray | None = None,
    parity_data: str | Path | None = None,
    parity_count: int = PARITY_CLIPS,
    tolerance: float = DEFAULT_TOLERANCE,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Export a run folder or ``.safetensors`` model to ONNX, checked and parity-tested.

    Parity clips: ``parity_clips`` (an array ``(N, samples)``) when given, else
    centred windows of ``parity_data`` (a prepared set), else of the model's
    own training set when its run still points at one, else seeded synthetic
    events; :attr:`ExportResult.parity_source` says which.
    """
    started = time.perf_counter()
    model_path = Path(model_path)
    out = _check_request(model_path, out_path, opset, tolerance)

    import onnx

    from serenesense_cli.export import graph
    from serenesense_cli.export.lstm import replace_lstms
    from serenesense_cli.fileio import atomic_path
    from serenesense_cli.models.artifact import load_model

    total = 5
    report(on_progress, "export", 0, total, note="loading the model")
    loaded = load_model(model_path)
    model, meta = loaded.model, dict(loaded.metadata)
    name = str(meta["model"]["name"])
    windows = _parity_windows(model_path, meta, model, parity_clips, parity_data, parity_count)

    report(on_progress, "export", 1, total, note="exporting (torch dynamo)")
    exportable = _WaveformToScores.build(_export_copy(model))
    replace_lstms(exportable)
    proto = _export_proto(exportable, model.clip_samples, opset)
    frontend = graph.frontend_nodes(proto)
    meta["export"] = _export_metadata(loaded, model_path, meta, opset, len(frontend))
    graph.set_metadata(proto, meta)
    proto.doc_string = (
        f"serenesense {name}: 16 kHz mono waveform ({model.clip_samples} samples) -> "
        f"{len(loaded.classes)} class scores"
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        report(on_progress, "export", 2, total, note="onnx.checker")
        _write_checked(proto, tmp, out)
        report(on_progress, "export", 3, total, note=f"parity on {len(windows)} clips")
        scores = _measure_parity(model, tmp, out, windows, tolerance)
        report(on_progress, "export", 4, total, note="writing")
        # Record the parity figures inside the file too.
        meta["export"]["parity"] = {**scores, "clips": len(windows), "source": windows.source}
        graph.set_metadata(proto, meta)
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    counts = graph.op_counts(proto)
    del proto
    report(on_progress, "export", total, total, note="done")
    notes = []
    if windows.data is None and parity_clips is None:
        notes.append(
            "parity used synthetic clips (no prepared data set known for this model); "
            "pass --parity-data DIR to check on recordings"
        )
    return ExportResult(
        path=out,
        size_bytes=out.stat().st_size,
        opset=opset,
        model_name=name,
        classes=tuple(loaded.classes),
        clip_seconds=float(model.clip_seconds),
        max_abs_diff=scores["max_abs_diff"],
        max_abs_diff_logits=scores["max_abs_diff_logits"],
        top1_agreement=scores["top1_agreement"],
        parity_clips=len(windows),
        parity_source=windows.source,
        tolerance=tolerance,
        seconds=time.perf_counter() - started,
        frontend_nodes=len(frontend),
        op_counts=counts,
        notes=notes,
    )


def _export_copy(model: Any) -> Any:
    """A deep copy in eval mode in its export form, so nothing touches the reference."""
    import copy

    try:
        clone = copy.deepcopy(model)
    except Exception as error:  # pragma: no cover - every registered model copies
        raise ModelError(f"cannot copy the model for export ({error})") from error
    for module in clone.modules():  # the front end's fast exported form (STFT as a Conv1d)
        if hasattr(module, "use_export_form"):
            module.use_export_form()
    return clone.eval()
