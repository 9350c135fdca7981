"""Masked-autoencoder pretraining of the AudioMAE encoder on unlabelled audio.

``pretrain(data=[...], ...)`` is the library entry point of ``serenesense
pretrain audiomae``. It shares the training engine's machinery: per-epoch
seeding and the resumable sampler (bit-exact resume on the CPU), atomic
checkpoints, torchrun, bf16 autocast on CUDA, Ctrl-C handling.

Data: each path is a prepared set (every split except ``val`` and ``test`` is
used for training, labels ignored; ``val`` is the held-out slice for the
validation loss, so a later fine-tuning run validates on clips the encoder
never saw) or a plain folder of audio files (searched recursively, decoded
into memory once; a seeded ``val_fraction`` of its files is held out).
Each epoch takes a random 10 s window from every clip (shorter clips are
zero-padded), as training does.

The run folder (``runs/pretrain/<name>``): ``config.toml`` (``task =
"pretrain"``), ``history.csv`` (epoch, step, train_loss, val_loss, lr,
seconds), ``weights/{best,last}.safetensors`` (+ ``.json``; the whole
masked autoencoder, model ``audiomae-mae``; best = lowest validation loss),
``weights/last_state.pt`` and ``figures/reconstruction_epochNNN.png``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from serenesense_cli.audio.io import AUDIO_EXTENSIONS, audio_files_in, load_audio
from serenesense_cli.data import cache
from serenesense_cli.errors import AudioFileError, BadInputError, DataSetError
from serenesense_cli.fileio import atomic_path
from serenesense_cli.models.mae import MaskedAutoencoder, create_mae
from serenesense_cli.progress import ProgressCallback, report
from serenesense_cli.train import distributed as dist_utils
from serenesense_cli.train import setup
from serenesense_cli.train.checkpoint import load_last_weights, load_training_state
from serenesense_cli.train.config import PretrainConfig, require_data
from serenesense_cli.train.data import ClipDataset, center_start, epoch_data, fit_length
from serenesense_cli.train.loop import (
    EpochLoop,
    EpochTask,
    RunResult,
    run_totals,
    seed_everything,
)
from serenesense_cli.train.schedules import warmup_cosine_restarts_lr

if TYPE_CHECKING:
    from typing_extensions import Unpack

HISTORY_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "lr", "seconds")
"""Columns of a pretraining run's ``history.csv``."""

FIGURE_DIR = "figures"


@dataclass(kw_only=True)
class PretrainResult(RunResult):
    """What a finished (or stopped) pretraining run produced."""

    best_loss: float | None
    encoder_parameters: int = 0
    train_clips: int = 0
    val_clips: int = 0
    figures: list[Path] = field(default_factory=list)


# -- data ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    label_index: int
    name: str


class AudioFolderSet:
    """A plain folder of audio decoded into memory (int16), shaped like a
    :class:`~serenesense_cli.data.cache.PreparedSet` for :class:`ClipDataset`."""

    def __init__(self, root: Path, names: list[str], clips: list[np.ndarray]) -> None:
        self.root = root
        self.records = [_Record(0, name) for name in names]
        self._clips = clips

    def waveform(self, index: int) -> np.ndarray:
        return self._clips[index].astype(np.float32) / cache.SCALE

    def __len__(self) -> int:
        return len(self._clips)


@dataclass
class UnlabelledData:
    """Training and held-out clips gathered from every ``--data`` path."""

    train: list[tuple[Any, list[int]]]
    val: list[tuple[Any, list[int]]]
    sources: list[dict[str, Any]]
    skipped: list[tuple[str, str]]

    @property
    def train_clips(self) -> int:
        return sum(len(idx) for _, idx in self.train)

    @property
    def val_clips(self) -> int:
        return sum(len(idx) for _, idx in self.val)


def collect_unlabelled(
    paths: Sequence[str | Path],
    *,
    val_fraction: float,
    seed: int,
    on_progress: ProgressCallback | None = None,
) -> UnlabelledData:
    """Open prepared sets and decode plain folders; labels are ignored."""
    require_data(paths, "pretrain")
    data = UnlabelledData([], [], [], [])
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise DataSetError(
                f"{path}: no such folder", hint="pass prepared sets or audio folders"
            )
        if cache.read_metadata(path) is not None:
            prepared = cache.open_prepared(path)
            train_idx = [
                i for i, r in enumerate(prepared.records) if r.split not in ("val", "test")
            ]
            val_idx = prepared.indices("val")
            kind = "prepared"
            dataset: Any = prepared
        else:
            dataset, train_idx, val_idx = _decode_folder(
                path,
                val_fraction=val_fraction,
                seed=seed,
                skipped=data.skipped,
                on_progress=on_progress,
            )
            kind = "folder"
        if train_idx:
            data.train.append((dataset, train_idx))
        if val_idx:
            data.val.append((dataset, val_idx))
        data.sources.append(
            {"path": str(path), "kind": kind, "train": len(train_idx), "val": len(val_idx)}
        )
    if not data.train_clips:
        raise DataSetError(
            "no training clips in " + ", ".join(str(p) for p in paths),
            hint="prepared sets need clips outside val/test; folders need audio files",
        )
    return data


def _decode_folder(
    root: Path,
    *,
    val_fraction: float,
    seed: int,
    skipped: list[tuple[str, str]],
    on_progress: ProgressCallback | None,
) -> tuple[AudioFolderSet, list[int], list[int]]:
    files = audio_files_in(root)
    if not files:
        raise DataSetError(
            f"{root}: neither a prepared set nor a folder with audio files "
            f"({', '.join(sorted(AUDIO_EXTENSIONS))})",
            hint="pass a folder of recordings or a `serenesense data prepare` output",
        )
    names: list[str] = []
    clips: list[np.ndarray] = []
    for done, file in enumerate(files, 1):
        try:
            wave = load_audio(file)
        except AudioFileError as error:
            skipped.append((str(file), error.problem))
        else:
            names.append(str(file.relative_to(root)))
            clips.append(cache.to_int16(wave))
        report(on_progress, f"decode {root.name}", done, len(files))
    if not clips:
        raise DataSetError(f"{root}: none of its {len(files)} audio files could be decoded")
    order = np.random.default_rng(seed).permutation(len(clips))
    n_val = round(len(clips) * val_fraction) if len(clips) > 1 else 0
    if val_fraction > 0 and len(clips) > 1:
        n_val = max(1, n_val)
    val_idx = sorted(order[:n_val].tolist())
    train_idx = sorted(order[n_val:].tolist())
    return AudioFolderSet(root, names, clips), train_idx, val_idx


class _Clips(Dataset):
    """Windows of several sets back to back; items are waveforms only."""

    def __init__(
        self, parts: list[tuple[Any, list[int]]], *, clip_samples: int, train: bool, seed: int
    ) -> None:
        self.parts = [
            ClipDataset(ds, idx, clip_samples=clip_samples, train=train, seed=seed + 7919 * k)
            for k, (ds, idx) in enumerate(parts)
        ]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, item: int) -> tuple[ClipDataset, int]:
        k = int(np.searchsorted(self.offsets, item, side="right")) - 1
        return self.parts[k], item - int(self.offsets[k])

    def __getitem__(self, item: int) -> torch.Tensor:
        part, local = self.locate(item)
        return part[local][0]

    def name(self, item: int) -> str:
        part, local = self.locate(item)
        record = part.prepared.records[part.indices[local]]
        return str(getattr(record, "clip_id", None) or getattr(record, "name", item))


def _normalization(model: MaskedAutoencoder, clips: _Clips, seed: int) -> tuple[float, float]:
    """Log-mel mean/std of a sample of the training clips (centred windows)."""
    mean, std = setup.measure_normalization(model.frontend, clips.__getitem__, len(clips), seed)
    model.set_normalization(mean, std)
    return mean, std


# -- the loop ----------------------------------------------------------------------


def pretrain(
    *,
    data: Sequence[str | Path] | None,
    config: PretrainConfig | None = None,
    **options: Unpack[setup.RunOptions],
) -> PretrainResult:
    """Pretrain the AudioMAE encoder as a masked autoencoder; see docs/pretraining.md.

    A new run needs ``config`` (resolved) and ``data``; ``resume`` continues a
    run folder, with ``overrides`` (e.g. more epochs) on top of its config.
    """
    return setup.launch_run(
        _pretrain,
        config=config,
        options=options,
        data=[Path(p) for p in data] if data else None,
    )


def _resume_config(resume: Path, overrides: dict[str, Any]) -> tuple[PretrainConfig, list[Path]]:
    values = setup.read_run_config(resume, command="pretrain")
    if values.pop("task", None) != "pretrain":
        raise BadInputError(
            f'{resume}: not a pretraining run (config.toml has no task = "pretrain")',
            hint="resume training runs with `serenesense train --resume`",
        )
    data = [Path(p) for p in values.pop("data", []) or []]
    config = setup.resumed_config(
        PretrainConfig(), values, overrides, where=str(resume / "config.toml")
    )
    return config.validate(), data


def _build_model(config: PretrainConfig) -> MaskedAutoencoder:
    args = {"drop_path": 0.0, **config.model_args}
    args.update(
        mask_ratio=config.mask_ratio, mask_mode=config.mask_mode, norm_pix_loss=config.norm_pix_loss
    )
    return create_mae(**args)


def _optimizer(model: nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms, biases, tokens and position tables."""
    groups = setup.weight_decay_groups(model, config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def warmup_steps_for(config: PretrainConfig, steps_per_epoch: int, total_steps: int) -> int:
    """``warmup_epochs`` of steps, at most a tenth of a short run."""
    return setup.capped_warmup(round(config.warmup_epochs * steps_per_epoch), total_steps)


def _scheduler(
    optimizer: torch.optim.Optimizer, config: PretrainConfig, warmup: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then one half-cosine down to ``min_lr`` at the last step."""
    period = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        lr = warmup_cosine_restarts_lr(
            min(step, total_steps - 1) if total_steps > warmup else step,
            base_lr=config.lr,
            min_lr=config.min_lr,
            warmup_steps=warmup,
            period_steps=period,
            period_mult=1,
        )
        return lr / config.lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


CONFIG_HEADER = "Resolved pretraining config; reusable with `serenesense pretrain --config`."


def _pretrain(
    *,
    context: dist_utils.DistContext,
    data: list[Path] | None,
    config: PretrainConfig | None,
    start: setup.RunStart,
    on_progress: ProgressCallback | None,
) -> PretrainResult:
    started = time.perf_counter()
    notes: list[str] = []
    resume_state: dict[str, Any] | None = None
    run_dir = start.resume
    if run_dir is not None:
        config, saved_data = _resume_config(run_dir, start.overrides)
        data = data or saved_data
        resume_state = load_training_state(run_dir / "weights")
    elif config is None:
        raise BadInputError("no pretraining config given")
    require_data(data, "pretrain")
    assert config is not None

    setup.set_deterministic(config.deterministic)
    device = context.device
    seed_everything(config.seed, 0)
    unlabelled = collect_unlabelled(
        data, val_fraction=config.val_fraction, seed=config.seed, on_progress=on_progress
    )
    model = _build_model(config)
    clip_samples = model.clip_samples
    train_set = _Clips(unlabelled.train, clip_samples=clip_samples, train=True, seed=config.seed)
    val_set = (
        _Clips(unlabelled.val, clip_samples=clip_samples, train=False, seed=config.seed)
        if unlabelled.val
        else None
    )
    notes.append(
        f"{unlabelled.train_clips} training clips, {unlabelled.val_clips} held out, from "
        + ", ".join(f"{s['path']} ({s['kind']})" for s in unlabelled.sources)
    )
    if unlabelled.skipped:
        notes.append(f"{len(unlabelled.skipped)} files could not be decoded and were skipped")
    if val_set is None:
        notes.append("no held-out clips: the best checkpoint is chosen on the training loss")

    if resume_state is not None:
        model.load_state_dict(load_last_weights(run_dir / "weights"))
        notes.append(f"resumed at epoch {int(resume_state['epoch']) + 1}")
    else:
        plain = _Clips(unlabelled.train, clip_samples=clip_samples, train=False, seed=config.seed)
        mean, std = _normalization(model, plain, config.seed)
        notes.append(f"log-mel normalisation from training clips: mean {mean:.3f}, std {std:.3f}")
        run_dir = setup.create_run_folder(
            start.runs_dir, "pretrain", start.name or config.model, context
        )
    assert run_dir is not None
    saved = {"task": "pretrain", "data": [str(p.resolve()) for p in data], **config.to_dict()}
    setup.write_run_config(run_dir, saved, CONFIG_HEADER, context)

    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())
    encoder_parameters = sum(p.numel() for p in model.encoder.parameters())
    train_model = dist_utils.wrap_model(model, context)
    data_feed = epoch_data(train_set, config, context)
    val_loader = (
        DataLoader(
            val_set,
            batch_size=max(data_feed.local_batch, 16),
            shuffle=False,
            **data_feed.loader_args,
        )
        if val_set is not None
        else None
    )
    steps_per_epoch = data_feed.steps_per_epoch
    total_steps = steps_per_epoch * config.epochs
    warmup = warmup_steps_for(config, steps_per_epoch, total_steps)
    if warmup < round(config.warmup_epochs * steps_per_epoch):
        notes.append(f"warm-up shortened to {warmup} steps (10% of this run's {total_steps})")
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, warmup, total_steps)

    task = _MaskedTask(
        config=config,
        context=context,
        model=model,
        train_model=train_model,
        optimizer=optimizer,
        scheduler=scheduler,
        val_loader=val_loader,
        figure_clips=_figure_clips(val_set or train_set, config.figure_clips),
        figure_dir=run_dir / FIGURE_DIR,
    )
    loop = EpochLoop(task, data_feed, run_dir=run_dir, started=started, on_progress=on_progress)
    if resume_state is not None:
        loop.resume(resume_state)
    state = loop.run(notes)

    totals = run_totals(
        state, run_dir=run_dir, started=started, context=context, parameters=parameters, notes=notes
    )
    return PretrainResult(
        **totals,
        best_loss=state.best,
        encoder_parameters=encoder_parameters,
        train_clips=unlabelled.train_clips,
        val_clips=unlabelled.val_clips,
        figures=task.figures,
    )


@dataclass
class _MaskedTask(EpochTask):
    """Masked-autoencoder pretraining in the shared loop: reconstruction loss,
    best = lowest validation (else training) loss, reconstruction figures."""

    config: PretrainConfig
    context: dist_utils.DistContext
    model: MaskedAutoencoder
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    val_loader: DataLoader | None
    figure_clips: list[tuple[str, torch.Tensor]]
    figure_dir: Path
    figures: list[Path] = field(default_factory=list)

    history_columns = HISTORY_COLUMNS
    best_key = "best_loss"
    nan_hint = "lower --lr or set --grad-clip"
    pretraining = True

    @property
    def classes(self) -> list[str]:
        return []

    @property
    def select_metric(self) -> str:
        return "val_loss" if self.val_loader is not None else "train_loss"

    def artifact_meta(self) -> dict[str, Any]:
        return {"task": "pretrain"}

    def new_sums(self) -> dict[str, Any]:
        return {"loss": 0.0, "seen": 0, "seconds": 0.0}

    def train_mode(self) -> None:
        self.train_model.train()

    def forward(self, batch: Any) -> tuple[torch.Tensor, Any]:
        device = self.context.device
        waves = batch.to(device, non_blocking=True)
        with setup.autocast_context(device, self.config.precision):
            loss = self.train_model(waves).loss
        return loss, waves.shape[0]

    def scheduler_step(self) -> None:
        self.scheduler.step()

    def tally(self, sums: dict[str, Any], step_loss: torch.Tensor, outputs: Any) -> None:
        step_loss = step_loss / self.context.world
        seen = outputs * self.context.world
        sums["loss"] += float(step_loss) * seen
        sums["seen"] += seen

    def progress(self, sums: dict[str, Any]) -> dict[str, Any]:
        return {
            "loss": sums["loss"] / max(1, sums["seen"]),
            "lr": self.optimizer.param_groups[0]["lr"],
        }

    def evaluate(
        self, *, epoch: int, global_step: int, partial: bool, sums: dict[str, Any]
    ) -> dict[str, Any]:
        config = self.config
        val_loss = (
            validate_mae(
                self.model,
                self.val_loader,
                device=self.context.device,
                precision=config.precision,
                seed=config.seed,
            )
            if self.val_loader is not None
            else None
        )
        return {
            "epoch": epoch + 1,
            "step": global_step,
            "train_loss": sums["loss"] / max(1, sums["seen"]),
            "val_loss": val_loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": sums["seconds"],
        }

    def score(self, row: dict[str, Any]) -> float:
        return row["val_loss"] if row["val_loss"] is not None else row["train_loss"]

    def improved(self, score: float, best: float | None) -> bool:
        return math.isfinite(score) and (best is None or score < best)

    def partial_epoch(self, epoch: int) -> bool:
        self.figure(epoch + 1)  # a figure of where the run stopped; no partial row
        return False

    def after_epoch(self, epochs_done: int, stopped: str) -> str:
        every = self.config.figure_every
        last = epochs_done >= self.config.epochs or stopped != "completed"
        if last or (every and epochs_done % every == 0):
            self.figure(epochs_done)
        return stopped

    def figure(self, label: int) -> None:
        """Reconstructions after epoch ``label`` (main process only)."""
        if self.context.is_main:
            path = self.figure_dir / f"reconstruction_epoch{label:03d}.png"
            draw_reconstructions(
                self.model, self.figure_clips, path, seed=self.config.seed, epoch=label
            )
            self.figures.append(path)


@torch.no_grad()
def validate_mae(
    model: MaskedAutoencoder,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str,
    seed: int,
) -> float:
    """Masked MSE on held-out clips, with the same seeded masks every epoch."""
    model.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    total, loss_sum = 0, 0.0
    for waves in loader:
        waves = waves.to(device)
        with setup.autocast_context(device, precision):
            out = model(waves, generator=generator)
        loss_sum += float(out.loss) * waves.shape[0]
        total += waves.shape[0]
    return loss_sum / max(1, total)


# -- figures -----------------------------------------------------------------------


def _figure_clips(clips: _Clips, count: int) -> list[tuple[str, torch.Tensor]]:
    """A fixed, evenly spread choice of clips (centred windows) for the figures."""
    if len(clips) == 0:
        return []
    chosen = np.unique(np.linspace(0, len(clips) - 1, num=min(count, len(clips))).round())
    picks = []
    for item in chosen.astype(int).tolist():
        part, local = clips.locate(item)
        index = part.indices[local]
        wave = part.prepared.waveform(index)
        window = fit_length(
            wave, part.clip_samples, start=center_start(len(wave), part.clip_samples)
        )
        picks.append((clips.name(item), torch.from_numpy(window)))
    return picks


@torch.no_grad()
def draw_reconstructions(
    model: MaskedAutoencoder,
    clips: list[tuple[str, torch.Tensor]],
    path: Path,
    *,
    seed: int,
    epoch: int,
) -> Path:
    """Rows: input log-mel, masked input, reconstruction (hidden patches predicted,
    un-normalised with each true patch's mean/std); one column per clip."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    waves = torch.stack([w for _, w in clips]).to(device)
    out = model(waves, generator=torch.Generator().manual_seed(seed + 2))
    features = out.features.float().cpu()[:, 0]
    recon = model.reconstruct(out).float().cpu()[:, 0]
    mask = model.unpatchify(out.mask[..., None].expand_as(out.pred).float()).cpu()[:, 0]
    per_clip = ((out.pred.float() - out.target.float()) ** 2).mean(-1)
    per_clip = ((per_clip * out.mask).sum(1) / out.mask.sum(1)).cpu()
    model.train(was_training)

    cmap = colormaps["magma"].with_extremes(bad="#c8c8c8")
    cols = len(clips)
    fig = Figure(figsize=(3.2 * cols, 7.8), layout="constrained")
    axes = fig.subplots(3, cols, squeeze=False)
    hidden = int(out.mask[0].sum())
    labels = (
        "input log-mel",
        f"masked input ({hidden}/{model.num_patches} hidden)",
        "reconstruction",
    )
    for c, (name, _) in enumerate(clips):
        vmin, vmax = float(features[c].min()), float(features[c].max())
        masked = features[c].clone()
        masked[mask[c] > 0] = float("nan")
        for r, image in enumerate((features[c], masked, recon[c])):
            ax = axes[r][c]
            ax.imshow(image.numpy(), origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{labels[r]}\nmel bin", fontsize=8)
            if r == 2:
                ax.set_xlabel(f"time (masked MSE {float(per_clip[c]):.3f})", fontsize=8)
        short = name if len(name) <= 32 else "..." + name[-29:]
        axes[0][c].set_title(short, fontsize=8)
    fig.suptitle(f"AudioMAE reconstructions, epoch {epoch}", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return path


__all__ = [
    "HISTORY_COLUMNS",
    "AudioFolderSet",
    "PretrainResult",
    "UnlabelledData",
    "collect_unlabelled",
    "draw_reconstructions",
    "pretrain",
    "validate_mae",
]
