"""Event matching against a known ground truth: the demo's overlap count, DCASE event F1,
reading event files back, ``serenesense score``."""

from __future__ import annotations

import json

import pytest

from serenesense_cli.cli import app
from serenesense_cli.data.scenes import SceneEvent
from serenesense_cli.detect.readers import read_events
from serenesense_cli.detect.scoring import (
    FileSpan,
    Span,
    match_events,
    pair_recordings,
    score_events,
)
from serenesense_cli.errors import BadInputError


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


# ----------------------------------------------------------------- event-based F1 (DCASE rule)

REFERENCE = [
    FileSpan("helicopter", 10.0, 20.0, "a.wav"),
    FileSpan("helicopter", 30.0, 32.0, "a.wav"),
    FileSpan("vehicle", 40.0, 50.0, "a.wav"),
    FileSpan("shooting", 5.0, 6.0, "b.wav"),
]
DETECTED = [
    FileSpan("helicopter", 10.3, 19.0, "a.wav"),  # onset 0.3, offset 1.0 <= 0.2 x 10 s: hit
    FileSpan("helicopter", 10.1, 20.2, "a.wav"),  # also near, but the event is taken: FP
    FileSpan("helicopter", 30.8, 32.0, "a.wav"),  # onset 0.8 > 0.5: FP (and a miss)
    FileSpan("vehicle", 40.2, 45.0, "a.wav"),  # offset 5 > 2: FP (and a miss)
    FileSpan("helicopter", 40.1, 49.5, "a.wav"),  # the vehicle's times, wrong class: substitution
    FileSpan("shooting", 5.4, 6.4, "b.wav"),  # onset 0.4, offset 0.4 <= 0.5: hit
]


def test_event_scores_match_a_hand_computed_example():
    summary = score_events(REFERENCE, DETECTED, collar=0.5, offset_fraction=0.2).summary()
    per = summary["per_class"]
    assert (per["helicopter"]["tp"], per["helicopter"]["fp"], per["helicopter"]["fn"]) == (1, 3, 1)
    assert per["helicopter"]["precision"] == 0.25 and per["helicopter"]["recall"] == 0.5
    assert per["helicopter"]["f1"] == pytest.approx(1 / 3)
    assert per["vehicle"]["f1"] == 0.0 and per["shooting"]["f1"] == 1.0
    overall = summary["overall"]
    assert (overall["reference"], overall["detected"], overall["tp"]) == (4, 6, 2)
    assert overall["precision"] == pytest.approx(1 / 3) and overall["recall"] == 0.5
    assert overall["f1"] == pytest.approx(0.4)
    assert summary["macro_f1"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    # 1 substitution, 1 deletion, 3 insertions over 4 reference events
    assert summary["substitutions"] == 1 and summary["error_rate"] == pytest.approx(1.25)
    assert summary["files"] == 2


def test_wider_collars_and_onset_only_match_more():
    onset_only = score_events(REFERENCE, DETECTED, collar=0.5, offset_fraction=None)
    assert onset_only.per_class["vehicle"].tp == 1  # its offset no longer counts
    wide = score_events(REFERENCE, DETECTED, collar=1.0)
    assert wide.per_class["helicopter"].tp == 2


def test_the_matching_is_a_maximum_one():
    """Greedy matching in order would give x to A and leave B unmatched."""
    reference = [FileSpan("heli", 0.0, 10.0), FileSpan("heli", 1.0, 10.0)]
    detected = [FileSpan("heli", 0.5, 10.0), FileSpan("heli", 0.2, 10.0)]
    assert score_events(reference, detected, collar=0.5).overall.tp == 2


def test_recordings_are_paired_by_name_when_paths_differ():
    reference = [FileSpan("a", 0, 1, "truth/x.wav"), FileSpan("a", 0, 1, "truth/y.wav")]
    detected = [FileSpan("a", 0, 1, "field/x.flac"), FileSpan("a", 0, 1, "field/z.wav")]
    ref, det, unannotated = pair_recordings(reference, detected)
    assert {s.file for s in ref} == {"x", "y"} and [s.file for s in det] == ["x"]
    assert unannotated == ["z"]
    with pytest.raises(BadInputError, match="events without a file name"):
        pair_recordings([FileSpan("a", 0, 1)], detected)
    ref, det, unannotated = pair_recordings(
        [FileSpan("a", 0, 1)], detected, reference_name="truth/x.labels.txt"
    )
    assert [s.file for s in det] == [""] and unannotated == ["field/z.wav"]


def _write_files(tmp_path):
    det = tmp_path / "det.csv"
    det.write_text(
        "file,id,class,start,end,duration,peak,mean,windows,state\n"
        + "".join(
            f"{s.file},{i},{s.class_name},{s.start},{s.end},0,0.9,0.8,3,closed\n"
            for i, s in enumerate(DETECTED)
        )
    )
    ref = tmp_path / "truth.csv"
    ref.write_text(
        "filename,onset,offset,event_label\n"
        + "".join(f"{s.file},{s.start},{s.end},{s.class_name}\n" for s in REFERENCE)
    )
    return det, ref


def test_readers_take_every_format_detect_writes(tmp_path):
    det, ref = _write_files(tmp_path)
    assert read_events(det) == DETECTED and read_events(ref) == REFERENCE
    labels = tmp_path / "a.labels.txt"
    labels.write_text("10.000\t20.000\thelicopter\t0.9\n\\\t100\t2000\n30\t32\thelicopter\n")
    assert read_events(labels) == [FileSpan("helicopter", 10, 20), FileSpan("helicopter", 30, 32)]
    raven = tmp_path / "sel.txt"
    raven.write_text(
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tCommon Name\tBegin Path\t"
        "File Offset (s)\n1\tSpectrogram 1\t1\t72.0\t74.5\tvehicle\tb.wav\t12.0\n"
    )
    assert read_events(raven) == [FileSpan("vehicle", 12.0, 14.5, "b.wav")]
    birdnet = tmp_path / "b.birdnet.csv"
    birdnet.write_text(
        "Start (s),End (s),Scientific name,Common name,Confidence,File\n1,4,tank,tank,0.8,c.wav\n"
    )
    assert read_events(birdnet) == [FileSpan("tank", 1, 4, "c.wav")]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        '{"type": "event", "file": "a.wav", "class": "x", "start": 1, "end": 2, "state": "open"}\n'
        '{"type": "window", "file": "a.wav", "start": 0, "end": 3}\n'
        '{"type": "event", "file": "a.wav", "class": "x", "start": 1, "end": 5,'
        ' "state": "closed"}\n'
    )
    assert read_events(jsonl) == [FileSpan("x", 1, 5, "a.wav")]
    doc = tmp_path / "d.json"
    doc.write_text(json.dumps({"files": [{"path": "a.wav", "events": [
        {"class": "x", "start": 1, "end": 5, "state": "closed"}]}]}))  # fmt: skip
    assert read_events(doc) == [FileSpan("x", 1, 5, "a.wav")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("e.csv", "class,start\nx,1\n", "no end column"),
        ("e.csv", "class,start,end\nx,1,zero\n", "line 2: end 'zero' is not a number"),
        ("e.csv", "class,start,end\nx,5,1\n", "line 2: the event ends"),
        ("e.txt", "1.0 2.0 x\n", "line 1: not an Audacity label"),
        ("e.json", "{", "not JSON"),
        ("e.xyz", "", "cannot tell the event format"),
    ],
)
def test_readers_refuse_malformed_files_in_one_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(BadInputError) as caught:
        read_events(path)
    assert message in caught.value.message and str(path) in caught.value.message
    assert "\n" not in caught.value.message


def test_cli_score(runner, tmp_path):
    det, ref = _write_files(tmp_path)
    result = runner.invoke(app, ["score", str(det), str(ref), "-f", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["overall"]["f1"] == pytest.approx(0.4) and summary["collar"] == 0.5
    result = runner.invoke(app, ["score", str(det), str(ref), "--collar", "1", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0] == "class,reference,detected,tp,fp,fn,precision,recall,f1"
    assert rows[-1].startswith("(all),4,6,3,")
    result = runner.invoke(app, ["score", str(det), str(ref)])
    assert (
        result.exit_code == 0 and "(all)" in result.stdout and "F1 40.0% overall" in result.stderr
    )
    result = runner.invoke(app, ["score", str(det), str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "none.csv: file not found" in result.stderr
    result = runner.invoke(app, ["score", str(det), str(ref), "--collar", "-1"])
    assert result.exit_code == 2 and "--collar" in result.stderr
