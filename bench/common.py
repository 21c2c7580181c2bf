"""What every benchmark shares: the report shape, percentiles, the machine, loopback helpers."""

from __future__ import annotations

import math
import os
import platform
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """How one benchmark is run: `quick` shrinks every size to seconds; `tmp` is its scratch dir."""

    quick: bool
    tmp: Path


@dataclass(frozen=True)
class Target:
    """A goal from the issue, judged against one measured value."""

    what: str
    value: float
    limit: float
    unit: str
    at_least: bool  # True: value must be >= limit; False: value must be < limit

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value < self.limit

    def describe(self) -> str:
        sign = "≥" if self.at_least else "<"
        head = f"{self.what}: {fmt(self.value)}{self.unit} (target {sign} {fmt(self.limit)}"
        head += f"{self.unit})"
        if self.met:
            return f"{head}  MET"
        gap = self.limit - self.value if self.at_least else self.value - self.limit
        return f"{head}  NOT MET (gap {fmt(gap)}{self.unit})"


@dataclass
class Report:
    """One benchmark's outcome. `figures` holds every number, by name, for --json and the test;
    `checks` are correctness conditions (nothing lost) that must hold whatever the speed."""

    name: str
    title: str
    lines: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"== {self.name}: {self.title}", *(f"  {line}" for line in self.lines)]
        out += [f"  target  {t.describe()}" for t in self.targets]
        out += [f"  check   {what}: {'ok' if ok else 'FAILED'}" for what, ok in self.checks.items()]
        out += [f"  note    {n}" for n in self.notes]
        return "\n".join(out)


def fmt(value: float) -> str:
    """Three significant digits, without an exponent for the magnitudes we print."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between the closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ms(seconds: float) -> float:
    return seconds * 1000


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """The facts a reader needs to compare these figures with their own."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load average (1/5/15 min) at start": load,
    }


def status_kib(field_name: str) -> int:
    """A VmRSS/VmHWM-style line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a later peak belongs to what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
