"""Per-class open thresholds from a table (``detect --thresholds FILE``).

Why a file: the report's per-class threshold table (picked on the validation
predictions) is the natural place to choose thresholds, and typing eight
``class=value`` pairs by hand invites mistakes. The table is a CSV with at
least the columns ``class`` and ``threshold`` (others, e.g. precision, recall
and f1, are ignored). Classes the table does not name keep ``--threshold``.

Reading needs no model (the file is checked before the model loads); the
classes are checked against the model by :func:`merge_threshold_table`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from serenesense_cli.errors import BadInputError

REQUIRED_COLUMNS = ("class", "threshold")


def read_threshold_table(path: str | Path) -> dict[str, float]:
    """``{class: threshold}`` from a CSV with ``class`` and ``threshold`` columns."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInputError(f"--thresholds {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"--thresholds {path}: cannot read it ({error})") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise BadInputError(
            f"--thresholds {path}: no column {missing[0]!r} (a CSV with class,threshold)",
            hint="e.g. the per-class threshold table the report writes",
        )
    table: dict[str, float] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        name, raw = row.get("class", ""), row.get("threshold", "")
        if not name:
            raise BadInputError(f"--thresholds {path}: line {line} names no class")
        try:
            value = float(raw)
        except ValueError:
            raise BadInputError(
                f"--thresholds {path}: line {line}: threshold {raw!r} is not a number"
            ) from None
        if math.isnan(value) or not 0.0 < value <= 1.0:
            raise BadInputError(
                f"--thresholds {path}: line {line}: threshold {value:g} for {name} is not in (0, 1]"
            )
        if name in table:
            raise BadInputError(f"--thresholds {path}: class {name!r} appears twice")
        table[name] = value
    if not table:
        raise BadInputError(f"--thresholds {path}: the table has no rows")
    return table


def merge_threshold_table(
    base: Sequence[float], table: Mapping[str, float], classes: Sequence[str], *, source: str
) -> dict[str, float]:
    """Every class's open threshold: ``table``'s value, else ``base`` (from --threshold).

    A class of the table that the model does not have is refused, naming the file.
    """
    unknown = [name for name in table if name not in classes]
    if unknown:
        raise BadInputError(
            f"--thresholds {source}: the model has no class {unknown[0]!r}",
            hint=f"its classes are: {', '.join(classes)}",
        )
    return {name: table.get(name, value) for name, value in zip(classes, base, strict=True)}
