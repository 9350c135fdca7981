"""Event matching against a known ground truth: found true events, unmatched detections."""

from __future__ import annotations

from serenesense_cli.data.scenes import SceneEvent
from serenesense_cli.detect.scoring import Span, match_events


def test_same_class_overlap_finds_an_event():
    truth = [SceneEvent("helicopter", 10.0, 16.0), SceneEvent("shooting", 20.0, 24.0)]
    detected = [
        {"class": "helicopter", "start": 12.0, "end": 13.0},
        {"class": "vehicle", "start": 20.5, "end": 23.0},  # right time, wrong class
        {"class": "shooting", "start": 30.0, "end": 31.0},  # right class, wrong time
    ]
    match = match_events(truth, detected)
    assert [s.class_name for s in match.found] == ["helicopter"]
    assert [s.class_name for s in match.missed] == ["shooting"]
    assert [(s.class_name, s.start) for s in match.unmatched] == [
        ("vehicle", 20.5),
        ("shooting", 30.0),
    ]
    assert match.summary() == {
        "true_events": 2,
        "found": 1,
        "missed": 1,
        "detected": 3,
        "unmatched_detections": 2,
    }


def test_touching_ends_do_not_overlap_and_nothing_detected_finds_nothing():
    assert not Span("a", 0.0, 1.0).overlaps(Span("a", 1.0, 2.0))
    match = match_events([{"class": "a", "start": 0, "end": 1}], [])
    assert match.summary()["found"] == 0 and match.summary()["missed"] == 1
