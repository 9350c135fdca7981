"""How fast ``serenesense detect`` gets through a long recording, per model form.

Builds a recording of ``--minutes`` (default 60) from synthesised scenes
(``data/scenes.py``: background with events, a different scene each
minute, written block by block so the builder needs little memory), then
runs ``serenesense detect REC --model M --format csv --out ...`` once per
model given, each in a fresh process under ``/usr/bin/time -v``, and prints
the real-time factor (audio seconds per wall second, from the whole
process: start-up and model loading included), the detector's own scoring
speed (from its summary line) and the peak RSS.

    python benchmarks/detect_throughput.py runs/train/melcnn/export/model.onnx \\
        runs/train/melcnn/export/model.int8.onnx --minutes 60 --hop 1

Everything generated goes under ``--work``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_recording(path: Path, minutes: int) -> Path:
    """``minutes`` of 16 kHz mono PCM, one synthesised 60 s scene per minute (cycled)."""
    import soundfile as sf

    from serenesense_cli.data.scenes import synthesize_scene

    if path.is_file() and sf.info(str(path)).duration >= minutes * 60 - 1:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    scenes = [synthesize_scene(seconds=60.0, seed=seed).audio for seed in range(min(6, minutes))]
    with sf.SoundFile(str(path), "w", samplerate=16_000, channels=1, subtype="PCM_16") as out:
        for minute in range(minutes):
            out.write(scenes[minute % len(scenes)])
    return path


def run_detect(model: Path, recording: Path, out: Path, hop: float, threads: int) -> dict:
    command = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "serenesense_cli",
        "detect",
        str(recording),
        "--model",
        str(model),
        "--hop",
        str(hop),
        "--threads",
        str(threads),
        "--no-spin",
        "--format",
        "csv",
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"detect failed on {model}:\n{done.stderr[-2000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    scoring = re.search(r"(\d+)x real time", done.stderr)
    events = re.search(r"(\d+) event\(s\)", done.stderr)
    return {
        "model": str(model),
        "wall_s": wall,
        "scoring_rtf": int(scoring.group(1)) if scoring else None,
        "peak_rss_mb": int(rss.group(1)) / 1024 if rss else None,
        "events": int(events.group(1)) if events else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/serenesense-detect-bench"))
    args = parser.parse_args()
    recording = build_recording(args.work / f"recording-{args.minutes}min.wav", args.minutes)
    seconds = args.minutes * 60
    print(
        f"{args.minutes} min recording ({recording}), hop {args.hop:g} s, "
        f"{args.threads} threads, idle threads sleeping"
    )
    print()
    print("| model | events | wall s | real time (whole process) | scoring only | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        row = run_detect(model, recording, args.work / f"{model.stem}.csv", args.hop, args.threads)
        print(
            f"| {model} | {row['events']} | {row['wall_s']:.1f} | "
            f"{seconds / row['wall_s']:.0f}x | {row['scoring_rtf']}x | {row['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
