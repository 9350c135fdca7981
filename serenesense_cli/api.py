"""serenesense as a library: the functions the commands call, for scripts.

Why a module of its own: the command modules are Typer glue and the library
modules are many; this is the short list a script needs, with one import.
Everything here is a thin wrapper or a re-export of the library function the
matching command uses, so a script gets the same checks, results and errors
(:class:`~serenesense_cli.errors.SereneSenseError` with ``message`` and
``hint``) as the command line. Nothing prints.

Inference (works on the lean install with an exported ``.onnx`` model)::

    from serenesense_cli import api

    model = api.load_model("model.int8.onnx")
    api.classify(waveform, 16_000, model)             # {"vehicle": 0.91, ...}
    api.detect_file("recording.wav", model, threshold=0.6)   # [Event(...), ...]

The training side (``train_model``, ``evaluate_model``, ``export_onnx``,
``quantize_onnx``) needs ``pip install 'serenesense[train]'``; those names
are imported on first use, so ``import serenesense_cli.api`` stays light.
See docs/api.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serenesense_cli.audio.io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, resample
from serenesense_cli.detect.decisions import Event
from serenesense_cli.detect.detector import DEFAULT_BATCH_SIZE, DetectConfig, Detector
from serenesense_cli.errors import BadInputError
from serenesense_cli.evaluate.windows import hop_samples, slice_windows
from serenesense_cli.inference.backends import Backend, open_backend

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors
    from serenesense_cli.bench.run import bench_models
    from serenesense_cli.data.prepare import prepare_dataset
    from serenesense_cli.data.synth import synthesize_dataset
    from serenesense_cli.evaluate.run import evaluate_model
    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx
    from serenesense_cli.train.engine import train as train_model

__all__ = [
    "Backend",
    "DetectConfig",
    "Event",
    "bench_models",
    "classify",
    "detect_file",
    "detect_waveform",
    "evaluate_model",
    "export_onnx",
    "load_model",
    "prepare_dataset",
    "quantize_onnx",
    "synthesize_dataset",
    "train_model",
]

_LAZY: dict[str, tuple[str, str]] = {
    # public name -> (module, attribute): imported on first use
    "synthesize_dataset": ("serenesense_cli.data.synth", "synthesize_dataset"),
    "prepare_dataset": ("serenesense_cli.data.prepare", "prepare_dataset"),
    "train_model": ("serenesense_cli.train.engine", "train"),
    "evaluate_model": ("serenesense_cli.evaluate.run", "evaluate_model"),
    "export_onnx": ("serenesense_cli.export.onnx", "export_onnx"),
    "quantize_onnx": ("serenesense_cli.export.quantize", "quantize_onnx"),
    "bench_models": ("serenesense_cli.bench.run", "bench_models"),
}


def __getattr__(name: str) -> Any:
    """Import a lazy name on first use (``train_model`` imports torch)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_model(
    path: str | Path, *, threads: int | None = None, spin: bool = True, device: str = "cpu"
) -> Backend:
    """A model ready to score windows: onnxruntime for an ``.onnx`` file (no
    torch), torch for a run folder or ``.safetensors`` file (the train extra).

    The result has ``classes``, ``sample_rate``, ``clip_samples`` (the
    window), ``metadata`` and ``predict_proba(windows)``; ``spin=False`` lets
    idle onnxruntime threads sleep, as ``detect --no-spin`` does.
    """
    return open_backend(path, device=device, threads=threads, spin=spin)


def _mono(waveform: Any, sample_rate: int, model: Backend) -> np.ndarray:
    """A 1-D float32 signal at the model's rate, checked as files are."""
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim != 1:
        raise BadInputError(
            f"expected a mono waveform (a 1-D array), got shape {wave.shape}",
            hint="mix the channels first, e.g. waveform.mean(axis=1)",
        )
    if wave.size == 0:
        raise BadInputError("the waveform holds no samples")
    if not np.isfinite(wave).all():
        raise BadInputError("the waveform contains NaN or infinite samples")
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise BadInputError(
            f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return resample(wave, int(sample_rate), int(model.sample_rate))


def classify(
    waveform: Any,
    sample_rate: int,
    model: Backend,
    *,
    hop_seconds: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, float]:
    """Class probabilities of one clip, scored as ``serenesense evaluate`` scores
    a clip: resampled to the model's rate, sliding windows (half a window apart
    unless ``hop_seconds``), a short clip zero-padded, the windows' mean.
    """
    wave = _mono(waveform, sample_rate, model)
    window = int(model.clip_samples)
    windows = slice_windows(wave, window, hop_samples(hop_seconds, model.sample_rate, window))
    size = max(1, int(batch_size))
    probs = np.concatenate(
        [
            np.asarray(model.predict_proba(windows[i : i + size]), dtype=np.float64)
            for i in range(0, len(windows), size)
        ]
    ).mean(axis=0)
    return {name: float(p) for name, p in zip(model.classes, probs, strict=True)}


def detect_waveform(
    waveform: Any,
    sample_rate: int,
    model: Backend,
    *,
    config: DetectConfig | None = None,
    **settings: Any,
) -> list[Event]:
    """The events in a recording held in memory, as ``serenesense detect`` finds
    them in a file (closed events, oldest first).

    ``settings`` are :class:`DetectConfig` fields (``threshold=0.6`` or
    ``"helicopter=0.7"``, ``hop_seconds``, ``smooth``, ``ignore``, ...), or
    pass a whole ``config``.
    """
    detector = Detector(model, _config(config, settings), source="waveform")
    wave = _mono(waveform, sample_rate, model)
    records = [*detector.push(wave), *detector.finish()]
    return [r for r in records if isinstance(r, Event) and r.state == "closed"]


def detect_file(
    path: str | Path,
    model: Backend,
    *,
    config: DetectConfig | None = None,
    **settings: Any,
) -> list[Event]:
    """The events in one audio file (any format and rate ``detect`` reads),
    streamed block by block as ``serenesense detect FILE`` does; closed
    events, oldest first. A file that cannot be read raises
    :class:`~serenesense_cli.errors.SereneSenseError`.
    """
    from serenesense_cli.detect.files import FileFinished, detect_files

    events: list[Event] = []
    for record in detect_files([path], backend=model, config=_config(config, settings)):
        if isinstance(record, Event) and record.state == "closed":
            events.append(record)
        elif isinstance(record, FileFinished) and record.error:
            raise BadInputError(record.error, hint=record.hint)
    return events


def _config(config: DetectConfig | None, settings: dict[str, Any]) -> DetectConfig:
    if config is not None and settings:
        raise TypeError("pass either config or DetectConfig settings, not both")
    return config if config is not None else DetectConfig(**settings)
