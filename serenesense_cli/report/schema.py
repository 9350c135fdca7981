"""The shape a report expects of each JSON file in a run folder.

Why: run folders are user input. A hand-edited or foreign ``metrics.json``
(``"summary": 3``, a text accuracy, a ragged confusion matrix) must become a
"could not be read" note in the report, not a crash while a table or figure
is drawn. Only what the report reads is checked; other keys pass.

A schema is a nested literal: ``NUMBER`` (int, float or null), ``TEXT`` (a
string or null), ``ANY``, a ``dict`` (``"*"`` gives the shape of keys not
listed) or a one-item ``list`` (the shape of every item).
"""

from __future__ import annotations

from typing import Any

NUMBER = "number"
TEXT = "text"
ANY = "any"

_SUMMARY = {"*": NUMBER}
METRICS: dict[str, Any] = {
    "summary": _SUMMARY,
    "per_class": [{"class": TEXT, "*": NUMBER}],
    "confusion_matrix": {"classes": [TEXT], "counts": [[NUMBER]], "normalized": [[NUMBER]]},
    "calibration": {
        "bins": NUMBER,
        "edges": [NUMBER],
        "counts": [NUMBER],
        "accuracy": [NUMBER],
        "confidence": [NUMBER],
        "ece": NUMBER,
    },
    "model": {"classes": [TEXT], "name": TEXT, "args": {"*": ANY}},
    "data": {"*": ANY},
    "window_policy": {"*": ANY},
    "timing": {"*": ANY},
    "skipped": [ANY],
    "*": ANY,
}
"""``metrics.json`` (``serenesense evaluate``) and ``<model>.metrics.json``."""

BENCH: dict[str, Any] = {
    "latency_ms": {"*": NUMBER},
    "peak_rss_mb": NUMBER,
    "threads": NUMBER,
    "*": ANY,
}
"""``bench.json`` and ``<model>.bench.json`` (``serenesense bench``)."""

QUANTIZE: dict[str, Any] = {
    "mode": TEXT,
    "source": TEXT,
    "calibration": TEXT,
    "agreement_source": TEXT,
    "split": TEXT,
    "measured": {"path": TEXT, "split": TEXT, "*": ANY},
    "quantized_ops": {"*": NUMBER},
    "notes": [TEXT],
    "*": ANY,
}
"""``<stem>.quantize.json`` (``serenesense quantize``): numbers where numbers are written."""
for _key in (
    "size_fp32_mb",
    "size_int8_mb",
    "top1_agreement",
    "agreement_clips",
    "calibration_clips",
    "split_clips",
    "split_clip_agreement",
    "accuracy_fp32",
    "accuracy_int8",
    "accuracy_change",
    "macro_f1_fp32",
    "macro_f1_int8",
    "macro_f1_change",
    "seconds",
):
    QUANTIZE[_key] = NUMBER

WEIGHTS_META: dict[str, Any] = {
    "model": {"name": TEXT, "args": {"*": ANY}},
    "classes": [TEXT],
    "metrics": {"*": ANY},
    "epoch": NUMBER,
    "select_metric": TEXT,
    "*": ANY,
}
"""``weights/best.json``: the best checkpoint's metadata."""


def shape_problem(value: Any, schema: Any, where: str = "") -> str | None:
    """The first place where ``value`` does not have ``schema``'s shape, or ``None``."""
    here = where or "the file"
    if schema == ANY:
        return None
    if schema == NUMBER:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        return None if ok else f"{here} is not a number"
    if schema == TEXT:
        return None if value is None or isinstance(value, str) else f"{here} is not text"
    if isinstance(schema, list):
        if value is None:
            return None
        if not isinstance(value, list):
            return f"{here} is not a list"
        for index, item in enumerate(value):
            problem = shape_problem(item, schema[0], f"{where}[{index}]")
            if problem:
                return problem
        return None
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"{here} is not an object"
    for key, item in value.items():
        inner = schema.get(key, schema.get("*", ANY))
        problem = shape_problem(item, inner, f"{where}.{key}" if where else str(key))
        if problem:
            return problem
    return None


def confusion_problem(matrix: Any) -> str | None:
    """A confusion matrix must be square, one row and column per class."""
    if not isinstance(matrix, dict) or matrix.get("counts") is None:
        return None
    classes, counts = matrix.get("classes") or [], matrix["counts"]
    n = len(classes)
    if len(counts) != n or any(len(row) != n for row in counts):
        return f"confusion_matrix.counts is not {n} x {n} (one row and column per class)"
    return None
