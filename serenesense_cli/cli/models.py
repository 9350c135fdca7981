"""``serenesense models``: the registered architectures and their sizes."""

from __future__ import annotations

from typing import Annotated

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._output import OutputFormat, emit_csv, emit_json, emit_table
from serenesense_cli.limits import COMMANDS


def models_command(
    num_classes: Annotated[
        int,
        typer.Option(
            "--num-classes",
            help="Classes to size the heads for.",
            callback=within(COMMANDS["num_classes"]),
        ),
    ] = 7,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="A table, JSON or CSV.")
    ] = OutputFormat.table,
) -> None:
    """List the models `serenesense train` can build, with parameter counts.

    Examples:

      serenesense models

      serenesense models --num-classes 8 -f json | jq '.[] | select(.recommended)'
    """
    from serenesense_cli.models import create_model, get_model_spec, list_models
    from serenesense_cli.models.registry import count_parameters

    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        variants: list[str | None] = list(spec.sizes) or [None]
        for size in variants:
            model = create_model(name, num_classes=num_classes, **({"size": size} if size else {}))
            rows.append(
                {
                    "model": name if size is None else f"{name} --size {size}",
                    "parameters": count_parameters(model),
                    "window_s": spec.default_clip_seconds,
                    "frontend": spec.frontend,
                    "recommended": spec.recommended,
                    "description": spec.description,
                }
            )
    columns = ["model", "parameters", "window_s", "frontend", "recommended", "description"]
    if output_format is OutputFormat.json:
        emit_json(rows)
    elif output_format is OutputFormat.csv:
        emit_csv(rows, columns)
    else:
        shown = [{**r, "recommended": "★ recommended" if r["recommended"] else ""} for r in rows]
        emit_table(shown, columns, title=f"Models ({num_classes} classes)")
