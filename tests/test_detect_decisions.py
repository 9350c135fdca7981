"""Decision rules: thresholds, smoothing, hysteresis, silence, unknown, event timing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from serenesense_cli.detect.decisions import (
    SILENCE,
    UNKNOWN,
    Decider,
    Event,
    ScoredWindow,
    WindowDecision,
    make_rules,
    parse_thresholds,
)
from serenesense_cli.detect.detector import DetectConfig, Detector
from serenesense_cli.errors import BadInputError

CLASSES = ("heli", "truck")


def _run(scores, *, hop=1.0, window=3.0, levels=None, end=None, **rules):
    """Feed per-window heli scores (truck gets 1 - heli) to a Decider; return its records."""
    decider = Decider(make_rules(CLASSES, **rules), hop)
    out = []
    for i, score in enumerate(scores):
        probs = np.array([score, 1.0 - score]) if np.ndim(score) == 0 else np.asarray(score)
        level = -20.0 if levels is None else levels[i]
        out += decider.add(ScoredWindow(i, i * hop, i * hop + window, probs, level))
    last_end = (len(scores) - 1) * hop + window
    return out + decider.finish(last_end if end is None else end)


def _closed(records, name="heli"):
    return [
        r for r in records if isinstance(r, Event) and r.state == "closed" and r.class_name == name
    ]


def _decisions(records):
    return [r for r in records if isinstance(r, WindowDecision)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, (0.5, 0.5)),
        ("0.6", (0.6, 0.6)),
        (0.7, (0.7, 0.7)),
        ("truck=0.8", (0.5, 0.8)),
        ("truck=0.8,0.6", (0.6, 0.8)),  # the bare number applies first, wherever it stands
        ({"heli": 0.9}, (0.9, 0.5)),
    ],
)
def test_parse_thresholds(spec, expected):
    assert parse_thresholds(spec, CLASSES, default=(0.5, 0.5)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "spec", ["tank=0.5", "heli=high", "1.5", "0", "heli=-0.1", "nan", "0.5,0.3"]
)
def test_bad_thresholds_are_usage_errors(spec):
    with pytest.raises(BadInputError) as info:
        parse_thresholds(spec, CLASSES, default=(0.5, 0.5))
    assert info.value.exit_code == 2
    if spec.startswith("tank"):
        assert "heli, truck" in info.value.hint


def test_rules_defaults_and_checks():
    rules = make_rules(CLASSES, threshold="heli=0.8")
    assert rules.thresholds == (0.8, 0.5)
    assert rules.close_thresholds == pytest.approx((0.6, 0.375))  # 0.75 x threshold
    assert rules.smooth == 3 and rules.silence_dbfs == -60.0
    with pytest.raises(BadInputError, match="above its threshold"):
        make_rules(CLASSES, threshold=0.5, close_threshold=0.6)
    with pytest.raises(BadInputError, match="--smooth"):
        make_rules(CLASSES, smooth=0)
    with pytest.raises(BadInputError, match="--min-duration"):
        make_rules(CLASSES, min_event_seconds=-1)


def test_hysteresis_keeps_one_event_through_a_dip():
    scores = [0.1, 0.1, 0.7, 0.45, 0.8, 0.45, 0.1, 0.1]
    records = _run(scores, smooth=1, threshold=0.5)  # closes below 0.375
    (event,) = _closed(records)
    # windows 2..5 are open; the span runs to the last window at/above 0.5 (window 4)
    slots = {d.index: (d.slot_start, d.slot_end) for d in _decisions(records)}
    assert event.start == slots[2][0] and event.end == slots[4][1]
    assert event.windows == 4
    assert event.peak == pytest.approx(0.8)
    assert event.mean == pytest.approx((0.7 + 0.45 + 0.8 + 0.45) / 4)
    # without hysteresis the dip splits it in two
    assert len(_closed(_run(scores, smooth=1, threshold=0.5, close_threshold=0.5))) == 2


def test_smoothing_suppresses_a_single_window_spike():
    spike = [0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0]
    assert _closed(_run(spike, smooth=3)) == []
    assert len(_closed(_run(spike, smooth=1))) == 1
    decisions = _decisions(_run(spike, smooth=3))
    assert [round(float(d.smoothed[0]), 2) for d in decisions] == [0, 0, 0.3, 0.3, 0.3, 0, 0]


def test_decisions_wait_for_the_windows_after_them():
    decider = Decider(make_rules(CLASSES, smooth=5), 1.0)
    got = [decider.add(ScoredWindow(i, i, i + 3, np.array([0.2, 0.8]), -20)) for i in range(4)]
    assert [len(_decisions(r)) for r in got] == [0, 0, 1, 1]  # 2 windows of look-ahead
    assert len(_decisions(decider.finish(6.0))) == 2


def test_silence_gate_gives_no_decision_and_closes_events():
    scores = [0.9, 0.9, 0.9, 0.9, 0.9]
    levels = [-20.0, -20.0, -80.0, -20.0, -20.0]
    records = _run(scores, smooth=1, levels=levels)
    labels = [d.label for d in _decisions(records)]
    assert labels == ["heli", "heli", SILENCE, "heli", "heli"]
    assert len(_closed(records)) == 2
    # gate off: one event
    assert len(_closed(_run(scores, smooth=1, levels=levels, silence_dbfs=float("-inf")))) == 1


def test_unknown_when_no_class_is_confident():
    records = _run([[0.4, 0.35]] * 3, smooth=1)
    assert {d.label for d in _decisions(records)} == {UNKNOWN}
    assert _decisions(records)[0].confidence == pytest.approx(0.4)
    assert not [r for r in records if isinstance(r, Event)]


def test_classes_have_independent_events():
    scores = [[0.1, 0.1], [0.7, 0.1], [0.7, 0.6], [0.7, 0.6], [0.1, 0.6], [0.1, 0.1]]
    records = _run(scores, smooth=1, threshold=0.5)
    heli, truck = _closed(records, "heli"), _closed(records, "truck")
    assert len(heli) == 1 and len(truck) == 1
    assert heli[0].start < truck[0].start < heli[0].end < truck[0].end
    assert heli[0].id != truck[0].id
    assert _decisions(records)[2].label == "heli"  # the stronger of the open ones


def test_open_is_announced_before_close_with_the_same_id():
    records = _run([0.1, 0.9, 0.9, 0.1], smooth=1, threshold="truck=1.0")
    events = [r for r in records if isinstance(r, Event)]
    assert [e.state for e in events] == ["open", "closed"]
    assert events[0].id == events[1].id == 1
    assert events[0].start == events[1].start
    # the open event follows its window's decision in the stream
    assert isinstance(records[records.index(events[0]) - 1], WindowDecision)


def test_min_duration_drops_short_events_and_delays_the_announcement():
    scores = [0.1, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.1]
    records = _run(scores, smooth=1, min_event_seconds=2.5, threshold="truck=1.0")
    events = [r for r in records if isinstance(r, Event)]
    assert [(e.state, e.id) for e in events] == [("open", 1), ("closed", 1)]
    assert events[1].duration >= 2.5
    opened_after = _decisions(records[: records.index(events[0])])[-1].index
    assert opened_after == 6  # announced once three windows (3 s) were in


def test_slots_tile_the_stream_from_zero_to_the_end():
    decisions = _decisions(_run([0.2] * 6, hop=1.0, window=3.0, end=8.4))
    assert decisions[0].slot_start == 0.0
    assert decisions[-1].slot_end == pytest.approx(8.4)
    for a, b in itertools.pairwise(decisions):
        assert a.slot_end == pytest.approx(b.slot_start)
    assert decisions[2].slot_start == pytest.approx(3.0)  # centre 3.5 +- hop/2


def test_event_open_at_the_end_is_closed_at_the_end():
    (event,) = _closed(_run([0.1, 0.9, 0.9], smooth=1, end=5.0))
    assert event.end == pytest.approx(5.0)


# ----------------------------------------------------------------- timing, ideal classifier


@dataclass
class FractionBackend:
    """An ideal classifier: P(on) is the fraction of the window that holds the sound."""

    clip_seconds: float = 3.0
    sample_rate: int = 1000
    classes: tuple[str, ...] = ("on", "off")
    path: Path = Path("fraction")
    kind: str = "fake"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clip_samples = round(self.clip_seconds * self.sample_rate)

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        on = (np.asarray(waves) > 0.5).mean(axis=1)
        return np.stack([on, 1.0 - on], axis=1).astype(np.float32)


TRUTH = [(12.3, 19.9), (34.05, 45.7), (62.5, 69.2)]


@pytest.mark.parametrize(
    ("window", "hop", "smooth"),
    [(w, h, k) for w in (3.0, 4.0, 10.0) for h in (0.5, 1.0, 2.0) for k in (1, 3)],
)
def test_onsets_and_offsets_land_within_one_hop(window, hop, smooth):
    sr = 1000
    signal = np.full(80 * sr, 0.01, dtype=np.float32)
    for start, end in TRUTH:
        signal[round(start * sr) : round(end * sr)] = 1.0
    detector = Detector(
        FractionBackend(clip_seconds=window, sample_rate=sr),
        DetectConfig(
            hop_seconds=hop, smooth=smooth, threshold="off=1.0", close_threshold="off=0.9"
        ),
    )
    records = []
    for i in range(0, signal.shape[0], 777):
        records += detector.push(signal[i : i + 777])
    records += detector.finish()
    found = [(e.start, e.end) for e in _closed(records, "on")]
    assert len(found) == len(TRUTH), found
    for (start, end), (got_start, got_end) in zip(TRUTH, found, strict=True):
        assert abs(got_start - start) <= hop + 1e-9
        assert abs(got_end - end) <= hop + 1e-9


def test_ignored_class_never_opens_events_and_its_windows_are_unknown():
    # heli for 4 windows, then "truck" (standing in for a background class) for 4.
    scores = [0.95] * 4 + [0.05] * 4
    plain = _run(scores)
    assert _closed(plain, "truck"), "without --ignore the second half is a truck event"
    records = _run(scores, ignore=("truck",))
    assert not [r for r in records if isinstance(r, Event) and r.class_name == "truck"]
    assert len(_closed(records, "heli")) == 1
    labels = [d.label for d in _decisions(records)]
    assert labels[-1] == UNKNOWN and "truck" not in labels


def test_ignore_names_a_class_of_the_model():
    with pytest.raises(BadInputError, match="no class 'lorry'"):
        make_rules(CLASSES, ignore=("lorry",))
    with pytest.raises(BadInputError, match="every class"):
        make_rules(CLASSES, ignore=CLASSES)
    assert make_rules(CLASSES, ignore=("truck",)).as_dict()["ignored"] == ["truck"]
