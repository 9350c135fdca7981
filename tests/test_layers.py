"""The dependency rules between the package's layers (docs/architecture.md).

Read from the source (every import, also those inside functions), so a rule
broken by a lazy import is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "serenesense_cli"

RULES: dict[str, set[str]] = {
    # layer -> layers it must never import
    "models": {"cli", "train", "data", "detect", "evaluate", "export", "bench", "report"},
    "audio": {"cli", "train", "data", "detect", "evaluate", "export", "bench", "report", "models"},
    "inference": {"cli", "train", "detect", "evaluate", "export", "bench", "report"},
    "data": {"cli", "train", "detect", "evaluate", "export", "bench", "report"},
}
LIGHT = ("limits", "recipes", "errors", "config", "fileio", "progress", "paths")
"""Modules the CLI imports while parsing options: no torch, numpy or heavy layer."""


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[module] = names
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "serenesense_cli" else parts[0]


def test_only_the_cli_and_the_entry_point_import_the_cli():
    bad = [
        (module, name)
        for module, names in _imports().items()
        for name in names
        if _layer(name) == "cli"
        and _layer(module) != "cli"
        and module != "serenesense_cli.__main__"
    ]
    assert bad == []


@pytest.mark.parametrize("layer", sorted(RULES))
def test_lower_layers_never_import_higher_ones(layer):
    bad = [
        (module, name)
        for module, names in _imports().items()
        if _layer(module) == layer
        for name in names
        if name.startswith("serenesense_cli") and _layer(name) in RULES[layer]
    ]
    assert bad == []


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_stay_light(module):
    names = _imports()[f"serenesense_cli.{module}"]
    heavy = {"torch", "torchaudio", "timm", "onnx", "onnxruntime", "matplotlib", "numpy"}
    assert not {n.split(".")[0] for n in names} & heavy
    inner = {_layer(n) for n in names if n.startswith("serenesense_cli.")}
    assert inner <= set(LIGHT), inner
