"""The dumping process SIGKILLed at random moments, spread over the phases of a dump.

A forked child dumps a running snapshot_target (tests/targets/snapshot_target.c) once,
with probes on the library's phase boundaries that report (phase, CLOCK_MONOTONIC time)
through a pipe and keep the current phase in shared memory:

    attach     ProcessStop.__enter__: PTRACE_SEIZE + interrupt of every thread
    registers  linux.capture: registers, /proc state, modules, while stopped
    clone      _clone.make_clone and the rest of the snapshot's set-up (VA-clone dumps);
               the injection window (target running our stub) is flagged separately
    copy       memory copied: into the buffer while stopped (stop-and-dump), or from the
               clone into the file (snapshot)
    write      the file written, fsync'd and linked

Phase lengths are measured first (unkilled runs); each trial aims at one phase and
kills the child a uniform random time into it. Recorded per trial: where the kill
landed, what happened to the target (alive, running, not traced, self-check) and to
any clone (ended; its zombie reaped), and whether anything is left in the output
directory. Same approach as tests/test_snapshot.py's 40 random kills (whose settling
helper, liveproc.settle_after_killed_dumper, this shares), with phases made explicit.
"""

from __future__ import annotations

import mmap
import os
import random
import selectors
import signal
import statistics
import struct
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

import minidumpkit as mdk
from liveproc import (
    PHASES,
    children,
    reap,
    reap_clone_zombies,
    released,
    settle_after_killed_dumper,
)

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

RECORD = struct.Struct("<Bq")  # phase number (1-based; DONE at the end), monotonic ns
DONE = 255
MODES = ("stop", "clone")  # MINI by stop-and-dump; FULL from a VA-clone snapshot
CHILD_TIMEOUT = 30.0


def _install_probes(wfd: int, marker: mmap.mmap) -> None:
    """In the child: wrap the phase boundaries so that each reports itself."""
    from minidumpkit._backends import _clone, _linux_snapshot, _ptrace, linux

    def enter(phase: str) -> None:
        number = PHASES.index(phase) + 1
        marker[0] = number
        os.write(wfd, RECORD.pack(number, time.monotonic_ns()))

    def wrap(owner: Any, name: str, phase: str) -> None:
        real = getattr(owner, name)

        def probed(*args: Any, **kwargs: Any) -> Any:
            enter(phase)
            return real(*args, **kwargs)
        setattr(owner, name, probed)

    wrap(_ptrace.ProcessStop, "__enter__", "attach")
    wrap(linux, "capture", "registers")
    wrap(_clone, "make_clone", "clone")
    wrap(linux, "snapshot_selection", "copy")
    wrap(_linux_snapshot.LinuxSnapshot, "write", "copy")
    wrap(linux, "_write_buffered", "write")
    wrap(os, "fsync", "write")

    def window(inside: bool) -> None:
        marker[1] = 1 if inside else 0
    _clone.window_hook = window


def _dump_child(pid: int, out: Path, mode: str, wfd: int, marker: mmap.mmap) -> None:
    """The forked dumper: one dump, then a DONE record."""
    code = 1
    try:
        _install_probes(wfd, marker)
        if mode == "stop":
            mdk.Dumper(pid).write(out, mdk.DumpType.MINI, snapshot="never")
        else:
            mdk.Dumper(pid).write(out, mdk.DumpType.FULL, snapshot="always")
        os.write(wfd, RECORD.pack(DONE, time.monotonic_ns()))
        code = 0
    finally:
        os._exit(code)


def _read_records(fd: int, sel: selectors.BaseSelector, until: int | None,
                  buf: bytearray) -> list[tuple[int, int]]:
    """Records from the child until one with phase ``until`` (None: until EOF)."""
    out = []
    deadline = time.monotonic() + CHILD_TIMEOUT
    while True:
        while len(buf) >= RECORD.size:
            rec = RECORD.unpack_from(buf)
            del buf[:RECORD.size]
            out.append(rec)
            if until is not None and rec[0] in (until, DONE):
                return out
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            raise AssertionError(f"the dumper child said nothing for {CHILD_TIMEOUT} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        buf += chunk


def _start(pid: int, out: Path, mode: str, marker: mmap.mmap) -> tuple[int, int]:
    marker[0] = marker[1] = 0
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.close(r)
        _dump_child(pid, out, mode, w, marker)
    os.close(w)
    return child, r


def _measure(pid: int, out: Path, mode: str, marker: mmap.mmap, runs: int = 5) -> dict[str, float]:
    """Median length (seconds) of each phase of an unkilled dump."""
    lengths: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        child, r = _start(pid, out, mode, marker)
        with selectors.DefaultSelector() as sel:
            sel.register(r, selectors.EVENT_READ)
            records = _read_records(r, sel, None, bytearray())
        os.close(r)
        assert os.WEXITSTATUS(reap(child, CHILD_TIMEOUT)) == 0, f"an unkilled {mode} dump failed"
        assert records and records[-1][0] == DONE, records
        for (phase, start), (_, end) in zip(records, records[1:], strict=False):
            lengths[PHASES[phase - 1]].append((end - start) / 1e9)
        out.unlink()
    return {phase: statistics.median(v) for phase, v in lengths.items()}


def _complete(path: Path, pid: int) -> bool:
    """A whole dump of ``pid``: what a dumper killed after publishing leaves."""
    try:
        with mdk.open_minidump(path) as dump:
            return dump.process_id == pid and len(dump.threads) > 0
    except mdk.MinidumpFormatError:
        return False


def test_dumper_sigkilled_in_every_phase(target_bins: dict[str, Path], start_target: Any,
                                        tmp_path: Path, live: Any, scale: Any,
                                        figures: dict[str, Any]) -> None:
    rng = random.Random(200)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "k.dmp"
    t = start_target([target_bins["snapshot_target"]])
    marker = mmap.mmap(-1, 2)
    lengths = {mode: _measure(t.pid, out, mode, marker) for mode in MODES}
    assert set(lengths["stop"]) == {"attach", "registers", "copy", "write"}, lengths
    assert set(lengths["clone"]) == set(PHASES), lengths
    per_phase: dict[str, Counter[str]] = {p: Counter() for p in PHASES}
    failures: list[str] = []
    for trial in range(scale.kills):
        aim = PHASES[trial % len(PHASES)]
        mode = "clone" if aim == "clone" else MODES[(trial // len(PHASES)) % 2]
        delay = rng.uniform(0.0, lengths[mode][aim])
        child, r = _start(t.pid, out, mode, marker)
        with selectors.DefaultSelector() as sel:
            sel.register(r, selectors.EVENT_READ)
            records = _read_records(r, sel, PHASES.index(aim) + 1, bytearray())
        if delay:
            time.sleep(delay)
        os.kill(child, signal.SIGKILL)
        status = reap(child, CHILD_TIMEOUT)
        os.close(r)
        finished = records[-1][0] == DONE or not os.WIFSIGNALED(status)
        landed = PHASES[marker[0] - 1] if marker[0] else "before attach"
        in_window = marker[1] == 1
        where = per_phase.setdefault(landed, Counter())
        where["kills"] += 1
        where[f"aimed {aim}"] += 1
        where["in injection window"] += in_window
        where["dump had finished"] += finished
        left = settle_after_killed_dumper(t.proc, t.pid, in_window)
        if not left["alive"]:
            where["target died"] += 1
            if not in_window:
                failures.append(f"trial {trial}: target died outside the injection window "
                                f"(landed in {landed}, status {t.proc.returncode})")
            t = start_target([target_bins["snapshot_target"]])
        else:
            where["target alive"] += 1
            if left["released"]:
                where["running, not traced"] += 1
            else:
                failures.append(f"trial {trial} ({landed}): target left stopped or traced")
            if left["clones_ended"]:
                zombies = reap_clone_zombies(t.pid)
                where["clone zombies reaped"] += zombies
                if children(t.pid):
                    failures.append(f"trial {trial}: children left {children(t.pid)}")
            else:
                failures.append(f"trial {trial} ({landed}): a clone lives on {children(t.pid)}")
            s = t.status()
            if s["selfcheck_errors"] or s["reader_eintr"] or s["reader_seq_errors"]:
                where["self-check failed"] += 1
                failures.append(f"trial {trial} ({landed}): self-check {s}")
            else:
                where["self-check ok"] += 1
        debris = sorted(os.listdir(out_dir))
        if out.name in debris and _complete(out, t.pid):
            # killed after the file was published (the rename done, DONE not yet sent)
            debris.remove(out.name)
            where["complete dump at the path"] += 1
        if debris:
            where["files left"] += 1
            failures.append(f"trial {trial} ({landed}): left {debris}")
        for name in os.listdir(out_dir):
            (out_dir / name).unlink()
    figures["kill"] = {
        "trials": scale.kills, "target": "snapshot_target",
        "phase lengths ms (median of 5 unkilled dumps)":
            {m: {p: round(v * 1e3, 3) for p, v in ph.items()} for m, ph in lengths.items()},
        "per landed phase": {p: dict(c) for p, c in per_phase.items() if c},
        "failures": failures,
    }
    assert not failures, failures
    assert released(t.pid)
    live.wait_until(lambda: t.status()["done"] > 0, "the writer thread to run")
