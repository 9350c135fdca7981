"""Read what a run folder holds, for reports: nothing is computed that is not there.

A training run (``runs/train/<name>``) holds ``config.toml``, ``history.csv``,
``weights/best.safetensors`` (+ ``best.json``) and, after ``serenesense
evaluate``, ``eval/<data>-<split>/`` (``metrics.json``, ``predictions.csv``,
``thresholds.csv`` for the validation split) with the last one copied to
``metrics.json``; after ``serenesense bench`` a ``bench.json``; after export
``export/*.onnx`` with ``<stem>.bench.json``, ``<stem>.quantize.json`` (INT8),
``<stem>.metrics.json`` and ``<stem>.eval/<data>-<split>/`` beside them. A
pretraining run (``task = "pretrain"`` in its config) holds a loss history and
reconstruction figures.

Every value that is missing stays ``None`` (shown as "missing"), never 0.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serenesense_cli.errors import BadInputError, missing_extra
from serenesense_cli.evaluate.run import EVAL_DIR
from serenesense_cli.report import schema
from serenesense_cli.report.schema import confusion_problem, shape_problem

_BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
_FRONTEND_PREFIX = "frontend."
_RECONSTRUCTION = re.compile(r"^reconstruction_epoch(\d+).*\.png$")


@dataclass
class EvalInfo:
    """One evaluation of a model: its ``metrics.json`` and where its predictions are."""

    name: str
    """The folder name (``<data>-<split>``), or the file name of a lone ``metrics.json``."""
    model: str
    """Which model was scored: ``weights/best.safetensors`` or ``export/model.int8.onnx``."""
    metrics: dict[str, Any]
    predictions: Path | None = None
    thresholds: Path | None = None

    @property
    def split(self) -> str | None:
        data = self.metrics.get("data")
        return data.get("split") if isinstance(data, dict) else None

    @property
    def created(self) -> str:
        return str(self.metrics.get("created") or "")


@dataclass
class ExportInfo:
    """An exported ``.onnx`` file of a run, with what was measured on it."""

    path: Path
    size_bytes: int
    bench: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    """The evaluation shown for it (test split preferred, else the last one)."""
    quantize: dict[str, Any] | None = None
    """``<stem>.quantize.json``: what ``serenesense quantize`` measured (INT8 files)."""
    evaluations: list[EvalInfo] = field(default_factory=list)


@dataclass
class RunInfo:
    """Everything a report shows about one run folder."""

    path: Path
    name: str
    """The folder's name; ``build_report`` makes it unique within a report."""
    task: str
    """``train``, ``pretrain`` or ``unknown``."""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_meta: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    """The evaluation the comparison shows: the newest of the test split, else the last."""
    primary: EvalInfo | None = None
    """Where :attr:`metrics` came from (its predictions for the worst clips)."""
    evaluations: list[EvalInfo] = field(default_factory=list)
    """Every kept evaluation of the run's weights (``eval/*/``)."""
    bench: dict[str, Any] | None = None
    exports: list[ExportInfo] = field(default_factory=list)
    parameters: int | None = None
    weights_bytes: int | None = None
    reconstructions: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def model_name(self) -> str | None:
        meta_model = (self.best_meta or {}).get("model") or {}
        if not meta_model and self.metrics:  # e.g. a folder made by `evaluate --out`
            meta_model = {"name": (self.metrics.get("model") or {}).get("name")}
        name = meta_model.get("name") or self.config.get("model")
        args = {**(self.config.get("model_args") or {}), **(meta_model.get("args") or {})}
        if name and args.get("size"):
            return f"{name} ({args['size']})"
        return name

    @property
    def classes(self) -> list[str] | None:
        if self.best_meta and self.best_meta.get("classes"):
            return list(self.best_meta["classes"])
        if self.metrics:
            return list(self.metrics.get("model", {}).get("classes") or []) or None
        return None

    @property
    def training_seconds(self) -> float | None:
        seconds = [r["seconds"] for r in self.history if r.get("seconds") is not None]
        return float(sum(seconds)) if seconds else None

    @property
    def best_epoch(self) -> int | None:
        if self.best_meta and self.best_meta.get("epoch") is not None:
            return int(self.best_meta["epoch"])
        return None

    def best_row(self) -> dict[str, Any] | None:
        """The history row of the best checkpoint (from its metadata)."""
        if self.best_meta and isinstance(self.best_meta.get("metrics"), dict):
            return self.best_meta["metrics"]
        return None

    def final_row(self) -> dict[str, Any] | None:
        """The last completed epoch (or the last row when none completed)."""
        complete = [r for r in self.history if not r.get("partial")]
        rows = complete or self.history
        return rows[-1] if rows else None


def read_csv_numbers(path: Path) -> list[dict[str, Any]]:
    """A CSV with a header as dicts; numbers parsed, empty cells ``None``."""
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key is None:
                    continue
                row[key] = _number(value)
            rows.append(row)
    return rows


def _blank_text_cells(rows: list[dict[str, Any]]) -> int:
    """Set every history cell that is not a number to ``None``; how many were."""
    count = 0
    for row in rows:
        for key, value in row.items():
            if isinstance(value, str):
                row[key] = None
                count += 1
    return count


def _number(value: str | None) -> Any:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


def _read_json(path: Path, problems: list[str], shape: Any = None) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` (with a problem noted) when it is
    missing, unreadable or not of the ``shape`` the report reads."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        problems.append(f"{path.name}: unreadable ({error})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name}: not a JSON object")
        return None
    if shape is not None:
        problem = shape_problem(value, shape)
        if problem is None and shape is schema.METRICS:
            problem = confusion_problem(value.get("confusion_matrix"))
        if problem:
            problems.append(f"{path.name}: left out, {problem}")
            return None
    return value


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    from serenesense_cli.config import load_toml

    try:
        return load_toml(path)
    except Exception as error:
        problems.append(f"{path.name}: unreadable ({error})")
        return {}


def weights_header(path: Path) -> tuple[dict[str, Any] | None, int | None]:
    """Metadata and learnable-parameter count of a ``.safetensors`` file, from its
    header only (no tensor is read, no model is built).

    Front-end constants (filterbanks, normalisation) and BatchNorm running
    statistics are buffers, not parameters, and are left out of the count.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        raw = (handle.metadata() or {}).get("serenesense")
        count = 0
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
            if key.startswith(_FRONTEND_PREFIX) or key.endswith(_BUFFER_SUFFIXES):
                continue
            numel = 1
            for dim in handle.get_slice(key).get_shape():
                numel *= int(dim)
            count += numel
    return (json.loads(raw) if raw else None), count


def load_run(path: str | Path) -> RunInfo:
    """Collect a run folder's files; raises BadInputError when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise BadInputError(f"{path}: not a run folder", hint="pass folders such as runs/train/cnn")
    markers = ("config.toml", "history.csv", "metrics.json", "weights")
    if not any((path / m).exists() for m in markers):
        raise BadInputError(
            f"{path}: not a run folder (no config.toml, history.csv, metrics.json or weights/)",
            hint="pass folders made by `serenesense train` (runs/train/<name>)",
        )
    problems: list[str] = []
    config = _read_toml(path / "config.toml", problems)
    task = str(config.get("task") or ("train" if config.get("model") else "unknown"))
    run = RunInfo(path=path, name=path.name, task=task, config=config, problems=problems)
    history = path / "history.csv"
    if history.is_file():
        try:
            run.history = read_csv_numbers(history)
        except (OSError, csv.Error, UnicodeDecodeError) as error:
            problems.append(f"history.csv: unreadable ({error})")
        text_cells = _blank_text_cells(run.history)
        if text_cells:
            problems.append(f"history.csv: {text_cells} cell(s) that are not numbers left out")
    best = path / "weights" / "best.safetensors"
    if best.is_file():
        run.weights_bytes = best.stat().st_size
        try:
            header_meta, run.parameters = weights_header(best)
        except Exception as error:
            if missing_extra(error) is not None:
                raise  # the lean install: say which extra, not "unreadable"
            problems.append(f"weights/best.safetensors: unreadable header ({error})")
            header_meta = None
        run.best_meta = _read_json(best.with_suffix(".json"), problems, schema.WEIGHTS_META)
        if run.best_meta is None and shape_problem(header_meta, schema.WEIGHTS_META) is None:
            run.best_meta = header_meta
    weights = "weights/best.safetensors"
    run.evaluations = _evaluations(path / EVAL_DIR, weights, path, problems)
    run.primary = _primary(
        run.evaluations, path / "metrics.json", path / "predictions.csv", weights, problems
    )
    run.metrics = run.primary.metrics if run.primary else None
    run.bench = _read_json(path / "bench.json", problems, schema.BENCH) or _read_json(
        path / "weights" / "best.torch.bench.json", problems, schema.BENCH
    )
    for onnx in sorted((path / "export").glob("*.onnx")) if (path / "export").is_dir() else []:
        size = onnx.stat().st_size
        external = onnx.with_name(onnx.name + ".data")
        if external.is_file():
            size += external.stat().st_size
        stem = onnx.name[: -len(".onnx")]
        label = onnx.relative_to(path).as_posix()
        evaluations = _evaluations(onnx.with_name(f"{stem}.{EVAL_DIR}"), label, path, problems)
        primary = _primary(
            evaluations,
            onnx.with_name(f"{stem}.metrics.json"),
            onnx.with_name(f"{stem}.predictions.csv"),
            label,
            problems,
        )
        run.exports.append(
            ExportInfo(
                path=onnx,
                size_bytes=size,
                bench=_read_json(onnx.with_name(f"{stem}.bench.json"), problems, schema.BENCH),
                metrics=primary.metrics if primary else None,
                quantize=_read_json(
                    onnx.with_name(f"{stem}.quantize.json"), problems, schema.QUANTIZE
                ),
                evaluations=evaluations,
            )
        )
    run.reconstructions = latest_reconstructions(path / "figures")
    return run


def _evaluations(folder: Path, model: str, run_dir: Path, problems: list[str]) -> list[EvalInfo]:
    """The kept evaluations in ``folder`` (``eval/<data>-<split>/metrics.json``), by name."""
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        metrics_file = sub / "metrics.json"
        where: list[str] = []
        metrics = _read_json(metrics_file, where, schema.METRICS)
        problems += [
            f"{metrics_file.relative_to(run_dir).as_posix()}: {w.split(': ', 1)[1]}" for w in where
        ]
        if metrics is None:
            continue
        found.append(
            EvalInfo(
                name=sub.name,
                model=model,
                metrics=metrics,
                predictions=_file_or_none(sub / "predictions.csv"),
                thresholds=_file_or_none(sub / "thresholds.csv"),
            )
        )
    return found


def _primary(
    kept: list[EvalInfo], latest: Path, latest_predictions: Path, model: str, problems: list[str]
) -> EvalInfo | None:
    """The evaluation a comparison shows: the newest kept one of the test split; else
    the last evaluation (``metrics.json`` beside the model); else the newest kept one.

    Why the test split first: evaluating ``val`` after ``test`` must not turn the
    comparison table into validation numbers.
    """
    last = _read_json(latest, problems, schema.METRICS)
    tests = [e for e in kept if e.split == "test"]
    if tests:
        return max(tests, key=lambda e: e.created)
    if last is not None:
        return EvalInfo(
            name=latest.name,
            model=model,
            metrics=last,
            predictions=_file_or_none(latest_predictions),
        )
    return max(kept, key=lambda e: e.created) if kept else None


def _file_or_none(path: Path) -> Path | None:
    return path if path.is_file() else None


PREDICTION_COLUMNS = ("path", "true", "predicted", "confidence")
"""The ``predictions.csv`` columns the report reads (plus ``p_<class>``)."""


def read_predictions(path: Path, problems: list[str], where: str) -> list[dict[str, Any]] | None:
    """``predictions.csv`` rows (numbers parsed), or ``None`` with a problem noted
    when it is unreadable or lacks the columns the report needs."""
    try:
        rows = read_csv_numbers(path)
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, csv.Error, UnicodeDecodeError) as error:
        problems.append(f"{where}: unreadable ({error})")
        return None
    missing = [c for c in PREDICTION_COLUMNS if c not in header]
    if missing:
        problems.append(f"{where}: left out, no {', '.join(missing)} column")
        return None
    for number, row in enumerate(rows, start=2):
        if not isinstance(row.get("confidence"), (int, float)):
            problems.append(f"{where}: left out, line {number}: confidence is not a number")
            return None
        for key in ("path", "true", "predicted"):
            row[key] = "" if row.get(key) is None else str(row[key])
    return rows


def latest_reconstructions(folder: Path) -> list[Path]:
    """The reconstruction figures of the latest epoch that has any."""
    if not folder.is_dir():
        return []
    by_epoch: dict[int, list[Path]] = {}
    for item in folder.iterdir():
        match = _RECONSTRUCTION.match(item.name)
        if match and item.is_file():
            by_epoch.setdefault(int(match.group(1)), []).append(item)
    if not by_epoch:
        return []
    return sorted(by_epoch[max(by_epoch)])


EXAMPLE_SECONDS = 5.0
"""The example log-mel of each class shows at most this much of its clip."""


@dataclass
class DataSetInfo:
    """The prepared set a run was trained on (``data`` in its ``config.toml``)."""

    path: Path
    classes: list[str]
    counts: dict[str, dict[str, int]]
    """split -> class -> clips."""
    examples: list[dict[str, Any]] = field(default_factory=list)
    """One log-mel (dB) per class: ``class``, ``logmel``, ``seconds``, ``clip``."""


def load_training_data(
    config: dict[str, Any], problems: list[str], *, examples: bool = True
) -> DataSetInfo | None:
    """The run's training set, when ``config.toml`` names one that is still there.

    ``None`` when the run names none or it is gone (the report then counts the
    clips of its evaluations instead); a set that exists but cannot be read is
    noted in ``problems``.
    """
    from serenesense_cli.data.cache import open_prepared, read_metadata
    from serenesense_cli.errors import SereneSenseError

    given = config.get("data")
    if not isinstance(given, str) or not given:
        return None
    path = Path(given)
    if not path.is_dir() or read_metadata(path) is None:
        return None
    try:
        prepared = open_prepared(path)
        summary = prepared.summary()
    except (SereneSenseError, OSError, ValueError) as error:
        problems.append(f"training data {path}: unreadable ({getattr(error, 'message', error)})")
        return None
    counts = {
        split: {name: int(entry["clips"]) for name, entry in info["classes"].items()}
        for split, info in summary["splits"].items()
    }
    info = DataSetInfo(path=path, classes=list(prepared.classes), counts=counts)
    if examples:
        try:
            info.examples = example_logmels(prepared)
        except (SereneSenseError, OSError, ValueError, ImportError) as error:
            problems.append(f"training data {path}: no example log-mel ({error})")
    return info


def example_logmels(prepared: Any, seconds: float = EXAMPLE_SECONDS) -> list[dict[str, Any]]:
    """The first clip of each class (training split first), its first ``seconds``
    as a 64-band log-mel in dB, with the project's own log-mel front end."""
    import numpy as np
    import torch

    from serenesense_cli.audio.features import LogMel

    sr = int(prepared.sample_rate)
    first: dict[str, int] = {}
    for split in ("train", "val", "test", *prepared.splits):
        for index in prepared.indices(split):
            first.setdefault(prepared.records[index].label, index)
    found = []
    for name in prepared.classes:
        if name not in first:
            continue
        index = first[name]
        wave = np.asarray(prepared.waveform(index), dtype=np.float32)[: int(seconds * sr)]
        length = max(len(wave), 1024)
        front = LogMel(
            sample_rate=sr,
            n_fft=1024,
            hop_length=320,
            n_mels=64,
            f_max=min(8000.0, sr / 2),
            clip_seconds=length / sr,
            target_frames=None,
        )
        with torch.no_grad():
            natural = front.log_mel(torch.from_numpy(wave)[None])[0, 0].numpy()
        found.append(
            {
                "class": name,
                "logmel": natural * (10.0 / np.log(10.0)),  # natural log of power -> dB
                "seconds": length / sr,
                "clip": prepared.records[index].clip_id,
            }
        )
    return found
