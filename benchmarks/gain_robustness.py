"""How much a model leans on the recording level: macro-F1 with every clip scaled.

A real microphone is quieter or louder than the ones a data set was recorded
with, and a source is nearer or farther; a classifier that learned "loud means
helicopter" fails there while scoring well on its own test split. This scores
each model on one split of a prepared set with every clip scaled by each gain
(`serenesense evaluate --gain-db`, clipped to full scale) and prints a
Markdown table, one row per model.

    python benchmarks/gain_robustness.py RUN_OR_ONNX... --data prepared/ \\
        [--split val] [--gains -20 -10 0 6] [--format json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GAINS_DB = (-20.0, -10.0, 0.0, 6.0)


def gain_scores(
    model: str | Path, data: str | Path, *, split: str = "val", gains: tuple[float, ...] = GAINS_DB
) -> dict[str, Any]:
    """Accuracy and macro-F1 of ``model`` on ``split`` at each gain (dB)."""
    from serenesense_cli.evaluate.run import evaluate_model

    scores = {}
    for gain in gains:
        result = evaluate_model(model=model, data=data, split=split, gain_db=gain, write=False)
        scores[f"{gain:g}"] = {
            "accuracy": result.summary["accuracy"],
            "macro_f1": result.summary["macro_f1"],
        }
    return {"model": str(model), "split": split, "gains_db": list(gains), "scores": scores}


def render_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: macro-F1 per model (rows) and gain (columns)."""
    gains = rows[0]["gains_db"] if rows else list(GAINS_DB)
    head = " | ".join(f"{g:+g} dB" if g else "0 dB" for g in gains)
    lines = [f"| model | {head} |", "|---" * (len(gains) + 1) + "|"]
    for row in rows:
        cells = " | ".join(f"{row['scores'][f'{g:g}']['macro_f1']:.3f}" for g in gains)
        lines.append(f"| {row['model']} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="run folders, weights or .onnx files")
    parser.add_argument("--data", type=Path, required=True, help="prepared data set")
    parser.add_argument("--split", default="val", help="split to score (default: val)")
    parser.add_argument("--gains", nargs="+", type=float, default=list(GAINS_DB))
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    rows = [
        gain_scores(model, args.data, split=args.split, gains=tuple(args.gains))
        for model in args.models
    ]
    print(json.dumps(rows, indent=2) if args.format == "json" else render_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
