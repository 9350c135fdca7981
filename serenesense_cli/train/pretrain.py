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

import csv
import dataclasses
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from serenesense_cli.audio.io import AUDIO_EXTENSIONS, load_audio
from serenesense_cli.config import load_toml, merge_config, to_toml
from serenesense_cli.data import cache
from serenesense_cli.errors import AudioFileError, BadInputError, DataSetError, TrainingError
from serenesense_cli.fileio import atomic_path, write_text_atomic
from serenesense_cli.models.artifact import save_model
from serenesense_cli.models.mae import MaskedAutoencoder, create_mae
from serenesense_cli.paths import DEFAULT_RUNS_DIR, new_run_dir
from serenesense_cli.progress import ProgressCallback, report
from serenesense_cli.train import distributed as dist_utils
from serenesense_cli.train.checkpoint import (
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)
from serenesense_cli.train.config import PretrainConfig
from serenesense_cli.train.data import ClipDataset, EpochSampler, center_start, fit_length
from serenesense_cli.train.engine import (
    StopRequest,
    autocast_context,
    read_history,
    seed_everything,
    set_deterministic,
    stop_reason,
)
from serenesense_cli.train.schedules import warmup_cosine_restarts_lr

HISTORY_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "lr", "seconds")
"""Columns of a pretraining run's ``history.csv``."""

NORMALIZATION_CLIPS = 256
FIGURE_DIR = "figures"


@dataclass
class PretrainResult:
    """What a finished (or stopped) pretraining run produced."""

    run_dir: Path
    stopped: str
    epochs_completed: int
    global_step: int
    best_epoch: int | None
    best_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    parameters: int = 0
    encoder_parameters: int = 0
    train_clips: int = 0
    val_clips: int = 0
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    world_size: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def best_weights(self) -> Path:
        return self.run_dir / "weights" / "best.safetensors"

    @property
    def last_weights(self) -> Path:
        return self.run_dir / "weights" / "last.safetensors"


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


def _audio_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
    )


def collect_unlabelled(
    paths: Sequence[str | Path],
    *,
    val_fraction: float,
    seed: int,
    on_progress: ProgressCallback | None = None,
) -> UnlabelledData:
    """Open prepared sets and decode plain folders; labels are ignored."""
    if not paths:
        raise BadInputError("no data given", hint="pass --data DIR (prepared set or audio folder)")
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
    files = _audio_files(root)
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
    """Log-mel mean/std of up to 256 training clips (centred windows)."""
    from serenesense_cli.audio.features import compute_normalization_stats

    chosen = sorted(np.random.default_rng(seed).permutation(len(clips))[:NORMALIZATION_CLIPS])
    batches = (
        torch.stack([clips[int(i)] for i in chosen[s : s + 16]]) for s in range(0, len(chosen), 16)
    )
    model.frontend.set_normalization(0.0, 1.0)
    mean, std = compute_normalization_stats(model.frontend, batches)
    model.set_normalization(mean, std)
    return float(mean), float(std)


# -- the loop ----------------------------------------------------------------------


def pretrain(
    *,
    data: Sequence[str | Path] | None,
    config: PretrainConfig | None = None,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    name: str | None = None,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
) -> PretrainResult:
    """Pretrain the AudioMAE encoder as a masked autoencoder; see docs/pretraining.md.

    A new run needs ``config`` (resolved) and ``data``; ``resume`` continues a
    run folder, with ``overrides`` (e.g. more epochs) on top of its config.
    """
    preference = (config.device if config else (overrides or {}).get("device")) or "auto"
    context = dist_utils.init_distributed(preference)
    try:
        return _pretrain(
            context=context,
            data=[Path(p) for p in data] if data else None,
            config=config,
            runs_dir=Path(runs_dir),
            name=name,
            resume=Path(resume) if resume is not None else None,
            overrides=dict(overrides or {}),
            on_progress=on_progress if context.is_main else None,
        )
    finally:
        dist_utils.shutdown(context)


def _resume_config(resume: Path, overrides: dict[str, Any]) -> tuple[PretrainConfig, list[Path]]:
    path = resume / "config.toml"
    if not path.is_file():
        raise BadInputError(
            f"{resume}: not a pretraining run folder (no config.toml)",
            hint="pass the folder printed by `serenesense pretrain`",
        )
    values = load_toml(path)
    if values.pop("task", None) != "pretrain":
        raise BadInputError(
            f'{resume}: not a pretraining run (config.toml has no task = "pretrain")',
            hint="resume training runs with `serenesense train --resume`",
        )
    data = [Path(p) for p in values.pop("data", []) or []]
    model_args = values.pop("model_args", {}) or {}
    config = merge_config(PretrainConfig(), values, where=str(path))
    if overrides:
        config = merge_config(config, overrides, where="command line")
    return dataclasses.replace(config, model_args=dict(model_args)).validate(), data


def _history_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(HISTORY_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: (
                    ""
                    if row.get(k) is None or (isinstance(row[k], float) and math.isnan(row[k]))
                    else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                )
                for k in HISTORY_COLUMNS
            }
        )
    return buffer.getvalue()


def _build_model(config: PretrainConfig) -> MaskedAutoencoder:
    args = {"drop_path": 0.0, **config.model_args}
    args.update(
        mask_ratio=config.mask_ratio, mask_mode=config.mask_mode, norm_pix_loss=config.norm_pix_loss
    )
    return create_mae(**args)


def _optimizer(model: nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms, biases, tokens and position tables."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "mask_token"))
        (no_decay if skip else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def warmup_steps_for(config: PretrainConfig, steps_per_epoch: int, total_steps: int) -> int:
    """``warmup_epochs`` of steps, at most a tenth of a short run."""
    wanted = round(config.warmup_epochs * steps_per_epoch)
    return min(wanted, max(1, total_steps // 10)) if wanted else 0


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


def _pretrain(
    *,
    context: dist_utils.DistContext,
    data: list[Path] | None,
    config: PretrainConfig | None,
    runs_dir: Path,
    name: str | None,
    resume: Path | None,
    overrides: dict[str, Any],
    on_progress: ProgressCallback | None,
) -> PretrainResult:
    started = time.perf_counter()
    notes: list[str] = []
    resume_state: dict[str, Any] | None = None
    run_dir: Path | None = None
    if resume is not None:
        config, saved_data = _resume_config(resume, overrides)
        data = data or saved_data
        run_dir = resume
        resume_state = load_training_state(run_dir / "weights")
    elif config is None:
        raise BadInputError("no pretraining config given")
    if not data:
        raise BadInputError("no data given", hint="pass --data DIR (prepared set or audio folder)")
    assert config is not None

    set_deterministic(config.deterministic)
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
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(run_dir / "weights" / "last.safetensors")))
        notes.append(f"resumed at epoch {int(resume_state['epoch']) + 1}")
    else:
        plain = _Clips(unlabelled.train, clip_samples=clip_samples, train=False, seed=config.seed)
        mean, std = _normalization(model, plain, config.seed)
        notes.append(f"log-mel normalisation from training clips: mean {mean:.3f}, std {std:.3f}")
        run_dir = new_run_dir(runs_dir, "pretrain", name or "audiomae") if context.is_main else None
        run_dir = dist_utils.broadcast_object(run_dir, context)
    assert run_dir is not None
    weights_dir = run_dir / "weights"
    figure_dir = run_dir / FIGURE_DIR
    if context.is_main:
        weights_dir.mkdir(parents=True, exist_ok=True)
        saved: dict[str, Any] = {"task": "pretrain", "data": [str(p.resolve()) for p in data]}
        saved.update(config.to_dict())
        header = "# Resolved pretraining config; reusable with `serenesense pretrain --config`.\n"
        write_text_atomic(run_dir / "config.toml", header + to_toml(saved))

    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())
    encoder_parameters = sum(p.numel() for p in model.encoder.parameters())
    train_model: nn.Module = model
    if context.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.batch_size % context.world:
        raise BadInputError(
            f"batch size {config.batch_size} is not divisible by the {context.world} processes",
            hint="--batch-size is the global batch; choose a multiple of --nproc-per-node",
        )
    local_batch = config.batch_size // context.world
    sampler = EpochSampler(len(train_set), seed=config.seed, rank=context.rank, world=context.world)
    loader_args: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": device.type == "cuda",
    }
    train_loader = DataLoader(
        train_set,
        batch_size=local_batch,
        sampler=sampler,
        generator=torch.Generator().manual_seed(config.seed),
        **loader_args,
    )
    val_loader = (
        DataLoader(val_set, batch_size=max(local_batch, 16), shuffle=False, **loader_args)
        if val_set is not None
        else None
    )
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = warmup_steps_for(config, steps_per_epoch, total_steps)
    if warmup < round(config.warmup_epochs * steps_per_epoch):
        notes.append(f"warm-up shortened to {warmup} steps (10% of this run's {total_steps})")
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, warmup, total_steps)
    figure_clips = _figure_clips(val_set or train_set, config.figure_clips)

    history: list[dict[str, Any]] = []
    epoch, global_step, step_in_epoch = 0, 0, 0
    best_loss: float | None = None
    best_epoch: int | None = None
    sums = {"loss": 0.0, "seen": 0, "seconds": 0.0}
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        epoch = int(resume_state["epoch"])
        global_step = int(resume_state["global_step"])
        step_in_epoch = int(resume_state["step_in_epoch"])
        best_loss = resume_state.get("best_loss")
        best_epoch = resume_state.get("best_epoch")
        sums = dict(resume_state.get("partial_sums") or sums)
        history = [r for r in read_history(run_dir) if r["epoch"] <= epoch]
        restore_rng_state(resume_state["rng"])

    def checkpoint(*, next_epoch: int, in_epoch: int, partial: dict[str, Any]) -> None:
        if not context.is_main:
            return
        save_model(
            weights_dir / "last.safetensors",
            model,
            [],
            task="pretrain",
            metrics=history[-1] if history else {},
            epoch=next_epoch,
            global_step=global_step,
            train_config=config.to_dict(),
        )
        save_training_state(
            weights_dir,
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": next_epoch,
                "global_step": global_step,
                "step_in_epoch": in_epoch,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "partial_sums": dict(partial),
                "rng": capture_rng_state(),
            },
        )

    figures: list[Path] = []

    def figure(label: int) -> None:
        if context.is_main:
            path = figure_dir / f"reconstruction_epoch{label:03d}.png"
            draw_reconstructions(model, figure_clips, path, seed=config.seed, epoch=label)
            figures.append(path)

    stopped = "completed"
    stop_request = StopRequest()
    deadline = started + config.time_limit if config.time_limit > 0 else None
    report(on_progress, "epochs", epoch, config.epochs)
    try:
        stop_request.install()
        while epoch < config.epochs and stopped == "completed":
            if step_in_epoch == 0:
                seed_everything(config.seed, epoch + 1)
                sums = {"loss": 0.0, "seen": 0, "seconds": 0.0}
            sampler.set_epoch(epoch, skip=step_in_epoch * local_batch)
            train_set.set_epoch(epoch)
            train_model.train()
            epoch_start = time.perf_counter() - sums["seconds"]
            mid_epoch = False
            for waves in train_loader:
                waves = waves.to(device, non_blocking=True)
                with autocast_context(device, config.precision):
                    loss = train_model(waves).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                step_loss = dist_utils.all_reduce_sum(loss.detach().float().clone(), context)
                step_loss = step_loss / context.world
                if not torch.isfinite(step_loss):
                    raise TrainingError(
                        f"loss became {float(step_loss)} at epoch {epoch + 1}, "
                        f"step {global_step + 1}",
                        hint=f"lower --lr or set --grad-clip; the last good checkpoint is in "
                        f"{weights_dir}",
                    )
                optimizer.step()
                scheduler.step()
                global_step += 1
                step_in_epoch += 1
                seen = waves.shape[0] * context.world
                sums["loss"] += float(step_loss) * seen
                sums["seen"] += seen
                elapsed = time.perf_counter() - epoch_start
                report(
                    on_progress,
                    "steps",
                    step_in_epoch,
                    steps_per_epoch,
                    epoch=epoch + 1,
                    loss=sums["loss"] / max(1, sums["seen"]),
                    lr=optimizer.param_groups[0]["lr"],
                    samples_per_s=sums["seen"] / max(elapsed, 1e-9),
                )
                if config.checkpoint_every and global_step % config.checkpoint_every == 0:
                    sums["seconds"] = elapsed
                    checkpoint(next_epoch=epoch, in_epoch=step_in_epoch, partial=sums)
                stopped = stop_reason(stop_request, config.max_steps, global_step, deadline)
                if stopped != "completed":
                    mid_epoch = step_in_epoch < steps_per_epoch
                    break
            sums["seconds"] = time.perf_counter() - epoch_start
            if mid_epoch:
                checkpoint(next_epoch=epoch, in_epoch=step_in_epoch, partial=sums)
                if stopped != "interrupted":
                    figure(epoch + 1)
                break
            val_loss = (
                validate_mae(
                    model, val_loader, device=device, precision=config.precision, seed=config.seed
                )
                if val_loader is not None
                else None
            )
            row = {
                "epoch": epoch + 1,
                "step": global_step,
                "train_loss": sums["loss"] / max(1, sums["seen"]),
                "val_loss": val_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": sums["seconds"],
            }
            history.append(row)
            score = val_loss if val_loss is not None else row["train_loss"]
            improved = math.isfinite(score) and (best_loss is None or score < best_loss)
            if improved:
                best_loss, best_epoch = score, epoch + 1
                if context.is_main:
                    save_model(
                        weights_dir / "best.safetensors",
                        model,
                        [],
                        task="pretrain",
                        metrics=row,
                        epoch=epoch + 1,
                        global_step=global_step,
                        select_metric="val_loss" if val_loss is not None else "train_loss",
                        train_config=config.to_dict(),
                    )
            epoch += 1
            step_in_epoch = 0
            checkpoint(next_epoch=epoch, in_epoch=0, partial={})
            last = epoch >= config.epochs or stopped != "completed"
            if last or (config.figure_every and epoch % config.figure_every == 0):
                figure(epoch)
            if context.is_main:
                write_text_atomic(run_dir / "history.csv", _history_csv(history))
            report(on_progress, "epochs", epoch, config.epochs, row=row, improved=improved)
    except KeyboardInterrupt:
        stopped = "interrupted"
        checkpoint(next_epoch=epoch, in_epoch=step_in_epoch, partial=sums)
    except torch.OutOfMemoryError as error:
        raise TrainingError(
            f"out of memory at batch size {config.batch_size} on {device}",
            hint=f"try --batch-size {max(1, config.batch_size // 2)}",
        ) from error
    finally:
        stop_request.uninstall()
    if context.is_main:
        write_text_atomic(run_dir / "history.csv", _history_csv(history))

    return PretrainResult(
        run_dir=run_dir,
        stopped=stopped,
        epochs_completed=epoch,
        global_step=global_step,
        best_epoch=best_epoch,
        best_loss=best_loss,
        history=history,
        parameters=parameters,
        encoder_parameters=encoder_parameters,
        train_clips=unlabelled.train_clips,
        val_clips=unlabelled.val_clips,
        figures=figures,
        seconds=time.perf_counter() - started,
        device=str(device),
        world_size=context.world,
        notes=notes,
    )


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
        with autocast_context(device, precision):
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
