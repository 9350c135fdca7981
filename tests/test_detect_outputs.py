"""detect's outputs beside BirdNET's: folders of result files, Audacity labels,
BirdNET CSV, window CSV columns, per-class threshold tables."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.cli import app
from serenesense_cli.data.scenes import synthesize_scene
from serenesense_cli.detect.decisions import Event
from serenesense_cli.detect.detector import DetectConfig
from serenesense_cli.detect.outdir import is_folder_output, plan_outputs
from serenesense_cli.detect.thresholds import merge_threshold_table, read_threshold_table
from serenesense_cli.detect.writers import make_writer
from serenesense_cli.errors import BadInputError
from tests.reference_models import write_loudness_onnx

CLASSES = ("sound", "quiet")


@pytest.fixture(scope="module")
def scene():
    return synthesize_scene(seconds=20, seed=2, classes=("vehicle", "helicopter"), wind=0.0)


@pytest.fixture(scope="module")
def model(scene, tmp_path_factory) -> Path:
    """A two-class loudness "model" (ONNX, no torch): loud windows are ``sound``."""
    folder = tmp_path_factory.mktemp("model")
    return write_loudness_onnx(
        folder / "loudness.onnx", floor_dbfs=scene.background_dbfs, classes=CLASSES
    )


@pytest.fixture
def recordings(scene, tmp_path) -> Path:
    """field/a.wav, field/night/b.wav (the scene) and field/night/c.flac (half of it)."""
    root = tmp_path / "field"
    (root / "night").mkdir(parents=True)
    sf.write(root / "a.wav", scene.audio, 16_000, subtype="PCM_16")
    sf.write(root / "night" / "b.wav", scene.audio, 16_000, subtype="PCM_16")
    sf.write(root / "night" / "c.flac", scene.audio[: 10 * 16_000], 16_000)
    return root


def _detect(runner, *args):
    return runner.invoke(app, ["detect", *map(str, args)])


def _event(source="rec.wav", name="sound", start=1.0, end=4.5, peak=0.91234, mean=0.8):
    return Event(1, name, start, end, peak, mean, 4, "closed", source)


# ----------------------------------------------------------------- library


def test_audacity_and_birdnet_rows():
    stream = io.StringIO()
    writer = make_writer("audacity", stream, classes=CLASSES, sample_rate=16_000)
    writer.event(_event())
    assert stream.getvalue() == "1.000\t4.500\tsound\t0.9123\n"
    stream = io.StringIO()
    writer = make_writer("birdnet-csv", stream, classes=CLASSES, sample_rate=16_000)
    writer.event(_event())
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert rows == [
        ["Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File"],
        ["1.000", "4.500", "sound", "sound", "0.9123", "rec.wav"],
    ]


def test_raven_has_birdnets_columns():
    stream = io.StringIO()
    writer = make_writer("raven", stream, classes=CLASSES, sample_rate=16_000)
    writer.event(_event())
    header, row = (line.split("\t") for line in stream.getvalue().splitlines())
    assert header[:12] == [
        "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
        "High Freq (Hz)", "Common Name", "Species Code", "Confidence", "Begin Path",
        "File Offset (s)",
    ]  # fmt: skip
    record = dict(zip(header, row, strict=True))
    assert record["Common Name"] == record["Species"] == "sound"
    assert record["Begin Path"] == "rec.wav" and record["Confidence"] == "0.9123"


def test_folder_layout_mirrors_inputs_and_renames_collisions(tmp_path):
    root = tmp_path / "in"
    files = [root / "a.wav", root / "a.flac", root / "x" / "b.wav", tmp_path / "combined.wav"]
    layout = plan_outputs(files, [root, tmp_path / "combined.wav"], tmp_path / "out", "csv")
    out = tmp_path / "out"
    assert layout.result(str(files[0])) == out / "a.wav.detections.csv"
    assert layout.result(str(files[1])) == out / "a.flac.detections.csv"
    assert layout.result(str(files[2])) == out / "x" / "b.detections.csv"
    assert layout.result(str(files[3])) == out / "combined.wav.detections.csv"
    assert layout.combined == out / "combined.detections.csv"
    audacity = plan_outputs(files[2:3], [root], out, "audacity", plot=True)
    assert audacity.result(str(files[2])) == out / "x" / "b.labels.txt"
    assert audacity.picture(str(files[2])) == out / "x" / "b.png"
    assert audacity.combined == out / "combined.detections.csv"  # labels hold one recording
    with pytest.raises(BadInputError, match="would write the same result file"):
        plan_outputs([root / "a.wav", tmp_path / "b" / "a.wav"], [root, tmp_path / "b"], out, "csv")
    assert is_folder_output(tmp_path) and is_folder_output(tmp_path / "new")
    assert not is_folder_output(tmp_path / "new.csv")


def test_folder_output_may_not_be_an_input(tmp_path):
    victim = tmp_path / "a.selections.txt"  # given as an input "recording"
    with pytest.raises(BadInputError, match="would overwrite an input"):
        plan_outputs([tmp_path / "a.wav", victim], [tmp_path], tmp_path, "raven")


def test_threshold_table(tmp_path):
    table = tmp_path / "thresholds.csv"
    table.write_text("class,threshold,precision,recall,f1\nsound,0.7,0.9,0.8,0.85\n")
    assert read_threshold_table(table) == {"sound": 0.7}
    assert merge_threshold_table([0.4, 0.4], {"sound": 0.7}, CLASSES, source="t") == {
        "sound": 0.7,
        "quiet": 0.4,
    }
    rules = DetectConfig(
        threshold="0.6", threshold_table={"sound": 0.7}, threshold_table_source=str(table)
    ).rules_for(CLASSES)
    assert rules.thresholds == (0.7, 0.6)
    assert rules.close_thresholds == pytest.approx((0.525, 0.45))
    with pytest.raises(BadInputError, match=r"--thresholds t: the model has no class 'tank'"):
        merge_threshold_table([0.5, 0.5], {"tank": 0.5}, CLASSES, source="t")
    for text, message in [
        ("name,value\nsound,0.5\n", "no column 'class'"),
        ("class,threshold\nsound,high\n", "line 2: threshold 'high' is not a number"),
        ("class,threshold\nsound,1.5\n", "not in (0, 1]"),
        ("class,threshold\nsound,0.5\nsound,0.6\n", "appears twice"),
        ("class,threshold\n", "no rows"),
    ]:
        table.write_text(text)
        with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_threshold_table(table)
    with pytest.raises(BadInputError, match="file not found"):
        read_threshold_table(tmp_path / "missing.csv")


# ----------------------------------------------------------------- CLI


def test_cli_out_folder_writes_a_file_per_recording_and_a_combined_table(
    runner, model, recordings, tmp_path
):
    out = tmp_path / "results"
    result = _detect(runner, recordings, "--model", model, "--out", f"{out}/", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "a.detections.csv",
        "combined.detections.csv",
        "night/b.detections.csv",
        "night/c.detections.csv",
    ]
    per_file = list(csv.DictReader((out / "a.detections.csv").open()))
    assert per_file and {r["file"] for r in per_file} == {str(recordings / "a.wav")}
    combined = list(csv.DictReader((out / "combined.detections.csv").open()))
    assert len(combined) == sum(
        len(list(csv.DictReader(p.open()))) for p in out.rglob("*.detections.csv")
    ) - len(combined)
    assert not list(out.rglob(".*.tmp"))  # every file renamed into place
    assert "4 file(s) written" in result.stderr


def test_cli_out_folder_defaults_to_raven_and_skips_bad_files(runner, model, recordings, tmp_path):
    (recordings / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    out = tmp_path / "tables"  # no extension: a folder
    result = _detect(runner, recordings, "--model", model, "--out", out)
    assert result.exit_code == 1, result.output  # one file failed, the others were written
    assert "broken.wav" in result.stderr
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        "a.selections.txt",
        "combined.selections.txt",
        "night/b.selections.txt",
        "night/c.selections.txt",
    ]
    header = (out / "a.selections.txt").read_text().splitlines()[0].split("\t")
    assert header[3] == "Begin Time (s)" and "Common Name" in header


def test_cli_out_folder_with_windows_json_and_csv(runner, model, recordings, tmp_path):
    out = tmp_path / "w"
    result = _detect(
        runner, recordings / "a.wav", "--model", model, "--out", out, "--format", "csv",
        "--windows",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    windows = list(csv.DictReader((out / "a.windows.csv").open()))
    assert len(windows) == 18 and {"p_sound", "p_quiet"} <= set(windows[0])
    assert {w["silent"] for w in windows} <= {"0", "1"}
    assert (out / "combined.windows.csv").is_file() and (out / "a.detections.csv").is_file()
    result = _detect(
        runner, recordings, "--model", model, "--out", out, "--format", "json", "--windows"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "night" / "b.detections.json").read_text())
    (only,) = doc["files"]
    assert only["windows"] and only["events"] and doc["summary"]["files"] == 1
    combined = json.loads((out / "combined.detections.json").read_text())
    assert len(combined["files"]) == 3


def test_cli_out_folder_may_be_the_input_folder(runner, model, recordings):
    result = _detect(runner, recordings, "--model", model, "--out", recordings, "--format",
                     "audacity")  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = (recordings / "a.labels.txt").read_text().splitlines()
    start, end, name, score = labels[0].split("\t")
    assert name in CLASSES and float(start) < float(end) and 0 < float(score) <= 1
    assert (recordings / "combined.detections.csv").is_file()


def test_cli_audacity_and_birdnet_csv_to_stdout(runner, model, recordings):
    result = _detect(runner, recordings / "a.wav", "--model", model, "--format", "audacity")
    assert result.exit_code == 0, result.output
    assert all(len(line.split("\t")) == 4 for line in result.stdout.splitlines())
    result = _detect(runner, recordings, "--model", model, "--format", "audacity")
    assert result.exit_code == 2
    assert "holds one recording, and 3 were found" in result.stderr and "--out DIR" in result.stderr
    result = _detect(runner, recordings, "--model", model, "--format", "birdnet-csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and set(rows[0]) == {
        "Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File",
    }  # fmt: skip
    assert {r["File"] for r in rows} == {str(p) for p in sorted(recordings.rglob("*.*"))}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "audacity", "--windows"], "not available with --format audacity"),
        (["--format", "birdnet-csv", "--windows"], "--windows is not available with --format"),
        (["--plot"], "--plot needs --out DIR"),
        (["--plot", "--out", "x.csv"], "--plot needs --out DIR"),
    ],
)
def test_cli_output_usage_errors(runner, model, recordings, args, message):
    result = _detect(runner, recordings / "a.wav", "--model", model, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_cli_thresholds_file(runner, model, recordings, tmp_path):
    def events(*extra):
        result = _detect(runner, recordings / "a.wav", "--model", model, "--format", "json", *extra)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        return doc["settings"]["thresholds"], [e["class"] for e in doc["files"][0]["events"]]

    table = tmp_path / "thresholds.csv"
    table.write_text("class,threshold,precision,recall,f1\nquiet,0.99,1,0.5,0.67\n")
    thresholds, found = events("--threshold", "0.4", "--thresholds", table)
    assert thresholds == {"sound": 0.4, "quiet": 0.99}
    assert "sound" in found
    table.write_text("class,threshold\ntank,0.5\n")
    result = _detect(runner, recordings / "a.wav", "--model", model, "--thresholds", table)
    assert result.exit_code == 2
    assert f"--thresholds {table}: the model has no class 'tank'" in result.stderr
    assert "this is a bug" not in result.stderr
    missing = tmp_path / "none.csv"
    result = _detect(runner, recordings / "a.wav", "--model", model, "--thresholds", missing)
    assert result.exit_code == 2 and f"--thresholds {missing}: file not found" in result.stderr


def test_silence_between_events_is_not_reported_in_audacity(model, tmp_path):
    """A quiet recording gives an empty label file (Audacity imports it as an empty track)."""
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16_000 * 4, dtype=np.float32), 16_000)
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app, ["detect", str(quiet), "--model", str(model), "--out", str(tmp_path / "o"),
              "--format", "audacity"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "quiet.labels.txt").read_text() == ""


def test_folder_writer_keeps_finished_files_and_removes_the_rest_when_interrupted(tmp_path):
    from serenesense_cli.detect.outdir import folder_writer

    files = [tmp_path / "in" / "a.wav", tmp_path / "in" / "b.wav"]
    layout = plan_outputs(files, [tmp_path / "in"], tmp_path / "out", "csv")
    with (
        pytest.raises(KeyboardInterrupt),
        folder_writer(layout, classes=CLASSES, sample_rate=16_000) as writer,
    ):
        writer.start_source(str(files[0]), duration=5.0)
        writer.event(_event(source=str(files[0])))
        writer.finish_source(str(files[0]), seconds=5.0)
        writer.start_source(str(files[1]), duration=5.0)
        raise KeyboardInterrupt
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == ["a.detections.csv"]  # complete; b's and the combined table's temp files gone
    rows = list(csv.DictReader((tmp_path / "out" / "a.detections.csv").open()))
    assert [r["class"] for r in rows] == ["sound"]
