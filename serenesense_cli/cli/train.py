"""``serenesense train MODEL --data DIR``: train with the reference recipes.

Flags override ``--config file.toml``, which overrides the model's recipe; only
flags actually given count. The run folder is the last line on stdout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from serenesense_cli.cli._output import (
    OutputFormat,
    emit_json,
    emit_result_path,
    emit_table,
    log,
    progress_bars,
)

app = typer.Typer(help="Train a model.", no_args_is_help=True)

MODEL_HELP = "Model to train: cnn, crnn or audiomae (see `serenesense models`)."
_PANEL_RECIPE = "Recipe overrides"
_PANEL_RUN = "Run control"
_PANEL_INIT = "Fine-tuning (audiomae)"


def _opt(help_text: str, *names: str, panel: str = _PANEL_RECIPE, **kwargs: Any) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel=panel, **kwargs)


def train_command(
    model: Annotated[str | None, typer.Argument(help=MODEL_HELP, show_default=False)] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Prepared data set (from `serenesense data prepare`)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of settings (and [model_args])."),
    ] = None,
    name: Annotated[
        str | None, _opt("Run name (default: the model name).", "--name", panel=_PANEL_RUN)
    ] = None,
    runs_dir: Annotated[
        Path, _opt("Parent of run folders (runs/train/<name>).", "--runs-dir", panel=_PANEL_RUN)
    ] = Path("runs"),
    resume: Annotated[
        Path | None,
        _opt("Continue this run folder exactly where it stopped.", "--resume", panel=_PANEL_RUN),
    ] = None,
    size: Annotated[str | None, _opt("AudioMAE size: tiny, small or base.", "--size")] = None,
    init: Annotated[
        Path | None,
        _opt(
            "Initialise the encoder from a pretraining run, an official AudioMAE "
            "checkpoint or a timm ViT state dict (the head starts fresh).",
            "--init",
            panel=_PANEL_INIT,
        ),
    ] = None,
    layer_decay: Annotated[
        float | None,
        _opt(
            "Layer-wise LR decay, e.g. 0.75 (1 = off): block i gets lr x decay^(depth-i).",
            "--layer-decay",
            panel=_PANEL_INIT,
        ),
    ] = None,
    linear_probe: Annotated[
        bool | None,
        _opt(
            "Freeze the encoder and train the head only.",
            "--linear-probe/--no-linear-probe",
            panel=_PANEL_INIT,
        ),
    ] = None,
    epochs: Annotated[int | None, _opt("Epochs to train.", "--epochs", "--max-epochs")] = None,
    batch_size: Annotated[int | None, _opt("Global batch size.", "--batch-size", "-b")] = None,
    lr: Annotated[float | None, _opt("Peak learning rate.", "--lr")] = None,
    weight_decay: Annotated[float | None, _opt("Weight decay.", "--weight-decay")] = None,
    optimizer: Annotated[str | None, _opt("adam, adamw or sgd.", "--optimizer")] = None,
    scheduler: Annotated[
        str | None, _opt("plateau, warmup_cosine_restarts or constant.", "--scheduler")
    ] = None,
    warmup_steps: Annotated[int | None, _opt("Linear warm-up steps.", "--warmup-steps")] = None,
    grad_clip: Annotated[float | None, _opt("Gradient-norm clip (0 = off).", "--grad-clip")] = None,
    mixup_alpha: Annotated[float | None, _opt("Mixup alpha (0 = off).", "--mixup-alpha")] = None,
    cutmix_alpha: Annotated[float | None, _opt("CutMix alpha (0 = off).", "--cutmix-alpha")] = None,
    mix_prob: Annotated[float | None, _opt("Probability of mixing a batch.", "--mix-prob")] = None,
    label_smoothing: Annotated[float | None, _opt("Label smoothing.", "--label-smoothing")] = None,
    class_weighted: Annotated[
        bool | None,
        _opt("Class-weighted cross-entropy.", "--class-weighted/--no-class-weighted"),
    ] = None,
    select_metric: Annotated[
        str | None,
        _opt("Best checkpoint by: macro_f1, accuracy or loss (validation).", "--select-metric"),
    ] = None,
    patience: Annotated[
        int | None,
        _opt("Early stopping after N epochs without improvement (0 = off).", "--patience"),
    ] = None,
    seed: Annotated[int | None, _opt("Random seed.", "--seed", panel=_PANEL_RUN)] = None,
    deterministic: Annotated[
        bool | None,
        _opt(
            "Deterministic algorithms (slower on GPUs).",
            "--deterministic/--no-deterministic",
            panel=_PANEL_RUN,
        ),
    ] = None,
    device: Annotated[
        str | None, _opt("auto, cpu, cuda or mps.", "--device", panel=_PANEL_RUN)
    ] = None,
    precision: Annotated[
        str | None, _opt("auto (bf16 on CUDA), fp32 or bf16.", "--precision", panel=_PANEL_RUN)
    ] = None,
    workers: Annotated[
        int | None, _opt("DataLoader worker processes.", "--workers", panel=_PANEL_RUN)
    ] = None,
    max_steps: Annotated[
        int | None, _opt("Stop after this many optimiser steps.", "--max-steps", panel=_PANEL_RUN)
    ] = None,
    time_limit: Annotated[
        float | None, _opt("Stop after this many seconds.", "--time-limit", panel=_PANEL_RUN)
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        _opt(
            "Also checkpoint every N steps (0 = per epoch).", "--checkpoint-every", panel=_PANEL_RUN
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Summary as a table or JSON.")
    ] = OutputFormat.table,
) -> None:
    """Train MODEL on a prepared data set with its reference recipe.

    Examples:

      serenesense train cnn --data prepared/

      serenesense train audiomae --size tiny --data prepared/ --epochs 5

      serenesense train audiomae --data prepared/ --init runs/pretrain/audiomae --layer-decay 0.75

      serenesense train --resume runs/train/cnn
    """
    from serenesense_cli.errors import BadInputError

    if resume is None and model is None:
        raise BadInputError("no model given", hint="serenesense train cnn|crnn|audiomae --data DIR")
    if resume is None and data is None:
        raise BadInputError(
            "no data set given", hint="pass --data DIR (from `serenesense data prepare`)"
        )
    overrides = {
        key: value
        for key, value in {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "optimizer": optimizer,
            "scheduler": scheduler,
            "warmup_steps": warmup_steps,
            "grad_clip": grad_clip,
            "mixup_alpha": mixup_alpha,
            "cutmix_alpha": cutmix_alpha,
            "mix_prob": mix_prob,
            "label_smoothing": label_smoothing,
            "class_weighted": class_weighted,
            "select_metric": select_metric,
            "patience": patience,
            "seed": seed,
            "deterministic": deterministic,
            "device": device,
            "precision": precision,
            "workers": workers,
            "max_steps": max_steps,
            "time_limit": time_limit,
            "checkpoint_every": checkpoint_every,
            "init": str(init) if init is not None else None,
            "layer_decay": layer_decay,
            "linear_probe": linear_probe,
        }.items()
        if value is not None
    }
    model_args = {"size": size} if size is not None else {}

    from serenesense_cli.train.config import resolve_train_config
    from serenesense_cli.train.engine import train

    resolved = None
    if resume is None:
        assert model is not None
        from serenesense_cli.train.engine import ensure_model_known

        ensure_model_known(model)
        if size is not None and model != "audiomae":
            raise BadInputError(f"--size applies to audiomae only, not {model!r}")
        resolved = resolve_train_config(
            model, config_file=config, overrides=overrides, model_args=model_args
        )
    elif config is not None or size is not None:
        raise BadInputError(
            "--config and --size cannot change a resumed run",
            hint="resume uses the run's config.toml; flags such as --epochs may extend it",
        )
    elif init is not None or layer_decay is not None or linear_probe is not None:
        raise BadInputError(
            "--init, --layer-decay and --linear-probe cannot change a resumed run",
            hint="the run's config.toml keeps them; start a new run to change them",
        )

    with progress_bars() as on_progress:
        result = train(
            data=data,
            model=model,
            config=resolved,
            runs_dir=runs_dir,
            name=name,
            resume=resume,
            overrides=overrides if resume is not None else None,
            on_progress=_TrainProgress(on_progress),
        )
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    for note in result.notes:
        log(f"note: {note}")
    _render_summary(result, output_format)
    if result.stopped == "interrupted":
        log(
            "interrupted: checkpoint saved; continue with "
            f"`serenesense train --resume {result.run_dir}`"
        )
        raise typer.Exit(130)


class _TrainProgress:
    """Turns engine updates into rich bars plus one log line per epoch."""

    def __init__(self, bars: Any) -> None:
        self.bars = bars

    def __call__(self, update: Any) -> None:
        from serenesense_cli.progress import ProgressUpdate

        info = update.info
        if update.stage == "steps":
            note = (
                f"loss {info['loss']:.4f}  acc {info['acc']:.3f}  lr {info['lr']:.2e}  "
                f"{info['samples_per_s']:.1f} samples/s"
            )
            self.bars(
                ProgressUpdate(f"epoch {info['epoch']}", update.done, update.total, {"note": note})
            )
            return
        if update.stage == "epochs":
            self.bars(ProgressUpdate("epochs", update.done, update.total, {}))
            row = info.get("row")
            if row:
                mark = " *" if info.get("improved") else ""
                partial = " (partial)" if row.get("partial") else ""
                log(
                    f"epoch {row['epoch']}{partial}: train loss {row['train_loss']:.4f} "
                    f"acc {row['train_acc']:.3f} | val loss {row['val_loss']:.4f} "
                    f"acc {row['val_acc']:.3f} macro-F1 {row['val_macro_f1']:.3f} | "
                    f"lr {row['lr']:.2e} | {row['seconds']:.1f}s{mark}"
                )


def _render_summary(result: Any, output_format: OutputFormat) -> None:
    best_row = next(
        (r for r in result.history if r["epoch"] == result.best_epoch and result.best_epoch), None
    )
    final = result.history[-1] if result.history else {}
    summary = {
        "run_dir": str(result.run_dir),
        "stopped": result.stopped,
        "epochs_completed": result.epochs_completed,
        "steps": result.global_step,
        "parameters": result.parameters,
        "device": result.device,
        "world_size": result.world_size,
        "select_metric": result.select_metric,
        "best_epoch": result.best_epoch,
        "best_val_acc": best_row.get("val_acc") if best_row else None,
        "best_val_macro_f1": best_row.get("val_macro_f1") if best_row else None,
        "final_val_acc": final.get("val_acc"),
        "final_train_acc": final.get("train_acc"),
        "seconds": round(result.seconds, 2),
        "best_weights": str(result.best_weights) if result.best_weights.exists() else None,
        "last_weights": str(result.last_weights) if result.last_weights.exists() else None,
    }
    if output_format is OutputFormat.json:
        emit_json(summary)
        return
    rows = [{"field": key, "value": value} for key, value in summary.items()]
    if output_format is OutputFormat.csv:
        from serenesense_cli.cli._output import emit_csv

        emit_csv(rows, ["field", "value"])
    else:
        emit_table(rows, ["field", "value"], title="Training summary")
    emit_result_path(result.run_dir)
