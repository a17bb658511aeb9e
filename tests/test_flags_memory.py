"""Every MiniDumpType memory/info bit on a live target with a known layout
(tests/targets/memflags_target.c), each effect checked with our reader and at least
one independent tool (lldb, rust-minidump, Breakpad, udmp-parser, obj2yaml).

Expected values come from the target's construction (the page pattern, the initialized
global, the bytes of a function it printed, /proc/PID/maps), never from our output.
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
from oracles import run, tool

import minidumpkit as mdk
from minidumpkit import MiniDumpType as T
from minidumpkit import format as md
from minidumpkit.errors import ProcessError
from minidumpkit.flags import ModuleWriteFlags, StreamType
from minidumpkit.writer import NO_EFFECT_TYPES, DumpPolicy

pytestmark = [pytest.mark.live, pytest.mark.validators]

PAGE = 4096
GOLDEN = 0x9E3779B97F4A7C15


def page_pattern(first_page: int, count: int) -> bytes:
    """The target's page pattern: page i = (i * GOLDEN) as 8 LE bytes + (j*7+13)&0xff."""
    tail = bytes((j * 7 + 13) & 0xFF for j in range(8, PAGE))
    return b"".join(struct.pack("<Q", (i * GOLDEN) & (2**64 - 1)) + tail
                    for i in range(first_page, first_page + count))


class Layout:
    def __init__(self, target: Any, work: Path) -> None:
        self.target = target
        self.work = work
        self.dumps: dict[int, Path] = {}

    def addr(self, key: str) -> int:
        return self.target.int(key)

    def dump(self, dump_type: int, **kw: Any) -> Path:
        """One dump per type (stop-and-dump), shared by the tests that read it."""
        if kw or dump_type not in self.dumps:
            path = self.work / f"t{dump_type:x}-{len(self.dumps)}.dmp"
            mdk.dump(self.target.pid, path, dump_type, snapshot="never", **kw)
            if kw:
                return path
            self.dumps[dump_type] = path
        return self.dumps[dump_type]


@pytest.fixture(scope="module")
def layout(target_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from conftest import Target, assert_released

    work = tmp_path_factory.mktemp("memflags")
    target = Target([str(target_bins["memflags_target"]), "layout", str(work / "cow.bin")])
    try:
        target.wait_parked()  # both threads in their final blocking call, not on the way
        yield Layout(target, work)
        assert_released(target.pid)
    finally:
        target.close()


def maps_of(pid: int) -> list[tuple[int, int, str, str]]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi, parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return out


def lldb(*cmds: str) -> str:
    args: list[str] = ["--batch", "--no-lldbinit"]
    for c in cmds:
        args += ["-o", c]
    return run("lldb", *args, check=True).stdout


def udmp(path: Path, *reads: tuple[int, int]) -> dict[str, Any]:
    """udmp-parser in a child process: Parse(), counts, and reads at given addresses."""
    code = r'''
import json, sys, udmp_parser
d = udmp_parser.UserDumpParser()
ok = d.Parse(sys.argv[1])
out = {"ok": ok}
if ok:
    out.update(threads=sorted(d.Threads()), modules=len(d.Modules()),
               regions=[[b.BaseAddress, b.RegionSize] for b in d.Memory().values()], reads={})
    for spec in sys.argv[2:]:
        a, n = (int(x) for x in spec.split(":"))
        got = d.ReadMemory(a, n)
        out["reads"][spec] = None if got is None else bytes(got).hex()
print(json.dumps(out))
'''
    proc = subprocess.run([sys.executable, "-c", code, str(path),
                           *(f"{a}:{n}" for a, n in reads)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def obj2yaml_summary(path: Path) -> list[str]:
    """Stream types obj2yaml names; its hex dump of memory is streamed and dropped."""
    # read in binary chunks: the hex dumps are single lines of hundreds of MB
    types: list[str] = []
    pattern = re.compile(rb"\n\s+- Type:\s+(\w+)\n")
    tail = b""
    with subprocess.Popen([tool("obj2yaml"), str(path)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            data = tail + chunk
            types += [m.decode() for m in pattern.findall(data)]
            cut = data.rfind(b"\n")  # keep the unfinished last line for the next round
            tail = data[cut:] if cut >= 0 and len(data) - cut < 256 else b""
    assert proc.returncode == 0
    return types


def rust_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    return data


# --- WithFullMemory ---------------------------------------------------------------------

def test_full_memory_pattern_reads_back_identical(layout: Layout) -> None:
    """DumpType.FULL: every byte of the 256 MiB pattern is in Memory64List and equals the
    target's construction; the never-touched 16 MiB and the MADV_DONTDUMP block are not."""
    path = layout.dump(mdk.DumpType.FULL)
    base, size = layout.addr("pattern"), layout.addr("pattern_size")
    with mdk.open_minidump(path) as d:
        assert d.stream(StreamType.Memory64ListStream) is not None
        assert d.memory.read(base, size) == page_pattern(0, size // PAGE)
        assert layout.addr("untouched") not in d.memory
        assert layout.addr("untouched") + (8 << 20) not in d.memory
        assert layout.addr("dontdump") not in d.memory
        assert d.header.flags == int(mdk.DumpType.FULL)


def test_full_memory_sampled_pages_through_lldb(layout: Layout, tmp_path: Path) -> None:
    path = layout.dump(mdk.DumpType.FULL)
    base = layout.addr("pattern")
    pages = [0, 1, 4097, 65535]
    cmds = [f"target create --core {path}"]
    for p in pages:
        cmds.append(f"memory read --binary --force --outfile {tmp_path / f'p{p}'} "
                    f"--count {PAGE} {base + p * PAGE}")
    lldb(*cmds)
    for p in pages:
        assert (tmp_path / f"p{p}").read_bytes() == page_pattern(p, 1)


def test_full_memory_udmp_parser_rust_breakpad(layout: Layout) -> None:
    """udmp-parser parses (it needs a MemoryInfoList region at every Memory64 range),
    sees both threads and reads the pattern; rust-minidump walks both threads; Breakpad
    walks it without ERROR."""
    path = layout.dump(mdk.DumpType.FULL)
    base = layout.addr("pattern")
    got = udmp(path, (base + 7 * PAGE, 16))
    assert got["ok"] is True
    assert got["threads"] == sorted([layout.target.pid, layout.addr("avx_tid")])
    assert got["modules"] >= 3
    assert got["reads"][f"{base + 7 * PAGE}:16"] == page_pattern(7, 1)[:16].hex()
    j = rust_json(path)
    assert j["status"] == "OK"
    assert {t["thread_id"] for t in j["threads"]} == set(got["threads"])
    proc = run("breakpad-stackwalk", path, check=True)
    assert "ERROR" not in proc.stderr


def test_include_vm_region_leaves_a_region_out(layout: Layout) -> None:
    """IncludeVmRegionCallback: asked for every region full memory would copy (the
    pattern's among them); answering False for the pattern's mapping leaves it out and
    keeps the rest (the heap). obj2yaml parses the (now small) full dump: Memory64List,
    MemoryInfoList, UnloadedModuleList (obj2yaml hex-dumps all memory: 7 s for 270 MB,
    hence this small dump)."""
    pattern = layout.addr("pattern")

    class NoPattern(DumpPolicy):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[tuple[int, int]] = []

        def include_vm_region(self, region: Any) -> bool:
            self.asked.append((region.start, region.end))
            return not region.start <= pattern < region.end

    policy = NoPattern()
    path = layout.dump(mdk.DumpType.FULL, callbacks=policy)
    assert any(lo <= pattern < hi for lo, hi in policy.asked)
    heap = next(lo for lo, _hi, _p, name in maps_of(layout.target.pid) if name == "[heap]")
    assert any(lo == heap for lo, _ in policy.asked)
    with mdk.open_minidump(path) as d:
        assert pattern not in d.memory and pattern + (100 << 20) not in d.memory
        assert heap in d.memory
    types = obj2yaml_summary(path)
    assert "Memory64List" in types and "MemoryInfoList" in types and "UnloadedModuleList" in types


# --- WithFullMemoryInfo -----------------------------------------------------------------

_PROTECT = {"r--": md.MemProtect.READONLY, "rw-": md.MemProtect.READWRITE,
            "r-x": md.MemProtect.EXECUTE_READ, "---": md.MemProtect.NOACCESS,
            "--x": md.MemProtect.EXECUTE, "rwx": md.MemProtect.EXECUTE_READWRITE}


def test_memory_info_matches_proc_maps(layout: Layout) -> None:
    """WithFullMemoryInfo alone: one MemoryInfoList entry per /proc/PID/maps line, same
    bounds, protection from its permissions (private writable file mappings are
    WRITECOPY), MEM_IMAGE for the executable's mappings, MEM_PRIVATE for anonymous ones;
    lldb reports the same permissions for the region of the pattern and of the code."""
    path = layout.dump(T.WithFullMemoryInfo)
    maps = maps_of(layout.target.pid)
    with mdk.open_minidump(path) as d:
        infos = d.memory_info
    assert [(i.base_address, i.base_address + i.region_size) for i in infos] == \
        [(lo, hi) for lo, hi, _, _ in maps]
    exe = str(Path(os.readlink(f"/proc/{layout.target.pid}/exe")))
    for info, (lo, _hi, perms, name) in zip(infos, maps, strict=True):
        expected = _PROTECT[perms[:3]]
        if perms[:3] == "rw-" and perms[3] == "p" and name.startswith("/"):
            expected = md.MemProtect.WRITECOPY
        assert info.protect == expected, (hex(lo), perms, name)
        assert info.state == md.MemState.COMMIT
        if name == exe:
            assert info.type == md.MemType.IMAGE
        elif name in ("", "[heap]", "[stack]"):
            assert info.type == md.MemType.PRIVATE
    out = lldb(f"target create --core {path}", f"memory region {layout.addr('pattern')}",
               f"memory region {layout.addr('known_function')}")
    # the pattern's region as /proc/PID/maps has it (the kernel may merge it with the
    # untouched mapping next to it, or leave them apart when it aligns large mappings)
    lo, hi = next((lo, hi) for lo, hi, _, _ in maps if lo <= layout.addr("pattern") < hi)
    assert re.search(rf"\[0x0*{lo:x}-0x0*{hi:x}\) rw-", out), out
    assert re.search(r"\) r-x", out), out


# --- WithDataSegs / WithCodeSegs / WithModuleHeaders ------------------------------------

def test_data_and_code_segments_hold_known_bytes(layout: Layout, tmp_path: Path) -> None:
    """WithDataSegs|WithCodeSegs: the initialized global and the first bytes of
    known_function (as the target printed them) are in the dump; lldb reads the same
    bytes from it; without the bits they are not."""
    path = layout.dump(T.WithDataSegs | T.WithCodeSegs)
    data_at, code_at = layout.addr("known_data"), layout.addr("known_function")
    code = bytes.fromhex(layout.target.info["code"])
    with mdk.open_minidump(path) as d:
        assert d.memory.read(data_at, 31) == b"MDK-DATA-SEGMENT-0123456789abcd"
        assert d.memory.read(code_at, 16) == code
        assert layout.addr("pattern") not in d.memory  # not private memory
    lldb(f"target create --core {path}",
         f"memory read --binary --force --outfile {tmp_path / 'data'} --count 31 {data_at}")
    assert (tmp_path / "data").read_bytes() == b"MDK-DATA-SEGMENT-0123456789abcd"
    with mdk.open_minidump(layout.dump(T.Normal)) as d:
        assert data_at not in d.memory


def test_module_headers_are_the_elf_headers(layout: Layout) -> None:
    """WithModuleHeaders: the first page of every file module equals the file's first
    page (the ELF header and program headers)."""
    path = layout.dump(T.WithModuleHeaders)
    with mdk.open_minidump(path) as d:
        modules = [m for m in d.modules if m.name.startswith("/")]
        assert len(modules) >= 3
        for m in modules:
            with open(m.name, "rb") as f:
                head = f.read(64)
            assert d.memory.read(m.base, 64) == head, m.name
    out = run("minidump-stackwalk", "--dump", path, check=True).stdout
    assert "MINIDUMP_MEMORY_DESCRIPTOR" in out


# --- WithProcessThreadData --------------------------------------------------------------

def test_process_thread_data_holds_the_tls_block(layout: Layout) -> None:
    """WithProcessThreadData: the memory around each thread's fs_base, with the main
    thread's __thread marker below it (static TLS) and the TCB self-pointer at it."""
    path = layout.dump(T.WithProcessThreadData)
    fs_base, marker = layout.addr("fs_base"), layout.addr("tls_marker")
    with mdk.open_minidump(path) as d:
        assert d.memory.read(marker, 31) == b"MDK-TLS-MARKER-0123456789abcdef"
        assert d.memory.read_u64(fs_base) == fs_base  # tcb->tcb points at itself
        main = d.thread(layout.target.pid)
        assert main is not None and main.teb == fs_base
    with mdk.open_minidump(layout.dump(T.Normal)) as d:
        assert marker not in d.memory


# --- private memory ---------------------------------------------------------------------

def test_private_read_write_memory(layout: Layout) -> None:
    """WithPrivateReadWriteMemory: the anonymous pattern (touched pages only), not the
    file-backed copy-on-write mapping, not the never-touched pages."""
    path = layout.dump(T.WithPrivateReadWriteMemory)
    base = layout.addr("pattern")
    with mdk.open_minidump(path) as d:
        assert d.memory.read(base + 100 * PAGE, PAGE) == page_pattern(100, 1)
        assert layout.addr("cow") not in d.memory
        assert layout.addr("untouched") not in d.memory
        assert layout.addr("dontdump") not in d.memory
    got = udmp(path, (base + 3 * PAGE, 8))
    assert got["ok"] and got["reads"][f"{base + 3 * PAGE}:8"] == page_pattern(3, 1)[:8].hex()


def test_private_write_copy_memory(layout: Layout) -> None:
    """WithPrivateWriteCopyMemory: of the 4-page MAP_PRIVATE file mapping only page 2,
    the one the target wrote (copied on write), is in the dump; no anonymous memory."""
    path = layout.dump(T.WithPrivateWriteCopyMemory)
    cow = layout.addr("cow")
    with mdk.open_minidump(path) as d:
        assert d.memory.read(cow + 2 * PAGE, PAGE) == b"W" * PAGE
        for p in (0, 1, 3):
            assert cow + p * PAGE not in d.memory
        assert layout.addr("pattern") not in d.memory
    got = udmp(path, (cow + 2 * PAGE, 4))
    assert got["ok"] and got["reads"][f"{cow + 2 * PAGE}:4"] == "57575757"


# --- FilterMemory -----------------------------------------------------------------------

def test_filter_memory_zeroes_non_pointers_and_stacks_still_walk(layout: Layout) -> None:
    """FilterMemory: the main thread's known non-pointer stack word is in a Normal dump
    and zeroed in the filtered one; every aligned stack word left is 0 or points into a
    mapping; rust-minidump, Breakpad and lldb still walk both threads to main /
    avx_thread."""
    nonptr = struct.pack("<Q", layout.addr("nonptr"))
    with mdk.open_minidump(layout.dump(T.Normal)) as d:
        assert nonptr in d.thread(layout.target.pid).stack  # type: ignore[union-attr]
    path = layout.dump(T.FilterMemory)
    maps = maps_of(layout.target.pid)
    with mdk.open_minidump(path) as d:
        for t in d.threads:
            stack = t.stack
            assert stack and nonptr not in stack
            for (w,) in struct.iter_unpack("<Q", stack[:len(stack) & ~7]):
                assert w == 0 or any(lo <= w < hi for lo, hi, _, _ in maps), hex(w)
    j = rust_json(path)
    frames = {t["thread_id"]: [f.get("function") for f in t["frames"]] for t in j["threads"]}
    assert len(frames) == 2 and all(len(f) >= 2 for f in frames.values()), frames
    bp = run("breakpad-stackwalk", path, check=True)
    assert "ERROR" not in bp.stderr
    assert len(re.findall(r"^Thread \d+", bp.stdout, re.MULTILINE)) == 2
    bt = lldb(f"target create --core {path}", "bt all")
    assert "command_loop" in bt and "main" in bt and "avx_thread" in bt, bt


# --- WithAvxXStateContext ---------------------------------------------------------------

def test_xstate_context_holds_the_known_ymm_values(layout: Layout) -> None:
    """WithAvxXStateContext: the mdk-avx thread's context carries CONTEXT_XSTATE, a
    CONTEXT_EX (offsets relative to itself) and the XSAVE header + components; ymm0/ymm1
    = the bytes the target loaded (low halves in FltSave, high halves in the
    YMM_Hi128 component at XSAVE offset 576 = 64 past the XSAVE header). rust-minidump
    and Breakpad accept the larger context."""
    path = layout.dump(T.WithAvxXStateContext)
    values = bytes(range(0xA0, 0xE0))
    with mdk.open_minidump(path) as d:
        t = d.thread(layout.addr("avx_tid"))
        assert t is not None
        loc = next(th for th in _raw_threads(d) if th[0] == t.thread_id)[1]
        raw = d._bytes(loc.rva, loc.data_size, "context")
    flags = struct.unpack_from("<I", raw, 0x30)[0]
    assert flags == 0x0010005F
    all_off, all_len, leg_off, leg_len, xs_off, xs_len = struct.unpack_from("<iIiIiI", raw, 1232)
    assert (all_off, leg_off, leg_len) == (-1232, -1232, 1232)
    assert all_len == loc.data_size
    xsave = raw[1232 + xs_off:1232 + xs_off + xs_len]
    xstate_bv = struct.unpack_from("<Q", xsave, 0)[0]
    assert xstate_bv & 0b110 == 0b110  # SSE and AVX state present
    xmm = raw[0x100 + 160:0x100 + 160 + 32]  # FltSave.XmmRegisters[0..1]
    assert xmm == values[0:16] + values[32:48]
    assert xsave[64:96] == values[16:32] + values[48:64]
    assert rust_json(path)["status"] == "OK"
    assert "ERROR" not in run("breakpad-stackwalk", path, check=True).stderr


def _raw_threads(d: Any) -> list[tuple[int, md.Location]]:
    info = d.stream(StreamType.ThreadListStream)
    count = struct.unpack_from("<I", d._bytes(info.rva, 4, "n"))[0]
    out = []
    for i in range(count):
        th = md.Thread.unpack_from(d._bytes(info.rva + 4 + i * 48, 48, "thread"))
        out.append((th.thread_id, th.thread_context))
    return out


# --- module list flags ------------------------------------------------------------------

def test_filter_module_paths_gives_base_names(layout: Layout) -> None:
    path = layout.dump(T.FilterModulePaths)
    with mdk.open_minidump(path) as d:
        names = [m.name for m in d.modules]
    assert "memflags_target" in names and "libc.so.6" in names
    assert not any("/" in n for n in names)
    j = rust_json(path)
    assert {m["filename"] for m in j["modules"]} >= {"memflags_target", "libc.so.6"}


def test_scan_memory_marks_referenced_modules(layout: Layout) -> None:
    """ScanMemory: module_flags() sees ModuleReferencedByMemory exactly for the modules
    some stack word points into (the executable: return addresses; libc); a callback
    that drops the others leaves only those in ModuleList (checked by rust-minidump)."""

    class OnlyReferenced(DumpPolicy):
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[str, bool] = {}

        def module_flags(self, module: Any, default: ModuleWriteFlags) -> ModuleWriteFlags:
            referenced = bool(default & ModuleWriteFlags.ModuleReferencedByMemory)
            self.seen[module.path] = referenced
            return default if referenced else default & ~ModuleWriteFlags.Module

    policy = OnlyReferenced()
    path = layout.dump(T.ScanMemory, callbacks=policy)
    exe = os.readlink(f"/proc/{layout.target.pid}/exe")
    assert policy.seen[exe] is True
    # independently: which modules do the dumped stacks point into?
    with mdk.open_minidump(layout.dump(T.Normal)) as d:
        spans = [(m.base, m.base + m.size, m.name) for m in d.modules]
        words = {w for t in d.threads for (w,) in struct.iter_unpack("<Q", t.stack[:len(t.stack) & ~7])}
    pointed = {name for lo, hi, name in spans if any(lo <= w < hi for w in words)}
    assert {p for p, r in policy.seen.items() if r} >= pointed - {"linux-gate.so"}
    j = rust_json(path)
    assert len(j["modules"]) == sum(policy.seen.values())


# --- WithoutOptionalData / IgnoreInaccessibleMemory / no-effect bits --------------------

def test_without_optional_data_drops_indirect_and_thread_data(layout: Layout) -> None:
    rich = T.WithIndirectlyReferencedMemory | T.WithProcessThreadData | T.WithModuleHeaders
    with mdk.open_minidump(layout.dump(rich)) as d:
        assert d.minidumpkit_info.details["memory"]["indirect_pointers"] > 0
        assert layout.addr("tls_marker") in d.memory
    with mdk.open_minidump(layout.dump(rich | T.WithoutOptionalData)) as d:
        info = d.minidumpkit_info.details["memory"]
        assert info["indirect_pointers"] == 0
        assert layout.addr("tls_marker") not in d.memory
        main = d.thread(layout.target.pid)
        assert main is not None and main.stack  # stacks are never optional
    # Breakpad's minidump_dump (it exits 1 for a dump without MemoryInfoList): MemoryList
    # holds 2 threads x (stack + instruction window) descriptors, nothing else
    out = run("breakpad-minidump-dump", layout.dump(rich | T.WithoutOptionalData)).stdout
    size = re.search(r"MD_MEMORY_LIST_STREAM\)\n\s+location.data_size = (\d+)", out)
    assert size is not None and int(size.group(1)) == 4 + 16 * 4


def test_ignore_inaccessible_memory(layout: Layout) -> None:
    """An unreadable extra range with a policy that says stop: ProcessError without the
    bit; with IgnoreInaccessibleMemory the failure is skipped and the dump written."""

    class Strict(DumpPolicy):
        def extra_memory(self) -> Any:
            return [(0x10000, PAGE)]  # below mmap_min_addr: never mapped

        def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
            return False

    with pytest.raises(ProcessError):
        layout.dump(T.Normal, callbacks=Strict())
    path = layout.dump(T.IgnoreInaccessibleMemory, callbacks=Strict())
    with mdk.open_minidump(path) as d:
        assert 0x10000 not in d.memory
        assert d.minidumpkit_info.details["memory"]["read_failures"] == 1
    assert rust_json(path)["status"] == "OK"


def test_unloaded_modules_and_no_effect_bits(layout: Layout) -> None:
    """WithUnloadedModules writes an empty UnloadedModuleList; the bits with no Linux
    meaning are accepted and recorded in the header flags; TRIAGE works."""
    dump_type = T.WithUnloadedModules | NO_EFFECT_TYPES
    path = layout.dump(dump_type)
    with mdk.open_minidump(path) as d:
        assert d.header.flags == int(dump_type)
        assert d.stream(StreamType.UnloadedModuleListStream) is not None
        assert d.unloaded_modules == []
    assert "UnloadedModuleList" in obj2yaml_summary(path)
    triage = layout.dump(mdk.DumpType.TRIAGE)
    j = rust_json(triage)
    assert j["status"] == "OK" and len(j["threads"]) == 2
