"""The exception hierarchy: every domain failure is a sentence with a hint.

The CLI maps these to a one-line message on stderr and an exit code
(1 = the work failed, 2 = bad usage or bad input), so library code raises
them instead of printing.
"""

from __future__ import annotations

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
