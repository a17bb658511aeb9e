"""Benchmark: what the thread state stream and the lock memory cost a MINI dump.

    python benchmarks/bench_thread_state.py [--runs 15] [--threads 4,50]

For benchmarks/bench_target.c with 4 and 50 threads, and for tests/targets/
locks_target.c (9 threads: mutex, PI, robust, condvar, semaphore, join waiters,
nanosleep, epoll_wait, a mutex holder in read()), MINI dumps are taken ``--runs``
times each way, alternating:

* with: the default writer (states sampled before the stop, registers and robust
  lists read while stopped, lock memory copied);
* without: the same writer with the thread state steps switched off (sample,
  collect and lock_memory replaced by no-ops).

Reported: median tracer-side pause (first PTRACE_SEIZE to last PTRACE_DETACH, from
``Dumper.last_times``), median wall time of ``Dumper.write``, and the dump size.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

import minidumpkit  # noqa: E402
from minidumpkit import DumpType  # noqa: E402
from minidumpkit._backends import _threadstate  # noqa: E402

sys.path.insert(0, str(HERE))
from _common import Comparison  # noqa: E402


@contextlib.contextmanager
def thread_state_off() -> Iterator[None]:
    saved = (_threadstate.sample, _threadstate.collect, _threadstate.lock_memory)
    _threadstate.sample = lambda pid: {}
    _threadstate.collect = lambda *a, **k: ({}, {})
    _threadstate.lock_memory = lambda *a, **k: []
    try:
        yield
    finally:
        _threadstate.sample, _threadstate.collect, _threadstate.lock_memory = saved


def one(pid: int, path: Path) -> tuple[float, float, int]:
    dumper = minidumpkit.Dumper(pid)
    t0 = time.perf_counter()
    dumper.write(path, DumpType.MINI)
    wall = (time.perf_counter() - t0) * 1000
    pause = getattr(dumper.last_times, "pause_ns", 0) / 1e6
    return pause, wall, path.stat().st_size


def measure(name: str, argv: list[str], runs: int, work: Path,
            ) -> dict[str, list[tuple[float, float, int]]]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            bufsize=1)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("READY"), ready
        time.sleep(0.3)
        results: dict[str, list[tuple[float, float, int]]] = {"with": [], "without": []}
        for i in range(runs + 1):
            for mode in ("with", "without"):
                ctx = thread_state_off() if mode == "without" else contextlib.nullcontext()
                with ctx:
                    got = one(proc.pid, work / f"{name}-{mode}-{i}.dmp")
                if i:  # the first round warms up
                    results[mode].append(got)
                time.sleep(0.02)
        print(f"{name}:")
        for mode, rows in results.items():
            pause = statistics.median(r[0] for r in rows)
            wall = statistics.median(r[1] for r in rows)
            size = statistics.median(r[2] for r in rows)
            print(f"  {mode:8s} pause {pause:7.3f} ms  wall {wall:7.2f} ms  size {size:9.0f} B")
        return results
    finally:
        proc.kill()
        proc.wait()


def _build(work: Path) -> tuple[Path, Path]:
    bench = work / "bench_target"
    locks = work / "locks_target"
    subprocess.run(["cc", "-O2", "-pthread", "-o", str(bench), str(HERE / "bench_target.c")],
                   check=True)
    subprocess.run(["cc", "-O0", "-g", "-pthread", "-o", str(locks),
                    str(REPO / "tests" / "targets" / "locks_target.c")], check=True)
    return bench, locks


def run(quick: bool = False) -> list[Comparison]:
    """run_all.py's entry: the pause and size of a MINI dump with the thread state steps
    (states, registers, robust lists, lock memory) against the same writer without them,
    and the time the wait-for graph takes on the lock target's dump."""
    runs = 3 if quick else 11
    out: list[Comparison] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench, locks = _build(work)
        targets = [("bench_target, 4 threads", [str(bench), "4"]),
                   ("locks_target, 16 threads", [str(locks)])]
        if not quick:
            targets.insert(1, ("bench_target, 50 threads", [str(bench), "50"]))
        for name, argv in targets:
            got = measure(name, argv, runs, work)
            out.append(Comparison(
                "bench_thread_state", f"MINI pause, {name}", "with thread state",
                [r[0] for r in got["with"]], "ms", "without", [r[0] for r in got["without"]],
                note=f"size {statistics.median(r[2] for r in got['with']):.0f} B with, "
                     f"{statistics.median(r[2] for r in got['without']):.0f} B without"))
        out.append(_analysis(locks, work, runs))
    return out


def _analysis(locks: Path, work: Path, runs: int) -> Comparison:
    """wait_graph (walks every stack, then the waits and the graph) against walk_stacks
    alone, on a MINI dump of the lock target."""
    from minidumpkit.analysis import walk_stacks
    from minidumpkit.analysis.deadlocks import wait_graph

    proc = subprocess.Popen([str(locks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("READY")
        time.sleep(0.3)
        path = work / "locks-analysis.dmp"
        minidumpkit.dump(proc.pid, path, DumpType.MINI)
    finally:
        proc.kill()
        proc.wait()
    graph_ms, walk_ms = [], []
    for _ in range(runs):
        with minidumpkit.open_minidump(path) as dump:  # a fresh dump: nothing cached
            t0 = time.perf_counter()
            wait_graph(dump)
            graph_ms.append((time.perf_counter() - t0) * 1000)
        with minidumpkit.open_minidump(path) as dump:
            t0 = time.perf_counter()
            walk_stacks(dump)
            walk_ms.append((time.perf_counter() - t0) * 1000)
    return Comparison("bench_thread_state", "wait_graph of a locks_target MINI dump (16 threads)",
                      "wait_graph", graph_ms, "ms", "walk_stacks alone", walk_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", default="4,50")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench, locks = _build(work)
        for n in (int(t) for t in args.threads.split(",")):
            measure(f"bench_target {n} threads", [str(bench), str(n)], args.runs, work)
        measure("locks_target", [str(locks)], args.runs, work)


if __name__ == "__main__":
    main()
