"""Benchmark: full-memory stop-and-dump throughput against a raw copy and gdb's gcore.

    python benchmarks/bench_full_memory.py [--mib 1024] [--runs 3] [--dir /tmp] [--json FILE]

A C target (tests/targets/memflags_target.c, mode ``fill``) holds ``--mib`` MiB of a
non-zero page pattern (so no writer can skip zero chunks). In the same run, after
one warm-up each, ``--runs`` times:

* ours: ``minidumpkit.dump(pid, path, DumpType.FULL, snapshot="never")`` (stop, read
  with process_vm_readv, write while stopped, fsync, rename), wall time in this
  process; the pause (first PTRACE_SEIZE to last PTRACE_DETACH) from
  ``Dumper.last_times``;
* raw: the same address ranges our dump holds (read back from its MemoryList and
  Memory64List), copied with ``process_vm_readv`` in 4 MiB chunks into one reused
  buffer and written to a file, then fsync'd: the floor for "read the memory, write
  a file" without any format, planning or stop;
* gcore: ``gcore -o PREFIX PID`` (gdb), wall time, ELF core of the same process.

Each is measured twice: as above (with fsync: the file is on disk when the call
returns, which ``dump()`` promises), and without fsync (ours: the backend's
``write_dump`` into an open file; raw: no fsync; gcore never fsyncs), where the page
cache absorbs the write. Throughput = memory bytes / wall seconds. The figure of merit
is ours/raw (goal >= 0.8). Medians are reported; files are deleted after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

import minidumpkit  # noqa: E402
from _common import Comparison  # noqa: E402
from minidumpkit import DumpType  # noqa: E402
from minidumpkit._ffi import libc  # noqa: E402

CHUNK = 4 << 20


def build_target(work: Path) -> Path:
    exe = work / "memflags_target"
    subprocess.run(["cc", "-O0", "-g", "-pthread", "-o", str(exe),
                    str(REPO / "tests" / "targets" / "memflags_target.c")],
                   check=True, stderr=subprocess.DEVNULL)
    return exe


def raw_copy(pid: int, ranges: list[tuple[int, int]], path: Path, sync: bool = True) -> int:
    """process_vm_readv each range into one reused buffer, write it; fsync."""
    ffi, lib = libc.load()
    buf = bytearray(CHUNK)
    cbuf = ffi.from_buffer(buf)
    local = ffi.new("unsigned long[2]")
    remote = ffi.new("unsigned long[2]")
    local[0] = int(ffi.cast("uintptr_t", cbuf))
    view = memoryview(buf)
    total = 0
    with open(path, "wb") as f:
        for start, size in ranges:
            addr, end = start, start + size
            while addr < end:
                n = min(CHUNK, end - addr)
                local[1] = n
                remote[0], remote[1] = addr, n
                got = int(lib.process_vm_readv(pid, local, 1, remote, 1, 0))
                if got <= 0:
                    break
                f.write(view[:got])
                total += got
                addr += got
        f.flush()
        if sync:
            os.fsync(f.fileno())
    return total


def measure(mib: int = 1024, runs: int = 3, directory: str | None = None) -> dict[str, Any]:
    """Every sample (seconds) and their medians, as ``--json`` writes them."""
    directory = directory or tempfile.gettempdir()
    work = Path(tempfile.mkdtemp(prefix="mdk-bench-full-", dir=directory))
    exe = build_target(work)
    proc = subprocess.Popen([str(exe), "fill", str(mib)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.startswith("READY"), ready
    from minidumpkit._backends import linux

    results: dict[str, list[float]] = {"ours": [], "raw": [], "gcore": [], "pause": [],
                                       "ours_nosync": [], "raw_nosync": []}
    nbytes = 0
    try:
        for run in range(runs + 1):
            dump = work / "full.dmp"
            dumper = minidumpkit.Dumper(proc.pid)
            t0 = time.perf_counter()
            dumper.write(dump, DumpType.FULL, snapshot="never")
            ours = time.perf_counter() - t0
            pause = getattr(dumper.last_times, "pause_ns") / 1e9  # DumpTimes
            with minidumpkit.open_minidump(dump) as d:
                ranges = [(r.start, r.size) for r in d.memory.ranges]
                nbytes = sum(n for _, n in ranges)
            dump.unlink()
            t0 = time.perf_counter()
            copied = raw_copy(proc.pid, ranges, work / "raw.bin")
            raw = time.perf_counter() - t0
            (work / "raw.bin").unlink()
            assert copied == nbytes, (copied, nbytes)
            t0 = time.perf_counter()
            with open(dump, "wb") as out:
                linux.write_dump(proc.pid, out, DumpType.FULL)
            ours_nosync = time.perf_counter() - t0
            dump.unlink()
            t0 = time.perf_counter()
            raw_copy(proc.pid, ranges, work / "raw.bin", sync=False)
            raw_nosync = time.perf_counter() - t0
            (work / "raw.bin").unlink()
            t0 = time.perf_counter()
            subprocess.run(["gcore", "-o", str(work / "core"), str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            gcore = time.perf_counter() - t0
            for p in work.glob("core*"):
                p.unlink()
            if run == 0:
                continue  # warm-up
            for key, value in (("ours", ours), ("raw", raw), ("gcore", gcore), ("pause", pause),
                               ("ours_nosync", ours_nosync), ("raw_nosync", raw_nosync)):
                results[key].append(value)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    gib = nbytes / (1 << 30)
    return {
        "memory_bytes": nbytes, "runs": runs, "dir": directory,
        "ours_s": med["ours"], "ours_pause_s": med["pause"], "raw_s": med["raw"],
        "gcore_s": med["gcore"], "ours_gib_per_s": gib / med["ours"],
        "raw_gib_per_s": gib / med["raw"], "ratio_ours_to_raw": med["raw"] / med["ours"],
        "gcore_over_ours": med["gcore"] / med["ours"],
        "ours_nosync_s": med["ours_nosync"], "raw_nosync_s": med["raw_nosync"],
        "ratio_nosync": med["raw_nosync"] / med["ours_nosync"],
        "gcore_over_ours_nosync": med["gcore"] / med["ours_nosync"], "all": results,
    }


def comparisons(summary: dict[str, Any]) -> list[Comparison]:
    r = summary["all"]
    gib = summary["memory_bytes"] / (1 << 30)
    size = f"{gib:.2f} GiB of a live C target"

    def rate(xs: list[float]) -> list[float]:
        return [gib / x for x in xs]
    return [
        Comparison("bench_full_memory", f"FULL stop-and-dump throughput, fsync'd, {size}",
                   "minidumpkit", rate(r["ours"]), "GiB/s",
                   "process_vm_readv copy to a file", rate(r["raw"]), higher_is_better=True),
        Comparison("bench_full_memory", f"FULL stop-and-dump throughput, no fsync, {size}",
                   "minidumpkit", rate(r["ours_nosync"]), "GiB/s",
                   "process_vm_readv copy to a file", rate(r["raw_nosync"]),
                   higher_is_better=True),
        Comparison("bench_full_memory", f"full-memory dump wall time, no fsync, {size}",
                   "minidumpkit FULL", r["ours_nosync"], "s", "gdb gcore", r["gcore"]),
        Comparison("bench_full_memory", f"FULL stop-and-dump pause (tracer side), {size}",
                   "minidumpkit", r["pause"], "s"),
    ]


def run(quick: bool = False, **options: Any) -> list[Comparison]:
    """The structured results (run_all.py); ``quick``: 128 MiB, 2 runs."""
    if quick:
        options = {"mib": 128, "runs": 2, **options}
    return comparisons(measure(**options))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--json")
    args = ap.parse_args()
    summary = measure(args.mib, args.runs, args.dir)
    med = {k: statistics.median(v) for k, v in summary["all"].items()}
    gib = summary["memory_bytes"] / (1 << 30)
    print(f"memory in dump: {gib:.3f} GiB, {args.runs} runs (medians), files in {args.dir}")
    print(f"  minidumpkit FULL : {med['ours']:.3f} s  ({summary['ours_gib_per_s']:.2f} GiB/s), "
          f"pause {med['pause']:.3f} s")
    print(f"  raw vm_readv copy: {med['raw']:.3f} s  ({summary['raw_gib_per_s']:.2f} GiB/s)")
    print(f"  ratio ours/raw throughput: {summary['ratio_ours_to_raw']:.2f}  (goal >= 0.8)")
    print(f"  without fsync: ours {med['ours_nosync']:.3f} s, raw {med['raw_nosync']:.3f} s, "
          f"ratio {summary['ratio_nosync']:.2f}")
    print(f"  gdb gcore (no fsync): {med['gcore']:.3f} s = {summary['gcore_over_ours_nosync']:.2f}x "
          f"ours without fsync, {summary['gcore_over_ours']:.2f}x ours with fsync")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
