"""Where clips come from: MAD trees, CSV manifests and folder-per-class trees.

A *source* turns a path on disk into records (audio path, class name, group,
official split or ``None``) plus the class order the source defines. Nothing
here decodes audio: a listed file that is missing or corrupt is found (and
skipped) by :mod:`serenesense_cli.data.prepare`, so every bad file ends up in
one report.

Why groups: clips cut from one recording (a MAD video, an original field
recording) sound alike; if they land in both training and validation the
validation score is inflated. Every record therefore carries a group, and the
splitter never puts one group in two splits. Groups are namespaced by source
(``"<source>:<group>"``) so two sources never share a group by accident.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from serenesense_cli.audio.io import audio_files_in
from serenesense_cli.data.mad import MAD_CLASSES, MAD_SPLIT_CSVS
from serenesense_cli.errors import DataSetError

MANIFEST_NAME = "manifest.csv"
"""A folder holding this file (with ``path,label`` columns) is read as a manifest."""

_SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
"""Split names accepted in manifests, mapped to the three canonical ones."""

_SOURCE_HINT = (
    "a source is a MAD folder (training.csv, test.csv), a CSV manifest "
    "(path,label[,group][,split]), a folder with manifest.csv, or a folder with one "
    "subfolder of audio files per class"
)


class SourceFormat(str, Enum):
    """How a source path is read; ``auto`` detects it from the files present."""

    auto = "auto"
    mad = "mad"
    folder = "folder"
    manifest = "manifest"


@dataclass(frozen=True)
class SourceRecord:
    """One clip a source lists; the audio itself is checked later."""

    path: Path
    label: str
    group: str
    split: str | None
    relpath: str
    """The path relative to the source's root (for readable clip ids)."""


@dataclass(frozen=True)
class SourceProblem:
    """An entry that cannot become a clip (unknown label, empty path, duplicate)."""

    path: str
    problem: str


@dataclass(frozen=True)
class Source:
    """A data source read from disk: its classes in order and its records."""

    name: str
    kind: str
    location: Path
    root: Path
    classes: tuple[str, ...]
    records: tuple[SourceRecord, ...]
    problems: tuple[SourceProblem, ...] = ()

    @property
    def official_splits(self) -> frozenset[str]:
        """The splits the source itself assigns (e.g. MAD's test split)."""
        return frozenset(r.split for r in self.records if r.split is not None)

    def describe(self) -> dict[str, object]:
        """A JSON-friendly description for ``dataset.json``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.location),
            "classes": list(self.classes),
            "records": len(self.records),
            "official_splits": sorted(self.official_splits),
        }


def normalise_split(value: str) -> str | None:
    """Map ``train``/``training``/``val``/``validation``/``test``/``testing`` (any case)
    to ``train``/``val``/``test``; an empty value means "not assigned"."""
    text = value.strip().lower()
    if not text:
        return None
    if text not in _SPLIT_ALIASES:
        raise ValueError(text)
    return _SPLIT_ALIASES[text]


def _read_header(csv_path: Path) -> list[str]:
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            row = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataSetError(f"{csv_path}: cannot read CSV ({error})") from error
    return [c.strip().lower() for c in row]


def _is_mad_csv(header: Sequence[str]) -> bool:
    return "path" in header and "label" in header and "youtube url" in header


def detect_format(path: str | Path) -> SourceFormat:
    """Decide how to read ``path`` (see the module docstring for the rules)."""
    path = Path(path)
    if not path.exists():
        raise DataSetError(f"{path}: no such file or folder", hint=_SOURCE_HINT)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataSetError(
                f"{path}: not a data source (a file source must be a .csv manifest)",
                hint=_SOURCE_HINT,
            )
        return SourceFormat.mad if _is_mad_csv(_read_header(path)) else SourceFormat.manifest
    if (path / "training.csv").is_file() and _is_mad_csv(_read_header(path / "training.csv")):
        return SourceFormat.mad
    manifest = path / MANIFEST_NAME
    if manifest.is_file():
        header = _read_header(manifest)
        if "path" in header and "label" in header:
            return SourceFormat.manifest
    if _class_folders(path):
        return SourceFormat.folder
    raise DataSetError(
        f"{path}: no data source found (no training.csv, no {MANIFEST_NAME}, "
        "no class subfolders with audio files)",
        hint=_SOURCE_HINT,
    )


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Subfolders of ``root`` that hold audio, by name (sorted), with their files."""
    classes: dict[str, list[Path]] = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            files = audio_files_in(child)
            if files:
                classes[child.name] = files
    return classes


def _default_name(path: Path) -> str:
    if path.is_file():
        return path.parent.name if path.name == MANIFEST_NAME else path.stem
    return path.resolve().name or "source"


def _grouper(pattern: str | None):
    """A function relpath -> group: the regex's first capture group when
    ``pattern`` matches, else the path without its suffix (one clip, one group).

    A pattern without a capture group is refused: grouping by the whole match
    silently puts files of different recordings together (or keeps each apart)."""
    regex = None
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise DataSetError(f"invalid --group-pattern {pattern!r}: {error}") from error
        if regex.groups < 1:
            raise DataSetError(
                f"--group-pattern {pattern!r} has no capture group: nothing in it names "
                "the recording",
                hint="put the part that names the recording in parentheses, e.g. '^(rec\\d+)_'",
            )

    def group_of(relpath: str) -> str:
        if regex is not None:
            match = regex.search(relpath)
            if match and match.group(1) is not None:
                return match.group(1)
        return Path(relpath).with_suffix("").as_posix()

    return group_of


def read_mad(
    path: str | Path, *, name: str | None = None, csv_names: Iterable[str] | None = None
) -> Source:
    """Read a MAD tree: ``training.csv`` (train) and ``test.csv`` (test) with paths
    like ``training/<video>/<n>.wav``; the group is the ``<video>`` folder.

    ``path`` may also be one of the CSVs, which reads only that CSV.
    """
    path = Path(path)
    if path.is_file():
        root, csvs = path.parent, [path.name]
    else:
        root = path
        csvs = [c for c in (csv_names or MAD_SPLIT_CSVS) if (root / c).is_file()]
    if not csvs:
        raise DataSetError(f"{path}: no training.csv or test.csv found", hint=_SOURCE_HINT)
    name = name or _default_name(path)
    records: list[SourceRecord] = []
    problems: list[SourceProblem] = []
    for csv_name in csvs:
        csv_path = root / csv_name
        split = MAD_SPLIT_CSVS.get(csv_name.lower())
        if split is None:
            split = "test" if "test" in csv_name.lower() else "train"
        rows = _read_rows(csv_path, required=("path", "label"))
        for line, row in rows:
            rel = row.get("path", "").strip().replace("\\", "/")
            where = f"{csv_path} line {line}"
            if not rel:
                problems.append(SourceProblem(where, "empty path"))
                continue
            try:
                index = int(float(row.get("label", "").strip()))
            except (ValueError, OverflowError):
                index = -1
            if not 0 <= index < len(MAD_CLASSES):
                problems.append(
                    SourceProblem(
                        str(root / rel),
                        f"label {row.get('label', '')!r} in {csv_name} line {line} is not a "
                        f"MAD label (0-{len(MAD_CLASSES) - 1})",
                    )
                )
                continue
            label = MAD_CLASSES[index]
            parts = Path(rel).parts
            video = parts[1] if len(parts) >= 3 else (parts[-2] if len(parts) >= 2 else rel)
            records.append(
                SourceRecord(
                    path=(root / rel).resolve(),
                    label=label,
                    group=f"{name}:{video}",
                    split=split,
                    relpath=rel,
                )
            )
    return Source(
        name=name,
        kind=SourceFormat.mad.value,
        location=path.resolve(),
        root=root.resolve(),
        classes=MAD_CLASSES,
        records=tuple(records),
        problems=tuple(problems),
    )


def _read_rows(csv_path: Path, *, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows as dicts with lower-cased, stripped keys, numbered by file line."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [c.strip().lower() for c in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise DataSetError(
                    f"{csv_path}: missing column(s) {', '.join(missing)} "
                    f"(found: {', '.join(h or '<unnamed>' for h in header) or 'nothing'})",
                    hint="a manifest needs at least the columns path,label",
                )
            rows = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                rows.append((reader.line_num, dict(zip(header, row, strict=False))))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataSetError(f"{csv_path}: cannot read CSV ({error})") from error


def read_manifest(
    path: str | Path, *, name: str | None = None, group_pattern: str | None = None
) -> Source:
    """Read a CSV manifest ``path,label[,group][,split]`` (or a folder holding
    ``manifest.csv``). Paths are relative to the CSV's folder; extra columns are
    ignored; classes are ordered by first appearance. A ``fold`` column whose values
    are all split names (train/val/test) counts as the split."""
    path = Path(path)
    csv_path = path / MANIFEST_NAME if path.is_dir() else path
    if not csv_path.is_file():
        raise DataSetError(f"{csv_path}: manifest not found", hint=_SOURCE_HINT)
    root = csv_path.parent
    name = name or _default_name(path)
    rows = _read_rows(csv_path, required=("path", "label"))
    header = set(rows[0][1]) if rows else set()
    split_column = "split" if "split" in header else None
    if split_column is None and "fold" in header:
        try:
            for _, row in rows:
                normalise_split(row.get("fold", ""))
            split_column = "fold"
        except ValueError:
            split_column = None  # numeric folds (e.g. UrbanSound8K): not a split
    group_of = _grouper(group_pattern)
    records: list[SourceRecord] = []
    problems: list[SourceProblem] = []
    classes: dict[str, None] = {}
    seen: set[Path] = set()
    for line, row in rows:
        rel = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip()
        where = f"{csv_path} line {line}"
        if not rel:
            problems.append(SourceProblem(where, "empty path"))
            continue
        audio = (root / rel).resolve()
        if not label:
            problems.append(SourceProblem(str(audio), f"no label ({where})"))
            continue
        if audio in seen:
            problems.append(SourceProblem(str(audio), f"listed twice ({where})"))
            continue
        seen.add(audio)
        split = None
        if split_column:
            try:
                split = normalise_split(row.get(split_column) or "")
            except ValueError as error:
                raise DataSetError(
                    f"{where}: unknown {split_column} {error.args[0]!r}",
                    hint="use train, val or test (or leave it empty to let prepare choose)",
                ) from None
        group = (row.get("group") or "").strip() or group_of(rel)
        classes.setdefault(label, None)
        records.append(
            SourceRecord(path=audio, label=label, group=f"{name}:{group}", split=split, relpath=rel)
        )
    return Source(
        name=name,
        kind=SourceFormat.manifest.value,
        location=path.resolve(),
        root=root.resolve(),
        classes=tuple(classes),
        records=tuple(records),
        problems=tuple(problems),
    )


def read_folder(
    path: str | Path, *, name: str | None = None, group_pattern: str | None = None
) -> Source:
    """Read a folder with one subfolder per class (sorted names); audio files are
    found recursively. Each file is its own group unless ``group_pattern`` (a regex
    on the path inside the class folder) names a shared recording."""
    path = Path(path)
    if not path.is_dir():
        raise DataSetError(f"{path}: not a folder", hint=_SOURCE_HINT)
    folders = _class_folders(path)
    if not folders:
        raise DataSetError(f"{path}: no class subfolders with audio files", hint=_SOURCE_HINT)
    name = name or _default_name(path)
    group_of = _grouper(group_pattern)
    records = []
    for label, files in folders.items():
        for file in files:
            inner = file.relative_to(path / label).as_posix()
            group = (
                group_of(inner)
                if group_pattern
                else f"{label}/{Path(inner).with_suffix('').as_posix()}"
            )
            records.append(
                SourceRecord(
                    path=file.resolve(),
                    label=label,
                    group=f"{name}:{group}",
                    split=None,
                    relpath=file.relative_to(path).as_posix(),
                )
            )
    return Source(
        name=name,
        kind=SourceFormat.folder.value,
        location=path.resolve(),
        root=path.resolve(),
        classes=tuple(folders),
        records=tuple(records),
    )


def load_source(
    path: str | Path,
    *,
    source_format: SourceFormat | str | None = None,
    name: str | None = None,
    group_pattern: str | None = None,
) -> Source:
    """Read one source, detecting its format unless ``source_format`` forces it."""
    try:
        fmt = SourceFormat(source_format or SourceFormat.auto)
    except ValueError:
        raise DataSetError(
            f"unknown source format {source_format!r}",
            hint="use one of: " + ", ".join(f.value for f in SourceFormat),
        ) from None
    if fmt is SourceFormat.auto:
        fmt = detect_format(path)
    elif not Path(path).exists():
        raise DataSetError(f"{path}: no such file or folder", hint=_SOURCE_HINT)
    if fmt is SourceFormat.mad:
        return read_mad(path, name=name)
    if fmt is SourceFormat.manifest:
        return read_manifest(path, name=name, group_pattern=group_pattern)
    return read_folder(path, name=name, group_pattern=group_pattern)


def load_sources(
    paths: Sequence[str | Path],
    *,
    source_format: SourceFormat | str | None = None,
    group_pattern: str | None = None,
) -> list[Source]:
    """Read several sources; each gets a unique name (``open``, ``open-2``...)
    so their groups stay apart."""
    if not paths:
        raise DataSetError("no data source given", hint=_SOURCE_HINT)
    sources: list[Source] = []
    used: set[str] = set()
    for path in paths:
        base = _default_name(Path(path))
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        sources.append(
            load_source(path, source_format=source_format, name=name, group_pattern=group_pattern)
        )
    return sources


def merge_classes(sources: Sequence[Source]) -> tuple[str, ...]:
    """The union of the sources' classes: the first source's order, then each later
    source's new classes in its own order."""
    merged: dict[str, None] = {}
    for source in sources:
        for label in source.classes:
            merged.setdefault(label, None)
    return tuple(merged)
