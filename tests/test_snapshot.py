"""Snapshots with PSS semantics on Linux, on live targets (tests/targets/snapshot_target.c).

Expected values come from the target's construction (its writer thread's store
order, see the C file), never from our own output.
"""

from __future__ import annotations

import gc
import itertools
import json
import mmap
import os
import random
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import minidumpkit as mdk
from minidumpkit import format as md
from minidumpkit.callbacks import DumpCallbacks
from minidumpkit.errors import AlreadyTraced
from minidumpkit.flags import PssCaptureFlags as F
from minidumpkit.snapshot import SnapshotRefused
from liveproc import children, settle_after_killed_dumper

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")

ALL = F.VA_CLONE | F.THREADS | F.THREAD_CONTEXT | F.HANDLES | F.VA_SPACE
PAGE = 4096


@pytest.fixture
def target(target_bins, start_target):  # type: ignore[no-untyped-def]
    return start_target([target_bins["snapshot_target"]])


class Watched(DumpCallbacks):
    """Adds the target's related values to the dump."""

    def __init__(self, t, extra=()) -> None:  # type: ignore[no-untyped-def]
        self.t = t
        self.extra = list(extra)

    def memory(self):  # type: ignore[no-untyped-def]
        t = self.t
        return [(t.int("priv"), t.int("npages") * PAGE), (t.int("shared"), PAGE),
                (t.int("dfork"), PAGE), (t.int("gen"), 8), (t.int("cursor"), 8),
                (t.int("done"), 8), *self.extra]


def values(t, path: Path) -> dict:  # type: ignore[no-untyped-def]
    d = mdk.open_minidump(path)
    m = d.memory
    return {"gen": m.read_u64(t.int("gen")), "cursor": m.read_u64(t.int("cursor")),
            "done": m.read_u64(t.int("done")), "shared": m.read_u64(t.int("shared")),
            "dfork": m.read_u64(t.int("dfork")),
            "priv": [m.read_u64(t.int("priv") + i * PAGE) for i in range(t.int("npages"))]}


def point_in_time(v: dict) -> bool:  # type: ignore[type-arg]
    """The invariant of the target's store order (see snapshot_target.c)."""
    g, c, done = v["gen"], v["cursor"], v["done"]
    for i, x in enumerate(v["priv"]):
        if i < c and x != g or i > c and x != g - 1 or i == c and x not in (g, g - 1):
            return False
    return done in (g, g - 1) and v["shared"] in (done, g) and v["dfork"] in (done, g)


def assert_healthy(t, live, *, epoll_before: int | None = None) -> None:  # type: ignore[no-untyped-def]
    before = t.status()
    live.wait_until(lambda: t.status()["done"] > before["done"], "writer to go on")
    assert t.command("feed") == "FED"
    live.wait_until(lambda: t.status()["reader_got"] >= before["reader_got"] + 8, "reader fed")
    s = t.status()
    assert s["selfcheck_errors"] == 0
    assert s["reader_eintr"] == 0 and s["reader_seq_errors"] == 0 and s["sleeper_eintr"] == 0
    live.assert_released(t.pid)
    assert children(t.pid) == [], "a clone (or its zombie) is left in the target"


def test_va_clone_dump_is_point_in_time_and_target_unharmed(target, tmp_path, live) -> None:  # type: ignore[no-untyped-def]
    t = target
    code_pages: list[tuple[int, int]] = []
    with mdk.Dumper(t.pid).snapshot(ALL) as snap:
        assert snap.capture_method == md.CAPTURE_VA_CLONE
        assert {th.name for th in snap.threads} >= {"snap-writer", "snap-reader", "snap-epoller"}
        clone_pid = snap._impl._clone.pid
        live.assert_released(t.pid)  # the target runs while the snapshot exists
        assert [c for c, _ in children(t.pid)] == [clone_pid]
        stub = snap._impl.details()["stub"]
        code_pages = [(stub["address"], PAGE)]
        path = snap.write(tmp_path / "s.dmp", mdk.DumpType.MINI, callbacks=Watched(t, code_pages))
        # the walks
        regions = {r.base_address: r for r in snap.va_space}
        assert regions[t.int("priv")].point_in_time
        assert snap.process_info.pid == t.pid and snap.process_info.thread_count == 6
        assert any(h.type_name == "Pipe" for h in snap.handles)
    assert not os.path.exists(f"/proc/{clone_pid}")
    v = values(t, path)
    assert point_in_time(v), v
    assert v["done"] > 1
    # the injected stub is patched out: the dump shows the target's own code
    with open(f"/proc/{t.pid}/mem", "rb") as f:
        f.seek(stub["address"])
        code = f.read(PAGE)
    d = mdk.open_minidump(path)
    assert d.memory.read(stub["address"], PAGE) == code
    info = d.minidumpkit_info
    assert info is not None and info.capture == md.CAPTURE_VA_CLONE and info.pause_ns > 0
    details = json.loads(d.raw_stream(md.MINIDUMPKIT_SNAPSHOT_STREAM) or b"{}")
    assert {e["why"] for e in details["frozen_while_stopped"]} == {"shared", "dontfork"}
    assert details["not_point_in_time"] == []
    assert_healthy(t, live)
    # epoll_wait returns EINTR once per ptrace stop (snapshot + zombie reap: documented)
    assert t.status()["epoll_eintr"] >= 1


def test_live_snapshot_reads_running_memory(target, tmp_path, live) -> None:  # type: ignore[no-untyped-def]
    """Without VA_CLONE memory is read live at write time: not point-in-time (this is
    also the control showing that the invariant check catches torn dumps)."""
    t = target
    torn = 0
    for i in range(5):
        with mdk.Dumper(t.pid).snapshot(F.THREADS | F.THREAD_CONTEXT) as snap:
            assert snap.capture_method == md.CAPTURE_SNAPSHOT_LIVE
            path = snap.write(tmp_path / f"l{i}.dmp", callbacks=Watched(t))
        torn += not point_in_time(values(t, path))
        if torn:
            break
    assert torn >= 1
    assert mdk.open_minidump(path).minidumpkit_info.capture == md.CAPTURE_SNAPSHOT_LIVE
    assert_healthy(t, live)


def test_unclonable_mappings_marked_when_not_frozen(target, tmp_path, live) -> None:  # type: ignore[no-untyped-def]
    t = target
    with mdk.Dumper(t.pid).snapshot(ALL, frozen_limit=0) as snap:
        regions = {r.base_address: r for r in snap.va_space}
        assert not regions[t.int("shared")].point_in_time
        assert not regions[t.int("dfork")].point_in_time
        assert regions[t.int("priv")].point_in_time
        path = snap.write(tmp_path / "m.dmp", callbacks=Watched(t))
    details = json.loads(mdk.open_minidump(path).raw_stream(md.MINIDUMPKIT_SNAPSHOT_STREAM))
    marked = {e["start"]: e["why"] for e in details["not_point_in_time"]}
    assert marked == {t.int("shared"): "shared", t.int("dfork"): "dontfork"}
    v = values(t, path)
    # private pages still point-in-time; the DONTFORK page was read live from the target
    # (the clone has no such page), so it is present
    v2 = dict(v, shared=v["done"], dfork=v["done"])
    assert point_in_time(v2)
    assert v["dfork"] >= v["done"]
    assert_healthy(t, live)


def test_dumper_write_modes_recorded(target, tmp_path, live) -> None:  # type: ignore[no-untyped-def]
    t = target
    d = mdk.Dumper(t.pid)
    d.write(tmp_path / "a.dmp", snapshot="always")
    d.write(tmp_path / "n.dmp", snapshot="never")
    d.write(tmp_path / "m.dmp")  # auto, MINI: no bulk memory → stop
    caps = [mdk.open_minidump(tmp_path / n).minidumpkit_info.capture for n in ("a.dmp", "n.dmp", "m.dmp")]
    assert caps == [md.CAPTURE_VA_CLONE, md.CAPTURE_STOP, md.CAPTURE_STOP]
    assert d._use_snapshot("auto", mdk.MiniDumpType.WithFullMemory)
    assert d._use_snapshot("auto", mdk.MiniDumpType.WithPrivateReadWriteMemory)
    assert not d._use_snapshot("auto", mdk.MiniDumpType.WithThreadInfo)
    with pytest.raises(ValueError):
        d.write(tmp_path / "x.dmp", snapshot="sometimes")  # type: ignore[arg-type]
    assert_healthy(t, live)


def _inputs(pid: int, **changes: str):  # type: ignore[no-untyped-def]
    from minidumpkit._backends._clone import PreflightInputs

    real = PreflightInputs.read(pid)
    status = real.status
    for key, value in changes.items():
        if key in ("Seccomp", "TracerPid"):
            lines = [f"{key}:\t{value}" if ln.startswith(key + ":") else ln
                     for ln in status.splitlines()]
            status = "\n".join(lines)
    kw = {}
    if "overcommit" in changes:
        kw = {"overcommit_memory": "2\n",
              "meminfo": "CommitLimit:     1024 kB\nCommitted_AS:     512 kB\n"}
    return PreflightInputs(status=status, smaps=real.smaps,
                           overcommit_memory=kw.get("overcommit_memory", real.overcommit_memory),
                           meminfo=kw.get("meminfo", real.meminfo))


@pytest.mark.parametrize("case,reason", [("Seccomp", "seccomp"), ("overcommit", "overcommit")])
def test_refusals(target, live, monkeypatch, tmp_path, case, reason) -> None:  # type: ignore[no-untyped-def]
    t = target
    inputs = _inputs(t.pid, **({"Seccomp": "2"} if case == "Seccomp" else {"overcommit": "1"}))
    with pytest.raises(SnapshotRefused) as err:
        mdk.Dumper(t.pid).snapshot(ALL, preflight_inputs=inputs)
    assert err.value.reason == reason and str(t.pid) in str(err.value)
    # the same through Dumper.write: "always" raises, the others fall back to a stop
    from minidumpkit._backends import _clone

    monkeypatch.setattr(_clone.PreflightInputs, "read", classmethod(lambda cls, pid: inputs))
    with pytest.raises(SnapshotRefused):
        mdk.Dumper(t.pid).write(tmp_path / "x.dmp", snapshot="always")
    assert not (tmp_path / "x.dmp").exists()
    live.assert_released(t.pid)
    assert children(t.pid) == []


def test_refusal_already_traced(target, live) -> None:  # type: ignore[no-untyped-def]
    t = target
    inputs = _inputs(t.pid, TracerPid="4242")
    with pytest.raises(AlreadyTraced):
        mdk.Dumper(t.pid).snapshot(ALL, preflight_inputs=inputs)
    live.assert_released(t.pid)


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_no_clone_survives_an_exception(target, live, exc) -> None:  # type: ignore[no-untyped-def]
    t = target
    with pytest.raises(exc), mdk.Dumper(t.pid).snapshot(ALL) as snap:
        clone_pid = snap._impl._clone.pid
        raise exc()
    assert snap.closed
    assert not os.path.exists(f"/proc/{clone_pid}")
    snap.close()  # idempotent
    with pytest.raises(ValueError):
        _ = snap.threads
    assert_healthy(t, live)


def test_unclosed_snapshot_warns_and_frees(target, live) -> None:  # type: ignore[no-untyped-def]
    t = target
    snap = mdk.Dumper(t.pid).snapshot(ALL)
    clone_pid = snap._impl._clone.pid
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del snap
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert not os.path.exists(f"/proc/{clone_pid}")
    assert_healthy(t, live)


def _dumper_loop(pid: int, marker: mmap.mmap, out: str) -> None:
    """In a forked child: snapshot + write for ever, marking the injection window.
    Every other write is a FULL last write, whose clone releases its pages every MiB
    (madvise injected into the clone), so kills also land in those injections."""
    from minidumpkit._backends import _clone

    def hook(inside: bool) -> None:
        marker[0:1] = b"\x01" if inside else b"\x00"
    _clone.window_hook = hook
    _clone.CloneMemory.RELEASE_BATCH = 1 << 20
    try:
        for i in itertools.count():
            with mdk.Dumper(pid).snapshot(ALL) as snap:
                if i % 2:
                    snap.write(out, mdk.DumpType.FULL, close=True)
                else:
                    snap.write(out)
    finally:
        os._exit(0)


def test_dumper_sigkilled_at_random_moments(target_bins, start_target, tmp_path, live) -> None:  # type: ignore[no-untyped-def]
    """Outside the injection window the target always survives, is never left stopped,
    and no clone is ever left running (a killed dumper's clone dies by EXITKILL; its
    zombie stays in the target, documented)."""
    rng = random.Random(6)
    t = start_target([target_bins["snapshot_target"]])
    marker = mmap.mmap(-1, 1)
    trials, in_window, survived = 40, 0, 0
    for i in range(trials):
        child = os.fork()
        if child == 0:  # pragma: no cover - the child
            _dumper_loop(t.pid, marker, str(tmp_path / "k.dmp"))
        time.sleep(rng.uniform(0.0, 0.12))
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        was_inside = marker[0] == 1
        marker[0:1] = b"\x00"
        # the target runs the stub on its own inside the window: it dies of the int3, or not
        left = settle_after_killed_dumper(t.proc, t.pid, was_inside)
        if left["alive"]:
            survived += 1
            assert left["released"], f"trial {i}: target not released after the dumper died"
            # a clone dies of EXITKILL (or of the stub's exit_group) on its own
            assert left["clones_ended"], f"trial {i}: a clone of the killed dumper lives on"
        else:
            assert was_inside, f"trial {i}: target died outside the injection window ({t.proc.returncode})"
            in_window += 1
            t = start_target([target_bins["snapshot_target"]])
    assert survived + in_window == trials
    print(f"\nSIGKILL trials: {trials}, target survived {survived}, killed inside the "
          f"injection window {in_window}")
    # the zombies a killed dumper leaves can be reaped later by the same injected wait4
    from minidumpkit._backends import _clone

    for zombie, _ in children(t.pid):
        assert _clone.reap_clone_zombie(t.pid, zombie)
    assert children(t.pid) == []
    live.assert_released(t.pid)
    s = t.status()
    assert s["selfcheck_errors"] == 0 and s["reader_eintr"] == 0 and s["sleeper_eintr"] == 0


@pytest.mark.parametrize("stage", [1, 2], ids=["at-entry", "inside-madvise"])
def test_dumper_killed_inside_a_release_injection(target_bins, start_target, tmp_path, live,  # type: ignore[no-untyped-def]
                                                  stage) -> None:
    """The dumper SIGKILLs itself while its clone is stopped at the entry of an injected
    madvise (stage 1) or runs it (stage 2): EXITKILL ends the clone, the target never
    noticed (it is not the tracee there), and the clone's zombie is reaped later."""
    t = start_target([target_bins["memflags_target"], "fill", "64"])
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            from minidumpkit._backends import _clone

            real = _clone._ptrace
            calls = itertools.count(1)

            def ptrace(request: int, *args: object) -> int:
                rc = real(request, *args)
                if request == _clone.PTRACE_SYSCALL and next(calls) == stage:
                    os.kill(os.getpid(), signal.SIGKILL)
                return rc
            _clone._ptrace = ptrace
            with mdk.Dumper(t.pid).snapshot(ALL) as snap:
                snap.write(tmp_path / "k.dmp", mdk.DumpType.FULL, close=True)
        finally:
            os._exit(3)  # not reached: killed inside the injection
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    live.wait_until(lambda: all(st in ("Z", "X") for _, st in children(t.pid)),
                    "the clone to die of EXITKILL")
    assert len(children(t.pid)) == 1  # its zombie, which only the target can reap
    from minidumpkit._backends import _clone

    [(zombie, _)] = children(t.pid)
    assert _clone.reap_clone_zombie(t.pid, zombie)
    assert children(t.pid) == []
    live.assert_released(t.pid)
    base = t.int("fill")
    assert t.command(f"poke 0x{base:x}") == f"POKED old={pattern_word(base, base)}"
    from minidumpkit import _output

    probe = _output._unnamed_file(str(tmp_path), None)
    if probe is not None:  # O_TMPFILE here: the killed dumper's file never had a name
        os.close(probe)
        assert list(tmp_path.iterdir()) == []
    else:
        assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".partial")] == []


# --- full-memory dumps through Dumper.write(snapshot="auto"), checked independently ----

@pytest.fixture
def full_dump(target, tmp_path):  # type: ignore[no-untyped-def]
    path = mdk.Dumper(target.pid).write(tmp_path / "full.dmp", mdk.DumpType.FULL)
    return target, path


def test_full_dump_auto_uses_va_clone_and_is_point_in_time(full_dump, live) -> None:  # type: ignore[no-untyped-def]
    t, path = full_dump
    d = mdk.open_minidump(path)
    assert d.minidumpkit_info.capture == md.CAPTURE_VA_CLONE
    v = values(t, path)  # every value from the dump's own memory, no callbacks
    assert point_in_time(v), {k: v[k] for k in ("gen", "cursor", "done", "shared", "dfork")}
    assert_healthy(t, live)


def test_full_dump_never_stops(target, tmp_path, live) -> None:  # type: ignore[no-untyped-def]
    path = mdk.Dumper(target.pid).write(tmp_path / "n.dmp", mdk.DumpType.FULL, snapshot="never")
    d = mdk.open_minidump(path)
    assert d.minidumpkit_info.capture == md.CAPTURE_STOP
    assert d.raw_stream(md.MINIDUMPKIT_SNAPSHOT_STREAM) is None
    assert point_in_time(values(target, path))  # stopped the whole time
    assert_healthy(target, live)


def test_full_snapshot_dump_read_by_lldb_and_rust_minidump(full_dump) -> None:  # type: ignore[no-untyped-def]
    from oracles import run

    t, path = full_dump
    tids = sorted(int(n) for n in os.listdir(f"/proc/{t.pid}/task"))
    npages = t.int("npages")
    probes = {"gen": t.int("gen"), "cursor": t.int("cursor"), "done": t.int("done"),
              "shared": t.int("shared"), "dfork": t.int("dfork")}
    pages = [0, npages // 3, npages // 2, 2 * npages // 3, npages - 1]
    for i in pages:
        probes[f"p{i}"] = t.int("priv") + i * PAGE
    args = ["--batch", "--no-lldbinit", "-o", f"target create --core {path}", "-o", "thread list"]
    for address in probes.values():
        args += ["-o", f"memory read --format u --size 8 --count 1 0x{address:x}"]
    out = run("lldb", *args, check=True).stdout
    assert sorted(int(x) for x in re.findall(r"thread #\d+: tid = (\d+)", out)) == tids
    got = [int(x) for x in re.findall(r"^0x[0-9a-f]+: (\d+)$", out, re.MULTILINE)]
    assert len(got) == len(probes), out[-2000:]
    lv = dict(zip(probes, got, strict=True))
    g, c = lv["gen"], lv["cursor"]
    for i in pages:
        want = {g} if i < c else {g - 1} if i > c else {g, g - 1}
        assert lv[f"p{i}"] in want, (i, lv)
    assert lv["done"] in (g, g - 1) and lv["shared"] in (lv["done"], g) \
        and lv["dfork"] in (lv["done"], g)
    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    assert rust["status"] == "OK"
    assert rust["pid"] == t.pid
    assert sorted(th["thread_id"] for th in rust["threads"]) == tids
    dumped = run("minidump-stackwalk", "--dump", path, check=True).stdout
    assert "MINIDUMP_MEMORY64_LIST" in dumped or "Memory64List" in dumped, dumped[:2000]


# --- a snapshot's last dump gives the clone's pages back ---------------------------------

GOLDEN = 0x9E3779B97F4A7C15


def pattern_word(base: int, address: int) -> int:
    """memflags_target's fill pattern: page i starts with i * GOLDEN."""
    return ((address - base) // PAGE * GOLDEN) & 0xFFFF_FFFF_FFFF_FFFF


def page_frame(pid: int, address: int) -> int:
    """The physical frame behind ``address`` in ``pid`` (0 when the kernel hides it)."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(address // PAGE * 8)
        entry = int.from_bytes(f.read(8), "little")
    assert entry >> 63, f"page 0x{address:x} of {pid} is not present"
    return entry & ((1 << 55) - 1)


def rss_anon(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssAnon in /proc/{pid}/status")


class PokeDuringWrite(DumpCallbacks):
    """Once the write is under way (with ``close=True``: once the clone has given back
    its first batch, so the heap's first page is released and its last is not yet
    read), writes to the heap's first and last pages in the target and records what
    the kernel did with their page frames."""

    def __init__(self, t, first: int, last: int, *, wait_release: int) -> None:  # type: ignore[no-untyped-def]
        self.t, self.first, self.last, self.wait_release = t, first, last, wait_release
        self.seen: dict[str, object] = {}

    def progress(self, done: int, total: int) -> None:
        if self.seen or done * 4 < total:
            return
        [(clone, _)] = children(self.t.pid)
        rss = rss_anon(clone)
        if self.wait_release and rss > self.wait_release:
            return
        before = (page_frame(self.t.pid, self.first), page_frame(self.t.pid, self.last))
        old = [self.t.command(f"poke 0x{a:x}") for a in (self.first, self.last)]
        after = (page_frame(self.t.pid, self.first), page_frame(self.t.pid, self.last))
        self.seen.update(clone_rss=rss, before=before, after=after, old=old)


@pytest.mark.parametrize("close", [True, False], ids=["close", "keep"])
def test_last_write_gives_the_clones_pages_back(target_bins, start_target, tmp_path, live,  # type: ignore[no-untyped-def]
                                                close) -> None:
    from oracles import run

    from minidumpkit._backends._clone import CloneMemory

    t = start_target([target_bins["memflags_target"], "fill", "96"])
    base, size = t.int("fill"), t.int("size")
    first, last = base, base + size - PAGE
    path = tmp_path / "last.dmp"
    # released: the clone's anonymous RSS fell by at least one batch
    probe = PokeDuringWrite(t, first, last,
                            wait_release=size - CloneMemory.RELEASE_BATCH if close else 0)
    snap = mdk.Dumper(t.pid).snapshot(ALL)
    with snap:
        snap.write(path, mdk.DumpType.FULL, callbacks=probe, close=close)
        assert snap.closed is close
        if close:
            with pytest.raises(ValueError, match="closed"):
                snap.write(tmp_path / "again.dmp", mdk.DumpType.FULL)
    seen = probe.seen
    assert seen, "the write never reached the point where the probe pokes"
    words = (pattern_word(base, first), pattern_word(base, last))
    assert seen["old"] == [f"POKED old={w}" for w in words]
    if page_frame(t.pid, first):  # frame numbers are shown to CAP_SYS_ADMIN only
        before, after = seen["before"], seen["after"]
        assert after[1] != before[1], "the unread last page was not copied on write"
        if close:
            assert after[0] == before[0], "the released first page was copied on write"
        else:
            assert after[0] != before[0], "the kept first page was not copied on write"
    if close:
        assert seen["clone_rss"] <= size - CloneMemory.RELEASE_BATCH
    else:
        assert seen["clone_rss"] >= size
    # point in time either way: the dump holds the pages as they were, not the pokes
    d = mdk.open_minidump(path)
    assert d.minidumpkit_info.capture == md.CAPTURE_VA_CLONE
    assert [d.memory.read_u64(a) for a in (first, last)] == list(words)
    for i in range(0, size // PAGE, 97):
        assert d.memory.read_u64(base + i * PAGE) == pattern_word(base, base + i * PAGE)
    out = run("lldb", "--batch", "--no-lldbinit", "-o", f"target create --core {path}",
              "-o", f"memory read --format u --size 8 --count 1 0x{first:x}",
              "-o", f"memory read --format u --size 8 --count 1 0x{last:x}", check=True).stdout
    got = [int(x) for x in re.findall(r"^0x[0-9a-f]+: (\d+)$", out, re.MULTILINE)]
    assert got == list(words), out[-2000:]
    assert children(t.pid) == []
    live.assert_released(t.pid)
    assert t.command(f"poke 0x{first:x}") == f"POKED old={words[0] + 1}"


class RaiseMidWrite(DumpCallbacks):
    """Raises ``exc`` once the bulk copy is a third done (pages already released)."""

    def __init__(self, exc: type[BaseException]) -> None:
        self.exc = exc

    def progress(self, done: int, total: int) -> None:
        if done * 3 >= total:
            raise self.exc()


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_last_write_that_fails_still_frees_everything(target_bins, start_target, tmp_path,  # type: ignore[no-untyped-def]
                                                      live, exc) -> None:
    t = start_target([target_bins["memflags_target"], "fill", "96"])
    path = tmp_path / "failed.dmp"
    snap = mdk.Dumper(t.pid).snapshot(ALL)
    clone_pid = snap._impl._clone.pid
    with pytest.raises(exc):
        snap.write(path, mdk.DumpType.FULL, callbacks=RaiseMidWrite(exc), close=True)
    assert snap.closed
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert not os.path.exists(f"/proc/{clone_pid}")
    assert children(t.pid) == []
    assert [th.name for th in threading.enumerate() if th.name.startswith("minidumpkit-read")] == []
    live.assert_released(t.pid)
    base = t.int("fill")
    assert t.command(f"poke 0x{base:x}") == f"POKED old={pattern_word(base, base)}"


def test_last_write_holds_the_same_bytes_as_a_kept_write(target_bins, start_target, tmp_path,  # type: ignore[no-untyped-def]
                                                         monkeypatch) -> None:
    """The same snapshot written twice, kept then as its last write (which runs system
    calls in the clone, from the first MiB on): every captured byte and register is the
    same. The target and its clone are kept on different CPUs where there are two, so
    the clone's rseq area (cpu_id), which the kernel rewrites when the clone runs, would
    differ if it were not put back."""
    from minidumpkit._backends._clone import CloneMemory

    monkeypatch.setattr(CloneMemory, "RELEASE_BATCH", 1 << 20)
    t = start_target([target_bins["memflags_target"], "fill", "16"])
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(t.pid, {cpus[0]})
    snap = mdk.Dumper(t.pid).snapshot(ALL)
    with snap:
        clone_memory = snap._impl._clone_memory
        if len(cpus) > 1:
            os.sched_setaffinity(clone_memory.clone.pid, {cpus[1]})
        kept = snap.write(tmp_path / "kept.dmp", mdk.DumpType.FULL)
        last = snap.write(tmp_path / "last.dmp", mdk.DumpType.FULL, close=True)
    assert clone_memory.released > 16 << 20 and clone_memory.release_failures == 0
    assert clone_memory.clone.preserved, "no rseq area found (glibc registers one)"
    a, b = mdk.open_minidump(kept), mdk.open_minidump(last)
    assert [(r.start, r.size) for r in a.memory.ranges] == \
        [(r.start, r.size) for r in b.memory.ranges]
    for r in a.memory.ranges:
        assert a.memory.read(r.start, r.size) == b.memory.read(r.start, r.size), hex(r.start)
    assert [(th.thread_id, th.context) for th in a.threads] == \
        [(th.thread_id, th.context) for th in b.threads]


class SignalTheClone(DumpCallbacks):
    """Sends ``signals`` to the snapshot's clone as the write goes (it shares the
    target's process group: a terminal's SIGCONT or SIGSTOP reaches it too)."""

    def __init__(self, clone_pid: int, signals: list[int]) -> None:
        self.clone_pid, self.signals = clone_pid, list(signals)

    def progress(self, done: int, total: int) -> None:
        if self.signals and done * 2 >= total:
            os.kill(self.clone_pid, self.signals.pop(0))


def test_signals_to_the_clone_do_not_derail_its_system_calls(target_bins, start_target,  # type: ignore[no-untyped-def]
                                                             tmp_path, live, monkeypatch) -> None:
    """SIGTRAP (the one signal the clone does not block), SIGSTOP and SIGCONT sent to the
    clone during a last write: every stop that is not a syscall stop is resumed with no
    signal, the madvise calls stay paired with their entry and exit stops, and all the
    memory is given back without a failure."""
    from minidumpkit._backends._clone import CloneMemory

    monkeypatch.setattr(CloneMemory, "RELEASE_BATCH", 1 << 20)
    t = start_target([target_bins["memflags_target"], "fill", "32"])
    snap = mdk.Dumper(t.pid).snapshot(ALL)
    clone_memory = snap._impl._clone_memory
    signals = [signal.SIGTRAP, signal.SIGSTOP, signal.SIGCONT, signal.SIGTRAP]
    path = snap.write(tmp_path / "sig.dmp", mdk.DumpType.FULL,
                      callbacks=SignalTheClone(clone_memory.clone.pid, signals), close=True)
    assert clone_memory.release_failures == 0 and clone_memory.released >= 32 << 20
    base, size = t.int("fill"), t.int("size")
    d = mdk.open_minidump(path)
    assert all(d.memory.read_u64(base + i * PAGE) == pattern_word(base, base + i * PAGE)
               for i in range(0, size // PAGE, 31))
    assert children(t.pid) == []
    live.assert_released(t.pid)


def test_a_last_write_from_another_thread_gives_nothing_back(target_bins, start_target,  # type: ignore[no-untyped-def]
                                                             tmp_path, live) -> None:
    """Only the thread that took the snapshot is the clone's tracer: written from another
    thread, the last dump is complete and correct, and nothing is released."""
    t = start_target([target_bins["memflags_target"], "fill", "16"])
    snap = mdk.Dumper(t.pid).snapshot(ALL)
    clone_memory = snap._impl._clone_memory
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(
        snap.write(tmp_path / "other.dmp", mdk.DumpType.FULL, close=True)))
    worker.start()
    worker.join()
    [path] = result
    assert snap.closed and clone_memory.released == 0
    base = t.int("fill")
    assert mdk.open_minidump(path).memory.read_u64(base + PAGE) == pattern_word(base, base + PAGE)
    assert children(t.pid) == []
    live.assert_released(t.pid)
