"""Measure one model end to end: waveform in, scores out.

Why end to end: the front end (STFT, mel) is inside every serenesense model,
so ``backend.predict_proba(waves)`` is exactly what ``detect`` pays per
window. One call of :func:`measure_model` gives

- ``import_s``: importing the runtime (onnxruntime, or torch + timm), and
  ``load_s``: building the session / model from the file (imports excluded);
- latency percentiles at batch 1 after warm-up, over ``runs`` timed calls or,
  with ``duration``, over a sustained run of that many seconds (latency over
  time, temperature and clock sampled about once a second, first and last
  segments compared to expose thermal throttling);
- throughput at ``batch`` (clips per second);
- the process's peak resident memory (``VmHWM``, else ``ru_maxrss``). It
  is a process-wide peak, so :mod:`serenesense_cli.bench.run` measures each
  model in a fresh process;
- the real-time factor: mean latency per window / hop (below 1 keeps up with
  a live stream that scores a window every hop);
- CPU time per call (all threads of this process): the compute cost, which,
  unlike wall-clock latency, hardly moves when other jobs share the CPUs
  (spinning worker threads count too).

numpy + the runtime only: an ONNX benchmark never imports torch.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serenesense_cli.progress import ProgressCallback, report

SEGMENT_S = 10.0
"""Length of the first / last segment compared in a sustained run."""
THERMAL_EVERY_S = 1.0
WINDOW_VARIETY = 4


@dataclass(frozen=True)
class BenchSettings:
    """How one model is measured."""

    threads: int
    batch: int = 8
    runs: int = 30
    warmup: int = 3
    duration: float = 0.0
    hop_s: float = 1.0
    profile: str = "default"
    spin: bool = True
    """Let idle worker threads spin (the runtimes' default). ``False``: onnxruntime
    ``allow_spinning=0`` and, for torch in a fresh process, ``OMP_WAIT_POLICY=PASSIVE``;
    fairer on a CPU shared with other jobs or with more threads than cores."""
    device: str = "cpu"
    """``--device``: cpu, cuda or auto (the result says where it really ran)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _disabled_optimizers(kind: str) -> list[str]:
    """The onnxruntime optimisers the backend turns off (recorded with the figures)."""
    if kind != "onnx":
        return []
    from serenesense_cli.inference.backends import DISABLED_OPTIMIZERS

    return list(DISABLED_OPTIMIZERS)


def percentiles(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / max / mean / min of latencies in ms."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        nan = float("nan")
        return {"p50": nan, "p90": nan, "p99": nan, "max": nan, "mean": nan, "min": nan}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "min": float(values.min()),
    }


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB (``None`` where unknown).

    Linux: ``VmHWM`` from /proc/self/status, which starts afresh at exec.
    ``ru_maxrss`` does not: a child inherits its parent's peak across
    fork + exec, so a worker started by a big parent would report the
    parent's figure. Elsewhere ``ru_maxrss`` is the best there is.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KB on Linux
    return round(peak / scale, 1)


def model_kind(path: str | Path) -> str:
    """``onnx`` for .onnx files, ``torch`` for run folders and .safetensors."""
    return "onnx" if Path(path).suffix.lower() == ".onnx" else "torch"


def _import_runtime(kind: str) -> float:
    started = time.perf_counter()
    if kind == "onnx":
        import onnxruntime  # noqa: F401
    else:
        import timm  # noqa: F401
        import torch  # noqa: F401

        import serenesense_cli.models  # noqa: F401
    return time.perf_counter() - started


def _timed(backend: Any, waves: np.ndarray) -> float:
    started = time.perf_counter()
    backend.predict_proba(waves)
    return (time.perf_counter() - started) * 1000.0


def _sustained(
    backend: Any, windows: np.ndarray, duration: float, on_progress: ProgressCallback | None
) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    """Back-to-back batch-1 calls for ``duration`` seconds; thermal samples on the way."""
    from serenesense_cli.bench.host import thermal_sample

    latencies, stamps, thermal = [], [], []
    started = time.perf_counter()
    next_sample = 0.0
    i = 0
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= duration and latencies:
            break
        if elapsed >= next_sample:
            thermal.append({"t_s": round(elapsed, 2), **thermal_sample()})
            next_sample += THERMAL_EVERY_S
            report(on_progress, "latency", int(elapsed), math.ceil(duration), note="sustained")
        latencies.append(_timed(backend, windows[i % len(windows)][None]))
        stamps.append(time.perf_counter() - started)
        i += 1
    thermal.append({"t_s": round(time.perf_counter() - started, 2), **thermal_sample()})
    return latencies, stamps, thermal


def sustained_summary(
    latencies: list[float], stamps: list[float], thermal: list[dict[str, Any]]
) -> dict[str, Any]:
    """First vs last segment of a sustained run, and the temperature / clock range."""
    end = stamps[-1] if stamps else 0.0
    segment = min(SEGMENT_S, end / 3) if end else 0.0
    first = [ms for ms, t in zip(latencies, stamps, strict=True) if t <= segment]
    last = [ms for ms, t in zip(latencies, stamps, strict=True) if t >= end - segment]
    first_mean = float(np.mean(first)) if first else None
    last_mean = float(np.mean(last)) if last else None
    temps = [s["temp_c"] for s in thermal if s.get("temp_c") is not None]
    clocks = [s["clock_mhz"] for s in thermal if s.get("clock_mhz") is not None]
    slowdown = (last_mean / first_mean - 1.0) if first_mean and last_mean else None
    return {
        "seconds": round(end, 2),
        "calls": len(latencies),
        "segment_s": round(segment, 2),
        "first_mean_ms": first_mean,
        "last_mean_ms": last_mean,
        "slowdown": slowdown,
        "temp_c": {"start": temps[0], "end": temps[-1], "max": max(temps)} if temps else None,
        "clock_mhz": (
            {"start": clocks[0], "end": clocks[-1], "min": min(clocks)} if clocks else None
        ),
        "timeline": thermal,
    }


def measure_model(
    path: str | Path,
    settings: BenchSettings,
    *,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Benchmark one model in this process; returns the result dict (see module doc)."""
    from serenesense_cli.export.clips import synthetic_windows
    from serenesense_cli.inference.backends import open_backend

    path = Path(path)
    kind = model_kind(path)
    import_s = _import_runtime(kind)
    started = time.perf_counter()
    backend = open_backend(
        path, threads=settings.threads, spin=settings.spin, device=settings.device
    )
    load_s = time.perf_counter() - started

    meta = backend.metadata or {}
    quantization = (meta.get("export") or {}).get("quantization")
    windows = synthetic_windows(
        max(WINDOW_VARIETY, settings.batch),
        clip_samples=backend.clip_samples,
        sample_rate=backend.sample_rate,
    ).waves

    total = settings.warmup + (settings.runs if not settings.duration else 0)
    report(on_progress, "latency", 0, total or None, note="warm-up")
    for i in range(settings.warmup):
        _timed(backend, windows[i % len(windows)][None])
        report(on_progress, "latency", i + 1, total or None, note="warm-up")

    sustained = None
    cpu_started = time.process_time()
    if settings.duration:
        latencies, stamps, thermal = _sustained(backend, windows, settings.duration, on_progress)
        sustained = sustained_summary(latencies, stamps, thermal)
    else:
        latencies = []
        for i in range(settings.runs):
            latencies.append(_timed(backend, windows[i % len(windows)][None]))
            report(on_progress, "latency", settings.warmup + i + 1, total, note="timed runs")
    cpu_ms = (time.process_time() - cpu_started) * 1000.0 / max(1, len(latencies))
    stats = percentiles(latencies)

    if settings.batch > 1:
        batch = windows[: settings.batch]
        _timed(backend, batch)
        rounds = max(2, math.ceil(max(settings.runs, 1) / settings.batch))
        seconds = sum(_timed(backend, batch) for _ in range(rounds)) / 1000.0
        throughput = rounds * settings.batch / seconds if seconds > 0 else None
    else:
        throughput = 1000.0 / stats["mean"] if stats["mean"] > 0 else None

    window_s = backend.clip_samples / backend.sample_rate
    return {
        "model": str(path),
        "kind": kind,
        "precision": "int8" if quantization else "fp32",
        "quantization": (quantization or {}).get("mode"),
        "name": str((meta.get("model") or {}).get("name", "")),
        "model_args": (meta.get("model") or {}).get("args", {}),
        "classes": len(backend.classes),
        "window_s": window_s,
        "size_mb": round(_size_bytes(path) / 1e6, 3),
        "import_s": round(import_s, 4),
        "load_s": round(load_s, 4),
        "latency_ms": stats,
        "cpu_ms_per_call": cpu_ms,
        "runs": len(latencies),
        "warmup": settings.warmup,
        "throughput_clips_per_s": throughput,
        "batch": settings.batch,
        "peak_rss_mb": peak_rss_mb(),
        "threads": settings.threads,
        "spin": settings.spin,
        "device": getattr(backend, "device", "cpu"),
        "device_notes": list(getattr(backend, "notes", [])),
        "disabled_optimizers": _disabled_optimizers(kind),
        "hop_s": settings.hop_s,
        "rtf": stats["mean"] / 1000.0 / settings.hop_s,
        "sustained": sustained,
        "profile": settings.profile,
    }


def _size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    weights = path / "weights" / "best.safetensors"
    return weights.stat().st_size if weights.is_file() else 0
