"""The detect session: counts, the --until outcome, summaries and exit status as data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.data.scenes import synthesize_scene, write_scene
from serenesense_cli.detect.decisions import Event
from serenesense_cli.detect.detector import DetectConfig, Detector
from serenesense_cli.detect.files import FileFinished
from serenesense_cli.detect.session import EXIT_NOT_SEEN, DetectSession
from serenesense_cli.errors import BadInputError
from tests.reference_models import EnergyBackend

CLASSES = ("vehicle", "helicopter")


@pytest.fixture(scope="module")
def scene():
    return synthesize_scene(seconds=60, seed=2, classes=CLASSES, wind=0.0)


@pytest.fixture(scope="module")
def scene_wav(scene, tmp_path_factory) -> Path:
    path, _ = write_scene(scene, tmp_path_factory.mktemp("scene") / "scene.wav")
    return path


def _backend(scene) -> EnergyBackend:
    return EnergyBackend(floor_dbfs=scene.background_dbfs, classes=CLASSES)


def _drive(session: DetectSession, paths) -> list[Event]:
    """What the CLI does with the records, minus the printing."""
    reported = []
    records = session.file_records(session.find_files(paths))
    for record in records:
        if isinstance(record, Event) and session.take_event(record):
            reported.append(record)
            if session.seen:
                break
        elif isinstance(record, FileFinished):
            session.take_file(record)
    records.close()
    return reported


def test_counts_every_closed_event_once(scene, scene_wav):
    session = DetectSession(_backend(scene))
    reported = _drive(session, [scene_wav])
    assert [e.class_name for e in reported] == [e.class_name for e in scene.events]
    assert all(e.state == "closed" for e in reported)
    summary = session.summary()
    assert summary["files"] == 1 and summary["failed"] == 0
    assert summary["events"] == len(scene.events)
    assert sum(summary["events_by_class"].values()) == len(scene.events)
    assert summary["audio_seconds"] == pytest.approx(60.0)
    assert "until" not in summary
    assert session.exit_code() == 0


def test_until_stops_at_the_first_opening_of_its_class(scene, scene_wav):
    first = next(e for e in scene.events if e.class_name == "helicopter")
    session = DetectSession(_backend(scene), until="helicopter")
    reported = _drive(session, [scene_wav])
    last = reported[-1]
    assert last.class_name == "helicopter" and last.state == "open"
    assert abs(last.start - first.start) <= 1.0
    assert session.seen and session.exit_code() == 0
    assert session.summary()["until"] == {"class": "helicopter", "seen": True}
    assert session.summary()["files"] == 1  # stopped inside the file


def test_until_never_seen_and_failed_files(scene, tmp_path):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16_000 * 4, dtype=np.float32), 16_000)
    session = DetectSession(_backend(scene), until="helicopter")
    _drive(session, [quiet])
    assert not session.seen and session.exit_code() == EXIT_NOT_SEEN
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEnope")
    for until, code in ((None, 1), ("helicopter", 1)):
        session = DetectSession(_backend(scene), until=until)
        _drive(session, [broken, quiet])
        assert session.summary()["failed"] == 1 and session.summary()["files"] == 2
        assert session.exit_code() == code


def test_settings_are_checked_once_against_the_model(scene, tmp_path):
    backend = _backend(scene)
    with pytest.raises(BadInputError, match="no class 'fighter'"):
        DetectSession(backend, until="fighter")
    with pytest.raises(BadInputError, match="no audio files found"):
        DetectSession(backend).find_files([tmp_path])


def test_header_settings_are_what_the_detector_uses(scene):
    backend = _backend(scene)
    config = DetectConfig(hop_seconds=1 / 3, smooth=2)
    session = DetectSession(backend, config, source="mic")
    header = session.header()
    assert header["source"] == "mic" and header["classes"] == list(CLASSES)
    assert header["settings"] == Detector(backend, config).settings()
    assert header["settings"]["hop_seconds"] == pytest.approx(5333 / 16_000)
    assert header["settings"]["smooth"] == 2
