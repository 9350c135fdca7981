#!/usr/bin/env bash
# The main job on built-in data: synthesise a data set, prepare it, summarise it.
set -euo pipefail
OUT="${1:-demo}"
BIN="$(dirname "$0")/../.venv/bin"
"$BIN/serenesense" data synth --out "$OUT/synth"
"$BIN/serenesense" data prepare "$OUT/synth" --out "$OUT/prepared"
"$BIN/serenesense" data info "$OUT/prepared"
echo "demo outputs are in $OUT/"
