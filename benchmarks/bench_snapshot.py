"""How long a full-memory dump pauses a live process: VA-clone snapshot vs stop-and-dump vs gcore.

    python benchmarks/bench_snapshot.py [--sizes 256,1024,4096] [--reps 5] [--out DIR]

Target: tests/targets/snapshot_bench.c with an N MiB heap of 4 KiB pages (touched
whole), a writer thread rewriting heap pages, a thread blocked in read(), and a
heartbeat thread (SCHED_FIFO 10) that wakes every 1 ms and keeps its largest gap.

For every size, ``--reps`` runs of each method (medians printed, min-max after):

* ``snapshot``: ``Dumper(pid).snapshot(VA_CLONE|THREADS|THREAD_CONTEXT|HANDLES|VA_SPACE)``,
  ``write(FULL, close=True)`` (the clone gives its pages back as they are written, then
  is killed and its zombie reaped by a second short injection), as
  ``Dumper.write(FULL)`` does.
  Tracer-side pause = the snapshot's ``pause_ns`` (first PTRACE_SEIZE → last
  PTRACE_DETACH); ``clone`` = the injected clone() alone; ``fatal`` = the window in
  which our death would kill the target.
* ``fork``: a bare ``os.fork()`` (child ``os._exit(0)``) of a Python process holding a
  touched N MiB anonymous mapping (MADV_NOHUGEPAGE): what the kernel's copy of the page
  tables costs. The process lives beside the target for the whole size, and forks once
  per rep right after that rep's snapshot, so both are measured at the same moment of
  this noisy VM (fork times drift by tens of % within a minute; a burst of forks
  measured before the target existed compared unlike moments). docs/snapshots.md
  "Pause at 4 GiB" has the comparisons and why the pause still varies with page state.
* ``stop``: ``Dumper(pid).write(FULL, snapshot="never")``: stopped for the whole dump.
* ``gcore``: gdb's ``gcore`` (attach, write an ELF core, detach).

"observed" is the largest heartbeat gap seen by the target from 50 ms before the dump
starts to 50 ms after it ends (so it includes this VM's scheduling noise, tens of ms
at worst: see /work/shared/reference/snapshot-spike.md "noise floor"). Dumps go to
``--out`` (default /dev/shm) and are deleted after each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import minidumpkit as mdk  # noqa: E402
from _common import Comparison  # noqa: E402
from minidumpkit.flags import PssCaptureFlags as F  # noqa: E402

ALL = F.VA_CLONE | F.THREADS | F.THREAD_CONTEXT | F.HANDLES | F.VA_SPACE

# one bare fork per line read, its duration (ns) printed back
FORK_SERVER = r"""
import mmap, os, sys, time
size = int(sys.argv[1]) << 20
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for off in range(0, size, 1 << 24):
    m[off:off + (1 << 24)] = b"\x5a" * min(1 << 24, size - off)
print("READY", flush=True)
for _ in sys.stdin:
    t = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    d = time.perf_counter_ns() - t
    os.waitpid(pid, 0)
    print(d, flush=True)
"""


class ForkServer:
    def __init__(self, mib: int) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", FORK_SERVER, str(mib)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None
        assert self.p.stdout.readline().startswith("READY")

    def fork_ms(self) -> float:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write("fork\n")
        self.p.stdin.flush()
        return int(self.p.stdout.readline()) / 1e6

    def close(self) -> None:
        self.p.kill()
        self.p.wait()


class Target:
    def __init__(self, exe: Path, mib: int) -> None:
        self.p = subprocess.Popen([str(exe), str(mib)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        assert line.startswith("READY"), line
        self.pid = self.p.pid

    def cmd(self, c: str) -> str:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def observe(self, action) -> tuple[float, object]:  # type: ignore[no-untyped-def]
        self.cmd("resetgap")
        time.sleep(0.05)
        result = action()
        time.sleep(0.05)
        gap_us = int(self.cmd("maxgap").split("us=")[1])
        return gap_us / 1000, result

    def close(self) -> None:
        self.p.kill()
        self.p.wait()


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"


def build(out: Path) -> Path:
    exe = out / "snapshot_bench"
    subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe),
                    str(REPO / "tests/targets/snapshot_bench.c")], check=True)
    return exe


DEFAULT_OUT = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
Row = tuple[int, list[float], dict[str, list[float]]]  # heap MiB, fork ms, samples


def measure(sizes: list[int], reps: int = 5, out: str = DEFAULT_OUT,
            gcore: bool = True) -> list[Row]:
    """Every sample, per heap size."""
    work = Path(tempfile.mkdtemp(prefix="bench_snapshot.", dir=out))
    rows: list[Row] = []
    try:
        exe = build(work)
        for mib in sizes:
            forks: list[float] = []
            server = ForkServer(mib)
            t = Target(exe, mib)
            r: dict[str, list[float]] = {k: [] for k in (
                "snap_obs", "snap_pause", "snap_clone", "snap_fatal", "snap_wall",
                "stop_obs", "stop_pause", "stop_wall", "gcore_obs", "gcore_wall")}
            try:
                for i in range(reps):
                    path = work / "d.dmp"

                    def snap(t: Target = t, path: Path = path) -> tuple[float, float, float, float]:
                        t0 = time.perf_counter()
                        with mdk.Dumper(t.pid).snapshot(ALL) as s:
                            impl = s._impl
                            pause, clone, fatal = s.pause_ns, impl.clone_ns, impl.fatal_window_ns
                            s.write(path, mdk.DumpType.FULL, close=True)
                        return pause / 1e6, clone / 1e6, fatal / 1e6, time.perf_counter() - t0
                    obs, (pause, clone, fatal, wall) = t.observe(snap)
                    path.unlink()
                    r["snap_obs"].append(obs)
                    r["snap_pause"].append(pause)
                    r["snap_clone"].append(clone)
                    r["snap_fatal"].append(fatal)
                    r["snap_wall"].append(wall)
                    time.sleep(0.05)
                    forks.append(server.fork_ms())

                    def stop(t: Target = t, path: Path = path) -> tuple[float, float]:
                        t0 = time.perf_counter()
                        dumper = mdk.Dumper(t.pid)
                        dumper.write(path, mdk.DumpType.FULL, snapshot="never")
                        wall = time.perf_counter() - t0
                        # first PTRACE_SEIZE → last PTRACE_DETACH (DumpTimes)
                        return dumper.last_times.pause_ns / 1e6, wall  # type: ignore[attr-defined]
                    obs, (pause, wall) = t.observe(stop)
                    path.unlink()
                    r["stop_obs"].append(obs)
                    r["stop_pause"].append(pause)
                    r["stop_wall"].append(wall)

                    if gcore:
                        def gcore_run(t: Target = t) -> float:
                            t0 = time.perf_counter()
                            subprocess.run(["gcore", "-o", str(work / "core"), str(t.pid)],
                                           check=True, capture_output=True)
                            return time.perf_counter() - t0
                        obs, wall = t.observe(gcore_run)
                        for c in work.glob("core*"):
                            c.unlink()
                        r["gcore_obs"].append(obs)
                        r["gcore_wall"].append(wall)
            finally:
                t.close()
                server.close()
            rows.append((mib, forks, r))
            print(f"{mib} MiB done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def comparisons(rows: list[Row]) -> list[Comparison]:
    out = []
    for mib, forks, r in rows:
        heap = f"{mib} MiB heap, live C target"
        out.append(Comparison("bench_snapshot", f"VA-clone snapshot pause (tracer side), {heap}",
                              "snapshot (clone + capture)", r["snap_pause"], "ms",
                              "bare os.fork() of as big a process", forks))
        out.append(Comparison("bench_snapshot", f"FULL dump, pause the target observed, {heap}",
                              "snapshot (Dumper.write default)", r["snap_obs"], "ms",
                              "stop-and-dump (snapshot='never')", r["stop_obs"]))
        if r["gcore_obs"]:
            out.append(Comparison("bench_snapshot", f"full dump, pause the target observed, {heap}",
                                  "snapshot (Dumper.write default)", r["snap_obs"], "ms",
                                  "gdb gcore", r["gcore_obs"]))
    return out


def run(quick: bool = False, sizes: list[int] | None = None, reps: int | None = None,
        **options: Any) -> list[Comparison]:
    """The structured results (run_all.py); ``quick``: one 256 MiB heap, 3 reps."""
    return comparisons(measure(sizes or ([256] if quick else [256, 1024, 4096]),
                               reps or (3 if quick else 5), **options))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,1024,4096")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--no-gcore", action="store_true")
    args = ap.parse_args()
    rows = measure([int(s) for s in args.sizes.split(",")], args.reps, args.out,
                   gcore=not args.no_gcore)
    print("\n| heap | tracer pause (ms) | clone() | bare os.fork() | pause − fork | "
          "fatal window | snapshot observed | stop observed | gcore observed | gcore/snapshot |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mib, forks, r in rows:
        # each pause against the fork measured right after it
        diff = [p - f for p, f in zip(r["snap_pause"], forks, strict=True)]
        ratio = (statistics.median(r["gcore_obs"]) / statistics.median(r["snap_obs"])
                 if r["gcore_obs"] else float("nan"))
        print(f"| {mib} MiB | {med(r['snap_pause'])} | {med(r['snap_clone'])} | {med(forks)} | "
              f"{med(diff)} | {med(r['snap_fatal'])} | {med(r['snap_obs'])} | "
              f"{med(r['stop_obs'])} | {med(r['gcore_obs']) if r['gcore_obs'] else '-'} | "
              f"{ratio:.0f}× |")
    print("\n| heap | snapshot wall (s) | stop wall (s) | stop tracer pause (ms) | gcore wall (s) |")
    print("|---|---|---|---|---|")
    for mib, _forks, r in rows:
        print(f"| {mib} MiB | {med(r['snap_wall'])} | {med(r['stop_wall'])} | "
              f"{med(r['stop_pause'])} | {med(r['gcore_wall']) if r['gcore_wall'] else '-'} |")


if __name__ == "__main__":
    main()
