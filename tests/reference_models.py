"""Model stand-ins with no training, for the detection tests.

Why: checking *when* the detector finds events needs a classifier whose
behaviour is known and does not depend on a training run.

- :class:`EnergyBackend` follows the
  :class:`~serenesense_cli.inference.backends.Backend` protocol and reads the
  audio: a window's *presence* is the fraction of its 100 ms frames louder
  than ``floor_dbfs + margin_db``, and the loud frames' balance of energy
  above and below ``split_hz`` decides between its low and its high class.
  So a class's probability passes 0.5 when about half the window holds the
  sound, as a well-trained model's would.
- :func:`write_loudness_onnx` writes a two-class loudness detector as an
  ``.onnx`` file in the exported-model convention, built with onnx alone, so
  the ONNX path (and the CLI) can be exercised without torch.

Neither is a substitute for a trained model on real recordings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FRAME_SECONDS = 0.1


@dataclass
class EnergyBackend:
    """Presence from frame loudness, class from spectral balance (see the module doc)."""

    floor_dbfs: float
    """The background's RMS level."""
    classes: tuple[str, ...] = ("low", "high")
    """Names of the low-frequency and the high-frequency class."""
    split_hz: float = 700.0
    balance_db: float = 0.0
    """High/low energy ratio (dB) at which the two classes are equally likely."""
    margin_db: float = 6.0
    fill_seconds: float = 0.1
    """Quiet gaps up to twice this long inside a sound (pauses in speech) count as loud."""
    sample_rate: int = 16_000
    clip_seconds: float = 3.0
    path: Path = field(default_factory=lambda: Path("energy-reference"))
    kind: str = "reference"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.classes) != 2:
            raise ValueError("EnergyBackend has exactly two classes (low, high)")
        self.classes = tuple(self.classes)
        self.clip_samples = round(self.clip_seconds * self.sample_rate)
        self.metadata = {"classes": list(self.classes), "sample_rate": self.sample_rate}

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        waves = np.asarray(waves, dtype=np.float64)
        if waves.ndim == 1:
            waves = waves[None, :]
        frame = round(FRAME_SECONDS * self.sample_rate)
        count = waves.shape[1] // frame
        frames = waves[:, : count * frame].reshape(waves.shape[0], count, frame)
        spectrum = np.abs(np.fft.rfft(frames, axis=2)) ** 2
        freqs = np.fft.rfftfreq(frame, 1.0 / self.sample_rate)
        low = spectrum[:, :, freqs < self.split_hz].sum(axis=2)
        high = spectrum[:, :, freqs >= self.split_hz].sum(axis=2)
        level = 10.0 * np.log10(np.mean(frames**2, axis=2) + 1e-20)
        loud = level > self.floor_dbfs + self.margin_db
        presence = _dilate(loud, round(self.fill_seconds / FRAME_SECONDS)).mean(axis=1)
        out = np.zeros((waves.shape[0], 2), dtype=np.float32)
        for i in range(waves.shape[0]):
            if not loud[i].any():
                continue
            ratio_db = 10.0 * math.log10(
                (float(high[i, loud[i]].sum()) + 1e-20) / (float(low[i, loud[i]].sum()) + 1e-20)
            )
            share_high = 1.0 / (1.0 + math.exp(-(ratio_db - self.balance_db)))
            out[i] = (presence[i] * (1.0 - share_high), presence[i] * share_high)
        return out


def _dilate(mask: np.ndarray, reach: int) -> np.ndarray:
    """Mark frames within ``reach`` frames of a marked one (along the last axis)."""
    out = mask.copy()
    for shift in range(1, reach + 1):
        out[..., shift:] |= mask[..., :-shift]
        out[..., :-shift] |= mask[..., shift:]
    return out


def write_loudness_onnx(
    path: str | Path,
    *,
    floor_dbfs: float,
    snr_db: float = 12.0,
    classes: tuple[str, str] = ("sound", "quiet"),
    clip_seconds: float = 3.0,
    sample_rate: int = 16_000,
    slope: float = 2.0,
) -> Path:
    """A tiny ONNX "model" (built with onnx alone, no torch): loud window -> first class.

    ``P(first class) = sigmoid(slope * (level_dB - crossing))`` where level is
    the window's RMS level and ``crossing`` the level of a window half filled
    with a sound ``snr_db`` above a ``floor_dbfs`` background, so the score
    passes 0.5 when the sound fills half the window. It follows the exported
    model convention (input ``waveform``, outputs ``logits`` and
    ``probabilities``, metadata ``serenesense``): for tests and demos of the
    ONNX path on machines without torch.
    """
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    gain = 10.0 ** (snr_db / 10.0)
    crossing = floor_dbfs + 10.0 * math.log10((1.0 + gain) / 2.0)

    def const(name: str, value: Any, dtype: Any = np.float32) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    nodes = [
        helper.make_node("Mul", ["waveform", "waveform"], ["square"]),
        helper.make_node("ReduceMean", ["square", "axes"], ["power"], keepdims=1),
        helper.make_node("Add", ["power", "tiny"], ["power_safe"]),
        helper.make_node("Log", ["power_safe"], ["ln_power"]),
        helper.make_node("Mul", ["ln_power", "db_per_neper"], ["level"]),
        helper.make_node("Sub", ["level", "crossing"], ["above"]),
        helper.make_node("Mul", ["above", "slope"], ["z"]),
        helper.make_node("Mul", ["z", "zero"], ["zeros"]),
        helper.make_node("Concat", ["z", "zeros"], ["logits"], axis=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    clip_samples = round(clip_seconds * sample_rate)
    graph = helper.make_graph(
        nodes,
        "loudness",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", clip_samples])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
        ],
        initializer=[
            const("axes", [1], np.int64),
            const("tiny", 1e-12),
            const("db_per_neper", 10.0 / math.log(10.0)),
            const("crossing", crossing),
            const("slope", slope),
            const("zero", 0.0),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = {
        "format": "serenesense-reference",
        "model": {"name": "loudness", "args": {"floor_dbfs": floor_dbfs, "snr_db": snr_db}},
        "classes": list(classes),
        "sample_rate": sample_rate,
        "clip_seconds": clip_seconds,
    }
    helper.set_model_props(model, {"serenesense": json.dumps(meta)})
    onnx.checker.check_model(model)
    path = Path(path)
    from serenesense_cli.fileio import write_bytes_atomic

    return write_bytes_atomic(path, model.SerializeToString())
