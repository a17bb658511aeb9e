"""Watch benchmark (issue 16): what ``minidumpkit run`` costs the program it watches.

    python benchmarks/bench_watch.py [--runs 10] [--only cpu,threads,signals,hang]

The child is benchmarks/watch_target.c (built here); it times its own work with
CLOCK_MONOTONIC and prints the seconds, so the watcher's own start-up (a Python
process) is not in the figure; the whole command's wall time is given in the note.
Each case runs bare and under ``python -m minidumpkit run --on-crash -- CHILD``
in turn (A B A B ..., one warm-up each), at least 10 pairs; medians with their
spread, and the ratio pair by pair:

* ``cpu``: an arithmetic loop with no system call, about 1 s bare. Goal: at most 2%
  slower under ``run``.
* ``threads``: create and join 10,000 threads one at a time (each new thread is a
  PTRACE_EVENT_CLONE stop and a new tracee's first stop for the watcher).
* ``signals``: 100,000 SIGUSR1 sent to itself, counted by a handler (each one a
  signal-delivery-stop the watcher must answer).
* ``hang``: the CPU the watcher uses polling ``--on-hang`` on a 1,000-thread process
  (threads waking every 100 ms, so never hung): CPU seconds of the ``run`` process per
  wall second (utime + stime from /proc/PID/stat over a window after start-up), against
  the same watcher with ``--on-crash`` only.

The comparison for the threads and signals cases is gdb, which stops on the same
events: ``gdb -batch -ex 'handle all nostop noprint pass' -ex run --args CHILD`` (with
``set print thread-events off``), timed the same way in the same rounds; left out
without gdb. The fork/exec case (``--follow-children``) is benchmarks/bench_follow.py.
Asserts nothing but that every child did its work.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Comparison, spread  # noqa: E402

CASES = ("cpu", "threads", "signals", "hang")
# full sizes (the issue's) and quick ones
SIZES = {"cpu": (600, 60), "threads": (10_000, 300), "signals": (100_000, 2_000),
         "hang": (1_000, 200)}
GDB = ["-q", "-nx", "-batch", "-ex", "set print thread-events off",
       "-ex", "handle all nostop noprint pass", "-ex", "run", "--args"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package runs from .pyc files
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def build(work: Path) -> Path:
    exe = work / "watch_target"
    subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe), str(HERE / "watch_target.c")],
                   check=True)
    return exe


def watcher(work: Path, *triggers: str) -> list[str]:
    return [sys.executable, "-m", "minidumpkit", "run", *triggers, "--dir", str(work), "--"]


def once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(the child's own seconds for its work, the whole command's wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{(proc.stderr.strip().splitlines() or [''])[-1]}")
    for line in reversed(proc.stdout.splitlines()):
        try:
            return float(line), wall
        except ValueError:
            continue
    raise RuntimeError(f"{' '.join(argv)} printed no time")


def work_case(exe: Path, case: str, size: int, runs: int, work: Path,
              env: dict[str, str]) -> list[Comparison]:
    child = [str(exe), case, str(size)]
    commands = {"bare": child, "run": watcher(work, "--on-crash") + child}
    gdb = shutil.which("gdb")
    if gdb is not None and case in ("threads", "signals"):
        commands["gdb"] = [gdb, *GDB, *child]
    for argv in commands.values():  # warm-up
        once(argv, env)
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            got[name].append(once(argv, env))
    own = {name: [r[0] for r in rows] for name, rows in got.items()}
    wall = {name: [r[1] for r in rows] for name, rows in got.items()}
    what = {"cpu": f"CPU-bound child ({size} M multiply-adds, no system call)",
            "threads": f"child creating and joining {size:,} threads",
            "signals": f"child taking {size:,} SIGUSR1 (handled)"}[case]
    paired = [a / b for a, b in zip(own["run"], own["bare"], strict=True)]
    goal = "goal ≤ 1.02×; " if case == "cpu" else ""
    out = [Comparison("bench_watch", f"{what}: its own time, under `run --on-crash` against "
                      "bare", "run --on-crash", own["run"], "s", "bare", own["bare"],
                      note=f"{goal}paired ratio {spread(paired)}; whole command "
                           f"{spread(wall['run'])} s against {spread(wall['bare'])} s")]
    if "gdb" in own:
        paired = [a / b for a, b in zip(own["run"], own["gdb"], strict=True)]
        out.append(Comparison("bench_watch", f"{what}: its own time, under `run --on-crash` "
                              "against under gdb (`handle all nostop noprint pass`)",
                              "run --on-crash", own["run"], "s", "gdb -batch -ex run",
                              own["gdb"], note=f"paired ratio {spread(paired)}; per event: "
                              f"ours {per_event(own['run'], own['bare'], size)}, gdb "
                              f"{per_event(own['gdb'], own['bare'], size)}"))
    return out


def per_event(traced: list[float], bare: list[float], events: int) -> str:
    """The median extra time per event (thread or signal), µs."""
    extra = statistics.median(traced) - statistics.median(bare)
    return f"{extra / events * 1e6:.0f} µs"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def hang_case(exe: Path, threads: int, runs: int, window: float, settle: float, work: Path,
              env: dict[str, str]) -> list[Comparison]:
    """``settle``: seconds after the child's READY left out (the watcher's start-up)."""
    child = [str(exe), "idle", str(threads), f"{settle + window + 0.5:.2f}"]
    commands = {"hang": watcher(work, "--on-hang", "5") + child,
                "crash": watcher(work, "--on-crash") + child}

    def one(argv: list[str]) -> float:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=env)
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "READY":
                raise RuntimeError(f"{' '.join(argv)}: no READY")
            time.sleep(settle)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(window)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            _, err = proc.communicate(timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()}")
            return (c1 - c0) / (t1 - t0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    got: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            got[name].append(one(argv) * 1e3)
    if list(work.glob("*.dmp")):
        raise RuntimeError("the --on-hang watcher wrote a dump of a process that was not hung")
    return [Comparison("bench_watch", f"watcher CPU, `run --on-hang 5` polling a "
                       f"{threads:,}-thread process (threads waking every 100 ms; "
                       f"{window:g} s windows)", "run --on-hang", got["hang"],
                       "ms CPU/s", "run --on-crash only", got["crash"],
                       note="CPU of the watcher process per wall second (utime + stime)")]


def measure(runs: int, quick: bool, cases: tuple[str, ...] = CASES,
            sizes: dict[str, int] | None = None, window: float | None = None,
            settle: float = 1.0) -> list[Comparison]:
    """``sizes`` and ``window`` (seconds of each --on-hang sample) override the full or
    quick ones (the test's smoke run uses tiny ones)."""
    env = child_env()
    out: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="mdk-bench-watch-") as tmp:
        work = Path(tmp)
        exe = build(work)
        for case in cases:
            size = (sizes or {}).get(case, SIZES[case][1 if quick else 0])
            if case == "hang":
                seconds = window if window is not None else (1.0 if quick else 4.0)
                out += hang_case(exe, size, runs, seconds, settle, work, env)
            else:
                out += work_case(exe, case, size, runs, work, env)
            print(f"[bench_watch] {case} done", file=sys.stderr, flush=True)
    return out


def run(quick: bool = False, runs: int | None = None) -> list[Comparison]:
    """run_all.py's entry: ``quick``: 3 pairs of each at small sizes, else 10 pairs at the
    issue's sizes (about 10 minutes here, most of it the 100,000 traced signals)."""
    return measure(runs or (3 if quick else 10), quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", default=",".join(CASES), help="cases: " + ",".join(CASES))
    args = parser.parse_args()
    cases = tuple(args.only.split(","))
    if not set(cases) <= set(CASES):
        parser.error(f"unknown case(s): {', '.join(sorted(set(cases) - set(CASES)))}")
    for c in measure(args.runs, args.quick, cases):
        base = f"; {c.baseline_label}: {spread(c.baseline)} {c.unit}" if c.baseline else ""
        ratio = f"; ratio of medians {c.ratio:.2f}x" if c.ratio is not None else ""
        print(f"{c.what}\n    {c.ours_label}: {spread(c.ours)} {c.unit}{base}{ratio}; {c.note}")


if __name__ == "__main__":
    main()
