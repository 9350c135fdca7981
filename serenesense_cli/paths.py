"""Where things go: run folders (numbered on repeats).

Nothing is written outside ``runs/`` or the output paths the user names.
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_RUNS_DIR = Path("runs")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_run_name(name: str) -> str:
    """Run names become folder names: letters, digits, '.', '_' and '-' only."""
    from serenesense_cli.errors import BadInputError

    if not _SAFE_NAME.match(name):
        raise BadInputError(
            f"invalid run name {name!r}",
            hint="use letters, digits, '.', '_' and '-' (no slashes or spaces)",
        )
    return name


def new_run_dir(runs_dir: str | Path, task: str, name: str) -> Path:
    """Create ``runs_dir/task/name`` (or ``name2``, ``name3``... when taken) and return it.

    ``mkdir(exist_ok=False)`` makes the choice race-free between processes.
    """
    check_run_name(name)
    parent = Path(runs_dir) / task
    parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        candidate = parent / (name if number == 1 else f"{name}{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"too many runs named {name!r} in {parent}")  # pragma: no cover
