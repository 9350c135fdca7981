"""Real (or, failing that, synthetic) windows for parity, calibration and agreement.

Why: a parity or INT8 check on random noise says little about recordings.
Windows come, in order of preference, from a prepared data set the user
names, from the data set the model was trained on (its run's
``config.toml``), or from seeded synthetic events; every caller says which.
numpy only: quantize and bench must not need torch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SYNTHETIC_HELD_OUT = 16
"""Most synthetic windows used for parity / agreement when no recordings are known."""
SPLIT_PREFERENCE = {
    "calibration": ("train", "val", "test"),
    "held_out": ("val", "test", "train"),
}


@dataclass
class Windows:
    """Model-sized float32 windows ``(N, samples)`` and where they came from."""

    waves: np.ndarray
    source: str
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    data: Path | None = None
    split: str | None = None

    def __len__(self) -> int:
        return int(self.waves.shape[0])


def centred_window(wave: np.ndarray, length: int) -> np.ndarray:
    """The centred ``length`` samples of ``wave`` (zero-padded on the right when short)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    start = max(0, (wave.size - length) // 2)
    piece = wave[start : start + length]
    if piece.size < length:
        piece = np.pad(piece, (0, length - piece.size))
    return np.ascontiguousarray(piece, dtype=np.float32)


def pick_split(splits: tuple[str, ...], preference: tuple[str, ...]) -> str | None:
    """The first split of ``preference`` present in ``splits``."""
    return next((s for s in preference if s in splits), splits[0] if splits else None)


def prepared_windows(
    data: str | Path,
    *,
    clip_samples: int,
    sample_rate: int,
    max_clips: int | None,
    split: str | None = None,
    purpose: str = "held_out",
    seed: int = 0,
) -> Windows:
    """Centred windows of up to ``max_clips`` clips of one split of a prepared set.

    Clips are drawn evenly over the split (seeded), so a small number still
    covers every class.
    """
    from serenesense_cli.data.cache import open_prepared
    from serenesense_cli.errors import DataSetError

    prepared = open_prepared(data)
    if prepared.sample_rate != sample_rate:
        raise DataSetError(
            f"{data}: prepared at {prepared.sample_rate} Hz, the model expects {sample_rate} Hz"
        )
    chosen = split or pick_split(prepared.splits, SPLIT_PREFERENCE[purpose])
    indices = prepared.indices(chosen) if chosen else []
    if not indices:
        raise DataSetError(
            f"{data}: split {chosen!r} has no clips (splits: {', '.join(prepared.splits)})"
        )
    if max_clips is not None and len(indices) > max_clips:
        rng = np.random.default_rng(seed)
        indices = sorted(rng.choice(indices, size=max_clips, replace=False).tolist())
    waves = np.stack([centred_window(prepared.waveform(i), clip_samples) for i in indices])
    labels = np.asarray([prepared.records[i].label_index for i in indices], dtype=np.int64)
    return Windows(
        waves=waves,
        source=f"prepared set {data} ({chosen}, {len(indices)} clips)",
        labels=labels,
        classes=prepared.classes,
        data=Path(data),
        split=chosen,
    )


def synthetic_windows(count: int, *, clip_samples: int, sample_rate: int, seed: int = 0) -> Windows:
    """Seeded synthetic battlefield events (one class after another), model-sized."""
    from serenesense_cli.data.sounds import SOUND_GENERATORS, make_event

    rng = np.random.default_rng(seed)
    names = list(SOUND_GENERATORS)
    seconds = clip_samples / sample_rate
    events = [make_event(names[i % len(names)], rng, seconds, sample_rate) for i in range(count)]
    waves = np.stack([centred_window(event, clip_samples) for event in events])
    return Windows(waves=waves, source=f"synthetic events (make_event, seed {seed}, {count} clips)")


def run_data_path(model_path: str | Path, meta: dict[str, Any] | None = None) -> Path | None:
    """The prepared set a model was trained on, if it still exists.

    Looks in the run's ``config.toml`` (for a run folder or ``RUN/weights/x.safetensors``)
    and in ONNX export metadata (``export.data``).
    """
    from serenesense_cli.config import load_toml
    from serenesense_cli.errors import SereneSenseError

    candidates: list[Any] = []
    path = Path(model_path)
    for run in (path, path.parent.parent, path.parent):
        config = run / "config.toml"
        if config.is_file():
            with contextlib.suppress(SereneSenseError):
                candidates.append(load_toml(config).get("data"))
            break
    if meta:
        candidates.append((meta.get("export") or {}).get("data"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "dataset.json").is_file():
            return Path(candidate)
    return None


def choose_windows(
    *,
    model_path: str | Path,
    meta: dict[str, Any],
    clip_samples: int,
    sample_rate: int,
    count: int,
    data: str | Path | None = None,
    split: str | None = None,
    purpose: str = "held_out",
    seed: int = 0,
) -> Windows:
    """Windows from ``data``, else the model's own training set, else synthetic."""
    chosen = data if data is not None else run_data_path(model_path, meta)
    if chosen is not None:
        windows = prepared_windows(
            chosen,
            clip_samples=clip_samples,
            sample_rate=sample_rate,
            max_clips=count,
            split=split,
            purpose=purpose,
            seed=seed,
        )
        if data is None:
            windows.source = f"the model's training data: {windows.source}"
        return windows
    if purpose == "held_out":
        count = min(count, SYNTHETIC_HELD_OUT)  # no labels, no real audio: a smoke check
    return synthetic_windows(count, clip_samples=clip_samples, sample_rate=sample_rate, seed=seed)
