"""Cut a stream of audio blocks of any size into the model's windows, every hop.

Why a ring buffer: the microphone delivers small blocks (tens of ms), a file
reader large ones (seconds), and the model wants fixed windows (3 s, 4 s,
10 s) every ``hop``. Each block is written into a ring of one window; each
time the stream reaches the end of the next window, a copy of the ring is
handed out. Memory therefore stays at one window plus the windows completed
by one block, whatever the length of the recording.

Window ``k`` covers samples ``[first_end - W + k * hop, first_end + k * hop)``.
By default ``first_end = W`` (the first window is scored once the ring holds a
full window); with ``pad_start`` it is ``hop``, and the first windows are
zero-padded at the front. At the end of the stream one *tail* window is added
(the last ``W`` samples, or the whole stream zero-padded when it is shorter
than a window) when at least half a hop of audio has not been the end of a
window yet, so the last seconds of a recording are scored too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SILENT_DBFS = -200.0
"""The level reported for digital silence (log of zero)."""


@dataclass(frozen=True)
class Window:
    """One window of audio and where it lies in the stream (samples)."""

    index: int
    start: int
    """First sample (negative when zero-padded at the front)."""
    end: int
    """One past the last sample."""
    samples: np.ndarray
    real_start: int
    """First sample that holds audio (``max(start, 0)``; 0 for a short stream)."""
    real_end: int
    """One past the last sample that holds audio."""
    tail: bool = False
    """Added at the end of the stream, off the hop grid."""


class RingBuffer:
    """The last ``capacity`` samples of a stream (zeros before the stream starts)."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity = int(capacity)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._pos = 0  # where the next sample goes
        self.total = 0
        """Samples written since the start."""

    def write(self, block: np.ndarray) -> None:
        """Append samples; only the last ``capacity`` are kept."""
        n = int(block.shape[0])
        if n == 0:
            return
        self.total += n
        if n >= self.capacity:
            self._data[:] = block[-self.capacity :]
            self._pos = 0
            return
        first = min(n, self.capacity - self._pos)
        self._data[self._pos : self._pos + first] = block[:first]
        if first < n:
            self._data[: n - first] = block[first:]
        self._pos = (self._pos + n) % self.capacity

    def latest(self, n: int) -> np.ndarray:
        """A copy of the last ``n`` samples, oldest first (``n <= capacity``)."""
        if not 0 < n <= self.capacity:
            raise ValueError(f"can read 1..{self.capacity} samples, not {n}")
        start = (self._pos - n) % self.capacity
        if start + n <= self.capacity:
            return self._data[start : start + n].copy()
        return np.concatenate((self._data[start:], self._data[: (start + n) - self.capacity]))


class WindowScheduler:
    """Hands out a window each time the stream passes the end of the next one."""

    def __init__(self, window: int, hop: int, *, pad_start: bool = False) -> None:
        if window <= 0 or hop <= 0:
            raise ValueError(f"window and hop must be > 0 samples, got {window} and {hop}")
        self.window = int(window)
        self.hop = int(hop)
        self.pad_start = pad_start
        self._ring = RingBuffer(self.window)
        self._next_end = self.hop if pad_start else self.window
        self._count = 0
        self._last_end = 0

    @property
    def total(self) -> int:
        """Samples pushed so far."""
        return self._ring.total

    def push(self, block: np.ndarray) -> list[Window]:
        """Add samples; return the windows they completed (oldest first)."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        done: list[Window] = []
        offset = 0
        while offset < block.shape[0]:
            take = min(block.shape[0] - offset, self._next_end - self._ring.total)
            self._ring.write(block[offset : offset + take])
            offset += take
            if self._ring.total == self._next_end:
                done.append(self._cut(self._next_end))
                self._next_end += self.hop
        return done

    def finish(self) -> list[Window]:
        """The tail window, if the end of the stream has not been scored yet."""
        total = self._ring.total
        if total == 0:
            return []
        if self._count and 2 * (total - self._last_end) < self.hop:
            return []
        return [self._cut(total, tail=True)]

    def _cut(self, end: int, *, tail: bool = False) -> Window:
        start = end - self.window
        window = Window(
            index=self._count,
            start=start,
            end=end,
            samples=self._ring.latest(self.window),
            real_start=max(0, start),
            real_end=end,
            tail=tail,
        )
        self._count += 1
        self._last_end = end
        return window


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB full scale (a full-scale sine is -3 dBFS)."""
    if samples.size == 0:
        return SILENT_DBFS
    mean_square = float(np.dot(samples, samples)) / samples.size
    if mean_square <= 0.0:
        return SILENT_DBFS
    return max(SILENT_DBFS, 10.0 * math.log10(mean_square))


def window_level(window: Window) -> float:
    """RMS level of the part of a window that holds audio (padding does not count)."""
    offset = window.real_start - window.start
    return rms_dbfs(window.samples[offset : offset + (window.real_end - window.real_start)])
