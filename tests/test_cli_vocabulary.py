"""One vocabulary of options (docs/cli.md), --help that reads like a CLI's, devices.

The option table in docs/cli.md is the contract: each shared option is on
exactly the commands it lists, with the spellings it lists.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer.main

from serenesense_cli.cli import app

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _commands() -> dict[str, object]:
    found: dict[str, object] = {}

    def walk(group: object, prefix: str) -> None:
        for name, command in group.commands.items():  # type: ignore[attr-defined]
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):
                walk(command, path)
            else:
                found[path] = command

    walk(typer.main.get_command(app), "")
    return found


COMMANDS = _commands()


def _options(command: object) -> dict[str, tuple[set[str], bool]]:
    """long option -> (all its spellings, hidden)."""
    result = {}
    for param in command.params:  # type: ignore[attr-defined]
        if param.param_type_name != "option":
            continue
        spellings = set(param.opts) | set(param.secondary_opts)
        for spelling in param.opts:
            if spelling.startswith("--"):
                result[spelling] = (spellings, bool(getattr(param, "hidden", False)))
    return result


def _table_rows() -> list[tuple[list[str], list[str]]]:
    rows = []
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`-"):
            continue
        spellings = re.findall(r"`(-[^`]+)`", cells[0])
        commands = [c.strip() for c in cells[1].split(",")]
        rows.append((spellings, commands))
    return rows


ROWS = _table_rows()


def test_the_docs_table_was_read():
    assert len(ROWS) >= 10
    assert all(command in COMMANDS for _, commands in ROWS for command in commands)


@pytest.mark.parametrize(("spellings", "commands"), ROWS, ids=[r[0][0] for r in ROWS])
def test_each_shared_option_is_on_exactly_the_commands_docs_cli_lists(spellings, commands):
    long_name = spellings[0]
    for name, command in COMMANDS.items():
        options = _options(command)
        if name in commands:
            assert long_name in options, f"{name} lacks {long_name}"
            names, hidden = options[long_name]
            assert not hidden, f"{name} {long_name} is hidden"
            assert set(spellings) <= names, f"{name} {long_name}: {names} vs {spellings}"
        else:
            visible = long_name in options and not options[long_name][1]
            assert not visible, f"{name} has {long_name} but docs/cli.md does not list it"


def test_the_model_is_the_first_argument_where_it_is_the_subject():
    for name in ("evaluate", "export", "quantize", "bench", "detect"):
        arguments = [p for p in COMMANDS[name].params if p.param_type_name == "argument"]
        assert arguments and arguments[0].name in ("model", "models", "paths"), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_examples_and_plain_value_labels(runner, name):
    result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Examples" in text, f"{name} --help shows no example"
    for python_type in ("<bool>", "<str>", "<int>", "<float>", "<path>", "list["):
        assert python_type not in text, f"{name} --help shows {python_type}"


def test_train_help_keeps_brackets_and_shows_choices(runner):
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "[model_args]" in text
    assert "adam|adamw|sgd" in text and "auto|cpu|cuda|mps" in text
    assert "--show-recipe" in text


def test_shell_completion_is_offered(runner):
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--install-completion" in text and "--show-completion" in text


def test_a_bad_choice_fails_in_one_line_before_any_heavy_import():
    code = textwrap.dedent(
        """
        import sys
        from serenesense_cli.cli import main
        try:
            main(["train", "cnn", "--optimizer", "adamm", "--data", "nowhere"])
        except SystemExit as done:
            print("EXIT=" + str(done.code), "TORCH=" + str("torch" in sys.modules), file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert "EXIT=2 TORCH=False" in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("EXIT=")]
    assert lines[0].startswith("Error: Invalid value for '--optimizer'")
    assert "'--optimizer': 'adamm' is not one of" in lines[0]
    assert lines[1] == "Hint: see `serenesense train --help`"
    assert "╭" not in done.stderr  # no framed panel


def test_an_unknown_option_is_one_line_with_a_hint(runner):
    result = runner.invoke(app, ["models", "--bogus"])
    assert result.exit_code == 2
    assert "Error: No such option: --bogus" in result.output
    assert "Hint: see `serenesense models --help`" in result.output
    assert "╭" not in result.output


def test_show_recipe_prints_the_settings_of_a_new_run_without_data(runner):
    result = runner.invoke(app, ["train", "melcnn", "--show-recipe", "--epochs", "7", "-f", "json"])
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)
    assert settings["model"] == "melcnn" and settings["epochs"] == 7
    assert settings["optimizer"] == "adamw"  # the recipe's


def test_old_spellings_still_parse():
    bench = COMMANDS["bench"].make_context("bench", ["m.onnx", "--batch", "2"])
    assert bench.params["batch_old"] == 2
    export = COMMANDS["export"].make_context("export", ["run", "--parity-data", "set"])
    assert str(export.params["parity_data_old"]) == "set"
    quantize = COMMANDS["quantize"].make_context("quantize", ["m.onnx", "--calib", "set"])
    assert str(quantize.params["calib"]) == "set"


# ---- detect: MODEL first; --device is the compute device ----------------------------


@pytest.fixture(scope="module")
def loud_model_and_wav(tmp_path_factory) -> tuple[Path, Path]:
    from tests.reference_models import write_loudness_onnx

    root = tmp_path_factory.mktemp("vocabulary")
    audio = np.zeros(16_000 * 6, np.float32)
    audio[16_000 * 2 : 16_000 * 4] = 0.3 * np.sin(np.arange(32_000) * 0.2)
    wav = root / "burst.wav"
    sf.write(wav, audio, 16_000)
    model = write_loudness_onnx(root / "loud.onnx", floor_dbfs=-40, classes=("sound", "quiet"))
    return model, wav


def _events(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_detect_takes_the_model_first_or_as_an_option(runner, loud_model_and_wav):
    model, wav = loud_model_and_wav
    first = runner.invoke(app, ["detect", str(model), str(wav), "-f", "jsonl"])
    assert first.exit_code == 0, first.output
    option = runner.invoke(app, ["detect", str(wav), "--model", str(model), "-f", "jsonl"])
    assert option.exit_code == 0, option.output
    assert _events(first) == _events(option) and _events(first)
    missing = runner.invoke(app, ["detect", str(model)])
    assert missing.exit_code == 2 and "nothing to listen to" in missing.output


def test_detect_device_cuda_without_a_gpu_says_so_and_runs_on_the_cpu(runner, loud_model_and_wav):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    model, wav = loud_model_and_wav
    result = runner.invoke(app, ["detect", str(model), str(wav), "--device", "cuda", "-f", "jsonl"])
    assert result.exit_code == 0, result.output
    assert "no CUDA or TensorRT provider" in result.output and "running on the CPU" in result.output
    bad = runner.invoke(app, ["detect", str(model), str(wav), "--device", "tpu"])
    assert bad.exit_code == 2 and "not a compute device" in bad.output


def test_detect_old_sound_card_spelling_moves_to_input_device():
    from serenesense_cli.cli.detect import _split_devices

    assert _split_devices("cuda", None, mic=True) == ("cuda", None)
    assert _split_devices("2", None, mic=True) == ("cpu", "2")
    assert _split_devices("cpu", "USB", mic=True) == ("cpu", "USB")


# ---- inference devices --------------------------------------------------------------


def test_onnx_providers_follow_the_device_and_what_is_installed():
    from serenesense_cli.inference.devices import onnx_providers

    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu", gpu) == (["CPUExecutionProvider"], None)
    assert onnx_providers("cuda", gpu) == (gpu, None)
    assert onnx_providers("auto", gpu) == (["CUDAExecutionProvider", "CPUExecutionProvider"], None)
    assert onnx_providers("auto", cpu_only) == (cpu_only, None)
    providers, note = onnx_providers("cuda", cpu_only)
    assert providers == cpu_only and "install onnxruntime-gpu" in note


def test_torch_device_falls_back_to_the_cpu_with_a_note(monkeypatch):
    import torch

    from serenesense_cli.inference.devices import torch_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("cpu") == ("cpu", None)
    assert torch_device("auto") == ("cpu", None)
    device, note = torch_device("cuda")
    assert device == "cpu" and "no CUDA GPU" in note
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert torch_device("auto") == ("cuda", None)


def test_long_choice_lists_are_spelled_out_in_the_help(runner):
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "warmup_cosine_restarts" in text and "One of:" in text
    assert "plateau|warmup" not in text  # not squeezed into the value column
