"""``benchmarks/run_all.py``: one real (quick) entry run end to end into a page; and the
Python stacks and watch benchmarks run once each at a tiny size (about 10 s together).

Timings are never asserted here; this checks that the command runs a registered
benchmark, and writes the table with the date, the machine and the ratios between
its markers while keeping the page's own text. The full run is by hand
(docs/testing.md, "Benchmarks").
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN_ALL = REPO / "benchmarks" / "run_all.py"


def run_all(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, str(RUN_ALL), *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_run_all_quick_import_entry_writes_the_page(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nHand-written introduction.\n")
    samples = tmp_path / "samples.json"
    proc = run_all("--quick", "--only", "import", "--output", str(page), "--json", str(samples))
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert text.startswith("# Performance\n\nHand-written introduction.\n")
    generated = text.split("<!-- run_all.py: generated table begins -->")[1]
    assert generated.rstrip().endswith("<!-- run_all.py: generated table ends -->")
    assert "**a quick run**" in generated
    assert re.search(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC", generated)
    machine = re.search(r"Machine: (.*), (\d+) logical.*, ([\d.]+) GiB RAM, Linux (\S+), "
                        r"CPython (\S+)\.", generated)
    assert machine is not None, generated
    assert int(machine[2]) == os.cpu_count()
    assert machine[4] == os.uname().release
    assert machine[5] == sys.version.split()[0]
    rows = [line for line in generated.splitlines() if line.startswith("| bench_import |")]
    assert len(rows) == 7  # CPU and wall for three commands, and -X importtime
    data = json.loads(samples.read_text())
    ratios = [r["ratio"] for r in data["results"] if r["baseline"]]
    assert len(ratios) == 6 and all(r > 0 for r in ratios)
    # each ratio in the table is the ratio of the two medians it shows
    for r in data["results"]:
        if r["baseline"]:
            assert abs(r["ratio"] - r["ours_median"] / r["baseline_median"]) < 1e-9

    # a second run replaces the generated part only
    assert run_all("--quick", "--only", "import", "--output", str(page)).returncode == 0
    again = page.read_text()
    assert again.count("generated table begins") == 1
    assert again.startswith("# Performance\n\nHand-written introduction.\n")


def test_run_all_refuses_an_unknown_entry() -> None:
    proc = run_all("--only", "nonesuch")
    assert proc.returncode == 2
    assert "unknown benchmark(s): nonesuch" in proc.stderr


# --- issue 15 and 16 benchmarks, each run once at a tiny size (timings not checked) ---------

BENCHMARKS = REPO / "benchmarks"


def bench_module(name: str, monkeypatch: Any) -> Any:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)


def our_children() -> list[int]:
    """Processes whose parent is this one (a benchmark's child left behind)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.append(int(entry))
    return out


@pytest.mark.live
def test_bench_python_runs_once(monkeypatch: Any) -> None:
    """One pair of each figure on a frozen CPython child, which is gone afterwards."""
    before = set(our_children())  # e.g. the session's shared mdk_target
    bench = bench_module("bench_python", monkeypatch)
    try:
        python = bench.interpreter()
    except RuntimeError as exc:  # as tests/test_python_stacks.py: pyenv's CPythons
        pytest.skip(str(exc))
    rows = bench.measure(1, python)
    starts = ["(a) warm, in process", "(b) cold CLI", "DumpType.PYTHON dump size",
              "MINI dump size with the Python capture", "MINI pause with the Python capture"]
    assert len(rows) == len(starts)
    for c, start in zip(rows, starts, strict=True):
        assert c.what.startswith(start), (c.what, start)
    for c in rows:
        assert len(c.ours) == 1 and c.ours[0] > 0, c
    size = rows[2]
    assert size.baseline is None and size.unit == "KiB"
    mini = rows[3]  # the capture adds the runtime's memory and its stream
    assert mini.baseline is not None and mini.ours[0] > mini.baseline[0]
    assert set(our_children()) - before == set()


@pytest.mark.live
def test_bench_watch_runs_once(monkeypatch: Any) -> None:
    """Every case once at a tiny size: the child's own time, bare, under run and gdb."""
    before = set(our_children())  # e.g. the session's shared mdk_target
    bench = bench_module("bench_watch", monkeypatch)
    rows = bench.measure(1, True, sizes={"cpu": 5, "threads": 20, "signals": 200, "hang": 20},
                         window=0.3, settle=0.3)
    whats = [c.what for c in rows]
    assert any(w.startswith("CPU-bound child") for w in whats)
    assert any(w.startswith("child creating and joining 20 threads") for w in whats)
    assert any(w.startswith("child taking 200 SIGUSR1") for w in whats)
    assert any(w.startswith("watcher CPU") for w in whats)
    if shutil.which("gdb"):
        assert sum("under gdb" in w for w in whats) == 2
    for c in rows:
        assert c.baseline and len(c.ours) == len(c.baseline) == 1, c
    assert set(our_children()) - before == set()


def test_run_all_lists_the_watch_benchmarks() -> None:
    """run_all's entries include the Python and watch benchmarks and bench_follow."""
    names = subprocess.run(
        [sys.executable, "-c", "import run_all; print(*(e.name for e in run_all.BENCHMARKS))"],
        cwd=BENCHMARKS, capture_output=True, text=True, check=True).stdout.split()
    assert {"python", "watch"} <= set(names)
    assert "follow" in names and (BENCHMARKS / "bench_follow.py").exists()
