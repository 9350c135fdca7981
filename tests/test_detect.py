"""Detection in files: known event times, bad files, constant memory, the CLI."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.cli import app
from serenesense_cli.data.scenes import synthesize_scene, write_scene
from serenesense_cli.detect.decisions import Event, WindowDecision
from serenesense_cli.detect.detector import DetectConfig
from serenesense_cli.detect.files import FileFinished, FileStarted, detect_files, find_audio_files
from tests.reference_models import EnergyBackend

SCENE_CLASSES = ("vehicle", "helicopter")


@pytest.fixture(scope="module")
def scene():
    """60 s of background with vehicle and helicopter events at known times."""
    return synthesize_scene(seconds=60, seed=2, classes=SCENE_CLASSES, wind=0.0)


@pytest.fixture(scope="module")
def scene_wav(scene, tmp_path_factory) -> Path:
    path, _ = write_scene(scene, tmp_path_factory.mktemp("scene") / "scene.wav")
    return path


@pytest.fixture(scope="module")
def clip_wav(scene, tmp_path_factory) -> Path:
    """The first 12 s of the scene: enough for the CLI tests, quick to score."""
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, scene.audio[: 12 * 16_000], 16_000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained CNN run folder: its scores are about 1/3 for each class."""
    import torch

    from serenesense_cli.models import create_model
    from serenesense_cli.models.artifact import save_model

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    model = create_model("cnn", num_classes=3)
    save_model(run / "weights" / "best.safetensors", model, ("vehicle", "helicopter", "noise"))
    return run


def _match_truth(events, truth, hop):
    assert [e.class_name for e in events] == [t.class_name for t in truth]
    for event, true in zip(events, truth, strict=True):
        assert abs(event.start - true.start) <= hop, (event, true)
        assert abs(event.end - true.end) <= hop, (event, true)


def _closed(records):
    return [r for r in records if isinstance(r, Event) and r.state == "closed"]


# ----------------------------------------------------------------- library


def test_events_in_a_synthesised_recording_match_the_truth(scene, scene_wav):
    backend = EnergyBackend(floor_dbfs=scene.background_dbfs, classes=SCENE_CLASSES)
    records = list(detect_files([scene_wav], backend=backend))
    assert isinstance(records[0], FileStarted) and records[0].duration == pytest.approx(60.0)
    finished = records[-1]
    assert isinstance(finished, FileFinished) and finished.ok
    assert finished.seconds == pytest.approx(60.0) and finished.windows == 58
    events = _closed(records)
    assert len(scene.events) == 5
    _match_truth(events, scene.events, hop=1.0)
    assert all(e.source == str(scene_wav) and 0.5 <= e.mean <= e.peak <= 1.0 for e in events)


def test_finer_hop_gives_finer_times(scene, scene_wav):
    backend = EnergyBackend(floor_dbfs=scene.background_dbfs, classes=SCENE_CLASSES)
    records = detect_files([scene_wav], backend=backend, config=DetectConfig(hop_seconds=0.5))
    _match_truth(_closed(records), scene.events, hop=0.5)


def test_block_size_does_not_change_the_result(scene, scene_wav):
    backend = EnergyBackend(floor_dbfs=scene.background_dbfs, classes=SCENE_CLASSES)

    def run(block_seconds):
        records = detect_files([scene_wav], backend=backend, block_seconds=block_seconds)
        return [(e.class_name, e.start, e.end, e.peak) for e in _closed(records)]

    assert run(0.37) == run(10.0) == run(120.0)


@dataclass
class CountingBackend:
    """EnergyBackend that records the batch of every call."""

    inner: EnergyBackend
    batches: list[int] = field(default_factory=list)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        self.batches.append(len(waves))
        return self.inner.predict_proba(waves)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batch_size_does_not_change_the_result(scene, scene_wav, batch_size):
    def run(size):
        backend = CountingBackend(
            EnergyBackend(floor_dbfs=scene.background_dbfs, classes=SCENE_CLASSES)
        )
        records = list(
            detect_files([scene_wav], backend=backend, config=DetectConfig(batch_size=size))
        )
        scores = [tuple(r.scores) for r in records if isinstance(r, WindowDecision)]
        events = [(e.class_name, e.start, e.end, e.peak) for e in _closed(records)]
        return scores, events, backend.batches

    scores, events, batches = run(batch_size)
    ref_scores, ref_events, _ = run(32)
    assert events == ref_events and scores == ref_scores
    assert max(batches) <= batch_size and sum(batches) == len(scores)
    if batch_size == 64:  # blocks grow to hold a full batch: the 60 s scene in one call
        assert batches == [len(scores)]


@dataclass
class ConstantBackend:
    """Scores every window the same: cheap, for plumbing tests."""

    probs: tuple[float, ...] = (0.9, 0.1)
    classes: tuple[str, ...] = ("tone", "other")
    sample_rate: int = 16_000
    clip_samples: int = 48_000
    path: Path = Path("constant")
    kind: str = "fake"
    metadata: dict = field(default_factory=dict)
    calls: int = 0

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.tile(np.asarray(self.probs, dtype=np.float32), (len(waves), 1))


def test_bad_files_are_reported_and_skipped(tmp_path, scene_wav):
    good = tmp_path / "good.wav"
    sf.write(good, np.full(32_000, 0.1, dtype=np.float32), 16_000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    records = list(
        detect_files([broken, tmp_path / "missing.wav", good], backend=ConstantBackend())
    )
    finished = [r for r in records if isinstance(r, FileFinished)]
    assert [f.path.name for f in finished] == ["broken.wav", "missing.wav", "good.wav"]
    assert [f.ok for f in finished] == [False, False, True]
    assert "not a readable audio file" in finished[0].error
    assert "file not found" in finished[1].error
    (event,) = _closed(records)
    assert event.source == str(good) and event.end == pytest.approx(2.0)


def test_folders_are_searched_recursively_by_extension(tmp_path):
    for name in ("b/x.wav", "a/y.FLAC", "a/deep/z.ogg", "a/notes.txt", ".hidden/h.wav", "a/.h.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = find_audio_files([tmp_path, tmp_path / "given.txt"])
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["a/deep/z.ogg", "a/y.FLAC", "b/x.wav", "given.txt"]


def _peak_memory(path: Path) -> tuple[int, int]:
    """(windows, peak bytes traced) for detecting events in ``path``."""
    tracemalloc.start()
    try:
        count = 0
        for record in detect_files([path], backend=ConstantBackend()):
            count += isinstance(record, WindowDecision)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


def test_long_recordings_stream_in_constant_memory(tmp_path):
    peaks = {}
    for minutes in (1, 10):
        path = tmp_path / f"{minutes}min.wav"
        with sf.SoundFile(path, "w", 16_000, 1, subtype="PCM_16") as handle:
            for _ in range(minutes):
                handle.write(np.full(16_000 * 60, 0.05, dtype=np.float32))
        windows, peaks[minutes] = _peak_memory(path)
        assert windows == 60 * minutes - 2
    whole = 16_000 * 60 * 10 * 4  # the 10-minute file as float32: 38 MB
    assert peaks[10] < whole / 4, f"peak {peaks[10] / 1e6:.1f} MB"
    assert peaks[10] < 1.25 * peaks[1], peaks  # ten times the audio, the same memory


# ----------------------------------------------------------------- CLI


def _detect(runner, *args):
    return runner.invoke(app, ["detect", *map(str, args)])


def test_cli_table_output(runner, tiny_model, clip_wav):
    result = _detect(runner, clip_wav, "--model", tiny_model, "--threshold", "0.3")
    assert result.exit_code == 0, result.output
    assert "clip.wav (12.0 s): 3 event(s)" in result.stdout
    assert "helicopter" in result.stdout and "█" in result.stdout  # table and timeline
    assert "1 file(s), 0 failed" in result.stderr


def test_cli_jsonl_streams_one_event_per_line(runner, tiny_model, clip_wav):
    result = _detect(
        runner, clip_wav, "--model", tiny_model, "--threshold", "0.3", "--format", "jsonl"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["class"] for line in lines] == ["vehicle", "helicopter", "noise"]
    first = lines[0]
    assert first["type"] == "event" and first["state"] == "closed"
    assert first["file"] == str(clip_wav) and first["start"] == 0.0 and first["end"] == 12.0
    assert set(first) >= {"id", "peak", "mean", "duration", "windows"}


def test_cli_json_document_with_windows(runner, tiny_model, clip_wav, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = _detect(
        runner, clip_wav, bad, "--model", tiny_model, "--format", "json", "--windows", "--hop", "2"
    )
    assert result.exit_code == 1, result.output  # one file failed, the other was processed
    doc = json.loads(result.stdout)
    assert doc["classes"] == ["vehicle", "helicopter", "noise"]
    assert doc["settings"]["hop_seconds"] == 2.0 and doc["settings"]["window_seconds"] == 3.0
    good, failed = doc["files"]
    assert good["status"] == "ok" and good["events"] == []  # untrained: nothing reaches 0.5
    assert len(good["windows"]) == 6 and good["windows"][0]["label"] == "unknown"
    assert set(good["windows"][0]["scores"]) == {"vehicle", "helicopter", "noise"}
    assert failed["status"] == "failed" and "bad.wav" in failed["error"]
    assert doc["summary"]["files"] == 2 and doc["summary"]["failed"] == 1
    assert "bad.wav" in result.stderr


def test_cli_batch_size_gives_the_same_windows(runner, tiny_model, clip_wav):
    def windows(*extra):
        result = _detect(
            runner, clip_wav, "--model", tiny_model, "--format", "json", "--windows", *extra
        )
        assert result.exit_code == 0, result.output
        (only,) = json.loads(result.stdout)["files"]
        return [w["scores"] for w in only["windows"]]

    one = windows("--batch-size", "1")
    assert one == windows() == windows("-b", "7")
    assert len(one) == 10


def test_cli_csv_and_window_csv(runner, tiny_model, clip_wav):
    result = _detect(
        runner, clip_wav, "--model", tiny_model, "--threshold", "0.3", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["class"] for r in rows] == ["vehicle", "helicopter", "noise"]
    assert rows[0]["file"] == str(clip_wav)
    result = _detect(runner, clip_wav, "--model", tiny_model, "--format", "csv", "--windows")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 10 and {"label", "level_dbfs", "p_vehicle", "p_noise"} <= set(rows[0])
    assert rows[0]["silent"] in ("0", "1") and "vehicle" not in rows[0]


def test_cli_raven_table_to_out_file(runner, tiny_model, clip_wav, tmp_path):
    out = tmp_path / "sel" / "clip.selections.txt"
    result = _detect(
        runner, clip_wav, clip_wav, "--model", tiny_model, "--threshold", "0.3", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    lines = out.read_text().splitlines()
    header = lines[0].split("\t")
    assert header[:7] == [
        "Selection",
        "View",
        "Channel",
        "Begin Time (s)",
        "End Time (s)",
        "Low Freq (Hz)",
        "High Freq (Hz)",
    ]
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert [r["Selection"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[0]["View"] == "Spectrogram 1" and rows[0]["Species"] == "vehicle"
    # the second file's selections run on after the first (Raven file list)
    assert float(rows[3]["Begin Time (s)"]) == pytest.approx(12.0)
    assert float(rows[3]["File Offset (s)"]) == pytest.approx(0.0)


def test_cli_json_is_strict_even_with_an_infinite_setting(runner, tiny_model, clip_wav):
    """``--silence-dbfs=-inf`` (gate off) must not write ``-Infinity``: not JSON."""

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    for fmt in ("json", "jsonl"):
        result = _detect(
            runner,
            clip_wav,
            "--model",
            tiny_model,
            "--threshold",
            "0.3",
            "--silence-dbfs=-inf",
            "--format",
            fmt,
            "--windows",
        )
        assert result.exit_code == 0, result.output
        assert "Infinity" not in result.stdout
        docs = [result.stdout] if fmt == "json" else result.stdout.splitlines()
        parsed = [json.loads(d, parse_constant=refuse) for d in docs if d.strip()]
        assert parsed


@pytest.mark.parametrize("hop", ["0.002", "0.00001", "0", "nan", "inf"])
def test_cli_hop_has_a_floor_checked_before_the_model_loads(runner, clip_wav, tmp_path, hop):
    result = _detect(runner, clip_wav, "--model", tmp_path / "missing.onnx", "--hop", hop)
    assert result.exit_code == 2, result.output
    assert "--hop must be within [0.05, " in result.stderr  # not "model not found"


def test_cli_out_never_overwrites_an_input(runner, tiny_model, clip_wav, tmp_path):
    """``--out`` naming a recording, an audio file of a scanned folder, the model
    or a symlink to one of them is refused before anything is written."""
    import shutil

    folder = tmp_path / "recordings"
    folder.mkdir()
    inner = folder / "a.wav"
    shutil.copy(clip_wav, inner)
    model = tmp_path / "run"
    shutil.copytree(tiny_model, model)
    link = tmp_path / "link.wav"
    link.symlink_to(inner)
    weights = model / "weights" / "best.safetensors"
    before = inner.read_bytes(), weights.read_bytes()
    cases = [
        (inner, inner),
        (folder, inner),  # a file the folder scan would read
        (inner, link),  # through a symlink
        (inner, weights),  # a file of the model's run folder
        (inner, model / "weights" / "best.json"),
    ]
    for recording, out in cases:
        result = _detect(runner, recording, "--model", model, "--format", "json", "--out", out)
        assert result.exit_code == 2, (recording, out, result.output)
        assert "would overwrite an input" in result.stderr and str(out) in result.stderr
    assert (inner.read_bytes(), weights.read_bytes()) == before
    fine = _detect(runner, folder, "--model", model, "--format", "json", "--out", folder / "r.json")
    assert fine.exit_code == 0, fine.output


@pytest.mark.parametrize(
    ("threshold", "code"),
    [("0.3", 0), ("0.9", 3)],
)
def test_cli_until_exit_codes(runner, tiny_model, clip_wav, threshold, code):
    result = _detect(
        runner, clip_wav, "--model", tiny_model, "--threshold", threshold,
        "--until", "noise", "--format", "jsonl",
    )  # fmt: skip
    assert result.exit_code == code, result.output
    if code == 0:  # stops at the first event of the class: the open event is the output
        (line,) = result.stdout.splitlines()
        assert json.loads(line)["class"] == "noise"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "tank=0.5"], "no class 'tank'"),
        (["--until", "tank"], "no class 'tank'"),
        (["--format", "raven", "--windows"], "--windows is not available"),
        (["--close-threshold", "0.9"], "above its threshold"),
        (["--duration", "3"], "--duration is for --mic"),
        (["--out", "x.xyz"], "cannot tell the format"),
    ],
)
def test_cli_bad_usage_exits_2(runner, tiny_model, clip_wav, args, message):
    result = _detect(runner, clip_wav, "--model", tiny_model, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_cli_needs_a_model_and_an_input(runner, tiny_model, tmp_path):
    assert _detect(runner, tmp_path).exit_code == 2
    result = _detect(runner, "--model", tiny_model)
    assert result.exit_code == 2 and "nothing to listen to" in result.stderr
    result = _detect(runner, tmp_path, "--model", tiny_model)
    assert result.exit_code == 2 and "no audio files found" in result.stderr
    result = _detect(runner, tmp_path, "--model", tmp_path / "nope.onnx")
    assert result.exit_code == 2 and "model not found" in result.stderr


def test_default_batch_holds_at_most_80_seconds_of_audio():
    """16 windows a call, fewer for long windows (memory), a given size as given."""
    from serenesense_cli.detect.detector import batch_size_for

    assert DetectConfig().batch_size is None  # the CLI's default too: chosen per model
    assert batch_size_for(None, 3.0) == 16
    assert batch_size_for(None, 10.0) == 8
    assert batch_size_for(None, 120.0) == 1
    assert batch_size_for(64, 10.0) == 64
