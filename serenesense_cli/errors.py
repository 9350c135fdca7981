"""The exception hierarchy: every domain failure is a sentence with a hint.

The CLI maps these to a one-line message on stderr and an exit code
(1 = the work failed, 2 = bad usage or bad input), so library code raises
them instead of printing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class SereneSenseError(Exception):
    """Base class: a failure that the user can understand and act on."""

    exit_code: int = EXIT_FAILURE
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class BadInputError(SereneSenseError):
    """The user gave us something we cannot use (file, option, data set)."""

    exit_code = EXIT_BAD_INPUT


class AudioFileError(BadInputError):
    """An audio file is missing, unreadable, corrupt or holds unusable samples."""

    def __init__(self, path: str | Path, problem: str, *, hint: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}", hint=hint)


class DataSetError(BadInputError):
    """A data source or prepared data set is malformed or does not match."""


class ConfigError(BadInputError):
    """A configuration file or option value is invalid."""


class ModelError(BadInputError):
    """A model name, weights file or run folder cannot be used."""


class TrainingError(SereneSenseError):
    """Training could not go on (NaN loss, out of memory, ...)."""


class DependencyError(SereneSenseError):
    """An optional system library or package is missing."""


TRAIN_EXTRA = "train"
"""The optional-dependency group (``pip install 'serenesense[train]'``) that
holds everything the lean edge install leaves out."""

EXTRA_MODULES: dict[str, str] = {
    # import name -> distribution name, for the modules of the train extra
    "torch": "torch",
    "torchaudio": "torchaudio",
    "timm": "timm",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "safetensors": "safetensors",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
}

ONNX_ONLY_COMMANDS = frozenset({"detect", "bench"})
"""Commands that run an exported .onnx model on the lean install; they need the
extra only for torch models (a run folder, a .safetensors file)."""


class MissingExtraError(SereneSenseError):
    """A command needs the ``train`` extra, which this install left out.

    Exit code 2: the install does not fit the command asked for, which the
    user fixes by installing the extra, not by reporting a bug.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, module: str, *, command: str | None = None) -> None:
        self.module = module
        self.package = EXTRA_MODULES.get(module, module)
        who = f"serenesense {command}" if command else "this command"
        hint = f"pip install 'serenesense[{TRAIN_EXTRA}]'"
        if command in ONNX_ONLY_COMMANDS:
            hint += ", or pass an exported .onnx model (it needs no torch)"
        super().__init__(
            f"{who} needs the training extra ({self.package} is not installed)", hint=hint
        )


def missing_extra(error: BaseException, *, command: str | None = None) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for an import of a train-extra module that
    failed because the module is absent, else ``None`` (a real bug stays one).

    The lean install imports those modules only inside the functions that need
    them, so the failed import itself says which extra is missing: one mapping
    here instead of a check before every heavy import.
    """
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.split(".")[0]
    if top not in EXTRA_MODULES or not _absent(top):
        return None  # e.g. a broken torch install: its own message says more
    return MissingExtraError(top, command=command)


def _absent(module: str) -> bool:
    """True when ``module`` cannot be found (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:
        return True
    except ValueError:  # in sys.modules without a spec: it is there
        return False
