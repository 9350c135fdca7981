"""``serenesense quantize``: INT8 ONNX models that load, run and keep the front end in float.

Two modes, both with ``onnxruntime.quantization``:

- ``dynamic``: weights of ``MatMul``/``Gemm`` nodes with constant weights in
  INT8, activations quantized at run time (``MatMulInteger``). Suits the
  transformer, whose cost is in its linear layers. ``Conv`` is never given to
  the dynamic quantizer: it would become ``ConvInteger``, which onnxruntime's
  CPU provider does not run well (the reference system shipped exactly that).
- ``static``: QDQ format (``QuantizeLinear``/``DequantizeLinear`` pairs that
  onnxruntime fuses into integer kernels), per-channel weights, activation
  ranges calibrated (MinMax) on centred windows of real clips. Suits the
  CNN/CRNN, whose cost is in convolutions; the ``Relu`` and pooling ops between
  them are quantized too, so onnxruntime runs each conv stack as one int8
  chain. LSTMs stay in float.
- ``auto``: dynamic for ``audiomae``, static otherwise (model name from the
  ONNX metadata).

The audio front end (STFT, mel filterbank and DCT ``MatMul``s, log,
normalisation) always stays in float: those ``MatMul``s multiply a power
spectrum by constant matrices, and 8-bit spectra wipe out the quiet bands.

Before anything is reported the INT8 file is checked: no ``ConvInteger``,
front-end nodes unchanged, loads on the CPU provider and runs a batch; then
its top-1 agreement with the FP32 model is measured (and, with ``data``,
accuracy and macro-F1 of both on a split).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from serenesense_cli.errors import BadInputError, ModelError, SereneSenseError
from serenesense_cli.fileio import refuse_input_as_output
from serenesense_cli.inference.backends import ONNX_INPUT
from serenesense_cli.progress import ProgressCallback, report

MODES = ("auto", "dynamic", "static")
DYNAMIC_OPS = ("MatMul", "Gemm")
LAYER_OPS = ("Conv", "Gemm", "MatMul")
"""Ops with weights: the layers static INT8 turns into integer kernels."""
STATIC_OPS = (*LAYER_OPS, "Relu", "MaxPool", "AveragePool")
"""What static INT8 quantizes: the layers and the ops between them.

Why the activations and pools too: left out, each ``Relu`` and pool ran in
float between a ``DequantizeLinear`` and a ``QuantizeLinear``, so onnxruntime
framed every integer convolution with layout transposes and NCHWc reorders.
With them, a ``Relu`` is folded into its convolution's output range and the
pools run on int8 in the convolutions' NHWC layout, so a conv stack becomes
one integer chain with one transpose at each end (the trained CNN's INT8
window: 0.90 -> 0.79 ms in ``serenesense bench``, docs/performance.md). Max
pooling shares its input's scale (exact: a max commutes with the monotonic
dequantisation).
"""
AGREEMENT_CLIPS = 64


class QuantizationError(SereneSenseError):
    """Quantization produced a model that cannot be shipped (exit code 1)."""


@dataclass
class QuantizeResult:
    """The INT8 model, how it was made and what it costs in agreement/accuracy."""

    path: Path
    source: Path
    mode: str
    model_name: str
    size_fp32: int
    size_int8: int
    top1_agreement: float
    max_abs_diff: float
    agreement_clips: int
    agreement_source: str
    calibration: str | None
    calibration_clips: int
    excluded_nodes: int
    quantized_ops: dict[str, int]
    seconds: float
    data: dict[str, Any] | None = None
    accuracy_fp32: float | None = None
    accuracy_int8: float | None = None
    accuracy_change: float | None = None
    macro_f1_fp32: float | None = None
    macro_f1_int8: float | None = None
    macro_f1_change: float | None = None
    notes: list[str] = field(default_factory=list)
    saved: Path | None = None
    """``<INT8 stem>.quantize.json``: what was measured, for ``serenesense report``."""

    def summary(self) -> dict[str, Any]:
        """A flat dict for tables and JSON."""
        return {
            "path": str(self.path),
            "source": str(self.source),
            "model": self.model_name,
            "mode": self.mode,
            "size_fp32_mb": round(self.size_fp32 / 1e6, 3),
            "size_int8_mb": round(self.size_int8 / 1e6, 3),
            "size_ratio": round(self.size_int8 / self.size_fp32, 3) if self.size_fp32 else None,
            "top1_agreement": self.top1_agreement,
            "max_abs_diff": self.max_abs_diff,
            "agreement_clips": self.agreement_clips,
            "agreement_source": self.agreement_source,
            "calibration": self.calibration,
            "calibration_clips": self.calibration_clips,
            "frontend_nodes_kept_float": self.excluded_nodes,
            "quantized_ops": ", ".join(f"{k} {v}" for k, v in self.quantized_ops.items()),
            "split": (self.data or {}).get("split"),
            "split_clips": (self.data or {}).get("clips"),
            "split_clip_agreement": ((self.data or {}).get("clip_agreement") or {}).get(
                "top1_agreement"
            ),
            "accuracy_fp32": self.accuracy_fp32,
            "accuracy_int8": self.accuracy_int8,
            "accuracy_change": self.accuracy_change,
            "macro_f1_fp32": self.macro_f1_fp32,
            "macro_f1_int8": self.macro_f1_int8,
            "macro_f1_change": self.macro_f1_change,
            "seconds": round(self.seconds, 2),
        }


QUANTIZE_FORMAT = "serenesense-quantize"
QUANTIZE_VERSION = 1


def quantize_json_path(int8_path: str | Path) -> Path:
    """``<stem>.quantize.json`` beside the INT8 model (``model.int8.quantize.json``)."""
    path = Path(int8_path)
    return path.with_name(f"{path.stem}.quantize.json")


def quantize_record(result: QuantizeResult) -> dict[str, Any]:
    """The ``.quantize.json`` payload: the summary, per-model scores, op counts, notes.

    Why a file: quantization measures agreement and the accuracy change once;
    without it the report could only say "missing" for the INT8 model.
    """
    return {
        "format": QUANTIZE_FORMAT,
        "format_version": QUANTIZE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **result.summary(),
        "quantized_ops": dict(result.quantized_ops),
        "measured": result.data,
        "notes": list(result.notes),
    }


def default_int8_path(onnx_path: str | Path) -> Path:
    """``<stem>.int8.onnx`` beside the FP32 model (``model.onnx`` -> ``model.int8.onnx``)."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.int8.onnx")


def resolve_mode(mode: str, model_name: str, declared: str | None = None) -> str:
    """``auto`` -> the mode the model's registration declares (dynamic for the
    transformer, static for convolutional models).

    ``declared`` is the ``int8_mode`` the export wrote into the ONNX metadata;
    files exported before it was written are looked up in the registry.
    """
    if mode not in MODES:
        raise BadInputError(f"unknown quantization mode {mode!r}; choose from {', '.join(MODES)}")
    if mode != "auto":
        return mode
    if declared in ("static", "dynamic"):
        return declared
    from serenesense_cli.models import get_model_spec, list_models

    return get_model_spec(model_name).quantization if model_name in list_models() else "static"


class _WindowReader:
    """onnxruntime CalibrationDataReader over model-sized windows, one per batch."""

    def __init__(self, waves: np.ndarray) -> None:
        self.waves = waves
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.waves):
            return None
        window = self.waves[self.position : self.position + 1]
        self.position += 1
        return {ONNX_INPUT: np.ascontiguousarray(window, dtype=np.float32)}

    def rewind(self) -> None:
        self.position = 0


class _OnnxruntimeAdvice(logging.Filter):
    """Drops the records onnxruntime.quantization logs below ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_ort = "onnxruntime" in record.pathname.replace("\\", "/")
        return record.levelno >= logging.ERROR or not from_ort


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization logs advice with ``logging.info``/``warning``
    (on the root logger); keep stderr clean without touching anyone else's
    logging: a filter for its records only, on the root logger, for the call."""
    root = logging.getLogger()
    advice = _OnnxruntimeAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _run_quantizer(
    mode: str, source: Path, target: Path, *, excluded: list[str], reader: Any
) -> dict[str, Any]:
    """Call onnxruntime.quantization; returns the settings recorded in metadata."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with _quiet_quantizer():
        if mode == "dynamic":
            quantize_dynamic(
                str(source),
                str(target),
                op_types_to_quantize=list(DYNAMIC_OPS),
                nodes_to_exclude=excluded,
                per_channel=False,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
            return {
                "op_types": list(DYNAMIC_OPS),
                "weights": "int8 per-tensor",
                "activations": "uint8, quantized at run time",
            }
        quantize_static(
            str(source),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(STATIC_OPS),
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True},
        )
    return {
        "op_types": list(STATIC_OPS),
        "format": "QDQ",
        "weights": "int8 per-channel",
        "activations": "int8, MinMax calibration",
    }


def check_int8_graph(model: Any, fp32_frontend: dict[str, str], path: str | Path) -> dict[str, int]:
    """Refuse graphs the CPU provider handles badly or whose front end was quantized.

    Returns the counts of integer / quantization ops in the graph.
    """
    from serenesense_cli.export import graph

    counts = graph.op_counts(model)
    forbidden = sorted(set(counts) & graph.FORBIDDEN_OPS)
    if forbidden:
        raise QuantizationError(
            f"{path}: the INT8 graph contains {', '.join(forbidden)}, which onnxruntime's "
            "CPU provider does not run well",
            hint="use --mode static for convolutional models",
        )
    nodes = {node.name: node.op_type for node in model.graph.node}
    changed = [name for name, op in fp32_frontend.items() if nodes.get(name) != op]
    touched = [n for n in graph.frontend_nodes(model) if nodes.get(n) in graph.INTEGER_OPS]
    if changed or touched:
        example = (changed or touched)[0]
        raise QuantizationError(
            f"{path}: quantization reached the audio front end (node {example!r}); "
            "it must stay in float",
            hint="this is a bug; run again with --debug and report it",
        )
    return {op: n for op, n in counts.items() if op in graph.INTEGER_OPS}


class _Plan(NamedTuple):
    """What the FP32 graph says about how to quantize it."""

    meta: dict[str, Any]
    model_name: str
    mode: str
    frontend: list[str]
    """Front-end node names: always kept in float."""
    frontend_ops: dict[str, str]
    """Their op types, to check that the INT8 graph left them alone."""
    edges: list[str]
    """First and last layers kept in float (static mode)."""


class _Calibration(NamedTuple):
    reader: Any
    source: str | None
    count: int


def _check_paths(onnx_path: str | Path, out_path: str | Path | None) -> tuple[Path, Path]:
    source = Path(onnx_path)
    if source.suffix.lower() != ".onnx" or not source.is_file():
        raise ModelError(
            f"{source}: not an ONNX file",
            hint="export first: serenesense export RUN (writes RUN/export/model.onnx)",
        )
    from serenesense_cli.export.graph import onnx_output_path

    out = onnx_output_path(out_path, default_int8_path(source))
    refuse_input_as_output(out, [source], option="the INT8 output")
    return source, out


def _plan(source: Path, mode: str) -> _Plan:
    """Read the FP32 model's metadata and front end; choose the mode."""
    from serenesense_cli.export import graph

    proto = graph.load_model(source)
    meta = graph.read_metadata(proto)
    if not meta:
        raise ModelError(
            f"{source}: this ONNX model has no serenesense metadata",
            hint="export models with `serenesense export`",
        )
    export = meta.get("export") or {}
    if export.get("quantization"):
        raise BadInputError(f"{source}: this model is already quantized")
    model_name = str((meta.get("model") or {}).get("name", ""))
    chosen = resolve_mode(mode, model_name, export.get("int8_mode"))
    frontend = graph.require_frontend_nodes(proto, source)
    names = set(frontend)
    frontend_ops = {n.name: n.op_type for n in proto.graph.node if n.name in names}
    edges = graph.edge_layers(proto, LAYER_OPS, frontend) if chosen == "static" else []
    return _Plan(meta, model_name, chosen, frontend, frontend_ops, edges)


def _calibration(
    plan: _Plan, source: Path, fp32: Any, calib: str | Path | None, count: int, notes: list[str]
) -> _Calibration:
    """Calibration windows for static mode (none for dynamic)."""
    if plan.mode != "static":
        return _Calibration(None, None, 0)
    from serenesense_cli.export.clips import choose_windows

    windows = choose_windows(
        model_path=source,
        meta=plan.meta,
        clip_samples=fp32.clip_samples,
        sample_rate=fp32.sample_rate,
        count=count,
        data=calib,
        purpose="calibration",
    )
    if windows.data is None:
        notes.append(
            "static calibration used synthetic events, not recordings: pass --calib DIR "
            "(a prepared set) for ranges that match real audio"
        )
    return _Calibration(_WindowReader(windows.waves), windows.source, len(windows))


def _quantize_into(tmp: Path, source: Path, plan: _Plan, calibration: _Calibration) -> dict:
    """Run onnxruntime's quantizer; its failures become one-line QuantizationErrors."""
    try:
        settings = _run_quantizer(
            plan.mode,
            source,
            tmp,
            excluded=[*plan.frontend, *plan.edges],
            reader=calibration.reader,
        )
    except SereneSenseError:
        raise
    except Exception as error:
        raise QuantizationError(
            f"{source}: onnxruntime could not quantize this model "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
            hint="run again with --debug; try the other --mode",
        ) from error
    if plan.edges:
        settings["kept_float"] = "front end, first and last layer"
    return settings


def _open_int8(tmp: Path, out: Path, classes: int, clip_samples: int) -> Any:
    """The INT8 model on onnxruntime's CPU provider, proven to load and give valid scores."""
    from serenesense_cli.inference.backends import open_onnx

    try:
        int8 = open_onnx(tmp)
        probe = int8.predict_proba(np.zeros((2, clip_samples), dtype=np.float32))
    except ModelError as error:
        raise QuantizationError(
            f"{out}: the INT8 model does not load on onnxruntime's CPU provider ({error.message})"
        ) from error
    except Exception as error:
        raise QuantizationError(
            f"{out}: the INT8 model does not run on onnxruntime's CPU provider ({error})"
        ) from error
    if probe.shape != (2, classes) or not np.all(np.isfinite(probe)):
        raise QuantizationError(f"{out}: the INT8 model gives invalid scores")
    return int8


def quantize_onnx(
    onnx_path: str | Path,
    out_path: str | Path | None = None,
    *,
    mode: str = "auto",
    calib: str | Path | None = None,
    calib_clips: int = 64,
    data: str | Path | None = None,
    split: str = "test",
    agreement_clips: int = AGREEMENT_CLIPS,
    save: bool = True,
    on_progress: ProgressCallback | None = None,
) -> QuantizeResult:
    """Quantize an exported FP32 model to INT8 and prove that it loads, runs and agrees.

    ``calib``: prepared set for static calibration (its train split; default:
    the model's own training set, else synthetic events, with a note).
    ``data`` + ``split``: also measure accuracy / macro-F1 of FP32 and INT8.
    ``save``: write the measured results to ``<INT8 stem>.quantize.json``.
    """
    started = time.perf_counter()
    source, out = _check_paths(onnx_path, out_path)
    if calib_clips < 1:
        raise BadInputError(f"--calib-clips must be at least 1, not {calib_clips}")

    import onnx

    from serenesense_cli.export import graph
    from serenesense_cli.export.clips import choose_windows
    from serenesense_cli.export.compare import agreement, predict, split_metrics
    from serenesense_cli.fileio import atomic_path
    from serenesense_cli.inference.backends import open_onnx

    total = 5
    report(on_progress, "quantize", 0, total, note="reading the FP32 model")
    plan = _plan(source, mode)
    meta = plan.meta
    fp32 = open_onnx(source)
    notes: list[str] = []
    report(on_progress, "quantize", 1, total, note="calibration windows")
    calibration = _calibration(plan, source, fp32, calib, calib_clips, notes)

    report(on_progress, "quantize", 2, total, note=f"quantizing ({plan.mode})")
    with atomic_path(out) as tmp:
        settings = _quantize_into(tmp, source, plan, calibration)

        report(on_progress, "quantize", 3, total, note="checking the INT8 graph")
        int8_proto = graph.load_model(tmp)
        quantized_ops = check_int8_graph(int8_proto, plan.frontend_ops, out)
        if not quantized_ops:
            notes.append("no node was quantized: the INT8 file equals the FP32 model")
        quantization = {
            "mode": plan.mode,
            **settings,
            "calibration": calibration.source,
            "calibration_clips": calibration.count,
            "frontend_nodes_kept_float": len(plan.frontend),
            "fp32_model": source.name,
            "onnxruntime": _ort_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

        report(on_progress, "quantize", 4, total, note="loading and running the INT8 model")
        int8 = _open_int8(tmp, out, len(fp32.classes), fp32.clip_samples)
        held_out = choose_windows(
            model_path=source,
            meta=meta,
            clip_samples=fp32.clip_samples,
            sample_rate=fp32.sample_rate,
            count=agreement_clips,
            data=data if data is not None else calib,
            split=split if data is not None else None,
            purpose="held_out",
            seed=1,
        )
        scores = agreement(predict(fp32, held_out.waves), predict(int8, held_out.waves))
        measured = None
        if data is not None:
            measured = split_metrics({"fp32": fp32, "int8": int8}, data, split)
            measured["path"] = str(data)
        del int8
        quantization.update(
            top1_agreement=scores["top1_agreement"], agreement_source=held_out.source
        )
        # Written once, with the agreement: the quantizer kept the FP32 metadata
        # (classes, window), which is all the backend above needed to run.
        meta["export"] = {**(meta.get("export") or {}), "quantization": quantization}
        graph.set_metadata(int8_proto, meta)
        onnx.save_model(int8_proto, str(tmp), save_as_external_data=False)
        del int8_proto
    report(on_progress, "quantize", total, total, note="done")

    result = QuantizeResult(
        path=out,
        source=source,
        mode=plan.mode,
        model_name=plan.model_name,
        size_fp32=source.stat().st_size,
        size_int8=out.stat().st_size,
        top1_agreement=scores["top1_agreement"],
        max_abs_diff=scores["max_abs_diff"],
        agreement_clips=len(held_out),
        agreement_source=held_out.source,
        calibration=calibration.source,
        calibration_clips=calibration.count,
        excluded_nodes=len(plan.frontend),
        quantized_ops=quantized_ops,
        seconds=time.perf_counter() - started,
        notes=notes,
    )
    if measured is not None:
        _add_measured(result, measured)
    if save:
        from serenesense_cli.fileio import write_json_atomic

        result.saved = write_json_atomic(quantize_json_path(out), quantize_record(result))
    return result


def _add_measured(result: QuantizeResult, measured: dict[str, Any]) -> None:
    """Accuracy and macro-F1 of both models on a split, and the change."""
    result.data = measured
    result.accuracy_fp32 = measured["fp32"]["accuracy"]
    result.accuracy_int8 = measured["int8"]["accuracy"]
    result.accuracy_change = result.accuracy_int8 - result.accuracy_fp32
    result.macro_f1_fp32 = measured["fp32"]["macro_f1"]
    result.macro_f1_int8 = measured["int8"]["macro_f1"]
    result.macro_f1_change = result.macro_f1_int8 - result.macro_f1_fp32


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
