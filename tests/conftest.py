"""Shared fixtures: a CLI runner, paths to the optional real recordings."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def runner() -> CliRunner:
    """A CliRunner that keeps stdout and stderr apart (results vs logs)."""
    return CliRunner()


@pytest.fixture
def shared_data() -> Path:
    """The real recordings beside the checkout; skips the test where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (../shared/data)")
    return SHARED_DATA


def write_tone_dataset(root: Path, *, clips_per_class: int = 12, seconds: float = 1.2) -> Path:
    """A folder-per-class set with three easy classes (low tone, high tone, noise).

    Deterministic, tiny and quick to learn: for training and evaluation tests.
    """
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr = 16_000
    t = np.arange(int(seconds * sr)) / sr
    for label in ("low", "high", "noise"):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(clips_per_class):
            if label == "noise":
                wave = rng.normal(0, 0.3, t.size)
            else:
                f0 = (220.0 if label == "low" else 2500.0) * (1 + 0.05 * rng.standard_normal())
                wave = 0.5 * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.28))
                wave += rng.normal(0, 0.02, t.size)
            sf.write(folder / f"{label}_{i:02d}.wav", wave.astype("float32"), sr, subtype="PCM_16")
    return root


@pytest.fixture(scope="session")
def tone_prepared(tmp_path_factory) -> Path:
    """The tone data set, prepared (train / val / test) once per test session."""
    from serenesense_cli.data.prepare import prepare_dataset

    base = tmp_path_factory.mktemp("tones")
    source = write_tone_dataset(base / "source")
    prepare_dataset([source], base / "prepared", val_fraction=0.25, test_fraction=0.2, seed=0)
    return base / "prepared"
