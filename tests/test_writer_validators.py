"""Independent readers on what minidumpkit's writer produces from synthetic captures.

The captures are those of tests/test_writer.py (same construction, same expected
values). Each reader is one of tests/oracles.py's validators (rust-minidump,
Breakpad, lldb, LLVM's obj2yaml, skelsec's ``minidump``, ``udmp_parser``), plus
Breakpad's minidump-2-core (the one consumer of LinuxDsoDebug) built from the
Breakpad sources the npm ``minidump`` package ships, and minidumpkit's own reader
for the round trip.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import TOOLS_DIR, run
from test_writer import (
    EXE,
    EXE_BUILD_ID,
    HANDLES,
    HEAP,
    HEAP_PTR,
    INDIRECT_WINDOWS,
    IP_WINDOWS,
    LIB,
    LIB_BUILD_ID,
    MAIN_REGS,
    MAIN_SP,
    NOID,
    PID,
    RAW_STREAMS,
    REGIONS,
    STACK_WORDS,
    STACKS,
    T2_REGS,
    T2_RIP,
    T3_REGS,
    Choosy,
    FakeMemory,
    Raw,
    build,
    check_invariants,
    context,
    guid_debug_id,
    merged,
    write,
)

import minidumpkit
from minidumpkit import DumpType, MiniDumpType
from minidumpkit._capture import (
    CapturedException,
    CapturedHandle,
    CapturedModule,
    CapturedThread,
)

pytestmark = pytest.mark.validators

NAMES = {PID: "synth-main", PID + 1: "worker-1", PID + 2: None}
REGS = {PID: MAIN_REGS, PID + 1: T2_REGS, PID + 2: T3_REGS}


@pytest.fixture(scope="module")
def mini_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("writer") / "mini.dmp"
    path.write_bytes(write(build(), DumpType.MINI)[0])
    return path


def rust_json(path: Path) -> dict[str, Any]:
    proc = run("minidump-stackwalk", "--json", path, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def lldb_uuid(build_id: bytes) -> str:
    """How lldb prints a UUID: dashes after bytes 4, 6, 8, 10 and 16."""
    hexes = build_id.hex().upper()
    cuts = [c for c in (4, 6, 8, 10, 16) if c < len(build_id)]
    parts, last = [], 0
    for c in cuts:
        parts.append(hexes[2 * last:2 * c])
        last = c
    parts.append(hexes[2 * last:])
    return "-".join(parts)


EMPTY_STACK = "MinidumpThread has a memory region problem, 0x"


def breakpad_errors(output: str, empty_stacks: int = 0) -> list[str]:
    """ERROR lines of Breakpad's minidump_dump, minus the streams we do not write
    (MemoryInfoList: Linux writers never have; minidump_dump asks unconditionally) and,
    up to ``empty_stacks``, the complaint about a thread without stack memory (a thread
    whose rsp is in no readable mapping; Breakpad's own comment: "This is ok")."""
    errors = [line for line in output.splitlines()
              if "ERROR" in line and "GetMemoryInfoList() failed" not in line]
    empty = [line for line in errors if EMPTY_STACK in line and "+0x0, RVA 0x0" in line]
    assert len(empty) <= empty_stacks, empty
    return [line for line in errors if line not in empty]


# --- rust-minidump ----------------------------------------------------------------------

def test_rust_minidump_json(mini_file: Path) -> None:
    """Threads with names, modules with code/debug ids from the build ids, pid, OS, crash."""
    d = rust_json(mini_file)
    assert d["status"] == "OK" and d["pid"] == PID and d["thread_count"] == 3
    assert [(t["thread_id"], t["thread_name"]) for t in d["threads"]] == list(NAMES.items())
    frames = {t["thread_id"]: t["frames"][0] for t in d["threads"]}
    for tid, regs in REGS.items():
        assert int(frames[tid]["offset"], 16) == regs["rip"]
    crashed = d["crashing_thread"]["frames"][0]["registers"]
    assert crashed["rbx"] == f"{T2_REGS['rbx']:#018x}" and crashed["rsp"] == f"{T2_REGS['rsp']:#018x}"
    mods = {m["filename"]: m for m in d["modules"]}
    assert mods["synth-app"]["code_id"] == EXE_BUILD_ID.hex()
    assert mods["synth-app"]["debug_id"] == guid_debug_id(EXE_BUILD_ID)
    assert mods["libsynth.so.1"]["code_id"] == LIB_BUILD_ID.hex()
    assert mods["libsynth.so.1"]["debug_id"] == guid_debug_id(LIB_BUILD_ID)
    assert mods["libnoid.so"]["code_id"] == ""
    assert d["main_module"] == 0
    assert d["crash_info"]["type"] == "DUMP_REQUESTED"
    assert int(d["crash_info"]["address"], 16) == T2_RIP and d["crash_info"]["crashing_thread"] == 1
    assert d["system_info"]["os"] == "Linux" and d["system_info"]["cpu_count"] == 2
    assert d["system_info"]["cpu_arch"] == "amd64"
    assert d["system_info"]["os_ver"] == "6.18.0-synth #1 SMP PREEMPT_DYNAMIC"
    assert d["system_info"]["cpu_microcode_version"] == "0x5003604"
    assert d["lsb_release"] == {"id": "Synthix", "release": "42.1", "codename": "tiny",
                                "description": "Synthix 42.1"}
    assert d["linux_memory_map_count"] == len(REGIONS)
    assert [(h["handle"], h["type_name"], h["object_name"]) for h in d["handles"]] == [
        (fd, t, n) for fd, t, n, _, _ in HANDLES]


def test_rust_minidump_dump(mini_file: Path) -> None:
    """--dump: MiscInfo pid, thread names, handle count, memory regions, Linux streams."""
    out = run("minidump-stackwalk", "--dump", mini_file, check=True).stdout
    assert re.search(r"process_id\s+= 4242\b", out)
    thread_list = out.split("MinidumpThreadList", 1)[1].split("MinidumpModuleList", 1)[0]
    contexts = re.findall(r"thread_id\s+= (0x[0-9a-f]+).*?context_flags = (0x[0-9a-f]+).*?"
                          r"rbx\s+= (0x[0-9a-f]+).*?rsp\s+= (0x[0-9a-f]+).*?r12\s+= (0x[0-9a-f]+)"
                          r".*?rip\s+= (0x[0-9a-f]+)", thread_list, re.DOTALL)
    assert [tuple(int(x, 16) for x in c) for c in contexts] == [
        (tid, 0x10001F, r["rbx"], r["rsp"], r.get("r12", 0), r["rip"]) for tid, r in REGS.items()]
    assert re.search(r"MinidumpThreadNames\n\s+thread_count = 2", out)
    assert re.search(r"MinidumpHandleDataStream\n\s+handle_count = 5", out)
    expected = merged([*STACKS.values(), *IP_WINDOWS, *INDIRECT_WINDOWS])
    assert re.search(rf"MinidumpMemoryList\n\s+region_count = {len(expected)}\b", out)
    starts = [int(x, 16) for x in re.findall(r"start_of_memory_range = (0x[0-9a-f]+)", out)]
    assert sorted(set(starts)) == [s for s, _ in expected]
    assert "Stream LinuxCmdLine:\n/opt/mdk-synth/bin/synth-app\\0\n--serve\\0" in out
    assert "DISTRIB_DESCRIPTION=\"Synthix 42.1\"" in out


# --- Breakpad -----------------------------------------------------------------------------

def test_breakpad_minidump_dump(mini_file: Path) -> None:
    """No ERROR but the absent MemoryInfoList; names, pid and module list as built."""
    proc = run("breakpad-minidump-dump", mini_file)
    out = proc.stdout + proc.stderr
    assert breakpad_errors(out) == []
    assert "thread_count = 3" in out
    assert 'thread_name                 = "synth-main"' in out
    assert 'thread_name                 = "worker-1"' in out
    assert re.search(r"process_id\s+= 4242\b", out)
    assert re.search(r'\(csd_version\)\s+= "Linux 6.18.0-synth', out)
    for path in (EXE, LIB, NOID):
        assert f'(code_file)                     = "{path}"' in out


def test_breakpad_stackwalk(mini_file: Path) -> None:
    """Breakpad's processor walks all three threads, blames the requesting one."""
    proc = run("breakpad-stackwalk", mini_file, check=True)
    out = proc.stdout
    assert "Crash reason:  DUMP_REQUESTED" in out
    assert f"Crash address: {T2_RIP:#x}" in out
    assert "Thread 1 (crashed)" in out and "\nThread 0\n" in out and "\nThread 2\n" in out
    for regs in REGS.values():
        assert f"rbx = {regs['rbx']:#018x}" in out
    assert guid_debug_id(EXE_BUILD_ID) in out and guid_debug_id(LIB_BUILD_ID) in out
    assert "2 CPUs" in out


@pytest.fixture(scope="session")
def md2core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Breakpad's minidump-2-core, built from the sources the npm minidump package ships."""
    deps = TOOLS_DIR / "npm" / "node_modules" / "minidump" / "deps"
    src = deps / "breakpad" / "src"
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or not (src / "tools/linux/md2core/minidump-2-core.cc").exists():
        pytest.fail("building Breakpad's minidump-2-core needs g++ and the npm minidump package "
                    "(.ci/install-validators.sh)")
    work = tmp_path_factory.mktemp("md2core")
    (work / "inc" / "third_party").mkdir(parents=True)
    (work / "inc" / "config.h").write_text("")
    (work / "inc" / "third_party" / "lss").symlink_to(deps / "third_party" / "lss")
    exe = work / "minidump-2-core"
    subprocess.run([cxx, "-O0", "-w", "-std=c++17", f"-I{work / 'inc'}", f"-I{src}",
                    str(src / "tools/linux/md2core/minidump-2-core.cc"),
                    str(src / "common/linux/memory_mapped_file.cc"),
                    str(src / "common/path_helper.cc"), "-o", str(exe)], check=True)
    return exe


def test_breakpad_minidump_2_core_reads_dso_debug(mini_file: Path, md2core: Path,
                                                  tmp_path: Path) -> None:
    """The padded MDRawDebug64/MDRawLinkMap64 layout is what Breakpad itself decodes."""
    core = tmp_path / "core"
    proc = subprocess.run([str(md2core), "-v", str(mini_file), "-o", str(core)],
                          capture_output=True, text=True, check=True)
    section = proc.stderr.split("MD_LINUX_DSO_DEBUG:\n", 1)[1].split("\n\n", 1)[0]
    assert section.splitlines() == [
        "Version: 1", "Number of DSOs: 2", "Brk handler: 0x7ffff7fd5000",
        "Dynamic loader at: 0x7ffff7fc5000", "_DYNAMIC: 0x555555557de0",
        '#000: 555555554000, 555555557de0, ""',
        f'#001: 7f2000000000, 7f2000003e00, "{LIB}"']
    assert "Found 3 threads" in proc.stderr
    notes = subprocess.run(["readelf", "-n", str(core)], capture_output=True, text=True,
                           check=True).stdout
    assert notes.count("NT_PRSTATUS") == 3


# --- lldb --------------------------------------------------------------------------------

def test_lldb(mini_file: Path) -> None:
    """Threads, registers of two threads, module UUIDs = build ids, stack and heap bytes."""
    heap_window = INDIRECT_WINDOWS[0][0]
    proc = run("lldb", "-b", "-c", mini_file, "-o", "thread list", "-o", "register read",
               "-o", "thread select 2", "-o", "register read rbx rsp rip", "-o", "image list",
               "-o", f"memory read -c 16 {MAIN_SP + 0x10:#x}",
               "-o", f"memory read -c 16 {heap_window:#x}", check=True)
    out = proc.stdout
    for tid in REGS:
        assert f"tid = {tid}," in out
    assert len(re.findall(r"thread #\d+: tid = ", out)) == 3
    first, second = out.split("(lldb) thread select 2", 1)
    for reg in ("rbx", "rsp", "rbp", "rip", "r12", "r15", "rax"):
        assert re.search(rf"\b{reg} = {MAIN_REGS[reg]:#018x}", first), reg
    for reg in ("rbx", "rsp", "rip"):
        assert re.search(rf"\b{reg} = {T2_REGS[reg]:#018x}", second), reg
    assert f"{lldb_uuid(EXE_BUILD_ID)} 0x0000555555554000 {EXE}" in out
    assert f"{lldb_uuid(LIB_BUILD_ID)} 0x00007f2000000000 {LIB}" in out
    assert NOID in out
    words = struct.pack("<QQ", STACK_WORDS[MAIN_SP + 0x10], STACK_WORDS[MAIN_SP + 0x18])
    assert f"{MAIN_SP + 0x10:#x}: {words.hex(' ')}" in out
    memory = build().memory
    assert isinstance(memory, FakeMemory)
    assert f"{heap_window:#x}: {memory.peek(heap_window, 16).hex(' ')}" in out


# --- LLVM obj2yaml ------------------------------------------------------------------------

def test_obj2yaml(mini_file: Path) -> None:
    """LLVM's strict parser: every stream decodes; values as built."""
    out = run("obj2yaml", mini_file, check=True).stdout
    assert "Flags:           0x1044" in out
    assert re.findall(r"Thread Id:\s+0x([0-9A-F]+)", out) == [f"{t:X}" for t in REGS]
    assert f"Thread ID:       0x{PID + 1:X}" in out  # the exception's
    stacks = [int(x, 16) for x in re.findall(r"Stack:\n\s+Start of Memory Range: (0x[0-9A-F]+)", out)]
    assert stacks == [STACKS[t][0] for t in REGS]
    assert f"CodeView Record: 4C457042{EXE_BUILD_ID.hex().upper()}" in out
    assert f"CodeView Record: 4C457042{LIB_BUILD_ID.hex().upper()}" in out
    assert "Exception Code:  0xFFFFFFFF" in out and f"Exception Address: {T2_RIP:#X}".replace("0X", "0x") in out
    assert "CSD Version:     'Linux 6.18.0-synth #1 SMP PREEMPT_DYNAMIC x86_64'" in out
    assert "Vendor ID:       GenuineIntel" in out
    mem = out.split("Type:            MemoryList", 1)[1]
    starts = [int(x, 16) for x in re.findall(r"Start of Memory Range: (0x[0-9A-F]+)", mem)]
    assert starts == [s for s, _ in merged([*STACKS.values(), *IP_WINDOWS, *INDIRECT_WINDOWS])]
    for name in ("LinuxCPUInfo", "LinuxProcStatus", "LinuxLSBRelease", "LinuxCMDLine",
                 "LinuxEnviron", "LinuxAuxv", "LinuxMaps", "LinuxDSODebug", "ThreadInfoList",
                 "MiscInfo", "HandleData"):
        assert f"Type:            {name}\n" in out, name


# --- skelsec minidump and udmp-parser --------------------------------------------------------

def test_skelsec_minidump(mini_file: Path) -> None:
    """Threads (contexts, TEBs), handles, thread info, misc info, exception, modules."""
    from minidump.minidumpfile import MinidumpFile  # type: ignore[import-untyped]

    # skelsec logs (and survives) a failed PEB lookup at teb+0x60: no Windows PEB on Linux.
    logging.getLogger().disabled = True
    try:
        m = MinidumpFile.parse(str(mini_file))
    finally:
        logging.getLogger().disabled = False
    threads = m.threads.threads
    assert [t.ThreadId for t in threads] == list(REGS)
    assert [t.Teb for t in threads] == [0x7FFFF7D8A740, 0x7F1000100640, 0x7F1000300640]
    assert [t.ContextObject.Rbx for t in threads] == [r["rbx"] for r in REGS.values()]
    assert [t.ContextObject.Rip for t in threads] == [r["rip"] for r in REGS.values()]
    assert [(h.Handle, h.TypeName, h.ObjectName) for h in m.handles.handles] == [
        (fd, t, n) for fd, t, n, _, _ in HANDLES]
    infos = [(i.ThreadId, i.CreateTime, i.UserTime, i.KernelTime, i.StartAddress, i.Affinity)
             for i in m.thread_info.infos]
    assert infos == [(PID, 133_000_000_000_000_000, 30_000_000, 10_000_000, 0x555555555000, 3),
                     (PID + 1, 133_000_000_010_000_000, 5, 7, 0x7F2000001400, 1),
                     (PID + 2, 0, 0, 0, 0, 2)]
    assert m.misc_info.ProcessId == PID
    record = m.exception.exception_records[0]
    assert record.ThreadId == PID + 1 and record.ExceptionRecord.ExceptionAddress == T2_RIP
    assert [(mod.name, mod.baseaddress, mod.size) for mod in m.modules.modules] == [
        (EXE, 0x555555554000, 0x5000), (LIB, 0x7F2000000000, 0x4000), (NOID, 0x7F2000100000, 0x2000)]
    reader = m.get_reader()
    assert reader.read(MAIN_SP + 0x10, 8) == struct.pack("<Q", HEAP_PTR)


def test_udmp_parser(mini_file: Path) -> None:
    """The strict C++ Windows-layout parser accepts the file; threads and modules as built."""
    import udmp_parser

    parser = udmp_parser.UserDumpParser()
    assert parser.Parse(mini_file)
    threads = parser.Threads()
    assert sorted(threads) == sorted(REGS)
    for tid, regs in REGS.items():
        assert threads[tid].Context.Rbx == regs["rbx"]
        assert threads[tid].Context.Rip == regs["rip"]
    assert {base: mod.ModuleName for base, mod in parser.Modules().items()} == {
        0x555555554000: EXE, 0x7F2000000000: LIB, 0x7F2000100000: NOID}


# --- minidumpkit's reader (round trip) ----------------------------------------------------------

def test_round_trip_through_our_reader(mini_file: Path) -> None:
    """open_minidump gives back what the capture held."""
    capture = build()
    memory = capture.memory
    assert isinstance(memory, FakeMemory)
    with minidumpkit.open_minidump(mini_file) as d:
        assert d.header.flags == DumpType.MINI and d.header.time_date_stamp == 1_750_000_000
        assert [(t.thread_id, t.name, t.teb) for t in d.threads] == [
            (t.tid, t.name or None, t.teb) for t in capture.threads]
        for t, c in zip(d.threads, capture.threads):
            assert t.context == c.context
            start, end = STACKS[c.tid]
            assert (t.stack_start, t.stack) == (start, memory.peek(start, end - start))
        assert [(m.name, m.base, m.size) for m in d.modules] == [
            (m.path, m.base, m.size) for m in capture.modules]
        assert [m.code_id for m in d.modules][:2] == [EXE_BUILD_ID.hex(), LIB_BUILD_ID.hex()]
        assert [(r.start, r.start + r.size) for r in d.memory.ranges] == merged(
            [*STACKS.values(), *IP_WINDOWS, *INDIRECT_WINDOWS])
        for r in d.memory.ranges:
            assert d.memory.read(r.start, r.size) == memory.peek(r.start, r.size)
        exc = d.exception
        assert exc is not None
        assert (exc.thread_id, exc.code, exc.address) == (PID + 1, 0xFFFFFFFF, T2_RIP)
        assert exc.context == capture.threads[1].context
        assert d.system_info is not None and d.system_info.csd_version == capture.system.csd_version
        assert d.process_id == PID
        assert [(i.thread_id, i.create_time, i.start_address, i.affinity) for i in d.thread_info] == [
            (t.tid, t.create_time, t.start_address, t.affinity) for t in capture.threads]
        assert [(h.handle, h.type_name, h.object_name, h.attributes) for h in d.handles] == [
            (fd, t, n, mode) for fd, t, n, mode, _ in HANDLES]
        for stream_type, content in RAW_STREAMS.items():
            assert d.raw_stream(stream_type) == content
        assert d.linux_cmdline == ["/opt/mdk-synth/bin/synth-app", "--serve"]
        assert d.linux_lsb_release is not None and d.linux_lsb_release["DISTRIB_ID"] == "Synthix"
        dso = d.linux_dso_debug
        assert dso is not None and capture.dso_debug is not None
        assert (dso.version, dso.brk, dso.ldbase, dso.dynamic, dso.dynamic_section) == (
            1, 0x7FFFF7FD5000, 0x7FFFF7FC5000, 0x555555557DE0, capture.dso_debug.dynamic)
        assert [(lm.addr, lm.name or "", lm.ld) for lm in dso.link_maps] == [
            (lm.addr, lm.name, lm.ld) for lm in capture.dso_debug.link_maps]


# --- policy effects seen by independent readers ----------------------------------------------

def test_policy_effects_seen_by_rust_minidump_and_lldb(tmp_path: Path) -> None:
    """Excluded thread absent from threads and names (rust-minidump); excluded module absent
    (lldb image list); extra memory readable, removed memory not (lldb)."""
    extra = (HEAP[0] + 0x4000, 0x40)
    hole = (MAIN_SP + 0x100, 0x100)
    path = tmp_path / "policy.dmp"
    path.write_bytes(write(build(), DumpType.MINI,
                           Choosy(drop_threads=(PID + 1,), drop_modules=(LIB,), extra=[extra],
                                  remove=[hole]))[0])
    d = rust_json(path)
    assert [(t["thread_id"], t["thread_name"]) for t in d["threads"]] == [
        (PID, "synth-main"), (PID + 2, None)]
    assert [m["filename"] for m in d["modules"]] == ["synth-app", "libnoid.so"]
    out = run("lldb", "-b", "-c", path, "-o", "image list",
              "-o", f"memory read -c 16 {extra[0]:#x}", "-o", f"memory read -c 8 {hole[0]:#x}").stdout
    assert EXE in out and NOID in out and LIB not in out
    memory = build().memory
    assert isinstance(memory, FakeMemory)
    assert f"{extra[0]:#x}: {memory.peek(extra[0], 16).hex(' ')}" in out
    assert f"{hole[0]:#x}: " not in out


def test_more_than_4096_requested_ranges_stay_readable_by_breakpad(tmp_path: Path) -> None:
    """Breakpad rejects a MemoryList of more than 4096 ranges: we merge down to it."""
    path = tmp_path / "many.dmp"
    extra = [(HEAP[0] + 0x18 * i, 0x10) for i in range(5000)]
    path.write_bytes(write(build(), MiniDumpType.Normal, Choosy(extra=extra))[0])
    proc = run("breakpad-minidump-dump", path)
    out = proc.stdout + proc.stderr
    assert breakpad_errors(out) == []
    count = int(re.search(r"MinidumpMemoryList\n\s+region_count = (\d+)", out).group(1))  # type: ignore[union-attr]
    assert count <= 4096
    assert "Thread 0" in run("breakpad-stackwalk", path, check=True).stdout


# --- random captures -----------------------------------------------------------------------

_STACK_REGIONS = [r for r in REGIONS if r.writable and not r.path.startswith("/")]
_ANY_REGION = [r for r in REGIONS]


@st.composite
def random_capture(draw: st.DrawFn) -> tuple[Any, int, Choosy]:
    nthreads = draw(st.integers(0, 4))
    threads = []
    for i in range(nthreads):
        region = draw(st.sampled_from(_STACK_REGIONS))
        if draw(st.booleans()):
            sp = draw(st.integers(region.start, region.end - 8)) & ~7
        else:
            sp = draw(st.integers(0, 2**64 - 1))
        rip = draw(st.one_of(st.integers(0, 2**64 - 1),
                             st.sampled_from([0x555555555123, 0x7F2000001500, 0x7FFFF7FC1A00])))
        name = draw(st.text(max_size=24))
        threads.append(CapturedThread(PID + i, name, context(rsp=sp, rip=rip, rbx=i),
                                      teb=draw(st.integers(0, 2**64 - 1)),
                                      create_time=draw(st.integers(0, 2**63)),
                                      affinity=draw(st.integers(0, 2**64 - 1))))
    modules = []
    for path, base, size in [(EXE, 0x555555554000, 0x5000), (LIB, 0x7F2000000000, 0x4000),
                             (NOID, 0x7F2000100000, 0x2000)]:
        if draw(st.booleans()):
            name = draw(st.one_of(st.just(path), st.from_regex(r"/[a-zA-Z0-9_.+ -]{1,60}", fullmatch=True)))
            modules.append(CapturedModule(base, size, name, draw(st.binary(max_size=40))))
    handles = [CapturedHandle(fd, draw(st.text(max_size=10)), draw(st.text(max_size=40)),
                              draw(st.integers(0, 2**32 - 1)))
               for fd in range(draw(st.integers(0, 4)))]
    dump_type = MiniDumpType.Normal
    for bit in (MiniDumpType.WithThreadInfo, MiniDumpType.WithHandleData,
                MiniDumpType.WithIndirectlyReferencedMemory):
        if draw(st.booleans()):
            dump_type |= bit
    ranges = st.tuples(st.integers(0x555555550000, 0x555555580000), st.integers(0, 0x3000))
    policy = Choosy(extra=draw(st.lists(ranges, max_size=6)), remove=draw(st.lists(ranges, max_size=3)),
                    chunk_size=draw(st.sampled_from([64, 4096, 1 << 20])))
    exception = None
    blamed: bool = draw(st.booleans())
    if threads and blamed:
        exception = CapturedException(draw(st.sampled_from([t.tid for t in threads])))
    raw = {k: v for k, v in RAW_STREAMS.items() if draw(st.booleans())}
    with_dso: bool = draw(st.booleans())
    capture = build(threads=threads, modules=modules, handles=handles, exception=exception,
                    raw_streams=raw, dso_debug=build().dso_debug if with_dso else None)
    return capture, int(dump_type), policy


def _strings(capture: Any) -> str:
    return "".join([t.name for t in capture.threads] + [m.path for m in capture.modules]
                   + [h.type_name + h.object_name for h in capture.handles])


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_capture())
def test_random_captures_parse_everywhere(case: tuple[Any, int, Choosy]) -> None:
    """Whatever the capture, the file keeps our invariants and strict readers accept it."""
    capture, dump_type, policy = case
    data, stats = write(capture, dump_type, policy)
    raw = Raw(data)
    check_invariants(raw)
    assert raw.flags == dump_type and stats.bytes_written == len(data)
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".dmp") as f:
        f.write(data)
        f.flush()
        assert run("obj2yaml", f.name).returncode == 0
        d = json.loads(run("minidump-stackwalk", "--json", f.name, check=True).stdout)
        assert d["thread_count"] == len(capture.threads)
        proc = run("breakpad-minidump-dump", f.name)
        empty = sum(1 for t in raw.threads() if t["stack_size"] == 0)
        errors = breakpad_errors(proc.stdout + proc.stderr, empty)
        if any(ord(ch) > 0xFFFF for ch in _strings(capture)):
            # Breakpad's UTF16ToUTF8 takes only DC00..DCFF as low surrogates (minidump.cc),
            # so it rejects most non-BMP characters, however well encoded.
            errors = [e for e in errors if "UTF16ToUTF8" not in e and "stream type 24" not in e
                      and "name" not in e]
        assert errors == []
    with minidumpkit.open_minidump(io.BytesIO(data)) as dump:
        assert [t.thread_id for t in dump.threads] == [t.tid for t in capture.threads]
        assert [m.name for m in dump.modules] == [m.path for m in capture.modules]
