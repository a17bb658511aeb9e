"""Benchmark: what a fresh process pays to start using minidumpkit.

    python benchmarks/bench_import.py [--runs 20]

Each command is a new ``python -c`` process, run in turn with the baseline (A B A B
..., after one warm-up each) so a drift of the machine's speed hits both alike:

* baseline: ``import minidumpkit`` (loads errors and flags only, by design);
* ``import minidumpkit, minidumpkit.format``: the MDMP format module;
* ``open_minidump(F).threads``: a first read of a small dump F (1 MiB of memory,
  built here with the records of minidumpkit.format);
* ``python -m minidumpkit info F``: the command line.

Figures are whole-process wall and CPU (user + system, from ``wait4``) milliseconds,
from compiled ``.pyc`` files as an installed package runs (the warm-up writes them);
the interpreter's own start-up is in every figure, so ``extra`` = ours − baseline is
what the import adds. Also reported: ``-X importtime``'s cumulative figure for
``minidumpkit.format``. Goal (issue 11): the format module at most 20 ms over
``import minidumpkit``.
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
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from _common import Comparison  # noqa: E402

BASELINE = "import minidumpkit"


def commands(dump: Path) -> dict[str, list[str]]:
    py = [sys.executable]
    return {
        BASELINE: [*py, "-c", "import minidumpkit"],
        "import minidumpkit.format": [*py, "-c", "import minidumpkit, minidumpkit.format"],
        "open_minidump(F).threads": [*py, "-c", "import sys, minidumpkit as m; "
                                     "m.open_minidump(sys.argv[1]).threads", str(dump)],
        "minidumpkit info F": [*py, "-m", "minidumpkit", "info", str(dump)],
    }


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # An installed package runs from compiled .pyc files: let the warm-up write them
    # (an environment with PYTHONDONTWRITEBYTECODE would time the compiler instead).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, user+sys CPU ms) of one run of ``argv``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {err.decode(errors='replace')}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def importtime_us(module: str, env: dict[str, str]) -> int:
    """``-X importtime``'s cumulative microseconds for ``module`` after minidumpkit."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           f"import minidumpkit, {module}"], env=env, capture_output=True,
                          text=True, check=True)
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"{module} is not in -X importtime's output")


def small_dump(directory: Path) -> Path:
    import bench_reader

    path = directory / "small.dmp"
    bench_reader.build(path, 1 << 20, 64 << 10)
    return path


def measure(runs: int = 20) -> dict[str, dict[str, list[float]]]:
    """{command: {"wall": [...], "cpu": [...]}} plus the importtime samples."""
    env = child_env()
    with tempfile.TemporaryDirectory(prefix="mdk-bench-import-") as tmp:
        cmds = commands(small_dump(Path(tmp)))
        samples: dict[str, dict[str, list[float]]] = {
            name: {"wall": [], "cpu": []} for name in cmds}
        for name, argv in cmds.items():  # warm-up: page cache, .pyc files
            timed(argv, env)
        for _ in range(runs):
            for name, argv in cmds.items():
                wall, cpu = timed(argv, env)
                samples[name]["wall"].append(wall)
                samples[name]["cpu"].append(cpu)
        samples["importtime minidumpkit.format"] = {
            "us": [float(importtime_us("minidumpkit.format", env)) for _ in range(runs)]}
    return samples


def comparisons(samples: dict[str, dict[str, list[float]]]) -> list[Comparison]:
    base = samples[BASELINE]
    out = []
    for name, data in samples.items():
        if name == BASELINE or "wall" not in data:
            continue
        for key, what in (("cpu", "CPU (user+sys)"), ("wall", "wall")):
            extra = statistics.median(data[key]) - statistics.median(base[key])
            out.append(Comparison("bench_import", f"fresh process: {name}, {what}",
                                  name, data[key], "ms", f"python -c '{BASELINE}'", base[key],
                                  note=f"extra {extra:+.1f} ms"))
    out.append(Comparison("bench_import", "-X importtime, minidumpkit.format (cumulative)",
                          "import minidumpkit.format",
                          [us / 1000 for us in samples["importtime minidumpkit.format"]["us"]],
                          "ms", note="goal: at most 20 ms over import minidumpkit"))
    return out


def run(quick: bool = False, runs: int | None = None) -> list[Comparison]:
    """The structured results (run_all.py); ``quick``: 7 runs of each command."""
    return comparisons(measure(runs or (7 if quick else 20)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    samples = measure(args.runs)
    base = samples[BASELINE]
    print(f"fresh python processes, {args.runs} runs each, medians (min-max), ms")
    print(f"{'command':<28} {'wall':>22} {'cpu':>22} {'extra cpu':>10} {'extra wall':>10}")
    for name, data in samples.items():
        if "wall" not in data:
            continue
        extra_cpu = statistics.median(data["cpu"]) - statistics.median(base["cpu"])
        extra_wall = statistics.median(data["wall"]) - statistics.median(base["wall"])
        print(f"{name:<28} {_spread(data['wall']):>22} {_spread(data['cpu']):>22} "
              f"{extra_cpu:>+10.1f} {extra_wall:>+10.1f}")
    us = samples["importtime minidumpkit.format"]["us"]
    print(f"-X importtime minidumpkit.format: median {statistics.median(us) / 1000:.1f} ms "
          f"(goal: at most 20 ms over import minidumpkit)")
    return 0


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    sys.exit(main())
