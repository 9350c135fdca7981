"""Integration on real data from ../shared/data (skipped where it is absent).

* SESA + open recordings together (folder-per-class trees with manifests):
  an 8-class set whose counts and groups must match the manifests.
* A MAD-layout tree made from a subset of the real MAD CSVs, with short
  synthesised audio at the listed paths (MAD's audio is not shipped).
"""

from __future__ import annotations

import csv
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.data.cache import open_prepared
from serenesense_cli.data.mad import MAD_CLASSES
from serenesense_cli.data.prepare import prepare_dataset
from serenesense_cli.data.splits import find_leaks

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_sesa_and_open_make_an_eight_class_set(shared_data, tmp_path):
    sesa, opened = shared_data / "sesa", shared_data / "open"
    if not (sesa / "manifest.csv").is_file() or not (opened / "manifest.csv").is_file():
        pytest.skip("sesa/ or open/ missing from ../shared/data")
    started = time.monotonic()
    result = prepare_dataset([sesa, opened], tmp_path / "prepared")
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"preparing SESA + open took {elapsed:.1f} s"

    sesa_rows = read_manifest(sesa / "manifest.csv")
    open_rows = read_manifest(opened / "manifest.csv")
    skipped = {Path(p).resolve() for p, _ in result.skipped}
    expected = Counter(
        r["label"]
        for root, rows in ((sesa, sesa_rows), (opened, open_rows))
        for r in rows
        if (root / r["path"]).resolve() not in skipped
    )
    assert len(sesa_rows) == 480 and len(open_rows) == 357

    prepared = open_prepared(result.root)
    assert len(prepared.classes) == 8
    assert prepared.classes[:4] == ("casual", "explosion", "gunshot", "siren")
    assert set(prepared.classes[4:]) == {"background", "helicopter", "speech", "vehicle"}
    assert Counter(r.label for r in prepared.records) == expected
    assert len(prepared) == 480 + 357 - len(skipped)

    # open/: each clip's group is its manifest group (namespaced by source).
    group_of = {(opened / r["path"]).resolve(): r["group"] for r in open_rows}
    for record in prepared.records:
        if record.source == "open":
            assert record.group == f"open:{group_of[Path(record.source_path)]}"
    splits = [r.split for r in prepared.records]
    groups = [r.group for r in prepared.records]
    assert not find_leaks(groups, splits)
    # Every class is in every split, in roughly the requested shares.
    for split, target in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        counts = prepared.class_counts(split)
        assert all(counts), (split, counts)
        share = sum(counts) / len(prepared)
        assert abs(share - target) < 0.03, (split, share)

    # A clip reads back exactly (16 kHz PCM16 sources round-trip bit for bit).
    record = prepared.records[0]
    original, rate = sf.read(record.source_path, dtype="int16")
    assert rate == 16_000
    np.testing.assert_array_equal(prepared.clip(0), original)


def test_mad_layout_from_real_csvs(shared_data, tmp_path):
    mad = shared_data / "mad"
    if not (mad / "training.csv").is_file():
        pytest.skip("mad/ missing from ../shared/data")
    root = tmp_path / "MAD_dataset"
    root.mkdir()
    kept: dict[str, list[list[str]]] = {}
    for name, per_class in (("training.csv", 3), ("test.csv", 1)):
        with (mad / name).open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = list(reader)
        chosen: dict[str, list[str]] = defaultdict(list)  # label -> videos
        videos: set[str] = set()
        for row in rows:
            video = row[1].split("/")[1]
            if video not in videos and len(chosen[row[2]]) < per_class:
                chosen[row[2]].append(video)
                videos.add(video)
        kept[name] = [row for row in rows if row[1].split("/")[1] in videos]
        with (root / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(kept[name])
    rng = np.random.default_rng(0)
    for rows in kept.values():
        for row in rows:
            path = root / row[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, rng.uniform(-0.3, 0.3, 3200), 16_000, subtype="PCM_16")

    result = prepare_dataset([root], tmp_path / "prepared", seed=0)
    assert not result.skipped
    prepared = open_prepared(result.root)
    assert prepared.classes == MAD_CLASSES
    by_path = {Path(r.source_path): r for r in prepared.records}
    for name, split_names in (("training.csv", {"train", "val"}), ("test.csv", {"test"})):
        for row in kept[name]:
            record = by_path[(root / row[1]).resolve()]
            assert record.label == MAD_CLASSES[int(row[2])]
            assert record.split in split_names
            assert record.group == f"MAD_dataset:{row[1].split('/')[1]}"
    assert len(prepared) == len(kept["training.csv"]) + len(kept["test.csv"])
    assert not find_leaks([r.group for r in prepared.records], [r.split for r in prepared.records])
    val = prepared.class_counts("val")
    assert sum(val) > 0
    # Every class has at least 3 videos in training: each gets some validation clips.
    assert all(val), val
