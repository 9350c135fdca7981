"""Where inference runs: ``--device`` for onnxruntime providers and torch devices.

``cpu`` is the default everywhere (measured fastest for these small models on
a Pi or a laptop). ``cuda`` uses a GPU when the runtime has one: onnxruntime's
TensorRT and CUDA execution providers (from the ``onnxruntime-gpu`` wheel) or
torch's CUDA; without one, inference falls back to the CPU and says so in one
note instead of failing, so a script written for a GPU box still runs.
``auto`` takes a GPU when there is one, silently.
"""

from __future__ import annotations

from collections.abc import Sequence

INFERENCE_DEVICES = ("cpu", "cuda", "auto")
"""What ``--device`` accepts on evaluate, detect and bench."""

CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
"""onnxruntime's GPU providers, most preferred first."""


def onnx_providers(device: str, available: Sequence[str]) -> tuple[list[str], str | None]:
    """The providers to ask onnxruntime for, and a note when ``device`` cannot be had.

    ``available`` is ``onnxruntime.get_available_providers()``; the CPU provider
    always ends the list, so any node a GPU provider cannot run still runs.
    """
    _check_device(device)
    if device == "cpu":
        return [CPU_PROVIDER], None
    gpu = [name for name in GPU_PROVIDERS if name in available]
    if device == "auto":  # TensorRT builds an engine per shape first: only when asked for
        gpu = [name for name in gpu if name != "TensorrtExecutionProvider"]
    if gpu:
        return [*gpu, CPU_PROVIDER], None
    note = (
        None
        if device == "auto"
        else "--device cuda: this onnxruntime has no CUDA or TensorRT provider "
        "(install onnxruntime-gpu); running on the CPU"
    )
    return [CPU_PROVIDER], note


def torch_device(device: str) -> tuple[str, str | None]:
    """The torch device for ``device``, and a note when it falls back to the CPU."""
    _check_device(device)
    if device == "cpu":
        return "cpu", None
    import torch

    if torch.cuda.is_available():
        return "cuda", None
    if device == "auto":
        return "cpu", None
    return "cpu", "--device cuda: torch sees no CUDA GPU here; running on the CPU"


def _check_device(device: str) -> None:
    if device not in INFERENCE_DEVICES:
        from serenesense_cli.errors import BadInputError

        raise BadInputError(
            f"unknown device {device!r}", hint=f"use one of {', '.join(INFERENCE_DEVICES)}"
        )
