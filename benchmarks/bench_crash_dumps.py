"""Benchmark: what ``enable_crash_dumps()`` costs the Python process it protects.

    python benchmarks/bench_crash_dumps.py [--pairs 10] [--quick]

Each figure is measured inside a fresh ``python -c`` process, with crash dumps enabled
(ours) and without (the baseline), the two run in turn (A B A B ..., one warm-up pair
first) so a drift of the machine's speed hits both alike:

* a CPU-bound loop (pure Python): nothing of it is intercepted;
* starting and joining a thread: each new thread stops once for the tracer;
* a signal sent to itself and handled: each is seen by the tracer first;
* ``enable_crash_dumps()`` itself and ``disable()`` (no baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from _common import Comparison, spread  # noqa: E402

CHILD = """
import json, os, signal, sys, threading, time
enabled = sys.argv[1] == "1"
loops, threads, signals = (int(a) for a in sys.argv[3:6])
out = {}
if enabled:
    import minidumpkit
    t0 = time.perf_counter()
    crash_dumps = minidumpkit.enable_crash_dumps(sys.argv[2])
    out["enable_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
x = 0
for i in range(loops):
    x += i
out["cpu_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(threads):
    t = threading.Thread(target=int)
    t.start()
    t.join()
out["thread_us"] = (time.perf_counter() - t0) / threads * 1e6
signal.signal(signal.SIGUSR1, lambda *a: None)
t0 = time.perf_counter()
for _ in range(signals):
    os.kill(os.getpid(), signal.SIGUSR1)
out["signal_us"] = (time.perf_counter() - t0) / signals * 1e6
if enabled:
    t0 = time.perf_counter()
    crash_dumps.disable()
    out["disable_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def _child(enabled: bool, directory: str, sizes: tuple[int, int, int]) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", CHILD, "1" if enabled else "0", directory,
                           *map(str, sizes)], capture_output=True, text=True, env=env,
                          check=True, timeout=600)
    result: dict[str, float] = json.loads(proc.stdout.splitlines()[-1])
    return result


def run(quick: bool = False, pairs: int = 10) -> list[Comparison]:
    if quick:
        pairs = 2
    sizes = (300_000, 200, 2_000) if quick else (3_000_000, 2_000, 20_000)
    ours: list[dict[str, float]] = []
    base: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as directory:
        _child(True, directory, sizes)  # warm-up (compiled .pyc files, caches)
        _child(False, directory, sizes)
        for _ in range(pairs):
            ours.append(_child(True, directory, sizes))
            base.append(_child(False, directory, sizes))
        assert not os.listdir(directory), "a normal exit must leave no file"
    bench = "bench_crash_dumps"

    def pair(key: str, what: str, unit: str) -> Comparison:
        return Comparison(bench, what, "crash dumps on", [r[key] for r in ours], unit,
                          "off", [r[key] for r in base])

    return [
        pair("cpu_s", f"CPU-bound Python loop ({sizes[0]:,} additions)", "s"),
        pair("thread_us", "start + join one thread", "us"),
        pair("signal_us", "one handled signal (kill to itself)", "us"),
        Comparison(bench, "enable_crash_dumps()", "minidumpkit",
                   [r["enable_s"] * 1000 for r in ours], "ms"),
        Comparison(bench, "disable()", "minidumpkit", [r["disable_s"] * 1000 for r in ours],
                   "ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for c in run(args.quick, args.pairs):
        base = f" vs {spread(c.baseline)}" if c.baseline else ""
        print(f"{c.what}: {spread(c.ours)}{base} {c.unit}"
              + (f" (x{c.ratio:.2f})" if c.ratio is not None else ""))


if __name__ == "__main__":
    main()
