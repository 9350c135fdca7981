"""``serenesense pretrain audiomae --data DIR``: masked-autoencoder pretraining.

Flags override ``--config file.toml``, which overrides the AudioMAE defaults;
only flags actually given count. The run folder is the last line on stdout;
pass it to ``serenesense train audiomae --init RUN`` to fine-tune.
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

_PANEL_RECIPE = "Recipe overrides"
_PANEL_MODEL = "Model"
_PANEL_RUN = "Run control"


def _opt(help_text: str, *names: str, panel: str = _PANEL_RECIPE, **kwargs: Any) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel=panel, **kwargs)


def pretrain_command(
    model: Annotated[
        str | None,
        typer.Argument(help="Model to pretrain: audiomae (its ViT encoder).", show_default=False),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            "-d",
            help="Prepared set or plain folder of audio (repeat for several); labels are ignored.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of settings (and [model_args])."),
    ] = None,
    name: Annotated[
        str | None, _opt("Run name (default: audiomae).", "--name", panel=_PANEL_RUN)
    ] = None,
    runs_dir: Annotated[
        Path,
        _opt("Parent of run folders (runs/pretrain/<name>).", "--runs-dir", panel=_PANEL_RUN),
    ] = Path("runs"),
    resume: Annotated[
        Path | None,
        _opt("Continue this run folder exactly where it stopped.", "--resume", panel=_PANEL_RUN),
    ] = None,
    size: Annotated[
        str | None, _opt("Encoder size: tiny, small or base.", "--size", panel=_PANEL_MODEL)
    ] = None,
    depth: Annotated[
        int | None, _opt("Encoder blocks (default: 12).", "--depth", panel=_PANEL_MODEL)
    ] = None,
    decoder_depth: Annotated[
        int | None,
        _opt("Decoder blocks (base 8, small 4, tiny 2).", "--decoder-depth", panel=_PANEL_MODEL),
    ] = None,
    decoder_dim: Annotated[
        int | None,
        _opt("Decoder width (base 512, small 256, tiny 128).", "--decoder-dim", panel=_PANEL_MODEL),
    ] = None,
    mask_ratio: Annotated[
        float | None, _opt("Share of patches hidden (0.8).", "--mask-ratio")
    ] = None,
    mask_mode: Annotated[
        str | None,
        _opt("unstructured, time, frequency or time_frequency.", "--mask-mode"),
    ] = None,
    norm_pix_loss: Annotated[
        bool | None,
        _opt("Per-patch normalised targets.", "--norm-pix-loss/--no-norm-pix-loss"),
    ] = None,
    epochs: Annotated[int | None, _opt("Epochs (32).", "--epochs", "--max-epochs")] = None,
    batch_size: Annotated[int | None, _opt("Global batch size (16).", "--batch-size", "-b")] = None,
    lr: Annotated[float | None, _opt("Peak learning rate (2e-4).", "--lr")] = None,
    weight_decay: Annotated[float | None, _opt("Weight decay (0.05).", "--weight-decay")] = None,
    warmup_epochs: Annotated[
        float | None, _opt("Linear warm-up epochs (3).", "--warmup-epochs")
    ] = None,
    grad_clip: Annotated[float | None, _opt("Gradient-norm clip (0 = off).", "--grad-clip")] = None,
    val_fraction: Annotated[
        float | None,
        _opt("Held-out share of plain folders' files (0.1).", "--val-fraction"),
    ] = None,
    figure_every: Annotated[
        int | None,
        _opt(
            "Reconstruction figure every N epochs (5; 0 = only at the end).",
            "--figure-every",
            panel=_PANEL_RUN,
        ),
    ] = None,
    figure_clips: Annotated[
        int | None, _opt("Clips per figure (4).", "--figure-clips", panel=_PANEL_RUN)
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
        OutputFormat, typer.Option("--format", help="Summary as a table, JSON or CSV.")
    ] = OutputFormat.table,
) -> None:
    """Pretrain the AudioMAE encoder as a masked autoencoder on unlabelled audio.

    Examples:

      serenesense pretrain audiomae --data prepared/ --data recordings/

      serenesense pretrain audiomae --size tiny --depth 4 --data prepared/ --epochs 10

      serenesense pretrain --resume runs/pretrain/audiomae

      serenesense train audiomae --data prepared/ --init runs/pretrain/audiomae
    """
    from serenesense_cli.errors import BadInputError

    if resume is None:
        if model is None:
            raise BadInputError("no model given", hint="serenesense pretrain audiomae --data DIR")
        if model != "audiomae":
            raise BadInputError(
                f"only the audiomae encoder can be pretrained, not {model!r}",
                hint="serenesense pretrain audiomae --data DIR",
            )
        if not data:
            raise BadInputError(
                "no data given", hint="pass --data DIR (a prepared set or a folder of audio)"
            )
    overrides = {
        key: value
        for key, value in {
            "mask_ratio": mask_ratio,
            "mask_mode": mask_mode,
            "norm_pix_loss": norm_pix_loss,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "warmup_epochs": warmup_epochs,
            "grad_clip": grad_clip,
            "val_fraction": val_fraction,
            "figure_every": figure_every,
            "figure_clips": figure_clips,
            "seed": seed,
            "deterministic": deterministic,
            "device": device,
            "precision": precision,
            "workers": workers,
            "max_steps": max_steps,
            "time_limit": time_limit,
            "checkpoint_every": checkpoint_every,
        }.items()
        if value is not None
    }
    model_args = {
        key: value
        for key, value in {
            "size": size,
            "depth": depth,
            "decoder_depth": decoder_depth,
            "decoder_dim": decoder_dim,
        }.items()
        if value is not None
    }

    from serenesense_cli.train.config import resolve_pretrain_config
    from serenesense_cli.train.pretrain import pretrain

    resolved = None
    if resume is None:
        resolved = resolve_pretrain_config(
            "audiomae", config_file=config, overrides=overrides, model_args=model_args
        )
    elif config is not None or model_args:
        raise BadInputError(
            "--config and model flags cannot change a resumed run",
            hint="resume uses the run's config.toml; flags such as --epochs may extend it",
        )

    with progress_bars() as on_progress:
        result = pretrain(
            data=data or None,
            config=resolved,
            runs_dir=runs_dir,
            name=name,
            resume=resume,
            overrides=overrides if resume is not None else None,
            on_progress=_PretrainProgress(on_progress),
        )
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    for note in result.notes:
        log(f"note: {note}")
    _render_summary(result, output_format)
    if result.stopped == "interrupted":
        log(
            "interrupted: checkpoint saved; continue with "
            f"`serenesense pretrain --resume {result.run_dir}`"
        )
        raise typer.Exit(130)


class _PretrainProgress:
    """Engine updates -> rich bars plus one log line per epoch."""

    def __init__(self, bars: Any) -> None:
        self.bars = bars

    def __call__(self, update: Any) -> None:
        from serenesense_cli.progress import ProgressUpdate

        info = update.info
        if update.stage == "steps":
            note = (
                f"loss {info['loss']:.4f}  lr {info['lr']:.2e}  "
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
                val = row.get("val_loss")
                val_text = f"{val:.4f}" if val is not None else "-"
                log(
                    f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} | "
                    f"val loss {val_text} | lr {row['lr']:.2e} | {row['seconds']:.1f}s{mark}"
                )
            return
        self.bars(update)


def _render_summary(result: Any, output_format: OutputFormat) -> None:
    final = result.history[-1] if result.history else {}
    summary = {
        "run_dir": str(result.run_dir),
        "stopped": result.stopped,
        "epochs_completed": result.epochs_completed,
        "steps": result.global_step,
        "parameters": result.parameters,
        "encoder_parameters": result.encoder_parameters,
        "train_clips": result.train_clips,
        "val_clips": result.val_clips,
        "device": result.device,
        "world_size": result.world_size,
        "best_epoch": result.best_epoch,
        "best_loss": result.best_loss,
        "final_train_loss": final.get("train_loss"),
        "final_val_loss": final.get("val_loss"),
        "seconds": round(result.seconds, 2),
        "figures": [str(p) for p in result.figures],
        "best_weights": str(result.best_weights) if result.best_weights.exists() else None,
        "last_weights": str(result.last_weights) if result.last_weights.exists() else None,
    }
    if output_format is OutputFormat.json:
        emit_json(summary)
        return
    rows = [
        {"field": k, "value": ", ".join(v) if isinstance(v, list) else v}
        for k, v in summary.items()
    ]
    if output_format is OutputFormat.csv:
        from serenesense_cli.cli._output import emit_csv

        emit_csv(rows, ["field", "value"])
    else:
        emit_table(rows, ["field", "value"], title="Pretraining summary")
    emit_result_path(result.run_dir)
