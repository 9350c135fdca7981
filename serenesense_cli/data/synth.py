"""Write a synthetic data set in MAD's distributed layout, so everything runs without MAD.

Why: training, evaluation, export and detection all need a data set, and the
real MAD set is large and cannot ship with the code or download in CI. This
writes the same tree MAD unpacks to (``training.csv``, ``test.csv``,
``training/<video>/<n>.wav``, ``test/<video>/<n>.wav``), filled with the
procedural class signatures of :mod:`serenesense_cli.data.sounds`.

As in MAD, a "video" is one source: its clips share one parameter set (one
engine, one rotor, one voice, one recording place), test videos never appear
in training, and video ids are unique across the tree, so code that must split
by video is exercised for real. The same seed gives byte-identical files.

The tree is built in a hidden sibling folder and renamed into place at the end,
so an interrupted run leaves nothing half-written behind.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serenesense_cli.audio.io import write_audio
from serenesense_cli.data.mad import MAD_CLASSES, MAD_CSV_COLUMNS, MAD_SPLIT_CSVS
from serenesense_cli.data.sounds import GENERATOR_VERSION, draw_source, make_event
from serenesense_cli.errors import BadInputError, SereneSenseError
from serenesense_cli.fileio import write_text_atomic
from serenesense_cli.progress import ProgressCallback, report

MAD_MAX_SECONDS = 10.0
"""MAD's clips are at most 10 s long."""

MIN_CLIP_SECONDS = 0.1
"""Shorter clips hold no recognisable sound (and no MFCC frame worth having)."""

README_MARKER = "serenesense synthetic data set (MAD layout)"
"""First line of the README.txt that marks a folder as a previous synth output."""

_SPLIT_FOLDERS = {"train": "training", "test": "test"}
_CSV_OF_SPLIT = {split: name for name, split in MAD_SPLIT_CSVS.items()}
_OWN_ENTRIES = frozenset({"README.txt", *MAD_SPLIT_CSVS, *_SPLIT_FOLDERS.values()})
_STAGE = "synthesise"
_PARALLEL_MIN_SECONDS = 120.0  # below this much audio, starting workers costs more than it saves

# Domain-separation keys for the seeded random streams.
_LAYOUT, _SOURCE, _CLIP = 0, 1, 2


@dataclass(frozen=True)
class SynthSummary:
    """What was written: the root, class names, clip counts and how much audio."""

    root: Path
    classes: tuple[str, ...]
    clips: dict[str, dict[str, int]]
    """split ("train", "test") -> class name -> number of clips."""
    seconds: float
    """Total audio written, in seconds."""
    videos: int


@dataclass(frozen=True)
class _Settings:
    """Everything the written files depend on (the worker count does not change them):
    checked, planned and recorded in the README from this one record."""

    clips_per_class: int
    videos_per_class: int
    test_videos_per_class: int
    seed: int
    min_seconds: float
    max_seconds: float
    sample_rate: int


@dataclass(frozen=True)
class _Clip:
    """One clip to make: where it goes and the seeds that determine it."""

    split: str
    video_id: int
    class_index: int
    video_index: int
    clip_index: int
    seed: int
    min_seconds: float
    max_seconds: float
    sample_rate: int

    @property
    def path(self) -> str:
        return f"{_SPLIT_FOLDERS[self.split]}/{self.video_id}/{self.clip_index}.wav"


def synthesize_dataset(
    out_dir: str | Path,
    *,
    clips_per_class: int = 40,
    videos_per_class: int = 8,
    test_videos_per_class: int = 2,
    seed: int = 0,
    min_seconds: float = 1.0,
    max_seconds: float = 10.0,
    sample_rate: int = 16000,
    on_progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> SynthSummary:
    """Write a seeded synthetic data set in MAD's layout to ``out_dir``.

    Each class gets ``videos_per_class`` sources, ``test_videos_per_class`` of
    them held out as the test split, and ``clips_per_class`` clips spread
    unevenly over its videos (at least one each, as MAD's videos vary in
    length). With ``test_videos_per_class=0`` the test split is empty (a
    header-only ``test.csv``). ``workers`` processes generate clips (``None``: one per CPU core
    for large sets, none for small ones); the output does not depend on it.

    Refuses a non-empty ``out_dir`` unless it is an earlier synthetic set,
    which is then replaced whole.
    """
    settings = _Settings(
        clips_per_class=clips_per_class,
        videos_per_class=videos_per_class,
        test_videos_per_class=test_videos_per_class,
        seed=seed,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        sample_rate=sample_rate,
    )
    _validate(settings, workers=workers)
    root = Path(out_dir).expanduser().resolve()  # a symlinked folder: write its target
    _check_target(root)
    plan = _plan(settings)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = _fresh_sibling(root, "synth")
        staging.mkdir()  # not mkdtemp: its 0700 mode would end up on the data set
    except OSError as error:
        raise BadInputError(
            f"cannot write the data set into {root.parent}: {error.strerror or error}",
            hint="choose an output folder you can write to",
        ) from error
    try:
        lengths = _write_clips(staging, plan, _worker_count(workers, plan), on_progress)
        for folder in _SPLIT_FOLDERS.values():  # the same tree even with an empty split
            (staging / folder).mkdir(exist_ok=True)
        _write_csvs(staging, plan)
        write_text_atomic(staging / "README.txt", _readme(settings))
        _swap_into_place(staging, root)
    except OSError as error:
        raise SereneSenseError(
            f"writing the synthetic data set failed: {error}",
            hint="check free disk space and permissions, then run again",
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    clips: dict[str, dict[str, int]] = {
        split: dict.fromkeys(MAD_CLASSES, 0) for split in ("train", "test")
    }
    for clip in plan:
        clips[clip.split][MAD_CLASSES[clip.class_index]] += 1
    return SynthSummary(
        root=root,
        classes=MAD_CLASSES,
        clips=clips,
        seconds=sum(lengths) / sample_rate,
        videos=len({clip.video_id for clip in plan}),
    )


# --------------------------------------------------------------------------- checks


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _validate(settings: _Settings, *, workers: int | None) -> None:
    """Check every argument up front, so a bad one fails before any work is done."""
    whole = ("clips_per_class", "videos_per_class", "test_videos_per_class", "seed", "sample_rate")
    for name in whole:
        value = getattr(settings, name)
        if not _is_int(value):
            raise BadInputError(f"{name} must be a whole number, not {value!r}")
    clips, videos = settings.clips_per_class, settings.videos_per_class
    test_videos = settings.test_videos_per_class
    if videos < 1:
        raise BadInputError(f"videos_per_class must be at least 1, not {videos}")
    if not 0 <= test_videos < videos:
        raise BadInputError(
            f"test_videos_per_class must be between 0 and videos_per_class - 1 "
            f"({videos - 1}), not {test_videos}",
            hint="every class needs at least one training video; 0 leaves the test split empty",
        )
    if clips < videos:
        raise BadInputError(
            f"clips_per_class ({clips}) must be at least videos_per_class ({videos})",
            hint="every video needs at least one clip; raise clips_per_class or lower "
            "videos_per_class",
        )
    if settings.seed < 0:
        raise BadInputError(f"seed must be 0 or more, not {settings.seed}")
    for name in ("min_seconds", "max_seconds"):
        value = getattr(settings, name)
        if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool):
            raise BadInputError(f"{name} must be a number of seconds, not {value!r}")
        if not math.isfinite(value):
            raise BadInputError(f"{name} must be a finite number of seconds, not {value}")
    lo, hi = settings.min_seconds, settings.max_seconds
    if not MIN_CLIP_SECONDS <= lo <= hi <= MAD_MAX_SECONDS:
        raise BadInputError(
            f"clip lengths must satisfy {MIN_CLIP_SECONDS} <= min_seconds <= max_seconds <= "
            f"{MAD_MAX_SECONDS:g} (MAD's longest clip); got min_seconds={lo:g}, "
            f"max_seconds={hi:g}",
        )
    if not 8000 <= settings.sample_rate <= 192000:
        raise BadInputError(
            f"sample_rate must be between 8000 and 192000 Hz, not {settings.sample_rate}",
            hint="MAD and every serenesense model use 16000",
        )
    if workers is not None and (not _is_int(workers) or workers < 1):
        raise BadInputError(f"workers must be a whole number of at least 1, not {workers!r}")


def _check_target(root: Path) -> None:
    """Refuse to write over anything that is not empty or an earlier synthetic set."""
    if root.exists() and not root.is_dir():
        raise BadInputError(
            f"{root} exists and is not a folder", hint="choose a new or empty output folder"
        )
    if not root.is_dir() or not any(root.iterdir()):
        return
    if not is_synth_output(root):
        raise BadInputError(
            f"{root} is not empty and is not a synthetic data set written by serenesense",
            hint="choose a new or empty output folder (nothing was changed)",
        )
    foreign = sorted(entry.name for entry in root.iterdir() if entry.name not in _OWN_ENTRIES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise BadInputError(
            f"{root} holds an earlier synthetic data set plus other files ({shown}); "
            "replacing it would delete them",
            hint="move those files elsewhere or choose another output folder",
        )


def is_synth_output(path: str | Path) -> bool:
    """True if ``path`` is a folder written by :func:`synthesize_dataset`."""
    readme = Path(path) / "README.txt"
    try:
        with readme.open(encoding="utf-8") as handle:
            return handle.readline().strip() == README_MARKER
    except (OSError, UnicodeDecodeError):
        return False


# --------------------------------------------------------------------------- plan


def _plan(settings: _Settings) -> list[_Clip]:
    """Every clip to write, in CSV order; depends only on ``settings``."""
    videos_per_class = settings.videos_per_class
    test_videos_per_class = settings.test_videos_per_class
    layout = np.random.default_rng([settings.seed, _LAYOUT])
    n_videos = len(MAD_CLASSES) * videos_per_class
    ids = layout.permutation(n_videos)  # ids say nothing about class or split
    clips: list[_Clip] = []
    for class_index in range(len(MAD_CLASSES)):
        # MAD's videos give very different numbers of clips: spread unevenly.
        weights = layout.gamma(2.0, size=videos_per_class)
        extra = layout.multinomial(
            settings.clips_per_class - videos_per_class, weights / weights.sum()
        )
        for video_index in range(videos_per_class):
            split = "test" if video_index >= videos_per_class - test_videos_per_class else "train"
            video_id = int(ids[class_index * videos_per_class + video_index])
            clips.extend(
                _Clip(
                    split=split,
                    video_id=video_id,
                    class_index=class_index,
                    video_index=video_index,
                    clip_index=clip_index,
                    seed=settings.seed,
                    min_seconds=float(settings.min_seconds),
                    max_seconds=float(settings.max_seconds),
                    sample_rate=settings.sample_rate,
                )
                for clip_index in range(1 + int(extra[video_index]))
            )
    clips.sort(key=lambda clip: (clip.split != "train", clip.video_id, clip.clip_index))
    return clips


def _render(clip: _Clip) -> np.ndarray:
    """The audio of one clip: a pure function of the clip's seeds and settings."""
    class_name = MAD_CLASSES[clip.class_index]
    source = draw_source(
        class_name, np.random.default_rng([clip.seed, _SOURCE, clip.class_index, clip.video_index])
    )
    rng = np.random.default_rng(
        [clip.seed, _CLIP, clip.class_index, clip.video_index, clip.clip_index]
    )
    lo = math.ceil(clip.min_seconds * clip.sample_rate)
    hi = max(lo, math.floor(clip.max_seconds * clip.sample_rate))
    samples = int(rng.integers(lo, hi + 1))
    return make_event(class_name, rng, samples / clip.sample_rate, clip.sample_rate, source=source)


def _write_clip(root: Path, clip: _Clip) -> int:
    """Render and write one clip; returns its length in samples."""
    audio = _render(clip)
    write_audio(root / clip.path, audio, clip.sample_rate, subtype="PCM_16")
    return int(audio.shape[0])


def _worker_count(workers: int | None, plan: list[_Clip]) -> int:
    if workers is not None:
        return workers
    mean_seconds = (plan[0].min_seconds + plan[0].max_seconds) / 2 if plan else 0.0
    if len(plan) * mean_seconds < _PARALLEL_MIN_SECONDS:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use (containers)
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _write_clips(
    root: Path, plan: list[_Clip], workers: int, on_progress: ProgressCallback | None
) -> list[int]:
    """Write every clip, in processes when ``workers`` > 1; returns lengths in plan order."""
    total = len(plan)
    report(on_progress, _STAGE, 0, total)
    if workers <= 1:
        lengths = []
        for done, clip in enumerate(plan, start=1):
            lengths.append(_write_clip(root, clip))
            report(on_progress, _STAGE, done, total)
        return lengths
    # "spawn", not fork: safe when the caller has threads running (torch, rich). It
    # needs the usual ``if __name__ == "__main__":`` guard in a calling script.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        chunk = max(1, min(8, total // (4 * workers)))
        lengths = []
        results = pool.map(_write_clip, _repeat(root, total), plan, chunksize=chunk)
        for done, length in enumerate(results, start=1):
            lengths.append(length)
            report(on_progress, _STAGE, done, total)
    except BaseException:
        # Ctrl-C or a failed clip: drop queued work, let running clips finish, re-raise
        # (the caller then removes the staging folder, which no worker still writes to).
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return lengths


def _repeat(value: Path, times: int) -> Iterator[Path]:
    for _ in range(times):
        yield value


# --------------------------------------------------------------------------- files


def _write_csvs(root: Path, plan: list[_Clip]) -> None:
    """training.csv and test.csv exactly as MAD writes them (pandas ``to_csv`` style)."""
    for split in ("train", "test"):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MAD_CSV_COLUMNS)
        rows = [clip for clip in plan if clip.split == split]
        for index, clip in enumerate(rows):
            class_name = MAD_CLASSES[clip.class_index]
            title = f"Synthetic {class_name} source {clip.video_id}"
            writer.writerow([index, clip.path, clip.class_index, title, ""])
        write_text_atomic(root / _CSV_OF_SPLIT[split], buffer.getvalue())


def _readme(settings: _Settings) -> str:
    """A deterministic description (no dates), so reruns stay byte-identical."""
    classes = ", ".join(f"{i} {name}" for i, name in enumerate(MAD_CLASSES))
    return (
        f"{README_MARKER}\n"
        "\n"
        "This folder is SYNTHETIC audio written by serenesense "
        "(serenesense_cli.data.synth, `serenesense data synth`).\n"
        "Each clip is a procedural signature of one MAD class (engine harmonics, rotor chop,\n"
        "jet roar, gunfire, artillery, footsteps, radio speech) over background noise.\n"
        "It is not a recording: accuracy on it says nothing about accuracy on real audio.\n"
        "\n"
        "Layout: the MAD data set's (training.csv, test.csv, training/<video>/<n>.wav,\n"
        "test/<video>/<n>.wav); a video is one synthetic source, and test videos never\n"
        "appear in training.\n"
        "\n"
        f"generator version: {GENERATOR_VERSION}\n"
        f"seed: {settings.seed}\n"
        f"classes (label order): {classes}\n"
        f"clips per class: {settings.clips_per_class}\n"
        f"videos per class: {settings.videos_per_class} "
        f"({settings.test_videos_per_class} held out for test)\n"
        f"clip length: {settings.min_seconds:g}-{settings.max_seconds:g} s\n"
        f"audio: {settings.sample_rate} Hz mono PCM_16 WAV\n"
        "\n"
        "Running the same command again with the same settings writes identical files.\n"
        "serenesense replaces this folder whole when asked to synthesise into it again.\n"
    )


def _fresh_sibling(root: Path, tag: str) -> Path:
    """An unused hidden name beside ``root`` (same file system, so renames are atomic)."""
    while True:
        candidate = root.parent / f".{root.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"
        if not candidate.exists():
            return candidate


def _swap_into_place(staging: Path, root: Path) -> None:
    """Rename the finished tree onto ``root``; an earlier set there is removed after."""
    if not root.exists():
        staging.rename(root)
        return
    old = _fresh_sibling(root, "old")
    root.rename(old)
    try:
        staging.rename(root)
    except OSError:
        old.rename(root)  # put the earlier set back
        raise
    shutil.rmtree(old, ignore_errors=True)
