"""The walk's memory source for a live, stopped process (/proc/PID/mem), and its module
list from /proc/PID/maps: what the writer's Python-aware capture walks. The target must be
stopped (ptrace or SIGSTOP) for a consistent answer: a running one gives torn reads.
"""

from __future__ import annotations

import os

from .locate import ModuleRef


class ProcessMemory:
    """``read`` = pread on /proc/PID/mem; raises OSError (EIO for unmapped memory)."""

    def __init__(self, pid: int) -> None:
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)

    def read(self, address: int, size: int) -> bytes:
        data = os.pread(self._fd, size, address)
        if len(data) != size:
            raise OSError(5, f"short read at 0x{address:x}")
        return data

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def process_modules(pid: int) -> list[ModuleRef]:
    """Each mapped file as one module: its lowest mapping to its highest end."""
    spans: dict[str, tuple[int, int]] = {}
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith("/"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            path = fields[5].strip()
            lo, hi = spans.get(path, (start, end))
            spans[path] = (min(lo, start), max(hi, end))
    return [ModuleRef(path, lo, hi - lo, None) for path, (lo, hi) in spans.items()]


def merge_ranges(reads: list[tuple[int, int]], gap: int = 0) -> list[tuple[int, int]]:
    """(address, size) reads merged where they overlap or lie ``gap`` bytes apart or less."""
    out: list[list[int]] = []
    for address, size in sorted(reads):
        if out and address <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], address + size)
        else:
            out.append([address, address + size])
    return [(a, b - a) for a, b in out]
