"""Score FP32 and INT8 (or any two) ONNX models on the same windows or split.

Why: quantization is only worth shipping when its effect is measured. Top-1
agreement on held-out windows needs no labels; accuracy and macro-F1 on a
split of a prepared set use the evaluation policy: sliding windows over each
whole clip (half-window hop, short clips zero-padded), probabilities averaged
per clip (:mod:`serenesense_cli.evaluate.windows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from serenesense_cli.progress import ProgressCallback, report

BATCH = 8


def predict(backend: Any, waves: np.ndarray, *, batch: int = BATCH) -> np.ndarray:
    """Probabilities ``(N, C)`` for windows ``(N, samples)``, in batches."""
    out = [backend.predict_proba(waves[s : s + batch]) for s in range(0, len(waves), batch)]
    return np.concatenate(out) if out else np.zeros((0, len(backend.classes)), np.float32)


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and the largest probability difference."""
    return {
        "top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        "max_abs_diff": float(np.max(np.abs(reference - candidate))) if reference.size else 0.0,
    }


def clip_windows(data: str | Path, split: str, window: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """All sliding windows of every clip in ``split``: (windows, clip index per window, set)."""
    from serenesense_cli.data.cache import open_prepared
    from serenesense_cli.errors import DataSetError
    from serenesense_cli.evaluate.windows import slice_windows

    prepared = open_prepared(data)
    indices = prepared.indices(split)
    if not indices:
        raise DataSetError(
            f"{data}: split {split!r} has no clips (splits: {', '.join(prepared.splits)})",
            hint="choose another --split",
        )
    hop = max(1, window // 2)
    pieces, owners = [], []
    for position, index in enumerate(indices):
        windows = slice_windows(prepared.waveform(index), window, hop)
        pieces.append(windows)
        owners.extend([position] * len(windows))
    labels = np.asarray([prepared.records[i].label_index for i in indices], dtype=np.int64)
    return np.concatenate(pieces), np.asarray(owners, dtype=np.int64), (prepared, labels)


def split_metrics(
    backends: dict[str, Any],
    data: str | Path,
    split: str,
    *,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Accuracy and macro-F1 of each backend on ``split`` (clip level), plus agreement.

    The model's classes must match the data set's (same names, same order).
    """
    from serenesense_cli.errors import DataSetError
    from serenesense_cli.evaluate.metrics import basic_metrics

    first = next(iter(backends.values()))
    windows, owners, (prepared, labels) = clip_windows(data, split, first.clip_samples)
    if tuple(prepared.classes) != tuple(first.classes):
        raise DataSetError(
            f"{data}: classes {list(prepared.classes)} do not match the model's "
            f"{list(first.classes)}",
            hint="measure accuracy on the data set the model was trained for",
        )
    results: dict[str, Any] = {"split": split, "clips": len(labels), "windows": len(windows)}
    clip_probs: dict[str, np.ndarray] = {}
    for done, (name, backend) in enumerate(backends.items()):
        report(on_progress, "accuracy", done, len(backends), note=f"{name} on {split}")
        probs = predict(backend, windows)
        per_clip = np.zeros((len(labels), probs.shape[1]), dtype=np.float64)
        np.add.at(per_clip, owners, probs)
        per_clip /= np.bincount(owners, minlength=len(labels))[:, None]
        clip_probs[name] = per_clip
        metrics = basic_metrics(labels, per_clip.argmax(1), len(first.classes))
        results[name] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    report(on_progress, "accuracy", len(backends), len(backends), note="done")
    names = list(clip_probs)
    if len(names) == 2:
        results["clip_agreement"] = agreement(clip_probs[names[0]], clip_probs[names[1]])
    return results
