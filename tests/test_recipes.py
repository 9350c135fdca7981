"""Named recipes: the reference system's exactly, and the measured defaults."""

from __future__ import annotations

import pytest

from serenesense_cli.cli import app
from serenesense_cli.config import load_toml
from serenesense_cli.errors import ConfigError
from serenesense_cli.train.config import REFERENCE_RECIPES, recipe, resolve_train_config


@pytest.mark.parametrize("model", ["cnn", "crnn", "audiomae"])
def test_reference_recipe_is_the_reference_system_exactly(model):
    config = recipe(model, "reference")
    for key, value in REFERENCE_RECIPES[model].items():
        assert getattr(config, key) == value, key
    assert config.crop == "random" and config.val_windows == "center"
    assert not config.balanced


def test_reference_models_keep_their_hyper_parameters_by_default():
    default, reference = recipe("crnn"), recipe("crnn", "reference")
    assert (default.optimizer, default.lr, default.scheduler, default.epochs) == (
        reference.optimizer,
        reference.lr,
        reference.scheduler,
        reference.epochs,
    )
    assert default.crop == "energy" and default.val_windows == "all"
    assert default.model_args == reference.model_args == {}


def test_cnn_default_recipe_z_scores_mfcc_with_data_set_statistics():
    default, reference = recipe("cnn"), recipe("cnn", "reference")
    assert default.model_args == {"mfcc_zscore": "dataset"} and reference.model_args == {}
    assert default.optimizer == "adamw" and default.select_metric == "loss"
    assert default.epochs == reference.epochs == 150
    default.model_args["x"] = 1  # a caller's edit does not reach the recipe table
    assert recipe("cnn").model_args == {"mfcc_zscore": "dataset"}
    merged = resolve_train_config("cnn", model_args={"hidden": 8})
    assert merged.model_args == {"mfcc_zscore": "dataset", "hidden": 8}


def test_melcnn_recipe_and_no_reference_recipe_for_it():
    config = recipe("melcnn")
    assert config.optimizer == "adamw" and config.scheduler == "warmup_cosine"
    assert config.balanced and config.label_smoothing > 0
    with pytest.raises(ConfigError, match="no reference recipe"):
        recipe("melcnn", "reference")
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe("cnn", "fancy")


def test_flags_win_over_the_recipe_and_the_recipe_comes_from_the_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('recipe = "reference"\nepochs = 3\n', encoding="utf-8")
    config = resolve_train_config("cnn", config_file=path, overrides={"crop": "energy"})
    assert config.recipe == "reference" and config.epochs == 3 and config.crop == "energy"
    assert config.val_windows == "center"


def test_cli_recipe_reference_is_saved_with_the_run(runner, tone_prepared, tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "cnn",
            "--data",
            str(tone_prepared),
            "--recipe",
            "reference",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = load_toml(tmp_path / "train" / "cnn" / "config.toml")
    assert saved["recipe"] == "reference" and saved["crop"] == "random"
    bad = runner.invoke(app, ["train", "cnn", "--data", str(tone_prepared), "--crop", "middle"])
    assert bad.exit_code == 2
    assert "Invalid value for '--crop': 'middle' is not one of" in bad.output
