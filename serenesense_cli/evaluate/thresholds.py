"""Per-class decision thresholds chosen on validation predictions (one-vs-rest, best F1).

Why: ``detect`` opens an event when a class's score passes its threshold. One
threshold for every class suits none of them: a rare, quiet class needs a
lower one than a loud, frequent one. Each class's threshold is the score cut
that maximises that class's F1 on a split the model was not trained on (the
validation split), read off scikit-learn's precision-recall curve, and written
as ``thresholds.csv`` (``class,threshold,precision,recall,f1,support``), the
table ``detect --thresholds FILE`` reads (with
:func:`serenesense_cli.detect.thresholds.read_threshold_table`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

THRESHOLDS_FILE = "thresholds.csv"
THRESHOLD_COLUMNS = ("class", "threshold", "precision", "recall", "f1", "support")
"""The header of ``thresholds.csv``; ``detect`` reads its ``class,threshold`` columns."""


@dataclass(frozen=True)
class ClassCurve:
    """One class's one-vs-rest precision-recall curve and its best-F1 point."""

    name: str
    support: int
    precision: np.ndarray
    recall: np.ndarray
    average_precision: float | None
    threshold: float | None
    """The score cut with the best F1; ``None`` when the split has no clip of the class."""
    best_precision: float | None
    best_recall: float | None
    best_f1: float | None


def class_curves(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, classes: Sequence[str]
) -> list[ClassCurve]:
    """Precision-recall curve and best-F1 threshold of every class.

    ``probs`` is ``(N, C)`` (clip probabilities in the model's class order).
    A class without a clip in the split has no curve (``threshold`` ``None``):
    no cut can be judged on it.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(y_true), len(classes))
    curves = []
    for c, name in enumerate(classes):
        positive = y_true == c
        support = int(positive.sum())
        if support == 0:
            empty = np.zeros(0)
            curves.append(ClassCurve(name, 0, empty, empty, None, None, None, None, None))
            continue
        precision, recall, cuts = precision_recall_curve(positive, probs[:, c])
        # the last (precision 1, recall 0) point has no threshold
        p, r = precision[:-1], recall[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        best = int(np.argmax(f1))  # ties: the lowest cut, which keeps the most recall
        curves.append(
            ClassCurve(
                name=name,
                support=support,
                precision=precision,
                recall=recall,
                average_precision=float(average_precision_score(positive, probs[:, c])),
                threshold=float(cuts[best]),
                best_precision=float(p[best]),
                best_recall=float(r[best]),
                best_f1=float(f1[best]),
            )
        )
    return curves


def thresholds_csv(curves: Sequence[ClassCurve]) -> str:
    """``thresholds.csv`` text; classes without a clip in the split are left out
    (``detect`` keeps its default threshold for them)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(THRESHOLD_COLUMNS)
    for curve in curves:
        if curve.threshold is None:
            continue
        writer.writerow(
            [
                curve.name,
                f"{curve.threshold:.6g}",
                f"{curve.best_precision:.4f}",
                f"{curve.best_recall:.4f}",
                f"{curve.best_f1:.4f}",
                curve.support,
            ]
        )
    return buffer.getvalue()
