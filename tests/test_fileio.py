"""Output paths: never one of the command's inputs, through symlinks and folders."""

from __future__ import annotations

import pytest

from serenesense_cli.errors import BadInputError
from serenesense_cli.fileio import refuse_input_as_output


def test_an_output_that_is_an_input_is_refused(tmp_path):
    source = tmp_path / "in.wav"
    source.write_bytes(b"x")
    link = tmp_path / "link.wav"
    link.symlink_to(source)
    for out in (source, link, tmp_path / "." / "in.wav"):
        with pytest.raises(BadInputError, match="would overwrite an input"):
            refuse_input_as_output(out, [source])
    refuse_input_as_output(tmp_path / "out.json", [source])  # another file is fine


def test_files_a_scanned_input_folder_holds_count_as_inputs(tmp_path):
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    with pytest.raises(BadInputError, match="--out"):
        refuse_input_as_output(folder / "sub" / "new.flac", [folder], read_from_folders={".flac"})
    with pytest.raises(BadInputError):
        refuse_input_as_output(folder, [folder])
    refuse_input_as_output(folder / "results.csv", [folder], read_from_folders={".flac"})


def test_json_text_is_strict_json():
    import json
    import math

    import numpy as np

    from serenesense_cli.fileio import json_text

    text = json_text({"a": -math.inf, "b": [np.float32(0.5), math.nan], 3: np.int64(2)})
    assert json.loads(text) == {"a": None, "b": [0.5, None], "3": 2}
