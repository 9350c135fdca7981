"""``serenesense data synth|prepare|info`` through the CLI."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.cli import app
from serenesense_cli.cli.data import SourceKind
from serenesense_cli.data.sources import SourceFormat

HAVE_SYNTH = importlib.util.find_spec("serenesense_cli.data.synth") is not None
needs_synth = pytest.mark.skipif(
    not HAVE_SYNTH, reason="serenesense_cli.data.synth (the synthetic generator) is missing"
)


def write_wav(path: Path, seconds: float = 0.3, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * 16_000))
    sf.write(path, noise, 16_000, subtype="PCM_16")


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "src"
    for c, label in enumerate(("dog", "cat", "owl")):
        for i in range(5):
            write_wav(root / label / f"{i}.wav", seed=10 * c + i)
    return root


def test_prepare_table_then_info(runner, source, tmp_path):
    out = tmp_path / "prepared"
    result = runner.invoke(app, ["data", "prepare", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == str(out)  # scripts can chain on the last line
    assert "cat" in result.stdout and "total" in result.stdout
    assert "15 decoded" in result.stderr

    info = runner.invoke(app, ["data", "info", str(out)])
    assert info.exit_code == 0, info.stderr
    assert "owl" in info.stdout and "15 (" in info.stdout


def test_prepare_json_and_rerun(runner, source, tmp_path):
    out = tmp_path / "prepared"
    args = ["data", "prepare", str(source), "--out", str(out), "--format", "json", "--seed", "3"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.stderr
    payload = json.loads(first.stdout)
    assert payload["classes"] == ["cat", "dog", "owl"]
    assert payload["decoded"] == 15 and payload["summary"]["clips"] == 15
    assert set(payload["summary"]["splits"]) == {"train", "val", "test"}
    second = json.loads(runner.invoke(app, args).stdout)
    assert second["decoded"] == 0 and second["reused"] == 15
    assert second["summary"]["splits"] == payload["summary"]["splits"]


def test_info_json_and_csv(runner, source, tmp_path):
    out = tmp_path / "prepared"
    assert runner.invoke(app, ["data", "prepare", str(source), "-o", str(out)]).exit_code == 0
    info = runner.invoke(app, ["data", "info", str(out), "--format", "json"])
    payload = json.loads(info.stdout)
    assert payload["clips"] == 15 and payload["classes"] == ["cat", "dog", "owl"]
    assert payload["sources"][0]["kind"] == "folder"
    table = runner.invoke(app, ["data", "info", str(out), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [r["class"] for r in rows] == ["cat", "dog", "owl", "total"]
    assert rows[-1]["total_clips"] == "15"


def test_skipped_files_are_reported_but_succeed(runner, source, tmp_path):
    (source / "dog" / "bad.wav").write_bytes(b"RIFF nonsense")
    out = tmp_path / "prepared"
    result = runner.invoke(app, ["data", "prepare", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "bad.wav" in result.stderr and "1 file(s) skipped" in result.stderr
    assert "skipped.csv" in result.stderr
    assert "bad.wav" not in result.stdout
    assert "skipped files: 1" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["data", "prepare", "{tmp}/missing", "--out", "{tmp}/o"],
        ["data", "prepare", "{src}", "--out", "{tmp}/o", "--val-fraction", "0.9"],
        ["data", "prepare", "{src}", "--out", "{tmp}/o", "--source-format", "mad"],
        ["data", "info", "{tmp}"],
        ["data", "info", "{tmp}/missing"],
    ],
    ids=["no-source", "bad-fraction", "wrong-format", "not-prepared", "no-folder"],
)
def test_bad_input_exits_2(runner, source, tmp_path, args):
    args = [a.format(tmp=tmp_path, src=source) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("Error: ")


def test_no_audio_exits_2_with_hint(runner, tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "x.wav").write_bytes(b"junk")
    result = runner.invoke(
        app, ["data", "prepare", str(tmp_path / "src"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "no usable audio" in result.stderr


def test_one_class_set_prepares_with_a_warning_and_train_refuses_it(runner, tmp_path):
    import shutil

    from tests.conftest import write_tone_dataset

    source = write_tone_dataset(tmp_path / "src", clips_per_class=6)
    shutil.rmtree(source / "high")
    shutil.rmtree(source / "noise")
    out = tmp_path / "one"
    result = runner.invoke(app, ["data", "prepare", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "only 1 class" in result.stderr
    train = runner.invoke(app, ["train", "cnn", "--data", str(out), "--epochs", "1"])
    assert train.exit_code == 2, train.output
    assert "a classifier needs at least 2" in train.stderr


def test_prepare_keeps_file_names_that_are_not_utf8(runner, tmp_path):
    """One such name used to abort the whole run ("unexpected UnicodeEncodeError")."""
    import csv
    import os

    from tests.conftest import write_tone_dataset

    source = write_tone_dataset(tmp_path / "src", clips_per_class=6)
    first = sorted((source / "low").iterdir())[0]
    odd = os.path.join(os.fsencode(source / "low"), b"\xff\xfe-clip.wav")
    os.rename(first, odd)
    out = tmp_path / "prepared"
    for _ in range(2):  # the second run reads index.csv back and reuses every clip
        result = runner.invoke(app, ["data", "prepare", str(source), "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert "0 decoded" in result.stderr and "0 skipped" in result.stderr
    with (out / "index.csv").open(encoding="utf-8", errors="surrogateescape") as handle:
        paths = [row["source_path"] for row in csv.DictReader(handle)]
    assert os.fsdecode(odd) in paths


def test_info_hint_names_prepare(runner, tmp_path):
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert "serenesense data prepare SOURCE --out DIR" in result.stderr


def test_source_kinds_match_library():
    assert [k.value for k in SourceKind] == [f.value for f in SourceFormat]


def test_help_lists_commands(runner):
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0
    for command in ("synth", "prepare", "info"):
        assert command in result.stdout


@needs_synth
def test_synth_prepare_info_chain(runner, tmp_path):
    mad = tmp_path / "synth"
    made = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(mad),
            "--clips-per-class",
            "6",
            "--videos-per-class",
            "3",
            "--test-videos-per-class",
            "1",
            "--min-seconds",
            "0.5",
            "--max-seconds",
            "1.0",
        ],
    )
    assert made.exit_code == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1] == str(mad)
    assert (mad / "training.csv").is_file() and (mad / "test.csv").is_file()

    out = tmp_path / "prepared"
    prepared = runner.invoke(app, ["data", "prepare", str(mad), "-o", str(out), "-f", "json"])
    assert prepared.exit_code == 0, prepared.stderr
    payload = json.loads(prepared.stdout)
    assert payload["summary"]["clips"] == 7 * 6
    assert payload["skipped"] == []
    assert "test" in payload["summary"]["splits"]

    info = json.loads(runner.invoke(app, ["data", "info", str(out), "-f", "json"]).stdout)
    assert info["classes"] == payload["classes"]


@needs_synth
def test_synth_json(runner, tmp_path):
    result = runner.invoke(
        app,
        [
            "data",
            "synth",
            "-o",
            str(tmp_path / "s"),
            "--clips-per-class",
            "2",
            "--videos-per-class",
            "2",
            "--test-videos-per-class",
            "1",
            "--max-seconds",
            "1",
            "--min-seconds",
            "0.5",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert sum(sum(c.values()) for c in payload["clips"].values()) == 2 * len(payload["classes"])
