"""Report figures with matplotlib (Agg, headless): fixed sizes and dpi.

Why fixed sizes: the figures must stay readable on a laptop screen and in a
Markdown viewer, and look the same on every machine. Label text is passed
through :func:`plain` so user strings (class names, run names) are never
read as matplotlib mathtext. Missing data is drawn as a "missing" note,
never as zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serenesense_cli.fileio import atomic_path

DPI = 110
_MISSING = "missing"
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain(text: Any) -> str:
    """A user string safe for matplotlib labels (``$`` would start mathtext)."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def short(text: Any, limit: int = 28) -> str:
    """Long names are cut with an ellipsis so axes stay readable."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wrapped(text: Any, width: int = 16, lines: int = 2) -> str:
    """A long name on up to ``lines`` lines of ``width`` characters, then an ellipsis."""
    import textwrap

    parts = textwrap.wrap(str(text), width=width, break_long_words=True) or [""]
    if len(parts) > lines:
        parts = [*parts[: lines - 1], short(" ".join(parts[lines - 1 :]), width)]
    return "\n".join(parts)


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def _missing(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: {_MISSING}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in history:
        value, epoch = row.get(key), row.get("epoch")
        if value is None or epoch is None or row.get("partial"):
            continue
        xs.append(float(epoch))
        ys.append(float(value))
    return xs, ys


def _integer_epochs(ax: Any, epochs: Sequence[float]) -> None:
    """Whole-epoch ticks; a run of one or two epochs gets its epochs as ticks."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    if epochs and max(epochs) - min(epochs) < 2:
        ax.set_xticks(sorted(set(epochs)))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        return
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _curve_panel(
    ax: Any,
    history: Sequence[dict[str, Any]],
    keys: Sequence[tuple[str, str]],
    *,
    title: str,
    ylabel: str,
    best_epoch: int | None = None,
    log_y: bool = False,
) -> None:
    epochs: list[float] = []
    for (key, label), color in zip(keys, _COLORS, strict=False):
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label, color=color)
            epochs += xs
    if not epochs:
        _missing(ax, title)
        ax.set_title(title)
        return
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best epoch")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    _integer_epochs(ax, epochs)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def training_curves(
    history: Sequence[dict[str, Any]], path: Path, *, title: str, best_epoch: int | None = None
) -> Path:
    """Loss, accuracy, validation macro-F1 and learning rate per epoch (2 x 2)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    _curve_panel(
        axes[0, 0],
        history,
        [("train_loss", "train"), ("val_loss", "validation")],
        title="loss",
        ylabel="cross-entropy",
        best_epoch=best_epoch,
    )
    _curve_panel(
        axes[0, 1],
        history,
        [("train_acc", "train"), ("val_acc", "validation")],
        title="accuracy",
        ylabel="accuracy",
        best_epoch=best_epoch,
    )
    _curve_panel(
        axes[1, 0],
        history,
        [("val_macro_f1", "validation")],
        title="macro-F1",
        ylabel="macro-F1",
        best_epoch=best_epoch,
    )
    _curve_panel(
        axes[1, 1],
        history,
        [("lr", "learning rate")],
        title="learning rate",
        ylabel="lr",
        log_y=True,
    )
    fig.suptitle(plain(title))
    return _save(fig, path)


def pretrain_curves(history: Sequence[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Reconstruction loss and learning rate of a self-supervised run (1 x 2)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    _curve_panel(
        axes[0],
        history,
        [("train_loss", "train"), ("val_loss", "validation")],
        title="reconstruction loss",
        ylabel="loss",
    )
    _curve_panel(
        axes[1], history, [("lr", "learning rate")], title="learning rate", ylabel="lr", log_y=True
    )
    fig.suptitle(plain(title))
    return _save(fig, path)


def confusion_heatmap(matrix: dict[str, Any], path: Path, *, title: str) -> Path:
    """Counts in each cell, colour = share of the true class (rows sum to 1)."""
    plt = _pyplot()
    classes = [plain(wrapped(c)) for c in matrix["classes"]]
    counts = np.asarray(matrix["counts"], dtype=float)
    shares = np.array(
        [[np.nan if v is None else v for v in row] for row in matrix["normalized"]], dtype=float
    )
    n = len(classes)
    side = min(14.0, max(5.0, 0.75 * n + 3.0))
    fig, ax = plt.subplots(figsize=(side + 1.2, side), constrained_layout=True)
    image = ax.imshow(np.nan_to_num(shares, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    font = 10 if n <= 8 else (8 if n <= 14 else 6)
    for i in range(n):
        for j in range(n):
            share = shares[i, j]
            text = f"{int(counts[i, j])}" + ("" if math.isnan(share) else f"\n{share:.0%}")
            dark = not math.isnan(share) and share > 0.6
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=font,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(n), classes, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(plain(title))
    return _save(fig, path)


def per_class_f1(per_class: Sequence[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Horizontal F1 bars per class (long names fit), with precision, recall, support."""
    plt = _pyplot()
    n = len(per_class)
    fig, ax = plt.subplots(figsize=(9, max(2.8, 0.45 * n + 1.6)), constrained_layout=True)
    names = [plain(short(e["class"], 32)) for e in per_class]
    ys = np.arange(n)
    values = [e.get("f1") for e in per_class]
    ax.barh(ys, [v if v is not None else 0.0 for v in values], color="#1f77b4", height=0.6)
    for y, entry in zip(ys, per_class, strict=True):
        f1 = entry.get("f1")
        if f1 is None:
            note = f"F1 {_MISSING} (support {entry.get('support', 0)})"
        else:
            p, r = entry.get("precision"), entry.get("recall")
            note = f"{f1:.2f}  (P {_fmt(p)}, R {_fmt(r)}, n={entry.get('support', 0)})"
        ax.text((f1 or 0.0) + 0.01, y, note, va="center", fontsize=8)
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.45)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("F1")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(plain(title))
    return _save(fig, path)


def _fmt(value: float | None) -> str:
    return _MISSING if value is None else f"{value:.2f}"


def reliability(calibration: dict[str, Any], path: Path, *, title: str) -> Path:
    """Accuracy per confidence bin against the diagonal; bar labels = clips per bin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    edges = np.asarray(calibration["edges"], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    acc = calibration.get("accuracy") or []
    counts = calibration.get("counts") or []
    shown = [(c, a, k) for c, a, k in zip(centres, acc, counts, strict=False) if a is not None]
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    if shown:
        ax.bar(
            [s[0] for s in shown],
            [s[1] for s in shown],
            width=width * 0.9,
            color="#1f77b4",
            alpha=0.8,
            label="accuracy in bin",
        )
        for c, a, k in shown:
            ax.text(c, a + 0.01, str(k), ha="center", va="bottom", fontsize=7)
    ece = calibration.get("ece")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ece_text = _MISSING if ece is None else f"{ece:.3f}"
    ax.set_title(f"{plain(title)}\nECE {ece_text} ({calibration.get('bins')} bins)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def comparison(
    rows: Sequence[dict[str, Any]], histories: Sequence[Sequence[dict[str, Any]]], path: Path
) -> Path:
    """Runs side by side: accuracy / macro-F1 bars, validation curves, F1 vs size."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, 3, figsize=(13, 4.8), constrained_layout=True, gridspec_kw={"width_ratios": [1.3, 1, 1]}
    )
    names = [plain(short(r["run"], 18)) for r in rows]

    ax = axes[0]
    measures = [
        ("best_val_acc", "val acc (best ckpt)"),
        ("eval_acc", "eval accuracy"),
        ("eval_macro_f1", "eval macro-F1"),
    ]
    xs = np.arange(len(rows))
    width = 0.8 / len(measures)
    for k, ((key, _), color) in enumerate(zip(measures, _COLORS, strict=False)):
        offsets = xs - 0.4 + width * (k + 0.5)
        for x, row in zip(offsets, rows, strict=True):
            value = row.get(key)
            if value is None:
                ax.text(x, 0.02, _MISSING, rotation=90, ha="center", va="bottom", fontsize=7)
            else:
                ax.bar(x, value, width=width, color=color)
                ax.text(
                    x,
                    value + 0.01,
                    f"{value:.2f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90 if len(rows) > 2 else 0,
                )
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=lab) for (_, lab), c in zip(measures, _COLORS, strict=False)]
    ax.set_xticks(xs, names, rotation=20, ha="right", rotation_mode="anchor")
    ax.set_ylim(0, 1.22)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("score")
    ax.set_title("accuracy and macro-F1")
    ax.legend(handles=handles, fontsize=7, loc="upper left", ncols=3)
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[1]
    epochs: list[float] = []
    for name, history, color in zip(names, histories, _COLORS * 8, strict=False):
        ex, ey = _series(history, "val_acc")
        if ex:
            ax.plot(ex, ey, marker="o" if len(ex) < 30 else None, ms=3, label=name, color=color)
            epochs += ex
    if epochs:
        _integer_epochs(ax, epochs)
        ax.set_ylabel("validation accuracy")
        ax.set_title("validation accuracy per epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    else:
        _missing(ax, "validation history")

    ax = axes[2]
    points = [
        (r["parameters"], r["eval_macro_f1"], n)
        for r, n in zip(rows, names, strict=True)
        if r.get("parameters") and r.get("eval_macro_f1") is not None
    ]
    if points:
        for k, ((params, f1, name), color) in enumerate(zip(points, _COLORS * 8, strict=False)):
            ax.scatter([params], [f1], s=60, color=color)
            ax.annotate(  # staggered, so runs of one size do not print over each other
                name,
                (params, f1),
                textcoords="offset points",
                xytext=(6, 4 + 11 * (k % 3)),
                fontsize=8,
            )
        ax.set_xscale("log")
        low, high = min(p[0] for p in points), max(p[0] for p in points)
        ax.set_xlim(low / 2.5, high * 2.5)  # room for the labels
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel("eval macro-F1")
        ax.set_ylim(0, 1.05)
        ax.set_title("macro-F1 against model size")
        ax.grid(True, alpha=0.3)
    else:
        _missing(ax, "parameters or eval macro-F1")
    return _save(fig, path)


def _class_colors(n: int) -> list[Any]:
    """Distinct colours for ``n`` classes (tab10, then tab20)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def pr_curves(curves: Sequence[Any], path: Path, *, title: str) -> Path:
    """One-vs-rest precision-recall curve per class; the dot is the best-F1 threshold.

    ``curves`` are :class:`serenesense_cli.evaluate.thresholds.ClassCurve`; a
    class without clips has no curve and is named in the legend as missing.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
    for curve, color in zip(curves, _class_colors(len(curves)), strict=True):
        name = plain(short(curve.name, 24))
        if curve.threshold is None:
            ax.plot([], [], color=color, label=f"{name}: no clips ({_MISSING})")
            continue
        ax.step(curve.recall, curve.precision, where="post", color=color, linewidth=1.5)
        ax.plot(
            [curve.best_recall],
            [curve.best_precision],
            "o",
            color=color,
            label=f"{name}: AP {curve.average_precision:.2f}, "
            f"t {curve.threshold:.2f} (F1 {curve.best_f1:.2f})",
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(plain(title))
    return _save(fig, path)


def logmel_examples(examples: Sequence[dict[str, Any]], path: Path, *, title: str) -> Path:
    """One log-mel spectrogram (dB) per class, side by side on one colour scale.

    Each example is ``{"class", "logmel" (mels x frames, dB), "seconds", "clip"}``.
    """
    plt = _pyplot()
    n = len(examples)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols + 0.8, 2.5 * rows + 0.6), constrained_layout=True
    )
    flat = np.atleast_1d(axes).ravel()
    top = max(float(np.max(e["logmel"])) for e in examples)
    image = None
    for ax, example in zip(flat, examples, strict=False):
        image = ax.imshow(
            example["logmel"],
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80.0,
            vmax=top,
            extent=(0.0, float(example["seconds"]), 0, example["logmel"].shape[0]),
        )
        ax.set_title(plain(short(example["class"], 24)), fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("mel band", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in flat[n:]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=list(flat[:n]), shrink=0.8, label="dB")
    fig.suptitle(plain(title))
    return _save(fig, path)
