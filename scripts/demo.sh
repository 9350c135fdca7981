#!/usr/bin/env bash
# The main job on built-in data: `serenesense demo` synthesises a data set,
# prepares it, trains the reference CNN, evaluates, exports to ONNX, quantizes
# to INT8, benchmarks, detects events in a synthesised recording and writes a
# report, printing where everything went.
set -euo pipefail
OUT="${1:-demo}"
BIN="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin"
"$BIN/serenesense" demo --out "$OUT"
