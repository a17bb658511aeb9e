"""The writer's Python-aware capture on real CPython 3.11, 3.12 and 3.13 children.

Oracles: the child's own sys._current_frames() record (tests/targets/py_stacks_child.py)
and, for the dumps the capture makes small, a FULL dump (all memory, no capture) of the
same snapshot read without the capture's stream; the independent readers
(minidump-stackwalk, Breakpad's minidump_stackwalk, lldb, udmp-parser, skelsec's
minidump) must accept the dump with its MinidumpkitPythonStream. Sizes and pauses are
printed (run with -s), never asserted as timings.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from oracles import run
from test_python_stacks import (
    CHILD,
    VERSIONS,
    by_os_thread,
    check_against_truth,
    frames_of,
    interpreter,
    start_child,
)

import minidumpkit as mdk
from minidumpkit import DumpType, PssCaptureFlags, StreamType
from minidumpkit._pyruntime import ModuleRef, walk_process
from minidumpkit.analysis import python_stacks

from conftest import Target, assert_released, wait_until

pytestmark = pytest.mark.live

SNAPSHOT = (PssCaptureFlags.VA_CLONE | PssCaptureFlags.THREADS | PssCaptureFlags.THREAD_CONTEXT
            | PssCaptureFlags.VA_SPACE)


def start_three(start_target: Any, version: str, tmp_path: Path) -> tuple[Target, dict[str, Any]]:
    """The child with three threads: main (asleep), busy (running Python), sleeper.

    Run without site (-S): on this machine the 3.11 interpreter's site-packages holds
    .pth files (test tooling installed into it) that import lzma, random, hashlib and
    more into every 3.11 process: 114 mappings instead of the 48 a plain 3.11, 3.12 or
    3.13 child has, i.e. 10 KB more of /proc/PID/maps in the dump (measured: 63.6 to
    66.6 KB for DumpType.PYTHON with them)."""
    truth_file = tmp_path / "truth.json"
    target: Target = start_target([interpreter(version), "-S", CHILD, truth_file,
                                   "busy,sleeper"])
    target.wait_parked("pid", "sleeper")
    main_call = Path(f"/proc/{target.pid}/task/{target.pid}/syscall")
    wait_until(lambda: main_call.read_text().split()[0] in ("230", "35"),
               "the main thread to sleep in clock_nanosleep")
    return target, json.loads(truth_file.read_text())


def stream_of(path: Path) -> Any:
    with mdk.open_minidump(path) as dump:
        return dump.minidumpkit_python


def memory_ranges(path: Path) -> list[tuple[int, int]]:
    with mdk.open_minidump(path) as dump:
        return [(r.start, r.end) for r in dump.memory.ranges]


def covered(ranges: list[tuple[int, int]]) -> set[int]:
    """Every 16-byte granule the ranges touch (a set comparison of dump coverage)."""
    return {a for start, end in ranges for a in range(start & ~15, end, 16)}


@pytest.mark.parametrize("version", VERSIONS)
def test_mini_dump_alone_gives_current_frames(start_target: Any, tmp_path: Path,
                                              version: str) -> None:
    """A MINI dump now holds the Python stacks: the dump alone (no local files) equals the
    child's sys._current_frames() record, and a FULL + all_memory dump of it."""
    target, truth = start_child(start_target, version, tmp_path)
    busy = target.int("busy")
    mini = mdk.dump(target.pid, tmp_path / "mini.dmp", type=DumpType.MINI)
    assert_released(target.pid)
    full = mdk.dump(target.pid, tmp_path / "full.dmp", type=DumpType.FULL, all_memory=True,
                    python=False)
    assert_released(target.pid)
    with mdk.open_minidump(mini) as dump:
        info = dump.minidumpkit_python
        runtime = python_stacks(dump, use_local_files=False)
        libpython = next(m for m in dump.modules if m.name == runtime.module)
        # the symbol lookup's reads are in the dump too: a reader that ignores the stream
        # finds _PyRuntime in the dump's memory alone
        modules = [ModuleRef(m.name, m.base, m.size, m.build_id) for m in dump.modules]
        blind = walk_process(dump.memory, modules, open_file=None)
    assert blind.found_by == "dump memory (ELF dynamic symbols)", blind.status
    assert info is not None and blind.runtime_address == info.runtime_address
    assert [frames_of(t) for t in blind.threads] == [frames_of(t) for t in runtime.threads]
    assert runtime.found_by == "minidumpkit Python stream"
    check_against_truth(runtime, truth, busy)
    assert info is not None and info.status == "complete"
    assert info.version_hex == truth["version"]
    assert info.version == runtime.version and info.layout == runtime.layout
    assert libpython.base == info.module_base
    assert libpython.base <= info.runtime_address < libpython.end
    assert info.details["threads"] == len(truth["threads"])
    assert info.details["frames"] == sum(len(t["frames"]) for t in truth["threads"])
    with mdk.open_minidump(full) as dump:
        assert dump.minidumpkit_python is None  # python=False: no stream
        reference = python_stacks(dump, use_local_files=False)
    assert reference.found_by == "dump memory (ELF dynamic symbols)"
    ours, theirs = by_os_thread(runtime), by_os_thread(reference)
    assert sorted(ours) == sorted(theirs)
    for tid, thread in ours.items():
        if tid == busy:  # it ran between the two dumps: the same calls
            assert [f[:3] for f in frames_of(thread)] == [f[:3] for f in frames_of(theirs[tid])]
        else:
            assert frames_of(thread) == frames_of(theirs[tid])
    assert info.range_count > 0 and info.range_bytes > 0
    print(f"\n{version}: capture {info.range_count} ranges, {info.range_bytes} B, "
          f"walk {info.walk_ns / 1e6:.2f} ms")


@pytest.mark.parametrize("version", VERSIONS)
def test_capture_cost_on_a_mini_dump(start_target: Any, tmp_path: Path, version: str) -> None:
    """Same snapshot, MINI with and without the capture: python=False adds nothing (no
    stream, no Python memory, its stacks unreadable from the dump alone); the capture
    adds at most 16 KB. The extra pause of a stop-and-dump is measured and printed."""
    target, _ = start_child(start_target, version, tmp_path)
    with mdk.Dumper(target.pid).snapshot(SNAPSHOT) as snap:
        without = snap.write(tmp_path / "without.dmp", DumpType.MINI, python=False)
        with_py = snap.write(tmp_path / "with.dmp", DumpType.MINI)
    assert_released(target.pid)
    assert stream_of(without) is None
    info = stream_of(with_py)
    assert info is not None and info.status == "complete"
    before, after = memory_ranges(without), memory_ranges(with_py)
    assert covered(before) <= covered(after)
    with mdk.open_minidump(without) as dump:
        assert StreamType.MinidumpkitPythonStream not in {s.type for s in dump.streams}
        assert python_stacks(dump, use_local_files=False).status.startswith(
            "no Python runtime found")
    with mdk.open_minidump(with_py) as dump:
        assert python_stacks(dump, use_local_files=False).status == "ok"
    added = with_py.stat().st_size - without.stat().st_size
    assert 0 < added <= 16 * 1024, added
    # the pause of a stop-and-dump, with and without the capture (alternated; printed)
    pauses: dict[bool, list[int]] = {True: [], False: []}
    dumper = mdk.Dumper(target.pid)
    for i in range(6):
        python = bool(i % 2)
        dumper.write(tmp_path / f"p{i}.dmp", DumpType.MINI, python=python)
        pauses[python].append(dumper.last_times.pause_ns)  # type: ignore[attr-defined]
        assert_released(target.pid)
    walk = stream_of(tmp_path / "p5.dmp").walk_ns
    print(f"\n{version}: MINI {without.stat().st_size} B, +{added} B with the capture "
          f"({info.range_count} ranges, {info.range_bytes} B); pause median "
          f"{sorted(pauses[False])[1] / 1e6:.2f} ms without, {sorted(pauses[True])[1] / 1e6:.2f} "
          f"ms with; walk {walk / 1e6:.2f} ms")


@pytest.mark.parametrize("version", VERSIONS)
def test_python_preset_is_tiny_and_equals_full(start_target: Any, tmp_path: Path,
                                               version: str) -> None:
    """DumpType.PYTHON of a 3-thread process: at most 64 KB, the same stacks as a FULL
    dump of the same snapshot (read without the capture's stream), and the record's."""
    target, truth = start_three(start_target, version, tmp_path)
    with mdk.Dumper(target.pid).snapshot(SNAPSHOT) as snap:
        tiny = snap.write(tmp_path / "python.dmp", DumpType.PYTHON)
        full = snap.write(tmp_path / "full.dmp", DumpType.FULL, all_memory=True, python=False)
    assert_released(target.pid)
    assert len(truth["threads"]) == 3
    size = tiny.stat().st_size
    print(f"\n{version}: DumpType.PYTHON of 3 threads: {size} B "
          f"(FULL + all_memory: {full.stat().st_size} B)")
    assert size <= 64 * 1024, size
    with mdk.open_minidump(tiny) as dump:
        ours = python_stacks(dump, use_local_files=False)
    with mdk.open_minidump(full) as dump:
        theirs = python_stacks(dump, use_local_files=False)
    assert ours.status == theirs.status == "ok", (ours.status, theirs.status)
    assert ours.found_by == "minidumpkit Python stream"
    assert theirs.found_by == "dump memory (ELF dynamic symbols)"
    mine, ref = by_os_thread(ours), by_os_thread(theirs)
    assert sorted(mine) == sorted(ref) == sorted(t["native_id"] for t in truth["threads"])
    for tid in mine:
        assert frames_of(mine[tid]) == frames_of(ref[tid])
        assert mine[tid].holds_gil == ref[tid].holds_gil
        assert [f.is_entry for f in mine[tid].frames] == [f.is_entry for f in ref[tid].frames]
    busy = target.int("busy")
    for expected in truth["threads"]:
        if expected["native_id"] != busy:
            assert frames_of(mine[expected["native_id"]]) == expected["frames"]


def runtime_head(version_hex: int) -> bytes:
    """The first bytes of an initialized _PyRuntime, from CPython's headers: 3.11 and
    3.12 start with int _initialized, preinitializing, preinitialized, core_initialized,
    initialized (1, 0, 1, 1, 1); 3.13 with _Py_DebugOffsets: "xdebugpy", PY_VERSION_HEX."""
    if version_hex >> 16 >= 0x030D:
        return b"xdebugpy" + struct.pack("<Q", version_hex)
    return struct.pack("<5i", 1, 0, 1, 1, 1)


def lldb_bytes(output: str, count: int) -> bytes:
    """The bytes of `memory read -s1 -fx -c N` in lldb's output."""
    words = re.findall(r"^0x[0-9a-f]+: ((?:0x[0-9a-f]{2}\s*)+)$", output, re.MULTILINE)
    return bytes(int(x, 16) for line in words for x in line.split())[:count]


@pytest.mark.parametrize("version,dump_type", [(v, "PYTHON") for v in VERSIONS]
                         + [("3.12.1", "MINI")])
def test_validators_accept_the_python_stream(start_target: Any, tmp_path: Path, version: str,
                                             dump_type: str) -> None:
    """minidump-stackwalk, Breakpad's minidump_stackwalk, lldb, udmp-parser and skelsec's
    minidump read a dump holding the new user stream; lldb reads the captured
    _PyRuntime, whose first bytes CPython's headers define."""
    target, truth = start_child(start_target, version, tmp_path)
    tids = sorted(int(p.name) for p in Path(f"/proc/{target.pid}/task").iterdir())
    path = mdk.dump(target.pid, tmp_path / "py.dmp", type=getattr(DumpType, dump_type))
    assert_released(target.pid)
    info = stream_of(path)
    assert info is not None and info.status == "complete"
    head = runtime_head(truth["version"])
    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    assert rust["status"] == "OK"
    assert sorted(t["thread_id"] for t in rust["threads"]) == tids
    dumped = run("minidump-stackwalk", "--dump", path, check=True).stdout
    assert "0x4d4b0004" in dumped.lower(), dumped[:3000]
    breakpad = run("breakpad-stackwalk", "-m", path, check=True).stdout
    threads = {int(m) for m in re.findall(r"^(\d+)\|\d+\|", breakpad, re.MULTILINE)}
    assert threads == set(range(len(tids))), breakpad[-2000:]
    lldb = run("lldb", "--batch", "--no-lldbinit", "-c", path, "-o", "thread list",
               "-o", f"memory read --force -s1 -fx -c{len(head)} {info.runtime_address:#x}",
               check=True).stdout
    assert sorted(int(x) for x in re.findall(r"thread #\d+: tid = (\d+)", lldb)) == tids
    assert lldb_bytes(lldb, len(head)) == head, lldb[-1500:]
    from minidump.minidumpfile import MinidumpFile

    mf = MinidumpFile.parse(str(path))
    assert sorted(t.ThreadId for t in mf.threads.threads) == tids
    # udmp-parser reads memory only through MemoryInfoList regions backed by Memory64List
    # (full dumps; it answers None or [] even for stacks here): it must parse the file
    code = ("import sys, udmp_parser; d = udmp_parser.UserDumpParser();"
            " print(int(d.Parse(sys.argv[1])), len(d.Threads()))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert out == ["1", str(len(tids))], out


def test_cli_no_python_and_python_preset(start_target: Any, tmp_path: Path) -> None:
    """`minidumpkit dump --no-python` writes no Python stream; `--python` is
    DumpType.PYTHON, whose stacks `info --python-only` prints."""
    target, truth = start_child(start_target, "3.13.0", tmp_path)
    cli = [sys.executable, "-m", "minidumpkit"]
    plain, tiny = tmp_path / "plain.dmp", tmp_path / "tiny.dmp"
    subprocess.run([*cli, "dump", "--no-python", "-o", str(plain), str(target.pid)], check=True,
                   timeout=120, capture_output=True)
    subprocess.run([*cli, "dump", "--python", "-o", str(tiny), str(target.pid)], check=True,
                   timeout=120, capture_output=True)
    assert_released(target.pid)
    assert stream_of(plain) is None
    with mdk.open_minidump(tiny) as dump:
        assert dump.minidumpkit_info is not None
        assert dump.minidumpkit_info.dump_type == DumpType.PYTHON
        assert dump.minidumpkit_python is not None
    text = subprocess.run([*cli, "info", "--python-only", str(tiny)], check=True,
                          capture_output=True, text=True, timeout=120).stdout
    sleeper = next(t for t in truth["threads"] if t["native_id"] == target.int("sleeper"))
    name, qualname, file, line = sleeper["frames"][0]
    assert f'  File "{file}", line {line}, in {qualname}' in text


def test_no_stream_for_a_process_without_python(main_dump: Any) -> None:
    """The shared MINI dump of the C target (no libpython, no python executable): the
    capture reads nothing and writes no stream."""
    with mdk.open_minidump(main_dump.path) as dump:
        assert not any("python" in m.name for m in dump.modules)
        assert dump.minidumpkit_python is None
        assert StreamType.MinidumpkitPythonStream not in {s.type for s in dump.streams}


def test_time_limit_records_a_partial_walk(start_target: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk that runs out of its budget while the target is held stops there: the stream
    says "partial walk: time limit reached", the dump is still whole and the reader says
    what is missing instead of failing."""
    from minidumpkit._backends import _python_capture

    target, _ = start_child(start_target, "3.12.1", tmp_path)
    monkeypatch.setattr(_python_capture, "HELD_TIME_LIMIT", 0.0)
    path = mdk.dump(target.pid, tmp_path / "late.dmp", type=DumpType.MINI)
    assert_released(target.pid)
    with mdk.open_minidump(path) as dump:
        info = dump.minidumpkit_python
        assert info is not None
        assert info.status == "partial walk: time limit reached", info.status
        assert info.details["threads"] == 0 and info.details["time_limit_ns"] == 0
        assert len(dump.threads) == len(list(Path(f"/proc/{target.pid}/task").iterdir()))
        runtime = python_stacks(dump, use_local_files=False)
    assert runtime.found_by == "minidumpkit Python stream"
    assert runtime.status.startswith("partial walk: ") and not runtime.threads, runtime.status


@pytest.mark.parametrize("damage", ["json", "header"])
def test_broken_stream_is_a_format_error(start_target: Any, tmp_path: Path, damage: str) -> None:
    """A stream whose JSON is not JSON, or whose header claims more bytes than the stream
    has: MinidumpFormatError from the reader (and from python_stacks), as for any broken
    stream; the rest of the dump still reads."""
    from minidumpkit import format as md

    target, _ = start_child(start_target, "3.13.0", tmp_path)
    path = mdk.dump(target.pid, tmp_path / "py.dmp", type=DumpType.PYTHON)
    assert_released(target.pid)
    with mdk.open_minidump(path) as dump:
        info = next(s for s in dump.streams if s.type == StreamType.MinidumpkitPythonStream)
        rva, size = info.rva, info.data_size
    data = bytearray(path.read_bytes())
    if damage == "json":
        data[rva + md.MinidumpkitPython.SIZE] = ord("X")
    else:
        data[rva:rva + 4] = (size + 1).to_bytes(4, "little")
    broken = tmp_path / "broken.dmp"
    broken.write_bytes(bytes(data))
    with mdk.open_minidump(broken) as dump:
        assert len(dump.threads) == 4
        with pytest.raises(mdk.MinidumpFormatError, match="minidumpkit python"):
            dump.minidumpkit_python
        with pytest.raises(mdk.MinidumpFormatError):
            python_stacks(dump)


SELF_DUMP = """
import os, sys
import minidumpkit as mdk

def dump_myself(path):
    return mdk.dump(os.getpid(), path, type=mdk.DumpType.PYTHON)

def caller(path):
    dump_myself(path)

caller(sys.argv[1])
"""


def test_dump_of_its_own_process_holds_its_stack(tmp_path: Path) -> None:
    """A process dumping itself (through the helper process) gets the capture too: its
    own stack, the calling thread in dump_myself at the line of its dump() call, called
    from caller. (A small child rather than pytest itself: pytest's deep stack can take
    the walk past its 10 ms budget on a loaded machine, which is then a partial walk.)"""
    script = tmp_path / "self_dump.py"
    script.write_text(SELF_DUMP)
    path = tmp_path / "self.dmp"
    env = dict(os.environ, PYTHONPATH=str(Path(mdk.__file__).parents[1]))
    proc = subprocess.run([sys.executable, str(script), str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with mdk.open_minidump(path) as dump:
        info = dump.minidumpkit_python
        runtime = python_stacks(dump, use_local_files=False)
        main_tid = dump.misc_info.process_id if dump.misc_info else None
    assert info is not None and info.status == "complete", info
    assert info.version_hex == sys.hexversion  # the child runs this interpreter
    assert main_tid is not None
    frames = by_os_thread(runtime)[main_tid].frames
    names = [f.function for f in frames]
    at = names.index("dump_myself")
    assert names[at + 1:] == ["caller", "<module>"]
    assert frames[at].filename == str(script)
    assert frames[at].line == SELF_DUMP.splitlines().index(
        "    return mdk.dump(os.getpid(), path, type=mdk.DumpType.PYTHON)") + 1


def test_unsupported_version_is_named_and_adds_no_memory(start_target: Any,
                                                          tmp_path: Path) -> None:
    """CPython 3.10 (no layout here): the stream names why, no memory is added; the same
    snapshot's MINI with python=False holds the same memory."""
    exe = Path("/root/.pyenv/versions/3.10.13/bin/python3")
    if not exe.exists():
        pytest.skip(f"CPython 3.10 is not installed at {exe}")
    target: Target = start_target([exe, "-c", "import time\nprint('READY', flush=True)\n"
                                   "time.sleep(3600)\n"])
    target.wait_parked()
    with mdk.Dumper(target.pid).snapshot(SNAPSHOT) as snap:
        with_py = snap.write(tmp_path / "with.dmp", DumpType.MINI)
        without = snap.write(tmp_path / "without.dmp", DumpType.MINI, python=False)
    assert_released(target.pid)
    info = stream_of(with_py)
    assert info is not None
    assert info.status.startswith("no Python runtime found: "), info.status
    assert info.range_count == 0 and info.range_bytes == 0
    assert memory_ranges(with_py) == memory_ranges(without)
