"""Stack-walk benchmark: `minidumpkit info` with every thread symbolized, against lldb and
minidump-stackwalk, on MINI dumps of the 50-thread C target and of an idle Debian node.

    python benchmarks/bench_stacks.py [--runs 9] [--threads 50]

Every figure is a whole process started afresh, its wall time measured from outside;
ours and each baseline run in turn (A B A B ..., one warm-up each) so that the machine's
drift (it is shared) hits both alike, and the ratio is taken pair by pair:

* ``python -m minidumpkit info DUMP`` (stacks walked, names, source lines), from compiled
  ``.pyc`` files as an installed package runs;
* ``lldb -b -c DUMP -o 'bt all'`` (target binaries and debug files on disk, as for us);
* ``minidump-stackwalk DUMP STORE`` with a Breakpad store that ``dump-syms`` made from
  the same files we read: each module's file and its separate debug file where we use
  one (built once, before timing; see :func:`store_for`).

minidumpkit keeps no on-disk cache (indexes live per open dump, in memory), so every run
of ours is cold; there is nothing to clear. The operating system's page cache is warm for
everyone after the warm-up. Warm figures are reported apart, in process: the walk of every
thread a second time on the same open dump (files and indexes cached per dump), against
the first walk in that process.

Needs $MDK_TOOLS_DIR/bin/{lldb,minidump-stackwalk,dump-syms}, cc and node (Debian's
`nodejs`; the node rows are left out without it). Asserts nothing. Goals (issue 13): at
most 0.5x lldb's wall time on both dumps, at most 1.0x minidump-stackwalk's on node.
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
sys.path.insert(0, str(REPO / "src"))

import minidumpkit  # noqa: E402
from _common import Comparison, spread  # noqa: E402
from minidumpkit import DumpType  # noqa: E402

TOOLS = Path(os.environ.get("MDK_TOOLS_DIR", REPO / ".tools")) / "bin"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # an installed package runs from .pyc files: let the warm-up write them
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def wall_once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds of one run of ``argv`` (its output read and thrown away)."""
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - start


def paired(ours: list[str], theirs: list[str], runs: int,
           env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall seconds of ``ours`` and ``theirs`` run in turn, after one warm-up each."""
    wall_once(ours, env)
    wall_once(theirs, env)
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        a.append(wall_once(ours, env))
        b.append(wall_once(theirs, env))
    return a, b


def dump_of(argv: list[str], path: Path, settle: float) -> Path:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout is not None and argv[0].endswith("bench_target"):
            proc.stdout.readline()  # READY
        time.sleep(settle)
        return minidumpkit.dump(proc.pid, path, DumpType.MINI)
    finally:
        proc.kill()
        proc.wait()


def store_for(dump: Path, store: Path) -> None:
    """A Breakpad store of the files ``minidumpkit info`` reads for each module: the
    module's file and, where one is used, its separate debug file (libc's from
    /usr/lib/debug), given together to dump_syms, which merges them into one .sym (CFI
    from the binary, FUNC and line records from the debug file): without the debug file
    the store would have no line records and no static functions for those modules, and
    minidump-stackwalk would be timed doing less than we do."""
    from minidumpkit.analysis import symbolizer_for

    with minidumpkit.open_minidump(dump) as d:
        symbolizer = symbolizer_for(d)
        groups = {tuple(sorted({f.path for f in symbolizer.for_module(m).files}))
                  for m in d.modules}
    for files in sorted(g for g in groups if g):
        subprocess.run([str(TOOLS / "dump-syms"), "-s", str(store), *files],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def in_process(dump: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(first walk of every thread, second walk on the same open dump, frames), seconds."""
    code = (
        "import sys, time, minidumpkit\n"
        "from minidumpkit.analysis import walk_stacks\n"
        "d = minidumpkit.open_minidump(sys.argv[1])\n"
        "t0 = time.perf_counter(); s = walk_stacks(d); t1 = time.perf_counter()\n"
        "walk_stacks(d); t2 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1, sum(len(x.frames) for x in s))\n")
    out = subprocess.run([sys.executable, "-c", code, str(dump)], capture_output=True,
                         text=True, check=True, env=env).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b)]


def measure(runs: int, threads: int) -> list[Comparison]:
    env = child_env()
    out: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="mdk-bench-stacks-") as tmp:
        work = Path(tmp)
        target = work / "bench_target"
        subprocess.run(["cc", "-O2", "-g", "-pthread", "-Wl,--build-id", "-o", str(target),
                        str(HERE / "bench_target.c")], check=True)
        dumps = {f"C target, {threads} threads":
                 dump_of([str(target), str(threads)], work / "c.dmp", 0.5)}
        node = shutil.which("node") or shutil.which("nodejs")
        if node is not None:
            dumps["node, idle"] = dump_of([node, "-e", "setInterval(() => {}, 1000)"],
                                          work / "node.dmp", 1.5)
        for label, path in dumps.items():
            store = work / f"store-{path.stem}"
            store_for(path, store)
            ours = [sys.executable, "-m", "minidumpkit", "info", str(path)]
            lldb = [str(TOOLS / "lldb"), "-b", "-c", str(path), "-o", "bt all"]
            msw = [str(TOOLS / "minidump-stackwalk"), str(path), str(store)]
            cold, warm, frames = in_process(path, env)
            for name, argv in (("lldb bt all", lldb), ("minidump-stackwalk + store", msw)):
                load = os.getloadavg()[0]
                a, b = paired(ours, argv, runs, env)
                r = ratios(a, b)
                out.append(Comparison(
                    "bench_stacks", f"{label} ({frames} frames): info, every thread "
                    f"symbolized, against {name}", "minidumpkit info", a, "s", name, b,
                    note=f"paired ratio {spread(r)}; load {load:.1f} before, "
                         f"{os.getloadavg()[0]:.1f} after"))
            out.append(Comparison("bench_stacks", f"{label}: walk of every thread in process, "
                                  "again on the same open dump (warm) against the first (cold)",
                                  "warm", [warm * 1e3], "ms", "cold", [cold * 1e3]))
    return out


def run(quick: bool = False, runs: int | None = None) -> list[Comparison]:
    """The structured results (run_all.py); ``quick``: 5 pairs of each, else 9."""
    return measure(runs or (5 if quick else 9), 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=50)
    args = parser.parse_args()
    for c in measure(args.runs, args.threads):
        ours = spread(c.ours)
        base = spread(c.baseline) if c.baseline else "-"
        ratio = f"{c.ratio:.2f}x" if c.ratio is not None else "-"
        print(f"{c.what}\n    {c.ours_label}: {ours} {c.unit}; {c.baseline_label}: {base} "
              f"{c.unit}; ratio of medians {ratio}; {c.note}")


if __name__ == "__main__":
    main()
