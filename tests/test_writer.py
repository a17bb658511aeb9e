"""The MDMP writer (minidumpkit.writer) on synthetic captures.

Every capture here is built by hand: a fake address space (mappings filled with a
known byte pattern, chosen words placed on the stacks), threads with known
registers, modules with known build ids, handles, Linux /proc streams and r_debug.
Expected values come from that construction. The layout checks decode the file
with raw ``struct`` (never ``minidumpkit.format``); independent readers
(tests/oracles.py) check the same files in tests/test_writer_validators.py.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import io
import itertools
import json
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from minidumpkit import (
    DumpType,
    MiniDumpType,
    ModuleWriteFlags,
    ThreadWriteFlags,
    open_minidump,
    writer,
)
from minidumpkit import format as md
from minidumpkit._capture import (
    CapturedException,
    CapturedHandle,
    CapturedModule,
    CapturedSystem,
    CapturedThread,
    DsoDebug,
    LinkMapEntry,
    ProcessCapture,
    Region,
)
from minidumpkit.errors import (
    DumpCancelled,
    MemoryNotCaptured,
    ProcessError,
    UnsupportedError,
)
from minidumpkit.writer import DumpPolicy, WriteStats, write_minidump

# --- the synthetic process ----------------------------------------------------------

PID = 4242
EXE = "/opt/mdk-synth/bin/synth-app"
LIB = "/opt/mdk-synth/lib/libsynth.so.1"
NOID = "/opt/mdk-synth/lib/libnoid.so"
EXE_BUILD_ID = bytes(range(0x10, 0x24))  # 20 bytes, GNU ld style
LIB_BUILD_ID = bytes.fromhex("aabbccdd01020304")  # 8 bytes, lld --build-id=fast style


def _region(start: int, end: int, perms: str, path: str = "", offset: int = 0,
            inode: int = 0) -> Region:
    return Region(start, end, perms[0] == "r", perms[1] == "w", perms[2] == "x", perms[3] == "p",
                  offset, "08:01" if inode else "00:00", inode, path)


HEAP = (0x555555559000, 0x55555557A000)
MAIN_STACK = (0x7FFFFFFDE000, 0x7FFFFFFFF000)
T2_STACK = (0x7F1000001000, 0x7F1000101000)
T3_STACK = (0x7F1000201000, 0x7F1000301000)
REGIONS = [
    _region(0x555555554000, 0x555555555000, "r--p", EXE, 0, 11),
    _region(0x555555555000, 0x555555557000, "r-xp", EXE, 0x1000, 11),
    _region(0x555555557000, 0x555555558000, "r--p", EXE, 0x3000, 11),
    _region(0x555555558000, 0x555555559000, "rw-p", EXE, 0x4000, 11),
    _region(*HEAP, "rw-p", "[heap]"),
    _region(0x7F1000000000, 0x7F1000001000, "---p"),  # guard page
    _region(*T2_STACK, "rw-p"),
    _region(0x7F1000200000, 0x7F1000201000, "---p"),
    _region(*T3_STACK, "rw-p"),
    _region(0x7F2000000000, 0x7F2000001000, "r--p", LIB, 0, 12),
    _region(0x7F2000001000, 0x7F2000003000, "r-xp", LIB, 0x1000, 12),
    _region(0x7F2000003000, 0x7F2000004000, "rw-p", LIB, 0x3000, 12),
    _region(0x7F2000100000, 0x7F2000102000, "r-xp", NOID, 0, 13),
    _region(0x7FFFF7FBD000, 0x7FFFF7FC1000, "r--p", "[vvar]"),
    _region(0x7FFFF7FC1000, 0x7FFFF7FC3000, "r-xp", "[vdso]"),
    _region(*MAIN_STACK, "rw-p", "[stack]"),
]

MAIN_SP = 0x7FFFFFFFD000
T2_SP = 0x7F10000FF000
T3_SP = 0x7F1000300800
MAIN_RIP = 0x555555555123
T2_RIP = 0x7F2000001500
T3_RIP = 0x7FFFF7FC1A00  # in the vDSO
HEAP_PTR = 0x555555560010
# Words placed on the main thread's stack, and what WithIndirectlyReferencedMemory should
# make of each (a window [p-64, p+192) clipped to p's mapping, for data pointers only).
STACK_WORDS = {
    MAIN_SP + 0x10: HEAP_PTR,             # heap: followed
    MAIN_SP + 0x18: 0x555555558100,       # the executable's .data: followed
    MAIN_SP + 0x20: 0x555555555200,       # code (a return address): not followed
    MAIN_SP + 0x28: 0x7F1000100000,       # another thread's stack: not followed
    MAIN_SP + 0x30: 42,                   # a small integer
    MAIN_SP + 0x38: 0x7FFFF7FBD100,       # [vvar]: never read
    MAIN_SP - 0x40: 0x555555570000,       # in the red zone, which is captured: followed
    MAIN_SP + 0x40: 0x555555579FF0,       # near the heap's end: window clipped there
}
INDIRECT_WINDOWS = [
    (HEAP_PTR - 64, HEAP_PTR + 192),
    (0x555555558100 - 64, 0x555555558100 + 192),
    (0x555555570000 - 64, 0x555555570000 + 192),
    (0x555555579FF0 - 64, HEAP[1]),
]
STACKS = {PID: (MAIN_SP - 128, MAIN_STACK[1]), PID + 1: (T2_SP - 128, T2_STACK[1]),
          PID + 2: (T3_SP - 128, T3_STACK[1])}
IP_WINDOWS = [(MAIN_RIP - 128, MAIN_RIP + 128), (T2_RIP - 128, T2_RIP + 128),
              (T3_RIP - 128, T3_RIP + 128)]


def _fill(start: int, size: int) -> bytearray:
    k = (start >> 12) & 0xFF
    period = bytes((i + k) & 0xFF for i in range(256))
    return bytearray((period * (size // 256 + 1))[:size])


class FakeMemory:
    """A MemorySource over the readable mappings; reads stop where they stop being readable."""

    def __init__(self, regions: Iterable[Region]) -> None:
        self.blocks = {r.start: _fill(r.start, r.size) for r in regions if r.readable}
        self.ends = {r.start: r.end for r in regions if r.readable}
        self.reads: list[tuple[int, int]] = []

    def _block(self, address: int) -> tuple[int, bytearray] | None:
        for start, block in self.blocks.items():
            if start <= address < self.ends[start]:
                return start, block
        return None

    def put(self, address: int, data: bytes) -> None:
        found = self._block(address)
        assert found is not None
        start, block = found
        block[address - start:address - start + len(data)] = data

    def peek(self, address: int, size: int) -> bytes:
        """The construction's bytes (not logged as a read)."""
        found = self._block(address)
        assert found is not None
        start, block = found
        return bytes(block[address - start:address - start + size])

    def read(self, address: int, size: int) -> bytes:
        self.reads.append((address, size))
        out = bytearray()
        while size > 0 and (found := self._block(address)) is not None:
            start, block = found
            n = min(size, self.ends[start] - address)
            out += block[address - start:address - start + n]
            address, size = address + n, size - n
        return bytes(out)


def context(**regs: Any) -> md.ContextAMD64:
    fx = dataclasses.replace(md.XmmSaveArea32.zero(), control_word=0x37F, mx_csr=0x1F80,
                             mx_csr_mask=0xFFFF, xmm_registers=bytes(range(256)))
    return dataclasses.replace(md.ContextAMD64.zero(), context_flags=0x0010001F, mx_csr=0x1F80,
                               seg_cs=0x33, seg_ss=0x2B, eflags=0x246, flt_save=fx, **regs)


MAIN_REGS = {"rsp": MAIN_SP, "rbp": MAIN_SP + 0x40, "rip": MAIN_RIP, "rax": 0xFFFFFFFFFFFFFDFE,
             "rbx": 0x1111111111111111, "r12": 0x1212121212121212, "r13": 0x1313131313131313,
             "r14": 0x1414141414141414, "r15": 0x1515151515151515}
T2_REGS = {"rsp": T2_SP, "rbp": T2_SP + 0x30, "rip": T2_RIP, "rbx": 0x2222222222222222}
T3_REGS = {"rsp": T3_SP, "rip": T3_RIP, "rbx": 0x3333333333333333}
HANDLES = [(0, "File", "/dev/pts/3", 0o20620, 2), (1, "Pipe", "pipe:[123456]", 0o10600, 1),
           (3, "Socket", "socket:[777]", 0o140777, 2), (4, "Anon", "anon_inode:[eventfd]", 0o600, 2),
           (5, "File", "/tmp/synth data.txt", 0o100644, 2)]
CSD = "Linux 6.18.0-synth #1 SMP PREEMPT_DYNAMIC x86_64"
LSB = b'DISTRIB_ID=Synthix\nDISTRIB_RELEASE=42.1\nDISTRIB_CODENAME=tiny\nDISTRIB_DESCRIPTION="Synthix 42.1"\n'
DYNAMIC = struct.pack("<4Q", 21, 0x7FFFF7FFE118, 0, 0)  # DT_DEBUG → r_debug, DT_NULL
TIMESTAMP = 1_750_000_000


def maps_text(regions: Iterable[Region]) -> bytes:
    return "".join(
        f"{r.start:x}-{r.end:x} {'r' if r.readable else '-'}{'w' if r.writable else '-'}"
        f"{'x' if r.executable else '-'}{'p' if r.private else 's'} {r.offset:08x} {r.device} "
        f"{r.inode} {r.path}\n" for r in regions).encode()


RAW_STREAMS = {
    0x47670003: b"processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
                b"model name\t: Synthetic CPU\nstepping\t: 7\nmicrocode\t: 0x5003604\n\n"
                b"processor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
                b"model name\t: Synthetic CPU\nstepping\t: 7\nmicrocode\t: 0x5003604\n\n",
    0x47670004: b"Name:\tsynth-app\nState:\tt (tracing stop)\nTgid:\t4242\nPid:\t4242\nPPid:\t1\n",
    0x47670005: LSB,
    0x47670006: b"/opt/mdk-synth/bin/synth-app\0--serve\0",
    0x47670007: b"HOME=/root\0LANG=C\0",
    0x47670008: struct.pack("<8Q", 3, 0x555555554040, 6, 4096, 9, 0x555555555000, 0, 0),
    0x47670009: maps_text(REGIONS),
}


def build(**over: Any) -> ProcessCapture:
    """The standard synthetic capture; keyword arguments replace ProcessCapture fields."""
    memory = FakeMemory(REGIONS)
    for address, word in STACK_WORDS.items():
        memory.put(address, struct.pack("<Q", word))
    threads = [
        CapturedThread(PID, "synth-main", context(**MAIN_REGS), teb=0x7FFFF7D8A740,
                       create_time=133_000_000_000_000_000, user_time=30_000_000,
                       kernel_time=10_000_000, start_address=0x555555555000, affinity=3),
        CapturedThread(PID + 1, "worker-1", context(**T2_REGS), teb=0x7F1000100640,
                       create_time=133_000_000_010_000_000, user_time=5, kernel_time=7,
                       start_address=0x7F2000001400, affinity=1),
        CapturedThread(PID + 2, "", context(**T3_REGS), teb=0x7F1000300640, affinity=2),
    ]
    modules = [CapturedModule(0x555555554000, 0x5000, EXE, EXE_BUILD_ID),
               CapturedModule(0x7F2000000000, 0x4000, LIB, LIB_BUILD_ID),
               CapturedModule(0x7F2000100000, 0x2000, NOID, b"")]
    dso = DsoDebug(1, 0x7FFFF7FD5000, 0x7FFFF7FC5000, 0x555555557DE0, DYNAMIC,
                   [LinkMapEntry(0x555555554000, "", 0x555555557DE0),
                    LinkMapEntry(0x7F2000000000, LIB, 0x7F2000003E00)])
    system = CapturedSystem(md.ProcessorArchitecture.AMD64, 6, 0x5507, 2, md.PlatformId.LINUX,
                            0, 0, 0, CSD, b"GenuineIntel", 0x50657, 0xBFEBFBFF, 0)
    fields: dict[str, Any] = {
        "pid": PID, "threads": threads, "regions": list(REGIONS), "modules": modules,
        "memory": memory, "system": system, "exception": CapturedException(PID + 1),
        "handles": [CapturedHandle(*h) for h in HANDLES], "process_create_time": 1_700_000_000,
        "process_user_time": 3, "process_kernel_time": 1, "raw_streams": dict(RAW_STREAMS),
        "dso_debug": dso, "pause_ns": 1234567, "timestamp": TIMESTAMP}
    fields.update(over)
    return ProcessCapture(**fields)


def write(capture: ProcessCapture, dump_type: int = DumpType.MINI,
          policy: DumpPolicy | None = None) -> tuple[bytes, WriteStats]:
    out = io.BytesIO()
    stats = write_minidump(capture, out, MiniDumpType(dump_type), policy=policy)
    return out.getvalue(), stats


# --- an independent decoder (raw struct, no minidumpkit.format) ----------------------

THREAD_LIST, MODULE_LIST, MEMORY_LIST, EXCEPTION, SYSTEM_INFO = 3, 4, 5, 6, 7
HANDLE_DATA, MISC_INFO, THREAD_INFO_LIST, THREAD_NAMES = 12, 15, 17, 24
DSO_DEBUG, MDK_INFO = 0x4767000A, 0x4D4B0001


class Raw:
    """Header, directory and the common streams decoded with struct.unpack_from."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        (self.signature, self.version, self.count, self.dir_rva, self.checksum, self.stamp,
         self.flags) = struct.unpack_from("<IIIIIIQ", data, 0)
        self.directory = [struct.unpack_from("<III", data, self.dir_rva + 12 * i)
                          for i in range(self.count)]
        self.streams = {t: (size, rva) for t, size, rva in self.directory}
        self._memory: list[tuple[int, int, int]] | None = None
        self._starts: list[int] | None = None

    def stream(self, stream_type: int) -> bytes:
        size, rva = self.streams[stream_type]
        assert rva + size <= len(self.data)
        return self.data[rva:rva + size]

    def string(self, rva: int) -> str:
        (n,) = struct.unpack_from("<I", self.data, rva)
        assert self.data[rva + 4 + n:rva + 6 + n] == b"\0\0", "MINIDUMP_STRING without NUL"
        return self.data[rva + 4:rva + 4 + n].decode("utf-16-le")

    def blob(self, size: int, rva: int) -> bytes:
        assert rva + size <= len(self.data)
        return self.data[rva:rva + size]

    def threads(self) -> list[dict[str, int]]:
        s = self.stream(THREAD_LIST)
        (n,) = struct.unpack_from("<I", s)
        assert len(s) == 4 + 48 * n
        keys = ("tid", "suspend", "prio_class", "prio", "teb", "stack_start", "stack_size",
                "stack_rva", "ctx_size", "ctx_rva")
        return [dict(zip(keys, struct.unpack_from("<IIIIQQIIII", s, 4 + 48 * i))) for i in range(n)]

    def memory(self) -> list[tuple[int, int, int]]:
        if self._memory is None:
            s = self.stream(MEMORY_LIST)
            (n,) = struct.unpack_from("<I", s)
            assert len(s) == 4 + 16 * n
            self._memory = [struct.unpack_from("<QII", s, 4 + 16 * i) for i in range(n)]
        return self._memory

    def _find(self, address: int) -> tuple[int, int, int] | None:
        mem = self.memory()
        if self._starts is None:
            self._starts = [m[0] for m in mem]
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < mem[i][0] + mem[i][1]:
            return mem[i]
        return None

    def read(self, address: int, size: int) -> bytes:
        found = self._find(address)
        if found is None or address + size > found[0] + found[1]:
            raise LookupError(hex(address))
        return self.blob(size, found[2] + address - found[0])

    def has(self, address: int) -> bool:
        return self._find(address) is not None

    def context_reg(self, ctx_rva: int, offset: int) -> int:
        return int(struct.unpack_from("<Q", self.data, ctx_rva + offset)[0])


RIP, RSP, RBX, R12, R15 = 0xF8, 0x98, 0x90, 0xD8, 0xF0  # CONTEXT_AMD64 offsets


def ranges_of(raw: Raw) -> list[tuple[int, int]]:
    return [(start, start + n) for start, n, _ in raw.memory()]


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def check_invariants(raw: Raw) -> None:
    """What every dump we write must satisfy, whatever the input."""
    assert raw.signature == 0x504D444D and raw.version == 0xA793 and raw.checksum == 0
    assert raw.dir_rva == 32 and len(raw.streams) == raw.count, "duplicate stream types"
    for t, size, rva in raw.directory:
        assert t != 0 and rva % 4 == 0 and rva + size <= len(raw.data) < 1 << 32
    mem = raw.memory()
    assert len(mem) <= 4096
    assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(mem)), "MemoryList not sorted/disjoint"
    for start, n, rva in mem:
        assert n > 0 and rva + n <= len(raw.data)
    for t in raw.threads():
        if t["stack_size"]:
            assert raw.read(t["stack_start"], t["stack_size"]) == raw.blob(t["stack_size"], t["stack_rva"])
        if t["ctx_size"]:
            assert t["ctx_size"] == 1232 and t["ctx_rva"] % 16 == 0


def guid_debug_id(build_id: bytes) -> str:
    """Breakpad's debug id for an ELF build id, computed here independently."""
    b = (build_id + bytes(16))[:16]
    d1, d2, d3 = struct.unpack_from("<IHH", b)
    return f"{d1:08X}{d2:04X}{d3:04X}{b[8:].hex().upper()}0"


@pytest.fixture(scope="module")
def mini() -> tuple[bytes, WriteStats, ProcessCapture]:
    capture = build()
    data, stats = write(capture)
    return data, stats, capture


# --- golden layout ------------------------------------------------------------------

def test_header_and_directory(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """Header fields, an exact directory, and every stream inside the file."""
    data, stats, _ = mini
    raw = Raw(data)
    check_invariants(raw)
    assert raw.stamp == TIMESTAMP
    assert raw.flags == int(DumpType.MINI) == 0x1044
    assert sorted(raw.streams) == sorted([
        THREAD_LIST, THREAD_NAMES, THREAD_INFO_LIST, MODULE_LIST, EXCEPTION, SYSTEM_INFO,
        MISC_INFO, HANDLE_DATA, *RAW_STREAMS, DSO_DEBUG, MEMORY_LIST, MDK_INFO])
    assert stats.stream_count == raw.count == 18
    assert stats.bytes_written == len(data)
    assert (stats.thread_count, stats.module_count, stats.handle_count) == (3, 3, 5)


def test_thread_list_and_contexts(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """48-byte entries in capture order, teb = fs_base, 1232-byte contexts with FXSAVE whole."""
    raw = Raw(mini[0])
    threads = raw.threads()
    assert [t["tid"] for t in threads] == [PID, PID + 1, PID + 2]
    assert [t["teb"] for t in threads] == [0x7FFFF7D8A740, 0x7F1000100640, 0x7F1000300640]
    regs = [MAIN_REGS, T2_REGS, T3_REGS]
    for t, r in zip(threads, regs):
        ctx = raw.blob(t["ctx_size"], t["ctx_rva"])
        assert len(ctx) == 1232
        flags, mxcsr, cs = struct.unpack_from("<IIH", ctx, 0x30)
        assert (flags, mxcsr, cs) == (0x0010001F, 0x1F80, 0x33)
        assert struct.unpack_from("<I", ctx, 0x44)[0] == 0x246
        assert struct.unpack_from("<QQ", ctx, RSP) == (r["rsp"], r.get("rbp", 0))
        assert struct.unpack_from("<Q", ctx, RBX)[0] == r["rbx"]
        assert struct.unpack_from("<Q", ctx, RIP)[0] == r["rip"]
        assert struct.unpack_from("<H", ctx, 0x100)[0] == 0x37F  # FXSAVE control word
        assert struct.unpack_from("<I", ctx, 0x118)[0] == 0x1F80  # FXSAVE mxcsr
        assert ctx[0x1A0:0x2A0] == bytes(range(256))  # xmm0..15
    assert raw.context_reg(threads[0]["ctx_rva"], R12) == 0x1212121212121212
    assert raw.context_reg(threads[0]["ctx_rva"], R15) == 0x1515151515151515


def test_stacks_from_red_zone_to_mapping_end(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """Each stack is [rsp-128, end of its mapping), its bytes the target's, also in MemoryList."""
    raw = Raw(mini[0])
    memory = mini[2].memory
    assert isinstance(memory, FakeMemory)
    for t in raw.threads():
        start, end = STACKS[t["tid"]]
        assert (t["stack_start"], t["stack_size"]) == (start, end - start)
        stack = raw.blob(t["stack_size"], t["stack_rva"])
        assert stack == memory.peek(start, end - start)
        assert raw.read(start, end - start) == stack
    main = raw.threads()[0]
    for address, word in STACK_WORDS.items():
        offset = address - main["stack_start"]
        assert raw.blob(8, main["stack_rva"] + offset) == struct.pack("<Q", word)


def test_memory_list_is_exactly_the_planned_ranges(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """MINI = stacks + 256-byte instruction windows + windows around stack pointers to data."""
    data, stats, capture = mini
    raw = Raw(data)
    memory = capture.memory
    assert isinstance(memory, FakeMemory)
    expected = merged([*STACKS.values(), *IP_WINDOWS, *INDIRECT_WINDOWS])
    assert ranges_of(raw) == expected
    for start, n, rva in raw.memory():
        assert raw.blob(n, rva) == memory.peek(start, n)
    assert stats.memory_ranges == len(expected)
    assert stats.memory_bytes == sum(e - s for s, e in expected)
    assert stats.read_failures == stats.dropped_ranges == 0


def test_thread_names_and_thread_info(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """ThreadNames lists the named threads (12-byte entries, 64-bit RVAs); ThreadInfo all three."""
    raw = Raw(mini[0])
    s = raw.stream(THREAD_NAMES)
    (n,) = struct.unpack_from("<I", s)
    assert len(s) == 4 + 12 * n
    names = [struct.unpack_from("<IQ", s, 4 + 12 * i) for i in range(n)]
    assert [(tid, raw.string(rva)) for tid, rva in names] == [(PID, "synth-main"), (PID + 1, "worker-1")]
    s = raw.stream(THREAD_INFO_LIST)
    assert struct.unpack_from("<III", s) == (12, 64, 3)
    infos = [struct.unpack_from("<IIIIQQQQQQ", s, 12 + 64 * i) for i in range(3)]
    assert infos[0] == (PID, 0, 0, 259, 133_000_000_000_000_000, 0, 10_000_000, 30_000_000,
                        0x555555555000, 3)
    assert infos[1] == (PID + 1, 0, 0, 259, 133_000_000_010_000_000, 0, 7, 5, 0x7F2000001400, 1)
    assert infos[2][0] == PID + 2 and infos[2][9] == 2


def test_module_list_and_build_ids(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """108-byte entries, main executable first, names with NUL, whole build id after 'LEpB'."""
    raw = Raw(mini[0])
    s = raw.stream(MODULE_LIST)
    (n,) = struct.unpack_from("<I", s)
    assert n == 3 and len(s) == 4 + 108 * n
    expected = [(0x555555554000, 0x5000, EXE, EXE_BUILD_ID), (0x7F2000000000, 0x4000, LIB, LIB_BUILD_ID),
                (0x7F2000100000, 0x2000, NOID, b"")]
    for i, (base, size, path, build_id) in enumerate(expected):
        entry = s[4 + 108 * i:4 + 108 * (i + 1)]
        got_base, got_size, checksum, stamp, name_rva = struct.unpack_from("<QIIII", entry)
        assert (got_base, got_size, checksum, stamp, raw.string(name_rva)) == (base, size, 0, 0, path)
        assert entry[24:76] == bytes(52)  # no VS_FIXEDFILEINFO
        cv_size, cv_rva, misc_size, misc_rva = struct.unpack_from("<IIII", entry, 76)
        assert (misc_size, misc_rva) == (0, 0)
        if build_id:
            assert raw.blob(cv_size, cv_rva) == b"LEpB" + build_id
        else:
            assert (cv_size, cv_rva) == (0, 0)


def test_exception_stream_for_a_live_dump(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """DUMP_REQUESTED on the capture's thread, address = its rip, context = its ThreadList context."""
    raw = Raw(mini[0])
    s = raw.stream(EXCEPTION)
    assert len(s) == 168
    tid, _, code, flags, record, address, nparams = struct.unpack_from("<IIIIQQI", s)
    assert (tid, code, flags, record, address, nparams) == (PID + 1, 0xFFFFFFFF, 0, 0, T2_RIP, 0)
    ctx = struct.unpack_from("<II", s, 160)
    t2 = raw.threads()[1]
    assert ctx == (t2["ctx_size"], t2["ctx_rva"])


def test_system_and_misc_info(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """SystemInfo: AMD64, Linux (0x8201), the uname CSD string; MiscInfo: 24 bytes, pid, times."""
    raw = Raw(mini[0])
    s = raw.stream(SYSTEM_INFO)
    assert len(s) == 56
    arch, level, rev, ncpu, product, major, minor, build, platform, csd_rva = struct.unpack_from(
        "<HHHBBIIIII", s)
    assert (arch, level, rev, ncpu, product, platform) == (9, 6, 0x5507, 2, 0, 0x8201)
    assert (major, minor, build) == (0, 0, 0)
    assert raw.string(csd_rva) == CSD
    assert s[32:44] == b"GenuineIntel"
    assert struct.unpack_from("<II", s, 44) == (0x50657, 0xBFEBFBFF)
    assert struct.unpack("<6I", raw.stream(MISC_INFO)) == (24, 3, PID, 1_700_000_000, 3, 1)


def test_handle_data(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """MINIDUMP_HANDLE_DESCRIPTOR_2 per fd: type and object names as MINIDUMP_STRINGs."""
    raw = Raw(mini[0])
    s = raw.stream(HANDLE_DATA)
    assert struct.unpack_from("<IIII", s) == (16, 40, len(HANDLES), 0)
    for i, (fd, type_name, name, mode, access) in enumerate(HANDLES):
        handle, type_rva, name_rva, attrs, granted, hc, pc, info_rva, reserved = struct.unpack_from(
            "<QIIIIIIII", s, 16 + 40 * i)
        assert (handle, attrs, granted, hc, pc, info_rva, reserved) == (fd, mode, access, 0, 0, 0, 0)
        assert (raw.string(type_rva), raw.string(name_rva)) == (type_name, name)


def test_linux_streams_copied_verbatim(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    raw = Raw(mini[0])
    for stream_type, content in RAW_STREAMS.items():
        assert raw.stream(stream_type) == content


def test_dso_debug_in_breakpads_padded_layout(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """MDRawDebug64 (40 bytes) + _DYNAMIC; the link map array holds 24-byte entries."""
    raw = Raw(mini[0])
    s = raw.stream(DSO_DEBUG)
    assert len(s) == 40 + len(DYNAMIC)
    version, map_rva, count, pad, brk, ldbase, dynamic = struct.unpack_from("<IIIIQQQ", s)
    assert (version, count, pad, brk, ldbase, dynamic) == (1, 2, 0, 0x7FFFF7FD5000, 0x7FFFF7FC5000,
                                                          0x555555557DE0)
    assert s[40:] == DYNAMIC
    entries = [struct.unpack_from("<QIIQ", raw.data, map_rva + 24 * i) for i in range(2)]
    assert [(a, raw.string(n), p, ld) for a, n, p, ld in entries] == [
        (0x555555554000, "", 0, 0x555555557DE0), (0x7F2000000000, LIB, 0, 0x7F2000003E00)]


def test_minidumpkit_info_stream(mini: tuple[bytes, WriteStats, ProcessCapture]) -> None:
    """A 24-byte header (capture method, dump type, pause) then JSON about the write."""
    raw = Raw(mini[0])
    s = raw.stream(MDK_INFO)
    assert struct.unpack_from("<IIQQ", s) == (24, 1, 0x1044, 1234567)
    details = json.loads(s[24:])
    assert details["capture"] == "stop"
    assert details["dump_type"] == "WithHandleData|WithIndirectlyReferencedMemory|WithThreadInfo"
    assert details["memory"]["ranges"] == len(raw.memory())
    assert details["limits"]["max_memory_ranges"] == 4096


def test_normal_dump_has_only_the_normal_streams() -> None:
    """MiniDumpNormal: no ThreadInfoList, no HandleData, no indirectly referenced memory."""
    raw = Raw(write(build(), MiniDumpType.Normal)[0])
    check_invariants(raw)
    assert raw.flags == 0
    assert THREAD_INFO_LIST not in raw.streams and HANDLE_DATA not in raw.streams
    assert ranges_of(raw) == merged([*STACKS.values(), *IP_WINDOWS])


def test_written_at_an_offset_and_over_a_longer_file(tmp_path: Path) -> None:
    """RVAs count from where the dump starts; an older, longer file is truncated."""
    path = tmp_path / "dump.dmp"
    path.write_bytes(b"X" * 200_000)
    with path.open("r+b") as f:
        f.write(b"JUNK")
        stats = write_minidump(build(), f, MiniDumpType.Normal)
    data = path.read_bytes()
    assert data[:4] == b"JUNK" and len(data) == 4 + stats.bytes_written
    check_invariants(Raw(data[4:]))


def test_capture_without_exception_name_or_threads() -> None:
    """No exception → no Exception stream; no named thread → no ThreadNames; no threads is fine."""
    raw = Raw(write(build(exception=None, threads=[]), MiniDumpType.Normal)[0])
    check_invariants(raw)
    assert EXCEPTION not in raw.streams and THREAD_NAMES not in raw.streams
    assert raw.threads() == [] and raw.memory() == []


def test_thread_with_sp_outside_any_mapping_has_an_empty_stack() -> None:
    capture = build()
    capture.threads[2] = dataclasses.replace(
        capture.threads[2], context=context(rsp=0x1000, rip=T3_RIP))
    raw = Raw(write(capture, MiniDumpType.Normal)[0])
    check_invariants(raw)
    t3 = raw.threads()[2]
    assert (t3["stack_size"], t3["stack_rva"]) == (0, 0)


def test_stack_cap_keeps_the_part_nearest_rsp() -> None:
    """max_stack_size bounds each stack from rsp-128 upwards."""
    raw = Raw(write(build(), MiniDumpType.Normal, DumpPolicy(max_stack_size=0x400))[0])
    for t in raw.threads():
        assert (t["stack_start"], t["stack_size"]) == (STACKS[t["tid"]][0], 0x400)


@pytest.mark.parametrize("bad", ["dup_tid", "exception_thread", "raw_id", "params"])
def test_capture_contract_violations_are_value_errors(bad: str) -> None:
    capture = build()
    if bad == "dup_tid":
        capture.threads.append(capture.threads[0])
    elif bad == "exception_thread":
        capture.exception = CapturedException(999)
    elif bad == "raw_id":
        capture.raw_streams[0x18] = b"x"
    else:
        capture.exception = CapturedException(PID, 5, 0, 0, tuple(range(16)))
    with pytest.raises(ValueError):
        write(capture)


def test_crash_exception_fields_are_kept() -> None:
    """A crash (signal, si_code, address, parameters) is written as given."""
    capture = build(exception=CapturedException(PID, 11, 1, 0, (1, 0xDEAD)))
    raw = Raw(write(capture, MiniDumpType.Normal)[0])
    tid, _, code, flags, _record, address, nparams = struct.unpack_from("<IIIIQQI", raw.stream(EXCEPTION))
    assert (tid, code, flags, address, nparams) == (PID, 11, 1, 0, 2)
    assert struct.unpack_from("<2Q", raw.stream(EXCEPTION), 40) == (1, 0xDEAD)


# --- unsupported flags --------------------------------------------------------------

OTHER_BITS = [m for m in MiniDumpType
              if m.value and not m.value & int(DumpType.MINI)]


@pytest.fixture
def mini_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that implements only the MINI bits: every valid bit is implemented now,
    so the refusal path is exercised by narrowing SUPPORTED_TYPES."""
    monkeypatch.setattr(writer, "SUPPORTED_TYPES", DumpType.MINI)


@pytest.mark.parametrize("bit", OTHER_BITS, ids=lambda m: str(m.name))
def test_every_other_bit_is_refused_by_name(bit: MiniDumpType, mini_only: None) -> None:
    with pytest.raises(UnsupportedError, match=str(bit.name)):
        write(build(), DumpType.MINI | bit)


def test_several_unsupported_bits_are_all_named(mini_only: None) -> None:
    with pytest.raises(UnsupportedError) as info:
        write(build(), DumpType.FULL)
    for name in ("WithFullMemory", "WithFullMemoryInfo", "WithUnloadedModules"):
        assert name in str(info.value)
    assert "WithHandleData" not in str(info.value).split("yet")[0]


def test_bits_outside_valid_flags_are_value_errors() -> None:
    with pytest.raises(ValueError):
        write(build(), 0x02000000)


# --- policy hooks ---------------------------------------------------------------------

class Recorder(DumpPolicy):
    """Logs every hook call in order; answers with the defaults unless told otherwise."""

    def __init__(self, **limits: int) -> None:
        super().__init__(**limits)
        self.calls: list[tuple[Any, ...]] = []

    def include_thread(self, thread: CapturedThread) -> bool:
        self.calls.append(("include_thread", thread.tid))
        return super().include_thread(thread)

    def thread_flags(self, thread: CapturedThread, default: ThreadWriteFlags) -> ThreadWriteFlags:
        self.calls.append(("thread_flags", thread.tid, default))
        return super().thread_flags(thread, default)

    def include_module(self, module: CapturedModule) -> bool:
        self.calls.append(("include_module", module.path))
        return super().include_module(module)

    def module_flags(self, module: CapturedModule, default: ModuleWriteFlags) -> ModuleWriteFlags:
        self.calls.append(("module_flags", module.path, default))
        return super().module_flags(module, default)

    def extra_memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("extra_memory",))
        return super().extra_memory()

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("remove_memory",))
        return super().remove_memory()

    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        self.calls.append(("read_memory_failure", address, size, error.errno))
        return super().read_memory_failure(address, size, error)

    def cancel(self) -> bool:
        self.calls.append(("cancel",))
        return super().cancel()

    def progress(self, done: int, total: int) -> None:
        self.calls.append(("progress", done, total))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def test_hooks_are_called_in_dbghelps_order() -> None:
    """cancel, IncludeThread*, IncludeModule*, Thread*, Module*, Memory, RemoveMemory, then I/O."""
    policy = Recorder()
    write(build(), DumpType.MINI, policy)
    names = policy.names()
    assert names[0] == "cancel"
    setup = [n for n in names if n not in ("cancel", "progress")]
    assert setup == (["include_thread"] * 3 + ["include_module"] * 3 + ["thread_flags"] * 3
                     + ["module_flags"] * 3 + ["extra_memory", "remove_memory"])
    default_t = ThreadWriteFlags.Thread | ThreadWriteFlags.Stack | ThreadWriteFlags.Context \
        | ThreadWriteFlags.InstructionWindow | ThreadWriteFlags.ThreadInfo
    assert [c[2] for c in policy.calls if c[0] == "thread_flags"] == [default_t] * 3
    default_m = ModuleWriteFlags.Module | ModuleWriteFlags.CvRecord | ModuleWriteFlags.MiscRecord
    assert [c[2] for c in policy.calls if c[0] == "module_flags"] == [default_m] * 3
    assert names.count("cancel") > 10  # polled per stream and per chunk
    assert names[-1] == "progress"


def test_thread_info_bit_only_with_with_thread_info() -> None:
    policy = Recorder()
    write(build(), MiniDumpType.Normal, policy)
    flags = [c[2] for c in policy.calls if c[0] == "thread_flags"]
    assert all(not f & ThreadWriteFlags.ThreadInfo for f in flags)


def test_progress_is_monotonic_up_to_the_memory_total() -> None:
    policy = Recorder(chunk_size=1024)
    _, stats = write(build(), DumpType.MINI, policy)
    progress = [(c[1], c[2]) for c in policy.calls if c[0] == "progress"]
    totals = {t for _, t in progress}
    assert totals == {stats.memory_bytes}
    dones = [d for d, _ in progress]
    assert dones == sorted(dones) and dones[0] == 0 and dones[-1] == stats.memory_bytes
    assert len(progress) > stats.memory_bytes // 1024  # at least one report per chunk


def test_reads_are_chunked_and_cancel_is_polled_per_chunk() -> None:
    capture = build()
    memory = capture.memory
    assert isinstance(memory, FakeMemory)
    policy = Recorder(chunk_size=512)
    write(capture, DumpType.MINI, policy)
    assert memory.reads and max(size for _, size in memory.reads) <= 512
    assert policy.names().count("cancel") >= len(memory.reads)


class Choosy(DumpPolicy):
    def __init__(self, *, drop_threads: tuple[int, ...] = (), thread_mask: dict[int, int] | None = None,
                 drop_modules: tuple[str, ...] = (), module_mask: dict[str, int] | None = None,
                 extra: Iterable[tuple[int, int]] = (), remove: Iterable[tuple[int, int]] = (),
                 keep_going: bool = True, **limits: int) -> None:
        super().__init__(**limits)
        self.drop_threads, self.thread_mask = drop_threads, thread_mask or {}
        self.drop_modules, self.module_mask = drop_modules, module_mask or {}
        self.extra, self.remove, self.keep_going = list(extra), list(remove), keep_going
        self.failures: list[tuple[int, int, OSError]] = []

    def include_thread(self, thread: CapturedThread) -> bool:
        return thread.tid not in self.drop_threads

    def thread_flags(self, thread: CapturedThread, default: ThreadWriteFlags) -> ThreadWriteFlags:
        return ThreadWriteFlags(self.thread_mask.get(thread.tid, default))

    def include_module(self, module: CapturedModule) -> bool:
        return module.path not in self.drop_modules

    def module_flags(self, module: CapturedModule, default: ModuleWriteFlags) -> ModuleWriteFlags:
        return ModuleWriteFlags(self.module_mask.get(module.path, default))

    def extra_memory(self) -> Iterable[tuple[int, int]]:
        return self.extra

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        return self.remove

    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        self.failures.append((address, size, error))
        return self.keep_going


def thread_names(raw: Raw) -> dict[int, str]:
    if THREAD_NAMES not in raw.streams:
        return {}
    s = raw.stream(THREAD_NAMES)
    (n,) = struct.unpack_from("<I", s)
    return {tid: raw.string(rva) for tid, rva in (struct.unpack_from("<IQ", s, 4 + 12 * i)
                                                  for i in range(n))}


def test_excluded_thread_is_absent_but_its_exception_context_stays() -> None:
    """include_thread False: no ThreadList/ThreadNames/ThreadInfo entry, no stack; the
    exception (on that thread) keeps a context of its own."""
    raw = Raw(write(build(), DumpType.MINI, Choosy(drop_threads=(PID + 1,)))[0])
    check_invariants(raw)
    assert [t["tid"] for t in raw.threads()] == [PID, PID + 2]
    assert thread_names(raw) == {PID: "synth-main"}
    assert struct.unpack_from("<III", raw.stream(THREAD_INFO_LIST)) == (12, 64, 2)
    assert not raw.has(T2_SP)
    size, rva = struct.unpack_from("<II", raw.stream(EXCEPTION), 160)
    assert size == 1232 and raw.context_reg(rva, RBX) == 0x2222222222222222


def test_thread_flags_without_stack_drop_that_stack_and_what_it_points_to() -> None:
    mask = {PID: int(ThreadWriteFlags.Thread | ThreadWriteFlags.Context)}
    raw = Raw(write(build(), DumpType.MINI, Choosy(thread_mask=mask))[0])
    check_invariants(raw)
    main = raw.threads()[0]
    assert (main["stack_size"], main["stack_rva"]) == (0, 0)
    assert not raw.has(MAIN_SP) and not raw.has(MAIN_RIP) and not raw.has(HEAP_PTR)
    assert raw.has(T2_SP) and raw.has(T2_RIP)


def test_thread_flags_without_thread_or_context() -> None:
    """Without Thread the thread has no entries (its stack may still be copied); without
    Context its entry has none and the exception gets a context of its own."""
    mask = {PID: int(ThreadWriteFlags.Stack),
            PID + 1: int(ThreadWriteFlags.Thread | ThreadWriteFlags.Stack)}
    raw = Raw(write(build(), DumpType.MINI, Choosy(thread_mask=mask))[0])
    check_invariants(raw)
    threads = raw.threads()
    assert [t["tid"] for t in threads] == [PID + 1, PID + 2]
    assert PID not in thread_names(raw) and raw.has(MAIN_SP)
    assert (threads[0]["ctx_size"], threads[0]["ctx_rva"]) == (0, 0)
    size, rva = struct.unpack_from("<II", raw.stream(EXCEPTION), 160)
    assert size == 1232 and raw.context_reg(rva, RIP) == T2_RIP
    assert not raw.has(T2_RIP)  # no InstructionWindow
    # ThreadInfo went with the mask too: only the third thread keeps its entry.
    assert struct.unpack_from("<III", raw.stream(THREAD_INFO_LIST)) == (12, 64, 1)


def test_thread_flags_cannot_add_bits() -> None:
    """As in dbghelp, the answer is ANDed with the default."""
    mask = {PID: 0x7F}
    raw_all = Raw(write(build(), MiniDumpType.Normal, Choosy(thread_mask=mask))[0])
    raw_default = Raw(write(build(), MiniDumpType.Normal)[0])
    assert THREAD_INFO_LIST not in raw_all.streams
    assert ranges_of(raw_all) == ranges_of(raw_default)


def test_excluded_module_and_module_without_cv_record() -> None:
    policy = Choosy(drop_modules=(LIB,), module_mask={EXE: int(ModuleWriteFlags.Module)})
    raw = Raw(write(build(), DumpType.MINI, policy)[0])
    check_invariants(raw)
    s = raw.stream(MODULE_LIST)
    assert struct.unpack_from("<I", s)[0] == 2
    names = [raw.string(struct.unpack_from("<I", s, 4 + 108 * i + 20)[0]) for i in range(2)]
    assert names == [EXE, NOID]
    assert struct.unpack_from("<II", s, 4 + 76) == (0, 0)  # the executable lost its CodeView


def test_module_flags_without_module_bit_exclude_it() -> None:
    raw = Raw(write(build(), MiniDumpType.Normal, Choosy(module_mask={NOID: 0}))[0])
    assert struct.unpack_from("<I", raw.stream(MODULE_LIST))[0] == 2


def test_extra_memory_is_present() -> None:
    capture = build()
    memory = capture.memory
    assert isinstance(memory, FakeMemory)
    extra = [(0x555555568000, 0x1000), (0x7F2000003100, 0x20)]
    raw = Raw(write(capture, MiniDumpType.Normal, Choosy(extra=extra))[0])
    check_invariants(raw)
    for base, size in extra:
        assert raw.read(base, size) == memory.peek(base, size)


def test_removed_memory_is_gone_and_not_scanned() -> None:
    """remove_memory applies to everything; the stack descriptor keeps the piece below the hole;
    pointers inside the removed bytes are not followed."""
    hole = (MAIN_SP, 0x100)
    raw = Raw(write(build(), DumpType.MINI, Choosy(remove=[hole]))[0])
    check_invariants(raw)
    for start, end in ranges_of(raw):
        assert end <= hole[0] or start >= hole[0] + hole[1]
    main = raw.threads()[0]
    assert (main["stack_start"], main["stack_size"]) == (MAIN_SP - 128, 128)
    assert raw.has(MAIN_SP + 0x100)
    assert not raw.has(HEAP_PTR)  # its pointer was in the hole
    assert raw.has(0x555555570000)  # its pointer was in the red zone


def test_read_failure_continue_keeps_what_was_read() -> None:
    """An extra range running past the heap into unmapped memory: one failure, bytes kept;
    a range that straddles a hole keeps both mapped parts."""
    policy = Choosy(extra=[(HEAP[1] - 0x100, 0x1100), (0x7F2000003F00, 0x7F2000100100 - 0x7F2000003F00)])
    data, stats = write(build(), MiniDumpType.Normal, policy)
    raw = Raw(data)
    check_invariants(raw)
    assert [(a, n) for a, n, _ in policy.failures] == [(HEAP[1], 0x1000),
                                                       (0x7F2000004000, 0x7F2000100000 - 0x7F2000004000)]
    assert all(e.errno == errno.EFAULT for _, _, e in policy.failures)
    assert raw.has(HEAP[1] - 1) and not raw.has(HEAP[1])
    assert raw.has(0x7F2000003F00) and raw.has(0x7F20001000FF) and not raw.has(0x7F2000004000)
    assert stats.read_failures == 2
    assert json.loads(raw.stream(MDK_INFO)[24:])["memory"]["read_failures"] == 2


def test_range_limit_holds_when_a_read_failure_splits_a_range() -> None:
    """A range straddling a hole becomes two descriptors; the part over the limit is left out."""
    policy = Choosy(extra=[(0x7F2000003F00, 0x7F2000100100 - 0x7F2000003F00)], max_memory_ranges=7)
    data, stats = write(build(), MiniDumpType.Normal, policy)
    raw = Raw(data)
    check_invariants(raw)
    assert len(raw.memory()) == 7
    assert raw.has(0x7F2000003F00) and not raw.has(0x7F2000100000)
    for t in raw.threads():  # the stacks after it in address order are all there
        assert t["stack_size"] == STACKS[t["tid"]][1] - STACKS[t["tid"]][0]
    assert stats.dropped_ranges == 1 and stats.read_failures == 1


def test_read_failure_abort_stops_the_dump() -> None:
    policy = Choosy(extra=[(0x600000000000, 0x1000)], keep_going=False)
    with pytest.raises(ProcessError) as info:
        write(build(), MiniDumpType.Normal, policy)
    assert info.value.errno == errno.EFAULT and info.value.pid == PID
    assert [(a, n) for a, n, _ in policy.failures] == [(0x600000000000, 0x1000)]


class CancelAt(DumpPolicy):
    def __init__(self, at: int, **limits: int) -> None:
        super().__init__(**limits)
        self.at, self.polls = at, 0

    def cancel(self) -> bool:
        self.polls += 1
        return self.polls >= self.at


@pytest.mark.parametrize("at", [1, 3, 12, 40])
def test_cancel_raises_dump_cancelled(at: int) -> None:
    """Cancel is honoured wherever it is polled: before the setup, between streams, mid-copy."""
    policy = CancelAt(at, chunk_size=256)
    with pytest.raises(DumpCancelled):
        write(build(), DumpType.MINI, policy)
    assert policy.polls == at


class Boom(Exception):
    pass


HOOKS = ["include_thread", "thread_flags", "include_module", "module_flags", "extra_memory",
         "remove_memory", "read_memory_failure", "cancel", "progress"]


@pytest.mark.parametrize("hook", HOOKS)
def test_exception_in_a_hook_propagates_unchanged(hook: str) -> None:
    def boom(*args: Any) -> Any:
        raise Boom(hook)

    policy = Choosy(extra=[(0x600000000000, 0x10)])  # so that a read fails
    setattr(policy, hook, boom)
    with pytest.raises(Boom, match=hook):
        write(build(), DumpType.MINI, policy)


# --- limits ---------------------------------------------------------------------------

def test_more_than_4096_ranges_are_merged_within_a_mapping() -> None:
    """5000 small extra ranges in the heap: neighbours merge (the gap is copied) to fit 4096."""
    extra = [(HEAP[0] + 0x18 * i, 0x10) for i in range(5000)]
    data, stats = write(build(), MiniDumpType.Normal, Choosy(extra=extra))
    raw = Raw(data)
    check_invariants(raw)
    assert len(raw.memory()) <= 4096
    for base, size in extra:
        assert raw.has(base) and raw.has(base + size - 1)
    for t in raw.threads():
        assert t["stack_size"] == STACKS[t["tid"]][1] - STACKS[t["tid"]][0]
    assert stats.dropped_ranges == 0


def test_ranges_that_cannot_merge_are_dropped_least_important_first() -> None:
    """Over the range limit with gaps too wide (or outside a mapping) to fill: extra ranges
    are dropped; stacks and instruction windows stay."""
    extra = [(0x555555558000, 8), (HEAP[0], 8), (HEAP[0] + 0x18000, 8)]
    policy = Choosy(extra=extra, max_memory_ranges=7)
    data, stats = write(build(), MiniDumpType.Normal, policy)
    raw = Raw(data)
    check_invariants(raw)
    assert len(raw.memory()) == 7
    for t in raw.threads():
        assert t["stack_size"] == STACKS[t["tid"]][1] - STACKS[t["tid"]][0]
    assert all(raw.has(s) for s, _ in IP_WINDOWS)
    # .data and the heap's start merge (the gap lies inside .data); the far one is dropped
    assert raw.read(0x555555558000, 0x1008)
    assert not raw.has(HEAP[0] + 0x18000)
    assert stats.dropped_ranges == 1


def test_byte_budget_drops_indirect_memory_first() -> None:
    """max_memory_bytes keeps every RVA low; the least important bytes go first."""
    stack_bytes = sum(e - s for s, e in STACKS.values())
    policy = DumpPolicy(max_memory_bytes=stack_bytes + 3 * 256)
    data, stats = write(build(), DumpType.MINI, policy)
    raw = Raw(data)
    check_invariants(raw)
    assert stats.memory_bytes <= stack_bytes + 3 * 256
    assert all(raw.has(s) for s, _ in STACKS.values())
    assert not raw.has(HEAP_PTR)


def test_indirect_memory_limits() -> None:
    """At most max_indirect_pointers per thread, max_indirect_bytes in all."""
    one = Raw(write(build(), DumpType.MINI, DumpPolicy(max_indirect_pointers=1))[0])
    normal = merged([*STACKS.values(), *IP_WINDOWS])
    extra = [r for r in ranges_of(one) if r not in normal]
    # the first pointer found, scanning up from rsp-128, is the red-zone one
    assert extra == [INDIRECT_WINDOWS[2]]
    none = Raw(write(build(), DumpType.MINI, DumpPolicy(max_indirect_bytes=0))[0])
    assert ranges_of(none) == normal


# --- bulk memory read ahead on a worker thread -------------------------------------------

class IntoMemory(FakeMemory):
    """FakeMemory with ``read_into`` (so the writer reads ahead on its worker) and
    ``consumed``; logs the reading threads and how many reads ever overlapped.
    ``short_at``: reads stop there (an unreadable page); ``fail_at``: a read covering
    it raises."""

    def __init__(self, regions: Iterable[Region], *, short_at: int = 0, fail_at: int = 0) -> None:
        super().__init__(regions)
        self.short_at, self.fail_at = short_at, fail_at
        self.lock = threading.Lock()
        self.active = self.most_active = self.started = self.finished = 0
        self.threads: set[str] = set()
        self.consumed_ranges: list[tuple[int, int]] = []

    def read(self, address: int, size: int) -> bytes:
        if self.short_at and address <= self.short_at < address + size:
            size = self.short_at - address
        return super().read(address, size)

    def read_into(self, address: int, size: int, buf: bytearray) -> int:
        with self.lock:
            self.active += 1
            self.started += 1
            self.most_active = max(self.most_active, self.active)
            self.threads.add(threading.current_thread().name)
        try:
            if self.fail_at and address <= self.fail_at < address + size:
                raise ProcessError(errno.EIO, "synthetic read error", pid=PID)
            data = self.read(address, size)
            buf[:len(data)] = data
            return len(data)
        finally:
            with self.lock:
                self.active -= 1
                self.finished += 1

    def consumed(self, address: int, size: int) -> None:
        self.consumed_ranges.append((address, size))


class ReadOnlyMemory(IntoMemory):
    """The same bytes with no read_into: the writer's plain loop, as a reference."""

    read_into = None  # type: ignore[assignment]


def capture_with(memory: FakeMemory) -> ProcessCapture:
    for address, word in STACK_WORDS.items():
        memory.put(address, struct.pack("<Q", word))
    return build(memory=memory)


def readers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("minidumpkit-read")]


def test_read_ahead_writes_the_same_bytes_as_the_plain_loop() -> None:
    memory = IntoMemory(REGIONS)
    # page-sized chunks: every mapping of several pages is read ahead
    ahead, _ = write(capture_with(memory), DumpType.FULL, DumpPolicy(chunk_size=4096))
    plain, _ = write(capture_with(ReadOnlyMemory(REGIONS)), DumpType.FULL,
                     DumpPolicy(chunk_size=4096))
    assert ahead == plain
    assert memory.most_active == 1 and memory.active == 0
    assert any(name.startswith("minidumpkit-read") for name in memory.threads)
    assert readers_alive() == []
    # consumed: every byte read for Memory64List, once, in address order
    spans = memory.consumed_ranges
    assert spans == sorted(spans) and all(a + n <= b for (a, n), (b, _) in itertools.pairwise(spans))
    heap = [(a, n) for a, n in spans if HEAP[0] <= a < HEAP[1]]
    assert sum(n for _, n in heap) == HEAP[1] - HEAP[0]


def test_read_ahead_stops_at_a_short_read_like_the_plain_loop() -> None:
    hole = HEAP[0] + 5 * 4096 + 100
    memory = IntoMemory(REGIONS, short_at=hole)
    policy = DumpPolicy(chunk_size=4096)
    ahead, stats = write(capture_with(memory), DumpType.FULL | MiniDumpType.IgnoreInaccessibleMemory,
                         policy)
    plain, _ = write(capture_with(ReadOnlyMemory(REGIONS, short_at=hole)),
                     DumpType.FULL | MiniDumpType.IgnoreInaccessibleMemory,
                     DumpPolicy(chunk_size=4096))
    assert ahead == plain
    d = open_minidump(ahead)
    assert d.memory.read(hole - 8, 8) == memory.peek(hole - 8, 8)
    with pytest.raises(MemoryNotCaptured):
        d.memory.read(hole, 8)
    assert stats.read_failures == 1
    assert memory.active == 0 and readers_alive() == []


def test_read_ahead_error_leaves_no_read_in_flight() -> None:
    memory = IntoMemory(REGIONS, fail_at=HEAP[0] + 7 * 4096)
    with pytest.raises(ProcessError, match="synthetic read error"):
        write(capture_with(memory), DumpType.FULL, DumpPolicy(chunk_size=4096))
    assert memory.started == memory.finished and memory.active == 0
    assert readers_alive() == []


def test_read_ahead_without_a_thread_reads_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """No thread can be started (RLIMIT_NPROC, say): the dump is written all the same,
    each chunk read in turn on the caller's thread."""
    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")  # what Thread.start raises then
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    memory = IntoMemory(REGIONS)
    turn, _ = write(capture_with(memory), DumpType.FULL, DumpPolicy(chunk_size=4096))
    plain, _ = write(capture_with(ReadOnlyMemory(REGIONS)), DumpType.FULL,
                     DumpPolicy(chunk_size=4096))
    assert turn == plain
    assert memory.threads == {threading.current_thread().name}
    assert readers_alive() == []
