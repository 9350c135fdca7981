"""Synthetic background clips: the demo's "nothing to report" class."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from serenesense_cli.data.background import BACKGROUND_CLASS, LEVEL_DBFS, write_background_clips
from serenesense_cli.errors import BadInputError


def test_writes_a_folder_per_class_source_reproducibly(tmp_path):
    root = write_background_clips(tmp_path / "a", clips=4, seed=3, max_seconds=3.0)
    files = sorted((root / BACKGROUND_CLASS).glob("*.wav"))
    assert len(files) == 4
    again = write_background_clips(tmp_path / "b", clips=4, seed=3, max_seconds=3.0)
    for first in files:
        a, sr = sf.read(first, dtype="float32")
        b, _ = sf.read(again / BACKGROUND_CLASS / first.name, dtype="float32")
        assert sr == 16_000 and np.array_equal(a, b)
        level = 20 * np.log10(np.sqrt(np.mean(np.square(a.astype(np.float64)))))
        assert LEVEL_DBFS[0] - 1 <= level <= LEVEL_DBFS[1] + 1


def test_prepares_beside_a_mad_layout_set(tmp_path):
    from serenesense_cli.data.cache import open_prepared
    from serenesense_cli.data.prepare import prepare_dataset
    from serenesense_cli.data.synth import synthesize_dataset

    synth = synthesize_dataset(
        tmp_path / "synth",
        clips_per_class=3,
        videos_per_class=3,
        test_videos_per_class=1,
        max_seconds=2.0,
    )
    quiet = write_background_clips(tmp_path / "quiet", clips=6, max_seconds=2.0)
    prepare_dataset([synth.root, quiet], tmp_path / "prepared", seed=0)
    prepared = open_prepared(tmp_path / "prepared")
    assert BACKGROUND_CLASS in prepared.classes and len(prepared.classes) == 8


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(BadInputError):
        write_background_clips(tmp_path, clips=0)
    with pytest.raises(BadInputError):
        write_background_clips(tmp_path, min_seconds=5.0, max_seconds=2.0)
