"""Data sources: MAD trees, CSV manifests, folder-per-class trees, detection."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.data.mad import MAD_CLASSES
from serenesense_cli.data.sources import (
    SourceFormat,
    detect_format,
    load_source,
    load_sources,
    merge_classes,
    normalise_split,
    read_folder,
    read_mad,
    read_manifest,
)
from serenesense_cli.errors import EXIT_BAD_INPUT, DataSetError


def write_wav(path: Path, seconds: float = 0.2, sample_rate: int = 16_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), sample_rate, subtype="PCM_16")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


MAD_HEADER = ["", "path", "label", "youtube title", "youtube url"]


def make_mad(root: Path) -> Path:
    train = [
        ["training/398/0.wav", 3],
        ["training/398/1.wav", 1],  # a video with two classes (MAD has many)
        ["training/12/0.wav", 0],
        ["training/12/1.wav", 0],
    ]
    test = [["test/227/0.wav", 6]]
    for rows, name in ((train, "training.csv"), (test, "test.csv")):
        write_csv(
            root / name,
            MAD_HEADER,
            [[i, p, label, "title, with comma", "https://x"] for i, (p, label) in enumerate(rows)],
        )
        for p, _ in rows:
            write_wav(root / p)
    return root


def test_mad_tree(tmp_path):
    root = make_mad(tmp_path / "MAD_dataset")
    assert detect_format(root) is SourceFormat.mad
    source = load_source(root)
    assert source.kind == "mad"
    assert source.classes == MAD_CLASSES
    assert len(source.records) == 5
    first = source.records[0]
    assert first.label == "shelling" and first.split == "train"
    assert first.group == "MAD_dataset:398"
    assert first.path == (root / "training/398/0.wav").resolve()
    assert {r.group for r in source.records if r.split == "test"} == {"MAD_dataset:227"}
    assert source.official_splits == {"train", "test"}


def test_mad_bad_labels_are_problems(tmp_path):
    root = tmp_path / "mad"
    write_csv(
        root / "training.csv",
        MAD_HEADER,
        [
            [0, "training/1/0.wav", 7, "t", "u"],
            [1, "training/1/1.wav", "x", "t", "u"],
            [2, "training/1/2.wav", -1, "t", "u"],
            [3, "training/1/3.wav", 2, "t", "u"],
        ],
    )
    source = read_mad(root)
    assert [r.label for r in source.records] == ["footsteps"]
    assert len(source.problems) == 3
    assert all("not a MAD label" in p.problem for p in source.problems)


def test_mad_single_csv(tmp_path):
    root = make_mad(tmp_path / "mad")
    assert detect_format(root / "test.csv") is SourceFormat.mad
    source = load_source(root / "test.csv")
    assert [r.split for r in source.records] == ["test"]


def test_manifest_csv(tmp_path):
    manifest = write_csv(
        tmp_path / "lists" / "my.csv",
        ["path", "label", "group", "split", "extra"],
        [
            ["../audio/b/1.wav", "bird", "rec1", "training", "x"],
            ["../audio/b/2.wav", "bird", "rec1", "", "x"],
            ["../audio/a/1.wav", "alarm", "", "Validation", "x"],
            ["../audio/a/2.wav", "alarm", "rec9", "testing", "x"],
            ["../audio/a/2.wav", "alarm", "rec9", "test", "x"],  # duplicate
            ["../audio/a/3.wav", "", "rec9", "test", "x"],  # no label
        ],
    )
    assert detect_format(manifest) is SourceFormat.manifest
    source = load_source(manifest)
    assert source.name == "my"
    assert source.classes == ("bird", "alarm")  # order of first appearance
    assert [r.split for r in source.records] == ["train", None, "val", "test"]
    assert source.records[0].path == (tmp_path / "audio/b/1.wav").resolve()
    assert source.records[0].group == "my:rec1"
    assert source.records[2].group == "my:../audio/a/1"  # no group: one per file
    assert len(source.problems) == 2


def test_manifest_unknown_split_and_missing_columns(tmp_path):
    bad = write_csv(tmp_path / "m.csv", ["path", "label", "split"], [["a.wav", "x", "dev2"]])
    with pytest.raises(DataSetError, match="unknown split 'dev2'"):
        read_manifest(bad)
    cols = write_csv(tmp_path / "n.csv", ["file", "label"], [["a.wav", "x"]])
    with pytest.raises(DataSetError, match="missing column"):
        read_manifest(cols)


def test_folder_with_manifest_and_fold_column(tmp_path):
    root = tmp_path / "sesa"
    for name in ("casual/c1.wav", "siren/s1.wav"):
        write_wav(root / name)
    write_csv(
        root / "manifest.csv",
        ["path", "label", "fold", "source_file"],
        [["casual/c1.wav", "casual", "train", "x"], ["siren/s1.wav", "siren", "train", "y"]],
    )
    assert detect_format(root) is SourceFormat.manifest
    source = load_source(root)
    assert source.name == "sesa"
    assert [r.split for r in source.records] == ["train", "train"]
    # Forcing the folder reader ignores the manifest.
    assert load_source(root, source_format="folder").kind == "folder"


def test_numeric_fold_is_not_a_split(tmp_path):
    manifest = write_csv(
        tmp_path / "m.csv", ["path", "label", "fold"], [["a.wav", "x", "1"], ["b.wav", "y", "2"]]
    )
    assert [r.split for r in read_manifest(manifest).records] == [None, None]


def test_folder_per_class(tmp_path):
    root = tmp_path / "data"
    write_wav(root / "zebra" / "z1.wav")
    write_wav(root / "ant" / "deep" / "a1.flac")
    write_wav(root / "ant" / "a2.wav")
    (root / "ant" / "notes.txt").write_text("not audio")
    write_wav(root / ".hidden" / "h.wav")
    (root / "empty").mkdir()
    assert detect_format(root) is SourceFormat.folder
    source = read_folder(root)
    assert source.classes == ("ant", "zebra")
    assert [r.relpath for r in source.records] == ["ant/a2.wav", "ant/deep/a1.flac", "zebra/z1.wav"]
    assert len({r.group for r in source.records}) == 3
    assert all(r.split is None for r in source.records)


def test_folder_group_pattern(tmp_path):
    root = tmp_path / "data"
    for name in ("a/rec1_0.wav", "a/rec1_1.wav", "a/rec2_0.wav", "b/rec3_0.wav"):
        write_wav(root / name)
    source = read_folder(root, group_pattern=r"^(rec\d+)_")
    assert [r.group for r in source.records] == ["data:rec1", "data:rec1", "data:rec2", "data:rec3"]
    with pytest.raises(DataSetError, match="invalid --group-pattern"):
        read_folder(root, group_pattern="(")


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p / "missing",
        lambda p: (p / "x.txt").write_text("x") and p / "x.txt",
        lambda p: (p / "empty").mkdir() or p / "empty",
    ],
    ids=["missing", "not-csv", "empty-folder"],
)
def test_no_source_is_bad_input(tmp_path, make):
    with pytest.raises(DataSetError) as info:
        load_source(make(tmp_path))
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert info.value.hint


def test_unknown_format_is_bad_input(tmp_path):
    with pytest.raises(DataSetError, match="unknown source format"):
        load_source(tmp_path, source_format="zip")


def test_several_sources_get_unique_names_and_class_union(tmp_path):
    one = tmp_path / "one" / "data"
    two = tmp_path / "two" / "data"
    write_wav(one / "b" / "x.wav")
    write_wav(one / "a" / "x.wav")
    write_wav(two / "c" / "x.wav")
    write_wav(two / "a" / "x.wav")
    sources = load_sources([one, two])
    assert [s.name for s in sources] == ["data", "data-2"]
    assert merge_classes(sources) == ("a", "b", "c")
    groups = [r.group for s in sources for r in s.records]
    assert len(set(groups)) == len(groups)


def test_normalise_split():
    assert normalise_split(" Training ") == "train"
    assert normalise_split("valid") == "val"
    assert normalise_split("") is None
    with pytest.raises(ValueError):
        normalise_split("holdout")
