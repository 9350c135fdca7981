"""Atomic writes: a crash or Ctrl-C never leaves a half-written file behind.

Everything serenesense writes (caches, checkpoints, reports, exports) goes to a
temporary file in the target's folder and is renamed into place when complete.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-wide and not thread-safe


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; use what open() would
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, *, errors: str = "strict") -> Path:
    """Write text (UTF-8) atomically; ``errors="surrogateescape"`` keeps file names
    that are not valid UTF-8 byte for byte (read them back the same way)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors=errors)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def json_value(value: Any) -> Any:
    """``value`` as strict JSON data: NaN and infinities become ``None`` (JSON
    has neither, and ``-Infinity`` breaks every other parser), numpy/torch
    scalars become Python numbers, keys become strings, anything else its text."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if not isinstance(value, (str, int, float, bool)) and hasattr(value, "item"):
        value = value.item()  # numpy / torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def json_text(payload: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``payload`` (see :func:`json_value`)."""
    return json.dumps(json_value(payload), indent=indent, allow_nan=False)


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write pretty, strict JSON atomically."""
    return write_text_atomic(path, json_text(payload, indent=2) + "\n")


def _resolved(path: Path) -> Path:
    """``path`` with symlinks resolved, also when it does not exist yet."""
    return Path(os.path.realpath(path))


def refuse_input_as_output(
    out: str | Path,
    inputs: Iterable[str | Path],
    *,
    option: str = "--out",
    read_from_folders: Iterable[str] = (),
) -> None:
    """Refuse an output path that is one of the command's inputs.

    Why: writing results over the recording, model or data set the command
    reads destroys the user's work. Paths are compared after resolving
    symlinks. An input folder counts as the files in it whose extension is in
    ``read_from_folders`` (e.g. audio files a command scans a folder for), and
    as itself.
    """
    from serenesense_cli.errors import BadInputError

    target = _resolved(Path(out))
    suffixes = {s.lower() for s in read_from_folders}
    for given in inputs:
        source = _resolved(Path(given))
        inside = source.is_dir() and source in target.parents
        if target == source or (inside and target.suffix.lower() in suffixes):
            raise BadInputError(
                f"{out}: {option} would overwrite an input of this command ({given})",
                hint=f"choose another path for {option}",
            )
