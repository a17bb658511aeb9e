"""``benchmarks/run_all.py``: one real (quick) entry run end to end into a page.

Timings are never asserted here; this checks that the command runs a registered
benchmark, and writes the table with the date, the machine and the ratios between
its markers while keeping the page's own text. The full run is by hand
(docs/testing.md, "Benchmarks").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
