"""Soak: many dumps in a row of ONE running mdk_target (tests/targets/mdk_target.c).

Per dump: the target is alive, no thread is stopped or traced, no clone survives, the
target's self-checks hold (checksummed memory, no EINTR); the dump reads back (our
reader, and rust-minidump's minidump-stackwalk on a sample). Over the run: the dumping
process (this one) leaks no descriptor, and its Python heap (tracemalloc) and RSS do not
grow beyond a bound. Kinds, each a quarter of the run: MINI (stop), FULL (VA clone via
snapshot="auto"), snapshot (Dumper.snapshot / snapshot="always"), mixed (random).
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import minidumpkit as mdk
from liveproc import children, held_threads, open_fds, rss_kib
from minidumpkit.dumper import WRITE_SNAPSHOT_FLAGS
from oracles import run

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

THREADS = 6  # mdk_target: main + 5 named threads
# What one dumper may keep after its warm-up, across the whole run, in objects that
# multiplied (a leak of even 300 bytes per dump over the 1000 full-scale dumps exceeds
# it). Single blocks are not counted: a dict's table resized once (the interpreter's
# interned-string table is, as every clone's pid goes through pathlib) is not a leak;
# the tuple free list (at most 2000 per size) keeps up to ~110 KiB that looks live.
HEAP_GROWTH_LIMIT = 256 << 10
RSS_GROWTH_LIMIT_KIB = 16 << 10


def _kinds(d: mdk.Dumper) -> dict[str, Callable[[Path], Path]]:
    def snap_ctx(path: Path) -> Path:
        with d.snapshot(WRITE_SNAPSHOT_FLAGS) as snap:
            return snap.write(path, mdk.DumpType.MINI)

    return {
        "MINI": lambda p: d.write(p, mdk.DumpType.MINI),
        "FULL": lambda p: d.write(p, mdk.DumpType.FULL),
        "snapshot-context": snap_ctx,
        "snapshot-always": lambda p: d.write(p, mdk.DumpType.MINI, snapshot="always"),
        "Normal": lambda p: d.write(p, 0),
        "TRIAGE": lambda p: d.write(p, mdk.DumpType.TRIAGE),
        "FULL-stopped": lambda p: d.write(p, mdk.DumpType.FULL, snapshot="never"),
    }


def _plan(n: int, rng: random.Random) -> list[str]:
    quarter = n // 4
    mixed = ["MINI", "FULL", "snapshot-context", "snapshot-always", "Normal", "TRIAGE",
             "FULL-stopped"]
    return (["MINI"] * quarter + ["FULL"] * quarter
            + [("snapshot-context", "snapshot-always")[i % 2] for i in range(quarter)]
            + [rng.choice(mixed) for _ in range(n - 3 * quarter)])


def test_soak_one_target(target_bins: dict[str, Path], start_target: Any, tmp_path: Path,
                         live: Any, scale: Any, figures: dict[str, Any]) -> None:
    rng = random.Random(11)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    t = start_target([target_bins["mdk_target"], tmp_path / "known-file"])
    t.wait_parked("main", "reader", "sleeper", "regs", "futex")
    d = mdk.Dumper(t.pid)
    kinds = _kinds(d)
    path = out_dir / "soak.dmp"
    plan = _plan(scale.soak_dumps, rng)
    oracle_every = max(1, len(plan) // 40)
    counts: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    first_problems: list[str] = []
    deaths = oracle_checked = 0

    def problem(i: int, kind: str, what: str) -> None:
        problems[kind] += 1
        if len(first_problems) < 10:
            first_problems.append(f"dump {i} ({kind}): {what}")

    def one(i: int, kind: str) -> bool:
        """One dump and its checks; False once the target is dead."""
        nonlocal deaths, oracle_checked
        try:
            kinds[kind](path)
        except mdk.MinidumpError as exc:
            problem(i, "dump failed", f"{type(exc).__name__}: {exc}")
        if t.proc.poll() is not None:
            deaths += 1
            problem(i, "target died", f"exit status {t.proc.returncode}")
            return False
        held = held_threads(t.pid)
        if held:
            problem(i, "left stopped or traced", ", ".join(held))
            live.wait_until(lambda: not held_threads(t.pid), "the target to be released")
        if children(t.pid):
            problem(i, "clone left", str(children(t.pid)))
        status = t.status()
        if status["checksum_ok"] != 1 or status["reader_eintr"] or status["sleeper_eintr"]:
            problem(i, "self-check failed", str(status))
        if path.exists():
            with mdk.open_minidump(path) as dump:
                if dump.process_id != t.pid or len(dump.threads) != THREADS:
                    problem(i, "dump wrong", f"pid {dump.process_id}, {len(dump.threads)} threads")
            if i % oracle_every == 0:
                rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
                oracle_checked += 1
                if rust["pid"] != t.pid or rust["thread_count"] != THREADS:
                    problem(i, "rust-minidump disagrees", f"pid {rust['pid']}, "
                            f"{rust['thread_count']} threads")
                del rust
            path.unlink()
        else:
            problem(i, "no file", str(path))
        if os.listdir(out_dir):
            problem(i, "debris", str(os.listdir(out_dir)))
        if i % 10 == 9:  # the full self-check: the counter runs, the reader gets fed
            live.assert_target_healthy(t)
        return True

    # warm-up, not counted: every kind once with every check (lazy imports, caches and
    # cffi declarations are not leaks)
    for kind in kinds:
        assert one(0, kind), first_problems
        assert not problems, first_problems
    oracle_checked = 0
    gc.collect()
    fds_before, rss_before = open_fds(), rss_kib()
    tracemalloc.start()
    heap_before = tracemalloc.take_snapshot()
    for i, kind in enumerate(plan):
        counts[kind] += 1
        if not one(i, kind):
            break
    gc.collect()
    heap_diff = tracemalloc.take_snapshot().compare_to(heap_before, "lineno")
    tracemalloc.stop()
    heap_growth = sum(st.size_diff for st in heap_diff if st.count_diff > 1 and st.size_diff > 0)
    heap_total = sum(st.size_diff for st in heap_diff)
    fds_leaked = open_fds() - fds_before
    rss_growth = rss_kib() - rss_before
    traced_by_us = [p for p in os.listdir("/proc") if p.isdigit() and _tracer(p) == os.getpid()]
    figures["soak"] = {
        "target": "mdk_target (6 threads)", "dumps": sum(counts.values()),
        "by kind": dict(counts), "target deaths": deaths,
        "left stopped or traced": problems["left stopped or traced"] + len(traced_by_us),
        "clones left": problems["clone left"],
        "self-check failures": problems["self-check failed"],
        "dump failures": problems["dump failed"], "wrong dumps": problems["dump wrong"],
        "checked by minidump-stackwalk": oracle_checked,
        "fds leaked": fds_leaked, "tracemalloc growth bytes (multiplied objects)": heap_growth,
        "tracemalloc growth bytes (all)": heap_total,
        "rss growth KiB": rss_growth, "problems": dict(problems), "first": first_problems,
    }
    assert sum(counts.values()) == len(plan), first_problems
    assert not problems and not traced_by_us, first_problems
    live.assert_target_healthy(t)
    assert fds_leaked == 0, f"{fds_leaked} descriptors leaked over {len(plan)} dumps"
    assert heap_growth <= HEAP_GROWTH_LIMIT, (
        f"Python heap grew {heap_growth} bytes: "
        + "; ".join(str(st) for st in heap_diff[:5]))
    assert rss_growth <= RSS_GROWTH_LIMIT_KIB, f"RSS grew {rss_growth} KiB"


def _tracer(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
