"""Ring buffer and window scheduling: any block sizes give the same windows."""

from __future__ import annotations

import numpy as np
import pytest

from serenesense_cli.detect.stream import (
    SILENT_DBFS,
    RingBuffer,
    WindowScheduler,
    rms_dbfs,
    window_level,
)


def _feed(scheduler: WindowScheduler, signal: np.ndarray, sizes: list[int]) -> list:
    windows, i, k = [], 0, 0
    while i < signal.shape[0]:
        n = sizes[k % len(sizes)]
        windows += scheduler.push(signal[i : i + n])
        i += n
        k += 1
    return windows + scheduler.finish()


def test_ring_buffer_keeps_the_latest_samples_across_the_wrap():
    ring = RingBuffer(5)
    assert ring.latest(3).tolist() == [0, 0, 0]  # zeros before the stream starts
    ring.write(np.arange(1, 4, dtype=np.float32))
    ring.write(np.arange(4, 8, dtype=np.float32))
    assert ring.total == 7
    assert ring.latest(5).tolist() == [3, 4, 5, 6, 7]
    assert ring.latest(2).tolist() == [6, 7]
    ring.write(np.arange(10, 22, dtype=np.float32))  # a block longer than the ring
    assert ring.latest(5).tolist() == [17, 18, 19, 20, 21]
    with pytest.raises(ValueError):
        ring.latest(6)


@pytest.mark.parametrize("sizes", [[1], [7, 3, 250], [999], [10_000]])
def test_windows_do_not_depend_on_block_sizes(sizes):
    signal = np.arange(1010, dtype=np.float32)
    windows = _feed(WindowScheduler(100, 30), signal, sizes)
    starts = [w.start for w in windows]
    assert starts[:3] == [0, 30, 60]
    for w in windows:
        assert w.samples.tolist() == signal[w.start : w.end].tolist()
    # the grid ends at 1000; 10 samples are left, less than half a hop: no tail
    assert windows[-1].end == 1000 and not windows[-1].tail
    assert [w.index for w in windows] == list(range(len(windows)))


def test_tail_window_covers_the_end_of_the_stream():
    signal = np.arange(1020, dtype=np.float32)  # grid ends at 1000, 20 samples left
    windows = _feed(WindowScheduler(100, 30), signal, [64])
    tail = windows[-1]
    assert tail.tail and (tail.start, tail.end) == (920, 1020)
    assert tail.samples.tolist() == signal[920:].tolist()


def test_stream_shorter_than_a_window_is_scored_zero_padded():
    scheduler = WindowScheduler(100, 30)
    assert scheduler.push(np.ones(40, dtype=np.float32)) == []
    (window,) = scheduler.finish()
    assert (window.real_start, window.real_end) == (0, 40)
    assert window.samples[:60].tolist() == [0.0] * 60
    assert window.samples[60:].tolist() == [1.0] * 40
    assert window_level(window) == pytest.approx(0.0)  # padding does not lower the level
    assert WindowScheduler(100, 30).finish() == []


def test_pad_start_scores_from_the_first_hop():
    scheduler = WindowScheduler(100, 30, pad_start=True)
    windows = _feed(scheduler, np.ones(200, dtype=np.float32), [17])
    first = windows[0]
    assert (first.start, first.end, first.real_start) == (-70, 30, 0)
    assert first.samples[:70].sum() == 0 and first.samples[70:].sum() == 30


def test_hop_longer_than_the_window_skips_audio():
    signal = np.arange(500, dtype=np.float32)
    windows = _feed(WindowScheduler(50, 120), signal, [33])
    assert [w.start for w in windows[:3]] == [0, 120, 240]
    assert windows[1].samples.tolist() == signal[120:170].tolist()


def test_rms_dbfs():
    t = np.arange(16_000) / 16_000
    assert rms_dbfs(np.sin(2 * np.pi * 100 * t)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(np.zeros(10)) == SILENT_DBFS
    assert rms_dbfs(np.zeros(0)) == SILENT_DBFS
