"""What `minidumpkit run --on-crash --follow-children` costs a program that forks and
execs: the wall time of ``fork_exec_loop 1000`` (1,000 fork + exec /bin/true + waitpid)
under the watcher, against the same command bare, in interleaved pairs (A B A B ...).

Every fork stops the parent until the watcher has seen it (PTRACE_EVENT_FORK), each
child stops at its first instruction and at its exec, and each exit is collected by
the watcher first: four ptrace round trips through a Python loop per child. The
watched figure includes the watcher's own start (a Python interpreter importing
minidumpkit); ``run --on-crash`` without --follow-children, where the children are not
traced, is shown as well to separate that start-up from the per-child cost.

    python3 benchmarks/bench_follow.py [--runs 10] [--n 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _common import Comparison, spread  # noqa: E402

SOURCE = HERE / "fork_exec_loop.c"


def build(directory: Path) -> Path:
    exe = directory / "fork_exec_loop"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(SOURCE)], check=True)
    return exe


def timed(argv: list[str], cwd: Path) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                      env.get("PYTHONPATH")]))
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr.strip()}")
    return took


def measure(runs: int, n: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="mdk-bench-follow-") as tmp:
        work = Path(tmp)
        exe = build(work)
        cmd = [str(exe), str(n)]
        watcher = [sys.executable, "-m", "minidumpkit", "run", "--on-crash", "--dir", tmp]
        kinds = {"bare": cmd,
                 "follow": [*watcher, "--follow-children", "--", *cmd],
                 "no-follow": [*watcher, "--", *cmd]}
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        for argv in kinds.values():  # warm-up, not counted
            timed(argv, work)
        for _ in range(runs):
            for kind, argv in kinds.items():
                samples[kind].append(timed(argv, work))
        return samples


def run(quick: bool = False) -> list[Comparison]:
    runs, n = (3, 100) if quick else (10, 1000)
    s = measure(runs, n)
    what = f"fork + exec /bin/true + waitpid, {n} times: whole command"
    return [
        Comparison("bench_follow", what, "run --on-crash --follow-children", s["follow"],
                   "s", "bare", s["bare"]),
        Comparison("bench_follow", what, "run --on-crash (children untraced)",
                   s["no-follow"], "s", "bare", s["bare"],
                   note="the watcher's start-up and the parent's SIGCHLD stops only"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    s = measure(args.runs, args.n)
    for kind, values in s.items():
        print(f"{kind:>10}: {spread(values)} s")
    base = statistics.median(s["bare"])
    per_child = (statistics.median(s["follow"]) - statistics.median(s["no-follow"])) / args.n
    print(f"follow/bare: {statistics.median(s['follow']) / base:.2f}; "
          f"per child under --follow-children: {per_child * 1e6:.0f} us")


if __name__ == "__main__":
    main()
