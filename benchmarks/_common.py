"""What every benchmark returns, so that ``run_all.py`` can put them in one table.

A benchmark's ``run(...)`` function returns a list of :class:`Comparison`: one figure
of ours (samples) against the baseline it is compared with (samples measured in the
same run, on the same target), and the ratio of their medians. A figure without a
baseline (a detail worth showing, e.g. the pause a snapshot inflicts) has
``baseline=None``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys


@dataclasses.dataclass
class Comparison:
    bench: str  # which benchmark measured it (bench_reader, ...)
    what: str  # the figure: "open + threads + modules, 1 GiB dump"
    ours_label: str  # "minidumpkit"
    ours: list[float]
    unit: str  # "ms", "s", "us", "GiB/s"
    baseline_label: str | None = None  # "mmap slice"
    baseline: list[float] | None = None
    higher_is_better: bool = False  # throughput: True; times: False
    note: str = ""

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        """ours / baseline (medians): below 1 means ours takes less (or, for a
        throughput, moves less)."""
        base = self.baseline_median
        if base is None or base == 0:
            return None
        return self.ours_median / base

    def as_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out.update(ours_median=self.ours_median, baseline_median=self.baseline_median,
                   ratio=self.ratio)
        return out


def spread(values: list[float]) -> str:
    """``median (min–max)`` with 3 significant digits."""
    if not values:
        return "-"
    return f"{_num(statistics.median(values))} ({_num(min(values))}–{_num(max(values))})"


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, kernel and Python of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cores
    return {
        "cpu": cpu,
        "cores": f"{cores} logical" + (f" ({usable} usable)" if usable != cores else ""),
        "ram": ram,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
    }
