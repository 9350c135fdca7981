"""Torch eager FP32 vs ONNX FP32 vs ONNX INT8 for the base AudioMAE (ViT-B/16), on this host.

Builds the base AudioMAE with *untrained* weights (latency, size and memory
do not depend on the weight values; accuracy does, and is not measured here),
exports it with ``serenesense export`` (parity-checked), quantizes it with
dynamic INT8 (``serenesense quantize --mode dynamic``), then benchmarks the
three forms end to end (waveform in, scores out), each in a fresh process,
at batch 1 with each thread count given. Writes a Markdown table between
the markers in ``docs/performance.md`` (or ``--doc``) and the raw results as
JSON beside the models.

    python benchmarks/audiomae_base.py --work /tmp/audiomae-bench --threads 4 2

Everything generated goes under ``--work``; only the doc is changed in place.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BEGIN = "<!-- audiomae_base:begin -->"
END = "<!-- audiomae_base:end -->"
CLASSES = [
    "communication",
    "shooting",
    "footsteps",
    "shelling",
    "vehicle",
    "helicopter",
    "fighter",
]


def build_models(work: Path, parity_data: Path | None) -> dict[str, Any]:
    """Base AudioMAE weights, its FP32 export and its INT8 model (reused when present)."""
    import torch

    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    weights = work / "audiomae_base.safetensors"
    fp32 = work / "audiomae_base.onnx"
    int8 = work / "audiomae_base.int8.onnx"
    info: dict[str, Any] = {}
    torch.manual_seed(0)
    model = create_model("audiomae", num_classes=len(CLASSES), size="base").eval()
    info["encoder_parameters"] = model.encoder_parameters()
    info["parameters"] = sum(p.numel() for p in model.parameters())
    if not weights.is_file():
        save_model(weights, model, CLASSES)
    del model
    started = time.perf_counter()
    export = export_onnx(weights, fp32, parity_data=parity_data, parity_count=8)
    info["export_s"] = time.perf_counter() - started
    info["export"] = export.summary()
    started = time.perf_counter()
    quant = quantize_onnx(fp32, int8, mode="dynamic", data=None, agreement_clips=16)
    info["quantize_s"] = time.perf_counter() - started
    info["quantize"] = quant.summary()
    info["paths"] = {"torch": weights, "onnx_fp32": fp32, "onnx_int8": int8}
    return info


def run_benchmarks(
    paths: dict[str, Path], threads: list[int], runs: int, warmup: int
) -> list[dict[str, Any]]:
    """bench_models at batch 1, one fresh process per model, thread count and spin setting."""
    from serenesense_cli.bench.run import bench_models

    rows = []
    for spin in (True, False):
        for count in threads:
            for label, path in paths.items():
                report = bench_models(
                    [path],
                    threads=count,
                    batch=1,
                    runs=runs,
                    warmup=warmup,
                    spin=spin,
                    save=False,
                )
                result = report.results[0]
                result["label"] = label
                rows.append(result)
                latency = result["latency_ms"]
                sys.stderr.write(
                    f"{label:10s} threads {count} spin {spin}: p50 {latency['p50']:.1f} ms, "
                    f"p99 {latency['p99']:.1f} ms, RSS {result['peak_rss_mb']} MB\n"
                )
    return rows


def markdown(info: dict[str, Any], rows: list[dict[str, Any]], host: dict[str, Any]) -> str:
    """The table and its context, for docs/performance.md."""
    names = {"torch": "torch eager FP32", "onnx_fp32": "ONNX FP32", "onnx_int8": "ONNX INT8"}
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {host.get('label')} "
        f"({host.get('usable_cpus')} usable CPUs, {host.get('memory_mb')} MB RAM, "
        f"{host.get('system')}), a shared machine: other jobs ran at the same time, so "
        "treat differences under ~20 % as noise. Base AudioMAE (ViT-B/16 encoder, "
        f"{info.get('encoder_parameters', 'n/a')} encoder parameters) with untrained "
        "weights, 10 s window, batch 1, end to end (waveform in, scores out), "
        f"{rows[0]['runs']} timed runs after {rows[0]['warmup']} warm-up runs, "
        "each row in a fresh process.",
        "",
        "| form | threads | idle threads | file MB | load s | p50 ms | p90 ms | p99 ms "
        "| max ms | CPU ms/call | clips/s | RTF (hop 1 s) | peak RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lat = row["latency_ms"]
        lines.append(
            f"| {names[row['label']]} | {row['threads']} | {'spin' if row['spin'] else 'sleep'} "
            f"| {row['size_mb']:.1f} "
            f"| {row['load_s']:.2f} | {lat['p50']:.0f} | {lat['p90']:.0f} | {lat['p99']:.0f} "
            f"| {lat['max']:.0f} | {row['cpu_ms_per_call']:.0f} "
            f"| {row['throughput_clips_per_s']:.2f} | {row['rtf']:.2f} "
            f"| {row['peak_rss_mb']:.0f} |"
        )
    export, quant = info["export"], info["quantize"]
    lines += [
        "",
        f"- Export: {export['size_mb']:.1f} MB ONNX, parity max |Δp| "
        f"{export['max_abs_diff']:.1e} (logits {export['max_abs_diff_logits']:.1e}), top-1 "
        f"agreement {export['top1_agreement']:.0%} on {export['parity_clips']} clips "
        f"({export['parity_source']}); {info['export_s']:.0f} s.",
        f"- INT8 (dynamic, MatMul/Gemm weights, front end and patch-embedding Conv in float): "
        f"{quant['size_int8_mb']:.1f} MB ({quant['size_ratio']:.0%} of FP32), top-1 agreement "
        f"with FP32 {quant['top1_agreement']:.0%} on {quant['agreement_clips']} clips "
        f"({quant['agreement_source']}); {info['quantize_s']:.0f} s. With untrained "
        "weights the agreement says little: see docs/deployment.md for a measured INT8 "
        "accuracy change.",
        "- load s excludes importing the runtime (onnxruntime, or torch + timm).",
        "- idle threads: `spin` is each runtime's default; `sleep` is `serenesense bench "
        "--no-spin` (onnxruntime `allow_spinning=0`, `OMP_WAIT_POLICY=PASSIVE` for torch).",
        "- 4 threads on 2 CPUs oversubscribe the cores: those rows show the cost of the Pi 5 "
        "setting on this host, not the Pi's speed. On a CPU shared with other jobs, more "
        "threads also win a larger share of it (torch), while onnxruntime's spinning worker "
        "threads lose time when oversubscribed; compare forms at the same thread count, and "
        "CPU ms/call (all threads, barely affected by other jobs) for the compute cost.",
    ]
    return "\n".join(lines)


def write_doc(doc: Path, text: str) -> None:
    """Replace the text between the markers (append the markers when missing)."""
    from serenesense_cli.fileio import write_text_atomic

    current = doc.read_text(encoding="utf-8") if doc.is_file() else "# Performance\n"
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        updated = head + block + tail
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    write_text_atomic(doc, updated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/serenesense-audiomae-bench"))
    parser.add_argument("--threads", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--parity-data", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)

    from serenesense_cli.bench.host import host_info
    from serenesense_cli.fileio import write_json_atomic

    args.work.mkdir(parents=True, exist_ok=True)
    info = build_models(args.work, args.parity_data)
    rows = run_benchmarks(info["paths"], args.threads, args.runs, args.warmup)
    host = host_info()
    text = markdown(info, rows, host)
    write_json_atomic(
        args.work / "audiomae_base.results.json",
        {"info": {k: v for k, v in info.items() if k != "paths"}, "rows": rows, "host": host},
    )
    write_doc(args.doc, text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
