"""Synthesised scenes: known event times, levels, determinism, files on disk."""

from __future__ import annotations

import csv
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.data.mad import MAD_CLASSES
from serenesense_cli.data.scenes import SceneEvent, synthesize_scene, write_scene
from serenesense_cli.errors import BadInputError


def _db(x: np.ndarray) -> float:
    return 20 * math.log10(math.sqrt(float(np.mean(np.square(x.astype(np.float64))))))


def test_scene_places_non_overlapping_events_of_every_class():
    scene = synthesize_scene(seconds=90, seed=3)
    assert scene.audio.dtype == np.float32 and scene.audio.shape == (90 * 16_000,)
    assert scene.seconds == 90.0 and np.abs(scene.audio).max() <= 0.98 + 1e-6
    events = scene.events
    assert len(events) >= 7 and {e.class_name for e in events} == set(MAD_CLASSES)
    for a, b in itertools.pairwise(events):
        assert a.end < b.start
    assert all(4.0 <= e.duration <= 8.0 for e in events)


def test_event_levels_follow_the_signal_to_background_ratio():
    scene = synthesize_scene(
        seconds=40, seed=1, classes=("vehicle", "helicopter"), snr_db=10.0, background_dbfs=-30.0
    )
    sr = scene.sample_rate
    quiet = np.ones(scene.audio.shape[0], dtype=bool)
    for event in scene.events:
        quiet[round(event.start * sr) : round(event.end * sr)] = False
    background = _db(scene.audio[quiet])
    assert background == pytest.approx(scene.background_dbfs, abs=1.0)
    for event in scene.events:
        inside = _db(scene.audio[round(event.start * sr) : round(event.end * sr)])
        # event + background powers add: 10 dB above gives 10.4 dB in all
        assert inside - background == pytest.approx(10.4, abs=1.0)


def test_given_events_are_placed_exactly():
    wanted = [("helicopter", 2.0, 5.5), ("shooting", 7.25, 9.0)]
    scene = synthesize_scene(seconds=12, events=wanted, seed=0)
    assert scene.events == (SceneEvent("helicopter", 2.0, 5.5), SceneEvent("shooting", 7.25, 9.0))
    sr = scene.sample_rate
    before = scene.audio[: 2 * sr]
    during = scene.audio[2 * sr : round(5.5 * sr)]
    assert _db(during) > _db(before) + 6


def test_same_arguments_give_the_same_samples():
    a = synthesize_scene(seconds=20, seed=5)
    b = synthesize_scene(seconds=20, seed=5)
    c = synthesize_scene(seconds=20, seed=6)
    assert np.array_equal(a.audio, b.audio) and a.events == b.events
    assert not np.array_equal(a.audio, c.audio)


@pytest.mark.parametrize(
    "events",
    [
        [("vehicle", 5.0, 12.0)],  # past the end
        [("vehicle", 1.0, 4.0), ("helicopter", 3.0, 6.0)],  # overlap
        [("tank", 1.0, 2.0)],  # no such class
    ],
)
def test_bad_event_lists_are_refused(events):
    with pytest.raises(BadInputError):
        synthesize_scene(seconds=10, events=events)


def test_write_scene_writes_audio_and_truth(tmp_path):
    scene = synthesize_scene(seconds=15, seed=2, classes=("footsteps",))
    audio_path, truth_path = write_scene(scene, tmp_path / "walk.flac")
    assert truth_path == tmp_path / "walk.events.csv"
    data, sr = sf.read(audio_path, dtype="float32")
    assert sr == 16_000 and data.shape == scene.audio.shape
    rows = list(csv.DictReader(truth_path.open()))
    assert [(r["class"], float(r["start"]), float(r["end"])) for r in rows] == [
        (e.class_name, pytest.approx(e.start), pytest.approx(e.end)) for e in scene.events
    ]


def test_scenes_import_no_torch():
    code = "import sys, serenesense_cli.data.scenes; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
