"""Benchmark: minidumpkit's Linux stop-and-dump against Breakpad's live dumper.

    python benchmarks/bench_linux_dump.py [--runs 9] [--threads 4,50] [--json FILE]

For a C target with 4 and with 50 threads (benchmarks/bench_target.c: a 1 ms
heartbeat thread, the rest idle in nanosleep/futex/read), each tool dumps the
running target ``--runs`` times after one warm-up:

* ours: ``minidumpkit.dump(pid, path, type)`` for DumpType.MINI and
  MiniDumpType.Normal, timed in this process with perf_counter (no interpreter
  start-up in the figure); the tracer-side pause (first PTRACE_SEIZE to last
  PTRACE_DETACH) comes from ``Dumper.last_times``;
* Breakpad: ``ExceptionHandler::WriteMinidumpForChild(pid, pid, dir, cb, NULL)``
  in benchmarks/breakpad_harness.cc (a persistent process, timed inside around
  the call), linked with libbreakpad_client.a built by build_breakpad.sh from the
  sources in the npm ``minidump`` package.

Target pause = the largest gap between two heartbeats while the dump ran, as the
target measures it (CLOCK_MONOTONIC). The same measurement without any dump gives
the noise floor, printed too. Reported figures are medians (min–max).
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
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

import minidumpkit  # noqa: E402
from _common import Comparison  # noqa: E402
from minidumpkit import DumpType, MiniDumpType  # noqa: E402


class Proc:
    """A line-oriented child process."""

    def __init__(self, argv: list[str]) -> None:
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)

    def ask(self, line: str) -> str:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def readline(self) -> str:
        assert self.p.stdout
        return self.p.stdout.readline().strip()

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def build_target(work: Path) -> Path:
    exe = work / "bench_target"
    subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe), str(HERE / "bench_target.c")],
                   check=True)
    return exe


def build_breakpad() -> tuple[Path | None, str]:
    proc = subprocess.run(["bash", str(HERE / "build_breakpad.sh")], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return None, proc.stderr.strip() or proc.stdout.strip()
    return Path(proc.stdout.strip().splitlines()[-1]), ""


def measure(target: Proc, runs: int, one: Callable[[int], tuple[float, float | None]]
            ) -> dict[str, list[float]]:
    """Warm up once, then ``runs`` times: reset the target's gap, dump, read the gap."""
    one(-1)
    wall, tracer, gap = [], [], []
    for i in range(runs):
        assert target.ask("resetgap") == "OK"
        w, t = one(i)
        gap.append(int(target.ask("gap").split()[1]) / 1000)
        wall.append(w)
        if t is not None:
            tracer.append(t)
    return {"wall_ms": wall, "tracer_pause_ms": tracer, "target_pause_ms": gap}


def noise_floor(target: Proc, runs: int, window: float) -> list[float]:
    out = []
    for _ in range(runs):
        assert target.ask("resetgap") == "OK"
        time.sleep(window)
        out.append(int(target.ask("gap").split()[1]) / 1000)
    return out


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):8.2f} ({min(values):.2f}–{max(values):.2f})"


def measure_all(runs: int, thread_counts: list[int]) -> dict[str, object]:
    """Every measurement of this benchmark: {"rows": [(group, tool, samples)], ...}."""
    results: dict[str, object] = {"machine": os.uname().release, "cpus": os.cpu_count(),
                                  "runs": runs}
    work = Path(tempfile.mkdtemp(prefix="mdk-bench-"))
    harness: Proc | None = None
    rows: list[tuple[str, str, dict[str, list[float]]]] = []
    try:
        exe = build_target(work)
        bp_path, bp_error = build_breakpad()
        results["breakpad"] = str(bp_path) if bp_path else f"unavailable: {bp_error}"
        if bp_path is None:
            print(f"Breakpad harness unavailable: {bp_error}", file=sys.stderr)
        else:
            harness = Proc([str(bp_path)])
        for n in thread_counts:
            target = Proc([str(exe), str(n)])
            try:
                ready = target.readline()
                assert ready.startswith("READY"), ready
                pid = target.p.pid
                out = work / f"t{n}"
                out.mkdir()

                def ours(kind: int) -> Callable[[int], tuple[float, float | None]]:
                    def one(i: int) -> tuple[float, float | None]:
                        dumper = minidumpkit.Dumper(pid)
                        t0 = time.perf_counter()
                        dumper.write(out / f"ours-{kind}-{i}.dmp", kind)
                        wall = (time.perf_counter() - t0) * 1000
                        times = dumper.last_times
                        pause = getattr(times, "pause_ns", 0) / 1e6
                        return wall, pause
                    return one

                def breakpad(i: int) -> tuple[float, float | None]:
                    assert harness is not None
                    d = out / f"bp-{i}"
                    d.mkdir(exist_ok=True)
                    reply = harness.ask(f"dump {pid} {d}").split()
                    assert reply[0] == "DONE" and reply[1] == "1", reply
                    return int(reply[2]) / 1e6, None

                rows.append((f"{n} threads", "noise floor (no dump, 50 ms)",
                             {"target_pause_ms": noise_floor(target, runs, 0.05)}))
                rows.append((f"{n} threads", "minidumpkit MINI",
                             measure(target, runs, ours(int(DumpType.MINI)))))
                rows.append((f"{n} threads", "minidumpkit Normal",
                             measure(target, runs, ours(int(MiniDumpType.Normal)))))
                if harness is not None:
                    rows.append((f"{n} threads", BREAKPAD,
                                 measure(target, runs, breakpad)))
                sizes = {name: os.path.getsize(next(out.glob(pattern)))
                         for name, pattern in (("ours MINI", f"ours-{int(DumpType.MINI)}-0.dmp"),
                                               ("ours Normal", "ours-0-0.dmp"),
                                               ("breakpad", "bp-0/*.dmp"))
                         if list(out.glob(pattern))}
                results[f"sizes_{n}"] = sizes
            finally:
                target.close()
    finally:
        if harness is not None:
            harness.close()
        shutil.rmtree(work, ignore_errors=True)
    results["rows"] = rows
    return results


BREAKPAD = "Breakpad WriteMinidumpForChild"


def comparisons(results: dict[str, object]) -> list[Comparison]:
    """Ours against Breakpad, per thread count, dump type and figure."""
    rows: list[tuple[str, str, dict[str, list[float]]]] = results["rows"]  # type: ignore[assignment]
    out = []
    for group in dict.fromkeys(g for g, _, _ in rows):
        by_tool = {tool: data for g, tool, data in rows if g == group}
        bp = by_tool.get(BREAKPAD)
        for tool in ("minidumpkit MINI", "minidumpkit Normal"):
            for key, what in (("wall_ms", "dump wall time"),
                              ("target_pause_ms", "target pause (heartbeat gap)")):
                out.append(Comparison(
                    "bench_linux_dump", f"{what}, live C target, {group}", tool,
                    by_tool[tool][key], "ms", BREAKPAD if bp else None,
                    bp[key] if bp else None,
                    note="" if bp else str(results.get("breakpad", ""))))
    return out


def run(quick: bool = False, runs: int | None = None,
        threads: list[int] | None = None) -> list[Comparison]:
    """The structured results (run_all.py): ``quick`` takes fewer runs."""
    results = measure_all(runs or (3 if quick else 9), threads or ([4] if quick else [4, 50]))
    return comparisons(results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", default="4,50")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    results = measure_all(args.runs, [int(x) for x in args.threads.split(",")])
    rows: list[tuple[str, str, dict[str, list[float]]]] = results["rows"]  # type: ignore[assignment]
    print(f"{'target':<11} {'tool':<32} {'wall ms':>24} {'target pause ms':>24} "
          f"{'tracer pause ms':>24}")
    for group, tool, data in rows:
        print(f"{group:<11} {tool:<32} {fmt(data.get('wall_ms', [])):>24} "
              f"{fmt(data.get('target_pause_ms', [])):>24} "
              f"{fmt(data.get('tracer_pause_ms', [])):>24}")
    ratios = {}
    for c in comparisons(results):
        if c.ratio is not None:
            group = c.what.rsplit(", ", 1)[1]
            key = "wall_ms" if c.what.startswith("dump wall") else "target_pause_ms"
            ratios[f"{group} {c.ours_label} {key}"] = round(c.ratio, 2)
            print(f"ratio ours/Breakpad  {group:<11} {c.ours_label:<20} {key:<16} {c.ratio:5.2f}x")
    for key, value in results.items():
        if key.startswith("sizes_"):
            print(f"dump sizes ({key[6:]} threads, bytes): {value}")
    results["rows"] = [{"target": g, "tool": t, **d} for g, t, d in rows]
    results["ratios"] = ratios
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
