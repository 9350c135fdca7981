"""The dependency rules between the package's layers (docs/architecture.md).

Read from the source (every import, also those inside functions), so a rule
broken by a lazy import is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from serenesense_cli.errors import EXTRA_MODULES

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


TRAIN_EXTRA = set(EXTRA_MODULES)
"""The import names of the ``train`` extra's packages."""
EDGE = (
    "serenesense_cli",
    "serenesense_cli.api",
    "serenesense_cli.cli",
    "serenesense_cli.audio.io",
    "serenesense_cli.inference.backends",
    "serenesense_cli.bench.worker",
)
EDGE_LAYERS = ("detect", "bench", "data")
"""What ``detect``, ``bench`` and ``data`` run on an .onnx model with the lean
install (no ``train`` extra): the CLI root imports every command module."""


def _top_level_imports(tree: ast.Module) -> set[str]:
    """Imports that run when the module is imported (not those inside functions
    or under ``if TYPE_CHECKING``); ``from a import b`` counts ``a`` and ``a.b``."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])
            for handler in getattr(node, "handlers", []):
                visit(handler.body)

    visit(tree.body)
    return names


def _module_tops() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = _top_level_imports(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _edge_starts(tops: dict[str, set[str]]) -> list[str]:
    layered = [m for m in tops if _layer(m) in EDGE_LAYERS and m != "serenesense_cli"]
    return sorted({*EDGE, *layered})


@pytest.mark.parametrize("start", _edge_starts(_module_tops()))
def test_the_edge_path_imports_no_train_extra_at_import_time(start):
    """Importing an edge module, and what it imports in turn, loads no module of
    the ``train`` extra: those come inside the functions of torch model paths."""
    tops = _module_tops()
    via: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        module = todo.pop()
        for name in tops[module]:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
                prefix = ".".join(parts[:i])
                if prefix not in via and (prefix in tops or parts[0] in TRAIN_EXTRA):
                    via[prefix] = module
                    if prefix in tops:
                        todo.append(prefix)
    heavy = sorted(m for m in via if m.split(".")[0] in TRAIN_EXTRA)
    chains = []
    for module in heavy:
        chain = [module]
        while via[chain[-1]] is not None:
            chain.append(str(via[chain[-1]]))
        chains.append(" <- ".join(chain))
    assert chains == []
