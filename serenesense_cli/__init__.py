"""serenesense: recognise battlefield sounds, from data preparation to a Raspberry Pi.

The Python API (:mod:`serenesense_cli.api`, docs/api.md) is also reachable from
here: ``from serenesense_cli import load_model, detect_file``. Its names are
imported on first use, so ``import serenesense_cli`` (which every command
does) stays as light as the ``--help`` it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from serenesense_cli.api import (
        Backend,
        DetectConfig,
        Event,
        bench_models,
        classify,
        detect_file,
        detect_waveform,
        evaluate_model,
        export_onnx,
        load_model,
        prepare_dataset,
        quantize_onnx,
        synthesize_dataset,
        train_model,
    )

__all__ = [
    "Backend",
    "DetectConfig",
    "Event",
    "__version__",
    "bench_models",
    "classify",
    "detect_file",
    "detect_waveform",
    "evaluate_model",
    "export_onnx",
    "load_model",
    "prepare_dataset",
    "quantize_onnx",
    "synthesize_dataset",
    "train_model",
]


def __getattr__(name: str) -> Any:
    """The API's names, from :mod:`serenesense_cli.api` on first use."""
    if name in __all__:
        from serenesense_cli import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
