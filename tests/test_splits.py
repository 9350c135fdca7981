"""Grouped, stratified splits: no group in two splits, classes spread evenly."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from serenesense_cli.data.splits import (
    carve,
    check_fractions,
    find_leaks,
    plan_splits,
    summarise_splits,
)
from serenesense_cli.errors import BadInputError


def random_pool(rng: random.Random, n_classes: int, groups_per_class: int, multi: float = 0.2):
    """Clips in groups of 1-12; some groups hold two classes (like MAD videos)."""
    labels, groups = [], []
    for c in range(n_classes):
        for g in range(groups_per_class):
            name = f"c{c}g{g}"
            for _ in range(rng.randint(1, 12)):
                other = rng.random() < multi
                labels.append(f"k{rng.randrange(n_classes) if other else c}")
                groups.append(name)
    order = list(range(len(labels)))
    rng.shuffle(order)
    return [labels[i] for i in order], [groups[i] for i in order]


@pytest.mark.parametrize("case", range(25))
def test_random_pools_never_leak_and_stay_stratified(case):
    rng = random.Random(case)
    n_classes = rng.randint(2, 8)
    labels, groups = random_pool(rng, n_classes, rng.randint(1, 40))
    splits, report = plan_splits(labels, groups, [None] * len(labels), seed=case)
    assert not find_leaks(groups, splits)
    assert not report.leaks
    groups_of = defaultdict(set)
    for label, group in zip(labels, groups, strict=True):
        groups_of[label].add(group)
    total = Counter(labels)
    for label, its_groups in groups_of.items():
        present = {s for s, lab in zip(splits, labels, strict=True) if lab == label}
        if len(its_groups) >= 3:
            assert present == {"train", "val", "test"}, (label, len(its_groups))
        elif len(its_groups) == 2:
            assert {"train", "val"} <= present
        # With plenty of groups the per-class shares are close to the targets.
        if len(its_groups) >= 25 and total[label] >= 150:
            for split, target in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
                share = report.clips[split].get(label, 0) / total[label]
                assert abs(share - target) < 0.05, (label, split, share)


def test_many_small_groups_hit_the_fractions():
    rng = random.Random(7)
    labels, groups = random_pool(rng, 5, 60, multi=0.0)
    _, report = plan_splits(labels, groups, [None] * len(labels), seed=3)
    assert report.achieved["val"] == pytest.approx(0.15, abs=0.02)
    assert report.achieved["test"] == pytest.approx(0.15, abs=0.02)
    assert sum(report.groups.values()) == len(set(groups))


def test_deterministic_and_order_independent():
    rng = random.Random(1)
    labels, groups = random_pool(rng, 4, 15)
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    first = carve(labels, groups, fractions, seed=5)
    assert carve(labels, groups, fractions, seed=5) == first
    reverse = carve(labels[::-1], groups[::-1], fractions, seed=5)
    assert reverse[::-1] == first
    others = [carve(labels, groups, fractions, seed=s) for s in range(6, 12)]
    assert any(o != first for o in others)  # the seed matters


def test_official_test_split_is_kept_and_unassigned_clips_follow_their_group():
    labels = ["a"] * 10 + ["b"] * 10 + ["a", "b"]
    groups = [f"g{i // 2}" for i in range(20)] + ["t1", "t1"]
    official: list[str | None] = [None] * 20 + ["test", "test"]
    official[0] = "test"  # g0's other clip (index 1, unassigned) must follow it
    splits, report = plan_splits(labels, groups, official, val_fraction=0.2, seed=0)
    assert splits[0] == "test" and splits[1] == "test"
    assert splits[20:] == ["test", "test"]
    assert not find_leaks(groups, splits)
    assert "test" not in report.targets  # nothing carved: the source has a test split
    assert report.targets["val"] == pytest.approx(0.2)
    assert "val" in splits
    assert any("joined their group" in note for note in report.notes)


def test_stated_splits_are_never_changed_but_leaks_are_reported():
    labels = ["a"] * 6
    groups = ["v1", "v1", "v2", "v3", "v4", "v4"]
    official = ["train", "test", "train", "train", "train", "train"]
    splits, report = plan_splits(labels, groups, official, val_fraction=0.3, seed=0)
    assert splits[0] == "train" and splits[1] == "test"
    assert report.leaks == ("v1",)
    assert any("more than one split" in note for note in report.notes)


def test_official_val_and_test_means_nothing_carved():
    labels = ["a", "a", "b", "b"]
    groups = ["1", "2", "3", "4"]
    splits, report = plan_splits(labels, groups, ["train", "val", "test", "train"])
    assert splits == ["train", "val", "test", "train"]
    assert report.targets == {"train": 1.0}


def test_single_group_class_stays_in_train_with_a_note():
    labels = ["a"] * 5 + ["b"] * 30
    groups = ["only"] * 5 + [f"b{i}" for i in range(30)]
    splits, report = plan_splits(labels, groups, [None] * 35)
    assert set(splits[:5]) == {"train"}
    assert any("'a' has no clips in val" in note for note in report.notes)


def test_zero_fractions():
    labels = ["a", "b"] * 10
    groups = [str(i) for i in range(20)]
    splits, _ = plan_splits(labels, groups, [None] * 20, val_fraction=0, test_fraction=0)
    assert set(splits) == {"train"}
    splits, _ = plan_splits(labels, groups, [None] * 20, val_fraction=0.3, test_fraction=0)
    assert set(splits) == {"train", "val"}


@pytest.mark.parametrize("val,test", [(-0.1, 0.1), (1.0, 0.0), (0.5, 0.5), (0.2, 1.2)])
def test_bad_fractions(val, test):
    with pytest.raises(BadInputError):
        check_fractions(val, test)


def test_summary_counts_and_leaks():
    report = summarise_splits(["a", "a", "b"], ["g", "g", "h"], ["train", "val", "train"])
    assert report.leaks == ("g",)
    assert report.clips == {"train": {"a": 1, "b": 1}, "val": {"a": 1}}
    assert report.groups == {"train": 2, "val": 1}
    assert report.to_dict()["achieved"]["train"] == pytest.approx(0.6667)


def test_empty_pool():
    assert carve([], [], {"train": 1.0}) == []
