"""The clips an evaluation scores: a prepared set's split, or every clip of a raw source.

Why both: a prepared set is what a model was trained on (its test split is the
honest number); a raw source (a folder per class, a MAD tree, a manifest) is
how people try a model on recordings it has never seen. Either way each clip
comes with its class *name*, which is mapped to the model's class index by
name, never by position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serenesense_cli.errors import DataSetError

SPLITS = ("train", "val", "test")
SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")
"""What ``--split`` accepts: the names manifests accept (any case), mapped to :data:`SPLITS`."""


def canonical_split(split: str | None) -> str | None:
    """``validation``/``valid`` -> ``val``, ``training`` -> ``train``, ``testing`` -> ``test``,
    as in manifests; anything else is an error naming the accepted names."""
    from serenesense_cli.data.sources import normalise_split

    if split is None:
        return None
    try:
        name = normalise_split(split)
    except ValueError:
        name = None
    if name is None:
        raise DataSetError(
            f"unknown split {split!r}",
            hint=f"use train, val or test (also accepted: {', '.join(SPLIT_NAMES)})",
        )
    return name


@dataclass(frozen=True)
class EvalItem:
    """One clip to score; ``load`` decodes it (may raise an AudioFileError)."""

    path: str
    clip: str
    label: str
    load: Callable[[], np.ndarray]


@dataclass
class EvalData:
    """What :func:`open_eval_data` found."""

    path: Path
    kind: str
    """``prepared``, or the raw source format: ``mad``, ``folder``, ``manifest``."""
    classes: tuple[str, ...]
    split: str | None
    items: list[EvalItem]
    problems: list[tuple[str, str]] = field(default_factory=list)
    """Entries the source lists but that cannot be clips (unknown label, ...)."""

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "split": self.split,
            "classes": list(self.classes),
            "listed_clips": len(self.items),
        }


def open_eval_data(path: str | Path, *, split: str | None, sample_rate: int) -> EvalData:
    """A prepared set's ``split`` (default ``test``) or a raw source's clips.

    For a raw source ``split`` is optional: without it every clip is scored;
    with it only the clips the source itself assigns to that split (MAD's
    official test split, a manifest's ``split`` column).
    """
    from serenesense_cli.data.cache import read_metadata

    path = Path(path)
    split = canonical_split(split)
    if not path.exists():
        raise DataSetError(f"{path}: no such data set", hint="pass a prepared set or a source")
    if path.is_dir() and read_metadata(path) is not None:
        return _prepared(path, split or "test", sample_rate)
    return _raw(path, split, sample_rate)


def _prepared(path: Path, split: str, sample_rate: int) -> EvalData:
    from serenesense_cli.data.cache import open_prepared

    prepared = open_prepared(path)
    if prepared.sample_rate != sample_rate:
        raise DataSetError(
            f"{path}: prepared at {prepared.sample_rate} Hz, the model expects {sample_rate} Hz",
            hint="prepare the data again (serenesense prepares at the models' rate)",
        )
    indices = prepared.indices(split)
    if not indices:
        raise DataSetError(
            f"{path}: the prepared set has no {split!r} clips "
            f"(it has: {', '.join(prepared.splits) or 'none'})",
            hint="choose another --split",
        )

    def loader(i: int) -> Callable[[], np.ndarray]:
        return lambda: prepared.waveform(i)

    items = [
        EvalItem(
            path=prepared.records[i].source_path,
            clip=prepared.records[i].clip_id,
            label=prepared.records[i].label,
            load=loader(i),
        )
        for i in indices
    ]
    return EvalData(path=path, kind="prepared", classes=prepared.classes, split=split, items=items)


def _raw(path: Path, split: str | None, sample_rate: int) -> EvalData:
    from serenesense_cli.audio.io import load_audio
    from serenesense_cli.data.sources import load_sources

    (source,) = load_sources([path])
    records: Sequence = source.records
    if split is not None:
        if not source.official_splits:
            raise DataSetError(
                f"{path}: this {source.kind} source assigns no splits, so --split {split} "
                "selects nothing",
                hint="leave out --split to score every clip, or prepare the data first",
            )
        records = [r for r in records if r.split == split]
        if not records:
            raise DataSetError(
                f"{path}: no {split!r} clips in this source "
                f"(it has: {', '.join(sorted(source.official_splits))})",
                hint="choose another --split",
            )

    def loader(audio: Path) -> Callable[[], np.ndarray]:
        return lambda: load_audio(audio, sample_rate=sample_rate)

    items = [
        EvalItem(path=str(r.path), clip=r.relpath, label=r.label, load=loader(r.path))
        for r in records
    ]
    problems = [(p.path, p.problem) for p in source.problems]
    return EvalData(
        path=path,
        kind=source.kind,
        classes=source.classes,
        split=split,
        items=items,
        problems=problems,
    )


def check_classes(data: EvalData, model_classes: Sequence[str], model_path: str | Path) -> None:
    """Data classes must be model classes (by name); fewer classes are fine."""
    known = set(model_classes)
    unknown = [c for c in data.classes if c not in known]
    if unknown:
        raise DataSetError(
            f"{data.path}: class(es) {', '.join(map(repr, unknown))} of the data set are not "
            f"classes of the model {model_path} (it knows: {', '.join(model_classes)})",
            hint="evaluate on data labelled with the model's class names (a subset is fine)",
        )
