"""The one helper every command module declares its flags with.

Why: each flag is a help text, its names and a ``--help`` panel; written
once here, the option declarations of train, pretrain, bench and detect
cannot drift apart in how they pass them to Typer.
"""

from __future__ import annotations

from typing import Any

import typer


def option(help_text: str, *names: str, panel: str | None = None, **kwargs: Any) -> Any:
    """A Typer option with ``help_text`` shown in the ``--help`` panel ``panel``."""
    return typer.Option(*names, help=help_text, rich_help_panel=panel, **kwargs)
