"""The floor every model must clear: logistic regression on clip-level log-mel statistics.

Each clip becomes one vector: the mean and standard deviation over time of
its 64-band log-mel spectrum and of 20 MFCCs (the whole clip, no windows).
A standardised scikit-learn logistic regression is fitted on the prepared
set's ``train`` split, its inverse regularisation ``C`` chosen on ``val``
macro-F1, and scored on ``test``. About twenty lines of real work, so a
trained network that does not beat it by a wide margin is not worth its cost.

    python benchmarks/baseline.py --data prepared/ [--format json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

C_GRID = (0.01, 0.1, 1.0, 10.0)
N_MELS = 64
N_MFCC = 20


def clip_features(wave: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    """Mean and std over time of the log-mel (64) and MFCC (20) of one clip: 168 values."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=1024, hop_length=320, n_mels=N_MELS, f_min=50.0
    )
    dct = torchaudio.functional.create_dct(N_MFCC, N_MELS, norm="ortho")
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    if x.shape[1] < 1024:
        x = torch.nn.functional.pad(x, (0, 1024 - x.shape[1]))
    log_mel = torch.log(mel(x)[0] + 1e-6)  # (mels, frames)
    mfcc = dct.T @ log_mel  # (coefficients, frames)
    parts = [log_mel.mean(1), log_mel.std(1), mfcc.mean(1), mfcc.std(1)]
    return torch.cat(parts).numpy().astype(np.float64)


def split_features(prepared: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix and label indices of one split of a prepared set."""
    indices = prepared.indices(split)
    features = np.stack([clip_features(prepared.waveform(i)) for i in indices])
    labels = np.array([prepared.records[i].label_index for i in indices])
    return features, labels


def run_baseline(data: str | Path) -> dict[str, Any]:
    """Fit on train, choose C on val, score test; returns the figures."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from serenesense_cli.data.cache import open_prepared

    prepared = open_prepared(data)
    x_train, y_train = split_features(prepared, "train")
    x_val, y_val = split_features(prepared, "val")
    x_test, y_test = split_features(prepared, "test")

    def fit(c: float) -> Any:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        return model.fit(x_train, y_train)

    scores = {c: f1_score(y_val, fit(c).predict(x_val), average="macro") for c in C_GRID}
    best_c = max(C_GRID, key=lambda c: (scores[c], -c))
    model = fit(best_c)
    val_pred, test_pred = model.predict(x_val), model.predict(x_test)
    return {
        "model": "baseline (log-mel/MFCC stats + logistic regression)",
        "C": best_c,
        "train_clips": len(y_train),
        "val_acc": float(accuracy_score(y_val, val_pred)),
        "val_macro_f1": float(f1_score(y_val, val_pred, average="macro")),
        "test_acc": float(accuracy_score(y_test, test_pred)),
        "test_macro_f1": float(f1_score(y_test, test_pred, average="macro")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared data set (train/val/test)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    result = run_baseline(args.data)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
