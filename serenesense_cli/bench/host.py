"""What machine a benchmark ran on: CPU, board, memory, temperature, clock.

Why: latency figures mean nothing without the host, and a Raspberry Pi that
throttles at 85 °C gives different numbers after a minute than in the first
second. Everything is read from ``/proc`` and ``/sys`` (no tools, no root);
whatever a host does not expose is reported as ``None`` ("not available").
"""

from __future__ import annotations

import glob
import os
import platform
from pathlib import Path
from typing import Any

DEVICE_TREE_MODEL = (
    Path("/proc/device-tree/model"),
    Path("/sys/firmware/devicetree/base/model"),
)
CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
THERMAL_GLOB = "/sys/class/thermal/thermal_zone*"
CPU_THERMAL_TYPES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "k10temp", "coretemp", "soc")
CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def board_model() -> str | None:
    """The device-tree model (``Raspberry Pi 5 Model B Rev 1.0`` on a Pi 5), if any."""
    for path in DEVICE_TREE_MODEL:
        text = _read(path)
        if text:
            return text
    return None


def cpu_model() -> str | None:
    """CPU name from /proc/cpuinfo (``model name``, or ``Model``/``Hardware`` on ARM)."""
    text = _read(CPUINFO)
    if text:
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip():
                fields.setdefault(key.strip().lower(), value.strip())
        for key in ("model name", "model", "hardware", "cpu model", "processor"):
            value = fields.get(key)
            if value and not value.isdigit():
                return value
    return platform.processor() or None


def memory_total_mb() -> float | None:
    """Physical memory in MB (MemTotal), if /proc/meminfo exists."""
    text = _read(MEMINFO)
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            try:
                return round(int(line.split()[1]) / 1024, 1)
            except (IndexError, ValueError):
                return None
    return None


def cpu_temperature_c() -> float | None:
    """CPU temperature in °C from the thermal zones (a CPU zone preferred)."""
    zones = []
    for zone in sorted(glob.glob(THERMAL_GLOB)):
        kind = (_read(Path(zone) / "type") or "").lower()
        raw = _read(Path(zone) / "temp")
        try:
            value = int(raw) / 1000.0 if raw else None
        except ValueError:
            value = None
        if value is not None:
            zones.append((kind, value))
    for preferred in CPU_THERMAL_TYPES:
        for kind, value in zones:
            if kind.startswith(preferred):
                return value
    return zones[0][1] if zones else None


def cpu_clock_mhz() -> float | None:
    """Current clock of CPU 0 in MHz (cpufreq ``scaling_cur_freq``)."""
    raw = _read(CPUFREQ / "scaling_cur_freq")
    try:
        return int(raw) / 1000.0 if raw else None
    except ValueError:
        return None


def cpu_max_clock_mhz() -> float | None:
    """Highest clock CPU 0 may run at in MHz (cpufreq ``cpuinfo_max_freq``)."""
    raw = _read(CPUFREQ / "cpuinfo_max_freq")
    try:
        return int(raw) / 1000.0 if raw else None
    except ValueError:
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (affinity), else all CPUs."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def is_raspberry_pi(board: str | None = None) -> bool:
    """True on a Raspberry Pi (any model)."""
    board = board if board is not None else board_model()
    return bool(board) and "raspberry pi" in str(board).lower()


def is_raspberry_pi5(board: str | None = None) -> bool:
    """True on a Raspberry Pi 5."""
    board = board if board is not None else board_model()
    return bool(board) and "raspberry pi 5" in str(board).lower()


def thermal_sample() -> dict[str, float | None]:
    """One reading of temperature and clock (cheap: two sysfs reads)."""
    return {"temp_c": cpu_temperature_c(), "clock_mhz": cpu_clock_mhz()}


def host_info() -> dict[str, Any]:
    """Everything known about this host; ``None`` where not available."""
    board = board_model()
    cpu = cpu_model()
    return {
        "label": board or cpu or platform.node() or "unknown host",
        "board": board,
        "raspberry_pi": is_raspberry_pi(board),
        "raspberry_pi5": is_raspberry_pi5(board),
        "cpu": cpu,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_mb": memory_total_mb(),
        "temp_c": cpu_temperature_c(),
        "clock_mhz": cpu_clock_mhz(),
        "max_clock_mhz": cpu_max_clock_mhz(),
    }
