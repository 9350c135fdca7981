"""Progress reporting without printing: library code calls a callback.

The library never prints; long-running functions take ``on_progress`` and call
it with a :class:`ProgressUpdate`. The CLI turns updates into rich progress bars
on stderr; tests and the Python API may pass ``None`` or collect them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProgressUpdate:
    """One step of a long task: ``stage`` names the task, ``done`` of ``total`` units."""

    stage: str
    done: int
    total: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressUpdate], None]


def report(
    callback: ProgressCallback | None,
    stage: str,
    done: int,
    total: int | None = None,
    **info: Any,
) -> None:
    """Send an update if anybody listens (saves ``if on_progress`` everywhere)."""
    if callback is not None:
        callback(ProgressUpdate(stage=stage, done=done, total=total, info=info))
