"""Train / validation / test splits that are stratified by class and grouped.

Why grouped: clips cut from one recording (a MAD video) share the recording's
channel, background and often the very same event; a group in two splits
makes the validation score a memory test. Why stratified: with few groups per
class a random group split easily leaves a class out of validation entirely.

The splitter is a small deterministic greedy: groups are visited largest first
(ties in a seeded random order) and each goes to the split whose per-class
shortfall it reduces most (a weighted squared error against the targets, each
class weighted by 1/its size so rare classes count as much as common ones; the
clip total and the number of groups are two more such columns, the latter at a
lower weight, so validation is not built from the smallest recordings only).
Then every class with enough groups is given at least one group in every
carved split, and single-group moves that lower the error are applied until
none helps. Groups holding several classes (MAD videos often do) are handled
naturally: a group is a vector of class counts.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serenesense_cli.errors import BadInputError

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The canonical split names, in display order."""

_REFINE_PASSES = 4
_EXTRA = 2  # columns after the per-class counts: all clips, groups
_GROUP_WEIGHT = 0.25
"""Weight of the group-count column relative to a class: balancing the number of
groups matters, but less than the per-class clip shares (tuned on MAD and open/)."""


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Reject fractions that leave nothing to train on."""
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise BadInputError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise BadInputError(
            f"--val-fraction + --test-fraction must be below 1 "
            f"(got {val_fraction} + {test_fraction}); nothing would be left to train on"
        )


def carve(
    labels: Sequence[str],
    groups: Sequence[str],
    fractions: Mapping[str, float],
    *,
    seed: int = 0,
) -> list[str]:
    """Assign each item to a split so that no group spans two splits and every
    class is spread over the splits close to ``fractions`` (which sum to 1).

    Returns one split name per item. Deterministic for a given ``seed`` and input
    (the input order does not matter).
    """
    if len(labels) != len(groups):
        raise ValueError("labels and groups differ in length")
    active = [s for s, f in fractions.items() if f > 0]
    if not labels:
        return []
    if not active:
        raise ValueError("no split has a positive fraction")
    total_fraction = sum(fractions[s] for s in active)
    targets_f = np.array([fractions[s] / total_fraction for s in active])

    classes = sorted(set(labels))
    column = {c: i for i, c in enumerate(classes)}
    # Columns: clips per class, then all clips, then the group itself (so the
    # number of groups is balanced too, not only clips).
    width = len(classes) + _EXTRA
    vectors: dict[str, np.ndarray] = {}
    for label, group in zip(labels, groups, strict=True):
        vec = vectors.setdefault(group, np.zeros(width))
        vec[column[label]] += 1
        vec[-2] += 1
        vec[-1] = 1

    order = sorted(vectors)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -vectors[g][-2])  # stable: ties keep the seeded order

    totals = np.sum([vectors[g] for g in order], axis=0)
    weights = 1.0 / np.maximum(totals, 1.0)
    weights[-1] *= _GROUP_WEIGHT
    targets = targets_f[:, None] * totals[None, :]  # (splits, width)
    current = np.zeros_like(targets)
    placed: dict[str, int] = {}

    def delta(split: int, vec: np.ndarray, sign: float = 1.0) -> float:
        """Change of the weighted squared error if ``vec`` is added to (or removed from)."""
        diff = current[split] - targets[split]
        return float(np.sum(weights * vec * (2.0 * sign * diff + vec)))

    for group in order:
        vec = vectors[group]
        costs = [(delta(s, vec), -targets_f[s], s) for s in range(len(active))]
        split = min(costs)[2]
        current[split] += vec
        placed[group] = split

    _ensure_coverage(order, vectors, placed, current, classes, len(active), delta)
    _refine(order, vectors, placed, current, len(classes), len(active), delta)

    return [active[placed[g]] for g in groups]


def _coverage(
    order: Sequence[str], vectors: Mapping[str, np.ndarray], placed: Mapping[str, int], n: int
) -> np.ndarray:
    """(splits, classes) number of groups holding each class in each split."""
    cov = np.zeros((n, len(next(iter(vectors.values()))) - _EXTRA), dtype=int)
    for g in order:
        cov[placed[g]] += vectors[g][:-_EXTRA] > 0
    return cov


def _can_leave(cov: np.ndarray, split: int, vec: np.ndarray) -> bool:
    """Moving a group out of ``split`` keeps every class it holds covered there."""
    present = vec[:-_EXTRA] > 0
    return bool(np.all(cov[split][present] >= 2))


def _move(
    group: str,
    to: int,
    vectors: Mapping[str, np.ndarray],
    placed: dict[str, int],
    current: np.ndarray,
    cov: np.ndarray,
) -> None:
    vec = vectors[group]
    frm = placed[group]
    current[frm] -= vec
    current[to] += vec
    cov[frm] -= vec[:-_EXTRA] > 0
    cov[to] += vec[:-_EXTRA] > 0
    placed[group] = to


def _ensure_coverage(order, vectors, placed, current, classes, n_splits, delta) -> None:
    """Give each class at least one group in each split, as far as its groups allow
    (split 0, the largest, first; then the others in order)."""
    cov = _coverage(order, vectors, placed, n_splits)
    n_groups = (np.array([vectors[g][:-_EXTRA] for g in order]) > 0).sum(axis=0)
    for split in range(n_splits):
        for c in np.argsort(n_groups, kind="stable"):
            if cov[split, c] > 0 or n_groups[c] < 2:
                continue
            candidates = []
            for g in order:
                vec = vectors[g]
                frm = placed[g]
                if vec[c] <= 0 or frm == split or not _can_leave(cov, frm, vec):
                    continue
                cost = delta(split, vec) + delta(frm, vec, -1.0)
                candidates.append((cost, g))
            if candidates:
                _move(min(candidates)[1], split, vectors, placed, current, cov)


def _refine(order, vectors, placed, current, n_classes, n_splits, delta) -> None:
    """Single-group moves that lower the error and keep coverage, until none helps."""
    cov = _coverage(order, vectors, placed, n_splits)
    for _ in range(_REFINE_PASSES):
        improved = False
        for g in order:
            vec = vectors[g]
            frm = placed[g]
            if not _can_leave(cov, frm, vec):
                continue
            gain_out = delta(frm, vec, -1.0)
            best = min(
                ((delta(s, vec) + gain_out, s) for s in range(n_splits) if s != frm),
                default=None,
            )
            if best is not None and best[0] < -1e-9:
                _move(g, best[1], vectors, placed, current, cov)
                improved = True
        if not improved:
            break


@dataclass(frozen=True)
class SplitReport:
    """What the splitter achieved, for the summary and ``dataset.json``."""

    targets: dict[str, float]
    """Requested fraction of each carved split, of the clips it was carved from."""
    achieved: dict[str, float]
    """Fraction of all clips that ended in each split."""
    clips: dict[str, dict[str, int]]
    """split -> class -> clips."""
    groups: dict[str, int]
    """split -> number of groups."""
    leaks: tuple[str, ...] = ()
    """Groups found in more than one split (only possible when a source says so)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "targets": dict(self.targets),
            "achieved": {k: round(v, 4) for k, v in self.achieved.items()},
            "clips": {s: dict(v) for s, v in self.clips.items()},
            "groups": dict(self.groups),
            "leaks": list(self.leaks),
            "notes": list(self.notes),
        }


def find_leaks(groups: Sequence[str], splits: Sequence[str]) -> dict[str, set[str]]:
    """Groups that occur in more than one split, with the splits they occur in."""
    seen: dict[str, set[str]] = defaultdict(set)
    for group, split in zip(groups, splits, strict=True):
        seen[group].add(split)
    return {g: s for g, s in seen.items() if len(s) > 1}


def summarise_splits(
    labels: Sequence[str],
    groups: Sequence[str],
    splits: Sequence[str],
    *,
    targets: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
) -> SplitReport:
    """Count clips per split and class, groups per split, and any leaks."""
    clips: dict[str, dict[str, int]] = {}
    group_sets: dict[str, set[str]] = defaultdict(set)
    for label, group, split in zip(labels, groups, splits, strict=True):
        per_class = clips.setdefault(split, {})
        per_class[label] = per_class.get(label, 0) + 1
        group_sets[split].add(group)
    n = max(len(labels), 1)
    ordered = [s for s in SPLITS if s in clips] + sorted(s for s in clips if s not in SPLITS)
    return SplitReport(
        targets=dict(targets or {}),
        achieved={s: sum(clips[s].values()) / n for s in ordered},
        clips={s: clips[s] for s in ordered},
        groups={s: len(group_sets[s]) for s in ordered},
        leaks=tuple(sorted(find_leaks(groups, splits))),
        notes=tuple(notes),
    )


def plan_splits(
    labels: Sequence[str],
    groups: Sequence[str],
    official: Sequence[str | None],
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[list[str], SplitReport]:
    """Split one source's clips: keep its official val/test, carve the missing ones.

    ``official`` holds each clip's split from the source (``train``, ``val``,
    ``test`` or ``None``). A source without a test split gets one carved
    (``test_fraction`` of its train/unassigned clips), likewise validation
    (``val_fraction``). Unassigned clips of a group the source put in val or test
    follow their group there. A split the source states is never changed (an
    official test split stays comparable to published results); if the source
    itself puts a group in two splits, that is kept and reported as a leak.
    """
    check_fractions(val_fraction, test_fraction)
    n = len(labels)
    if not (len(groups) == len(official) == n):
        raise ValueError("labels, groups and official differ in length")
    has = {s: any(o == s for o in official) for s in ("val", "test")}
    held: dict[str, str] = {}
    for group, split in zip(groups, official, strict=True):
        if split == "test" or (split == "val" and held.get(group) != "test"):
            held[group] = split
    result: list[str | None] = [None] * n
    pool: list[int] = []
    moved = 0
    for i, (group, split) in enumerate(zip(groups, official, strict=True)):
        if split in ("val", "test"):
            result[i] = split
        elif group not in held:
            pool.append(i)
        elif split == "train":
            result[i] = "train"  # the source's word, even though it leaks
        else:
            result[i] = held[group]
            moved += 1
    fractions = {"train": 1.0}
    for split, fraction in (("val", val_fraction), ("test", test_fraction)):
        if not has[split] and fraction > 0:
            fractions[split] = fraction
            fractions["train"] -= fraction
    carved = carve([labels[i] for i in pool], [groups[i] for i in pool], fractions, seed=seed)
    for i, split in zip(pool, carved, strict=True):
        result[i] = split
    final = [s or "train" for s in result]
    notes = []
    if moved:
        notes.append(f"{moved} clip(s) without a split joined their group's val/test split")
    leaks = find_leaks(groups, final)
    if leaks:
        notes.append(
            f"the source puts {len(leaks)} group(s) in more than one split "
            f"(e.g. {sorted(leaks)[0]!r}); kept as the source says"
        )
    report = summarise_splits(labels, groups, final, targets=fractions, notes=notes)
    uncovered = _uncovered(labels, groups, final, fractions)
    if uncovered:
        report = SplitReport(**{**report.__dict__, "notes": (*report.notes, *uncovered)})
    return final, report


def _uncovered(
    labels: Sequence[str],
    groups: Sequence[str],
    splits: Sequence[str],
    fractions: Mapping[str, float],
) -> list[str]:
    """Notes for classes missing from a carved split (too few groups to go round)."""
    present: dict[str, set[str]] = defaultdict(set)
    n_groups: dict[str, set[str]] = defaultdict(set)
    for label, group, split in zip(labels, groups, splits, strict=True):
        present[split].add(label)
        n_groups[label].add(group)
    notes = []
    for split, fraction in fractions.items():
        if split == "train" or fraction <= 0:
            continue
        for label in sorted(set(labels) - present[split]):
            notes.append(
                f"class {label!r} has no clips in {split} "
                f"(only {len(n_groups[label])} group(s) to share out)"
            )
    return notes
