"""Microphone detection: errors without PortAudio or a device, the capture queue,
and real capture through PortAudio from an ALSA ``file`` device (no hardware)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from serenesense_cli.cli import app
from serenesense_cli.data.scenes import synthesize_scene
from serenesense_cli.detect import mic
from serenesense_cli.detect.decisions import Event
from serenesense_cli.errors import BadInputError, DependencyError, SereneSenseError
from tests.reference_models import EnergyBackend, write_loudness_onnx

SR = 16_000
SCENE_CLASSES = ("vehicle", "helicopter")


@pytest.fixture(scope="module")
def scene():
    return synthesize_scene(seconds=60, seed=2, classes=SCENE_CLASSES, wind=0.0)


# ----------------------------------------------------------------- a fake sounddevice


class _Status:
    def __init__(self, overflow: bool = False) -> None:
        self.input_overflow = overflow


class FakeSoundDevice(types.ModuleType):
    """Enough of sounddevice to drive MicCapture: a stream that plays ``audio`` from a thread."""

    class PortAudioError(Exception):
        pass

    class CallbackStop(Exception):  # sounddevice's name
        pass

    def __init__(self, devices: list[dict], audio: np.ndarray | None = None, overflow_at=()):
        super().__init__("sounddevice")
        self.devices = devices
        self.audio = audio
        self.overflow_at = set(overflow_at)
        self.default = types.SimpleNamespace(device=[0 if devices else -1, -1])
        fake = self

        class InputStream:
            def __init__(self, *, blocksize, callback, finished_callback, **settings):
                self.blocksize, self.callback = blocksize, callback
                self.finished = finished_callback
                self._stop = threading.Event()

            def start(self):
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

            def _run(self):
                pcm = (np.clip(fake.audio, -1, 1) * 32767).astype(np.int16)[:, None]
                for k, i in enumerate(range(0, len(pcm) - self.blocksize + 1, self.blocksize)):
                    if self._stop.is_set():
                        break
                    try:
                        self.callback(pcm[i : i + self.blocksize], self.blocksize, None,
                                      _Status(k in fake.overflow_at))  # fmt: skip
                    except FakeSoundDevice.CallbackStop:
                        break
                self.finished()

            def abort(self, ignore_errors=True):
                self._stop.set()

            def close(self, ignore_errors=True):
                self._stop.set()

        self.InputStream = InputStream

    def query_hostapis(self):
        return ({"name": "FakeAPI"},)

    def query_devices(self, device=None, kind=None):
        if device is None:
            return self.devices
        for info in self.devices:
            if device == info["index"] or (isinstance(device, str) and device in info["name"]):
                return info
        raise ValueError(f"No input device matching {device!r}")


def _device(index: int, name: str, inputs: int = 2) -> dict:
    return {
        "index": index,
        "name": name,
        "hostapi": 0,
        "max_input_channels": inputs,
        "default_samplerate": 48000.0,
    }


@pytest.fixture
def fake_sd(monkeypatch):
    def install(devices, audio=None, overflow_at=()):
        module = FakeSoundDevice(devices, audio, overflow_at)
        monkeypatch.setitem(sys.modules, "sounddevice", module)
        return module

    return install


class _NoPortAudio:
    """A meta-path finder that fails like sounddevice does when libportaudio is missing."""

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_missing_portaudio_says_how_to_install_it(monkeypatch, runner):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    with pytest.raises(DependencyError) as info:
        mic.import_sounddevice()
    assert "PortAudio library not found" in info.value.message
    assert "apt-get install libportaudio2" in info.value.hint
    for args in (["--mic", "--model", "m.onnx"], ["--list-devices"]):
        result = runner.invoke(app, ["detect", *args])
        assert result.exit_code == 1, result.output
        assert "PortAudio library not found" in result.stderr
        assert "libportaudio2" in result.stderr


def test_no_input_device_is_a_clear_error(fake_sd, runner):
    fake_sd([_device(0, "HDMI out", inputs=0)])
    with pytest.raises(DependencyError, match="no audio input device"):
        mic.resolve_input_device(None)
    result = runner.invoke(app, ["detect", "--mic", "--model", "m.onnx"])
    assert result.exit_code == 1
    assert "no audio input device found" in result.stderr and "--list-devices" in result.stderr


def test_devices_are_chosen_by_number_or_name(fake_sd, runner):
    fake_sd([_device(0, "Built-in Mic"), _device(3, "USB Audio Device")])
    assert mic.resolve_input_device(None).name == "Built-in Mic"  # the default
    assert mic.resolve_input_device("3").name == "USB Audio Device"
    assert mic.resolve_input_device("USB").index == 3
    with pytest.raises(BadInputError) as info:
        mic.resolve_input_device("Bluetooth")
    assert "--list-devices" in info.value.hint
    result = runner.invoke(app, ["detect", "--mic", "--device", "Bluetooth", "--model", "m.onnx"])
    assert result.exit_code == 2 and "Bluetooth" in result.stderr
    result = runner.invoke(app, ["detect", "--list-devices", "--format", "json"])
    assert [d["name"] for d in json.loads(result.stdout)] == ["Built-in Mic", "USB Audio Device"]


def test_capture_counts_overflows_and_drops_when_scoring_falls_behind(fake_sd):
    audio = np.full(SR * 3, 0.25, dtype=np.float32)
    fake_sd([_device(0, "mic")], audio, overflow_at={2, 5})
    capture = mic.MicCapture(
        mic.resolve_input_device(None), sample_rate=SR, block_seconds=0.1, max_buffer_seconds=1.0
    )
    with capture:
        time.sleep(0.5)  # nobody reads: the queue fills up to 1 s, the rest is dropped
        blocks = []
        while (block := capture.read(timeout=1.0)) is not None:
            blocks.append(block)
    assert capture.stats.overflows == 2
    assert capture.stats.samples == SR * 3
    assert sum(len(b) for b in blocks) == SR
    assert capture.stats.dropped_samples == 2 * SR
    assert blocks[0].dtype == np.float32 and blocks[0][0] == pytest.approx(0.25, abs=1e-4)


def test_capture_stops_after_exactly_duration_samples(fake_sd):
    fake_sd([_device(0, "mic")], np.zeros(SR * 5, dtype=np.float32))
    capture = mic.MicCapture(
        mic.resolve_input_device(None), sample_rate=SR, block_seconds=0.1, max_samples=12_345
    )
    with capture:
        total = 0
        while (block := capture.read(timeout=1.0)) is not None:
            total += len(block)
    assert total == capture.stats.samples == 12_345


def test_device_that_refuses_the_format_gives_a_hint(fake_sd):
    module = fake_sd([_device(0, "hw:0")])

    def refuse(**kwargs):
        raise module.PortAudioError("Invalid sample rate")

    module.InputStream = refuse
    with (
        pytest.raises(SereneSenseError) as info,
        mic.MicCapture(mic.resolve_input_device(None), sample_rate=SR),
    ):
        pass
    assert "Invalid sample rate" in info.value.message and "plug" in info.value.hint


def test_mic_events_match_the_truth_in_process(fake_sd, scene):
    fake_sd([_device(0, "mic")], scene.audio)
    backend = EnergyBackend(floor_dbfs=scene.background_dbfs, classes=SCENE_CLASSES)
    records = list(mic.detect_mic(backend=backend, duration=60.0))
    started, finished = records[0], records[-1]
    assert isinstance(started, mic.MicStarted) and started.source == "mic:mic"
    assert isinstance(finished, mic.MicFinished) and not finished.interrupted
    assert finished.seconds == pytest.approx(60.0) and finished.windows == 58
    events = [r for r in records if isinstance(r, Event) and r.state == "closed"]
    _match(events, scene.events, hop=1.0)


def test_stop_event_ends_the_recording_cleanly(fake_sd, scene):
    fake_sd([_device(0, "mic")], scene.audio)
    backend = EnergyBackend(floor_dbfs=scene.background_dbfs, classes=SCENE_CLASSES)
    stop = threading.Event()
    records = []
    for record in mic.detect_mic(backend=backend, stop=stop):
        records.append(record)
        if isinstance(record, Event):
            stop.set()  # as Ctrl-C does
    finished = records[-1]
    assert isinstance(finished, mic.MicFinished) and finished.interrupted
    assert finished.seconds < 60.0
    closed = [r for r in records if isinstance(r, Event) and r.state == "closed"]
    assert len(closed) == 1  # the open event was closed at the end


def _match(events, truth, hop):
    assert [e.class_name for e in events] == [t.class_name for t in truth]
    for event, true in zip(events, truth, strict=True):
        assert abs(event.start - true.start) <= hop and abs(event.end - true.end) <= hop


# ----------------------------------------------------------------- real PortAudio, ALSA file device


def _portaudio_alsa() -> str | None:
    """Why the real-capture tests cannot run here, or None when they can."""
    code = "import sounddevice as sd; print([a['name'] for a in sd.query_hostapis()])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return "sounddevice/PortAudio unavailable: " + done.stderr.strip().splitlines()[-1]
    if "ALSA" not in done.stdout:
        return "PortAudio has no ALSA host API"
    if not Path("/usr/share/alsa/alsa.conf").is_file():
        return "no /usr/share/alsa/alsa.conf"
    return None


@pytest.fixture(scope="module")
def filemic(scene, tmp_path_factory):
    """Environment for subprocesses whose ALSA device ``filemic`` records the scene."""
    reason = _portaudio_alsa()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("filemic")
    raw = base / "scene.raw"
    # Longer than any read: past its end the file device repeats stale data.
    padded = np.concatenate([scene.audio, np.zeros(SR * 30, dtype=np.float32)])
    (np.clip(padded, -1, 1) * 32767).astype("<i2").tofile(raw)
    conf = base / "asound.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            pcm.filemic_raw {{ type file; slave.pcm "null"; file "/dev/null";
                              infile "{raw}"; format "raw" }}
            pcm.filemic {{ type plug; slave {{ pcm "filemic_raw"; format S16_LE;
                          rate 16000; channels 1 }} }}
            """
        )
    )
    env = dict(os.environ, ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{conf}")
    return env


@pytest.fixture(scope="module")
def loudness_model(scene, tmp_path_factory) -> Path:
    """A no-torch ONNX model whose first class fires on the scene's events."""
    path = tmp_path_factory.mktemp("onnx") / "loudness.onnx"
    return write_loudness_onnx(path, floor_dbfs=scene.background_dbfs, classes=("sound", "quiet"))


def _serenesense(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "serenesense_cli", "detect", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_real_capture_events_match_the_truth(filemic, scene):
    script = textwrap.dedent(
        f"""
        import json
        from serenesense_cli.detect.decisions import Event
        from serenesense_cli.detect.mic import detect_mic
        from tests.reference_models import EnergyBackend
        backend = EnergyBackend(floor_dbfs={scene.background_dbfs!r}, classes={SCENE_CLASSES!r})
        for r in detect_mic(backend=backend, device="filemic", duration=60.0):
            if isinstance(r, Event) and r.state == "closed":
                print(json.dumps([r.class_name, r.start, r.end]))
            elif type(r).__name__ == "MicFinished":
                print(json.dumps(["finished", r.seconds, r.windows]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=filemic, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows[-1] == ["finished", 60.0, 58]
    events = [types.SimpleNamespace(class_name=c, start=s, end=e) for c, s, e in rows[:-1]]
    _match(events, scene.events, hop=1.0)


@pytest.mark.parametrize("fmt", [[], ["--format", "jsonl"]], ids=["piped", "jsonl"])
def test_cli_mic_jsonl_when_piped(filemic, scene, loudness_model, fmt):
    # `--model PATH --mic --format jsonl` is what the Pi bundle's systemd unit runs
    done = _serenesense(
        filemic, "--model", loudness_model, "--mic", *fmt, "--device", "filemic",
        "--duration", "31", "--threshold", "quiet=1.0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # piped: JSON lines
    sound = [x for x in lines if x["class"] == "sound"]
    assert [x["state"] for x in sound[:2]] == ["open", "closed"]  # announced as it starts
    closed = [x for x in sound if x["state"] == "closed"]
    truth = [e for e in scene.events if e.end < 31]
    assert len(closed) == len(truth) == 3
    for got, true in zip(closed, truth, strict=True):
        assert abs(got["start"] - true.start) <= 1.0 and abs(got["end"] - true.end) <= 1.0
        assert got["file"] == "mic:filemic" and got["time_start"].endswith("+00:00")
    assert "done: 31.0 s recorded" in done.stderr


@pytest.mark.parametrize(("threshold", "code"), [("sound=0.5,quiet=1.0", 0), ("1.0", 3)])
def test_cli_mic_until(filemic, loudness_model, threshold, code):
    done = _serenesense(
        filemic, "--mic", "--device", "filemic", "--duration", "8", "--model", loudness_model,
        "--threshold", threshold, "--until", "sound",
    )  # fmt: skip
    assert done.returncode == code, done.stderr[-2000:]
    if code == 0:
        first = json.loads(done.stdout.splitlines()[-1])
        assert first["class"] == "sound" and first["state"] == "open"


def test_cli_lists_the_alsa_devices(filemic):
    done = _serenesense(filemic, "--list-devices", "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "filemic" in [d["name"] for d in json.loads(done.stdout)]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_with_a_summary(filemic, loudness_model, stop_signal):
    process = subprocess.Popen(
        [sys.executable, "-m", "serenesense_cli", "detect", "--mic", "--device", "filemic",
         "--model", str(loudness_model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=filemic,
    )  # fmt: skip
    try:
        line = ""
        while "listening" not in line:
            line = process.stderr.readline()
            assert line or process.poll() is None, "ended before listening"
        process.send_signal(stop_signal)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    assert "stopped:" in err and "recorded" in err
