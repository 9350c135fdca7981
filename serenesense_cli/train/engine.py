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

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from serenesense_cli.data.cache import PreparedSet, open_prepared
from serenesense_cli.errors import BadInputError, ConfigError, DataSetError
from serenesense_cli.evaluate.metrics import basic_metrics, classification_report_dict
from serenesense_cli.models import create_model, models_where
from serenesense_cli.models.registry import AudioClassifier, count_parameters
from serenesense_cli.progress import ProgressCallback
from serenesense_cli.train import distributed as dist_utils
from serenesense_cli.train import setup
from serenesense_cli.train.checkpoint import load_last_weights, load_training_state
from serenesense_cli.train.config import (
    TrainConfig,
    recipe,
    require_data,
    resolve_train_config,
)
from serenesense_cli.train.data import ClipDataset, ValidationWindows, class_weights, epoch_data
from serenesense_cli.train.history import read_history
from serenesense_cli.train.loop import (
    EpochLoop,
    EpochTask,
    RunResult,
    run_totals,
    seed_everything,
)
from serenesense_cli.train.schedules import (
    WARMUP_SCHEDULERS,
    build_scheduler,
    effective_warmup,
)
from serenesense_cli.train.stopping import StopRequest, stop_reason

if TYPE_CHECKING:
    from typing_extensions import Unpack

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


@dataclass(kw_only=True)
class TrainResult(RunResult):
    """What a finished (or stopped) training run produced."""

    select_metric: str
    best_score: float | None


def _check_prepared(prepared: PreparedSet) -> tuple[list[int], list[int]]:
    train_idx = prepared.indices("train")
    val_idx = prepared.indices("val")
    if not train_idx:
        raise DataSetError(f"{prepared.root}: the prepared set has no training clips")
    trained_classes = {prepared.records[i].label_index for i in train_idx}
    if len(trained_classes) < 2:
        raise DataSetError(
            f"{prepared.root}: the training split holds {len(trained_classes)} class; "
            "a classifier needs at least 2",
            hint="add a second class, e.g. a background class of recordings without "
            "the sound (docs/detection.md)",
        )
    if not val_idx:
        raise DataSetError(
            f"{prepared.root}: the prepared set has no validation clips",
            hint="prepare it again with --val-fraction > 0",
        )
    return train_idx, val_idx


def _score(metrics: dict[str, float], select: str) -> float:
    """Higher is better (loss is negated)."""
    if select == "loss":
        return -metrics["val_loss"]
    return metrics["val_acc" if select == "accuracy" else "val_macro_f1"]


def _normalization_stats(
    model: AudioClassifier, prepared: PreparedSet, indices: list[int], seed: int
) -> tuple[float, float] | None:
    """Data-set mean/std of the log-mel (AudioMAE), from a sample of the training clips."""
    frontend = model.frontend
    if not hasattr(frontend, "set_normalization"):
        return None
    dataset = ClipDataset(prepared, indices, clip_samples=model.clip_samples, train=False)
    mean, std = setup.measure_normalization(frontend, lambda i: dataset[i][0], len(dataset), seed)
    frontend.set_normalization(mean, std)
    return mean, std


@torch.no_grad()
def validate_clips(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and mean window probabilities of whole clips, one row per clip.

    The loader yields ``(windows, labels, clip positions)`` of a
    :class:`~serenesense_cli.train.data.ValidationWindows`, whose ``labels()``
    gives one label per clip; a clip's probabilities are the mean of its
    windows' probabilities, as in ``serenesense evaluate``.
    """
    model.eval()
    labels = torch.tensor(loader.dataset.labels(), dtype=torch.long)  # one per clip
    if labels.numel() == 0:
        raise DataSetError("the validation set has no windows to score")
    prob_sums = torch.zeros(labels.numel(), num_classes)
    counts = torch.zeros(labels.numel())
    for waves, _targets, positions in loader:
        with setup.autocast_context(device, precision):
            logits = model(waves.to(device))
        prob_sums.index_add_(0, positions, torch.softmax(logits.float(), dim=1).cpu())
        counts.index_add_(0, positions, torch.ones(positions.numel()))
    return labels, prob_sums / counts.clamp_min(1.0).unsqueeze(1)


def clip_metrics(labels: torch.Tensor, mean_probs: torch.Tensor, num_classes: int) -> dict:
    """Loss (the clip's negative log of the mean probability of its class; plain
    cross-entropy for one window a clip), accuracy and macro-F1."""
    picked = mean_probs[torch.arange(labels.numel()), labels].clamp_min(1e-12)
    metrics = basic_metrics(labels.numpy(), mean_probs.argmax(1).numpy(), num_classes)
    return {
        "val_loss": float(-picked.log().mean()),
        "val_acc": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
    }


def validate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str,
    num_classes: int,
    clips: list[Any] | None = None,
) -> dict[str, float]:
    """Loss (unweighted), accuracy and macro-F1 of whole clips (see :func:`validate_clips`).

    ``clips``, when given, receives the clip labels and mean probabilities
    (numpy arrays), for the run's validation confusion matrix.
    """
    labels, mean_probs = validate_clips(
        model, loader, device=device, precision=precision, num_classes=num_classes
    )
    if clips is not None:
        clips[:] = [labels.numpy(), mean_probs.numpy()]
    return clip_metrics(labels, mean_probs, num_classes)


def train(
    *,
    data: str | Path | None,
    model: str | None = None,
    config: TrainConfig | None = None,
    **options: Unpack[setup.RunOptions],
) -> TrainResult:
    """Train a registered model on a prepared data set; see docs/training.md.

    Either ``config`` (fully resolved) or ``model`` (+ ``overrides``) starts a
    new run; ``resume`` continues a run folder, with ``overrides`` (e.g. more
    epochs) applied on top of its saved config.
    """
    return setup.launch_run(
        _train,
        config=config,
        options=options,
        data=Path(data) if data is not None else None,
        model_name=model,
    )


def _resolve_resume_config(resume: Path, overrides: dict[str, Any]) -> tuple[TrainConfig, Path]:
    values = setup.read_run_config(resume, command="train")
    data_dir = values.pop("data", None)
    if not data_dir:
        raise BadInputError(f"{resume / 'config.toml'}: no `data` entry; pass --data")
    model_name = str(values.pop("model", ""))
    # Runs saved before recipes had names used the reference pipeline.
    saved_recipe = str(values.get("recipe", "default" if "crop" in values else "reference"))
    try:
        base = recipe(model_name, saved_recipe)
    except ConfigError:
        base = recipe(model_name)
    config = setup.resumed_config(base, values, overrides, where=str(resume / "config.toml"))
    return dataclasses.replace(config, model=model_name).validate(), Path(data_dir)


CONFIG_HEADER = "Resolved training config (recipe < --config < flags); reusable with --config."


class _Begin(NamedTuple):
    """How a run begins: its settings and data, and for a resume its folder and state."""

    config: TrainConfig
    data: Path
    run_dir: Path | None
    """None for a new run (created once the inputs are known to be good)."""
    resume_state: dict[str, Any] | None


def _begin(
    model_name: str | None, config: TrainConfig | None, data: Path | None, start: setup.RunStart
) -> _Begin:
    resume = start.resume
    if resume is None:
        if config is None:
            if model_name is None:
                raise BadInputError("no model given")
            config = resolve_train_config(model_name, overrides=start.overrides)
        require_data(data, "train")
        assert data is not None
        return _Begin(config, data, None, None)
    config, saved_data = _resolve_resume_config(resume, start.overrides)
    if model_name is not None and model_name != config.model:
        raise BadInputError(
            f"{resume}: a {config.model!r} run, not {model_name!r}",
            hint=f"serenesense train --resume {resume} (the model comes from the run), "
            f"or start a new {model_name} run",
        )
    return _Begin(config, data or saved_data, resume, load_training_state(resume / "weights"))


def _build_network(
    begin: _Begin, prepared: PreparedSet, train_idx: list[int], notes: list[str]
) -> tuple[AudioClassifier, TrainConfig]:
    """The model with its starting weights: resumed, from ``--init``, or fresh (normalised)."""
    config, classes = begin.config, tuple(prepared.classes)
    init_checkpoint = None
    if begin.resume_state is None and config.init:
        config, init_checkpoint = _prepare_init(config)
    net = create_model(config.model, num_classes=len(classes), **config.model_args)
    _check_finetune_options(net, config)
    if begin.resume_state is not None:
        assert begin.run_dir is not None
        saved_classes = tuple(begin.resume_state.get("classes", ()))
        if saved_classes != classes:
            raise DataSetError(
                f"{begin.data}: classes {list(classes)} do not match the run's "
                f"{list(saved_classes)}",
                hint="resume with the data set the run was trained on",
            )
        net.load_state_dict(load_last_weights(begin.run_dir / "weights"))
        return net, config
    normalized = init_checkpoint is not None and _apply_init(net, init_checkpoint, notes)
    stats = None if normalized else _normalization_stats(net, prepared, train_idx, config.seed)
    if stats is not None:
        notes.append(
            f"log-mel normalisation from training clips: mean {stats[0]:.3f}, std {stats[1]:.3f}"
        )
    return net, config


class _Feeds(NamedTuple):
    train_set: ClipDataset
    data_feed: Any
    val_loader: DataLoader


def _feeds(
    prepared: PreparedSet,
    split: tuple[list[int], list[int]],
    clip_samples: int,
    config: TrainConfig,
    context: dist_utils.DistContext,
) -> _Feeds:
    """Training crops (resumable sampler) and every validation window."""
    train_idx, val_idx = split
    train_set = ClipDataset(
        prepared,
        train_idx,
        clip_samples=clip_samples,
        train=True,
        seed=config.seed,
        crop=config.crop,
        wave_augment=config.wave_augment,
        mix_back=config.mix_back,
    )
    val_set = ValidationWindows(
        prepared, val_idx, clip_samples=clip_samples, windows=config.val_windows
    )
    data_feed = epoch_data(train_set, config, context)
    # Own generator here too: no loader may draw from the global RNG (resume exactness).
    val_loader = DataLoader(
        val_set,
        batch_size=max(data_feed.local_batch, 16),
        shuffle=False,
        generator=torch.Generator().manual_seed(config.seed),
        **data_feed.loader_args,
    )
    return _Feeds(train_set, data_feed, val_loader)


def _optimisation(
    net: nn.Module, config: TrainConfig, steps_per_epoch: int, started: float, notes: list[str]
) -> tuple[torch.optim.Optimizer, Any, str]:
    """AdamW (or the recipe's optimiser) and its schedule, whose progress may follow the clock."""
    total_steps = steps_per_epoch * config.epochs
    optimizer = _build_optimizer(net, config)
    time_fraction = None
    if config.time_limit > 0:

        def time_fraction() -> float:
            return (time.perf_counter() - started) / config.time_limit

    scheduler, step_mode = build_scheduler(
        optimizer,
        config,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        time_fraction=time_fraction,
    )
    warmup = effective_warmup(config, total_steps)
    if config.scheduler in WARMUP_SCHEDULERS and warmup < config.warmup_steps:
        notes.append(
            f"warm-up shortened from {config.warmup_steps} to {warmup} steps "
            f"(10% of this run's {total_steps} steps)"
        )
    return optimizer, scheduler, step_mode


def _criterion(
    config: TrainConfig, labels: list[int], num_classes: int, device: torch.device
) -> tuple[nn.Module, Any]:
    """The loss, and mixup/CutMix when the recipe mixes (soft targets then)."""
    mixup = _build_mixup(config, num_classes)
    if mixup is not None:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy(), mixup
    weights = class_weights(labels, num_classes).to(device)
    criterion = nn.CrossEntropyLoss(
        weight=weights if config.class_weighted else None,
        label_smoothing=config.label_smoothing,
    )
    return criterion, None


def _train(
    *,
    context: dist_utils.DistContext,
    data: Path | None,
    model_name: str | None,
    config: TrainConfig | None,
    start: setup.RunStart,
    on_progress: ProgressCallback | None,
) -> TrainResult:
    started = time.perf_counter()
    notes: list[str] = []
    begin = _begin(model_name, config, data, start)
    setup.set_deterministic(begin.config.deterministic)
    seed_everything(begin.config.seed, 0)

    prepared = open_prepared(begin.data)
    classes = tuple(prepared.classes)
    split = _check_prepared(prepared)
    net, config = _build_network(begin, prepared, split[0], notes)

    run_dir = begin.run_dir or setup.create_run_folder(
        start.runs_dir, "train", start.name or config.model, context
    )
    saved = {**config.to_dict(), "data": str(Path(begin.data).resolve())}
    setup.write_run_config(run_dir, saved, CONFIG_HEADER, context)

    if config.linear_probe:
        freeze_encoder(net)
        notes.append("linear probe: encoder frozen, training the head only")
    net.to(context.device)
    parameters = count_parameters(net)
    feeds = _feeds(prepared, split, net.clip_samples, config, context)
    optimizer, scheduler, step_mode = _optimisation(
        net, config, feeds.data_feed.steps_per_epoch, started, notes
    )
    criterion, mixup = _criterion(config, feeds.train_set.labels(), len(classes), context.device)

    task = _ClassifierTask(
        config=config,
        context=context,
        model=net,
        train_model=dist_utils.wrap_model(net, context),
        optimizer=optimizer,
        scheduler=scheduler,
        step_mode=step_mode,
        criterion=criterion,
        mixup=mixup,
        val_loader=feeds.val_loader,
        class_names=classes,
        started=started,
    )
    loop = EpochLoop(
        task, feeds.data_feed, run_dir=run_dir, started=started, on_progress=on_progress
    )
    if begin.resume_state is not None:
        loop.resume(begin.resume_state)
        notes.append(f"resumed at epoch {loop.state.epoch + 1}, step {loop.state.global_step}")
    state = loop.run(notes)

    totals = run_totals(
        state, run_dir=run_dir, started=started, context=context, parameters=parameters, notes=notes
    )
    return TrainResult(**totals, select_metric=config.select_metric, best_score=state.best)


@dataclass
class _ClassifierTask(EpochTask):
    """Supervised classification in the shared loop: cross-entropy (with
    mixup/CutMix), accuracy, validation metrics, early stopping."""

    config: TrainConfig
    context: dist_utils.DistContext
    model: AudioClassifier
    """The unwrapped classifier (``train_model`` is DDP around it under torchrun)."""
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step_mode: str
    criterion: nn.Module
    mixup: Any
    val_loader: DataLoader
    class_names: tuple[str, ...]
    started: float
    since_best: int = 0
    last_validation: tuple[Any, Any] | None = None
    """Clip labels and probabilities of the latest validation (for ``confusion.png``)."""

    history_columns = HISTORY_COLUMNS
    best_key = "best_score"
    nan_hint = "lower --lr or raise --grad-clip"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.class_names

    @property
    def select_metric(self) -> str:
        return self.config.select_metric

    def new_sums(self) -> dict[str, Any]:
        return {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}

    def train_mode(self) -> None:
        self.train_model.train()
        if self.config.linear_probe:
            self.model.encoder.eval()  # frozen: no drop path, fixed features

    def forward(self, batch: Any) -> tuple[torch.Tensor, Any]:
        waves, targets = batch
        device = self.context.device
        waves, targets = waves.to(device, non_blocking=True), targets.to(device)
        loss, logits = _train_step(
            self.train_model,
            waves,
            targets,
            self.criterion,
            self.mixup,
            device,
            self.config.precision,
        )
        return loss, (logits, targets)

    def scheduler_step(self) -> None:
        if self.step_mode == "step":
            self.scheduler.step()

    def tally(self, sums: dict[str, Any], step_loss: torch.Tensor, outputs: Any) -> None:
        logits, targets = outputs
        correct = dist_utils.all_reduce_sum(
            (logits.argmax(1) == targets).sum().detach().float(), self.context
        )
        sums["loss"] += float(step_loss) * targets.numel()  # mean over ranks x global batch
        sums["correct"] += int(correct)
        sums["seen"] += targets.numel() * self.context.world

    def progress(self, sums: dict[str, Any]) -> dict[str, Any]:
        return {
            "loss": sums["loss"] / max(1, sums["seen"]),
            "acc": sums["correct"] / max(1, sums["seen"]),
            "lr": peak_lr(self.optimizer),
        }

    def evaluate(
        self, *, epoch: int, global_step: int, partial: bool, sums: dict[str, Any]
    ) -> dict[str, Any]:
        lr = peak_lr(self.optimizer)
        clips: list[Any] = []
        metrics = validate(
            self.train_model,
            self.val_loader,
            device=self.context.device,
            precision=self.config.precision,
            num_classes=len(self.class_names),
            clips=clips,
        )
        self.last_validation = (clips[0], clips[1]) if clips else None
        seen = max(1, sums["seen"])
        return {
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

    def score(self, row: dict[str, Any]) -> float:
        return _score(row, self.config.select_metric)

    def improved(self, score: float, best: float | None) -> bool:
        return not math.isnan(score) and (best is None or score > best)

    def epoch_completed(self, row: dict[str, Any], improved: bool) -> None:
        self.since_best = 0 if improved else self.since_best + 1
        if self.step_mode == "epoch":
            self.scheduler.step(row["val_loss"])

    def after_epoch(self, epochs_done: int, stopped: str) -> str:
        patience = self.config.patience
        if patience and self.since_best >= patience and epochs_done < self.config.epochs:
            return "early_stop"
        return stopped

    def on_interrupt(self, sums: dict[str, Any]) -> None:
        sums["seconds"] = time.perf_counter() - self.started

    def best_state(self, best: float | None, best_epoch: int | None) -> dict[str, Any]:
        return {**super().best_state(best, best_epoch), "since_best": self.since_best}

    def run_state(self) -> dict[str, Any]:
        return {"classes": list(self.class_names)}

    def restore(self, state: dict[str, Any]) -> None:
        self.since_best = int(state.get("since_best", 0))

    def last_confusion(self) -> dict[str, Any] | None:
        if self.last_validation is None:
            return None
        labels, probs = self.last_validation
        return classification_report_dict(labels, probs, self.class_names)["confusion_matrix"]


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
    with setup.autocast_context(device, precision):
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


def _prepare_init(config: TrainConfig) -> tuple[TrainConfig, Any]:
    """Read the ``--init`` checkpoint; its encoder arguments fill in model_args
    the user did not set (flags and config files win)."""
    having = models_where(lambda spec: spec.pretrainable)
    if config.model not in having:
        raise BadInputError(
            f"--init initialises the {' or '.join(having)} encoder; {config.model!r} has none",
            hint=f"use `serenesense train {having[0]} --init ...`",
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
        skip = config.optimizer == "adamw" and not setup.decays(name, param)
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
        groups = setup.weight_decay_groups(model, config.weight_decay)
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


__all__ = [
    "HISTORY_COLUMNS",
    "StopRequest",
    "TrainResult",
    "freeze_encoder",
    "layer_decay_groups",
    "peak_lr",
    "read_history",
    "seed_everything",
    "stop_reason",
    "train",
    "validate",
]
