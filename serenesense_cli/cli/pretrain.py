"""``serenesense pretrain audiomae --data DIR``: masked-autoencoder pretraining.

Flags override ``--config file.toml``, which overrides the AudioMAE defaults;
only flags actually given count. The run folder is the last line on stdout;
pass it to ``serenesense train audiomae --init RUN`` to fine-tune.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from serenesense_cli.cli import _training_options as run_flags
from serenesense_cli.cli import _training_output as run_output
from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._output import OutputFormat
from serenesense_cli.cli._training_options import PANEL_RUN, given, opt
from serenesense_cli.limits import TRAINING

_PANEL_MODEL = "Model"


def _optimiser_defaults() -> dict[str, float]:
    """PretrainConfig's fixed defaults, shown in the optimiser flags' help."""
    from serenesense_cli.train.config import PretrainConfig

    defaults = PretrainConfig()
    return {k: getattr(defaults, k) for k in ("epochs", "batch_size", "lr", "weight_decay")}


@run_flags.shared_flags("pretrain", defaults=_optimiser_defaults())
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
    config: run_flags.Config = None,
    run_folder: run_flags.RunFolder = None,
    size: Annotated[
        str | None, opt("Encoder size: tiny, small or base.", "--size", panel=_PANEL_MODEL)
    ] = None,
    depth: Annotated[
        int | None,
        opt(
            "Encoder blocks (default: 12).",
            "--depth",
            panel=_PANEL_MODEL,
            callback=within(TRAINING["depth"]),
        ),
    ] = None,
    decoder_depth: Annotated[
        int | None,
        opt(
            "Decoder blocks (base 8, small 4, tiny 2).",
            "--decoder-depth",
            panel=_PANEL_MODEL,
            callback=within(TRAINING["decoder_depth"]),
        ),
    ] = None,
    decoder_dim: Annotated[
        int | None,
        opt(
            "Decoder width (base 512, small 256, tiny 128).",
            "--decoder-dim",
            panel=_PANEL_MODEL,
            callback=within(TRAINING["decoder_dim"]),
        ),
    ] = None,
    mask_ratio: Annotated[
        float | None,
        opt(
            "Share of patches hidden (0.8).",
            "--mask-ratio",
            callback=within(TRAINING["mask_ratio"]),
        ),
    ] = None,
    mask_mode: Annotated[
        run_flags.MaskModeName | None,
        opt("Which patches are hidden together.", "--mask-mode"),
    ] = None,
    norm_pix_loss: Annotated[
        bool | None,
        opt("Per-patch normalised targets.", "--norm-pix-loss/--no-norm-pix-loss"),
    ] = None,
    optimiser: run_flags.Optimiser = None,
    warmup_epochs: Annotated[
        float | None,
        opt(
            "Linear warm-up epochs (3).",
            "--warmup-epochs",
            callback=within(TRAINING["warmup_epochs"]),
        ),
    ] = None,
    grad_clip: run_flags.GradClip = None,
    val_fraction: Annotated[
        float | None,
        opt(
            "Held-out share of plain folders' files (0.1).",
            "--val-fraction",
            callback=within(TRAINING["val_fraction"]),
        ),
    ] = None,
    figure_every: Annotated[
        int | None,
        opt(
            "Reconstruction figure every N epochs (5; 0 = only at the end).",
            "--figure-every",
            panel=PANEL_RUN,
            callback=within(TRAINING["figure_every"]),
        ),
    ] = None,
    figure_clips: Annotated[
        int | None,
        opt(
            "Clips per figure (4).",
            "--figure-clips",
            panel=PANEL_RUN,
            callback=within(TRAINING["figure_clips"]),
        ),
    ] = None,
    run_control: run_flags.RunControl = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Summary as a table, JSON or CSV.")
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

    assert run_folder is not None  # filled in by shared_flags
    resume = run_folder["resume"]
    if resume is None:
        if model is None:
            raise BadInputError("no model given", hint="serenesense pretrain audiomae --data DIR")
        from serenesense_cli.models import models_where

        pretrainable = models_where(lambda spec: spec.pretrainable)
        if model not in pretrainable:
            raise BadInputError(
                f"only the {' or '.join(pretrainable)} encoder can be pretrained, not {model!r}",
                hint=f"serenesense pretrain {pretrainable[0]} --data DIR",
            )
        from serenesense_cli.train.config import require_data

        require_data(data, "pretrain")
    overrides = given(
        mask_ratio=mask_ratio,
        mask_mode=mask_mode,
        norm_pix_loss=norm_pix_loss,
        warmup_epochs=warmup_epochs,
        grad_clip=grad_clip,
        val_fraction=val_fraction,
        figure_every=figure_every,
        figure_clips=figure_clips,
    )
    overrides.update({**(optimiser or {}), **(run_control or {})})
    model_args = given(size=size, depth=depth, decoder_depth=decoder_depth, decoder_dim=decoder_dim)

    from serenesense_cli.train.config import resolve_pretrain_config
    from serenesense_cli.train.pretrain import pretrain

    resolved = None
    if resume is None:
        assert model is not None
        resolved = resolve_pretrain_config(
            model, config_file=config, overrides=overrides, model_args=model_args
        )
    elif config is not None or model_args:
        raise BadInputError(
            "--config and model flags cannot change a resumed run",
            hint="resume uses the run's config.toml; flags such as --epochs may extend it",
        )

    run_output.run_and_finish(
        pretrain,
        _epoch_head,
        output_format,
        command="pretrain",
        title="Pretraining summary",
        summarize=_summary,
        run_folder=run_folder,
        overrides=overrides,
        data=data or None,
        config=resolved,
    )


def _epoch_head(row: dict[str, Any]) -> str:
    """The log line of a finished epoch, before the learning rate."""
    val = row.get("val_loss")
    val_text = f"{val:.4f}" if val is not None else "-"
    return f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} | val loss {val_text}"


def _summary(result: Any) -> dict[str, Any]:
    final = result.history[-1] if result.history else {}
    return {
        **run_output.summary_head(result),
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
        **run_output.summary_weights(result),
    }
