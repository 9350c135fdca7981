"""Range checks for numeric flags, run while the command line is parsed.

Why at parse time: the check then happens before the command imports torch
or opens a file, and the message names the flag and its allowed range
(``serenesense_cli.limits`` holds the ranges).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from serenesense_cli.errors import BadInputError
from serenesense_cli.limits import Bound


def within(bound: Bound) -> Callable[[typer.CallbackParam, Any], Any]:
    """A Typer option callback refusing values outside ``bound`` (``None``: not given)."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return value
        name = max(param.opts, key=len) if param.opts else str(param.name)
        problem = bound.problem(name, value)
        if problem:
            raise BadInputError(problem)
        return value

    return check
