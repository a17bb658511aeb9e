"""Python stacks benchmark (issue 15): a dump plus its Python stacks, against ``py-spy dump``,
on one frozen CPython process; and what the Python-aware capture costs a dump.

    python benchmarks/bench_python.py [--runs 11] [--python /root/.pyenv/versions/3.12.1/bin/python3]

The target is a CPython 3.12 (else 3.13) child with 3 threads parked at known points
(the main thread in ``time.sleep``, one thread in ``time.sleep`` two calls deep, one in
``threading.Event.wait``), frozen with SIGSTOP before anything is timed. On that same
frozen process, in the same run, ours and py-spy's run in turn (A B A B ..., one warm-up
each; the ratio is also taken pair by pair):

* (a) warm, in process: ``minidumpkit.dump(pid, path, DumpType.PYTHON)`` then
  ``python_stacks(open_minidump(path))`` (this process has imported minidumpkit and
  dumped once before), against ``py-spy dump --nonblocking --pid PID``. Goal: at most
  1.0×. py-spy's default (blocking) mode cannot read a SIGSTOP'd process ("Failed to
  suspend process": it expects its own stop); ``--nonblocking`` skips its suspension,
  which a frozen process does not need.
* (b) cold, two fresh processes: ``python -m minidumpkit dump --python -o F PID`` then
  ``python -m minidumpkit info --python-only F``, against the same py-spy command.
  Reported (a Python program's start-up against a Rust binary's).

Then, with the process running again (its threads still parked):

* the size of a DumpType.PYTHON dump of it (goal: at most 64 KB);
* a MINI dump with the Python-aware capture against the same writer with
  ``python=False``, alternating: the bytes it adds (goal: at most 16 KB) and the
  pause it adds (goal: at most 10 ms): ``Dumper.last_times.pause_ns``, first
  PTRACE_SEIZE to last PTRACE_DETACH, and the walk's own time from the dump's
  MinidumpkitPythonStream (``walk_ns``).

Needs py-spy on PATH and a CPython 3.12 or 3.13 (pyenv's). Asserts nothing but that
the stacks were read (status "ok" and 3 threads), so a broken walk is not timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

import minidumpkit  # noqa: E402
from _common import Comparison, spread  # noqa: E402
from minidumpkit import DumpType  # noqa: E402
from minidumpkit.analysis import python_stacks  # noqa: E402

PYENV = Path("/root/.pyenv/versions")
THREADS = 3

CHILD = '''\
import os, sys, threading, time

def sleeper_leaf():
    time.sleep(3600)

def sleeper():
    sleeper_leaf()

def waiter_leaf(event):
    event.wait()

def waiter(event):
    waiter_leaf(event)

event = threading.Event()
for target, args in ((sleeper, ()), (waiter, (event,))):
    threading.Thread(target=target, args=args, daemon=True).start()

def parked(tid):
    with open(f"/proc/self/task/{tid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "S"

deadline = time.monotonic() + 30
while not (len(os.listdir("/proc/self/task")) == 3
           and all(parked(t) for t in os.listdir("/proc/self/task")
                   if int(t) != threading.get_native_id())):
    if time.monotonic() > deadline:
        raise SystemExit("threads did not park")
    time.sleep(0.01)
print("READY", flush=True); time.sleep(3600)
'''


def interpreter(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit)
    for version in ("3.12.1", "3.13.0"):
        exe = PYENV / version / "bin" / "python3"
        if exe.exists():
            return exe
    for name in ("python3.12", "python3.13"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise RuntimeError("no CPython 3.12 or 3.13 found (pyenv's or on PATH)")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package runs from .pyc files
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def wait_stopped(pid: int) -> None:
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0]
              != "T" for t in os.listdir(f"/proc/{pid}/task")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not stop")
        time.sleep(0.002)


def stacks_of(path: Path) -> int:
    """Read the Python stacks of a dump; the number of frames (checked: all threads)."""
    with minidumpkit.open_minidump(path) as dump:
        runtime = python_stacks(dump)
    if runtime.status != "ok" or len(runtime.threads) != THREADS:
        raise RuntimeError(f"Python stacks not read: {runtime.status}, "
                           f"{len(runtime.threads)} threads")
    return sum(len(t.frames) for t in runtime.threads)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def frozen_figures(pid: int, work: Path, runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    """(a) and (b) on the frozen process: ms, pair by pair."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy is not installed")
    py_spy = [spy, "dump", "--nonblocking", "--pid", str(pid)]
    path = work / "warm.dmp"
    cold = work / "cold.dmp"
    dump_cli = [sys.executable, "-m", "minidumpkit", "dump", "--python", "--overwrite", "-o",
                str(cold), str(pid)]
    info_cli = [sys.executable, "-m", "minidumpkit", "info", "--python-only", str(cold)]

    def warm() -> float:
        start = time.perf_counter()
        minidumpkit.dump(pid, path, DumpType.PYTHON)
        stacks_of(path)
        return time.perf_counter() - start

    def cli() -> float:
        return timed(dump_cli, env) + timed(info_cli, env)

    r: dict[str, list[float]] = {k: [] for k in ("warm", "spy_a", "cold", "spy_b")}
    warm(), timed(py_spy, env), cli()  # warm-ups (and .pyc files for the CLI)
    stacks_of(cold)
    for _ in range(runs):
        r["warm"].append(warm() * 1e3)
        r["spy_a"].append(timed(py_spy, env) * 1e3)
        r["cold"].append(cli() * 1e3)
        r["spy_b"].append(timed(py_spy, env) * 1e3)
    return r


def capture_cost(pid: int, work: Path, runs: int) -> dict[str, list[float]]:
    """MINI with and without the Python-aware capture, alternating; and PYTHON's size."""
    r: dict[str, list[float]] = {k: [] for k in (
        "pause_with", "pause_without", "size_with", "size_without", "walk", "python_size")}
    for i in range(runs + 1):
        for python in (True, False):
            path = work / f"mini-{python}.dmp"
            dumper = minidumpkit.Dumper(pid)
            dumper.write(path, DumpType.MINI, python=python)
            if not i:
                continue  # the first round warms up
            key = "with" if python else "without"
            r[f"pause_{key}"].append(dumper.last_times.pause_ns / 1e6)  # type: ignore[attr-defined]
            r[f"size_{key}"].append(path.stat().st_size / 1024)
            if python:
                with minidumpkit.open_minidump(path) as dump:
                    stream = dump.minidumpkit_python
                    assert stream is not None, "no MinidumpkitPythonStream"
                    r["walk"].append(stream.walk_ns / 1e6)
            time.sleep(0.02)
        path = work / "python.dmp"
        if i:
            minidumpkit.dump(pid, path, DumpType.PYTHON)
            stacks_of(path)
            r["python_size"].append(path.stat().st_size / 1024)
    return r


def measure(runs: int, python: Path) -> list[Comparison]:
    env = child_env()
    version = subprocess.run([str(python), "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="mdk-bench-python-") as tmp:
        work = Path(tmp)
        script = work / "child.py"
        script.write_text(CHILD)
        proc = subprocess.Popen([str(python), str(script)], stdout=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "READY":
                raise RuntimeError("the Python child did not start")
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                wait_stopped(proc.pid)
                frozen = frozen_figures(proc.pid, work, runs, env)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.1)
            cost = capture_cost(proc.pid, work, runs)
        finally:
            proc.kill()
            proc.wait()
    target = f"CPython {version}, {THREADS} threads"
    ratio_a = [a / b for a, b in zip(frozen["warm"], frozen["spy_a"], strict=True)]
    ratio_b = [a / b for a, b in zip(frozen["cold"], frozen["spy_b"], strict=True)]
    added_kb = [a - b for a, b in zip(cost["size_with"], cost["size_without"], strict=True)]
    added_ms = [a - b for a, b in zip(cost["pause_with"], cost["pause_without"], strict=True)]
    spy = "py-spy dump --nonblocking"
    return [
        Comparison("bench_python", f"(a) warm, in process: dump(PYTHON) + python_stacks, frozen "
                   f"{target}", "minidumpkit", frozen["warm"], "ms", spy, frozen["spy_a"],
                   note=f"goal ≤ 1.0×; paired ratio {spread(ratio_a)}"),
        Comparison("bench_python", f"(b) cold CLI: `minidumpkit dump --python` + `info "
                   f"--python-only`, same frozen process", "minidumpkit (2 processes)",
                   frozen["cold"], "ms", spy, frozen["spy_b"],
                   note=f"reported; paired ratio {spread(ratio_b)}"),
        Comparison("bench_python", f"DumpType.PYTHON dump size, {target}", "PYTHON dump",
                   cost["python_size"], "KiB", note="goal ≤ 64 KB; same stacks read back"),
        Comparison("bench_python", f"MINI dump size with the Python capture, {target}",
                   "with", cost["size_with"], "KiB", "python=False", cost["size_without"],
                   note=f"added {spread(added_kb)} KiB; goal ≤ 16 KB"),
        Comparison("bench_python", f"MINI pause with the Python capture, {target}",
                   "with", cost["pause_with"], "ms", "python=False", cost["pause_without"],
                   note=f"added (pair by pair) {spread(added_ms)} ms, the walk itself "
                        f"{spread(cost['walk'])} ms; goal ≤ 10 ms"),
    ]


def run(quick: bool = False, runs: int | None = None) -> list[Comparison]:
    """run_all.py's entry: ``quick``: 3 pairs of each, else 11."""
    return measure(runs or (3 if quick else 11), interpreter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--python", help="the target's interpreter (CPython 3.11-3.13)")
    args = parser.parse_args()
    for c in measure(args.runs, interpreter(args.python)):
        base = f"; {c.baseline_label}: {spread(c.baseline)} {c.unit}" if c.baseline else ""
        ratio = f"; ratio of medians {c.ratio:.2f}x" if c.ratio is not None else ""
        print(f"{c.what}\n    {c.ours_label}: {spread(c.ours)} {c.unit}{base}{ratio}; {c.note}")


if __name__ == "__main__":
    main()
