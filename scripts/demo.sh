#!/usr/bin/env bash
# The main job on built-in data: synthesise a MAD-layout data set, prepare it,
# summarise it, and train the reference CNN on it briefly.
set -euo pipefail
OUT="${1:-demo}"
BIN="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin"
"$BIN/serenesense" data synth --out "$OUT/synth"
"$BIN/serenesense" data prepare "$OUT/synth" --out "$OUT/prepared"
"$BIN/serenesense" data info "$OUT/prepared"
run=$("$BIN/serenesense" train cnn --data "$OUT/prepared" --epochs 15 --runs-dir "$OUT/runs" | tail -n 1)
echo
echo "synthetic data set:  $OUT/synth"
echo "prepared data set:   $OUT/prepared"
echo "trained CNN run:     $run"
