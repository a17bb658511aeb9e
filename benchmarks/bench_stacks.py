"""Stack-walk benchmark: `minidumpkit info` with every thread symbolized, against lldb and
minidump-stackwalk, on MINI dumps of the 50-thread C target and of an idle Debian node.

    python benchmarks/bench_stacks.py [--runs 5] [--threads 50]

Each figure is the median wall time of whole processes started afresh (nothing of ours
is cached on disk, so every run is cold for us; the operating system's page cache is
warm for everyone after the first run):

* ``minidumpkit info DUMP`` (stacks walked, names, lines) and ``--no-stacks`` (the rest);
* ``lldb -b -c DUMP -o 'bt all'`` (target binaries and debug files on disk, as for us);
* ``minidump-stackwalk DUMP STORE`` with a Breakpad store that ``dump-syms`` made from
  the same module files we read (built once, before timing);
* in-process: the walk of every thread in a fresh process's first use (cold) and again
  on the same open dump (warm: files and indexes cached per dump).

Needs $MDK_TOOLS_DIR/bin/{lldb,minidump-stackwalk,dump-syms}, cc and node (Debian's
`nodejs`; the node row is left out without it). Prints a table; asserts nothing.
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

import minidumpkit
from minidumpkit import DumpType

HERE = Path(__file__).resolve().parent
TOOLS = Path(os.environ.get("MDK_TOOLS_DIR", HERE.parent / ".tools")) / "bin"


def wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    with minidumpkit.open_minidump(dump) as d:
        files = sorted({m.name for m in d.modules if Path(m.name).is_file()})
    for name in files:
        subprocess.run([str(TOOLS / "dump-syms"), "-s", str(store), name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def in_process(dump: Path) -> tuple[float, float, int]:
    code = (
        "import sys, time, minidumpkit\n"
        "from minidumpkit.analysis import walk_stacks\n"
        "d = minidumpkit.open_minidump(sys.argv[1])\n"
        "t0 = time.perf_counter(); s = walk_stacks(d); t1 = time.perf_counter()\n"
        "walk_stacks(d); t2 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1, sum(len(x.frames) for x in s))\n")
    out = subprocess.run([sys.executable, "-c", code, str(dump)], capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        target = work / "bench_target"
        subprocess.run(["cc", "-O2", "-g", "-pthread", "-Wl,--build-id", "-o", str(target),
                        str(HERE / "bench_target.c")], check=True)
        dumps = {f"C target, {args.threads} threads":
                 dump_of([str(target), str(args.threads)], work / "c.dmp", 0.5)}
        node = shutil.which("node") or shutil.which("nodejs")
        if node is not None:
            dumps["node, idle"] = dump_of([node, "-e", "setInterval(() => {}, 1000)"],
                                          work / "node.dmp", 1.5)
        py = [sys.executable, "-m", "minidumpkit", "info"]
        print(f"{'dump':<24} {'frames':>6} {'info':>7} {'no-stacks':>9} {'lldb':>7} "
              f"{'msw+store':>9} {'walk cold':>9} {'warm':>7} {'info/lldb':>9} {'info/msw':>8}")
        for label, path in dumps.items():
            store = work / f"store-{path.stem}"
            store_for(path, store)
            ours = wall([*py, str(path)], args.runs)
            bare = wall([*py, "--no-stacks", str(path)], args.runs)
            lldb = wall([str(TOOLS / "lldb"), "-b", "-c", str(path), "-o", "bt all"], args.runs)
            msw = wall([str(TOOLS / "minidump-stackwalk"), str(path), str(store)], args.runs)
            cold, warm, frames = in_process(path)
            print(f"{label:<24} {frames:>6} {ours:>6.2f}s {bare:>8.2f}s {lldb:>6.2f}s "
                  f"{msw:>8.2f}s {cold * 1e3:>7.0f}ms {warm * 1e3:>5.0f}ms "
                  f"{ours / lldb:>8.2f}x {ours / msw:>7.2f}x")


if __name__ == "__main__":
    main()
