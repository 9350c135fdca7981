"""The training loop: one function, ``train(...)``, used by the CLI, the API and tests.

Design points (see docs/training.md):
- randomness is seeded per epoch, so a run interrupted at any checkpoint and
  resumed ends with the same weights as an uninterrupted one;
- the best checkpoint is chosen on a validation metric, never on test data;
- every file is written atomically; a NaN loss stops the run and keeps the last
  good checkpoint;
- under torchrun, gradients are averaged by DDP and only rank 0 writes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import random
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from serenesense_cli.config import load_toml, merge_config
from serenesense_cli.data.cache import PreparedSet, open_prepared
from serenesense_cli.errors import BadInputError, DataSetError, TrainingError
from serenesense_cli.evaluate.metrics import basic_metrics
from serenesense_cli.fileio import write_text_atomic
from serenesense_cli.models import create_model
from serenesense_cli.models.artifact import save_model
from serenesense_cli.models.registry import AudioClassifier, count_parameters
from serenesense_cli.paths import DEFAULT_RUNS_DIR, new_run_dir
from serenesense_cli.progress import ProgressCallback, report
from serenesense_cli.train import distributed as dist_utils
from serenesense_cli.train.checkpoint import (
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)
from serenesense_cli.train.config import TrainConfig, recipe, resolve_train_config
from serenesense_cli.train.data import ClipDataset, EpochSampler, class_weights
from serenesense_cli.train.schedules import build_scheduler, effective_warmup

HISTORY_COLUMNS = (
    "epoch",
    "step",
    "partial",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_macro_f1",
    "lr",
    "samples_per_s",
    "seconds",
)
"""Columns of ``history.csv``. ``train_acc`` is measured against the clips' own
(un-mixed) labels, also in batches where mixup/CutMix mixed the inputs."""

NORMALIZATION_CLIPS = 256


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    stopped: str
    epochs_completed: int
    global_step: int
    select_metric: str
    best_epoch: int | None
    best_score: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    parameters: int = 0
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


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed torch, numpy and random from (seed, epoch): epochs are reproducible alone."""
    value = (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _set_deterministic(enabled: bool) -> None:
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def _check_prepared(prepared: PreparedSet) -> tuple[list[int], list[int]]:
    train_idx = prepared.indices("train")
    val_idx = prepared.indices("val")
    if not train_idx:
        raise DataSetError(f"{prepared.root}: the prepared set has no training clips")
    if not val_idx:
        raise DataSetError(
            f"{prepared.root}: the prepared set has no validation clips",
            hint="prepare it again with --val-fraction > 0",
        )
    return train_idx, val_idx


def _history_to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(HISTORY_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in HISTORY_COLUMNS})
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``history.csv`` with numbers parsed (missing values become None)."""
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    row[key] = None
                elif key in ("epoch", "step", "partial"):
                    row[key] = int(float(value))
                else:
                    row[key] = float(value)
            rows.append(row)
    return rows


def _score(metrics: dict[str, float], select: str) -> float:
    """Higher is better (loss is negated)."""
    if select == "loss":
        return -metrics["val_loss"]
    return metrics["val_acc" if select == "accuracy" else "val_macro_f1"]


def _autocast(device: torch.device, precision: str) -> Any:
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _normalization_stats(
    model: AudioClassifier, prepared: PreparedSet, indices: list[int], seed: int
) -> tuple[float, float] | None:
    """Data-set mean/std of the log-mel (AudioMAE), from up to 256 training clips."""
    frontend = model.frontend
    if not hasattr(frontend, "set_normalization"):
        return None
    from serenesense_cli.audio.features import compute_normalization_stats

    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(indices)[:NORMALIZATION_CLIPS].tolist())
    dataset = ClipDataset(prepared, chosen, clip_samples=model.clip_samples, train=False)
    batches = (
        torch.stack([dataset[i][0] for i in range(s, min(s + 16, len(dataset)))])
        for s in range(0, len(dataset), 16)
    )
    frontend.set_normalization(0.0, 1.0)
    mean, std = compute_normalization_stats(frontend, batches)
    frontend.set_normalization(mean, std)
    return float(mean), float(std)


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str,
    num_classes: int,
) -> dict[str, float]:
    """Mean CE loss (unweighted), accuracy and macro-F1 on centred windows."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total, loss_sum = 0, 0.0
    preds: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for waves, targets in loader:
        waves, targets = waves.to(device), targets.to(device)
        with _autocast(device, precision):
            logits = model(waves)
        logits = logits.float()
        loss_sum += float(criterion(logits, targets))
        total += targets.numel()
        preds.append(logits.argmax(1).cpu().numpy())
        labels.append(targets.cpu().numpy())
    metrics = basic_metrics(np.concatenate(labels), np.concatenate(preds), num_classes)
    return {
        "val_loss": loss_sum / max(1, total),
        "val_acc": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
    }


def train(
    *,
    data: str | Path | None,
    model: str | None = None,
    config: TrainConfig | None = None,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    name: str | None = None,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train a registered model on a prepared data set; see docs/training.md.

    Either ``config`` (fully resolved) or ``model`` (+ ``overrides``) starts a
    new run; ``resume`` continues a run folder, with ``overrides`` (e.g. more
    epochs) applied on top of its saved config.
    """
    context = dist_utils.init_distributed(
        (config.device if config else (overrides or {}).get("device", "auto")) or "auto"
    )
    try:
        return _train(
            context=context,
            data=Path(data) if data is not None else None,
            model_name=model,
            config=config,
            runs_dir=Path(runs_dir),
            name=name,
            resume=Path(resume) if resume is not None else None,
            overrides=dict(overrides or {}),
            on_progress=on_progress if context.is_main else None,
        )
    finally:
        dist_utils.shutdown(context)


def _resolve_resume_config(resume: Path, overrides: dict[str, Any]) -> tuple[TrainConfig, Path]:
    config_path = resume / "config.toml"
    if not resume.is_dir() or not config_path.is_file():
        raise BadInputError(
            f"{resume}: not a training run folder (no config.toml)",
            hint="pass the folder printed by `serenesense train`",
        )
    values = load_toml(config_path)
    data_dir = values.pop("data", None)
    if not data_dir:
        raise BadInputError(f"{config_path}: no `data` entry; pass --data")
    model_name = str(values.pop("model", ""))
    model_args = values.pop("model_args", {}) or {}
    config = merge_config(recipe(model_name), values, where=str(config_path))
    if overrides:
        config = merge_config(config, overrides, where="command line")
    config = dataclasses.replace(config, model=model_name, model_args=dict(model_args))
    return config.validate(), Path(data_dir)


def _train(
    *,
    context: dist_utils.DistContext,
    data: Path | None,
    model_name: str | None,
    config: TrainConfig | None,
    runs_dir: Path,
    name: str | None,
    resume: Path | None,
    overrides: dict[str, Any],
    on_progress: ProgressCallback | None,
) -> TrainResult:
    started = time.perf_counter()
    notes: list[str] = []
    resume_state: dict[str, Any] | None = None
    if resume is not None:
        config, saved_data = _resolve_resume_config(resume, overrides)
        data = data or saved_data
        run_dir = resume
        resume_state = load_training_state(run_dir / "weights")
    else:
        if config is None:
            if model_name is None:
                raise BadInputError("no model given")
            config = resolve_train_config(model_name, overrides=overrides)
        if data is None:
            raise BadInputError("no data set given", hint="pass --data DIR (a prepared set)")
        run_dir = None  # created below, once the inputs are known to be good
    assert config is not None and data is not None

    _set_deterministic(config.deterministic)
    device = context.device
    seed_everything(config.seed, 0)

    prepared = open_prepared(data)
    classes = tuple(prepared.classes)
    train_idx, val_idx = _check_prepared(prepared)

    init_checkpoint = None
    if resume_state is None and config.init:
        config, init_checkpoint = _prepare_init(config)
    net = create_model(config.model, num_classes=len(classes), **config.model_args)
    _check_finetune_options(net, config)
    if resume_state is not None:
        saved_classes = tuple(resume_state.get("classes", ()))
        if saved_classes != classes:
            raise DataSetError(
                f"{data}: classes {list(classes)} do not match the run's {list(saved_classes)}",
                hint="resume with the data set the run was trained on",
            )
        from safetensors.torch import load_file

        state = load_file(str(run_dir / "weights" / "last.safetensors"))
        net.load_state_dict(state)
    else:
        normalized = init_checkpoint is not None and _apply_init(net, init_checkpoint, notes)
        stats = None if normalized else _normalization_stats(net, prepared, train_idx, config.seed)
        if stats is not None:
            notes.append(
                "log-mel normalisation from training clips: "
                f"mean {stats[0]:.3f}, std {stats[1]:.3f}"
            )

    if run_dir is None:
        run_dir = new_run_dir(runs_dir, "train", name or config.model) if context.is_main else None
        run_dir = dist_utils.broadcast_object(run_dir, context)
    assert run_dir is not None
    weights_dir = run_dir / "weights"
    if context.is_main:
        weights_dir.mkdir(parents=True, exist_ok=True)
        saved = config.to_dict()
        saved["data"] = str(Path(data).resolve())
        write_text_atomic(run_dir / "config.toml", _config_toml(saved))

    if config.linear_probe:
        freeze_encoder(net)
        notes.append("linear probe: encoder frozen, training the head only")
    net.to(device)
    parameters = count_parameters(net)
    train_model: nn.Module = net
    if context.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )

    if config.batch_size % context.world:
        raise BadInputError(
            f"batch size {config.batch_size} is not divisible by the {context.world} processes",
            hint="--batch-size is the global batch; choose a multiple of --nproc-per-node",
        )
    local_batch = config.batch_size // context.world
    train_set = ClipDataset(
        prepared, train_idx, clip_samples=net.clip_samples, train=True, seed=config.seed
    )
    val_set = ClipDataset(prepared, val_idx, clip_samples=net.clip_samples, train=False)
    sampler = EpochSampler(len(train_set), seed=config.seed, rank=context.rank, world=context.world)
    loader_args: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": device.type == "cuda",
    }
    # Own generators: creating a loader iterator must not draw from the global RNG,
    # or a resumed run would see different dropout/augmentation draws.
    train_loader = DataLoader(
        train_set,
        batch_size=local_batch,
        sampler=sampler,
        generator=torch.Generator().manual_seed(config.seed),
        **loader_args,
    )
    val_loader = DataLoader(
        val_set,
        batch_size=max(local_batch, 16),
        shuffle=False,
        generator=torch.Generator().manual_seed(config.seed),
        **loader_args,
    )

    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = _build_optimizer(net, config)
    scheduler, step_mode = build_scheduler(
        optimizer, config, steps_per_epoch=steps_per_epoch, total_steps=total_steps
    )
    warmup = effective_warmup(config, total_steps)
    if config.scheduler == "warmup_cosine_restarts" and warmup < config.warmup_steps:
        notes.append(
            f"warm-up shortened from {config.warmup_steps} to {warmup} steps "
            f"(10% of this run's {total_steps} steps)"
        )

    mixup = _build_mixup(config, len(classes))
    weights = class_weights(train_set.labels(), len(classes)).to(device)
    if mixup is not None:
        from timm.loss import SoftTargetCrossEntropy

        criterion: nn.Module = SoftTargetCrossEntropy()
    else:
        criterion = nn.CrossEntropyLoss(
            weight=weights if config.class_weighted else None,
            label_smoothing=config.label_smoothing,
        )

    history: list[dict[str, Any]] = []
    epoch, global_step, step_in_epoch = 0, 0, 0
    best_score: float | None = None
    best_epoch: int | None = None
    since_best = 0
    partial_sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        epoch = int(resume_state["epoch"])
        global_step = int(resume_state["global_step"])
        step_in_epoch = int(resume_state["step_in_epoch"])
        best_score = resume_state.get("best_score")
        best_epoch = resume_state.get("best_epoch")
        since_best = int(resume_state.get("since_best", 0))
        partial_sums = dict(resume_state.get("partial_sums", partial_sums))
        history = [r for r in read_history(run_dir) if r["epoch"] <= epoch and not r.get("partial")]
        restore_rng_state(resume_state["rng"])
        notes.append(f"resumed at epoch {epoch + 1}, step {global_step}")

    def checkpoint(*, next_epoch: int, in_epoch: int, sums: dict[str, Any]) -> None:
        if not context.is_main:
            return
        save_model(
            weights_dir / "last.safetensors",
            net,
            classes,
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
                "best_score": best_score,
                "best_epoch": best_epoch,
                "since_best": since_best,
                "partial_sums": dict(sums),
                "classes": list(classes),
                "rng": capture_rng_state(),
            },
        )

    stopped = "completed"
    stop_request = _StopRequest()
    deadline = started + config.time_limit if config.time_limit > 0 else None
    report(on_progress, "epochs", epoch, config.epochs)
    try:
        stop_request.install()
        while epoch < config.epochs and stopped == "completed":
            if step_in_epoch == 0:
                seed_everything(config.seed, epoch + 1)
                partial_sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            sampler.set_epoch(epoch, skip=step_in_epoch * local_batch)
            train_set.set_epoch(epoch)
            train_model.train()
            if config.linear_probe:
                net.encoder.eval()  # frozen: no drop path, fixed features
            epoch_start = time.perf_counter() - partial_sums["seconds"]
            interrupted_mid_epoch = False
            for waves, targets in train_loader:
                waves, targets = waves.to(device, non_blocking=True), targets.to(device)
                loss, logits = _train_step(
                    train_model, waves, targets, criterion, mixup, device, config.precision
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                step_loss = dist_utils.all_reduce_sum(loss.detach().float().clone(), context)
                if not torch.isfinite(step_loss):
                    raise TrainingError(
                        f"loss became {float(step_loss)} at epoch {epoch + 1}, "
                        f"step {global_step + 1}",
                        hint="lower --lr or raise --grad-clip; the last good checkpoint is in "
                        f"{weights_dir}",
                    )
                optimizer.step()
                if step_mode == "step":
                    scheduler.step()
                global_step += 1
                step_in_epoch += 1
                correct = dist_utils.all_reduce_sum(
                    (logits.argmax(1) == targets).sum().detach().float(), context
                )
                partial_sums["loss"] += (
                    float(step_loss) * targets.numel()
                )  # mean over ranks x global batch
                partial_sums["correct"] += int(correct)
                partial_sums["seen"] += targets.numel() * context.world
                elapsed = time.perf_counter() - epoch_start
                report(
                    on_progress,
                    "steps",
                    step_in_epoch,
                    steps_per_epoch,
                    epoch=epoch + 1,
                    loss=partial_sums["loss"] / max(1, partial_sums["seen"]),
                    acc=partial_sums["correct"] / max(1, partial_sums["seen"]),
                    lr=peak_lr(optimizer),
                    samples_per_s=partial_sums["seen"] / max(elapsed, 1e-9),
                )
                if config.checkpoint_every and global_step % config.checkpoint_every == 0:
                    partial_sums["seconds"] = elapsed
                    checkpoint(next_epoch=epoch, in_epoch=step_in_epoch, sums=partial_sums)
                stopped = stop_reason(stop_request, config.max_steps, global_step, deadline)
                if stopped != "completed":
                    interrupted_mid_epoch = step_in_epoch < steps_per_epoch
                    break
            partial_sums["seconds"] = time.perf_counter() - epoch_start
            if interrupted_mid_epoch:  # save before validation touches anything
                checkpoint(next_epoch=epoch, in_epoch=step_in_epoch, sums=partial_sums)
                if stopped == "interrupted":  # Ctrl-C: leave quickly, no validation
                    break
            row, improved = _end_epoch(
                train_model=train_model,
                val_loader=val_loader,
                device=device,
                config=config,
                num_classes=len(classes),
                epoch=epoch,
                global_step=global_step,
                partial=interrupted_mid_epoch,
                sums=partial_sums,
                lr=peak_lr(optimizer),
                best_score=best_score,
            )
            history.append(row)
            if improved:
                best_score, best_epoch = _score(row, config.select_metric), epoch + 1
                if context.is_main:
                    save_model(
                        weights_dir / "best.safetensors",
                        net,
                        classes,
                        metrics=row,
                        epoch=epoch + 1,
                        global_step=global_step,
                        select_metric=config.select_metric,
                        train_config=config.to_dict(),
                    )
            if not interrupted_mid_epoch:
                since_best = 0 if improved else since_best + 1
                if step_mode == "epoch":
                    scheduler.step(row["val_loss"])
                epoch += 1
                step_in_epoch = 0
                checkpoint(next_epoch=epoch, in_epoch=0, sums={})
                if config.patience and since_best >= config.patience and epoch < config.epochs:
                    stopped = "early_stop"
            if context.is_main:
                write_text_atomic(run_dir / "history.csv", _history_to_csv(history))
            report(on_progress, "epochs", epoch, config.epochs, row=row, improved=improved)
    except KeyboardInterrupt:
        stopped = "interrupted"
        partial_sums["seconds"] = time.perf_counter() - started
        checkpoint(next_epoch=epoch, in_epoch=step_in_epoch, sums=partial_sums)
        if context.is_main:
            write_text_atomic(run_dir / "history.csv", _history_to_csv(history))
    except torch.OutOfMemoryError as error:
        raise TrainingError(
            f"out of memory at batch size {config.batch_size} on {device}",
            hint=f"try --batch-size {max(1, config.batch_size // 2)}",
        ) from error
    finally:
        stop_request.uninstall()

    return TrainResult(
        run_dir=run_dir,
        stopped=stopped,
        epochs_completed=epoch,
        global_step=global_step,
        select_metric=config.select_metric,
        best_epoch=best_epoch,
        best_score=best_score,
        history=history,
        parameters=parameters,
        seconds=time.perf_counter() - started,
        device=str(device),
        world_size=context.world,
        notes=notes,
    )


def stop_reason(
    stop_request: _StopRequest, max_steps: int, global_step: int, deadline: float | None
) -> str:
    """Why a loop stops after this step ("completed" = go on); shared by train and pretrain."""
    if stop_request.is_set():
        return "interrupted"
    if max_steps and global_step >= max_steps:
        return "max_steps"
    if deadline is not None and time.perf_counter() >= deadline:
        return "time_limit"
    return "completed"


class _StopRequest:
    """First Ctrl-C (SIGINT) asks the loop to stop at the next step boundary,
    so the checkpoint is consistent; a second one interrupts at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: Any = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self._event.is_set():
                raise KeyboardInterrupt
            self._event.set()

        signal.signal(signal.SIGINT, handler)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _config_toml(values: dict[str, Any]) -> str:
    from serenesense_cli.config import to_toml

    header = "# Resolved training config (recipe < --config < flags); reusable with --config.\n"
    return header + to_toml(values)


def _train_step(
    model: nn.Module,
    waves: torch.Tensor,
    targets: torch.Tensor,
    criterion: nn.Module,
    mixup: Any,
    device: torch.device,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward + loss. Mixup/CutMix act on front-end features inside forward."""
    with _autocast(device, precision):
        if mixup is None:
            logits = model(waves)
            loss = criterion(logits.float(), targets)
        else:
            holder: dict[str, torch.Tensor] = {}

            def mix(features: torch.Tensor) -> torch.Tensor:
                if features.shape[0] % 2:  # timm mixes pairs; an odd last batch stays unmixed
                    from timm.data.mixup import mixup_target

                    holder["targets"] = mixup_target(
                        targets, mixup.num_classes, lam=1.0, smoothing=mixup.label_smoothing
                    )
                    return features
                mixed, soft = mixup(features, targets)
                holder["targets"] = soft
                return mixed

            logits = model(waves, mix=mix)
            loss = criterion(logits.float(), holder["targets"])
    return loss, logits.detach()


def _end_epoch(
    *,
    train_model: nn.Module,
    val_loader: DataLoader,
    device: torch.device,
    config: TrainConfig,
    num_classes: int,
    epoch: int,
    global_step: int,
    partial: bool,
    sums: dict[str, Any],
    lr: float,
    best_score: float | None,
) -> tuple[dict[str, Any], bool]:
    metrics = validate(
        train_model, val_loader, device=device, precision=config.precision, num_classes=num_classes
    )
    seen = max(1, sums["seen"])
    row = {
        "epoch": epoch + 1,
        "step": global_step,
        "partial": int(partial),
        "train_loss": sums["loss"] / seen,
        "train_acc": sums["correct"] / seen,
        **metrics,
        "lr": lr,
        "samples_per_s": sums["seen"] / max(sums["seconds"], 1e-9),
        "seconds": sums["seconds"],
    }
    score = _score(row, config.select_metric)
    improved = not math.isnan(score) and (best_score is None or score > best_score)
    return row, improved


def _prepare_init(config: TrainConfig) -> tuple[TrainConfig, Any]:
    """Read the ``--init`` checkpoint; its encoder arguments fill in model_args
    the user did not set (flags and config files win)."""
    if config.model != "audiomae":
        raise BadInputError(
            f"--init initialises the audiomae encoder; {config.model!r} has none",
            hint="use `serenesense train audiomae --init ...`",
        )
    from serenesense_cli.models.init import read_init

    assert config.init is not None
    checkpoint = read_init(config.init)
    model_args = {**checkpoint.model_args(), **config.model_args}
    config = dataclasses.replace(config, model_args=model_args, init=str(checkpoint.path.resolve()))
    return config, checkpoint


def _apply_init(net: nn.Module, checkpoint: Any, notes: list[str]) -> bool:
    """Load the encoder; True when the checkpoint's log-mel normalisation was applied."""
    from serenesense_cli.models.init import load_encoder_init

    result = load_encoder_init(net, checkpoint)
    notes.append(result.summary())
    notes.extend(result.notes)
    if result.normalization is None:
        return False
    mean, std = result.normalization
    net.frontend.set_normalization(mean, std)
    notes.append(f"log-mel normalisation from the checkpoint: mean {mean:.3f}, std {std:.3f}")
    return True


def _check_finetune_options(net: nn.Module, config: TrainConfig) -> None:
    """Layer-wise LR decay and linear probing need a transformer encoder."""
    wanted = [
        flag
        for flag, on in (
            ("--layer-decay", config.layer_decay < 1.0),
            ("--linear-probe", config.linear_probe),
        )
        if on
    ]
    if wanted and getattr(getattr(net, "encoder", None), "blocks", None) is None:
        raise BadInputError(
            f"{' and '.join(wanted)} apply to the audiomae model only, not {config.model!r}"
        )


def freeze_encoder(net: nn.Module) -> None:
    """Linear probe: the encoder's weights stay as initialised."""
    for param in net.encoder.parameters():
        param.requires_grad_(False)


def peak_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest group learning rate (the head's under layer-wise decay)."""
    return max(float(group["lr"]) for group in optimizer.param_groups)


def _layer_id(name: str, num_layers: int) -> int:
    """0 for patch/position embeddings and CLS, i+1 for block i, top for the rest."""
    if name.startswith("encoder."):
        rest = name[len("encoder.") :]
        if rest.startswith(("cls_token", "pos_embed", "patch_embed", "reg_token")):
            return 0
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
    return num_layers + 1


def layer_decay_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Parameter groups with lr x decay^(num_layers + 1 - layer) (BEiT/MAE fine-tuning).

    Weight decay follows the usual rules: AdamW skips norms, biases and
    tokens; Adam and SGD decay everything.
    """
    num_layers = len(model.encoder.blocks)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = _layer_id(name, num_layers)
        skip = config.optimizer == "adamw" and (
            param.ndim <= 1 or name.endswith(("cls_token", "pos_embed"))
        )
        scale = config.layer_decay ** (num_layers + 1 - layer)
        group = groups.setdefault(
            (layer, skip),
            {
                "params": [],
                "lr": config.lr * scale,
                "lr_scale": scale,
                "layer": layer,
                "weight_decay": 0.0 if skip else config.weight_decay,
            },
        )
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def _build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam / AdamW (no weight decay on norms, biases and tokens) / SGD,
    with layer-wise learning-rate decay when ``layer_decay < 1``."""
    if config.layer_decay < 1.0:
        groups = layer_decay_groups(model, config)
        if config.optimizer == "adamw":
            return torch.optim.AdamW(
                groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps
            )
        if config.optimizer == "adam":
            return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
    if config.optimizer == "adamw":
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            skip = param.ndim <= 1 or name.endswith(("cls_token", "pos_embed"))
            (no_decay if skip else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(
            params,
            lr=config.lr,
            betas=tuple(config.betas),
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def _build_mixup(config: TrainConfig, num_classes: int) -> Any:
    """timm's Mixup/CutMix on (B, C, F, T) features, with label smoothing."""
    if config.mix_prob <= 0 or (config.mixup_alpha <= 0 and config.cutmix_alpha <= 0):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=config.mixup_alpha,
        cutmix_alpha=config.cutmix_alpha,
        prob=config.mix_prob,
        switch_prob=0.5,
        mode="batch",
        label_smoothing=config.label_smoothing,
        num_classes=num_classes,
    )


def ensure_model_known(name: str) -> None:
    """Raise a ModelError with a suggestion for an unknown model name."""
    from serenesense_cli.models.registry import get_model_spec

    get_model_spec(name)


# Shared with the pretraining loop (train/pretrain.py).
set_deterministic = _set_deterministic
autocast_context = _autocast
StopRequest = _StopRequest

__all__ = [
    "HISTORY_COLUMNS",
    "StopRequest",
    "TrainResult",
    "autocast_context",
    "freeze_encoder",
    "layer_decay_groups",
    "peak_lr",
    "read_history",
    "seed_everything",
    "set_deterministic",
    "train",
    "validate",
]
