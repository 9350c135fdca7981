"""Facts about an exported ONNX graph: metadata, op types, front-end nodes.

Why a module of its own: export writes the metadata, quantize must find the
audio front end (STFT, mel filterbank and DCT ``MatMul``s, log,
normalisation) to keep it in float, and tests check both. Everything here
works on ``onnx.ModelProto`` objects and imports neither torch nor
onnxruntime.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from serenesense_cli.errors import BadInputError, ModelError
from serenesense_cli.inference.backends import ONNX_METADATA_KEY

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
"""Node property the dynamo exporter fills with the module path of each node."""

FRONTEND_SCOPE = "frontend"
"""Attribute name of every model's front end (``AudioClassifier.frontend``)."""

FORBIDDEN_OPS = frozenset({"ConvInteger"})
"""Ops that must never appear: the CPU provider does not run ConvInteger well
(the reference system shipped a dynamic-INT8 model that did not load)."""

INTEGER_OPS = frozenset(
    {
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "DynamicQuantizeMatMul",
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
    }
)
"""Ops that carry integer arithmetic or quantization; none may touch the front end."""


def load_model(path: str | Path, *, external: bool = True) -> Any:
    """``onnx.load`` with a one-line error naming the file."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external)
    except Exception as error:
        raise ModelError(f"{path}: not a readable ONNX model ({error})") from error


def save_model(model: Any, path: str | Path) -> Path:
    """Save as one self-contained file (no external data), atomically."""
    import onnx

    from serenesense_cli.fileio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return path


def read_metadata(model: Any) -> dict[str, Any]:
    """The serenesense JSON metadata of a loaded ModelProto ({} when absent)."""
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            try:
                return json.loads(prop.value)
            except json.JSONDecodeError:
                return {}
    return {}


def set_metadata(model: Any, meta: dict[str, Any]) -> None:
    """Store ``meta`` as the ``serenesense`` property plus plain, greppable keys.

    The plain keys (class names, sample rate, window, model name, metrics)
    serve tools that show ONNX properties (Netron, ``onnx`` scripts) without
    parsing JSON; readers in serenesense use the JSON document only.
    """
    plain = {
        ONNX_METADATA_KEY: json.dumps(meta, sort_keys=False),
        "classes": json.dumps(list(meta.get("classes", []))),
        "sample_rate": str(meta.get("sample_rate", "")),
        "clip_seconds": str(meta.get("clip_seconds", "")),
        "window_samples": str(
            round(float(meta.get("clip_seconds", 0)) * int(meta.get("sample_rate", 0) or 0))
        ),
        "model_name": str((meta.get("model") or {}).get("name", "")),
        "metrics": json.dumps(meta.get("metrics") or {}),
        "input": "waveform (batch, samples) float32, 16 kHz mono",
        "outputs": "logits (batch, classes), probabilities (batch, classes)",
    }
    keep = [p for p in model.metadata_props if p.key not in plain]
    del model.metadata_props[:]
    for prop in keep:
        model.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in plain.items():
        model.metadata_props.add(key=key, value=value)


def op_counts(model: Any) -> dict[str, int]:
    """How often each op type occurs in the main graph."""
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def node_scopes(node: Any) -> list[str]:
    """The module path the dynamo exporter recorded for ``node`` ([] if none)."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES_KEY:
            try:
                scopes = json.loads(prop.value.replace("'", '"'))
            except json.JSONDecodeError:
                return []
            return [str(s) for s in scopes] if isinstance(scopes, list) else []
    return []


def is_frontend_node(node: Any) -> bool:
    """True for nodes inside the model's ``frontend`` module."""
    return any(
        scope == FRONTEND_SCOPE or scope.endswith("." + FRONTEND_SCOPE)
        for scope in node_scopes(node)
    )


def frontend_nodes(model: Any) -> list[str]:
    """Names of the front-end nodes (STFT, mel and DCT MatMuls, log, normalisation).

    Found through the module path the dynamo exporter writes on each node,
    plus everything the front-end output depends on (constants, shape ops),
    so nothing upstream of the features is quantized.
    """
    nodes = list(model.graph.node)
    marked = [n for n in nodes if is_frontend_node(n)]
    if not marked:
        return []
    producers = {out: n for n in nodes for out in n.output}
    names = {n.name for n in marked}
    stack = [i for n in marked for i in n.input]
    while stack:
        tensor = stack.pop()
        producer = producers.get(tensor)
        if producer is not None and producer.name not in names:
            names.add(producer.name)
            stack.extend(producer.input)
    return [n.name for n in nodes if n.name in names]


def edge_layers(model: Any, op_types: tuple[str, ...], skip: list[str]) -> list[str]:
    """The first and the last node of ``op_types`` (graph order), leaving out ``skip``.

    Static INT8 keeps these in float: the first convolution sees the whole
    dynamic range of the log-mel (quiet and loud clips, padding), which one
    int8 scale cannot hold without flipping decisions, and the classifier
    layer turns small errors into different top classes. Both are a tiny
    share of the compute.
    """
    skipped = set(skip)
    names = [n.name for n in model.graph.node if n.op_type in op_types and n.name not in skipped]
    return list(dict.fromkeys(names[:1] + names[-1:]))


def require_frontend_nodes(model: Any, path: str | Path) -> list[str]:
    """:func:`frontend_nodes`, or a ModelError when the graph does not mark them."""
    names = frontend_nodes(model)
    if not names:
        raise ModelError(
            f"{path}: cannot find the audio front-end nodes in this graph, so they "
            "cannot be kept in float",
            hint="export the model again with `serenesense export` (torch dynamo exporter)",
        )
    return names


def onnx_output_path(out_path: str | Path | None, default: Path) -> Path:
    """Where an export or quantization writes: ``out_path`` or ``default``, an ``.onnx`` file."""
    out = Path(out_path) if out_path is not None else default
    if out.suffix.lower() != ".onnx":
        raise BadInputError(f"{out}: the output file must end in .onnx")
    return out
