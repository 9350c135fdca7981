"""Live detection from a sound card (PortAudio through sounddevice).

Why a callback and a queue: PortAudio calls :meth:`MicCapture._callback` on
its own thread with each block as it is recorded; the callback only copies
the block into a queue, so recording never waits for the model. The
generator :func:`detect_mic` takes blocks off the queue on the caller's
thread and pushes them through the same
:class:`~serenesense_cli.detect.detector.Detector` that files use. Nothing
is lost while a window is being scored; if scoring falls more than
``max_buffer_seconds`` behind, new blocks are dropped and counted (and input
overflows reported by PortAudio are counted too).

``duration`` counts captured samples, not wall time, so a capture device
that is not paced in real time (a file, in tests) still stops after exactly
that much audio.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

import numpy as np

from serenesense_cli.detect.decisions import DecisionRules
from serenesense_cli.detect.detector import DetectConfig, Detector, Record
from serenesense_cli.errors import BadInputError, DependencyError, SereneSenseError
from serenesense_cli.inference.backends import Backend

DEFAULT_BLOCK_SECONDS = 0.1
DEFAULT_MAX_BUFFER_SECONDS = 60.0
PORTAUDIO_HINT = (
    "install PortAudio: `sudo apt-get install libportaudio2` (Debian, Ubuntu, Raspberry Pi OS), "
    "`brew install portaudio` (macOS)"
)
LIST_HINT = "see the input devices with `serenesense detect --list-devices`"
_EMPTY = object()


def import_sounddevice() -> ModuleType:
    """sounddevice, or a :class:`DependencyError` that says how to install what is missing."""
    try:
        import sounddevice
    except OSError as error:  # raised when libportaudio cannot be loaded
        raise DependencyError(
            f"PortAudio library not found ({error})", hint=PORTAUDIO_HINT
        ) from None
    except ImportError:
        raise DependencyError(
            "the sounddevice package is not installed", hint="pip install sounddevice"
        ) from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    """A sound card input as PortAudio lists it."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate: float
    default: bool


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel."""
    sd = import_sounddevice()
    return _inputs(sd)


def _inputs(sd: ModuleType) -> list[InputDevice]:
    hostapis = sd.query_hostapis()
    default_input = _default_input(sd)
    return [
        InputDevice(
            index=int(info["index"]),
            name=str(info["name"]),
            hostapi=str(hostapis[info["hostapi"]]["name"]),
            channels=int(info["max_input_channels"]),
            default_samplerate=float(info["default_samplerate"]),
            default=int(info["index"]) == default_input,
        )
        for info in sd.query_devices()
        if info["max_input_channels"] > 0
    ]


def _default_input(sd: ModuleType) -> int:
    try:
        return int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        return -1


def resolve_input_device(device: str | int | None = None) -> InputDevice:
    """The input device named (a substring of its name) or numbered, or the default one."""
    sd = import_sounddevice()
    inputs = _inputs(sd)
    if not inputs:
        raise DependencyError(
            "no audio input device found",
            hint="connect a microphone (on Linux `arecord -l` lists the cards); " + LIST_HINT,
        )
    if device is None or str(device).strip() == "":
        chosen = next((d for d in inputs if d.default), inputs[0])
        return chosen
    key: str | int = int(device) if str(device).strip().isdigit() else str(device)
    try:
        info = sd.query_devices(key, kind="input")
    except (ValueError, sd.PortAudioError) as error:
        raise BadInputError(f"--device {device}: {error}", hint=LIST_HINT) from None
    match = next((d for d in inputs if d.index == int(info["index"])), None)
    if match is None:
        raise BadInputError(f"--device {device}: not an input device", hint=LIST_HINT)
    return match


@dataclass
class CaptureStats:
    """What the capture saw: samples, PortAudio overflows, blocks dropped by us."""

    samples: int = 0
    overflows: int = 0
    dropped_samples: int = 0


class MicCapture:
    """An int16 mono input stream whose callback fills a bounded queue."""

    def __init__(
        self,
        device: InputDevice,
        *,
        sample_rate: int,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
        max_samples: int | None = None,
        max_buffer_seconds: float = DEFAULT_MAX_BUFFER_SECONDS,
    ) -> None:
        self._sd = import_sounddevice()
        self.device = device
        self.sample_rate = int(sample_rate)
        self.blocksize = max(1, round(block_seconds * self.sample_rate))
        self.max_samples = max_samples
        self._max_queued = max(self.blocksize, round(max_buffer_seconds * self.sample_rate))
        self._queue: queue.Queue[Any] = queue.Queue()
        self._queued = 0
        self._lock = threading.Lock()
        self.stats = CaptureStats()
        self._stream: Any = None

    def __enter__(self) -> MicCapture:
        sd = self._sd
        try:
            self._stream = sd.InputStream(
                samplerate=self.sample_rate,
                blocksize=self.blocksize,
                device=self.device.index,
                channels=1,
                dtype="int16",
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as error:
            self._close()
            raise SereneSenseError(
                f"cannot record from {self.device.name!r} at {self.sample_rate} Hz mono: {error}",
                hint="pick a device that resamples (an ALSA 'plug' or 'default' device, or "
                "pulse/pipewire); " + LIST_HINT,
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
            finally:
                stream.close(ignore_errors=True)

    def read(self, timeout: float) -> Any:
        """The next block (float32), ``None`` when the stream has ended, or ``_EMPTY``."""
        try:
            block = self._queue.get(timeout=timeout)
        except queue.Empty:
            return _EMPTY
        if block is None:
            return None
        with self._lock:
            self._queued -= block.shape[0]
        return block.astype(np.float32) / 32768.0

    # Runs on PortAudio's thread: copy, count, never block.
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.input_overflow:
            self.stats.overflows += 1
        block = indata[:, 0]
        stop = False
        if self.max_samples is not None:
            left = self.max_samples - self.stats.samples
            if left <= block.shape[0]:
                block, stop = block[: max(0, left)], True
        if block.shape[0]:
            self.stats.samples += block.shape[0]
            with self._lock:
                room = self._queued + block.shape[0] <= self._max_queued
                if room:
                    self._queued += block.shape[0]
            if room:
                self._queue.put(block.copy())
            else:
                self.stats.dropped_samples += block.shape[0]
        if stop:
            raise self._sd.CallbackStop

    def _finished(self) -> None:
        self._queue.put(None)


@dataclass(frozen=True)
class MicStarted:
    """Recording has started."""

    device: InputDevice
    source: str
    sample_rate: int
    started_at: datetime
    stats: CaptureStats
    """Updated live while recording (overflows, dropped samples)."""


@dataclass(frozen=True)
class MicFinished:
    """Recording has ended: totals for the summary."""

    source: str
    seconds: float
    windows: int
    events: int
    overflows: int
    dropped_seconds: float
    scoring_seconds: float
    wall_seconds: float
    interrupted: bool


MicRecord = MicStarted | MicFinished | Record


def detect_mic(
    *,
    backend: Backend,
    config: DetectConfig | None = None,
    rules: DecisionRules | None = None,
    device: str | int | None = None,
    duration: float | None = None,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    max_buffer_seconds: float = DEFAULT_MAX_BUFFER_SECONDS,
    stop: threading.Event | None = None,
) -> Iterator[MicRecord]:
    """Record from ``device`` and yield decisions and events as they happen.

    Ends after ``duration`` seconds of audio, when the device stops, or when
    ``stop`` is set (then interrupted is reported); closing the generator
    stops the recording too. Open events are closed at the end. ``rules``:
    settings already checked against the model.
    """
    config = config or DetectConfig()
    rules = rules or config.rules_for(tuple(backend.classes))
    if duration is not None and not duration > 0:
        raise BadInputError(f"--duration must be > 0 seconds, got {duration}")
    chosen = resolve_input_device(device)
    source = f"mic:{chosen.name}"
    detector = Detector(backend, config, source=source, rules=rules)
    sample_rate = detector.sample_rate
    max_samples = None if duration is None else round(duration * sample_rate)
    capture = MicCapture(
        chosen,
        sample_rate=sample_rate,
        block_seconds=block_seconds,
        max_samples=max_samples,
        max_buffer_seconds=max_buffer_seconds,
    )
    interrupted = False
    began = time.monotonic()
    with capture:
        yield MicStarted(
            device=chosen,
            source=source,
            sample_rate=sample_rate,
            started_at=datetime.now(timezone.utc),
            stats=capture.stats,
        )
        while True:
            if stop is not None and stop.is_set():
                interrupted = True
                break
            block = capture.read(timeout=0.1)
            if block is _EMPTY:
                continue
            if block is None:
                break
            yield from detector.push(block)
    yield from detector.finish()
    yield MicFinished(
        source=source,
        seconds=detector.seconds,
        windows=detector.windows_scored,
        events=detector.events_closed,
        overflows=capture.stats.overflows,
        dropped_seconds=capture.stats.dropped_samples / sample_rate,
        scoring_seconds=detector.scoring_seconds,
        wall_seconds=time.monotonic() - began,
        interrupted=interrupted,
    )
