"""``evaluate_model``: score every clip of a data set and compute the full metric set.

Why one function for every model form: run folders, ``.safetensors`` files
and ``.onnx`` files (FP32 or INT8) all go through
:func:`serenesense_cli.inference.backends.open_backend`, so the cost of export
and quantization is measured on exactly the same clips, windows and metrics.

Windows of all clips are batched together for speed; the model time of each
batch is shared among its windows, so a clip's inference time is the model
time of its windows. Results are written atomically as ``metrics.json`` and
``predictions.csv`` (plus ``thresholds.csv`` for the validation split) into a
folder per data set and split, so one evaluation never replaces another's
results; the last one is also copied beside the model (``RUN/metrics.json``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serenesense_cli import __version__
from serenesense_cli.errors import DataSetError, SereneSenseError
from serenesense_cli.evaluate.data import (
    EvalData,
    canonical_split,
    check_classes,
    open_eval_data,
)
from serenesense_cli.evaluate.metrics import classification_report_dict
from serenesense_cli.evaluate.thresholds import THRESHOLDS_FILE, class_curves, thresholds_csv
from serenesense_cli.evaluate.windows import WindowPolicy, hop_samples, slice_windows
from serenesense_cli.fileio import (
    json_value,
    refuse_input_as_output,
    write_json_atomic,
    write_text_atomic,
)
from serenesense_cli.progress import ProgressCallback, report

METRICS_FORMAT = "serenesense-metrics"
METRICS_VERSION = 1
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
PROB_PREFIX = "p_"
"""Probability columns of ``predictions.csv`` are ``p_<class name>``."""


def prob_column(class_name: str) -> str:
    """The column of a class's probability (``p_<class>``), in every CSV that has one."""
    return PROB_PREFIX + class_name


PREDICTION_COLUMNS = (
    "path",
    "clip",
    "true",
    "predicted",
    "correct",
    "confidence",
    "windows",
    "seconds",
    "inference_ms",
)


@dataclass
class EvaluationResult:
    """What an evaluation produced; ``report`` is the ``metrics.json`` payload."""

    report: dict[str, Any]
    predictions: list[dict[str, Any]]
    metrics_path: Path | None = None
    """The kept ``metrics.json`` (``RUN/eval/<data>-<split>/`` or ``--out``)."""
    predictions_path: Path | None = None
    thresholds_path: Path | None = None
    """``thresholds.csv``: written for the validation split only."""
    latest_path: Path | None = None
    """The copy of the last evaluation (``RUN/metrics.json``); ``None`` with ``--out``."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        return self.report["summary"]


EVAL_DIR = "eval"
"""A run folder keeps every evaluation in ``eval/<data>-<split>/``."""


@dataclass(frozen=True)
class OutputPaths:
    """Where an evaluation's files go.

    ``folder`` keeps this data set and split's results (one folder per data
    set and split, so evaluating ``val`` and then ``test`` keeps both);
    ``latest`` is the copy of the last evaluation beside the model
    (``RUN/metrics.json``, ``<stem>.metrics.json``), absent with ``--out``.
    """

    folder: Path
    metrics: Path
    predictions: Path
    thresholds: Path
    latest: tuple[Path, Path] | None = None

    def all(self) -> list[Path]:
        return [self.metrics, self.predictions, self.thresholds, *(self.latest or ())]


def eval_name(data: str | Path, split: str | None, gain_db: float = 0.0) -> str:
    """``<data>-<split>``: the prepared folder's (or source file's) name, made
    file-name safe, and the split (``all`` for every clip of a raw source);
    a ``--gain-db`` run gets its own folder (``-gain-10dB``)."""
    path = Path(data)
    resolved = Path(os.path.realpath(path))
    base = resolved.stem if path.is_file() else resolved.name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-") or "data"
    name = f"{base}-{split or 'all'}"
    if gain_db:
        name += f"-gain{gain_db:+g}dB"
    return name


def output_paths(
    model: str | Path,
    out: str | Path | None,
    *,
    data: str | Path = "data",
    split: str | None = None,
    gain_db: float = 0.0,
) -> OutputPaths:
    """Where ``metrics.json``, ``predictions.csv`` and ``thresholds.csv`` go.

    ``--out DIR`` wins (``DIR/metrics.json``, ...); a run folder keeps them in
    ``RUN/eval/<data>-<split>/`` and the last evaluation in ``RUN/metrics.json``;
    a model file ``x.onnx`` in ``x.eval/<data>-<split>/`` beside it and the last
    evaluation in ``x.metrics.json``.
    """
    if out is not None:
        folder = Path(out)
        latest = None
    else:
        model = Path(model)
        name = eval_name(data, split, gain_db)
        if model.is_dir():
            folder = model / EVAL_DIR / name
            latest = (model / METRICS_FILE, model / PREDICTIONS_FILE)
        else:
            folder = model.with_name(f"{model.stem}.{EVAL_DIR}") / name
            latest = (
                model.with_name(f"{model.stem}.{METRICS_FILE}"),
                model.with_name(f"{model.stem}.{PREDICTIONS_FILE}"),
            )
    return OutputPaths(
        folder=folder,
        metrics=folder / METRICS_FILE,
        predictions=folder / PREDICTIONS_FILE,
        thresholds=folder / THRESHOLDS_FILE,
        latest=latest,
    )


def evaluate_model(
    *,
    model: str | Path,
    data: str | Path,
    split: str | None = None,
    hop_seconds: float | None = None,
    gain_db: float = 0.0,
    batch_size: int = 32,
    threads: int | None = None,
    spin: bool = True,
    device: str = "cpu",
    out: str | Path | None = None,
    write: bool = True,
    on_progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Score every clip of ``data`` with ``model`` and compute all metrics.

    ``split`` picks a prepared set's split (default ``test``) or, for a raw
    source, the clips it assigns to that split (default: every clip); the
    names manifests accept (``validation``, ``training``, ...) work too.
    ``batch_size`` counts windows; ``spin=False`` lets idle inference
    threads sleep (onnxruntime models); ``device`` is cpu, cuda or auto
    (inference/devices.py; ``notes`` say a fallback to the CPU). ``gain_db``
    scales every clip (clipped to full scale) before scoring, to measure how much
    a model depends on the recording level. Files that cannot be decoded are skipped and listed in
    ``skipped``; the rest are scored.
    """
    from serenesense_cli.inference.backends import default_threads, open_backend

    if batch_size < 1:
        raise DataSetError(f"batch size must be at least 1, not {batch_size}")
    if not math.isfinite(gain_db):
        raise DataSetError(f"gain must be a finite number of dB, not {gain_db}")
    split = canonical_split(split)  # `validation` is `val`, as in manifests
    if write:  # the paths that do not depend on the split, before the model loads
        for path in output_paths(model, out, data=data, split=split, gain_db=gain_db).all():
            refuse_input_as_output(path, [model, data])
    started = time.perf_counter()
    threads = int(threads) if threads else default_threads()
    backend = open_backend(model, threads=threads, spin=spin, device=device)
    classes = tuple(backend.classes)
    policy = WindowPolicy(
        sample_rate=int(backend.sample_rate),
        window=int(backend.clip_samples),
        hop=hop_samples(hop_seconds, int(backend.sample_rate), int(backend.clip_samples)),
    )
    dataset = open_eval_data(data, split=split, sample_rate=policy.sample_rate)
    check_classes(dataset, classes, model)
    paths = output_paths(model, out, data=data, split=dataset.split, gain_db=gain_db)
    if write:
        for path in paths.all():
            refuse_input_as_output(path, [model, data])

    scored = _score(backend, dataset, policy, batch_size, on_progress, gain=10.0 ** (gain_db / 20))
    if not scored.items:
        raise DataSetError(
            f"{dataset.path}: no clip could be scored ({len(scored.skipped)} skipped)",
            hint="see the skipped files listed above",
        )
    index = {name: i for i, name in enumerate(classes)}
    y_true = np.array([index[item.label] for item in scored.items], dtype=np.int64)
    probs = np.stack(scored.probs)
    metrics = classification_report_dict(y_true, probs, classes)
    n_clips = len(scored.items)
    timing = {
        "mean_ms_per_clip": scored.model_seconds * 1000 / n_clips,
        "mean_ms_per_window": scored.model_seconds * 1000 / max(1, scored.windows),
        "model_seconds": scored.model_seconds,
        "wall_seconds": time.perf_counter() - started,
        "batch_windows": batch_size,
        "threads": threads,
        "spin": spin,
        "device": getattr(backend, "device", "cpu"),
        "host": _host(),
        "note": (
            "wall time of the model calls (predict_proba) per clip, windows batched "
            f"{batch_size} at a time, on this host with {threads} thread(s); "
            "excludes decoding; see `serenesense bench` for latency"
        ),
    }
    summary = dict(metrics["summary"])
    summary["windows"] = scored.windows
    summary["mean_inference_ms_per_clip"] = timing["mean_ms_per_clip"]
    skipped = dataset.problems + scored.skipped
    payload = {
        "format": METRICS_FORMAT,
        "format_version": METRICS_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "serenesense": __version__,
        "model": _describe_model(model, backend),
        "data": dataset.describe(),
        "window_policy": policy.to_dict(),
        "gain_db": float(gain_db),
        "summary": summary,
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "calibration": metrics["calibration"],
        "timing": timing,
        "skipped": [{"path": p, "problem": why} for p, why in skipped],
    }
    payload = json_value(payload)
    rows = _prediction_rows(scored, probs, y_true, classes)
    result = EvaluationResult(
        report=payload,
        predictions=rows,
        skipped=skipped,
        notes=list(getattr(backend, "notes", [])),
    )
    if write:
        _write(result, paths, classes, y_true, probs, validation=dataset.split == "val")
    return result


def _write(
    result: EvaluationResult,
    paths: OutputPaths,
    classes: tuple[str, ...],
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    validation: bool,
) -> None:
    """The kept files, ``thresholds.csv`` for the validation split, then the latest copy."""
    payload = result.report
    payload["predictions"] = str(paths.predictions)
    if validation:  # thresholds are chosen on validation clips, never on test
        payload["thresholds"] = str(paths.thresholds)
        write_text_atomic(paths.thresholds, thresholds_csv(class_curves(y_true, probs, classes)))
        result.thresholds_path = paths.thresholds
    text = predictions_csv(result.predictions, classes)
    write_text_atomic(paths.predictions, text)
    write_json_atomic(paths.metrics, payload)
    result.metrics_path, result.predictions_path = paths.metrics, paths.predictions
    if paths.latest is not None:
        latest_metrics, latest_predictions = paths.latest
        write_text_atomic(latest_predictions, text)
        write_json_atomic(latest_metrics, {**payload, "predictions": str(latest_predictions)})
        result.latest_path = latest_metrics


@dataclass
class _Scored:
    items: list[Any] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    windows_per_clip: list[int] = field(default_factory=list)
    seconds_per_clip: list[float] = field(default_factory=list)
    model_ms_per_clip: list[float] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    windows: int = 0
    model_seconds: float = 0.0


def _score(
    backend: Any,
    dataset: EvalData,
    policy: WindowPolicy,
    batch_size: int,
    on_progress: ProgressCallback | None,
    gain: float = 1.0,
) -> _Scored:
    """Mean window probabilities per clip, windows batched across clips."""
    out = _Scored()
    sums: list[np.ndarray] = []
    model_s: list[float] = []
    pending: list[np.ndarray] = []  # windows waiting for the model
    owners: list[int] = []  # clip (position in out.items) of each pending window
    total = len(dataset.items)

    def flush(limit: int) -> None:
        nonlocal pending, owners
        while len(owners) >= limit and owners:
            take = min(batch_size, len(owners))
            batch = np.stack(pending[:take])
            tick = time.perf_counter()
            probs = np.asarray(backend.predict_proba(batch), dtype=np.float64)
            spent = time.perf_counter() - tick
            out.model_seconds += spent
            for row, owner in zip(probs, owners[:take], strict=True):
                sums[owner] += row
                model_s[owner] += spent / take
            pending, owners = pending[take:], owners[take:]
            done = owners[0] if owners else len(out.items)
            report(on_progress, "scoring", done + len(out.skipped), total)

    for item in dataset.items:
        try:
            wave = item.load()
        except SereneSenseError as error:
            out.skipped.append((item.path, getattr(error, "problem", None) or error.message))
            continue
        if gain != 1.0:
            wave = np.clip(wave * np.float32(gain), -1.0, 1.0)
        windows = slice_windows(wave, policy.window, policy.hop)
        position = len(out.items)
        out.items.append(item)
        out.windows_per_clip.append(len(windows))
        out.seconds_per_clip.append(len(wave) / policy.sample_rate)
        sums.append(np.zeros(len(backend.classes), dtype=np.float64))
        model_s.append(0.0)
        pending.extend(windows)
        owners.extend([position] * len(windows))
        out.windows += len(windows)
        flush(batch_size)
    flush(1)
    report(on_progress, "scoring", total, total)
    out.probs = [s / n for s, n in zip(sums, out.windows_per_clip, strict=True)]
    out.model_ms_per_clip = [s * 1000 for s in model_s]
    return out


def _prediction_rows(
    scored: _Scored, probs: np.ndarray, y_true: np.ndarray, classes: tuple[str, ...]
) -> list[dict[str, Any]]:
    rows = []
    for i, item in enumerate(scored.items):
        predicted = int(probs[i].argmax())
        row: dict[str, Any] = {
            "path": item.path,
            "clip": item.clip,
            "true": classes[int(y_true[i])],
            "predicted": classes[predicted],
            "correct": int(predicted == int(y_true[i])),
            "confidence": float(probs[i, predicted]),
            "windows": scored.windows_per_clip[i],
            "seconds": scored.seconds_per_clip[i],
            "inference_ms": scored.model_ms_per_clip[i],
        }
        for c, name in enumerate(classes):
            row[prob_column(name)] = float(probs[i, c])
        rows.append(row)
    return rows


def predictions_csv(rows: list[dict[str, Any]], classes: tuple[str, ...] | list[str]) -> str:
    """``predictions.csv`` text: one row per clip, then ``p_<class>`` columns."""
    columns = [*PREDICTION_COLUMNS, *(prob_column(c) for c in classes)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in columns}
        )
    return buffer.getvalue()


def _describe_model(given: str | Path, backend: Any) -> dict[str, Any]:
    meta = backend.metadata or {}
    spec = meta.get("model") or {}
    described = {
        "path": str(given),
        "file": str(backend.path),
        "kind": backend.kind,
        "name": spec.get("name"),
        "args": spec.get("args"),
        "classes": list(backend.classes),
        "sample_rate": backend.sample_rate,
        "clip_seconds": backend.clip_samples / backend.sample_rate,
    }
    for key in ("epoch", "global_step", "quantization", "export"):
        if key in meta:
            described[key] = meta[key]
    return described


def _host() -> dict[str, Any]:
    import os

    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
