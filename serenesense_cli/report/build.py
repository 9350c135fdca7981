"""``build_report``: Markdown + self-contained HTML over one or more run folders.

The report shows what the run folders hold (history, best-checkpoint
metadata, ``metrics.json`` from ``serenesense evaluate``, benchmark JSON,
exported ONNX files); anything absent is printed as "missing". Numbers are
formatted by the helpers below, in one place, so the Markdown, the HTML and
``report.json`` agree with ``metrics.json``.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serenesense_cli import __version__
from serenesense_cli.errors import BadInputError
from serenesense_cli.evaluate.run import PROB_PREFIX
from serenesense_cli.evaluate.thresholds import class_curves
from serenesense_cli.fileio import (
    refuse_input_as_output,
    write_json_atomic,
    write_text_atomic,
)
from serenesense_cli.progress import ProgressCallback, report
from serenesense_cli.report import figures
from serenesense_cli.report.collect import (
    EXAMPLE_SECONDS,
    DataSetInfo,
    EvalInfo,
    ExportInfo,
    RunInfo,
    load_run,
    load_training_data,
    read_predictions,
)
from serenesense_cli.report.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Para,
    Table,
    to_html,
    to_markdown,
)

MISSING = "missing"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
FIGURES_DIR = "figures"

COMPARISON_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run", "run"),
    ("model", "model"),
    ("parameters", "parameters"),
    ("size_bytes", "size on disk"),
    ("best_val_acc", "val acc (best ckpt)"),
    ("final_val_acc", "final val acc"),
    ("train_val_gap", "train-val gap"),
    ("best_epoch", "best epoch"),
    ("epochs", "epochs"),
    ("training_seconds", "training time"),
    ("eval_set", "eval set"),
    ("eval_acc", "accuracy"),
    ("eval_macro_f1", "macro-F1"),
    ("latency_p50_ms", "latency p50"),
)


# -- number formatting: the one place that decides how a value reads ---------------


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals (0.9306 -> "93.06 %")."""
    return MISSING if value is None else f"{value * 100:.2f} %"


def points(value: float | None) -> str:
    """A difference of fractions in percentage points."""
    return MISSING if value is None else f"{value * 100:+.2f} pts"


def number(value: float | None, digits: int = 4) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def integer(value: int | None) -> str:
    return MISSING if value is None else f"{int(value):,}"


def megabytes(size: int | None) -> str:
    return MISSING if size is None else f"{size / 1e6:.2f} MB"


def millis(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f} ms"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


_FORMATTERS = {
    "parameters": integer,
    "size_bytes": megabytes,
    "best_val_acc": pct,
    "final_val_acc": pct,
    "train_val_gap": points,
    "best_epoch": integer,
    "epochs": integer,
    "training_seconds": duration,
    "eval_acc": pct,
    "eval_macro_f1": pct,
    "latency_p50_ms": millis,
}


def cell(key: str, value: Any) -> str:
    """How ``value`` of column ``key`` is written in the report."""
    if value is None:
        return MISSING
    formatter = _FORMATTERS.get(key)
    return formatter(value) if formatter else str(value)


# -- what a run contributes -------------------------------------------------------


def eval_set(metrics: dict[str, Any] | None) -> str | None:
    """A short description of the data an evaluation scored."""
    if not metrics or not isinstance(metrics.get("data"), dict):
        return None
    data = metrics["data"]
    name = Path(str(data.get("path", "?"))).name or str(data.get("path"))
    if data.get("kind") == "prepared":
        return f"{data.get('split')} split of {name}"
    which = f"{data.get('split')} clips" if data.get("split") else "all clips"
    return f"{name} ({data.get('kind')}, {which})"


def _latency(bench: dict[str, Any] | None, key: str = "p50") -> float | None:
    if not bench or not isinstance(bench.get("latency_ms"), dict):
        return None
    value = bench["latency_ms"].get(key)
    return float(value) if isinstance(value, (int, float)) else None


def comparison_row(run: RunInfo) -> dict[str, Any]:
    """One row of the comparison table (``None`` = missing)."""
    best, final = run.best_row() or {}, run.final_row() or {}
    summary = (run.metrics or {}).get("summary") or {}
    gap = None
    if final.get("train_acc") is not None and final.get("val_acc") is not None:
        gap = float(final["train_acc"]) - float(final["val_acc"])
    completed = [r for r in run.history if not r.get("partial")]
    return {
        "run": run.name,
        "path": str(run.path),
        "task": run.task,
        "model": run.model_name,
        "parameters": run.parameters,
        "size_bytes": run.weights_bytes,
        "best_val_acc": best.get("val_acc"),
        "final_val_acc": final.get("val_acc"),
        "final_train_acc": final.get("train_acc"),
        "train_val_gap": gap,
        "best_epoch": run.best_epoch,
        "epochs": len(completed) if run.history else None,
        "training_seconds": run.training_seconds,
        "eval_set": eval_set(run.metrics),
        "eval_acc": summary.get("accuracy"),
        "eval_macro_f1": summary.get("macro_f1"),
        "latency_p50_ms": _latency(run.bench),
    }


@dataclass
class ReportResult:
    """The files a report wrote."""

    out_dir: Path
    markdown: Path
    html: Path
    json: Path
    figures: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    replaced: bool = False
    """``out`` held a report already: it was replaced (documented behaviour)."""
    problems: list[str] = field(default_factory=list)
    """Files of the runs that could not be read, ``RUN: FILE: why`` (noted in the report)."""


def build_report(
    *,
    runs: Sequence[str | Path],
    out: str | Path,
    title: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> ReportResult:
    """Write ``report.md``, ``report.html``, ``report.json`` and PNG figures into ``out``."""
    if not runs:
        raise BadInputError("no run folder given", hint="serenesense report RUN... --out DIR")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder")
    refuse_input_as_output(out, runs)  # a report inside a run folder would mix with its files
    replaced = (out / REPORT_MD).exists() or (out / REPORT_HTML).exists()
    infos = [load_run(path) for path in runs]
    for run, name in zip(infos, unique_names(infos), strict=True):
        run.name = name
    fig_dir = out / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    earlier = set(fig_dir.glob("*.png"))
    title = title or "serenesense report: " + ", ".join(run.name for run in infos)
    slugs = _slugs([run.name for run in infos])
    written: list[Path] = []
    total = len(infos) + 1

    classifiers = [r for r in infos if r.task != "pretrain"]
    pretrain = [r for r in infos if r.task == "pretrain"]
    rows = [comparison_row(r) for r in classifiers]

    blocks: list[Block] = [
        Heading(1, title),
        Para(
            f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %z')} by serenesense {__version__} "
            f"from {len(infos)} run folder(s). Values a run folder does not hold are "
            f"shown as \u201c{MISSING}\u201d."
        ),
    ]
    if classifiers:
        blocks += _comparison_blocks(classifiers, rows, fig_dir, written)
    if pretrain:
        blocks += _pretrain_table(pretrain)
    report(on_progress, "report", 1, total)
    for done, (run, slug) in enumerate(zip(infos, slugs, strict=True), start=2):
        blocks += _run_blocks(run, slug, fig_dir, written)
        report(on_progress, "report", done, total)

    for stale in earlier - set(written):  # figures of an earlier report that this one lacks
        stale.unlink(missing_ok=True)
    markdown = write_text_atomic(out / REPORT_MD, to_markdown(blocks, base=out))
    page = write_text_atomic(out / REPORT_HTML, to_html(blocks, title=title))
    payload = {
        "title": title,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "serenesense": __version__,
        "runs": rows + [{"run": r.name, "path": str(r.path), "task": r.task} for r in pretrain],
        "figures": [p.relative_to(out).as_posix() for p in written],
    }
    summary = write_json_atomic(out / REPORT_JSON, payload)
    return ReportResult(
        out_dir=out,
        markdown=markdown,
        html=page,
        json=summary,
        figures=written,
        rows=rows,
        replaced=replaced,
        problems=[f"{run.path}: {problem}" for run in infos for problem in run.problems],
    )


def unique_names(runs: Sequence[RunInfo]) -> list[str]:
    """What each run is called in the report: its folder name; where two runs share
    it, the shortest path ending that tells them apart (``a/cnn``, ``b/cnn``), and
    ``name (2)`` where even their full paths do not (the same folder twice)."""
    paths = [run.path.resolve() for run in runs]
    names = [run.name for run in runs]
    for i, run in enumerate(runs):
        twins = [p for p, other in zip(paths, runs, strict=True) if other.name == run.name]
        twins = [p for p in twins if p != paths[i]]
        depth = 1
        while twins and depth < len(paths[i].parts):
            depth += 1
            ending = paths[i].parts[-depth:]
            twins = [t for t in twins if t.parts[-depth:] == ending]
        if depth > 1:
            names[i] = "/".join(paths[i].parts[-depth:]).lstrip("/")
    used: dict[str, int] = {}
    unique = []
    for name in names:
        used[name] = used.get(name, 0) + 1
        unique.append(name if used[name] == 1 else f"{name} ({used[name]})")
    return unique


def _slugs(names: Sequence[str]) -> list[str]:
    """File-name-safe, unique stems for each run's figures."""
    used: set[str] = set()
    slugs = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
        slug, n = base, 1
        while slug in used:
            n += 1
            slug = f"{base}_{n}"
        used.add(slug)
        slugs.append(slug)
    return slugs


def _comparison_blocks(
    runs: list[RunInfo], rows: list[dict[str, Any]], fig_dir: Path, written: list[Path]
) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Comparison"),
        Table(
            headers=tuple(label for _, label in COMPARISON_COLUMNS),
            rows=tuple(tuple(cell(k, row.get(k)) for k, _ in COMPARISON_COLUMNS) for row in rows),
        ),
        Bullets(
            (
                "parameters: learnable parameters in weights/best.safetensors (front-end "
                "constants and BatchNorm statistics excluded); size on disk: that file.",
                "val acc (best ckpt): validation accuracy of the saved best checkpoint (chosen "
                "on the run's select metric); final val acc and train-val gap (train minus "
                "validation accuracy): the last completed epoch.",
                "training time: sum of the epoch times in history.csv.",
                "accuracy, macro-F1: from metrics.json (serenesense evaluate) on the eval set "
                "named; latency p50: bench.json (serenesense bench), on the machine it names.",
            )
        ),
    ]
    if len(runs) > 1 or any(r.get("eval_acc") is not None for r in rows):
        path = figures.comparison(rows, [r.history for r in runs], fig_dir / "comparison.png")
        written.append(path)
        blocks.append(Image(path, "Runs compared: scores, validation accuracy, size"))
    deploy = _deployment_rows(runs)
    if deploy:
        blocks += [
            Heading(2, "Deployment artefacts"),
            Table(
                headers=(
                    "run",
                    "artefact",
                    "kind",
                    "size on disk",
                    "eval set",
                    "accuracy",
                    "macro-F1",
                    "latency p50",
                    "p90",
                    "p99",
                    "peak RSS",
                    "threads",
                ),
                rows=tuple(deploy),
            ),
        ]
    blocks += _quantize_blocks(runs)
    return blocks


def quantize_scores(run: RunInfo, export: ExportInfo) -> dict[str, Any] | None:
    """Accuracy and macro-F1 that ``serenesense quantize --data`` measured, shaped like
    ``metrics.json``: for the INT8 file from its own ``.quantize.json``, for the FP32
    file from the ``.quantize.json`` of the INT8 model made from it."""
    if export.quantize is not None:
        found, side = export.quantize, "int8"
    else:
        made = [
            e.quantize
            for e in run.exports
            if e.quantize and Path(str(e.quantize.get("source") or "")).name == export.path.name
        ]
        if not made:
            return None
        found, side = made[-1], "fp32"
    measured = found.get("measured") or {}
    if found.get(f"accuracy_{side}") is None:
        return None
    return {
        "source": "quantize",
        "summary": {
            "accuracy": found.get(f"accuracy_{side}"),
            "macro_f1": found.get(f"macro_f1_{side}"),
        },
        "data": {"path": measured.get("path"), "kind": "prepared", "split": found.get("split")},
    }


def _quantize_blocks(runs: list[RunInfo]) -> list[Block]:
    """What ``serenesense quantize`` measured for each INT8 model (``.quantize.json``)."""
    rows = []
    for run in runs:
        for export in run.exports:
            q = export.quantize
            if not q:
                continue
            clips = q.get("agreement_clips")
            rows.append(
                (
                    run.name,
                    export.path.relative_to(run.path).as_posix(),
                    str(q.get("mode") or MISSING),
                    str(q.get("calibration") or "none (dynamic)"),
                    f"{pct(q.get('top1_agreement'))} of {integer(clips)}",
                    f"{pct(q.get('accuracy_fp32'))} → {pct(q.get('accuracy_int8'))}",
                    points(q.get("accuracy_change")),
                    f"{pct(q.get('macro_f1_fp32'))} → {pct(q.get('macro_f1_int8'))}",
                    points(q.get("macro_f1_change")),
                    f"{_mb(q.get('size_fp32_mb'))} → {_mb(q.get('size_int8_mb'))}",
                    duration(q.get("seconds")),
                )
            )
    if not rows:
        return []
    return [
        Heading(2, "INT8 quantization"),
        Table(
            headers=(
                "run",
                "INT8 model",
                "mode",
                "calibration",
                "top-1 agreement (clips)",
                "accuracy FP32 → INT8",
                "change",
                "macro-F1 FP32 → INT8",
                "change",
                "size",
                "time",
            ),
            rows=tuple(rows),
        ),
        Para(
            "From <INT8 model>.quantize.json (serenesense quantize): agreement = clips whose top "
            "class is the same in FP32 and INT8; accuracy and macro-F1 on the split given to "
            "quantize --data (missing without it)."
        ),
    ]


def _mb(value: float | None) -> str:
    return MISSING if value is None else f"{float(value):.2f} MB"


def _deployment_rows(runs: list[RunInfo]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for run in runs:
        if not run.exports and not run.bench:
            continue
        artefacts: list[tuple[str, str, int | None, Any, Any]] = [
            (
                "weights/best.safetensors",
                "torch",
                run.weights_bytes,
                run.metrics,
                run.bench,
            )
        ]
        for export in run.exports:
            name = export.path.relative_to(run.path).as_posix()
            metrics = export.metrics or quantize_scores(run, export)
            artefacts.append((name, "onnx", export.size_bytes, metrics, export.bench))
        for name, kind, size, metrics, bench in artefacts:
            summary = (metrics or {}).get("summary") or {}
            where = eval_set(metrics)
            if where and (metrics or {}).get("source") == "quantize":
                where += " (serenesense quantize)"
            rss = (bench or {}).get("peak_rss_mb")
            threads = (bench or {}).get("threads")
            rows.append(
                (
                    run.name,
                    name,
                    kind,
                    megabytes(size),
                    where or MISSING,
                    pct(summary.get("accuracy")),
                    pct(summary.get("macro_f1")),
                    millis(_latency(bench, "p50")),
                    millis(_latency(bench, "p90")),
                    millis(_latency(bench, "p99")),
                    MISSING if rss is None else f"{float(rss):.0f} MB",
                    MISSING if threads is None else str(threads),
                )
            )
    return rows


def _pretrain_table(runs: list[RunInfo]) -> list[Block]:
    rows = []
    for run in runs:
        final = run.final_row() or {}
        val = [r["val_loss"] for r in run.history if r.get("val_loss") is not None]
        rows.append(
            (
                run.name,
                run.model_name or MISSING,
                integer(run.parameters),
                integer(len([r for r in run.history if not r.get("partial")]) or None),
                number(final.get("train_loss")),
                number(final.get("val_loss")),
                number(min(val) if val else None),
                duration(run.training_seconds),
            )
        )
    return [
        Heading(2, "Self-supervised pretraining"),
        Table(
            headers=(
                "run",
                "model",
                "parameters",
                "epochs",
                "final train loss",
                "final val loss",
                "best val loss",
                "training time",
            ),
            rows=tuple(rows),
        ),
    ]


WORST_CLIPS = 10
"""Misclassified clips listed per run, the most confidently wrong first."""


@dataclass
class _Extras:
    """What a classifier run's section reads beyond the JSON files, read once up
    front so that every file that cannot be read is listed at the top."""

    data: DataSetInfo | None
    predictions: dict[Path, list[dict[str, Any]] | None]
    validation: EvalInfo | None

    @classmethod
    def gather(cls, run: RunInfo) -> _Extras:
        data = load_training_data(run.config, run.problems)
        vals = [e for e in run.evaluations if e.split == "val"]
        validation = max(vals, key=lambda e: e.created) if vals else None
        wanted = [e for e in (run.primary, validation) if e is not None]
        if data is None:
            wanted += run.evaluations
        predictions: dict[Path, list[dict[str, Any]] | None] = {}
        for entry in wanted:
            path = entry.predictions
            if path is not None and path not in predictions:
                where = path.relative_to(run.path).as_posix()
                predictions[path] = read_predictions(path, run.problems, where)
        return cls(data=data, predictions=predictions, validation=validation)

    def rows(self, entry: EvalInfo | None) -> list[dict[str, Any]] | None:
        if entry is None or entry.predictions is None:
            return None
        return self.predictions.get(entry.predictions)


def _run_blocks(run: RunInfo, slug: str, fig_dir: Path, written: list[Path]) -> list[Block]:
    row = comparison_row(run)
    extras = _Extras.gather(run) if run.task != "pretrain" else None
    facts = [
        f"folder: {run.path}",
        f"task: {run.task}",
        f"model: {row['model'] or MISSING}",
        f"classes: {', '.join(run.classes) if run.classes else MISSING}",
        f"parameters: {integer(run.parameters)}; weights size: {megabytes(run.weights_bytes)}",
        f"epochs completed: {cell('epochs', row['epochs'])}; best epoch: "
        f"{integer(run.best_epoch)}"
        + (
            f" (selected on {run.best_meta['select_metric']})"
            if run.best_meta and run.best_meta.get("select_metric")
            else ""
        ),
        f"training time: {duration(run.training_seconds)}",
        f"training data: {_listing(run.config.get('data')) or MISSING}",
    ]
    blocks: list[Block] = [Heading(2, f"Run: {run.name}"), Bullets(tuple(facts))]
    if run.problems:
        blocks.append(Para("Files that could not be read: " + "; ".join(run.problems)))
    blocks.append(Heading(3, "Training curves"))
    if run.history:
        if run.task == "pretrain":
            path = figures.pretrain_curves(
                run.history, fig_dir / f"{slug}_curves.png", title=f"{run.name}: pretraining"
            )
        else:
            path = figures.training_curves(
                run.history,
                fig_dir / f"{slug}_curves.png",
                title=f"{run.name}: training",
                best_epoch=run.best_epoch,
            )
        written.append(path)
        blocks.append(Image(path, f"{run.name}: training curves"))
    else:
        blocks.append(Para(f"history.csv: {MISSING}"))
    if run.task == "pretrain" or extras is None:
        blocks += _reconstruction_blocks(run, slug, fig_dir, written)
        return blocks
    blocks += _dataset_blocks(run, extras, slug, fig_dir, written)
    blocks += _evaluation_blocks(run, slug, fig_dir, written)
    blocks += _all_evaluations_blocks(run)
    blocks += _worst_blocks(run, extras)
    blocks += _threshold_blocks(run, extras, slug, fig_dir, written)
    return blocks


def _dataset_blocks(
    run: RunInfo, extras: _Extras, slug: str, fig_dir: Path, written: list[Path]
) -> list[Block]:
    """Clips per class and split (the training set, else the evaluated sets) and an
    example log-mel per class (the training set only)."""
    blocks: list[Block] = [Heading(3, "Data")]
    data = extras.data
    if data is not None:
        splits = list(data.counts)
        table = [
            (name, *(integer(data.counts[s].get(name, 0)) for s in splits)) for name in data.classes
        ]
        table.append(
            ("all", *(integer(sum(data.counts[s].values())) for s in splits)),
        )
        blocks += [
            Para(f"Clips per class in each split of the training data set {data.path}:"),
            Table(headers=("class", *splits), rows=tuple(table)),
        ]
        if data.examples:
            path = figures.logmel_examples(
                data.examples,
                fig_dir / f"{slug}_logmel.png",
                title=f"{run.name}: one clip per class (log-mel, first "
                f"{EXAMPLE_SECONDS:g} s at most)",
            )
            written.append(path)
            clips = "; ".join(f"{e['class']}: {e['clip']}" for e in data.examples)
            blocks += [
                Image(path, f"{run.name}: example log-mel per class"),
                Para(f"Clips: {clips}"),
            ]
        return blocks
    given = run.config.get("data")
    counted = [
        (e, extras.rows(e)) for e in run.evaluations or ([run.primary] if run.primary else [])
    ]
    counted = [(e, rows) for e, rows in counted if rows is not None]
    note = (
        f"The training data set ({_listing(given) or MISSING}) is not reachable, so there is "
        "no example log-mel; "
    )
    if not counted:
        return [*blocks, Para(note + f"clips per class: {MISSING} (no predictions.csv).")]
    classes = run.classes or sorted({r["true"] for _, rows in counted for r in rows})
    tallies = [Counter(r["true"] for r in rows) for _, rows in counted]
    table = [(name, *(integer(t.get(name, 0)) for t in tallies)) for name in classes]
    table.append(("all", *(integer(sum(t.values())) for t in tallies)))
    return [
        *blocks,
        Para(note + "clips per class of each evaluated set (from its predictions.csv):"),
        Table(headers=("class", *(e.name for e, _ in counted)), rows=tuple(table)),
    ]


def _all_evaluations_blocks(run: RunInfo) -> list[Block]:
    """Every kept evaluation of the run's weights and exported models."""
    entries = [*run.evaluations, *(e for x in run.exports for e in x.evaluations)]
    if not entries:
        return []
    rows = []
    for entry in entries:
        summary = entry.metrics.get("summary") or {}
        rows.append(
            (
                entry.model,
                entry.name,
                eval_set(entry.metrics) or MISSING,
                integer(summary.get("clips")),
                pct(summary.get("accuracy")),
                pct(summary.get("balanced_accuracy")),
                pct(summary.get("macro_f1")),
                entry.created or MISSING,
            )
        )
    shown = run.primary.name if run.primary else MISSING
    return [
        Heading(3, "All evaluations"),
        Table(
            headers=(
                "model",
                "folder",
                "data",
                "clips",
                "accuracy",
                "balanced accuracy",
                "macro-F1",
                "evaluated",
            ),
            rows=tuple(rows),
        ),
        Para(
            f"Kept in eval/<data>-<split>/ (serenesense evaluate); the section above and the "
            f"comparison show {shown} (the test split when there is one)."
        ),
    ]


def _worst_blocks(run: RunInfo, extras: _Extras) -> list[Block]:
    """The most confidently wrong clips of the evaluation shown: what to listen to first."""
    blocks: list[Block] = [Heading(3, "Most confidently misclassified clips")]
    rows = extras.rows(run.primary)
    if rows is None:
        return [*blocks, Para(f"predictions.csv: {MISSING}")]
    wrong = sorted(
        (r for r in rows if r["true"] != r["predicted"]), key=lambda r: -float(r["confidence"])
    )
    if not wrong:
        return [*blocks, Para(f"No clip of {run.primary.name} is misclassified.")]
    table = []
    for r in wrong[:WORST_CLIPS]:
        p_true = r.get(PROB_PREFIX + r["true"])
        table.append(
            (
                r["path"],
                r["true"],
                r["predicted"],
                number(float(r["confidence"]), 3),
                number(float(p_true), 3) if isinstance(p_true, (int, float)) else MISSING,
            )
        )
    return [
        *blocks,
        Para(
            f"{min(len(wrong), WORST_CLIPS)} of the {len(wrong)} misclassified clips of "
            f"{run.primary.name}, highest score of the wrong class first "
            f"(from its predictions.csv):"
        ),
        Table(
            headers=("file", "true", "predicted", "score", "score of the true class"),
            rows=tuple(table),
        ),
    ]


def _threshold_blocks(
    run: RunInfo, extras: _Extras, slug: str, fig_dir: Path, written: list[Path]
) -> list[Block]:
    """Precision-recall curves and the best-F1 threshold per class, on validation clips."""
    blocks: list[Block] = [Heading(3, "Precision-recall and thresholds per class")]
    val = extras.validation
    if val is None:
        return [
            *blocks,
            Para(
                f"validation predictions: {MISSING} (run `serenesense evaluate {run.path} "
                "--data DIR --split val` to add them)"
            ),
        ]
    rows = extras.rows(val)
    classes = list((val.metrics.get("model") or {}).get("classes") or run.classes or [])
    columns = [PROB_PREFIX + c for c in classes]
    usable = [r for r in rows or [] if r["true"] in classes]
    if (
        not usable
        or not classes
        or any(not isinstance(r.get(c), (int, float)) for r in usable for c in columns)
    ):
        return [*blocks, Para(f"{val.name}/predictions.csv: {MISSING} or without class scores")]
    import numpy as np

    index = {c: i for i, c in enumerate(classes)}
    y_true = np.array([index[r["true"]] for r in usable])
    probs = np.array([[float(r[c]) for c in columns] for r in usable])
    curves = class_curves(y_true, probs, classes)
    path = figures.pr_curves(
        curves, fig_dir / f"{slug}_pr.png", title=f"{run.name}: precision-recall ({val.name})"
    )
    written.append(path)
    table = tuple(
        (
            c.name,
            number(c.threshold, 3),
            pct(c.best_precision),
            pct(c.best_recall),
            pct(c.best_f1),
            integer(c.support),
            number(c.average_precision, 3),
        )
        for c in curves
    )
    where = (
        f"{val.thresholds.relative_to(run.path).as_posix()} holds this table "
        "(`serenesense detect --thresholds FILE` reads it)"
        if val.thresholds is not None
        else f"thresholds.csv: {MISSING} (evaluate --split val writes it)"
    )
    return [
        *blocks,
        Image(path, f"{run.name}: precision-recall curves per class"),
        Table(
            headers=("class", "threshold", "precision", "recall", "F1", "support", "AP"),
            rows=table,
        ),
        Para(
            f"One-vs-rest on the {len(usable)} clips of {val.name}: each class's threshold is "
            f"the score with the best F1 for that class (clip scores, the mean over windows). "
            f"{where}."
        ),
    ]


def _listing(value: Any) -> str:
    """A config value for people: lists joined with commas."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _reconstruction_blocks(
    run: RunInfo, slug: str, fig_dir: Path, written: list[Path]
) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Reconstructions (latest epoch)")]
    if not run.reconstructions:
        return [*blocks, Para(f"figures/reconstruction_epoch*.png: {MISSING}")]
    for source in run.reconstructions:
        target = fig_dir / f"{slug}_{source.name}"
        shutil.copyfile(source, target)
        written.append(target)
        blocks.append(Image(target, f"{run.name}: {source.name}"))
    return blocks


_SUMMARY_ROWS = (
    ("accuracy", "accuracy", pct),
    ("balanced_accuracy", "balanced accuracy", pct),
    ("macro_f1", "macro-F1", pct),
    ("weighted_f1", "weighted F1", pct),
    ("top2_accuracy", "top-2 accuracy", pct),
    ("ece", "expected calibration error", number),
    ("log_loss", "log loss", number),
    ("clips", "clips", integer),
    ("windows", "windows", integer),
    ("mean_inference_ms_per_clip", "mean inference time per clip", millis),
)


def _evaluation_blocks(run: RunInfo, slug: str, fig_dir: Path, written: list[Path]) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Evaluation")]
    metrics = run.metrics
    if not metrics:
        return [
            *blocks,
            Para(
                f"metrics.json: {MISSING} (run `serenesense evaluate {run.path} --data DIR` "
                "to add it)"
            ),
        ]
    summary = metrics.get("summary") or {}
    model = metrics.get("model") or {}
    data = metrics.get("data") or {}
    policy = metrics.get("window_policy") or {}
    timing = metrics.get("timing") or {}
    skipped = metrics.get("skipped") or []
    blocks.append(
        Bullets(
            (
                f"model file: {model.get('file', MISSING)} ({model.get('kind', MISSING)})",
                f"data: {data.get('path', MISSING)} ({eval_set(metrics) or MISSING})",
                f"window policy: {policy.get('description', MISSING)}",
                f"timing: {timing.get('note', MISSING)}",
                f"evaluated: {metrics.get('created', MISSING)}; skipped files: {len(skipped)}",
            )
        )
    )
    blocks.append(
        Table(
            headers=("metric", "value"),
            rows=tuple((label, fmt(summary.get(key))) for key, label, fmt in _SUMMARY_ROWS),
        )
    )
    per_class = metrics.get("per_class") or []
    if per_class:
        blocks.append(
            Table(
                headers=("class", "precision", "recall", "F1", "support"),
                rows=tuple(
                    (
                        str(e.get("class")),
                        pct(e.get("precision")),
                        pct(e.get("recall")),
                        pct(e.get("f1")),
                        integer(e.get("support")),
                    )
                    for e in per_class
                ),
            )
        )
    matrix = metrics.get("confusion_matrix")
    if matrix and matrix.get("counts"):
        classes = [str(c) for c in matrix["classes"]]
        blocks.append(Para("Confusion matrix (counts; rows = true class, columns = predicted):"))
        blocks.append(
            Table(
                headers=("true \\ predicted", *classes),
                rows=tuple(
                    (name, *(str(v) for v in counts))
                    for name, counts in zip(classes, matrix["counts"], strict=False)
                ),
            )
        )
        path = figures.confusion_heatmap(
            matrix, fig_dir / f"{slug}_confusion.png", title=f"{run.name}: confusion matrix"
        )
        written.append(path)
        blocks.append(Image(path, f"{run.name}: confusion matrix"))
    if per_class:
        path = figures.per_class_f1(
            per_class, fig_dir / f"{slug}_f1.png", title=f"{run.name}: F1 per class"
        )
        written.append(path)
        blocks.append(Image(path, f"{run.name}: F1 per class"))
    calibration = metrics.get("calibration")
    if calibration and calibration.get("edges"):
        path = figures.reliability(
            calibration, fig_dir / f"{slug}_reliability.png", title=f"{run.name}: reliability"
        )
        written.append(path)
        blocks.append(Image(path, f"{run.name}: reliability diagram"))
    return blocks
