"""Thread states, blocking system calls and futex waits, from MINI dumps of a real target.

tests/targets/locks_target.c parks one thread in each situation (a mutex holder blocked
in read() on a pipe, mutex / PI mutex / robust mutex / condvar / semaphore / join
waiters, nanosleep, epoll_wait). Expected values come from the kernel (/proc/PID/task/
TID/{syscall,stat,wchan} read by the test while the target is parked), from gdb on the
live process (orig_rax, call stacks) and from what the target printed about itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from oracles import run

import minidumpkit as mdk
from minidumpkit._backends import linux
from minidumpkit._selection import DumpPolicy
from minidumpkit.analysis.locks import WaitKind, futex_waits
from minidumpkit.analysis.threads import thread_statuses

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux only")

ROLES = ("main", "mutex_waiter", "pi_waiter", "robust_waiter", "cond_waiter", "sem_waiter",
         "sleeper", "epoller", "joiner", "raw_sleeper", "rw_reader", "rw_writer", "rec_waiter",
         "err_waiter", "poller", "reaper")
# the call each role blocks in (glibc 2.36 x86_64: nanosleep() is clock_nanosleep)
EXPECTED_CALL = {"main": 0, "mutex_waiter": 202, "pi_waiter": 202, "robust_waiter": 202,
                 "cond_waiter": 202, "sem_waiter": 202, "sleeper": 230, "epoller": 232,
                 "joiner": 202, "raw_sleeper": 230, "rw_reader": 202, "rw_writer": 202,
                 "rec_waiter": 202, "err_waiter": 202, "poller": 7, "reaper": 61}
ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")


def _proc(pid: int, tid: int) -> dict[str, object]:
    """What the kernel shows for a parked thread: syscall line, state letter, wchan."""
    line = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return {"nr": int(line[0]), "args": tuple(int(a, 16) for a in line[1:7]),
            "sp": int(line[7], 16), "pc": int(line[8], 16),
            "state": stat.rsplit(")", 1)[1].split()[0],
            "wchan": Path(f"/proc/{pid}/task/{tid}/wchan").read_text().strip()}


def _tids(target: Any) -> dict[str, int]:
    return {role: target.int(role) for role in ROLES}


def _gdb(pid: int) -> tuple[dict[int, int], dict[int, list[str]]]:
    """gdb attached to the live process: {tid: orig_rax}, {tid: [function, ...]}."""
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is needed to check orig_rax against an independent reader")
    out = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx",
                          "-ex", "thread apply all info registers orig_rax",
                          "-ex", "thread apply all bt"],
                         capture_output=True, text=True, timeout=120).stdout
    orig: dict[int, int] = {}
    frames: dict[int, list[str]] = {}
    tid = None
    for line in out.splitlines():
        m = re.match(r"Thread \d+ \(Thread 0x[0-9a-f]+ \(LWP (\d+)\)", line)
        if m:
            tid = int(m.group(1))
            frames.setdefault(tid, [])
            continue
        m = re.match(r"orig_rax\s+0x[0-9a-f]+\s+(-?\d+)", line)
        if m and tid is not None:
            orig[tid] = int(m.group(1))
            continue
        m = re.match(r"#\d+\s+(?:0x[0-9a-f]+ in )?([\w.@]+) \(", line)
        if m and tid is not None and tid in orig:
            frames[tid].append(m.group(1))
    return orig, frames


@dataclasses.dataclass(frozen=True)
class _Frame:
    function: str | None


def _park_and_read(target: Any) -> dict[str, dict[str, object]]:
    target.wait_parked(*ROLES)
    return {role: _proc(target.pid, tid) for role, tid in _tids(target).items()}


def _dump(pid: int, path: Path, dump_type: int = mdk.DumpType.MINI,
          **policy: int) -> mdk.Minidump:
    if policy or dump_type != mdk.DumpType.MINI:
        with open(path, "wb") as f:
            linux.write_dump(pid, f, mdk.MiniDumpType(dump_type), policy=DumpPolicy(**policy))
    else:
        mdk.dump(pid, path, mdk.DumpType.MINI)
    return mdk.open_minidump(path)


def _check_against_proc(dump: mdk.Minidump, kernel: dict[str, dict[str, object]],
                        tids: dict[str, int]) -> None:
    for role, tid in tids.items():
        seen, st = kernel[role], dump.thread_states[tid]
        thread = dump.thread(tid)
        assert thread is not None
        regs = thread.registers
        assert st.state == seen["state"] == "S", role
        assert st.wchan == seen["wchan"], role
        assert st.sample_age_ns is not None and st.sample_age_ns >= 0
        assert st.orig_rax == seen["nr"], role
        assert st.blocked, role
        assert st.restarted == (seen["nr"] == 219), role
        if role == "raw_sleeper" and st.restarted:
            # glibc's generic syscall() takes the number from a register: a restarted
            # call's site cannot tell which call it was, and the dump says so
            assert st.syscall is None, role
        else:
            assert st.syscall == EXPECTED_CALL[role], role
        # the kernel's view of the arguments and the registers in our CONTEXT agree
        assert tuple(regs[r] for r in ARG_REGS) == seen["args"], role
        assert regs["rip"] == seen["pc"] and regs["rsp"] == seen["sp"], role


def test_states_syscalls_and_waits(
        target_bins: dict[str, Path], start_target: Callable[..., Any], live: Any,
        tmp_path: Path) -> None:
    target = start_target([str(target_bins["locks_target"])])
    tids = _tids(target)
    addr = {k: target.int(k) for k in ("normal", "pi", "robust", "cond", "sem", "rw", "rec",
                                       "err")}
    kernel = _park_and_read(target)
    assert kernel["sleeper"]["nr"] == kernel["raw_sleeper"]["nr"] == 230  # not stopped yet

    first = _dump(target.pid, tmp_path / "first.dmp")
    live.assert_released(target.pid)
    _check_against_proc(first, kernel, tids)

    # gdb on the live process agrees on orig_rax (gdb reads it after our dump released the
    # threads; only the sleeper has changed since, into restart_syscall)
    kernel = _park_and_read(target)
    gdb_orig, gdb_frames = _gdb(target.pid)
    for role, tid in tids.items():
        assert gdb_orig[tid] == kernel[role]["nr"], role
        expected_first = 230 if "sleeper" in role else first.thread_states[tid].orig_rax
        assert first.thread_states[tid].orig_rax == expected_first

    # after our dump and gdb's attach/detach: the sleeper is in restart_syscall (219),
    # mapped back to clock_nanosleep from its call site; the others in the same calls
    kernel = _park_and_read(target)
    assert kernel["sleeper"]["nr"] == kernel["raw_sleeper"]["nr"] == 219
    again = _dump(target.pid, tmp_path / "again.dmp")
    _check_against_proc(again, kernel, tids)
    twice = _dump(target.pid, tmp_path / "twice.dmp")
    live.assert_released(target.pid)
    kernel = _park_and_read(target)
    _check_against_proc(twice, kernel, tids)
    for dump, raw in ((first, 230), (again, None), (twice, None)):
        calls = {role: dump.thread_states[tid].syscall for role, tid in tids.items()}
        assert calls == {**EXPECTED_CALL, "raw_sleeper": raw}
    sleeper = twice.thread_states[tids["sleeper"]]
    assert sleeper.restarted and sleeper.orig_rax == 219
    assert sleeper.syscall_name == "clock_nanosleep"

    # the calls decoded
    for dump in (first, twice):
        statuses = {s.thread_id: s for s in thread_statuses(dump)}
        main = statuses[tids["main"]].call
        assert main is not None and main.name == "read"
        assert main.details["fd"] == 0
        assert main.details["fd_target"] == os.readlink(f"/proc/{target.pid}/fd/0")
        assert main.details["fd_target"].startswith("pipe:[")
        ep = statuses[tids["epoller"]].call
        assert ep is not None and ep.name == "epoll_wait"
        assert ep.details["fd"] == target.int("epfd")
        assert ep.details["fd_target"] == "anon_inode:[eventpoll]"
        assert ep.details["timeout_ms"] == -1
        sl = statuses[tids["sleeper"]].call
        assert sl is not None and sl.name == "clock_nanosleep"
        assert (sl.details["clock"], sl.details["absolute"], sl.details["seconds"]) \
            == ("CLOCK_REALTIME", False, 1000)
        raw_call = statuses[tids["raw_sleeper"]].call
        assert raw_call is not None
        if dump is twice:
            assert raw_call.name is None and raw_call.restarted
            assert raw_call.describe() == "restart_syscall (original call unknown) [restarted]"
        po = statuses[tids["poller"]].call
        assert po is not None and po.name == "poll" and po.details["timeout_ms"] == -1
        assert po.details["fds"] == [{"fd": target.int("pipe"), "events": 1,  # POLLIN
                                      "target": os.readlink(f"/proc/{target.pid}/fd/"
                                                            f"{target.int('pipe')}")}]
        reaper = statuses[tids["reaper"]].call
        assert reaper is not None and reaper.name == "wait4"
        assert reaper.details["pid"] == target.int("child")
        cw = statuses[tids["cond_waiter"]].call
        assert cw is not None and cw.details["address"] == addr["cond"] + 40

    # futex waits from the call and memory alone
    waits = futex_waits(twice)
    futex_roles = [r for r in ROLES if EXPECTED_CALL[r] == 202]
    assert set(waits) == {tids[r] for r in futex_roles}
    pi = waits[tids["pi_waiter"]]
    assert (pi.kind, pi.address, pi.owner_tid, pi.owner_died) \
        == (WaitKind.PI_MUTEX, addr["pi"], tids["main"], False)
    robust = waits[tids["robust_waiter"]]
    assert (robust.kind, robust.address, robust.owner_tid) \
        == (WaitKind.ROBUST_MUTEX, addr["robust"], tids["main"])
    join = waits[tids["joiner"]]
    assert (join.kind, join.owner_tid) == (WaitKind.JOIN, tids["sleeper"])
    assert join.address == target.int("sleeper_pthread") + 720  # glibc 2.36 (analysis.md B.4)
    for role in ("mutex_waiter", "cond_waiter", "sem_waiter", "rw_reader", "rw_writer",
                 "rec_waiter", "err_waiter"):
        wait = waits[tids[role]]
        assert wait.kind is WaitKind.UNKNOWN and wait.owner_tid is None, role
        assert "needs the libc frame" in wait.reason, role

    # with gdb's call stacks as the frames, the kinds the frame tells are told
    frames = {tid: [_Frame(f) for f in names] for tid, names in gdb_frames.items()}
    told = futex_waits(twice, frames)
    mutex = told[tids["mutex_waiter"]]
    assert (mutex.kind, mutex.address, mutex.owner_tid) \
        == (WaitKind.MUTEX, addr["normal"], tids["main"])
    assert (told[tids["cond_waiter"]].kind, told[tids["cond_waiter"]].owner_tid) \
        == (WaitKind.CONDVAR, None)
    assert (told[tids["sem_waiter"]].kind, told[tids["sem_waiter"]].owner_tid) \
        == (WaitKind.SEMAPHORE, None)
    assert told[tids["pi_waiter"]] == pi and told[tids["robust_waiter"]] == robust
    for role, obj in (("rec_waiter", "rec"), ("err_waiter", "err")):
        wait = told[tids[role]]
        assert (wait.kind, wait.address, wait.owner_tid) \
            == (WaitKind.MUTEX, addr[obj], tids["main"]), role
    for role, offset in (("rw_reader", 8), ("rw_writer", 12)):  # analysis.md B.5
        wait = told[tids[role]]
        assert (wait.kind, wait.object_address, wait.address, wait.owner_tid) \
            == (WaitKind.RWLOCK, addr["rw"], addr["rw"] + offset, tids["main"]), role

    # JSON views carry the same facts
    as_json = json.loads(json.dumps([s.to_json() for s in thread_statuses(twice)]))
    main_json = next(t for t in as_json if t["id"] == tids["main"])
    assert main_json["call"]["syscall"] == "read" and main_json["call"]["details"]["fd"] == 0
    pi_json = json.loads(json.dumps(pi.to_json()))
    assert (pi_json["kind"], pi_json["owner_tid"], pi_json["address"]) \
        == ("pi_mutex", tids["main"], hex(addr["pi"]))

    # the lock memory: what the analysis read is in the MINI dump; measure its cost
    without = _dump(target.pid, tmp_path / "without.dmp", max_lock_memory_bytes=0)
    with_size = (tmp_path / "twice.dmp").stat().st_size
    without_size = (tmp_path / "without.dmp").stat().st_size
    for name in ("pi", "robust", "sem"):
        assert len(twice.memory.read(addr[name], 32)) == 32
    # Breakpad's minidump_dump reads the file (the new stream included) and its MemoryList
    # holds the lock objects
    out = run("breakpad-minidump-dump", tmp_path / "twice.dmp").stdout
    ranges = [(int(a, 16), int(n, 16)) for a, n in re.findall(
        r"MDMemoryDescriptor\n  start_of_memory_range = (0x[0-9a-f]+)\n"
        r"  memory.data_size\s+= (0x[0-9a-f]+)", out)]
    for name in ("pi", "robust", "sem", "normal", "rw"):
        assert any(a <= addr[name] and addr[name] + 40 <= a + n for a, n in ranges), name
    stream = twice.stream(mdk.StreamType.MinidumpkitThreadStateStream)
    assert stream is not None
    bare = without_size - stream.data_size  # neither the lock memory nor the state stream
    ratio = with_size / bare
    print(f"MINI with lock memory and state stream {with_size} B, without lock memory "
          f"{without_size} B, without both {bare} B: ratio {ratio:.4f}")
    assert ratio <= 1.10
    for dump in (first, again, twice, without):
        dump.close()


def test_foreign_dump_without_state_stream(
        target_bins: dict[str, Path], start_target: Callable[..., Any], tmp_path: Path) -> None:
    """A dump without minidumpkit's stream (Breakpad-style): the blocked calls are
    inferred from rax and the call site, and said to be."""
    target = start_target([str(target_bins["locks_target"])])
    tids = _tids(target)
    kernel = _park_and_read(target)
    dump = _dump(target.pid, tmp_path / "a.dmp")
    data = bytearray((tmp_path / "a.dmp").read_bytes())
    info = dump.stream(mdk.StreamType.MinidumpkitThreadStateStream)
    assert info is not None
    dump.close()
    # turn the stream into an unused directory entry, as another writer would not have it
    header_dir = int.from_bytes(data[12:16], "little")
    entry = header_dir + 12 * info.index
    data[entry:entry + 4] = bytes(4)
    foreign = mdk.open_minidump(bytes(data))
    assert foreign.thread_states == {}
    statuses = {s.thread_id: s for s in thread_statuses(foreign)}
    for role, tid in tids.items():
        call = statuses[tid].call
        if role in ("epoller", "raw_sleeper"):
            # epoll_wait was broken off with EINTR by the stop (not provably blocked);
            # syscall() loads the number from a register (no constant at the call site)
            assert call is None, role
            continue
        assert call is not None and call.source.startswith("registers and code"), role
        assert call.number == kernel[role]["nr"], role
    foreign.close()


def test_lock_memory_missing_or_stream_malformed(
        target_bins: dict[str, Path], start_target: Callable[..., Any], tmp_path: Path) -> None:
    """A Normal dump without the lock memory holds no mutex bytes (the mutexes are
    globals, on no stack): owners are unknown, with the reason; a malformed state
    stream falls back to the registers, and says why where nothing is found."""
    target = start_target([str(target_bins["locks_target"])])
    tids = _tids(target)
    _park_and_read(target)
    bare = _dump(target.pid, tmp_path / "bare.dmp", mdk.MiniDumpType.Normal,
                 max_lock_memory_bytes=0)
    pi_addr = target.int("pi")
    with pytest.raises(mdk.MemoryNotCaptured):
        bare.memory.read(pi_addr, 4)
    waits = futex_waits(bare)
    pi = waits[tids["pi_waiter"]]
    assert (pi.kind, pi.owner_tid) == (WaitKind.PI_MUTEX, None)
    assert "not in the dump" in pi.reason
    # the robust mutex cannot be matched to a list without its memory: unknown, not a guess
    assert waits[tids["robust_waiter"]].kind is WaitKind.UNKNOWN
    full = _dump(target.pid, tmp_path / "full.dmp", mdk.MiniDumpType.Normal)
    assert full.memory.read(pi_addr, 4)
    assert futex_waits(full)[tids["pi_waiter"]].owner_tid == tids["main"]

    data = bytearray((tmp_path / "full.dmp").read_bytes())
    info = full.stream(mdk.StreamType.MinidumpkitThreadStateStream)
    assert info is not None
    data[info.rva + 8:info.rva + 12] = (10_000).to_bytes(4, "little")  # entries past the end
    broken = mdk.open_minidump(bytes(data))
    with pytest.raises(mdk.MinidumpFormatError):
        broken.thread_states
    statuses = {s.thread_id: s for s in thread_statuses(broken)}
    pi_call = statuses[tids["pi_waiter"]].call
    assert pi_call is not None and pi_call.source.startswith("registers and code")
    assert "thread state stream unreadable" in statuses[tids["epoller"]].note
    for dump in (bare, full, broken):
        dump.close()


def test_walker_frames_tell_every_kind(
        target_bins: dict[str, Path], start_target: Callable[..., Any], tmp_path: Path) -> None:
    """With our own walker's frames every futex wait of the target gets its kind and owner."""
    from minidumpkit.analysis import walk_stacks

    target = start_target([str(target_bins["locks_target"])])
    tids = _tids(target)
    _park_and_read(target)
    dump = _dump(target.pid, tmp_path / "a.dmp")
    frames = {cs.thread_id: cs.frames for cs in walk_stacks(dump)}
    waits = futex_waits(dump, frames)
    main = tids["main"]
    expected = {"mutex_waiter": (WaitKind.MUTEX, main), "pi_waiter": (WaitKind.PI_MUTEX, main),
                "robust_waiter": (WaitKind.ROBUST_MUTEX, main),
                "cond_waiter": (WaitKind.CONDVAR, None), "sem_waiter": (WaitKind.SEMAPHORE, None),
                "joiner": (WaitKind.JOIN, tids["sleeper"]), "rw_reader": (WaitKind.RWLOCK, main),
                "rw_writer": (WaitKind.RWLOCK, main), "rec_waiter": (WaitKind.MUTEX, main),
                "err_waiter": (WaitKind.MUTEX, main)}
    assert {role: (waits[tids[role]].kind, waits[tids[role]].owner_tid) for role in expected} \
        == expected
    dump.close()
