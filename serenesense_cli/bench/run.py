"""``serenesense bench``: several models, one table, each in its own process.

Profiles set the defaults (flags override them):

- ``default``: all usable CPUs, latency at batch 1 over 30 timed runs after 3
  warm-up runs, throughput at batch 8, no budget unless one is given;
- ``pi5``: the Raspberry Pi 5 deployment: 4 threads, batch 1, a sustained
  60 s run (thermal throttling shows as a slower last segment), and a budget
  of 500 ms (p99 latency) and 2048 MB (peak RSS) with a pass/fail verdict.
  Off a Pi 5 the report says plainly whose figures they are.

Each model's result is saved as ``<stem>.bench.json`` beside an ``.onnx``
file, ``RUN/bench.json`` for a run folder, or ``<stem>.torch.bench.json``
beside a ``.safetensors`` file, for ``serenesense report``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from serenesense_cli.bench.latency import BenchSettings, model_kind
from serenesense_cli.errors import BadInputError, ModelError, SereneSenseError
from serenesense_cli.progress import ProgressCallback, report

PROFILES: dict[str, dict[str, Any]] = {
    "default": {
        "threads": None,
        "batch": 8,
        "runs": 30,
        "warmup": 3,
        "duration": 0.0,
        "budget_ms": None,
        "budget_mb": None,
    },
    "pi5": {
        "threads": 4,
        "batch": 1,
        "runs": 0,
        "warmup": 5,
        "duration": 60.0,
        "budget_ms": 500.0,
        "budget_mb": 2048.0,
    },
}
BUDGET_STAT = "p99"
"""The latency percentile checked against ``budget_ms``."""


class BenchError(SereneSenseError):
    """A benchmark could not be run (exit code 1)."""


@dataclass
class BenchReport:
    """Results of one ``bench`` call, side by side."""

    profile: str
    host: dict[str, Any]
    results: list[dict[str, Any]]
    budget: dict[str, Any] | None
    saved: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool | None:
        """``None`` without a budget, else True when every model met it."""
        if self.budget is None:
            return None
        return all((r.get("budget") or {}).get("ok", False) for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "host": self.host,
            "budget": self.budget,
            "passed": self.passed,
            "notes": self.notes,
            "results": self.results,
            "saved": [str(p) for p in self.saved],
        }


def bench_json_path(model: str | Path) -> Path:
    """Where a model's result is saved (see module doc)."""
    path = Path(model)
    if path.is_dir():
        return path / "bench.json"
    if path.suffix.lower() == ".onnx":
        return path.with_name(f"{path.stem}.bench.json")
    # x.safetensors beside x.onnx must not share x.bench.json
    return path.with_name(f"{path.stem}.torch.bench.json")


def resolve_settings(
    profile: str,
    *,
    threads: int | None = None,
    batch: int | None = None,
    runs: int | None = None,
    warmup: int | None = None,
    duration: float | None = None,
    hop: float = 1.0,
    spin: bool = True,
    device: str = "cpu",
) -> BenchSettings:
    """Profile defaults overridden by the values given; checked."""
    from serenesense_cli.bench.host import usable_cpus

    if profile not in PROFILES:
        raise BadInputError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    base = PROFILES[profile]

    def pick(value: Any, key: str) -> Any:
        return base[key] if value is None else value

    settings = BenchSettings(
        threads=int(threads if threads is not None else base["threads"] or usable_cpus()),
        batch=int(pick(batch, "batch")),
        runs=int(pick(runs, "runs")),
        warmup=int(pick(warmup, "warmup")),
        duration=float(pick(duration, "duration")),
        hop_s=float(hop),
        profile=profile,
        spin=bool(spin),
        device=device,
    )
    if settings.duration and runs is not None and duration is None:
        settings = replace(settings, duration=0.0)  # --runs given: timed runs, not a duration
    for name, value, low in (
        ("--threads", settings.threads, 1),
        ("--batch-size", settings.batch, 1),
        ("--warmup", settings.warmup, 0),
        ("--runs", settings.runs, 0),
    ):
        if value < low:
            raise BadInputError(f"{name} must be at least {low}, not {value}")
    if settings.duration < 0:
        raise BadInputError(f"--duration must be positive, not {settings.duration}")
    if not settings.duration and settings.runs < 1:
        raise BadInputError("--runs must be at least 1 without --duration")
    if not settings.hop_s > 0:
        raise BadInputError(f"--hop must be a positive number of seconds, not {hop!r}")
    return settings


def resolve_budget(
    profile: str, budget_ms: float | None, budget_mb: float | None
) -> dict[str, Any] | None:
    """The budget to check: the profile's, or the one given; ``None`` for none."""
    base = PROFILES[profile]
    ms = budget_ms if budget_ms is not None else base["budget_ms"]
    mb = budget_mb if budget_mb is not None else base["budget_mb"]
    if ms is None and mb is None:
        return None
    for name, value in (("--budget-ms", ms), ("--budget-mb", mb)):
        if value is not None and not value > 0:
            raise BadInputError(f"{name} must be positive, not {value}")
    return {"latency_ms": ms, "latency_stat": BUDGET_STAT, "memory_mb": mb}


def check_budget(result: dict[str, Any], budget: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail of one result against ``budget`` (latency percentile and peak RSS)."""
    latency = result["latency_ms"][budget["latency_stat"]]
    rss = result.get("peak_rss_mb")
    latency_ok = budget["latency_ms"] is None or latency <= budget["latency_ms"]
    memory_ok = budget["memory_mb"] is None or (rss is not None and rss <= budget["memory_mb"])
    return {
        **budget,
        "measured_latency_ms": latency,
        "measured_memory_mb": rss,
        "latency_ok": latency_ok,
        "memory_ok": memory_ok,
        "ok": latency_ok and memory_ok,
    }


def _worker_env(settings: BenchSettings) -> dict[str, str]:
    """The parent's environment, with this package importable in the child."""
    import serenesense_cli

    env = dict(os.environ)
    if not settings.spin:
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # read once, when OpenMP starts (torch import)
    root = str(Path(serenesense_cli.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def measure_isolated(
    model: Path,
    settings: BenchSettings,
    *,
    stage: str,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """:func:`~serenesense_cli.bench.latency.measure_model` in a fresh Python process."""
    with tempfile.TemporaryDirectory(prefix="serenesense-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        command = [
            sys.executable,
            "-m",
            "serenesense_cli.bench.worker",
            str(model),
            json.dumps(settings.to_dict()),
            str(result_path),
        ]
        # stderr goes to a file: a pipe that nobody drains could block the worker.
        with (Path(tmp) / "stderr.txt").open("w+", encoding="utf-8") as errors:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, text=True, env=_worker_env(settings)
            )
            assert process.stdout is not None
            for line in process.stdout:
                try:
                    update = json.loads(line)
                except json.JSONDecodeError:
                    continue
                report(
                    on_progress,
                    stage,
                    int(update.get("done", 0)),
                    update.get("total"),
                    note=str(update.get("note", "")),
                )
            code = process.wait()
            errors.seek(0)
            stderr = errors.read()
        document = json.loads(result_path.read_text()) if result_path.is_file() else None
    if document and "error" in document:
        cls = BadInputError if document.get("exit_code") == 2 else BenchError
        raise cls(document["error"], hint=document.get("hint"))
    if code != 0 or document is None:
        # No document: the process died (killed, out of memory, a crash in native
        # code). Its stderr may hold a traceback; only the exit status is shown.
        how = "killed (out of memory?)" if code in (-9, 137) else f"exit code {code}"
        raise BenchError(
            f"{model}: the benchmark process ended without a result ({how})",
            hint="use a smaller --batch or --threads; --debug shows the process's stderr",
        ) from ChildProcessError(stderr.strip() or "(no output on stderr)")
    return document


def bench_models(
    models: list[str | Path],
    *,
    profile: str = "default",
    threads: int | None = None,
    batch: int | None = None,
    runs: int | None = None,
    warmup: int | None = None,
    duration: float | None = None,
    hop: float = 1.0,
    budget_ms: float | None = None,
    budget_mb: float | None = None,
    spin: bool = True,
    device: str = "cpu",
    save: bool = True,
    isolate: bool = True,
    on_progress: ProgressCallback | None = None,
) -> BenchReport:
    """Benchmark each model (a fresh process each unless ``isolate=False``)."""
    from serenesense_cli.bench.host import host_info
    from serenesense_cli.bench.latency import measure_model
    from serenesense_cli.fileio import write_json_atomic

    if not models:
        raise BadInputError("no model given", hint="serenesense bench MODEL.onnx [MODEL...]")
    paths = [Path(m) for m in models]
    for path in paths:
        if not path.exists():
            raise ModelError(f"{path}: model not found")
        if path.is_file() and path.suffix.lower() not in (".onnx", ".safetensors"):
            raise ModelError(
                f"{path}: not a model (.onnx, .safetensors or a training run folder expected)"
            )
    settings = resolve_settings(
        profile,
        threads=threads,
        batch=batch,
        runs=runs,
        warmup=warmup,
        duration=duration,
        hop=hop,
        spin=spin,
        device=device,
    )
    budget = resolve_budget(profile, budget_ms, budget_mb)
    host = host_info()
    notes = host_notes(profile, host, settings)

    results = []
    for index, path in enumerate(paths):
        stage = f"bench {index + 1}/{len(paths)} {path.name}"
        if isolate:
            result = measure_isolated(path, settings, stage=stage, on_progress=on_progress)
        else:
            result = measure_model(path, settings, on_progress=on_progress)
        result["host"] = host
        result["budget"] = check_budget(result, budget) if budget else None
        result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results.append(result)

    saved = []
    if save:
        for path, result in zip(paths, results, strict=True):
            saved.append(write_json_atomic(bench_json_path(path), result))
    return BenchReport(
        profile=profile, host=host, results=results, budget=budget, saved=saved, notes=notes
    )


def host_notes(profile: str, host: dict[str, Any], settings: BenchSettings) -> list[str]:
    """Plain warnings about how far these figures are from the target device."""
    notes = []
    if profile == "pi5" and not host.get("raspberry_pi5"):
        target = "Raspberry Pi 5" if host.get("raspberry_pi") else "Raspberry Pi"
        notes.append(f"figures are for {host.get('label')}, not a {target}")
    if settings.threads > int(host.get("usable_cpus") or 1):
        notes.append(
            f"{settings.threads} threads on {host.get('usable_cpus')} usable CPUs: "
            "threads compete for cores, so latency is pessimistic"
        )
    if settings.threads > int(host.get("usable_cpus") or 1) and settings.spin:
        notes.append("with more threads than CPUs, --no-spin gives steadier figures")
    if host.get("temp_c") is None and settings.duration:
        notes.append("CPU temperature and clock are not available on this host")
    return notes


__all__ = [
    "PROFILES",
    "BenchReport",
    "bench_json_path",
    "bench_models",
    "check_budget",
    "model_kind",
    "resolve_budget",
    "resolve_settings",
]
