"""FULL dumps laid out as dbghelp's: Memory64List holds every captured byte, stacks
included, MemoryList is empty, and each thread's stack descriptor points at its bytes
inside the Memory64 data. Checked on live C and Python targets and on real Debian
programs (python3, memcached, sqlite3, node) by every independent reader: udmp-parser
and the skelsec ``minidump`` package (which read no MemoryList), lldb, rust-minidump,
Breakpad's walker and minidump_dump, and LLVM's obj2yaml. Each thread's stack bytes
must be readable by address in every one of them and equal across them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.live, pytest.mark.validators,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

import minidumpkit as mdk  # noqa: E402
from minidumpkit import format as md  # noqa: E402
from minidumpkit.flags import StreamType  # noqa: E402
from oracles import run  # noqa: E402
from test_flags_memory import obj2yaml_summary  # noqa: E402

# what lldb reads at each thread's stack pointer (its bytes are compared with ours)
LLDB_READ = 512

_PYTHON_READERS = r'''
import hashlib, json, logging, sys
import udmp_parser
from minidump.minidumpfile import MinidumpFile

path, stacks = sys.argv[1], json.loads(sys.argv[2])   # {tid: [start, size]}
digest = lambda b: None if b is None else hashlib.sha256(bytes(b)).hexdigest()
out = {}
u = udmp_parser.UserDumpParser()
ok = u.Parse(path)
out["udmp"] = {"ok": ok}
if ok:
    threads = u.Threads()
    out["udmp"]["threads"] = {str(t): threads[t].Context.Rsp for t in threads}
    out["udmp"]["stacks"] = {tid: digest(u.ReadMemory(a, n)) for tid, (a, n) in stacks.items()}
logging.disable(logging.CRITICAL)  # skelsec logs its (survived) Windows PEB lookup
m = MinidumpFile.parse(path)
reader = m.get_reader()
sk = {"threads": {}, "stacks": {}, "memory_list": None}
for t in m.threads.threads:
    s = t.Stack
    sk["threads"][str(t.ThreadId)] = [s.StartOfMemoryRange, s.DataSize, s.Rva,
                                      t.ContextObject.Rsp]
for tid, (a, n) in stacks.items():
    try:
        sk["stacks"][tid] = digest(reader.read(a, n))
    except Exception as e:
        sk["stacks"][tid] = f"error: {e}"
if m.memory_segments is not None:
    sk["memory_list"] = len(m.memory_segments.memory_segments)
sk["memory64"] = len(m.memory_segments_64.memory_segments) if m.memory_segments_64 else None
out["skelsec"] = sk
print(json.dumps(out))
'''


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def python_readers(path: Path, stacks: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """udmp-parser and skelsec in a child process: thread ids, stack pointers, stack
    descriptors, and the stack bytes each reads by address (sha256)."""
    proc = subprocess.run([sys.executable, "-c", _PYTHON_READERS, str(path),
                           json.dumps({str(t): list(v) for t, v in stacks.items()})],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return data


def check_full_dump(path: Path, work: Path) -> dict[str, int]:
    """Every reader on one FULL dump; returns a few counts for the caller's assertions."""
    with mdk.open_minidump(path) as d:
        ml = d.stream(StreamType.MemoryListStream)
        m64 = d.stream(StreamType.Memory64ListStream)
        assert ml is not None and m64 is not None
        assert d.raw_stream(StreamType.MemoryListStream) == b"\0\0\0\0"  # empty, as dbghelp
        base_rva = md.Memory64ListHeader.unpack_from(
            d.raw_stream(StreamType.Memory64ListStream) or b"").base_rva
        threads = d.threads
        ours: dict[int, bytes] = {}
        sps: dict[int, int] = {}
        for t in threads:
            assert t.stack_size > 0, f"thread {t.thread_id} has no stack in the dump"
            assert t._stack_rva >= base_rva  # its bytes are the Memory64 data's
            ours[t.thread_id] = t.stack
            assert d.memory.read(t.stack_start, t.stack_size) == ours[t.thread_id]
            sps[t.thread_id] = t.registers["rsp"]
            assert t.stack_start <= sps[t.thread_id] < t.stack_end
        stacks = {t.thread_id: (t.stack_start, t.stack_size) for t in threads}
        descriptors = {t.thread_id: [t.stack_start, t.stack_size, t._stack_rva] for t in threads}

    got = python_readers(path, stacks)
    assert got["udmp"]["ok"] is True
    assert {int(k): v for k, v in got["udmp"]["threads"].items()} == sps
    sk = got["skelsec"]
    assert {int(k): v[3] for k, v in sk["threads"].items()} == sps
    assert {int(k): v[:3] for k, v in sk["threads"].items()} == descriptors
    assert sk["memory_list"] in (0, None) and sk["memory64"]
    for tid, data in ours.items():
        assert got["udmp"]["stacks"][str(tid)] == sha(data), f"udmp-parser, thread {tid}"
        assert sk["stacks"][str(tid)] == sha(data), f"skelsec, thread {tid}"

    # lldb: the stack pointer of every thread and the bytes there
    order = [t for t in stacks]
    cmds = ["--batch", "--no-lldbinit", "-o", f"target create --core {path}"]
    for i, tid in enumerate(order, 1):
        out = work / f"lldb-{tid}.bin"
        cmds += ["-o", f"thread select {i}", "-o", "register read rsp",
                 "-o", f"memory read --force --binary --outfile {out} --count {LLDB_READ} $rsp"]
    proc = run("lldb", *cmds, check=True, timeout=300)
    lldb_sps = [int(x, 16) for x in re.findall(r"rsp = 0x([0-9a-f]+)", proc.stdout)]
    assert lldb_sps == [sps[tid] for tid in order], proc.stdout[-2000:]
    for tid in order:
        lo, _size = stacks[tid]
        at = sps[tid] - lo
        want = ours[tid][at:at + LLDB_READ]
        assert (work / f"lldb-{tid}.bin").read_bytes()[:len(want)] == want, f"lldb, thread {tid}"

    j = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    assert j["status"] == "OK"
    assert {t["thread_id"] for t in j["threads"]} == set(stacks)
    frames = sum(len(t["frames"]) for t in j["threads"])
    assert frames > len(stacks)  # walked past the contexts: the stacks were there

    proc = run("breakpad-stackwalk", path, check=True)
    assert "ERROR" not in proc.stderr, proc.stderr[-3000:]  # e.g. "No memory region for"
    assert len(re.findall(r"^Thread \d+", proc.stdout, re.M)) == len(stacks)
    proc = run("breakpad-minidump-dump", path)
    assert [line for line in proc.stderr.splitlines() if "ERROR" in line] == []
    assert "Memory64List" in obj2yaml_summary(path)
    return {"threads": len(stacks), "rust_frames": frames}


# --- live targets ------------------------------------------------------------------------

def test_full_dump_of_the_c_target(target_bins: dict[str, Path], start_target: Any,
                                   tmp_path: Path) -> None:
    """Six threads with known call chains: every reader reads every stack, and
    rust-minidump walks each thread's frame-pointer chain out of the Memory64 bytes."""
    t = start_target([target_bins["mdk_target"], str(tmp_path / "known.txt")])
    t.wait_parked("main", "reader", "sleeper", "regs", "futex")
    path = mdk.dump(t.pid, tmp_path / "full.dmp", mdk.DumpType.FULL)
    counts = check_full_dump(path, tmp_path)
    assert counts["threads"] == 6
    j = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    for thread in j["threads"]:
        assert len(thread["frames"]) >= 4, thread["thread_id"]  # level3..main


def test_full_dump_of_the_python_target(live: Any, start_target: Any, tmp_path: Path) -> None:
    t = start_target([sys.executable, live.targets_dir / "py_target.py"])
    t.wait_parked()
    path = mdk.dump(t.pid, tmp_path / "full.dmp", mdk.DumpType.FULL)
    assert check_full_dump(path, tmp_path)["threads"] == 4


def test_full_dump_over_4_gib_layout_keeps_stack_copies(target_bins: dict[str, Path],
                                                         start_target: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the Memory64 bytes could pass 4 GiB (the writer's estimate is forced to
    say so here; test_full_memory_big makes a real one), the stacks are also kept in
    MemoryList below it and the thread descriptors point there; Memory64List still
    holds every byte, and the readers that ignore MemoryList still read the stacks."""
    from minidumpkit import writer

    t = start_target([target_bins["mdk_target"], str(tmp_path / "known.txt")])
    t.wait_parked("main", "reader", "sleeper", "regs", "futex")

    def below_4gib(job: Any, sel: Any) -> bool:
        return False

    monkeypatch.setattr(writer._Job, "memory64_below_4gib", below_4gib)
    path = mdk.dump(t.pid, tmp_path / "full.dmp", mdk.DumpType.FULL)
    with mdk.open_minidump(path) as d:
        listed = [r for r in d.memory.ranges]
        m64 = d.stream(StreamType.Memory64ListStream)
        ml = d.stream(StreamType.MemoryListStream)
        assert m64 is not None and ml is not None and ml.data_size > 4
        base_rva = md.Memory64ListHeader.unpack_from(
            d.raw_stream(StreamType.Memory64ListStream) or b"").base_rva
        for th in d.threads:
            assert 0 < th._stack_rva < base_rva  # the MemoryList copy
            in64 = [r for r in listed if r.rva >= base_rva
                    and r.start <= th.stack_start and th.stack_end <= r.start + r.size]
            assert len(in64) == 1, th.thread_id  # and Memory64List holds it too
            r = in64[0]
            with open(path, "rb") as f:
                f.seek(r.rva + th.stack_start - r.start)
                assert f.read(th.stack_size) == th.stack
        stacks = {th.thread_id: (th.stack_start, th.stack_size) for th in d.threads}
    got = python_readers(path, stacks)
    assert got["udmp"]["ok"] is True and all(
        v and not v.startswith("error") for v in got["skelsec"]["stacks"].values())
    proc = run("breakpad-stackwalk", path, check=True)
    assert "ERROR" not in proc.stderr


# --- real Debian programs ------------------------------------------------------------------

def _parked(pid: int) -> bool:
    """Every thread of ``pid`` asleep in a system call."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        for tid in tids:
            call = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            if not call or call[0] == "running" or stat.rsplit(")", 1)[1].split()[0] != "S":
                return False
    except OSError:
        return False
    return True


def _program(name: str, tmp: Path) -> tuple[list[str], Callable[[int], bool]]:
    """argv of an idle Debian program and when it is ready (besides all threads parked)."""
    if name == "python3":  # Debian's, not the interpreter running the tests
        code = ("import threading, time\n"
                "ev = threading.Event()\n"
                "for _ in range(3): threading.Thread(target=ev.wait, daemon=True).start()\n"
                "print('ready', flush=True); time.sleep(3600)\n")
        return (["/usr/bin/python3", "-c", code],
                lambda pid: len(os.listdir(f"/proc/{pid}/task")) == 4)
    if name == "memcached":
        sock = tmp / "memcached.sock"
        return (["memcached", "-u", "root", "-p", "0", "-U", "0", "-s", str(sock), "-t", "4"],
                lambda pid: sock.exists())
    if name == "sqlite3":  # blocked reading its commands
        return ["sqlite3", str(tmp / "db.sqlite")], lambda pid: True
    if name == "node":
        return (["node", "-e", "setInterval(() => {}, 1e9)"],
                lambda pid: len(os.listdir(f"/proc/{pid}/task")) >= 5)
    raise AssertionError(name)


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """start(name) → pid of an idle Debian program; all are killed and reaped after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> int:
        argv, ready = _program(name, tmp_path)
        binary = argv[0] if argv[0].startswith("/") else shutil.which(argv[0])
        if binary is None:
            pytest.fail(f"{argv[0]} is required (Debian package; .ci/install-validators.sh "
                        "installs it)")
        proc = subprocess.Popen([binary, *argv[1:]], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + 30
        while not (proc.poll() is None and ready(proc.pid) and _parked(proc.pid)):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{argv[0]} did not come up idle (exit status {proc.poll()})")
            time.sleep(0.02)
        return proc.pid

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.wait(timeout=30)
            if proc.stdin is not None:
                proc.stdin.close()


@pytest.mark.parametrize("name", ["python3", "memcached", "sqlite3", "node"])
def test_full_dump_of_a_debian_program(name: str, program: Callable[[str], int],
                                       tmp_path: Path, live: Any) -> None:
    pid = program(name)
    path = mdk.dump(pid, tmp_path / f"{name}.dmp", mdk.DumpType.FULL)
    live.assert_released(pid)
    counts = check_full_dump(path, tmp_path)
    assert counts["threads"] == len(os.listdir(f"/proc/{pid}/task"))
