"""``serenesense train MODEL --data DIR``: train with the reference recipes.

Flags override ``--config file.toml``, which overrides the model's recipe; only
flags actually given count. The run folder is the last line on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from serenesense_cli.cli import _training_options as run_flags
from serenesense_cli.cli import _training_output as run_output
from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._output import OutputFormat, emit_fields
from serenesense_cli.cli._training_options import given, opt
from serenesense_cli.limits import TRAINING

app = typer.Typer(help="Train a model.", no_args_is_help=True)

MODEL_HELP = (
    "Model to train: melcnn (recommended), cnn, crnn or audiomae (see `serenesense models`)."
)
_PANEL_INIT = "Fine-tuning (audiomae)"


@run_flags.shared_flags("train")
def train_command(
    model: Annotated[str | None, typer.Argument(help=MODEL_HELP, show_default=False)] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Prepared data set (from `serenesense data prepare`)."),
    ] = None,
    config: run_flags.Config = None,
    run_folder: run_flags.RunFolder = None,
    size: Annotated[str | None, opt("AudioMAE size: tiny, small or base.", "--size")] = None,
    init: Annotated[
        Path | None,
        opt(
            "Initialise the encoder from a pretraining run, an official AudioMAE "
            "checkpoint or a timm ViT state dict (the head starts fresh).",
            "--init",
            panel=_PANEL_INIT,
        ),
    ] = None,
    layer_decay: Annotated[
        float | None,
        opt(
            "Layer-wise LR decay, e.g. 0.75 (1 = off): block i gets lr x decay^(depth-i).",
            "--layer-decay",
            panel=_PANEL_INIT,
            callback=within(TRAINING["layer_decay"]),
        ),
    ] = None,
    linear_probe: Annotated[
        bool | None,
        opt(
            "Freeze the encoder and train the head only.",
            "--linear-probe/--no-linear-probe",
            panel=_PANEL_INIT,
        ),
    ] = None,
    recipe: Annotated[
        run_flags.RecipeName | None,
        opt(
            "default (measured best) or reference (the reference system's recipe and "
            "data pipeline exactly; cnn, crnn and audiomae).",
            "--recipe",
        ),
    ] = None,
    optimiser: run_flags.Optimiser = None,
    optimizer: Annotated[
        run_flags.OptimizerName | None, opt("Optimiser (recipe's by default).", "--optimizer")
    ] = None,
    scheduler: Annotated[
        run_flags.SchedulerName | None,
        opt("Learning-rate schedule (recipe's by default).", "--scheduler"),
    ] = None,
    warmup_steps: Annotated[
        int | None,
        opt("Linear warm-up steps.", "--warmup-steps", callback=within(TRAINING["warmup_steps"])),
    ] = None,
    grad_clip: run_flags.GradClip = None,
    mixup_alpha: Annotated[
        float | None,
        opt("Mixup alpha (0 = off).", "--mixup-alpha", callback=within(TRAINING["mixup_alpha"])),
    ] = None,
    cutmix_alpha: Annotated[
        float | None,
        opt("CutMix alpha (0 = off).", "--cutmix-alpha", callback=within(TRAINING["cutmix_alpha"])),
    ] = None,
    mix_prob: Annotated[
        float | None,
        opt("Probability of mixing a batch.", "--mix-prob", callback=within(TRAINING["mix_prob"])),
    ] = None,
    label_smoothing: Annotated[
        float | None,
        opt("Label smoothing.", "--label-smoothing", callback=within(TRAINING["label_smoothing"])),
    ] = None,
    class_weighted: Annotated[
        bool | None,
        opt("Class-weighted cross-entropy.", "--class-weighted/--no-class-weighted"),
    ] = None,
    balanced: Annotated[
        bool | None,
        opt("Class-balanced sampling of training clips.", "--balanced/--no-balanced"),
    ] = None,
    wave_augment: Annotated[
        bool | None,
        opt(
            "Random gain (+-6 dB) and spectral tilt of training windows.",
            "--wave-augment/--no-wave-augment",
        ),
    ] = None,
    mix_back: Annotated[
        float | None,
        opt(
            "Chance of mixing a quiet window of another training clip (12-24 dB down) "
            "under each training window; its label stays.",
            "--mix-back",
            callback=within(TRAINING["mix_back"]),
        ),
    ] = None,
    ema_decay: Annotated[
        float | None,
        opt(
            "Validate and keep as best an exponential moving average of the weights "
            "with this decay per step, e.g. 0.995 (0 = off).",
            "--ema-decay",
            callback=within(TRAINING["ema_decay"]),
        ),
    ] = None,
    crop: Annotated[
        run_flags.CropName | None,
        opt("Training crops of long clips: energy (where the sound is) or random.", "--crop"),
    ] = None,
    val_windows: Annotated[
        run_flags.ValWindowsName | None,
        opt(
            "Validate on every window of a clip (all) or its centred one (center).",
            "--val-windows",
        ),
    ] = None,
    select_metric: Annotated[
        run_flags.SelectMetricName | None,
        opt("Best checkpoint by this validation score.", "--select-metric"),
    ] = None,
    patience: Annotated[
        int | None,
        opt(
            "Early stopping after N epochs without improvement (0 = off).",
            "--patience",
            callback=within(TRAINING["patience"]),
        ),
    ] = None,
    run_control: run_flags.RunControl = None,
    show_recipe: Annotated[
        bool,
        opt(
            "Print the settings this run would use (recipe < --config < flags) and exit; "
            "no data needed.",
            "--show-recipe",
        ),
    ] = False,
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="Summary as a table, JSON or CSV."),
    ] = OutputFormat.table,
) -> None:
    """Train MODEL on a prepared data set with its recipe (see --show-recipe).

    Examples:

      serenesense train melcnn --data prepared/ --time-limit 600

      serenesense train cnn --data prepared/ --recipe reference

      serenesense train audiomae --size tiny --data prepared/ --epochs 5

      serenesense train audiomae --data prepared/ --init runs/pretrain/audiomae --layer-decay 0.75

      serenesense train --resume runs/train/cnn
    """
    from serenesense_cli.errors import BadInputError

    assert run_folder is not None  # filled in by shared_flags
    resume = run_folder["resume"]
    if resume is None and model is None:
        raise BadInputError(
            "no model given", hint="serenesense train melcnn|cnn|crnn|audiomae --data DIR"
        )
    if resume is None and not show_recipe:
        from serenesense_cli.train.config import require_data

        require_data(data, "train")
    overrides = given(
        optimizer=optimizer,
        scheduler=scheduler,
        warmup_steps=warmup_steps,
        grad_clip=grad_clip,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        mix_prob=mix_prob,
        label_smoothing=label_smoothing,
        class_weighted=class_weighted,
        balanced=balanced,
        wave_augment=wave_augment,
        mix_back=mix_back,
        ema_decay=ema_decay,
        crop=crop,
        val_windows=val_windows,
        select_metric=select_metric,
        patience=patience,
        init=str(init) if init is not None else None,
        layer_decay=layer_decay,
        linear_probe=linear_probe,
    )
    overrides.update({**(optimiser or {}), **(run_control or {})})
    model_args = {"size": size} if size is not None else {}

    from serenesense_cli.train.config import resolve_train_config
    from serenesense_cli.train.engine import train

    resolved = None
    if resume is None:
        assert model is not None
        from serenesense_cli.train.engine import ensure_model_known

        ensure_model_known(model)
        if size is not None:
            from serenesense_cli.models import models_where

            sized = models_where(lambda spec: bool(spec.sizes))
            if model not in sized:
                raise BadInputError(f"--size applies to {', '.join(sized)} only, not {model!r}")
        resolved = resolve_train_config(
            model,
            config_file=config,
            overrides=overrides,
            model_args=model_args,
            recipe_name=recipe,
        )
    elif show_recipe:
        raise BadInputError(
            "--show-recipe is for a new run", hint="a run's settings are in RUN/config.toml"
        )
    elif config is not None or size is not None or recipe is not None:
        raise BadInputError(
            "--config, --recipe and --size cannot change a resumed run",
            hint="resume uses the run's config.toml; flags such as --epochs may extend it",
        )
    elif init is not None or layer_decay is not None or linear_probe is not None:
        raise BadInputError(
            "--init, --layer-decay and --linear-probe cannot change a resumed run",
            hint="the run's config.toml keeps them; start a new run to change them",
        )

    if show_recipe:
        assert resolved is not None
        from serenesense_cli.fileio import json_value

        settings = {key: json_value(value) for key, value in resolved.to_dict().items()}
        emit_fields(settings, output_format, title=f"{model}: settings of a new run")
        return
    run_output.run_and_finish(
        train,
        _epoch_head,
        output_format,
        command="train",
        title="Training summary",
        summarize=_summary,
        run_folder=run_folder,
        overrides=overrides,
        data=data,
        model=model,
        config=resolved,
    )


def _epoch_head(row: dict[str, Any]) -> str:
    """The log line of a finished (or partial) epoch, before the learning rate."""
    partial = " (partial)" if row.get("partial") else ""
    return (
        f"epoch {row['epoch']}{partial}: train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.1%} | val loss {row['val_loss']:.4f} "
        f"acc {row['val_acc']:.1%} macro-F1 {row['val_macro_f1']:.1%}"
    )


def _summary(result: Any) -> dict[str, Any]:
    best_row = next(
        (r for r in result.history if r["epoch"] == result.best_epoch and result.best_epoch), None
    )
    final = result.history[-1] if result.history else {}
    return {
        **run_output.summary_head(result),
        "device": result.device,
        "world_size": result.world_size,
        "select_metric": result.select_metric,
        "best_epoch": result.best_epoch,
        "best_val_acc": best_row.get("val_acc") if best_row else None,
        "best_val_macro_f1": best_row.get("val_macro_f1") if best_row else None,
        "final_val_acc": final.get("val_acc"),
        "final_train_acc": final.get("train_acc"),
        "seconds": round(result.seconds, 2),
        **run_output.summary_weights(result),
    }
