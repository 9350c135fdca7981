"""``serenesense data``: synthesise, prepare and inspect data sets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Prepare and inspect data sets.", no_args_is_help=True)
