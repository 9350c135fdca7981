"""Prepared sets: decode once, read back exactly, re-run incrementally and safely."""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.audio.io import load_audio
from serenesense_cli.data import cache, prepare
from serenesense_cli.data.cache import open_prepared
from serenesense_cli.data.mad import MAD_CLASSES
from serenesense_cli.data.prepare import prepare_dataset
from serenesense_cli.data.splits import find_leaks
from serenesense_cli.errors import DataSetError


def write_wav(
    path: Path, seconds: float = 0.3, sample_rate: int = 16_000, *, seed: int = 0, **kw
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * sample_rate))
    sf.write(path, noise, sample_rate, **({"subtype": "PCM_16"} | kw))
    return path


def make_folder(root: Path, per_class: int = 4, classes=("alpha", "beta")) -> Path:
    for c, label in enumerate(classes):
        for i in range(per_class):
            write_wav(root / label / f"{label}{i}.wav", seed=c * 100 + i)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder(tmp_path / "src")


def test_round_trip_and_layout(folder, tmp_path):
    out = tmp_path / "prep"
    result = prepare_dataset([folder], out)
    assert result.decoded == 8 and result.reused == 0 and not result.skipped
    assert {p.name for p in out.iterdir()} >= {"dataset.json", "index.csv", "skipped.csv", "audio"}
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["format"] == "serenesense-prepared" and meta["version"] == 1
    assert meta["classes"] == ["alpha", "beta"] and meta["sample_rate"] == 16_000
    prepared = open_prepared(out)
    assert prepared.classes == ("alpha", "beta") and len(prepared) == 8
    for i, record in enumerate(prepared.records):
        wave = prepared.waveform(i)
        assert wave.dtype == np.float32 and wave.shape == (record.frames,)
        expected = load_audio(record.source_path)
        np.testing.assert_allclose(wave, expected, atol=1 / 32768)
        assert record.duration == pytest.approx(0.3)
        assert prepared.classes[record.label_index] == record.label
    assert sorted(i for s in ("train", "val", "test") for i in prepared.indices(s)) == list(
        range(8)
    )
    assert sum(prepared.class_counts()) == 8
    summary = prepared.summary()
    assert summary["clips"] == 8 and summary["skipped"] == 0
    assert summary["hours"] == pytest.approx(8 * 0.3 / 3600)


def test_resampled_multichannel_source(tmp_path):
    src = tmp_path / "src"
    stereo = np.random.default_rng(0).uniform(-0.3, 0.3, (22050, 2))
    (src / "x").mkdir(parents=True)
    sf.write(src / "x" / "a.flac", stereo, 22050)
    write_wav(src / "y" / "b.wav")
    prepared = open_prepared(prepare_dataset([src], tmp_path / "out").root)
    record = next(r for r in prepared.records if r.label == "x")
    assert record.frames == 16_000
    assert prepared.waveform(prepared.records.index(record)).shape == (16_000,)


def test_pickle_drops_open_maps(folder, tmp_path):
    prepared = open_prepared(prepare_dataset([folder], tmp_path / "out").root)
    first = prepared.waveform(0)
    copy = pickle.loads(pickle.dumps(prepared))
    assert len(pickle.dumps(prepared)) < 20_000
    np.testing.assert_array_equal(copy.waveform(0), first)


def test_bad_files_are_skipped_and_listed(folder, tmp_path):
    (folder / "alpha" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (folder / "alpha" / "empty.wav").write_bytes(b"")
    write_wav(folder / "beta" / "tiny.wav", seconds=0.02)
    result = prepare_dataset([folder], tmp_path / "out")
    problems = {Path(p).name: m for p, m in result.skipped}
    assert set(problems) == {"broken.wav", "empty.wav", "tiny.wav"}
    assert "empty" in problems["empty.wav"]
    assert "too short" in problems["tiny.wav"]
    assert result.summary["clips"] == 8 and result.summary["skipped"] == 3
    with (tmp_path / "out" / "skipped.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {Path(r["path"]).name for r in rows} == set(problems)
    assert open_prepared(tmp_path / "out").summary()["skipped"] == 3


def test_manifest_rows_with_missing_files_are_skipped(tmp_path):
    root = make_folder(tmp_path / "src")
    with (root / "manifest.csv").open("w") as handle:
        handle.write(
            "path,label\nalpha/alpha0.wav,alpha\nbeta/beta0.wav,beta\nbeta/gone.wav,beta\n"
        )
    result = prepare_dataset([root], tmp_path / "out")
    assert result.summary["clips"] == 2
    assert [(Path(p).name, m) for p, m in result.skipped] == [("gone.wav", "file not found")]


def test_incremental_rerun(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare_dataset([folder], out)
    decoded: list[str] = []
    real = prepare._decode_blocks

    def spy(path, notes):
        decoded.append(Path(path).name)
        return real(path, notes)

    monkeypatch.setattr(prepare, "_decode_blocks", spy)
    again = prepare_dataset([folder], out)
    assert decoded == [] and again.reused == 8 and again.decoded == 0

    changed = write_wav(folder / "alpha" / "alpha0.wav", seconds=0.5, seed=42)
    os.utime(changed, ns=(1, 1_000_000_000))
    write_wav(folder / "beta" / "new.wav", seed=7)
    (folder / "beta" / "beta3.wav").unlink()
    (folder / "alpha" / "alpha1.wav").write_bytes(b"not audio at all")
    result = prepare_dataset([folder], out)
    assert sorted(decoded) == ["alpha0.wav", "alpha1.wav", "new.wav"]
    assert result.decoded == 2 and result.reused == 5 and result.removed == 2
    assert [Path(p).name for p, _ in result.skipped] == ["alpha1.wav"]
    prepared = open_prepared(out)
    names = {Path(r.source_path).name: i for i, r in enumerate(prepared.records)}
    assert "beta3.wav" not in names and "alpha1.wav" not in names and "new.wav" in names
    np.testing.assert_allclose(
        prepared.waveform(names["alpha0.wav"]), load_audio(changed), atol=1 / 32768
    )
    # Old shards nobody refers to are gone.
    referenced = {r.shard for r in prepared.records}
    assert {p.name for p in (out / "audio").iterdir()} == referenced


def test_compaction_after_removals(tmp_path):
    src = make_folder(tmp_path / "src", per_class=6)
    out = tmp_path / "out"
    prepare_dataset([src], out, max_shard_bytes=30_000)  # ~3 clips per shard
    before = {p.name for p in (out / "audio").iterdir()}
    assert len(before) >= 3
    for path in sorted((src / "alpha").iterdir())[1:]:
        path.unlink()
    result = prepare_dataset([src], out, max_shard_bytes=30_000)
    assert result.decoded == 0 and result.reused == 7
    prepared = open_prepared(out)
    for i, record in enumerate(prepared.records):
        np.testing.assert_allclose(
            prepared.waveform(i), load_audio(record.source_path), atol=1 / 32768
        )
    live = sum(r.frames for r in prepared.records) * 2
    stored = sum(p.stat().st_size for p in (out / "audio").iterdir())
    assert stored < 2 * live


def test_crash_at_commit_keeps_previous_set(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare_dataset([folder], out)
    index_before = (out / "index.csv").read_text()
    shards_before = {p.name for p in (out / "audio").iterdir()}
    write_wav(folder / "gamma" / "g.wav")

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(cache, "write_index", crash)
    with pytest.raises(RuntimeError):
        prepare_dataset([folder], out)
    monkeypatch.undo()
    assert (out / "index.csv").read_text() == index_before
    assert {p.name for p in (out / "audio").iterdir()} == shards_before  # new shard removed
    prepared = open_prepared(out)
    assert len(prepared) == 8
    prepared.waveform(0)


def test_interrupt_while_decoding_keeps_previous_set(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare_dataset([folder], out)
    before = open_prepared(out).records
    for i in range(3):
        write_wav(folder / "gamma" / f"g{i}.wav", seed=i)
    calls = []
    real = prepare._decode_blocks

    def interrupted(path, notes):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, notes)

    monkeypatch.setattr(prepare, "_decode_blocks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset([folder], out)
    monkeypatch.undo()
    assert open_prepared(out).records == before
    assert not [p for p in (out / "audio").iterdir() if p.name.endswith(".tmp")]
    result = prepare_dataset([folder], out)
    assert result.decoded == 3 and result.reused == 8
    assert open_prepared(out).classes == ("alpha", "beta", "gamma")


def test_first_run_interrupted_leaves_no_set(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def boom(path, notes):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "_decode_blocks", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset([folder], out)
    monkeypatch.undo()
    with pytest.raises(DataSetError, match="not a prepared data set"):
        open_prepared(out)
    assert prepare_dataset([folder], out).decoded == 8  # and the folder is reusable


def test_mad_layout_keeps_official_test_and_groups_by_video(tmp_path):
    root = tmp_path / "MAD_dataset"
    header = ",path,label,youtube title,youtube url\n"
    train_rows, test_rows = [], []
    for label in range(7):
        for video in range(3):
            vid = label * 10 + video
            for n in range(3):
                train_rows.append(f"training/{vid}/{n}.wav,{label}")
        test_rows.append(f"test/{100 + label}/0.wav,{label}")
    for name, rows in (("training.csv", train_rows), ("test.csv", test_rows)):
        body = "".join(f"{i},{row},title,url\n" for i, row in enumerate(rows))
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(header + body)
        for i, row in enumerate(rows):
            write_wav(root / row.split(",")[0], seconds=0.15, seed=i)
    result = prepare_dataset([root], tmp_path / "out", seed=1)
    prepared = open_prepared(result.root)
    assert prepared.classes == MAD_CLASSES
    splits = [r.split for r in prepared.records]
    groups = [r.group for r in prepared.records]
    assert not find_leaks(groups, splits)
    test_ids = {r.clip_id for r in prepared.records if r.split == "test"}
    assert test_ids == {f"MAD_dataset/test/{100 + c}/0" for c in range(7)}
    for c in range(7):  # 3 videos per class: 2 train, 1 val
        counts = prepared.class_counts("val")
        assert counts[c] == 3
    assert result.splits["sources"]["MAD_dataset"]["targets"] == {"train": 0.85, "val": 0.15}


def test_merging_sources(tmp_path):
    one = make_folder(tmp_path / "one", classes=("b", "a"))
    two = make_folder(tmp_path / "two", classes=("c", "a"))
    result = prepare_dataset([one, two], tmp_path / "out")
    assert result.classes == ("a", "b", "c")
    prepared = open_prepared(result.root)
    assert prepared.class_counts() == [8, 4, 4]
    assert {r.source for r in prepared.records} == {"one", "two"}
    # The same file listed by two sources is kept once.
    again = prepare_dataset([one, one], tmp_path / "out2")
    assert again.summary["clips"] == 8 and len(again.skipped) == 8


def test_refuses_foreign_output_folder(folder, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(DataSetError, match="not empty"):
        prepare_dataset([folder], out)
    assert (out / "thesis.tex").read_text() == "precious"


def test_no_usable_audio(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.wav").write_bytes(b"junk")
    with pytest.raises(DataSetError, match="no usable audio"):
        prepare_dataset([src], tmp_path / "out")
    assert not (tmp_path / "out" / "index.csv").exists()


def test_open_prepared_errors(folder, tmp_path):
    with pytest.raises(DataSetError) as missing:
        open_prepared(tmp_path / "nope")
    assert "serenesense data prepare" in (missing.value.hint or "")
    with pytest.raises(DataSetError, match="not a prepared data set"):
        open_prepared(folder)
    out = prepare_dataset([folder], tmp_path / "out").root
    meta = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps(meta | {"version": 99}))
    with pytest.raises(DataSetError, match="version 99"):
        open_prepared(out)
    (out / "dataset.json").write_text(json.dumps(meta))
    for shard in (out / "audio").iterdir():
        shard.unlink()
    with pytest.raises(DataSetError, match="missing"):
        open_prepared(out)
    # A broken set is rebuilt on the next run.
    assert prepare_dataset([folder], out).decoded == 8
    assert len(open_prepared(out)) == 8


def test_shard_writer_rolls_back_a_failed_clip(tmp_path):
    writer = cache.ShardWriter(tmp_path)
    first = np.arange(10, dtype=np.int16)
    name, offset = writer.append(first)
    assert offset == 0

    def failing():
        yield np.ones(5, dtype=np.int16)
        raise RuntimeError("decode error half-way")

    with pytest.raises(RuntimeError):
        writer.write_clip(failing())
    name2, offset2, frames = writer.write_clip([np.full(3, 7, dtype=np.int16)])
    assert (name2, offset2, frames) == (name, 10, 3)
    writer.close()
    stored = np.fromfile(tmp_path / name, dtype="<i2")
    np.testing.assert_array_equal(stored, np.r_[first, [7, 7, 7]])


def test_long_file_is_streamed_in_blocks(tmp_path):
    src = tmp_path / "src"
    long = write_wav(src / "a" / "long.wav", seconds=31.0)  # longer than one 30 s block
    write_wav(src / "b" / "short.wav")
    prepared = open_prepared(prepare_dataset([src], tmp_path / "out").root)
    index = next(i for i, r in enumerate(prepared.records) if r.label == "a")
    np.testing.assert_allclose(prepared.waveform(index), load_audio(long), atol=1 / 32768)
    assert prepared.records[index].frames == 31 * 16_000


def test_class_without_usable_clips_is_kept_and_noted(tmp_path):
    src = make_folder(tmp_path / "src")
    (src / "gamma").mkdir()
    (src / "gamma" / "bad.wav").write_bytes(b"junk")
    result = prepare_dataset([src], tmp_path / "out")
    assert result.classes == ("alpha", "beta", "gamma")
    assert "class 'gamma' has no usable clips" in result.splits["notes"]
    assert open_prepared(result.root).class_counts() == [4, 4, 0]
