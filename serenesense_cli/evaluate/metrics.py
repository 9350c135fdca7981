"""Classification metrics with scikit-learn, returned as plain dicts."""

from __future__ import annotations

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
