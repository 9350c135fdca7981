"""``serenesense bench MODEL...``: latency, throughput and memory side by side.

Exit codes: 0, or 1 when a budget was checked (``--profile pi5``,
``--budget-ms``, ``--budget-mb``) and a model missed it.
"""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._options import option
from serenesense_cli.cli._output import (
    OutputFormat,
    emit_csv,
    emit_json,
    emit_result_path,
    emit_table,
    log,
    progress_bars,
    warn,
)
from serenesense_cli.inference.devices import INFERENCE_DEVICES
from serenesense_cli.limits import COMMANDS

_PANEL_RUN = "Measurement (defaults from --profile)"
_PANEL_BUDGET = "Budget"


class Profile(str, Enum):
    """Benchmark profile."""

    default = "default"
    pi5 = "pi5"


_opt = functools.partial(option, panel=_PANEL_RUN)


CSV_COLUMNS = (
    "model",
    "kind",
    "precision",
    "threads",
    "idle",
    "load_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "mean_ms",
    "cpu_ms",
    "clips_per_s",
    "batch",
    "rtf",
    "peak_rss_mb",
    "size_mb",
    "budget",
)
ROWS = (
    ("kind", "kind"),
    ("size_mb", "size MB"),
    ("threads", "threads"),
    ("idle", "idle threads"),
    ("load_s", "load s"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("cpu_ms", "CPU ms/call"),
    ("clips_per_s", "clips/s"),
    ("batch", "batch"),
    ("rtf", "real-time factor"),
    ("peak_rss_mb", "peak RSS MB"),
    ("budget", "budget"),
)
"""Table rows (one column per model, so models sit side by side)."""


def bench_command(
    models: Annotated[
        list[Path],
        typer.Argument(
            help=".onnx files (FP32 or INT8), training run folders or .safetensors weights.",
            show_default=False,
        ),
    ],
    profile: Annotated[
        Profile,
        typer.Option(
            "--profile",
            help="default, or pi5: 4 threads, batch 1, sustained 60 s, budget 500 ms / 2 GB.",
        ),
    ] = Profile.default,
    threads: Annotated[
        int | None,
        _opt(
            "Inference threads (default: usable CPUs; pi5: 4).",
            "--threads",
            callback=within(COMMANDS["threads"]),
        ),
    ] = None,
    batch: Annotated[
        int | None,
        _opt(
            "Batch for the throughput figure (default 8; pi5: 1).",
            "--batch-size",
            "-b",
            callback=within(COMMANDS["batch"]),
        ),
    ] = None,
    batch_old: Annotated[
        int | None,
        _opt(
            "Old spelling of --batch-size.",
            "--batch",
            hidden=True,
            callback=within(COMMANDS["batch"]),
        ),
    ] = None,
    device: Annotated[
        Literal[INFERENCE_DEVICES],
        _opt("Compute device (cuda: GPU providers / torch CUDA, else the CPU, said).", "--device"),
    ] = "cpu",
    runs: Annotated[
        int | None,
        _opt(
            "Timed runs at batch 1 (default 30).", "--runs", callback=within(COMMANDS["bench_runs"])
        ),
    ] = None,
    warmup: Annotated[
        int | None,
        _opt("Warm-up runs (not timed).", "--warmup", callback=within(COMMANDS["bench_warmup"])),
    ] = None,
    duration: Annotated[
        float | None,
        _opt(
            "Sustained run of this many seconds instead of --runs (pi5: 60).",
            "--duration",
            callback=within(COMMANDS["bench_duration"]),
        ),
    ] = None,
    hop: Annotated[
        float,
        _opt(
            "Seconds between windows in live use, for the real-time factor.",
            "--hop",
            callback=within(COMMANDS["hop"]),
        ),
    ] = 1.0,
    budget_ms: Annotated[
        float | None,
        _opt(
            "Latency budget for p99 in ms (pi5: 500).",
            "--budget-ms",
            panel=_PANEL_BUDGET,
            callback=within(COMMANDS["budget_ms"]),
        ),
    ] = None,
    budget_mb: Annotated[
        float | None,
        _opt(
            "Peak memory budget in MB (pi5: 2048).",
            "--budget-mb",
            panel=_PANEL_BUDGET,
            callback=within(COMMANDS["budget_mb"]),
        ),
    ] = None,
    no_spin: Annotated[
        bool,
        _opt(
            "Idle threads sleep instead of spinning (onnxruntime allow_spinning=0, "
            "OMP_WAIT_POLICY=PASSIVE): steadier on shared or oversubscribed CPUs.",
            "--no-spin",
        ),
    ] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Results as a table, JSON or CSV.")
    ] = OutputFormat.table,
    no_save: Annotated[
        bool,
        typer.Option("--no-save", help="Do not write <model>.bench.json beside each model."),
    ] = False,
) -> None:
    """Benchmark models end to end (waveform in, scores out), each in a fresh process.

    Reports load time, latency p50/p90/p99/max at batch 1, throughput at
    --batch-size, peak RSS, real-time factor (mean latency / --hop) and threads.

    Examples:

      serenesense bench model.onnx model.int8.onnx runs/train/audiomae

      serenesense bench model.int8.onnx --profile pi5

      serenesense bench model.int8.onnx --format json --no-save | jq '.results[0].latency_ms'
    """
    from serenesense_cli.bench.run import bench_models

    with progress_bars() as on_progress:
        result = bench_models(
            list(models),
            profile=profile.value,
            threads=threads,
            batch=batch if batch is not None else batch_old,
            device=device,
            runs=runs,
            warmup=warmup,
            duration=duration,
            hop=hop,
            budget_ms=budget_ms,
            budget_mb=budget_mb,
            spin=not no_spin,
            save=not no_save,
            on_progress=on_progress,
        )
    for note in result.notes:
        warn(note)
    for item in result.results:
        line = _sustained_line(item)
        if line:
            log(line)
    host = result.host
    log(
        f"host: {host.get('label')} ({host.get('usable_cpus')} usable CPUs, "
        f"{_fmt(host.get('memory_mb'), 'MB')}; temperature {_fmt(host.get('temp_c'), '°C')}, "
        f"clock {_fmt(host.get('clock_mhz'), 'MHz')})"
    )
    rows = [_row(item) for item in result.results]
    if output_format is OutputFormat.json:
        emit_json(result.to_dict())
    elif output_format is OutputFormat.csv:
        emit_csv(rows, CSV_COLUMNS)
    else:
        labels = _labels([str(item["model"]) for item in result.results])
        table = [
            {"metric": header, **{label: row[key] for label, row in zip(labels, rows, strict=True)}}
            for key, header in ROWS
            if key != "budget" or result.budget
        ]
        emit_table(
            table,
            ["metric", *labels],
            title=f"Benchmark ({result.profile})",
            caption=_caption(result),
        )
        for path in result.saved:
            emit_result_path(path)
    if result.passed is False:
        log("budget: FAIL")
        raise typer.Exit(1)
    if result.passed:
        log("budget: PASS")


def _fmt(value: Any, unit: str) -> str:
    return "not available" if value is None else f"{value:g} {unit}"


def _labels(models: list[str]) -> list[str]:
    """Short column names: file or folder names, full paths only where those clash."""
    names = [Path(m).name or m for m in models]
    return [
        name if names.count(name) == 1 else model for name, model in zip(names, models, strict=True)
    ]


def _row(item: dict[str, Any]) -> dict[str, Any]:
    latency = item["latency_ms"]
    budget = item.get("budget")
    kind = item["kind"] if item["kind"] == "torch" else f"onnx {item.get('precision', '')}"
    return {
        "model": item["model"],
        "kind": kind.strip(),
        "precision": item.get("precision"),
        "size_mb": item.get("size_mb"),
        "threads": item["threads"],
        "idle": "spin" if item.get("spin", True) else "sleep",
        "load_s": item["load_s"],
        "p50_ms": latency["p50"],
        "p90_ms": latency["p90"],
        "p99_ms": latency["p99"],
        "max_ms": latency["max"],
        "mean_ms": latency["mean"],
        "cpu_ms": item.get("cpu_ms_per_call"),
        "clips_per_s": item["throughput_clips_per_s"],
        "batch": item["batch"],
        "rtf": item["rtf"],
        "peak_rss_mb": item["peak_rss_mb"],
        "budget": None if budget is None else ("PASS" if budget["ok"] else "FAIL"),
    }


def _caption(result: Any) -> str:
    parts = [f"host: {result.host.get('label')}"]
    if result.budget:
        budget = result.budget
        limits = []
        if budget.get("latency_ms") is not None:
            limits.append(f"{budget['latency_stat']} <= {budget['latency_ms']:g} ms")
        if budget.get("memory_mb") is not None:
            limits.append(f"peak RSS <= {budget['memory_mb']:g} MB")
        parts.append("budget: " + ", ".join(limits))
    parts.extend(result.notes)
    from rich.markup import escape

    return escape("; ".join(parts))  # a caption is rendered as markup; host names are data


def _sustained_line(item: dict[str, Any]) -> str | None:
    sustained = item.get("sustained")
    if not sustained:
        return None
    first, last = sustained.get("first_mean_ms"), sustained.get("last_mean_ms")
    text = (
        f"{item['model']}: sustained {sustained['seconds']:g} s, {sustained['calls']} calls; "
        f"mean latency first {sustained['segment_s']:g} s {first:.1f} ms, "
        f"last {sustained['segment_s']:g} s {last:.1f} ms"
        if first is not None and last is not None
        else f"{item['model']}: sustained {sustained['seconds']:g} s"
    )
    if sustained.get("slowdown") is not None:
        text += f" ({100 * sustained['slowdown']:+.1f}%)"
    temp, clock = sustained.get("temp_c"), sustained.get("clock_mhz")
    text += (
        f"; CPU {temp['start']:.1f} -> {temp['end']:.1f} °C (max {temp['max']:.1f})"
        if temp
        else "; CPU temperature not available"
    )
    text += (
        f"; clock {clock['start']:.0f} -> {clock['end']:.0f} MHz (min {clock['min']:.0f})"
        if clock
        else "; clock not available"
    )
    return text
