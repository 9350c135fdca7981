"""The synthetic MAD-layout data set: layout, determinism, audio, and class physics."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.data import sounds
from serenesense_cli.data.mad import MAD_CLASSES
from serenesense_cli.data.synth import SynthSummary, is_synth_output, synthesize_dataset
from serenesense_cli.errors import BadInputError

SR = 16_000
HEADER = ",path,label,youtube title,youtube url"
SMALL = dict(
    clips_per_class=4,
    videos_per_class=3,
    test_videos_per_class=1,
    min_seconds=0.5,
    max_seconds=1.5,
    seed=3,
)
PATH_RE = re.compile(r"^(training|test)/(\d+)/(\d+)\.wav$")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize_dataset(tmp_path_factory.mktemp("synth") / "mad", **SMALL)


def read_rows(csv_path: Path) -> list[list[str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def all_rows(root: Path) -> dict[str, list[list[str]]]:
    return {name: read_rows(root / f"{name}.csv")[1:] for name in ("training", "test")}


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------- layout


def test_csv_header_is_mads_literally(small_set: SynthSummary) -> None:
    for name in ("training.csv", "test.csv"):
        raw = (small_set.root / name).read_bytes()
        assert raw.split(b"\n", 1)[0].decode() == HEADER
        assert b"\r" not in raw  # MAD's CSVs end lines with LF only


def test_csv_parses_like_the_real_mad_csvs(small_set: SynthSummary, shared_data: Path) -> None:
    real = shared_data / "mad" / "training.csv"
    if not real.is_file():
        pytest.skip(f"real MAD CSV not found at {real}")
    real_rows = read_rows(real)
    ours = read_rows(small_set.root / "training.csv")
    assert (
        real.read_bytes().split(b"\n", 1)[0]
        == (small_set.root / "training.csv").read_bytes().split(b"\n", 1)[0]
    )
    assert ours[0] == real_rows[0]
    for rows in (real_rows[1:50], ours[1:]):
        for index, row in enumerate(rows):
            assert len(row) == len(real_rows[0])
            assert int(row[0]) == index
            assert PATH_RE.match(row[1]), row[1]
            assert row[1].startswith("training/")
            assert 0 <= int(row[2]) < len(MAD_CLASSES)
            assert row[3]


def test_tree_matches_csvs(small_set: SynthSummary) -> None:
    root = small_set.root
    listed = set()
    for split, rows in all_rows(root).items():
        for row in rows:
            match = PATH_RE.match(row[1])
            assert match and match.group(1) == split
            assert row[3] == f"Synthetic {MAD_CLASSES[int(row[2])]} source {match.group(2)}"
            listed.add(row[1])
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.wav")}
    assert on_disk == listed
    top = {p.name for p in root.iterdir()}
    assert top == {"training.csv", "test.csv", "training", "test", "README.txt"}
    assert is_synth_output(root)
    readme = (root / "README.txt").read_text(encoding="utf-8")
    assert "SYNTHETIC" in readme and "seed: 3" in readme
    assert f"generator version: {sounds.GENERATOR_VERSION}" in readme


def test_videos_never_cross_splits_and_hold_one_class(small_set: SynthSummary) -> None:
    videos: dict[str, set[str]] = {}
    labels: dict[str, set[int]] = {}
    clips: dict[str, list[int]] = {}
    for split, rows in all_rows(small_set.root).items():
        for row in rows:
            _, video, n = PATH_RE.match(row[1]).groups()  # type: ignore[union-attr]
            videos.setdefault(video, set()).add(split)
            labels.setdefault(video, set()).add(int(row[2]))
            clips.setdefault(video, []).append(int(n))
    assert all(len(splits) == 1 for splits in videos.values())
    assert all(len(label) == 1 for label in labels.values())
    assert all(sorted(n) == list(range(len(n))) for n in clips.values())
    assert len(videos) == small_set.videos == len(MAD_CLASSES) * SMALL["videos_per_class"]


def test_every_class_in_both_splits_and_summary_agrees(small_set: SynthSummary) -> None:
    rows = all_rows(small_set.root)
    for split, name in (("train", "training"), ("test", "test")):
        counts = {c: 0 for c in MAD_CLASSES}
        for row in rows[name]:
            counts[MAD_CLASSES[int(row[2])]] += 1
        assert counts == small_set.clips[split]
        assert all(count >= 1 for count in counts.values())
    for class_name in MAD_CLASSES:
        total = small_set.clips["train"][class_name] + small_set.clips["test"][class_name]
        assert total == SMALL["clips_per_class"]
    assert small_set.classes == MAD_CLASSES


def test_audio_format_lengths_and_levels(small_set: SynthSummary) -> None:
    total = 0.0
    for path in sorted(small_set.root.rglob("*.wav")):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (
            SR,
            1,
            "WAV",
            "PCM_16",
        )
        seconds = info.frames / SR
        assert SMALL["min_seconds"] <= seconds <= SMALL["max_seconds"]
        total += seconds
        audio, _ = sf.read(str(path), dtype="float32")
        assert np.isfinite(audio).all()
        assert np.sqrt(np.mean(audio**2)) > 1e-3  # not silent
        assert np.max(np.abs(audio)) < 0.99  # not clipped
    assert total == pytest.approx(small_set.seconds)


def test_progress_reports_every_clip(tmp_path: Path) -> None:
    updates = []
    summary = synthesize_dataset(
        tmp_path / "p", **{**SMALL, "clips_per_class": 3}, on_progress=updates.append
    )
    total = sum(sum(split.values()) for split in summary.clips.values())
    assert {u.stage for u in updates} == {"synthesise"}
    assert [u.done for u in updates] == list(range(total + 1))
    assert all(u.total == total for u in updates)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes(small_set: SynthSummary, tmp_path: Path) -> None:
    again = synthesize_dataset(tmp_path / "again", **SMALL)
    assert files_of(again.root) == files_of(small_set.root)
    other = synthesize_dataset(tmp_path / "other", **{**SMALL, "seed": 4})
    wavs = {data for name, data in files_of(small_set.root).items() if name.endswith(".wav")}
    assert wavs.isdisjoint(files_of(other.root).values())  # another seed, other audio


def test_worker_processes_do_not_change_the_output(small_set: SynthSummary, tmp_path: Path) -> None:
    parallel = synthesize_dataset(tmp_path / "parallel", **SMALL, workers=2)
    assert files_of(parallel.root) == files_of(small_set.root)


# --------------------------------------------------------------------------- target folder


def test_rerun_replaces_an_earlier_set_whole(tmp_path: Path) -> None:
    out = tmp_path / "mad"
    synthesize_dataset(out, **{**SMALL, "clips_per_class": 6})
    before = set(files_of(out))
    summary = synthesize_dataset(out, **SMALL)
    after = files_of(out)
    assert set(after) != before  # fewer clips now: stale files are gone
    assert set(after) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert sum(len(rows) for rows in all_rows(out).values()) == len(MAD_CLASSES) * 4
    assert summary.root == out.resolve()
    assert [p.name for p in tmp_path.iterdir()] == ["mad"]  # no staging folders left


def test_refuses_a_foreign_folder_and_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="not empty") as caught:
        synthesize_dataset(out, **SMALL)
    assert caught.value.hint
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_refuses_an_earlier_set_with_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "mad"
    synthesize_dataset(out, **SMALL)
    (out / "my_model.pt").write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"my_model\.pt"):
        synthesize_dataset(out, **SMALL)
    assert (out / "my_model.pt").exists()


def test_empty_folder_is_fine_and_a_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    synthesize_dataset(empty, **SMALL)
    assert (empty / "training.csv").is_file()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BadInputError, match="not a folder"):
        synthesize_dataset(a_file, **SMALL)


def test_zero_test_videos_leaves_an_empty_test_split(tmp_path: Path) -> None:
    summary = synthesize_dataset(
        tmp_path / "m", **{**SMALL, "videos_per_class": 1, "test_videos_per_class": 0}
    )
    assert (summary.root / "test.csv").read_text(encoding="utf-8") == HEADER + "\n"
    assert (summary.root / "test").is_dir() and not any((summary.root / "test").iterdir())
    assert sum(summary.clips["test"].values()) == 0
    assert all(n == SMALL["clips_per_class"] for n in summary.clips["train"].values())
    assert summary.videos == len(MAD_CLASSES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"clips_per_class": 2}, "at least videos_per_class"),
        ({"videos_per_class": 0, "clips_per_class": 0}, "at least 1"),
        ({"test_videos_per_class": -1}, "test_videos_per_class"),
        ({"test_videos_per_class": 3}, "test_videos_per_class"),
        ({"min_seconds": 0.0}, "min_seconds"),
        ({"min_seconds": 2.0, "max_seconds": 1.0}, "min_seconds"),
        ({"max_seconds": 10.5}, "MAD"),
        ({"max_seconds": float("nan")}, "finite"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "whole number"),
        ({"clips_per_class": True}, "whole number"),
        ({"sample_rate": 100}, "sample_rate"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        synthesize_dataset(tmp_path / "x", **{**SMALL, **change})
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- generators


def test_generators_cover_mad_classes_in_order() -> None:
    assert tuple(sounds.SOUND_GENERATORS) == MAD_CLASSES


@pytest.mark.parametrize("class_name", MAD_CLASSES)
def test_generators_are_length_exact_and_seeded(class_name: str) -> None:
    generate = sounds.SOUND_GENERATORS[class_name]
    for seconds in (0.1, 1.2345):
        x = generate(np.random.default_rng(1), seconds)
        assert x.dtype == np.float32 and x.shape == (round(seconds * SR),)
        assert np.isfinite(x).all() and np.max(np.abs(x)) == pytest.approx(1.0, abs=1e-6)
    same = generate(np.random.default_rng(1), 1.2345)
    assert np.array_equal(same, generate(np.random.default_rng(1), 1.2345))
    event = sounds.make_event(class_name, np.random.default_rng(2), 0.7777, peak_dbfs=-6.0)
    assert event.shape == (round(0.7777 * SR),) and event.dtype == np.float32
    assert np.max(np.abs(event)) == pytest.approx(10 ** (-6 / 20), rel=1e-4)


def test_background_and_bad_requests() -> None:
    noise = sounds.background(np.random.default_rng(0), 2.0)
    assert noise.shape == (2 * SR,)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(
        sounds.BACKGROUND_RMS, rel=1e-3
    )
    with pytest.raises(BadInputError, match="no synthetic generator"):
        sounds.make_event("tractor", np.random.default_rng(0), 1.0)
    heli = sounds.draw_source("helicopter", np.random.default_rng(0))
    with pytest.raises(BadInputError, match="helicopter source"):
        sounds.vehicle(np.random.default_rng(0), 1.0, source=heli)
    with pytest.raises(BadInputError, match="positive"):
        sounds.vehicle(np.random.default_rng(0), 0.0)


# Physics: each class carries the cue it is named for. Clean signatures, fixed seeds.


def band_fraction(x: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / SR)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


def envelope(x: np.ndarray, hop: int) -> np.ndarray:
    frames = np.abs(x[: x.shape[0] // hop * hop].astype(np.float64)).reshape(-1, hop)
    env = frames.mean(axis=1)
    return env - env.mean()


def crest(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(np.max(np.abs(x)) / np.sqrt(np.mean(x**2)))


def peak_frequency(x: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(x * np.hanning(x.shape[0]))) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / SR)
    keep = (freqs >= low) & (freqs <= high)
    return float(freqs[keep][np.argmax(power[keep])])


@pytest.mark.parametrize("seed", range(3))
def test_helicopter_envelope_is_chopped_at_the_blade_rate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    source = sounds.draw_source("helicopter", rng)
    x = sounds.helicopter(rng, 4.0, source=source)
    hop = 40  # 400 Hz envelope rate
    env = envelope(x, hop)
    power = np.abs(np.fft.rfft(env * np.hanning(env.shape[0]))) ** 2
    freqs = np.fft.rfftfreq(env.shape[0], hop / SR)
    keep = (freqs >= 3.0) & (freqs <= 60.0)
    rate = float(freqs[keep][np.argmax(power[keep])])
    assert 9.5 <= rate <= 26.0  # 10-25 Hz blade passing, +-3 % per clip
    assert rate == pytest.approx(source["bpf"], rel=0.08)


@pytest.mark.parametrize("seed", range(3))
def test_communication_lives_in_the_radio_band(seed: int) -> None:
    x = sounds.communication(np.random.default_rng(seed), 4.0)
    assert band_fraction(x, 300.0, 3400.0) > 0.85


@pytest.mark.parametrize("seed", range(3))
def test_shelling_energy_is_low_frequency(seed: int) -> None:
    x = sounds.shelling(np.random.default_rng(seed), 4.0)
    assert band_fraction(x, 0.0, 300.0) > 0.9


@pytest.mark.parametrize("seed", range(3))
def test_shooting_is_impulsive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shots = sounds.shooting(rng, 3.0)
    steady = max(crest(sounds.SOUND_GENERATORS[c](rng, 3.0)) for c in ("vehicle", "fighter"))
    assert crest(shots) > 10.0
    assert crest(shots) > 2.0 * steady


@pytest.mark.parametrize("seed", range(3))
def test_footsteps_come_at_walking_pace(seed: int) -> None:
    rng = np.random.default_rng(seed)
    source = sounds.draw_source("footsteps", rng)
    x = sounds.footsteps(rng, 6.0, source=source)
    hop = 160  # 100 Hz envelope rate
    env = envelope(x, hop)
    corr = np.correlate(env, env, "full")[env.shape[0] - 1 :]
    lags = np.arange(corr.shape[0]) * hop / SR
    keep = (lags >= 0.35) & (lags <= 0.72)  # one step at 1.4-2.9 Hz, never two
    rate = 1.0 / float(lags[keep][np.argmax(corr[keep])])
    assert 1.4 <= rate <= 2.6
    assert rate == pytest.approx(source["rate"], rel=0.1)


@pytest.mark.parametrize("seed", range(3))
def test_vehicle_has_a_strong_low_harmonic_series(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Steady engine (no RPM drift, even cylinders) so the harmonics are sharp lines.
    source = sounds.draw_source("vehicle", rng).replace(rpm_drift=0.0, irregularity=0.0)
    x = sounds.vehicle(rng, 4.0, source=source).astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(x.shape[0]))) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / SR)
    step = freqs[1]
    candidates = np.arange(0.85, 1.15, 0.002) * source["f0"]
    scores = [sum(power[round(k * f / step)] for k in range(1, 9)) for f in candidates]
    f0 = candidates[int(np.argmax(scores))]
    low = freqs <= 8.5 * f0
    comb = np.zeros_like(low)
    for k in range(1, 9):
        comb |= np.abs(freqs - k * f0) <= 1.5
    assert power[comb & low].sum() / power[low].sum() > 0.7


@pytest.mark.parametrize("seed", range(3))
def test_fighter_whine_glides_down_with_doppler(seed: int) -> None:
    rng = np.random.default_rng(seed)
    source = sounds.draw_source("fighter", rng).replace(whine=1.0)
    x = sounds.fighter(rng, 4.0, source=source).astype(np.float64)
    start = peak_frequency(x[: SR // 2], 800.0, 7200.0)
    end = peak_frequency(x[-SR // 2 :], 800.0, 7200.0)
    assert end < 0.97 * start
