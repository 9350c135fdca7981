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
