"""Metrics against small hand-computed cases; window slicing rules."""

from __future__ import annotations

import numpy as np
import pytest

from serenesense_cli.errors import BadInputError
from serenesense_cli.evaluate.metrics import (
    basic_metrics,
    classification_report_dict,
    expected_calibration_error,
    top_k_accuracy,
)
from serenesense_cli.evaluate.windows import (
    WindowPolicy,
    hop_samples,
    slice_windows,
    window_starts,
)

CLASSES = ["a", "b", "c"]
# true: a, a, c, a  |  predicted: a, b, c, a
Y_TRUE = [0, 0, 2, 0]
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # a, right, confidence 0.9
        [0.04, 0.90, 0.06],  # true a, predicted b, confidence 0.9; a not in top-2
        [0.10, 0.30, 0.60],  # c, right, confidence 0.6
        [0.55, 0.15, 0.30],  # a, right, confidence 0.55
    ]
)


def test_report_matches_hand_computed_values():
    report = classification_report_dict(Y_TRUE, PROBS, CLASSES)
    summary = report["summary"]
    assert summary["accuracy"] == pytest.approx(0.75)
    assert summary["top2_accuracy"] == pytest.approx(0.75)
    # macro-F1 over the classes present in true or predicted labels (a, b, c):
    # F1(a) = 2 * 1 * 2/3 / (1 + 2/3) = 0.8, F1(b) = 0, F1(c) = 1
    assert summary["macro_f1"] == pytest.approx((0.8 + 0.0 + 1.0) / 3)
    # balanced accuracy: mean recall over the true classes a (2/3) and c (1)
    assert summary["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    # ECE: bin (13/15, 14/15] holds the two 0.9s (accuracy 0.5),
    # bin (8/15, 9/15] holds 0.6 and 0.55 (accuracy 1, confidence 0.575)
    assert summary["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.425)
    expected_log_loss = -np.mean(np.log([0.90, 0.04, 0.60, 0.55]))
    assert summary["log_loss"] == pytest.approx(expected_log_loss, rel=1e-6)
    assert summary["clips"] == 4

    matrix = report["confusion_matrix"]
    assert matrix["classes"] == CLASSES
    assert matrix["counts"] == [[2, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert matrix["normalized"][0] == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert matrix["normalized"][1] == [None, None, None]  # no true "b": undefined, not 0
    assert matrix["normalized"][2] == [0.0, 0.0, 1.0]

    a, b, c = report["per_class"]
    assert (a["precision"], a["recall"], a["support"], a["predicted"]) == (1.0, 2 / 3, 3, 2)
    assert a["f1"] == pytest.approx(0.8)
    assert b["precision"] == 0.0 and b["recall"] is None and b["support"] == 0
    assert b["f1"] == 0.0
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (1.0, 1.0, 1.0, 1)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_basic_metrics_agree_with_the_full_report():
    report = classification_report_dict(Y_TRUE, PROBS, CLASSES)
    basic = basic_metrics(Y_TRUE, PROBS.argmax(axis=1), 3)
    for key, value in basic.items():
        assert report["summary"][key] == pytest.approx(value)


def test_a_class_nobody_has_or_predicts_is_left_out_of_macro_f1():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.1, 0.7]])
    report = classification_report_dict([0, 2], probs, CLASSES)
    assert report["summary"]["macro_f1"] == pytest.approx(1.0)
    b = report["per_class"][1]
    assert b["precision"] is None and b["recall"] is None and b["f1"] is None


def test_ece_bins_are_right_closed_and_empty_bins_are_none():
    # 0.4 = 6/15 is the upper edge of bin 5; 1.0 falls in the last bin
    probs = np.array([[0.4, 0.3, 0.3], [1.0, 0.0, 0.0]])
    table = expected_calibration_error([1, 0], probs)
    assert table["bins"] == 15 and len(table["edges"]) == 16
    assert table["counts"][5] == 1 and table["counts"][14] == 1 and sum(table["counts"]) == 2
    assert table["accuracy"][5] == 0.0 and table["confidence"][5] == pytest.approx(0.4)
    assert table["accuracy"][0] is None
    # |0 - 0.4| / 2 + |1 - 1| / 2
    assert table["ece"] == pytest.approx(0.2)


def test_a_perfectly_calibrated_case_has_zero_ece():
    # four clips at confidence 0.75, three right
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error([0, 0, 0, 1], probs)["ece"] == pytest.approx(0.0)


def test_top2_with_two_classes_is_one_and_with_three_is_counted():
    two = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert top_k_accuracy([1, 1], two, k=2) == 1.0
    report = classification_report_dict([1, 1], two, ["x", "y"])
    assert report["summary"]["top2_accuracy"] == 1.0
    assert report["summary"]["accuracy"] == 0.0
    three = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    assert top_k_accuracy([1, 2], three, k=2) == pytest.approx(0.5)


def test_empty_input_gives_nan_not_zero():
    report = classification_report_dict([], np.zeros((0, 3)), CLASSES)
    assert np.isnan(report["summary"]["accuracy"])
    assert np.isnan(report["summary"]["ece"])
    assert report["summary"]["clips"] == 0


# -- windows ---------------------------------------------------------------------


def test_window_starts_are_exact_and_cover_the_tail():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]  # 6 + 4 = 10: the tail is covered
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 7]  # one more window aligned to the end
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(3, 4, 2) == [0]  # shorter than a window: one (padded) window
    assert window_starts(0, 4, 2) == [0]
    assert window_starts(10, 4, 10) == [0, 6]  # hop longer than a window still ends at the end


@pytest.mark.parametrize("n", [1, 47, 48, 49, 100, 1234])
@pytest.mark.parametrize("hop", [7, 16, 47, 48])
def test_every_sample_is_in_some_window(n, hop):
    window = 48
    starts = window_starts(n, window, hop)
    covered = np.zeros(max(n, window), dtype=bool)
    for start in starts:
        covered[start : start + window] = True
    assert covered[:n].all()
    assert all(s + window <= max(n, window) for s in starts)
    assert starts == sorted(set(starts))


def test_slice_windows_pads_short_clips_with_zeros_on_the_right():
    windows = slice_windows(np.array([1.0, 2.0, 3.0]), 5, 2)
    assert windows.dtype == np.float32 and windows.shape == (1, 5)
    np.testing.assert_array_equal(windows[0], [1, 2, 3, 0, 0])


def test_slice_windows_takes_the_exact_samples():
    wave = np.arange(11, dtype=np.float32)
    windows = slice_windows(wave, 4, 3)  # starts 0, 3, 6, then 7 for the tail
    np.testing.assert_array_equal(
        windows, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [7, 8, 9, 10]]
    )


def test_hop_defaults_to_half_a_window_and_rejects_non_positive_values():
    assert hop_samples(None, 16_000, 48_000) == 24_000
    assert hop_samples(0.25, 16_000, 48_000) == 4_000
    assert hop_samples(3.0, 16_000, 48_000) == 48_000
    with pytest.raises(BadInputError):
        hop_samples(0.0, 16_000, 48_000)
    with pytest.raises(BadInputError, match="longer than the model window"):
        hop_samples(3.5, 16_000, 48_000)
    policy = WindowPolicy(sample_rate=16_000, window=48_000, hop=24_000)
    described = policy.to_dict()
    assert described["window_seconds"] == 3.0 and described["hop_seconds"] == 1.5
    assert "mean of window probabilities" in described["description"]
