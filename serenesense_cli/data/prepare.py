"""Turn one or more data sources into a prepared set (see :mod:`.cache`).

``prepare_dataset`` reads the sources, checks and decodes every file once to
16 kHz mono int16, carves the missing splits (grouped and stratified, see
:mod:`.splits`) and writes the prepared-set folder. Bad files are listed and
skipped, never fatal. Re-running is incremental: audio already decoded for an
unchanged file (same path, size and modification time) is reused; only new or
changed files are decoded, and files no source lists any more drop out.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf

from serenesense_cli import __version__
from serenesense_cli.data import cache
from serenesense_cli.data.sources import Source, SourceFormat, load_sources, merge_classes
from serenesense_cli.data.splits import check_fractions, plan_splits, summarise_splits
from serenesense_cli.errors import AudioFileError, BadInputError, DataSetError
from serenesense_cli.progress import ProgressCallback, report

_COMPACT_BELOW = 0.5
"""Reused clips are copied to a new shard when less than this share of their old
shard is still in use, so removed files do not leave dead space forever."""

_OWN_NAMES = frozenset(
    {cache.DATASET_FILE, cache.INDEX_FILE, cache.SKIPPED_FILE, cache.AUDIO_DIR, ".lock"}
)


@dataclass(frozen=True)
class PrepareResult:
    """What :func:`prepare_dataset` did."""

    root: Path
    classes: tuple[str, ...]
    summary: dict[str, Any]
    skipped: tuple[tuple[str, str], ...]
    decoded: int
    reused: int
    removed: int
    splits: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    """One line per decoded file whose prepared copy differs from it (clipped
    peaks, channels that cancelled in the mono mix)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``--format json``)."""
        return {
            "root": str(self.root),
            "classes": list(self.classes),
            "summary": self.summary,
            "skipped": [{"path": p, "problem": m} for p, m in self.skipped],
            "decoded": self.decoded,
            "reused": self.reused,
            "removed": self.removed,
            "splits": self.splits,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


@dataclass
class _Entry:
    source: Source
    index: int  # position in source.records
    key: tuple[str, int, int]
    previous: cache.ClipRecord | None = None


def _decode_blocks(path: Path, notes: list[str]) -> Iterator[np.ndarray]:
    """Decode ``path`` to int16 mono blocks at 16 kHz; every failure is an
    AudioFileError naming the file (raised while iterating).

    What the int16 copy changes is noted in ``notes``: samples beyond full scale
    (float files can hold them) are clipped, and channels that cancel in the
    mono mix leave near silence."""
    from serenesense_cli.audio.io import stream_audio

    peak = 0.0
    try:
        for block in stream_audio(path, sample_rate=cache.SAMPLE_RATE, on_note=notes.append):
            if block.size:
                peak = max(peak, float(np.max(np.abs(block))))
            yield cache.to_int16(block)
    except AudioFileError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        raise AudioFileError(path, f"cannot be decoded: {error}") from error
    if peak > _CLIP_NOTE_PEAK:
        notes.append(
            f"{path}: samples reach {peak:.3g}, beyond full scale (1.0); clipped to "
            "+-1 in the prepared copy (scale the file down to keep its peaks)"
        )


MAX_CLIP_SECONDS = 3 * 3600
"""Longest clip a prepared set takes, checked on the header before decoding:
a corrupt header can claim days of audio, which would fill the disk."""

_CLIP_NOTE_PEAK = 1.001
"""Peaks above this are worth a warning (resampling overshoots full scale a little)."""


def _expected_frames(path: Path) -> int:
    """Output length estimated from the header (to pick a shard); 0 if unknown."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        return 0
    if info.samplerate <= 0:
        return 0
    return int(info.frames * cache.SAMPLE_RATE / info.samplerate) + 1


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Keep two prepare runs from writing one folder (released if the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, run unguarded
        yield
        return
    handle = (root / ".lock").open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataSetError(
                f"{root}: another `serenesense data prepare` is writing this folder",
                hint="wait for it to finish, or choose another --out folder",
            ) from None
        yield
    finally:
        handle.close()


def _check_out_dir(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise BadInputError(f"{root}: exists and is not a folder", hint="choose a folder for --out")
    if not root.exists() or cache.read_metadata(root) is not None:
        return
    foreign = [
        p.name
        for p in root.iterdir()
        if p.name not in _OWN_NAMES and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    ]
    if foreign:
        raise DataSetError(
            f"{root}: folder is not empty and not a prepared data set "
            f"(holds {', '.join(sorted(foreign)[:3])}{'...' if len(foreign) > 3 else ''})",
            hint="choose a new or empty folder for --out",
        )


def _previous(root: Path) -> dict[tuple[str, int, int], cache.ClipRecord]:
    """Reusable clips of the set already in ``root`` (none if absent or foreign)."""
    meta = cache.read_metadata(root)
    if meta is None or meta.get("version") != cache.FORMAT_VERSION:
        return {}
    if int(meta.get("sample_rate", 0)) != cache.SAMPLE_RATE:
        return {}
    try:
        records = cache.read_index(root / cache.INDEX_FILE)
    except DataSetError:
        return {}
    sizes: dict[str, int] = {}
    usable = {}
    for record in records:
        if record.shard not in sizes:
            try:
                sizes[record.shard] = (root / cache.AUDIO_DIR / record.shard).stat().st_size
            except OSError:
                sizes[record.shard] = 0
        end = (record.offset + record.frames) * cache.SHARD_DTYPE.itemsize
        if end <= sizes[record.shard]:
            usable[record.cache_key] = record
    return usable


def _clip_id(source: Source, relpath: str, path: Path, used: set[str]) -> str:
    rel = Path(relpath)
    if rel.is_absolute() or ".." in rel.parts:
        stem = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:12]
    else:
        stem = rel.with_suffix("").as_posix()
    base = f"{source.name}/{stem}"
    clip_id, n = base, 1
    while clip_id in used:
        n += 1
        clip_id = f"{base}~{n}"
    used.add(clip_id)
    return clip_id


def _collect_garbage(root: Path, referenced: set[str]) -> None:
    """Delete shards no row refers to and temporary files of interrupted runs."""
    audio = root / cache.AUDIO_DIR
    if audio.is_dir():
        for item in audio.iterdir():
            if item.is_file() and item.name not in referenced:
                item.unlink(missing_ok=True)
    for item in root.iterdir():
        if item.is_file() and item.name.startswith(".") and item.name.endswith(".tmp"):
            item.unlink(missing_ok=True)


def prepare_dataset(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    *,
    source_format: SourceFormat | str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    min_seconds: float = 0.1,
    group_pattern: str | None = None,
    max_shard_bytes: int = cache.DEFAULT_SHARD_BYTES,
    on_progress: ProgressCallback | None = None,
) -> PrepareResult:
    """Prepare ``sources`` (merged into one set, union of classes) into ``out_dir``.

    Splits: a source's own val/test split is kept; missing ones are carved out of
    its remaining clips (``val_fraction``, ``test_fraction`` of those clips),
    stratified by class and never splitting a group. Files that cannot be read,
    or are shorter than ``min_seconds``, are skipped and listed. Raises
    :class:`DataSetError` when no source is found or no usable clip remains.
    """
    started = time.monotonic()
    check_fractions(val_fraction, test_fraction)
    if min_seconds < 0:
        raise BadInputError(f"--min-seconds must be >= 0, got {min_seconds}")
    loaded = load_sources(sources, source_format=source_format, group_pattern=group_pattern)
    classes = merge_classes(loaded)
    root = Path(out_dir)
    _check_out_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        return _prepare_locked(
            loaded,
            classes,
            root,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            min_seconds=min_seconds,
            group_pattern=group_pattern,
            max_shard_bytes=max_shard_bytes,
            on_progress=on_progress,
            started=started,
        )


class _Placed(NamedTuple):
    """Where a kept clip's samples lie in the shards."""

    entry: _Entry
    shard: str
    offset: int
    frames: int


@dataclass
class _Tally:
    """What the scan and decode steps found, for the summary and skipped.csv."""

    skipped: list[tuple[str, str]]
    placed: list[_Placed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decoded: int = 0
    reused: int = 0

    def skip(self, path: Path | str, problem: str) -> None:
        self.skipped.append((str(path), problem))


def _scan(
    loaded: list[Source],
    previous: dict[tuple[str, int, int], cache.ClipRecord],
    tally: _Tally,
    on_progress: ProgressCallback | None,
) -> list[_Entry]:
    """Every listed file once, with its size and mtime (and its earlier clip, if unchanged)."""
    entries: list[_Entry] = []
    owner: dict[Path, str] = {}
    listed = sum(len(s.records) for s in loaded)
    for source in loaded:
        for i, record in enumerate(source.records):
            report(on_progress, "scan", len(entries) + len(tally.skipped), listed)
            if record.path in owner:
                tally.skip(record.path, f"also listed by source {owner[record.path]}; kept once")
                continue
            owner[record.path] = source.name
            try:
                stat = record.path.stat()
            except FileNotFoundError:
                tally.skip(record.path, "file not found")
                continue
            except OSError as error:
                tally.skip(record.path, f"cannot be read ({error.strerror or error})")
                continue
            key = (str(record.path), int(stat.st_size), int(stat.st_mtime_ns))
            entries.append(_Entry(source, i, key, previous.get(key)))
    report(on_progress, "scan", listed, listed)
    if not entries:
        raise DataSetError(
            "no audio files found in "
            + ", ".join(str(s.location) for s in loaded)
            + (
                f" ({len(tally.skipped)} listed file(s) missing or unusable)"
                if tally.skipped
                else ""
            ),
            hint="check the source paths; see `serenesense data prepare --help`",
        )
    return entries


def _shards_to_compact(root: Path, entries: list[_Entry]) -> set[str]:
    """Shards mostly emptied by removed or changed files: their clips get rewritten."""
    live: dict[str, int] = {}
    for entry in entries:
        if entry.previous is not None:
            live[entry.previous.shard] = live.get(entry.previous.shard, 0) + entry.previous.frames
    compact = set()
    for shard, frames in live.items():
        size = (root / cache.AUDIO_DIR / shard).stat().st_size // cache.SHARD_DTYPE.itemsize
        if size and frames / size < _COMPACT_BELOW:
            compact.add(shard)
    return compact


class _Placer:
    """Puts each entry's samples into the shards: kept in place, copied, or decoded."""

    def __init__(self, root: Path, writer: cache.ShardWriter, compact: set[str], tally: _Tally):
        self.root = root
        self.writer = writer
        self.compact = compact
        self.tally = tally
        self.maps: dict[str, np.ndarray] = {}

    def reuse(self, entry: _Entry, old: cache.ClipRecord) -> None:
        """An unchanged file: its earlier samples stay, or move out of a compacted shard."""
        self.tally.reused += 1
        if old.shard not in self.compact:
            self.tally.placed.append(_Placed(entry, old.shard, old.offset, old.frames))
            return
        if old.shard not in self.maps:
            path = self.root / cache.AUDIO_DIR / old.shard
            self.maps[old.shard] = np.memmap(path, dtype=cache.SHARD_DTYPE, mode="r")
        samples = np.array(self.maps[old.shard][old.offset : old.offset + old.frames])
        shard, offset = self.writer.append(samples)
        self.tally.placed.append(_Placed(entry, shard, offset, int(samples.size)))

    def decode(self, entry: _Entry, min_seconds: float) -> None:
        """A new or changed file: decode it block by block (skipped with a reason if unusable)."""
        record = entry.source.records[entry.index]
        expected = _expected_frames(record.path)
        if expected > MAX_CLIP_SECONDS * cache.SAMPLE_RATE:
            self.tally.skip(
                record.path,
                f"too long: the header says {expected / cache.SAMPLE_RATE:,.0f} s "
                f"(at most {MAX_CLIP_SECONDS:,} s per clip; split the recording, "
                "or run `serenesense detect` on it)",
            )
            return
        clip_notes: list[str] = []
        try:
            shard, offset, frames = self.writer.write_clip(
                _decode_blocks(record.path, clip_notes), expected=expected
            )
        except AudioFileError as error:
            self.tally.skip(record.path, error.problem)
            return
        self.tally.notes.extend(clip_notes)
        self.tally.decoded += 1
        if frames < max(round(min_seconds * cache.SAMPLE_RATE), 1):
            self.writer.rollback(offset)
            self.tally.skip(
                record.path,
                f"too short: {frames / cache.SAMPLE_RATE:.3f} s (minimum {min_seconds:g} s)",
            )
            return
        self.tally.placed.append(_Placed(entry, shard, offset, frames))

    def close(self) -> None:
        self.maps.clear()


def _prepare_locked(
    loaded: list[Source],
    classes: tuple[str, ...],
    root: Path,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    min_seconds: float,
    group_pattern: str | None,
    max_shard_bytes: int,
    on_progress: ProgressCallback | None,
    started: float,
) -> PrepareResult:
    previous = _previous(root)
    tally = _Tally(skipped=[(p.path, p.problem) for source in loaded for p in source.problems])
    entries = _scan(loaded, previous, tally, on_progress)
    writer = cache.ShardWriter(root / cache.AUDIO_DIR, max_bytes=max_shard_bytes)
    placer = _Placer(root, writer, _shards_to_compact(root, entries), tally)
    try:
        for n, entry in enumerate(entries):
            note = entry.source.records[entry.index].relpath
            report(on_progress, "decode", n, len(entries), note=note)
            if entry.previous is not None:
                placer.reuse(entry, entry.previous)
            else:
                placer.decode(entry, min_seconds)
        report(on_progress, "decode", len(entries), len(entries))
        placer.close()
        writer.close()
        if not tally.placed:
            first = tally.skipped[0]
            raise DataSetError(
                f"no usable audio: all {len(entries)} file(s) were skipped "
                f"(first problem: {first[0]}: {first[1]})",
                hint="check that the source's files are readable audio; run with --debug "
                "for details",
            )
        records, split_info = _assign(
            loaded,
            classes,
            tally.placed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
        )
        meta = cache.dataset_metadata(
            classes=classes,
            sources=[s.describe() for s in loaded],
            splits={
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "seed": seed,
                "min_seconds": min_seconds,
                "group_pattern": group_pattern,
                **split_info,
            },
            created={
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "serenesense": __version__,
                "decoded": tally.decoded,
                "reused": tally.reused,
                "skipped": len(tally.skipped),
            },
        )
        cache.write_skipped(root / cache.SKIPPED_FILE, tally.skipped)
        cache.write_metadata(root, meta)
        cache.write_index(root / cache.INDEX_FILE, records)  # the commit point
    except BaseException:
        placer.close()
        writer.abort()
        raise
    _collect_garbage(root, {r.shard for r in records})
    kept = {p.entry.key[0] for p in tally.placed}
    return PrepareResult(
        root=root,
        classes=classes,
        summary=cache.summarise(records, classes, root=root, skipped=len(tally.skipped)),
        skipped=tuple(tally.skipped),
        decoded=tally.decoded,
        reused=tally.reused,
        removed=len({r.source_path for r in previous.values()} - kept),
        splits=split_info,
        seconds=time.monotonic() - started,
        notes=tuple(tally.notes),
    )


def _assign(
    loaded: Sequence[Source],
    classes: Sequence[str],
    placed: Sequence[_Placed],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[list[cache.ClipRecord], dict[str, Any]]:
    """Split each source's kept clips and build the index rows."""
    by_source: dict[str, list[_Placed]] = {}
    for item in placed:
        by_source.setdefault(item.entry.source.name, []).append(item)
    label_index = {c: i for i, c in enumerate(classes)}
    records: list[cache.ClipRecord] = []
    reports: dict[str, Any] = {}
    used_ids: set[str] = set()
    for source in loaded:
        items = by_source.get(source.name, [])
        if not items:
            continue
        src = [source.records[p.entry.index] for p in items]
        splits, split_report = plan_splits(
            [r.label for r in src],
            [r.group for r in src],
            [r.split for r in src],
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
        )
        reports[source.name] = split_report.to_dict()
        for (entry, shard, offset, frames), record, split in zip(items, src, splits, strict=True):
            records.append(
                cache.ClipRecord(
                    clip_id=_clip_id(source, record.relpath, record.path, used_ids),
                    split=split,
                    label=record.label,
                    label_index=label_index[record.label],
                    group=record.group,
                    frames=frames,
                    duration=round(frames / cache.SAMPLE_RATE, 6),
                    source=source.name,
                    source_path=entry.key[0],
                    size=entry.key[1],
                    mtime_ns=entry.key[2],
                    shard=shard,
                    offset=offset,
                )
            )
    overall = summarise_splits(
        [r.label for r in records], [r.group for r in records], [r.split for r in records]
    )
    notes = [f"{name}: {note}" for name, rep in reports.items() for note in rep["notes"]]
    present = {r.label for r in records}
    notes += [f"class {c!r} has no usable clips" for c in classes if c not in present]
    return records, {
        "achieved": overall.to_dict()["achieved"],
        "groups": overall.groups,
        "leaks": list(overall.leaks),
        "notes": notes,
        "sources": reports,
    }
