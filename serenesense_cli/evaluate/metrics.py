"""Classification metrics with scikit-learn, returned as plain dicts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def basic_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> dict[str, Any]:
    """Accuracy, balanced accuracy and macro-F1 over the classes present in the data.

    Macro-F1 averages over every class that occurs in ``y_true`` or ``y_pred``
    (scikit-learn's convention), so a class missing from a small validation
    split does not count as F1 = 0.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        return {
            "accuracy": float("nan"),
            "balanced_accuracy": float("nan"),
            "macro_f1": float("nan"),
        }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


ECE_BINS = 15
"""Equal-width confidence bins for the expected calibration error."""


def expected_calibration_error(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, *, bins: int = ECE_BINS
) -> dict[str, Any]:
    """ECE on the top-1 probability, with the per-bin table for a reliability diagram.

    Clips are put in ``bins`` equal-width bins of (0, 1] by their top-1
    probability (a bin holds ``lo < p <= hi``; the first also holds 0); ECE is
    ``sum_b n_b / N * |accuracy_b - mean confidence_b|``. Empty bins add
    nothing and show ``None``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table: dict[str, Any] = {
        "bins": bins,
        "edges": edges.tolist(),
        "counts": [0] * bins,
        "accuracy": [None] * bins,
        "confidence": [None] * bins,
        "ece": float("nan"),
    }
    if y_true.size == 0:
        return table
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    # right-closed bins (lo, hi], decided against the stored edges; p = 0 joins bin 0
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if not n:
            continue
        acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
        table["counts"][b] = n
        table["accuracy"][b] = acc
        table["confidence"][b] = conf
        ece += n / y_true.size * abs(acc - conf)
    table["ece"] = float(ece)
    return table


def top_k_accuracy(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, k: int = 2) -> float:
    """Share of clips whose true class is among the ``k`` most probable.

    With ``k`` or fewer classes every class is in the top ``k``: the score is 1
    by definition (scikit-learn refuses that case for two classes).
    """
    from sklearn.metrics import top_k_accuracy_score

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.size == 0:
        return float("nan")
    num_classes = probs.shape[1]
    if num_classes <= k:
        return 1.0
    return float(top_k_accuracy_score(y_true, probs, k=k, labels=np.arange(num_classes)))


def classification_report_dict(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    ece_bins: int = ECE_BINS,
) -> dict[str, Any]:
    """Every evaluation metric for clips with true labels and class probabilities.

    ``probs`` is ``(N, C)`` over the model's ``classes``; the prediction is its
    argmax. Returns ``summary`` (accuracy, balanced accuracy, macro- and
    weighted F1, top-2 accuracy, ECE, log loss), ``per_class`` (precision,
    recall, F1, support for every model class; ``None`` where undefined because
    a class was never true / never predicted), ``confusion_matrix`` (counts and
    rows normalised by the true class) and ``calibration`` (the ECE bins).

    Macro-F1 and balanced accuracy follow :func:`basic_metrics`: they average
    over the classes present in the true or predicted labels, so a model class
    absent from the data set does not count as F1 = 0.
    """
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" is expected on small or partial sets
        warnings.simplefilter("ignore", UserWarning)
        return _report(y_true, probs, classes, ece_bins)


def _report(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, classes: Sequence[str], ece_bins: int
) -> dict[str, Any]:
    from sklearn.metrics import (
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    classes = list(classes)
    num_classes = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(y_true), num_classes)
    y_pred = probs.argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)
    labels = np.arange(num_classes)

    summary = dict(basic_metrics(y_true, y_pred, num_classes))
    calibration = expected_calibration_error(y_true, probs, bins=ece_bins)
    if y_true.size:
        summary["weighted_f1"] = float(
            f1_score(y_true, y_pred, average="weighted", zero_division=0)
        )
        summary["top2_accuracy"] = top_k_accuracy(y_true, probs, k=2)
        summary["ece"] = calibration["ece"]
        clipped = np.clip(probs, 1e-15, 1.0)  # float32 models: renormalise after clipping
        clipped /= clipped.sum(axis=1, keepdims=True)
        summary["log_loss"] = float(log_loss(y_true, clipped, labels=labels))
    else:
        for key in ("weighted_f1", "top2_accuracy", "ece", "log_loss"):
            summary[key] = float("nan")
    summary["clips"] = int(y_true.size)

    if y_true.size:
        counts = confusion_matrix(y_true, y_pred, labels=labels)
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=np.nan
        )
    else:
        counts = np.zeros((num_classes, num_classes), dtype=np.int64)
        precision = recall = f1 = np.full(num_classes, np.nan)
        support = np.zeros(num_classes, dtype=np.int64)
    per_class = [
        {
            "class": name,
            "precision": _none_if_nan(precision[i]),
            "recall": _none_if_nan(recall[i]),
            "f1": _none_if_nan(f1[i]),
            "support": int(support[i]),
            "predicted": int(counts[:, i].sum()),
        }
        for i, name in enumerate(classes)
    ]
    row_sums = counts.sum(axis=1, keepdims=True)
    normalized = [
        [float(v) / float(row_sums[i, 0]) if row_sums[i, 0] else None for v in counts[i]]
        for i in range(num_classes)
    ]
    return {
        "summary": summary,
        "per_class": per_class,
        "confusion_matrix": {
            "classes": classes,
            "counts": counts.astype(int).tolist(),
            "normalized": normalized,
            "rows": "true class",
            "columns": "predicted class",
        },
        "calibration": calibration,
    }


def _none_if_nan(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
