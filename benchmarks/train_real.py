"""Every registered model on one prepared set, each with the same CPU time budget.

For each model (and seed) this trains with ``serenesense train`` under
``--time-limit``, evaluates the best checkpoint (chosen on validation) on
the ``val`` and ``test`` splits, exports it to ONNX, quantizes it to INT8
(the model's default mode) and evaluates the INT8 model on ``test`` too,
counting the test clips on which FP32 and INT8 name the same class. The
log-mel-statistics baseline (``benchmarks/baseline.py``) is scored on the
same split. Results are appended to ``WORK/results.json`` as each run ends,
so an interrupted benchmark keeps what it measured (``--resume`` skips those),
and the table goes between the markers in ``docs/training.md``.

    python benchmarks/train_real.py --data real_prepared --work /tmp/bench \\
        --models melcnn cnn crnn audiomae --seeds 0 1 2 --seed-models melcnn

Only the doc is changed in place; everything else goes under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BEGIN = "<!-- train_real:begin -->"
END = "<!-- train_real:end -->"
MODEL_ARGS = {"audiomae": {"size": "tiny"}}
"""Sizes that fit a CPU budget (the base AudioMAE belongs on a GPU)."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_one(
    model: str, seed: int, *, data: Path, work: Path, time_limit: float, recipe: str
) -> dict[str, Any]:
    """Train, evaluate, export, quantize and evaluate INT8 one model; returns its row."""
    from serenesense_cli.evaluate.run import evaluate_model
    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.train.config import resolve_train_config
    from serenesense_cli.train.engine import train

    config = resolve_train_config(
        model,
        overrides={"seed": seed, "time_limit": time_limit},
        model_args=MODEL_ARGS.get(model, {}),
        recipe_name=recipe,
    )
    name = f"{model}-{recipe}-s{seed}"
    started = time.perf_counter()
    trained = train(data=data, config=config, runs_dir=work / "runs", name=name)
    seconds = time.perf_counter() - started
    run_dir = trained.run_dir
    val = evaluate_model(model=run_dir, data=data, split="val", out=run_dir / "eval-val")
    test = evaluate_model(model=run_dir, data=data, split="test", out=run_dir / "eval-test")
    exported = export_onnx(run_dir, parity_data=data)
    quantized = quantize_onnx(exported.path, calib=data)
    fp32 = evaluate_model(
        model=exported.path, data=data, split="test", out=run_dir / "eval-test-fp32"
    )
    int8 = evaluate_model(
        model=quantized.path, data=data, split="test", out=run_dir / "eval-test-int8"
    )
    same = [
        a["predicted"] == b["predicted"]
        for a, b in zip(fp32.predictions, int8.predictions, strict=True)
    ]
    return {
        "model": model,
        "args": MODEL_ARGS.get(model, {}),
        "recipe": recipe,
        "select_metric": config.select_metric,
        "seed": seed,
        "parameters": trained.parameters,
        "seconds": round(seconds, 1),
        "epochs": trained.epochs_completed,
        "stopped": trained.stopped,
        "best_epoch": trained.best_epoch,
        "val_acc": val.summary["accuracy"],
        "val_macro_f1": val.summary["macro_f1"],
        "test_acc": test.summary["accuracy"],
        "test_macro_f1": test.summary["macro_f1"],
        "int8_mode": quantized.mode,
        "int8_test_acc": int8.summary["accuracy"],
        "int8_test_macro_f1": int8.summary["macro_f1"],
        "fp32_onnx_test_macro_f1": fp32.summary["macro_f1"],
        "int8_agreement": sum(same) / max(1, len(same)),
        "run_dir": str(run_dir),
    }


def _key(row: dict[str, Any]) -> tuple[str, str, str, int]:
    return (row["model"], row["recipe"], row["select_metric"], int(row["seed"]))


def _spread(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def render_table(rows: list[dict[str, Any]], baseline: dict[str, Any] | None) -> str:
    """Markdown: one line per run, then mean ± std per model over its seeds."""
    lines = [
        "| model | recipe | best by | seed | parameters | time (s) | epochs | val acc "
        "| val macro-F1 | test acc | test macro-F1 | INT8 test macro-F1 | FP32/INT8 agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if baseline:
        lines.append(
            "| baseline (log-mel stats + logistic regression) | – | val macro-F1 (C) "
            "| – | – | – | – "
            f"| {baseline['val_acc']:.3f} | {baseline['val_macro_f1']:.3f} "
            f"| {baseline['test_acc']:.3f} | {baseline['test_macro_f1']:.3f} | – | – |"
        )
    for row in rows:
        args = "".join(f" {k}={v}" for k, v in row.get("args", {}).items())
        lines.append(
            f"| {row['model']}{args} | {row['recipe']} | val {row['select_metric']} "
            f"| {row['seed']} | {row['parameters']:,} "
            f"| {row['seconds']:.0f} | {row['epochs']} | {row['val_acc']:.3f} "
            f"| {row['val_macro_f1']:.3f} | {row['test_acc']:.3f} | {row['test_macro_f1']:.3f} "
            f"| {row['int8_test_macro_f1']:.3f} | {100 * row['int8_agreement']:.1f} % |"
        )
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["recipe"], row["select_metric"]), []).append(row)
    multi = {k: v for k, v in groups.items() if len(v) > 1}
    if multi:
        lines += [
            "",
            "| model | recipe | best by | seeds | val macro-F1 | test acc | test macro-F1 "
            "| INT8 test macro-F1 | agreement |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for (model, recipe, select), group in multi.items():
            lines.append(
                f"| {model} | {recipe} | val {select} "
                f"| {', '.join(str(r['seed']) for r in group)} "
                f"| {_spread([r['val_macro_f1'] for r in group])} "
                f"| {_spread([r['test_acc'] for r in group])} "
                f"| {_spread([r['test_macro_f1'] for r in group])} "
                f"| {_spread([r['int8_test_macro_f1'] for r in group])} "
                f"| {_spread([100 * r['int8_agreement'] for r in group], 1)} % |"
            )
    return "\n".join(lines)


def write_doc(doc: Path, table: str, header: str) -> None:
    text = doc.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{header}\n\n{table}\n{END}"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared data set")
    parser.add_argument("--work", type=Path, required=True, help="folder for runs and results")
    parser.add_argument("--models", nargs="+", default=["melcnn", "cnn", "crnn", "audiomae"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--seed-models", nargs="*", default=None, help="models run with every seed (default: all)"
    )
    parser.add_argument("--recipe", default="default", choices=("default", "reference"))
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "training.md")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/training.md alone")
    parser.add_argument("--resume", action="store_true", help="skip runs already in results")
    args = parser.parse_args(argv)

    from baseline import run_baseline

    from serenesense_cli.train.config import resolve_train_config

    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    saved: dict[str, Any] = {"runs": [], "baseline": None}
    if args.resume and results_path.is_file():
        saved = json.loads(results_path.read_text(encoding="utf-8"))

    def save() -> None:
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=2), encoding="utf-8")
        tmp.replace(results_path)

    if saved.get("baseline") is None:
        saved["baseline"] = run_baseline(args.data)
        save()
        _log(f"baseline: test macro-F1 {saved['baseline']['test_macro_f1']:.3f}")
    done = {_key(r) for r in saved["runs"]}
    seed_models = set(args.models if args.seed_models is None else args.seed_models)
    for model in args.models:
        for seed in args.seeds if model in seed_models else args.seeds[:1]:
            select = resolve_train_config(model, recipe_name=args.recipe).select_metric
            if (model, args.recipe, select, seed) in done:
                continue
            _log(f"training {model} (recipe {args.recipe}, seed {seed}) for {args.time_limit} s")
            row = run_one(
                model,
                seed,
                data=args.data,
                work=args.work,
                time_limit=args.time_limit,
                recipe=args.recipe,
            )
            saved["runs"].append(row)
            save()
            _log(
                f"{model} seed {seed}: test macro-F1 {row['test_macro_f1']:.3f}, "
                f"INT8 {row['int8_test_macro_f1']:.3f}, agreement {row['int8_agreement']:.3f}"
            )
    table = render_table(saved["runs"], saved["baseline"])
    print(table)
    if not args.no_doc:
        header = (
            f"Measured with `python benchmarks/train_real.py --data DATA --time-limit "
            f"{args.time_limit:g}` on this 2-core CPU; best checkpoint chosen on the validation "
            "metric in 'best by', never on test; test = the split `data prepare` makes; INT8 = "
            "static QDQ (dynamic for audiomae); agreement = test clips whose top class is the "
            "same in FP32 and INT8 ONNX; the second table is mean ± standard deviation over seeds."
        )
        write_doc(args.doc, table, header)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
