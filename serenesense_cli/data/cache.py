"""The prepared-set format: decoded 16 kHz mono int16 audio plus an index.

Why a cache: decoding and resampling thousands of clips every epoch wastes most
of a training run. ``serenesense data prepare`` decodes each file once; training
then slices clips out of memory-mapped int16 shards (O(1) per clip: the index
holds shard and offset).

Layout of a prepared set (a folder)::

    dataset.json    format name and version, classes in order, sample rate,
                    sources, split settings and what the splitter achieved
    index.csv       one row per clip (see INDEX_COLUMNS); written last
    skipped.csv     path,problem for every file that was left out
    audio/*.int16   shards: raw little-endian int16 samples, clips back to back

Shards are immutable: a re-run appends new shards and deletes the ones no row
refers to any more. Every file is written to a temporary name and renamed, and
``index.csv`` is written last, so an interrupted run leaves the previous set
(or none) intact.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from serenesense_cli.errors import DataSetError
from serenesense_cli.fileio import write_text_atomic

PATH_ERRORS = "surrogateescape"
"""index.csv and skipped.csv hold file names as the file system has them, also
names that are not valid UTF-8 (written and read back byte for byte)."""

FORMAT_NAME = "serenesense-prepared"
FORMAT_VERSION = 1
SAMPLE_RATE = 16_000
DATASET_FILE = "dataset.json"
INDEX_FILE = "index.csv"
SKIPPED_FILE = "skipped.csv"
AUDIO_DIR = "audio"
SHARD_SUFFIX = ".int16"
SHARD_DTYPE = np.dtype("<i2")
SCALE = 32768.0
"""int16 value = round(float sample * SCALE): PCM16 sources round-trip exactly."""
DEFAULT_SHARD_BYTES = 512 * 1024 * 1024

_PREPARE_HINT = "run `serenesense data prepare SOURCE --out DIR` first"


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a prepared set, as stored in ``index.csv``."""

    clip_id: str
    split: str
    label: str
    label_index: int
    group: str
    frames: int
    duration: float
    source: str
    source_path: str
    size: int
    mtime_ns: int
    shard: str
    offset: int

    @property
    def cache_key(self) -> tuple[str, int, int]:
        """What identifies the decoded audio: source path, size and mtime."""
        return (self.source_path, self.size, self.mtime_ns)


INDEX_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ClipRecord))
_INT_COLUMNS = frozenset({"label_index", "frames", "size", "mtime_ns", "offset"})


def _is_ours(meta: Any) -> bool:
    return isinstance(meta, dict) and meta.get("format") == FORMAT_NAME


def read_metadata(root: str | Path) -> dict[str, Any] | None:
    """``dataset.json`` of a folder if it is one of ours (any version), else None."""
    try:
        meta = json.loads((Path(root) / DATASET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if _is_ours(meta) else None


def write_index(path: str | Path, records: Iterable[ClipRecord]) -> None:
    """Write ``index.csv`` atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for record in records:
        writer.writerow(asdict(record).values())
    write_text_atomic(path, buffer.getvalue(), errors=PATH_ERRORS)


def read_index(path: str | Path) -> list[ClipRecord]:
    """Parse ``index.csv``; a malformed file raises :class:`DataSetError`."""
    path = Path(path)
    records = []
    try:
        with path.open(newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != INDEX_COLUMNS:
                raise DataSetError(
                    f"{path}: unexpected columns {reader.fieldnames}", hint=_PREPARE_HINT
                )
            for row in reader:
                values: dict[str, Any] = dict(row)
                for key in _INT_COLUMNS:
                    values[key] = int(values[key])
                values["duration"] = float(values["duration"])
                records.append(ClipRecord(**values))
    except (OSError, ValueError, TypeError, csv.Error) as error:
        raise DataSetError(f"{path}: unreadable index ({error})", hint=_PREPARE_HINT) from error
    return records


def write_skipped(path: str | Path, skipped: Sequence[tuple[str, str]]) -> None:
    """Write ``skipped.csv`` (path, problem) atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("path", "problem"))
    writer.writerows(skipped)
    write_text_atomic(path, buffer.getvalue(), errors=PATH_ERRORS)


def read_skipped(path: str | Path) -> list[tuple[str, str]]:
    """The (path, problem) rows of ``skipped.csv``; missing file -> empty list."""
    try:
        with Path(path).open(newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
            return [(r.get("path", ""), r.get("problem", "")) for r in csv.DictReader(handle)]
    except OSError:
        return []


class PreparedSet:
    """A prepared data set opened for reading (see :func:`open_prepared`).

    Clips are read from memory-mapped shards; nothing is decoded. The object
    pickles without its open maps, so DataLoader workers reopen them lazily.
    """

    def __init__(self, root: Path, meta: dict[str, Any], records: list[ClipRecord]) -> None:
        self.root = root
        self.meta = meta
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.sample_rate: int = int(meta["sample_rate"])
        self.records = records
        self._maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"PreparedSet({str(self.root)!r}, clips={len(self)}, classes={len(self.classes)})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits that hold at least one clip, in train/val/test order."""
        present = {r.split for r in self.records}
        order = ("train", "val", "test")
        return tuple(s for s in order if s in present) + tuple(sorted(present.difference(order)))

    def indices(self, split: str) -> list[int]:
        """Positions in :attr:`records` of the clips in ``split``."""
        return [i for i, r in enumerate(self.records) if r.split == split]

    def labels(self, split: str | None = None) -> list[int]:
        """Class indices of all clips (or of one split), in record order."""
        return [r.label_index for r in self.records if split is None or r.split == split]

    def class_counts(self, split: str | None = None) -> list[int]:
        """Clips per class (in class order), e.g. for class-weighted losses."""
        counts = [0] * len(self.classes)
        for index in self.labels(split):
            counts[index] += 1
        return counts

    def _shard(self, name: str) -> np.ndarray:
        mapped = self._maps.get(name)
        if mapped is None:
            path = self.root / AUDIO_DIR / name
            try:
                mapped = np.memmap(path, dtype=SHARD_DTYPE, mode="r")
            except (OSError, ValueError) as error:
                raise DataSetError(
                    f"{path}: cannot map audio shard ({error})", hint=_PREPARE_HINT
                ) from error
            self._maps[name] = mapped
        return mapped

    def clip(self, index: int) -> np.ndarray:
        """The int16 samples of clip ``index`` (a read-only view, no copy)."""
        record = self.records[index]
        return self._shard(record.shard)[record.offset : record.offset + record.frames]

    def waveform(self, index: int) -> np.ndarray:
        """Clip ``index`` as float32 in [-1, 1) at :attr:`sample_rate`."""
        return self.clip(index).astype(np.float32) / np.float32(SCALE)

    def skipped(self) -> list[tuple[str, str]]:
        """Files left out when the set was prepared: (path, problem)."""
        return read_skipped(self.root / SKIPPED_FILE)

    def summary(self) -> dict[str, Any]:
        """Clips and hours per class per split, groups per split, skipped files."""
        return summarise(self.records, self.classes, root=self.root, skipped=len(self.skipped()))


def summarise(
    records: Sequence[ClipRecord],
    classes: Sequence[str],
    *,
    root: Path | str | None = None,
    skipped: int = 0,
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, Any]:
    """The summary of :meth:`PreparedSet.summary` for any list of records."""
    present = {r.split for r in records}
    order = [s for s in ("train", "val", "test") if s in present]
    order += sorted(present.difference(order))
    splits: dict[str, Any] = {}
    for split in order:
        rows = [r for r in records if r.split == split]
        per_class = {}
        for label in classes:
            mine = [r for r in rows if r.label == label]
            per_class[label] = {
                "clips": len(mine),
                "hours": sum(r.frames for r in mine) / sample_rate / 3600,
            }
        splits[split] = {
            "clips": len(rows),
            "hours": sum(r.frames for r in rows) / sample_rate / 3600,
            "groups": len({r.group for r in rows}),
            "classes": per_class,
        }
    return {
        "root": str(root) if root is not None else None,
        "classes": list(classes),
        "sample_rate": sample_rate,
        "clips": len(records),
        "hours": sum(r.frames for r in records) / sample_rate / 3600,
        "groups": len({r.group for r in records}),
        "splits": splits,
        "skipped": skipped,
    }


def open_prepared(path: str | Path) -> PreparedSet:
    """Open a prepared set, checking format, version, index and shards."""
    root = Path(path)
    if not root.is_dir():
        raise DataSetError(f"{root}: no such prepared data set folder", hint=_PREPARE_HINT)
    meta_path = root / DATASET_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataSetError(
            f"{root}: not a prepared data set (no {DATASET_FILE})", hint=_PREPARE_HINT
        ) from None
    except (OSError, ValueError) as error:
        raise DataSetError(f"{meta_path}: unreadable ({error})", hint=_PREPARE_HINT) from error
    if not _is_ours(meta):
        raise DataSetError(
            f"{root}: {DATASET_FILE} is not a serenesense prepared data set", hint=_PREPARE_HINT
        )
    if meta.get("version") != FORMAT_VERSION:
        raise DataSetError(
            f"{root}: prepared with format version {meta.get('version')}, "
            f"this serenesense reads version {FORMAT_VERSION}",
            hint="run `serenesense data prepare SOURCE --out DIR` again to rebuild it",
        )
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        raise DataSetError(f"{root}: no {INDEX_FILE} (an interrupted prepare?)", hint=_PREPARE_HINT)
    records = read_index(index_path)
    classes = list(meta.get("classes") or [])
    ends: dict[str, int] = {}
    for record in records:
        if not (0 <= record.label_index < len(classes)) or classes[record.label_index] != (
            record.label
        ):
            raise DataSetError(
                f"{root}: clip {record.clip_id} has label {record.label!r} "
                f"(index {record.label_index}) that {DATASET_FILE} does not list there",
                hint="the set is inconsistent; run `serenesense data prepare` again",
            )
        ends[record.shard] = max(ends.get(record.shard, 0), record.offset + record.frames)
    for shard, end in ends.items():
        shard_path = root / AUDIO_DIR / shard
        try:
            size = shard_path.stat().st_size
        except OSError:
            raise DataSetError(
                f"{root}: audio shard {shard} is missing",
                hint="the set is incomplete; run `serenesense data prepare` again",
            ) from None
        if size < end * SHARD_DTYPE.itemsize:
            raise DataSetError(
                f"{root}: audio shard {shard} is shorter than the index says",
                hint="the set is damaged; run `serenesense data prepare` again",
            )
    return PreparedSet(root, meta, records)


class ShardWriter:
    """Appends int16 clips to new shard files (temporary until :meth:`close`)."""

    def __init__(self, audio_dir: Path, *, max_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        self.audio_dir = audio_dir
        self.max_bytes = max_bytes
        self.prefix = uuid.uuid4().hex[:12]
        self.finished: list[str] = []
        self._count = 0
        self._handle: Any = None
        self._name = ""
        self._offset = 0

    @staticmethod
    def temp_path(final: Path) -> Path:
        """Where a shard is written before it is complete."""
        return final.with_name(f".{final.name}.tmp")

    def _open(self) -> None:
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self._count += 1
        self._name = f"shard-{self.prefix}-{self._count:04d}{SHARD_SUFFIX}"
        self._handle = self.temp_path(self.audio_dir / self._name).open("wb")
        self._offset = 0

    def _finish(self) -> None:
        if self._handle is None:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        final = self.audio_dir / self._name
        os.replace(self.temp_path(final), final)
        self.finished.append(self._name)

    def write_clip(
        self, blocks: Iterable[np.ndarray], *, expected: int = 0
    ) -> tuple[str, int, int]:
        """Store one clip given as int16 blocks (so long files never sit in memory
        whole); returns (shard name, offset, frames). A clip never spans two
        shards; ``expected`` (frames, an estimate) decides whether to start a new
        shard first. If ``blocks`` raises, the partial clip is removed again."""
        if (
            self._handle is not None
            and self._offset
            and (self._offset + expected) * SHARD_DTYPE.itemsize > self.max_bytes
        ):
            self._finish()
        if self._handle is None:
            self._open()
        start = self._offset
        try:
            for block in blocks:
                data = np.ascontiguousarray(block, dtype=SHARD_DTYPE)
                self._handle.write(data.tobytes())
                self._offset += data.size
        except BaseException:
            self.rollback(start)
            raise
        return self._name, start, self._offset - start

    def append(self, samples: np.ndarray) -> tuple[str, int]:
        """Store one clip held in memory; returns (shard name, offset)."""
        name, offset, _ = self.write_clip([samples], expected=int(np.size(samples)))
        return name, offset

    def rollback(self, offset: int) -> None:
        """Drop what was written to the open shard after ``offset`` (a clip that
        turned out bad or too short)."""
        if self._handle is not None and offset <= self._offset:
            self._handle.seek(offset * SHARD_DTYPE.itemsize)
            self._handle.truncate()
            self._offset = offset

    def close(self) -> list[str]:
        """Finish the open shard; returns the names of all shards written."""
        self._finish()
        return list(self.finished)

    def abort(self) -> None:
        """Delete everything this writer produced (after a failure)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.temp_path(self.audio_dir / self._name).unlink(missing_ok=True)
        for name in self.finished:
            (self.audio_dir / name).unlink(missing_ok=True)
        self.finished.clear()


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16 (rounded, clipped)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    scaled = np.rint(clipped * np.float32(SCALE))
    return np.clip(scaled, -32768, 32767).astype(SHARD_DTYPE)


def dataset_metadata(
    *,
    classes: Sequence[str],
    sources: Sequence[dict[str, Any]],
    splits: dict[str, Any],
    created: dict[str, Any],
) -> dict[str, Any]:
    """The content of ``dataset.json``."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "sample_rate": SAMPLE_RATE,
        "dtype": "int16",
        "scale": SCALE,
        "classes": list(classes),
        "index": INDEX_FILE,
        "skipped": SKIPPED_FILE,
        "audio": AUDIO_DIR,
        "sources": list(sources),
        "splits": splits,
        "created": created,
    }


def write_metadata(root: Path, meta: dict[str, Any]) -> None:
    """Write ``dataset.json`` atomically."""
    write_text_atomic(root / DATASET_FILE, json.dumps(meta, indent=2) + "\n")
