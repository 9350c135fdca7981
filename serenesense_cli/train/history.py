"""A run's ``history.csv``: one row per epoch, rewritten whole after each one.

Training and pretraining have different columns but the same format (empty
cells for missing or NaN values, floats to six significant digits), and a
resumed run reads its rows back to continue the file.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def history_csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """The CSV text of ``rows``; keys outside ``columns`` are left out."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``history.csv`` with numbers parsed (missing values become None)."""
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    row[key] = None
                elif key in ("epoch", "step", "partial"):
                    row[key] = int(float(value))
                else:
                    row[key] = float(value)
            rows.append(row)
    return rows
