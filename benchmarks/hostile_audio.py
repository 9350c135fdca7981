"""Peak memory of `data prepare` on mutated audio files and of `detect` at odd rates.

Why: a corrupt header can claim any sample rate, channel count or length;
issue 14 asks that no such file exhausts memory. This script writes seeded
mutations of small valid WAV and FLAC files (header bytes flipped, fields
overwritten, bodies truncated or padded), prepares them as a data set, and
runs `detect` on valid files at unusual sample rates, each command in its own
process, and reports the peak resident memory (the children's ``ru_maxrss``).

Usage:

    python benchmarks/hostile_audio.py --work /tmp/hostile --files 300 \\
        --model runs/train/melcnn/export/melcnn.onnx

The test suite runs :func:`write_mutations` on a few hundred files too (with
an allocation bound), so the generator stays exercised.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ODD_RATES = (11_127, 7_999, 1_000, 384_000)
"""Valid files at these rates go through `detect` (11,127 Hz took 6.3 GB once)."""


def _base_files() -> list[tuple[str, bytes]]:
    """Small valid files to mutate: (suffix, bytes)."""
    rng = np.random.default_rng(1234)
    out = []
    for rate, channels, fmt, subtype, suffix in (
        (16_000, 1, "WAV", "PCM_16", ".wav"),
        (44_100, 2, "WAV", "FLOAT", ".wav"),
        (22_050, 1, "FLAC", "PCM_16", ".flac"),
    ):
        samples = (0.3 * rng.standard_normal((rate // 4, channels))).astype(np.float32)
        buffer = io.BytesIO()
        sf.write(buffer, np.clip(samples, -1, 1), rate, format=fmt, subtype=subtype)
        out.append((suffix, buffer.getvalue()))
    return out


_HOSTILE_RATES = (0, 1, 7_999, 11_127, 2**31 - 1, 999_999)
_HOSTILE_CHANNELS = (0, 3, 1_000, 65_535)


def mutate(data: bytes, suffix: str, rng: np.random.Generator) -> bytes:
    """One seeded mutation of a valid file's bytes."""
    raw = bytearray(data)
    kind = int(rng.integers(0, 7))
    if kind == 0:  # flip header bytes
        for _ in range(int(rng.integers(1, 6))):
            raw[int(rng.integers(0, min(64, len(raw))))] ^= int(rng.integers(1, 256))
    elif kind == 1:  # flip bytes anywhere
        for _ in range(int(rng.integers(1, 40))):
            raw[int(rng.integers(0, len(raw)))] ^= int(rng.integers(1, 256))
    elif kind == 2:  # truncate
        raw = raw[: int(rng.integers(0, len(raw)))]
    elif kind == 3:  # append garbage
        raw += rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
    elif kind == 4 and suffix == ".wav":  # a hostile sample rate (byte rate kept)
        raw[24:28] = int(rng.choice(_HOSTILE_RATES)).to_bytes(4, "little")
    elif kind == 5 and suffix == ".wav":  # a hostile channel count
        raw[22:24] = int(rng.choice(_HOSTILE_CHANNELS)).to_bytes(2, "little")
    elif kind == 6 and suffix == ".wav":  # a hostile data-chunk size
        raw[40:44] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
    else:  # FLAC: overwrite a run of STREAMINFO (rate, channels, total samples)
        start = int(rng.integers(18, 30))
        raw[start : start + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(raw)


def write_mutations(folder: Path, count: int, *, seed: int = 0) -> list[Path]:
    """``count`` mutated files in two class folders (``folder/a``, ``folder/b``)."""
    rng = np.random.default_rng(seed)
    bases = _base_files()
    paths = []
    for n in range(count):
        suffix, data = bases[n % len(bases)]
        path = folder / ("a" if n % 2 else "b") / f"m{n:04d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mutate(data, suffix, rng))
        paths.append(path)
    return paths


def _peak_rss_mb(command: list[str]) -> tuple[float, float, int]:
    """Run ``command``; (its peak RSS in MB, seconds, exit code).

    ``ru_maxrss`` of RUSAGE_CHILDREN is the largest child a process has waited
    for, so each command runs under a fresh wrapper process whose only child
    it is: the figure is that command's own peak (what ``/usr/bin/time -v``
    calls "Maximum resident set size").
    """
    wrapper = [
        sys.executable,
        "-c",
        "import resource, subprocess, sys; "
        "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)",
        *command,
    ]
    started = time.monotonic()
    done = subprocess.run(wrapper, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    kilobytes = float(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else float("nan")
    return kilobytes / 1024, seconds, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (replaced)")
    parser.add_argument("--files", type=int, default=300, help="mutated files to prepare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, help="an .onnx model for the detect runs")
    args = parser.parse_args(argv)
    cli = [sys.executable, "-m", "serenesense_cli"]
    if args.work.exists():
        shutil.rmtree(args.work)
    sources = args.work / "mutated"
    write_mutations(sources, args.files, seed=args.seed)
    rows = []
    mb, seconds, code = _peak_rss_mb(
        [*cli, "data", "prepare", str(sources), "--out", str(args.work / "prepared")]
    )
    rows.append(
        {
            "command": f"data prepare ({args.files} mutated files)",
            "peak_rss_mb": mb,
            "seconds": seconds,
            "exit": code,
        }
    )
    if args.model is not None:
        for rate in ODD_RATES:
            path = args.work / f"tone_{rate}.wav"
            t = np.arange(2 * rate) / rate
            sf.write(path, (0.1 + 0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
            mb, seconds, code = _peak_rss_mb(
                [*cli, "detect", str(path), "--model", str(args.model), "--format", "json"]
            )
            rows.append(
                {
                    "command": f"detect (2 s at {rate:,} Hz)",
                    "peak_rss_mb": mb,
                    "seconds": seconds,
                    "exit": code,
                }
            )
    print("| command | peak RSS (MB) | seconds | exit |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['command']} | {row['peak_rss_mb']:.0f} | {row['seconds']:.1f} | "
            f"{row['exit']} |"
        )
    (args.work / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
