"""``serenesense export --bundle DIR``: a folder to copy onto a Raspberry Pi.

Contents:

- ``model.int8.onnx``: the INT8 model (quantized here from a run folder,
  ``.safetensors`` or FP32 ``.onnx``; an INT8 ``.onnx`` is copied);
- ``requirements.txt``: serenesense's lean install (no extras: no torch);
- ``serenesense-detect.service``: a systemd unit running
  ``serenesense detect --model ... --mic --format jsonl`` with its events
  appended to a log file and its messages in the journal;
- ``README.md``: the steps, from copying the folder to checking the budget
  with ``serenesense bench --profile pi5``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serenesense_cli import __version__
from serenesense_cli.errors import BadInputError
from serenesense_cli.fileio import write_text_atomic
from serenesense_cli.progress import ProgressCallback, report

MODEL_FILE = "model.int8.onnx"
INSTALL_DIR = "/opt/serenesense"
LOG_DIR = "/var/log/serenesense"
SERVICE_FILE = "serenesense-detect.service"
SERVICE_USER = "serenesense"


@dataclass
class BundleResult:
    """The bundle folder and how its model was made."""

    directory: Path
    model: Path
    files: list[Path]
    source: Path
    export: Any | None = None
    quantize: Any | None = None
    notes: list[str] = field(default_factory=list)
    top1_agreement: float | None = None
    """INT8 vs FP32 agreement: measured now, or as recorded in a copied INT8 model."""

    def summary(self) -> dict[str, Any]:
        return {
            "bundle": str(self.directory),
            "model": str(self.model),
            "source": str(self.source),
            "files": [p.name for p in self.files],
            "size_mb": round(self.model.stat().st_size / 1e6, 3),
            "quantization": self.quantize.mode if self.quantize is not None else "copied",
            "top1_agreement": self.top1_agreement,
        }


def requirements_text() -> str:
    """``requirements.txt``: serenesense's lean install, no extras.

    The package itself is the requirement: its core dependencies are the
    ONNX-only runtime (onnxruntime, numpy, soundfile, soxr, sounddevice,
    typer, rich), and torch & co. sit in the ``train`` extra that the Pi
    leaves out. Same minor version as the one that wrote the bundle.
    """
    lines = [
        "# The lean runtime for `serenesense detect` / `serenesense bench` on this .onnx model:",
        "# serenesense without extras brings onnxruntime, numpy, soundfile, soxr, sounddevice,",
        "# typer and rich, and no torch (that is the `train` extra, for training only).",
        f"serenesense~={__version__}",
    ]
    return "\n".join(lines) + "\n"


def service_text(install_dir: str = INSTALL_DIR, log_dir: str = LOG_DIR) -> str:
    """The systemd unit: detection from the default microphone, events as JSON lines."""
    return f"""[Unit]
Description=serenesense: live battlefield sound detection from the microphone
Documentation=file://{install_dir}/README.md
After=sound.target network.target
Wants=sound.target

[Service]
Type=simple
User={SERVICE_USER}
Group=audio
SupplementaryGroups=audio
WorkingDirectory={install_dir}
Environment=PYTHONUNBUFFERED=1
Environment=OMP_NUM_THREADS=4
LogsDirectory=serenesense
ExecStart={install_dir}/venv/bin/serenesense detect \\
    --model {install_dir}/{MODEL_FILE} --mic --threads 4 --no-spin --format jsonl
# Detections (stdout) are appended to a JSON-lines file; messages (stderr) go to the journal.
StandardOutput=append:{log_dir}/events.jsonl
StandardError=journal
SyslogIdentifier=serenesense
Restart=on-failure
RestartSec=5
Nice=-5

[Install]
WantedBy=multi-user.target
"""


def readme_text(summary: dict[str, Any], install_dir: str = INSTALL_DIR) -> str:
    """Step-by-step deployment notes for this bundle."""
    classes = ", ".join(summary.get("classes") or []) or "see the model metadata"
    return f"""# serenesense edge bundle

Made by serenesense {__version__} from `{summary.get("source")}`.

- model: `{MODEL_FILE}` ({summary.get("name")}, INT8 {summary.get("mode")},
  {summary.get("size_mb")} MB), window {summary.get("window_s")} s at 16 kHz mono
- classes: {classes}
- top-1 agreement with the FP32 model: {summary.get("agreement")}

The model takes raw 16 kHz waveform and returns class probabilities: the
audio front end is inside the graph, so the Pi needs onnxruntime and numpy,
not torch.

## 1. Copy the folder to the Pi

```bash
scp -r {summary.get("bundle_name")} pi@raspberrypi.local:/tmp/serenesense-bundle
ssh pi@raspberrypi.local
sudo mkdir -p {install_dir}
sudo cp /tmp/serenesense-bundle/* {install_dir}/
```

## 2. A virtual environment with the lean install

```bash
sudo apt-get install -y python3-venv libportaudio2 libsndfile1
sudo python3 -m venv {install_dir}/venv
sudo {install_dir}/venv/bin/pip install -r {install_dir}/requirements.txt
```

`requirements.txt` is `serenesense` without extras: onnxruntime, numpy,
soundfile, soxr, sounddevice, typer and rich, no torch (the `train` extra,
for training, is left out). To install from a wheel or source tree you trust
instead: `sudo {install_dir}/venv/bin/pip install ./serenesense-*.whl`.

## 3. Check the model and the budget on the Pi

```bash
{install_dir}/venv/bin/serenesense bench {install_dir}/{MODEL_FILE} --profile pi5
```

`--profile pi5` runs 4 threads at batch 1 for 60 s, reports the board, CPU
temperature and clock, and checks p99 latency <= 500 ms and peak memory <=
2048 MB (exit code 0 = pass, 1 = fail). Give the Pi a heatsink or the active
cooler: a throttling Pi 5 shows a slower last 10 s.

## 4. Try detection by hand

```bash
{install_dir}/venv/bin/serenesense detect --model {install_dir}/{MODEL_FILE} --mic --format jsonl
```

## 5. Run it as a service

```bash
sudo useradd --system --groups audio --home {install_dir} {SERVICE_USER} || true
sudo mkdir -p {LOG_DIR} && sudo chown {SERVICE_USER} {LOG_DIR}
sudo cp {install_dir}/{SERVICE_FILE} /etc/systemd/system/
sudo systemctl daemon-reload
sudo systemctl enable --now serenesense-detect
```

## 6. Check it

```bash
systemctl status serenesense-detect
journalctl -u serenesense-detect -f        # messages and errors
tail -f {LOG_DIR}/events.jsonl             # one JSON object per detection
```

Rotate `{LOG_DIR}/events.jsonl` with logrotate (`copytruncate`) if the box
runs for weeks.
"""


def make_bundle(
    model: str | Path,
    directory: str | Path,
    *,
    mode: str = "auto",
    calib: str | Path | None = None,
    parity_data: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> BundleResult:
    """Write the bundle folder for ``model`` (run folder, .safetensors or .onnx)."""
    from serenesense_cli.export.graph import load_model, read_metadata
    from serenesense_cli.export.onnx import export_onnx
    from serenesense_cli.export.quantize import quantize_onnx

    source = Path(model)
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder")
    if out.resolve() == source.resolve():
        raise BadInputError(f"{out}: the bundle folder cannot be the model itself")
    out.mkdir(parents=True, exist_ok=True)
    target = out / MODEL_FILE
    exported = quantized = None
    notes: list[str] = []

    report(on_progress, "bundle", 0, 3, note="model")
    onnx_path = source
    if source.suffix.lower() != ".onnx":
        exported = export_onnx(source, parity_data=parity_data, on_progress=on_progress)
        onnx_path = exported.path
        notes.append(f"exported FP32 model: {onnx_path}")
    meta = read_metadata(load_model(onnx_path, external=False))
    if (meta.get("export") or {}).get("quantization"):
        if onnx_path.resolve() != target.resolve():
            shutil.copyfile(onnx_path, target)
    else:
        quantized = quantize_onnx(
            onnx_path,
            target,
            mode=mode,
            calib=calib if calib is not None else parity_data,
            on_progress=on_progress,
        )
        notes.extend(quantized.notes)
        meta = read_metadata(load_model(target, external=False))

    report(on_progress, "bundle", 1, 3, note="files")
    quantization = (meta.get("export") or {}).get("quantization") or {}
    agreement = quantization.get("top1_agreement")
    summary = {
        "source": str(source),
        "name": (meta.get("model") or {}).get("name"),
        "mode": quantization.get("mode"),
        "size_mb": round(target.stat().st_size / 1e6, 2),
        "window_s": meta.get("clip_seconds"),
        "classes": meta.get("classes"),
        "agreement": f"{agreement:.1%}" if isinstance(agreement, (int, float)) else "not measured",
        "bundle_name": out.name,
    }
    files = [
        target,
        write_text_atomic(out / "requirements.txt", requirements_text()),
        write_text_atomic(out / SERVICE_FILE, service_text()),
        write_text_atomic(out / "README.md", readme_text(summary)),
    ]
    report(on_progress, "bundle", 3, 3, note="done")
    return BundleResult(
        directory=out,
        model=target,
        files=files,
        source=source,
        export=exported,
        quantize=quantized,
        notes=notes,
        top1_agreement=float(agreement) if isinstance(agreement, (int, float)) else None,
    )
