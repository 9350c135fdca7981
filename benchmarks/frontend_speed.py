"""Where a window's time goes: front end alone, body alone and end to end, per model form.

For each model (untrained weights: latency does not depend on the weight
values) this exports, in one process:

- the front end alone, twice: torchaudio's graph (onnxruntime ``STFT``) and
  the export form (the STFT as small matrix products, what
  ``serenesense export`` now writes), with their largest log-mel difference;
- the body alone (log-mel features in, logits out), FP32 and INT8 (the
  whole model's INT8 mode and op types; a static body calibrated on the
  front end's features of noise, its first and last layers quantized too);
- the whole model (waveform in), FP32 and static/dynamic INT8 as
  ``serenesense quantize --mode auto`` makes it;

and times each in onnxruntime (batch 1, ``--threads``, idle threads
sleeping; the export-form front end and the whole models also with
onnxruntime's default spinning threads, as ``serenesense detect`` and
``bench`` run them) next to torch eager. Prints one Markdown table per
model and the ratios the performance issue asks for. Every form runs in
this one process after torch, which costs onnxruntime time against a
fresh process (CNN INT8: 1.17 ms here, 0.98-1.00 ms in ``serenesense bench
--no-spin``): ``serenesense bench`` gives the figures a user sees.

    python benchmarks/frontend_speed.py --models melcnn cnn --threads 2 --runs 200

Everything generated goes under ``--work``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ["communication", "shooting", "footsteps", "shelling", "vehicle", "helicopter", "fighter"]


def _session(path: Path, threads: int, spin: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    from serenesense_cli.inference.backends import DISABLED_OPTIMIZERS  # as the product runs it

    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(DISABLED_OPTIMIZERS),
    )


def _time(call: Any, runs: int, warmup: int = 5) -> float:
    """p50 milliseconds of ``call()``."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def _export(module: Any, example: Any, path: Path) -> Path:
    import torch

    program = torch.onnx.export(
        module, (example,), dynamo=True, input_names=["x"], output_names=["y"], verbose=False
    )
    program.save(str(path))
    return path


class _Body:
    """The model after its front end (features in, logits out)."""

    def __init__(self, model: Any) -> None:
        import torch

        class Body(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, features: torch.Tensor) -> torch.Tensor:
                return self.inner.classify_features(features)

        self.module = Body(model).eval()


def bench_model(name: str, size: str | None, work: Path, threads: int, runs: int) -> dict:
    import onnxruntime  # noqa: F401  (fail early)
    import torch

    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    args = {"size": size} if size else {}
    model = create_model(name, num_classes=len(CLASSES), **args).eval()
    tag = f"{name}-{size}" if size else name
    folder = work / tag
    folder.mkdir(parents=True, exist_ok=True)
    wave = torch.from_numpy(
        (np.random.default_rng(0).standard_normal((1, model.clip_samples)) * 0.1).astype(np.float32)
    )
    rows: dict[str, float] = {}
    info: dict[str, Any] = {"model": tag, "clip_samples": model.clip_samples}

    # Front end alone: torchaudio's graph and the export form.
    stft_fe = copy.deepcopy(model.frontend).eval()
    conv_fe = copy.deepcopy(model.frontend).eval()
    conv_fe.use_export_form()
    with torch.no_grad():
        features = model.frontend(wave)
        info["frontend_max_abs_diff"] = float((conv_fe(wave) - features).abs().max())
    feeds = {"x": wave.numpy()}
    export_form = _export(conv_fe, wave, folder / "frontend_export_form.onnx")
    for label, path in (
        ("front end, onnxruntime STFT", _export(stft_fe, wave, folder / "frontend_stft.onnx")),
        ("front end, matmul DFT (export form)", export_form),
    ):
        session = _session(path, threads)
        rows[label] = _time(lambda s=session: s.run(None, feeds), runs)
    with torch.inference_mode():
        rows["front end, torch eager"] = _time(lambda: model.frontend(wave), runs)

    # Body alone (FP32): features in.
    body = _Body(model).module
    body_path = _export(body, features, folder / "body.onnx")
    body_session = _session(body_path, threads)
    rows["body, ONNX FP32"] = _time(lambda: body_session.run(None, {"x": features.numpy()}), runs)
    with torch.inference_mode():
        rows["body, torch eager"] = _time(lambda: body(features), runs)

    # End to end, as serenesense exports and quantizes it.
    weights = folder / "model.safetensors"
    save_model(weights, model, CLASSES)
    exported = export_onnx(weights, folder / "model.onnx")
    quantized = quantize_onnx(exported.path, folder / "model.int8.onnx")
    info["int8_mode"] = quantized.mode
    info["export_max_abs_diff"] = exported.max_abs_diff
    # The whole models, and the front end again, also with onnxruntime's
    # default idle threads (spinning), as serenesense detect and bench run them
    # unless --no-spin is given.
    for label, path, spin in (
        ("end to end, ONNX FP32", exported.path, False),
        ("end to end, ONNX INT8", quantized.path, False),
        ("front end, export form, spinning threads", export_form, True),
        ("end to end, ONNX FP32, spinning threads", exported.path, True),
        ("end to end, ONNX INT8, spinning threads", quantized.path, True),
    ):
        session = _session(path, threads, spin=spin)
        input_name = session.get_inputs()[0].name
        rows[label] = _time(lambda s=session, n=input_name: s.run(None, {n: wave.numpy()}), runs)
    with torch.inference_mode():
        rows["end to end, torch eager FP32"] = _time(lambda: model(wave), runs)

    # Body alone in INT8, quantized the way the whole model was (same mode and
    # op types; a static body is calibrated on front-end features of noise).
    body_int8 = _quantize_body(body_path, quantized.mode, model, folder)
    body_int8_session = _session(body_int8, threads)
    rows["body, ONNX INT8"] = _time(
        lambda: body_int8_session.run(None, {"x": features.numpy()}), runs
    )
    info["rows"] = rows
    return info


def _quantize_body(body_path: Path, mode: str, model: Any, folder: Path) -> Path:
    import torch
    from onnxruntime.quantization import CalibrationDataReader

    from serenesense_cli.export.quantize import _run_quantizer

    class Features(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            waves = (rng.standard_normal((16, model.clip_samples)) * 0.1).astype(np.float32)
            with torch.no_grad():
                feats = model.frontend(torch.from_numpy(waves)).numpy()
            self.items = iter([{"x": f[None]} for f in feats])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    target = folder / "body.int8.onnx"
    reader = Features() if mode == "static" else None
    _run_quantizer(mode, body_path, target, excluded=[], reader=reader)
    return target


def _table(info: dict) -> str:
    rows = info["rows"]
    lines = [
        f"**{info['model']}** ({info['clip_samples'] / 16000:g} s window; "
        f"INT8 mode {info['int8_mode']}; front-end log-mel max |d| "
        f"{info['frontend_max_abs_diff']:.2g}; export parity max |dp| "
        f"{info['export_max_abs_diff']:.2g})",
        "",
        "| what | p50 ms |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {value:.2f} |" for label, value in rows.items()]
    int8, fp32 = rows["end to end, ONNX INT8"], rows["end to end, ONNX FP32"]
    fast_front = rows["front end, matmul DFT (export form)"]
    torch_e2e = rows["end to end, torch eager FP32"]
    int8_spin = rows["end to end, ONNX INT8, spinning threads"]
    fp32_spin = rows["end to end, ONNX FP32, spinning threads"]
    lines += [
        "",
        f"- STFT op / matmul DFT front end: "
        f"{rows['front end, onnxruntime STFT'] / fast_front:.1f}x",
        f"- front end share of INT8 end to end: {fast_front / int8:.0%}",
        f"- INT8 / FP32 end to end: {int8 / fp32:.2f}",
        f"- torch eager / INT8 end to end: {torch_e2e / int8:.1f}x",
        f"- INT8 end to end / INT8 body alone: {int8 / rows['body, ONNX INT8']:.2f}x",
        f"- with spinning idle threads: INT8 / FP32 end to end {int8_spin / fp32_spin:.2f}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["melcnn", "cnn"])
    parser.add_argument("--size", default=None, help="size variant (audiomae: tiny, small, base)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("/tmp/serenesense-frontend-bench"))
    args = parser.parse_args()
    from serenesense_cli.bench.host import cpu_model, usable_cpus

    print(
        f"host: {cpu_model()} ({usable_cpus()} usable CPUs); onnxruntime and torch "
        f"{args.threads} threads, onnxruntime idle threads sleeping (rows without "
        "'spinning threads') or spinning (its default)"
    )
    for name in args.models:
        info = bench_model(
            name, args.size if name == "audiomae" else None, args.work, args.threads, args.runs
        )
        print()
        print(_table(info))


if __name__ == "__main__":
    main()
