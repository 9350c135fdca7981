"""Facts about the MAD data set layout (Kim et al., Scientific Data 11:668, 2024).

These names are the *source's* class names: only the MAD reader and the
synthetic MAD-layout generator use them. Everything downstream takes class
names from the prepared data set or the model.
"""

from __future__ import annotations

MAD_CLASSES: tuple[str, ...] = (
    "communication",
    "shooting",
    "footsteps",
    "shelling",
    "vehicle",
    "helicopter",
    "fighter",
)
"""MAD label order 0-6, as published."""

MAD_SPLIT_CSVS: dict[str, str] = {"training.csv": "train", "test.csv": "test"}
"""The CSVs of a MAD tree and the split each one holds."""

MAD_CSV_COLUMNS: tuple[str, ...] = ("", "path", "label", "youtube title", "youtube url")
"""Header of MAD's CSVs (the first column is an unnamed index)."""
