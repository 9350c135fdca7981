"""Configuration: frozen dataclass defaults, TOML files, and precedence.

Precedence is built-in defaults (the model's reference recipe) < ``--config
file.toml`` < command-line flags. Unknown keys are an error with a suggestion,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from serenesense_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

T = TypeVar("T")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from error


def _check_keys(cls: type, values: Mapping[str, Any], where: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            raise ConfigError(
                f"{where}: unknown setting {key!r}",
                hint=f"did you mean {close[0]!r}?" if close else f"known: {', '.join(names)}",
            )


def _coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    """Light type checking for TOML values (ints where floats are expected, lists->tuples)."""
    text = str(annotation)
    if value is None:
        return None
    if annotation is float or text in ("float", "float | None"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, not {value!r}")
        return float(value)
    if annotation is int or text in ("int", "int | None"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, not {value!r}")
        return value
    if annotation is bool or text == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
        return value
    if annotation is str or text in ("str", "str | None"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, not {value!r}")
        return value
    if text.startswith("tuple") and isinstance(value, list):
        return tuple(value)
    return value


def merge_config(base: T, overrides: Mapping[str, Any], *, where: str) -> T:
    """Return ``base`` with ``overrides`` applied, checking names and types."""
    cls = type(base)
    _check_keys(cls, overrides, where)
    hints = get_type_hints(cls)
    clean = {k: _coerce(v, hints.get(k), k, where) for k, v in overrides.items()}
    return dataclasses.replace(base, **clean)  # type: ignore[type-var]


def to_toml(values: Mapping[str, Any]) -> str:
    """Serialise a flat (one level of tables allowed) mapping as TOML.

    Small and dependency-free on purpose: configs hold only scalars, lists of
    scalars and one level of tables (e.g. ``[model_args]``).
    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        for key, value in table.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
