"""Why a training loop stops early: Ctrl-C, ``--max-steps`` or ``--time-limit``.

Both loops (training and pretraining) stop only at a step boundary, so the
checkpoint written on the way out is consistent and a resumed run continues
exactly where this one left off.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any


class StopRequest:
    """First Ctrl-C (SIGINT) asks the loop to stop at the next step boundary,
    so the checkpoint is consistent; a second one interrupts at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: Any = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self._event.is_set():
                raise KeyboardInterrupt
            self._event.set()

        signal.signal(signal.SIGINT, handler)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def stop_reason(
    stop_request: StopRequest, max_steps: int, global_step: int, deadline: float | None
) -> str:
    """Why a loop stops after this step ("completed" = go on); shared by train and pretrain."""
    if stop_request.is_set():
        return "interrupted"
    if max_steps and global_step >= max_steps:
        return "max_steps"
    if deadline is not None and time.perf_counter() >= deadline:
        return "time_limit"
    return "completed"
