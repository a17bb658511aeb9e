"""Our reader against the independent readers, on every third-party and Wine fixture.

Every expected value below is what an independent tool reports for the same file
(run here, output cached per fixture): rust-minidump's ``minidump-stackwalk --json``
and ``--dump``, Breakpad's ``minidump_stackwalk -m`` and ``minidump_dump``, lldb,
LLVM ``obj2yaml``, the skelsec ``minidump`` package and ``udmp-parser``.

Which tools read which fixture (``reference/validators.md`` §2-3):

=====================  ====  ========  ==============  ====  ========  =======  ====
fixture                rust  bp walk   bp dump         lldb  obj2yaml  skelsec  udmp
=====================  ====  ========  ==============  ====  ========  =======  ====
third-party/* (9)      yes   yes       yes             yes   yes       yes      yes*
wine/* (3)             yes   yes       no MemoryList†  yes   yes       no‡      yes*
=====================  ====  ========  ==============  ====  ========  =======  ====

\\* udmp-parser ignores MemoryListStream (it reads Memory64List only), so it yields
no memory bytes for any fixture; it does parse Wine's Normal dumps (validators.md
saw it reject a Wine *full-memory* dump, whose calling thread has no context).
† Breakpad refuses a MemoryList of more than 4096 ranges ("count N exceeds maximum
4096"); Wine writes 4629 and 7176. ‡ skelsec rejects Wine's private stream 0xFFF0
("65520 is not a valid MINIDUMP_STREAM_TYPE"). Each "no" is asserted below.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import minidumpkit
from minidumpkit import MemoryNotCaptured, Minidump, StreamType
from minidumpkit import format as md
from minidumpkit._streams import CodeViewElf, CodeViewPdb70
from oracles import FIXTURES, run

pytestmark = pytest.mark.validators

THIRD_PARTY = sorted((FIXTURES / "third-party").glob("*.dmp"))
WINE = sorted((FIXTURES / "wine").glob("*.dmp"))
ALL = THIRD_PARTY + WINE
PATHS = {p.name: p for p in ALL}
NAMES = [p.name for p in ALL]
WINE_NAMES = [p.name for p in WINE]
THIRD_NAMES = [p.name for p in THIRD_PARTY]

SKELSEC_READS = THIRD_NAMES  # rejects Wine's 0xFFF0 stream
BREAKPAD_MEMORY_READS = THIRD_NAMES  # > 4096 MemoryList ranges in Wine's dumps


def test_fixture_set_is_complete() -> None:
    assert len(THIRD_PARTY) == 9 and len(WINE) == 3, f"fixtures missing under {FIXTURES}"


# --- our reader (one open dump per fixture) --------------------------------------------------

_OPEN: dict[str, Minidump] = {}


def ours(name: str) -> Minidump:
    if name not in _OPEN:
        _OPEN[name] = minidumpkit.open_minidump(PATHS[name])
    return _OPEN[name]


@pytest.fixture(scope="module", autouse=True)
def _close_dumps() -> Iterator[None]:
    yield
    for d in _OPEN.values():
        d.close()
    _OPEN.clear()


def h(value: str) -> int:
    """An integer as a tool printed it (0x... hex, or decimal)."""
    return int(value.strip(), 0)


# --- the tools, each run once per fixture -----------------------------------------------------

@functools.cache
def rust_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        run("minidump-stackwalk", "--json", PATHS[name], check=True).stdout)
    return data


@functools.cache
def rust_dump(name: str) -> list[tuple[str, dict[str, str], list[str]]]:
    """``minidump-stackwalk --dump`` as (heading, {field: value}, raw lines) sections."""
    text = run("minidump-stackwalk", "--dump", PATHS[name], check=True).stdout
    sections: list[tuple[str, dict[str, str], list[str]]] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            sections.append((line, {}, []))
        elif sections:
            sections[-1][2].append(line)
            key, sep, value = line.partition(" = ")
            if sep and line.startswith("  ") and not line.startswith("    "):
                sections[-1][1][key.strip()] = value.strip()
    return sections


def rust_contexts(name: str) -> tuple[list[dict[str, str]], dict[str, str] | None]:
    """Per-thread CONTEXT fields (in thread order) and the exception's, from --dump."""
    threads: list[dict[str, str]] = []
    exception: dict[str, str] | None = None
    owner: dict[str, str] | None = None
    for heading, fields, _ in rust_dump(name):
        if heading == "MINIDUMP_THREAD":
            owner = {"thread_id": fields["thread_id"]}
            threads.append(owner)
        elif heading == "MINIDUMP_EXCEPTION":
            exception = owner = {"thread_id": fields["thread_id"]}
        elif heading.startswith("CONTEXT_") and owner is not None:
            owner.update(fields)
            owner = None
    return threads, exception


def rust_sections(name: str, heading: str) -> list[dict[str, str]]:
    return [f for hd, f, _ in rust_dump(name) if hd == heading]


@functools.cache
def breakpad_machine(name: str) -> dict[str, Any]:
    out = run("breakpad-stackwalk", "-m", PATHS[name], check=True).stdout
    result: dict[str, Any] = {"modules": []}
    for line in out.splitlines():
        parts = line.split("|")
        if parts[0] in ("OS", "CPU", "Crash"):
            result[parts[0]] = parts[1:]
        elif parts[0] == "Module":
            result["modules"].append(parts[1:])
    return result


@functools.cache
def breakpad_dump(name: str) -> tuple[str, str]:
    """(stdout, stderr) of Breakpad's minidump_dump; its exit code is meaningless
    (validators.md §3: it fails whenever MiscInfo or MemoryInfoList is absent)."""
    proc = run("breakpad-minidump-dump", PATHS[name])
    return proc.stdout, proc.stderr


def breakpad_regions(name: str) -> list[tuple[int, bytes]]:
    lines = breakpad_dump(name)[0].splitlines()
    regions = []
    for i, line in enumerate(lines):
        if line == "MDMemoryDescriptor":
            start = h(lines[i + 1].split("=")[1])
            assert lines[i + 4] == "Memory"
            content = lines[i + 5]
            assert content.startswith("0x")
            regions.append((start, bytes.fromhex(content[2:])))
    return regions


def breakpad_linux_stream(name: str, stream: str) -> str | None:
    text = breakpad_dump(name)[0]
    m = re.search(rf"^Stream {stream}:\n(.*?)(?=^Stream MD_|\Z)", text, re.S | re.M)
    return m.group(1) if m else None


@functools.cache
def obj2yaml(name: str) -> dict[str, Any]:
    data = parse_llvm_yaml(run("obj2yaml", PATHS[name], check=True).stdout)
    assert isinstance(data, dict)
    return data


def yaml_streams(name: str, kind: str) -> list[dict[str, Any]]:
    return [s for s in obj2yaml(name)["Streams"] if s["Type"] == kind]


@functools.cache
def lldb(name: str) -> dict[str, Any]:
    """lldb's thread list, image list, pid, and 16 bytes read at up to three addresses
    (the first, middle and last MemoryList range obj2yaml reports)."""
    ranges = [r for s in yaml_streams(name, "MemoryList") for r in s.get("Memory Ranges", [])
              if len(r.get("Content", "")) >= 32]
    picks = sorted({h(r["Start of Memory Range"]) for r in
                    (ranges[0], ranges[len(ranges) // 2], ranges[-1])} if ranges else set())
    commands = ["thread list", "image list"] + [f"memory read -c 16 0x{a:x}" for a in picks]
    # without this lldb spends 5-10 s per dump looking for symbol files on the network
    args: list[str] = ["-b", "-O", "settings set symbols.enable-external-lookup false",
                       "-c", str(PATHS[name])]
    for c in commands:
        args += ["-o", c]
    out = run("lldb", *args, check=True).stdout
    threads = [(h(m.group(1)), h(m.group(2)), m.group(3)) for m in re.finditer(
        r"thread #\d+: tid = (0x[0-9a-f]+|\d+), (0x[0-9a-f]+)[^\n]*?(?:stop reason = ([^\n]*))?$",
        out, re.M)]
    images = [(m.group(1) or "", h(m.group(2)), m.group(3)) for m in re.finditer(
        r"^\[\s*\d+\]\s+([0-9A-F-]{8,})?\s+(0x[0-9a-f]+) (.+?)\s*$", out, re.M)]
    memory = {h(m.group(1)): bytes.fromhex(m.group(2)) for m in re.finditer(
        r"^(0x[0-9a-f]+): ((?:[0-9a-f]{2} ){15}[0-9a-f]{2})", out, re.M)}
    pid = re.search(r"^Process (\d+) stopped", out, re.M)
    return {"threads": threads, "images": images, "memory": memory, "picks": picks,
            "pid": int(pid.group(1)) if pid else None}


SKELSEC = r'''
import json, logging, sys
logging.disable(logging.CRITICAL)
from minidump.minidumpfile import MinidumpFile
def v(x):  # skelsec returns plain Enum members for numeric fields
    return getattr(x, "value", x)
def ctx(c):
    if c is None: return None
    if hasattr(c, "Rip"): return {"pc": c.Rip, "sp": c.Rsp}
    return {"pc": c.Eip, "sp": c.Esp}
try:
    mf = MinidumpFile.parse(sys.argv[1])
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"})); sys.exit(0)
out = {"threads": [], "modules": [], "memory": [], "handles": [], "unloaded": [], "meminfo": []}
for t in mf.threads.threads if mf.threads else []:
    out["threads"].append({"id": t.ThreadId, "teb": t.Teb, "suspend": t.SuspendCount,
        "priority": t.Priority, "priority_class": t.PriorityClass,
        "stack": [t.Stack.StartOfMemoryRange, t.Stack.DataSize], "ctx": ctx(t.ContextObject)})
for m in mf.modules.modules if mf.modules else []:
    out["modules"].append({"name": m.name, "base": m.baseaddress, "size": m.size,
        "timestamp": m.timestamp, "checksum": m.checksum})
reader = mf.get_reader()
for s in mf.memory_segments.memory_segments if mf.memory_segments else []:
    out["memory"].append([s.start_virtual_address,
                          reader.read(s.start_virtual_address, s.size).hex()])
if mf.exception:
    r = mf.exception.exception_records[0]
    out["exception"] = {"thread_id": r.ThreadId, "code": r.ExceptionRecord.ExceptionCode_raw,
        "address": r.ExceptionRecord.ExceptionAddress,
        "params": r.ExceptionRecord.ExceptionInformation[:r.ExceptionRecord.NumberParameters]}
for hd in mf.handles.handles if mf.handles else []:
    out["handles"].append([hd.Handle, hd.TypeName, hd.ObjectName, hd.Attributes,
                           hd.GrantedAccess, hd.HandleCount, hd.PointerCount])
for u in mf.unloaded_modules.modules if mf.unloaded_modules else []:
    out["unloaded"].append([u.name, u.baseaddress, u.size, u.timestamp, u.checksum])
for i in mf.memory_info.infos if mf.memory_info else []:
    out["meminfo"].append([i.BaseAddress, i.AllocationBase, v(i.AllocationProtect),
        i.RegionSize, v(i.State), v(i.Protect), v(i.Type)])
out["pid"] = mf.misc_info.ProcessId if mf.misc_info else None
s = mf.sysinfo
out["sysinfo"] = [v(s.ProcessorArchitecture), s.ProcessorLevel, s.ProcessorRevision,
    s.NumberOfProcessors, s.MajorVersion, s.MinorVersion, s.BuildNumber, v(s.PlatformId),
    s.CSDVersion]
print(json.dumps(out))
'''

UDMP = r'''
import json, sys
import udmp_parser
d = udmp_parser.UserDumpParser()
if not d.Parse(sys.argv[1]):
    print(json.dumps({"error": "Parse() returned False"})); sys.exit(0)
def ctx(c):
    if hasattr(c, "Rip"): return {"pc": c.Rip, "sp": c.Rsp, "flags": c.ContextFlags}
    return {"pc": c.Eip, "sp": c.Esp, "flags": c.ContextFlags}
out = {"threads": {str(t): ctx(th.Context) for t, th in d.Threads().items()},
       "foreground": d.ForegroundThreadId(),
       "modules": [[m.ModuleName, m.BaseOfImage, m.SizeOfImage, m.TimeDateStamp, m.CheckSum,
                    bytes(m.CvRecord).hex()] for m in d.Modules().values()],
       "regions": [[b.BaseAddress, b.AllocationBase, b.AllocationProtect, b.RegionSize,
                    b.State, b.Protect, b.Type, b.DataSize] for b in d.Memory().values()],
       "reads": {}}
for addr in sys.argv[2:]:
    got = d.ReadMemory(int(addr), 16)
    out["reads"][addr] = None if got is None else bytes(got).hex()
print(json.dumps(out))
'''


@functools.cache
def python_tool(name: str, tool: str) -> dict[str, Any]:
    """skelsec / udmp-parser, each in a child process (udmp-parser is native code and
    has aborted the interpreter on a bad call)."""
    args = [sys.executable, "-c", SKELSEC if tool == "skelsec" else UDMP, str(PATHS[name])]
    if tool == "udmp":  # ask it for bytes at the start of every MemoryList range
        args += [str(r.start) for r in ours(name).memory.ranges[:8]]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{tool} crashed on {name}: {proc.stderr[-2000:]}"
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


# --- a reader for the YAML subset obj2yaml writes ----------------------------------------------

def parse_llvm_yaml(text: str) -> Any:
    lines = [ln for ln in text.splitlines() if not ln.startswith("---") and ln.rstrip() != "..."]
    value, _ = _yaml_block(lines, 0, 0)
    return value


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _skip_blank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _yaml_block(lines: list[str], i: int, min_indent: int) -> tuple[Any, int]:
    i = _skip_blank(lines, i)
    if i >= len(lines) or _indent(lines[i]) < min_indent:
        return None, i
    ind = _indent(lines[i])
    if not lines[i][ind:].startswith("- "):
        return _yaml_map(lines, i, ind)
    items = []
    while True:
        i = _skip_blank(lines, i)
        if i >= len(lines) or _indent(lines[i]) != ind or not lines[i][ind:].startswith("- "):
            return items, i
        lines[i] = lines[i][:ind] + "  " + lines[i][ind + 2:]  # "- k: v" -> a map at ind+2
        item, i = _yaml_map(lines, i, ind + 2)
        items.append(item)


def _yaml_map(lines: list[str], i: int, ind: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while True:
        i = _skip_blank(lines, i)
        if i >= len(lines) or _indent(lines[i]) != ind or lines[i][ind:].startswith("- "):
            return out, i
        key, _, rest = lines[i][ind:].partition(":")
        rest = rest.strip()
        i += 1
        if rest.startswith("|"):
            j = i
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > ind):
                j += 1
            block = lines[i:j]
            while block and not block[-1].strip():
                block.pop()
            cut = min((_indent(b) for b in block if b.strip()), default=0)
            out[key] = "\n".join(b[cut:] for b in block)
            i = j
        elif rest == "":
            out[key], i = _yaml_block(lines, i, ind + 1)
        elif rest[0] == "'":
            out[key] = rest[1:-1].replace("''", "'")
        elif rest[0] == '"':
            out[key] = rest[1:-1]
        elif rest[0] == "[":
            out[key] = [x.strip() for x in rest[1:-1].split(",") if x.strip()]
        else:
            out[key] = rest


# ============================================================================================
# opening
# ============================================================================================

def _touch_everything(d: Minidump) -> None:
    for attr in ("system_info", "misc_info", "threads", "thread_names", "modules",
                 "unloaded_modules", "exception", "memory_info", "thread_info", "handles",
                 "linux_cpuinfo", "linux_proc_status", "linux_lsb_release", "linux_cmdline",
                 "linux_environ", "linux_auxv", "linux_maps", "linux_dso_debug", "process_id",
                 "minidumpkit_info"):
        getattr(d, attr)
    for t in d.threads:
        assert len(t.stack) == t.stack_size
    d.memory.ranges
    for s in d.streams:
        raw = d.raw_stream(s.type)
        if int(s.type) != 0:
            assert raw is not None


@pytest.mark.parametrize("name", NAMES)
def test_opens_from_path_bytes_and_file(name: str) -> None:
    path = PATHS[name]
    with minidumpkit.open_minidump(path) as d:
        _touch_everything(d)
        tids = [t.thread_id for t in d.threads]
        mods = [(m.name, m.base) for m in d.modules]
    assert d.closed
    d.close()  # idempotent
    with minidumpkit.open_minidump(path.read_bytes()) as d2:
        _touch_everything(d2)
        assert [t.thread_id for t in d2.threads] == tids
    with open(path, "rb") as f, minidumpkit.open_minidump(f) as d3:
        assert [(m.name, m.base) for m in d3.modules] == mods
    with minidumpkit.open_minidump(memoryview(bytearray(path.read_bytes()))) as d4:
        assert [t.thread_id for t in d4.threads] == tids


def test_reads_after_close_fail_but_parsed_data_stays() -> None:
    d = minidumpkit.open_minidump(THIRD_PARTY[0])
    threads = d.threads
    d.close()
    assert threads[0].thread_id > 0
    with pytest.raises(ValueError, match="closed"):
        threads[0].stack
    with pytest.raises(ValueError, match="closed"):
        d.raw_stream(StreamType.ThreadListStream)


# ============================================================================================
# streams / directory
# ============================================================================================

@pytest.mark.parametrize("name", NAMES)
def test_stream_directory_matches_rust_dump(name: str) -> None:
    # rust-minidump prints one entry per stream type, so of repeated UnusedStream
    # padding entries only the last appears
    theirs: dict[int, tuple[int, int, int]] = {}
    index = None
    for heading, f, _ in rust_dump(name):
        m = re.fullmatch(r"mDirectory\[(\d+)\]", heading)
        if m:
            index = int(m.group(1))
        elif heading == "MDRawDirectory" and index is not None:
            theirs[index] = (h(f["stream_type"].split()[0]), h(f["location.data_size"]),
                             h(f["location.rva"]))
            index = None
    d = ours(name)
    assert {i: (int(s.type), s.data_size, s.rva) for i, s in enumerate(d.streams)
            if i in theirs} == theirs
    assert {i for i, s in enumerate(d.streams) if s.type != 0} <= set(theirs)
    header = rust_sections(name, "MDRawHeader")[0]
    assert d.header.version == h(header["version"])
    assert d.header.stream_count == h(header["stream_count"]) == len(d.streams)
    assert d.header.flags == h(header["flags"])
    assert d.header.time_date_stamp == h(header["time_date_stamp"].split()[0])


@pytest.mark.parametrize("name", NAMES)
def test_unknown_streams_are_kept_raw(name: str) -> None:
    d = ours(name)
    for s in d.streams:
        if not isinstance(s.type, StreamType):
            raw = d.raw_stream(s.type)
            assert raw is not None and len(raw) == s.data_size
            assert PATHS[name].read_bytes()[s.rva:s.rva + s.data_size] == raw


# ============================================================================================
# system and process
# ============================================================================================

@pytest.mark.parametrize("name", NAMES)
def test_system_info(name: str) -> None:
    si = ours(name).system_info
    assert si is not None
    rust = rust_json(name)["system_info"]
    assert (si.os, si.cpu, si.number_of_processors, si.cpu_info) == (
        rust["os"], rust["cpu_arch"], rust["cpu_count"], rust["cpu_info"])
    bp = breakpad_machine(name)
    assert bp["OS"][0] == si.os
    # Breakpad prints "major.minor.build CSD" (Linux dumps: the CSD is the uname line)
    assert bp["OS"][1].strip() == si.version_string
    assert bp["CPU"] == [si.cpu, si.cpu_info, str(si.number_of_processors)]
    y = yaml_streams(name, "SystemInfo")[0]
    assert si.processor_level == h(y.get("Processor Level", "0"))
    assert si.processor_revision == h(y.get("Processor Revision", "0"))
    assert si.number_of_processors == h(y.get("Number of Processors", "0"))
    assert si.product_type == h(y.get("Product type", "0"))
    assert (si.major_version, si.minor_version, si.build_number) == (
        h(y.get("Major Version", "0")), h(y.get("Minor Version", "0")),
        h(y.get("Build Number", "0")))
    assert (si.csd_version or "") == y.get("CSD Version", "")
    if name in SKELSEC_READS:
        sk = python_tool(name, "skelsec")["sysinfo"]
        assert sk[:8] == [int(si.architecture), si.processor_level, si.processor_revision,
                          si.number_of_processors, si.major_version, si.minor_version,
                          si.build_number, int(si.platform)]
        assert (sk[8] or "") == (si.csd_version or "")


@pytest.mark.parametrize("name", NAMES)
def test_process_id(name: str) -> None:
    d = ours(name)
    assert d.process_id == rust_json(name)["pid"] == lldb(name)["pid"]
    misc = rust_sections(name, "MINIDUMP_MISC_INFO")
    if misc:
        assert d.misc_info is not None and d.misc_info.process_id == h(misc[0]["process_id"])
        assert d.misc_info.raw.size_of_info == h(misc[0]["size_of_info"])  # type: ignore[attr-defined]
        if name in SKELSEC_READS:
            assert python_tool(name, "skelsec")["pid"] == d.misc_info.process_id
    else:
        assert d.misc_info is None


# ============================================================================================
# threads and registers
# ============================================================================================

@pytest.mark.parametrize("name", NAMES)
def test_threads_match_rust_json(name: str) -> None:
    rust = rust_json(name)
    assert [t.thread_id for t in ours(name).threads] == [t["thread_id"] for t in rust["threads"]]
    assert [t.name for t in ours(name).threads] == [t["thread_name"] for t in rust["threads"]]
    assert len(ours(name).threads) == rust["thread_count"]


@pytest.mark.parametrize("name", NAMES)
def test_registers_match_rust_dump(name: str) -> None:
    d = ours(name)
    theirs, exc = rust_contexts(name)
    assert [h(t["thread_id"]) for t in theirs] == [t.thread_id for t in d.threads]
    for t, ctx in zip(d.threads, theirs):
        assert t.context is not None, f"thread {t.thread_id} has no context"
        regs = t.registers
        assert regs, t.thread_id
        for reg, value in regs.items():
            assert value == h(ctx[reg]), f"thread {t.thread_id} {reg}"
        assert t.context.context_flags == h(ctx["context_flags"])
    if exc is not None:
        assert d.exception is not None and d.exception.context is not None
        for reg, value in d.exception.context.registers().items():
            assert value == h(exc[reg]), f"exception context {reg}"


@pytest.mark.parametrize("name", NAMES)
def test_threads_match_lldb(name: str) -> None:
    d = ours(name)
    exc = d.exception
    expected = []
    for t in d.threads:
        # lldb shows the crashing thread at the fault: the exception stream's context
        ctx = exc.context if exc is not None and exc.thread_id == t.thread_id else t.context
        assert ctx is not None
        expected.append((t.thread_id, ctx.pc))
    assert [(tid, pc) for tid, pc, _ in lldb(name)["threads"]] == expected


@pytest.mark.parametrize("name", NAMES)
def test_threads_match_obj2yaml(name: str) -> None:
    d = ours(name)
    (lst,) = yaml_streams(name, "ThreadList")
    theirs = lst["Threads"]
    assert len(theirs) == len(d.threads)
    for t, y in zip(d.threads, theirs):
        assert t.thread_id == h(y["Thread Id"])
        assert t.suspend_count == h(y.get("Suspend Count", "0"))
        assert t.priority_class == h(y.get("Priority Class", "0"))
        assert t.priority == h(y.get("Priority", "0"))
        assert t.teb == h(y.get("Environment Block", "0"))
        assert t.stack_start == h(y["Stack"]["Start of Memory Range"])
        assert t.stack == bytes.fromhex(y["Stack"].get("Content", ""))
        ctx = bytes.fromhex(y["Context"])
        assert t.context_size == len(ctx)
        assert t.context is not None and t.context.pack() == ctx[:type(t.context).SIZE]


@pytest.mark.parametrize("name", NAMES)
def test_threads_match_skelsec(name: str) -> None:
    sk = python_tool(name, "skelsec")
    if name not in SKELSEC_READS:
        assert sk["error"] == "ValueError: 65520 is not a valid MINIDUMP_STREAM_TYPE"
        assert ours(name).stream(0xFFF0) is not None
        return
    theirs = sk["threads"]
    assert [x["id"] for x in theirs] == [t.thread_id for t in ours(name).threads]
    for t, x in zip(ours(name).threads, theirs):
        assert (t.teb, t.suspend_count, t.priority, t.priority_class) == (
            x["teb"], x["suspend"], x["priority"], x["priority_class"])
        assert [t.stack_start, t.stack_size] == x["stack"]
        assert (t.pc, t.sp) == (x["ctx"]["pc"], x["ctx"]["sp"])


@pytest.mark.parametrize("name", NAMES)
def test_threads_match_udmp_parser(name: str) -> None:
    ud = python_tool(name, "udmp")
    assert "error" not in ud  # udmp-parser reads every fixture here, Wine's included
    d = ours(name)
    assert {int(k) for k in ud["threads"]} == {t.thread_id for t in d.threads}
    for t in d.threads:
        c = ud["threads"][str(t.thread_id)]
        assert t.context is not None
        assert (t.pc, t.sp, t.context.context_flags) == (c["pc"], c["sp"], c["flags"])
    exc = d.exception
    assert ud["foreground"] == (exc.thread_id if exc is not None else None)


def test_thread_names_from_thread_names_stream() -> None:
    # rust-minidump and Breakpad read ThreadNamesStream; lldb and skelsec do not
    for name in NAMES:
        rust = {h(f["thread_id"]): f["name"].strip('"')
                for f in rust_sections(name, "MINIDUMP_THREAD_NAME")}
        assert ours(name).thread_names == rust
    assert ours("windows-x86-dbghelp-thread-names.dmp").thread_names == {
        h(f["thread_id"]): f["name"].strip('"')
        for f in rust_sections("windows-x86-dbghelp-thread-names.dmp", "MINIDUMP_THREAD_NAME")}
    assert len(ours("generated-crashpad-linux-x86_64-3threads-segv.dmp").thread_names) == 3


# ============================================================================================
# modules
# ============================================================================================

@pytest.mark.parametrize("name", NAMES)
def test_modules_match_rust_json(name: str) -> None:
    nil = "0" * 33  # rust prints the nil debug id where there is none
    theirs = rust_json(name)["modules"]
    mods = ours(name).modules
    assert len(mods) == len(theirs)
    for m, r in zip(mods, theirs):
        assert m.basename == r["filename"]
        assert (m.base, m.end) == (h(r["base_addr"]), h(r["end_addr"]))
        assert m.code_id == r["code_id"]
        assert (m.debug_id or nil) == r["debug_id"]
        assert (m.debug_file or "").replace("\\", "/").rsplit("/", 1)[-1] == (r["debug_file"] or "")
        assert m.version == r["version"]


@pytest.mark.parametrize("name", NAMES)
def test_modules_match_rust_dump(name: str) -> None:
    theirs = rust_sections(name, "MINIDUMP_MODULE")
    mods = ours(name).modules
    assert len(theirs) == len(mods)
    for m, r in zip(mods, theirs):
        assert m.name == r["(code_file)"].strip('"')
        assert (m.checksum, m.timestamp) == (h(r["checksum"]), h(r["time_date_stamp"].split()[0]))
        if "(cv_record).build_id" in r:
            assert m.build_id == bytes.fromhex(r["(cv_record).build_id"])
        elif "(cv_record).signature" in r:
            assert str(m.pdb_guid) == r["(cv_record).signature"]
            assert m.pdb_age == h(r["(cv_record).age"])
            assert m.debug_file == r["(cv_record).pdb_file_name"].strip('"')
        else:
            assert m.cv_record is None and r["(cv_record)"] == "(null)"


@pytest.mark.parametrize("name", NAMES)
def test_modules_match_breakpad(name: str) -> None:
    theirs = breakpad_machine(name)["modules"]
    mods = ours(name).modules
    assert len(theirs) == len(mods)
    # Breakpad lists modules sorted by base address; its end address is inclusive.
    for m, b in zip(sorted(mods, key=lambda m: m.base), sorted(theirs, key=lambda b: h(b[4]))):
        filename, version, debug_file, debug_id, base, last = b[:6]
        assert m.basename == filename
        assert (m.version or "") == version
        assert (m.debug_file or "").replace("\\", "/").rsplit("/", 1)[-1] == debug_file
        assert (m.debug_id or "") == debug_id.upper()
        assert (m.base, m.end - 1) == (h(base), h(last))


@pytest.mark.parametrize("name", NAMES)
def test_modules_match_lldb(name: str) -> None:
    d = ours(name)
    si = d.system_info
    assert si is not None
    expected = []
    for m in d.modules:
        if isinstance(m.cv_record, CodeViewElf):
            uuid = m.cv_record.build_id.hex()
        elif isinstance(m.cv_record, CodeViewPdb70):
            # lldb: on Windows the GUID as printed plus the age; elsewhere the raw 16 bytes
            # (Breakpad's old Linux writer put an RSDS record with age 0 there)
            guid = m.cv_record.guid
            uuid = (guid.hex + f"{m.cv_record.age:08x}") if si.is_windows \
                else guid.bytes_le.hex()
        else:
            uuid = ""
        expected.append((uuid.upper(), m.base, m.name))
    assert [(u.replace("-", ""), b, p) for u, b, p in lldb(name)["images"]] == expected


@pytest.mark.parametrize("name", NAMES)
def test_modules_match_obj2yaml(name: str) -> None:
    (lst,) = yaml_streams(name, "ModuleList")
    theirs = lst["Modules"]
    mods = ours(name).modules
    assert len(theirs) == len(mods)
    for m, y in zip(mods, theirs):
        assert (m.base, m.size, m.name) == (
            h(y["Base of Image"]), h(y["Size of Image"]), y["Module Name"])
        assert m.timestamp == h(y.get("Time Date Stamp", "0"))
        assert m.checksum == h(y.get("Checksum", "0"))
        vi = y.get("Version Info", {})
        assert m.version_info.signature == h(vi.get("Signature", "0"))
        assert m.version_info.file_version_hi == h(vi.get("File Version High", "0"))
        assert m.version_info.file_version_lo == h(vi.get("File Version Low", "0"))
        cv = bytes.fromhex(y.get("CodeView Record", ""))
        assert _encode_cv(m) == cv[:len(_encode_cv(m))]


def _encode_cv(m: minidumpkit._streams.Module) -> bytes:
    """The CodeView record bytes implied by what we decoded (compared with the raw
    record the other tools print)."""
    cv = m.cv_record
    if isinstance(cv, CodeViewElf):
        return b"LEpB" + cv.build_id
    if isinstance(cv, CodeViewPdb70):
        return (b"RSDS" + cv.guid.bytes_le + cv.age.to_bytes(4, "little")
                + cv.pdb_file.encode() + b"\0")
    assert cv is None, f"unexpected CodeView in a fixture: {cv!r}"
    return b""


@pytest.mark.parametrize("name", NAMES)
def test_modules_match_skelsec_and_udmp(name: str) -> None:
    mods = ours(name).modules
    ud = python_tool(name, "udmp")["modules"]
    assert sorted((n, b, s, t, c, bytes.fromhex(cv)[:len(_encode_cv(m))])
                  for (n, b, s, t, c, cv), m in zip(sorted(ud, key=lambda x: x[1]),
                                                     sorted(mods, key=lambda m: m.base))) == \
        sorted((m.name, m.base, m.size, m.timestamp, m.checksum, _encode_cv(m)) for m in mods)
    if name in SKELSEC_READS:
        sk = python_tool(name, "skelsec")["modules"]
        assert [(x["name"], x["base"], x["size"], x["timestamp"], x["checksum"]) for x in sk] \
            == [(m.name, m.base, m.size, m.timestamp, m.checksum) for m in mods]


def test_unloaded_modules_and_handles() -> None:
    name = "windows-x86_64-dbghelp-handles-meminfo.dmp"
    d = ours(name)
    rust = rust_json(name)
    assert [(u.name, u.base, u.end, u.code_id) for u in d.unloaded_modules] == [
        (r["filename"], h(r["base_addr"]), h(r["end_addr"]), r["code_id"])
        for r in rust["unloaded_modules"]]
    sk = python_tool(name, "skelsec")
    assert [[u.name, u.base, u.size, u.timestamp, u.checksum] for u in d.unloaded_modules] \
        == sk["unloaded"]
    assert [[x.handle, x.type_name, x.object_name, x.attributes, x.granted_access,
             x.handle_count, x.pointer_count] for x in d.handles] == sk["handles"]
    assert [(x.handle, x.type_name, x.object_name) for x in d.handles] == [
        (r["handle"], r["type_name"], r["object_name"]) for r in rust["handles"]]
    descriptors = rust_sections(name, "MINIDUMP_HANDLE_DESCRIPTOR")
    assert [(x.handle, x.granted_access, x.handle_count, x.pointer_count) for x in d.handles] \
        == [(h(r["handle"]), h(r["granted_access"]), h(r["handle_count"]),
             h(r["pointer_count"])) for r in descriptors]
    assert len(d.handles) == 147 and len(d.unloaded_modules) == 1


def test_memory_info_list() -> None:
    name = "windows-x86_64-dbghelp-handles-meminfo.dmp"
    d = ours(name)
    rows = [[r.base_address, r.allocation_base, int(r.allocation_protect), r.region_size,
             int(r.state), int(r.protect), int(r.type)] for r in d.memory_info]
    assert len(rows) == 557
    sk = python_tool(name, "skelsec")["meminfo"]
    assert len(sk) == len(rows)
    for mine, theirs in zip(rows, sk):  # skelsec gives None for flag values it cannot name
        assert [t if t is not None else m for m, t in zip(mine, theirs)] == mine
    assert [row[:7] for row in sorted(python_tool(name, "udmp")["regions"])] == sorted(rows)
    (y,) = yaml_streams(name, "MemoryInfoList")
    # obj2yaml leaves out an Allocation Base equal to the Base Address
    assert [(h(r["Base Address"]), h(r.get("Allocation Base", r["Base Address"])),
             h(r["Region Size"])) for r in y["Memory Ranges"]] == [
        (row[0], row[1], row[3]) for row in rows]
    rust = rust_sections(name, "MINIDUMP_MEMORY_INFO")
    assert [(h(r["base_address"]), h(r["region_size"]), h(r["state"]), h(r["protection"]),
             h(r["_type"])) for r in rust] == [(x[0], x[3], x[4], x[5], x[6]) for x in rows]


# ============================================================================================
# crash reason
# ============================================================================================

@pytest.mark.parametrize("name", NAMES)
def test_crash_reason(name: str) -> None:
    d = ours(name)
    exc = d.exception
    rust = rust_json(name)["crash_info"]
    bp = breakpad_machine(name)["Crash"]
    if exc is None:
        assert rust["type"] is None and bp[0] == "No crash"
        assert yaml_streams(name, "Exception") == []
        return
    assert exc.reason == rust["type"]
    assert exc.crash_address == h(rust["address"])
    crashing = rust["crashing_thread"]
    assert d.threads[crashing].thread_id == exc.thread_id
    # Breakpad's spellings: "SIGSEGV /SEGV_MAPERR", only the fast-fail name, or the raw
    # code for NTSTATUS values it has no name for
    reason = bp[0].replace(" ", "")
    assert (reason == exc.reason.replace(" ", "")
            or exc.reason.endswith(bp[0])
            or reason.startswith(f"0x{exc.code:08x}/"))
    assert h(bp[1]) == exc.crash_address
    assert d.threads[int(bp[2])].thread_id == exc.thread_id
    (y,) = yaml_streams(name, "Exception")
    rec = y["Exception Record"]
    assert (exc.thread_id, exc.code, exc.flags, exc.address) == (
        h(y["Thread ID"]), h(rec["Exception Code"]), h(rec.get("Exception Flags", "0")),
        h(rec.get("Exception Address", "0")))
    assert exc.parameters == tuple(h(rec[f"Parameter {i}"]) if f"Parameter {i}" in rec else 0
                                   for i in range(h(rec.get("Number of Parameters", "0"))))
    stop = [(tid, r) for tid, _, r in lldb(name)["threads"] if r]
    si = d.system_info
    assert si is not None
    if si.is_linux and exc.code == md.DUMP_REQUESTED:
        assert stop == []  # lldb shows no stop reason for a requested dump
    elif si.is_linux:
        assert stop == [(exc.thread_id, "signal " + exc.reason.split(" /")[0])]
    else:
        m = re.fullmatch(r"Exception (0x[0-9a-f]+) encountered at address (0x[0-9a-f]+)",
                         stop[0][1])
        assert m and len(stop) == 1 and stop[0][0] == exc.thread_id
        assert (h(m.group(1)), h(m.group(2))) == (exc.code, exc.address)
    if name in SKELSEC_READS:
        sk = python_tool(name, "skelsec")["exception"]
        assert (sk["thread_id"], sk["code"], sk["address"], tuple(sk["params"])) == (
            exc.thread_id, exc.code, exc.address, exc.parameters)


def test_linux_dump_requested_and_signal_names() -> None:
    # named in the issue: DUMP_REQUESTED for 0xFFFFFFFF, signal / si_code names
    assert ours("generated-breakpad-linux-x86_64-3threads-live.dmp").exception.reason \
        == rust_json("generated-breakpad-linux-x86_64-3threads-live.dmp")["crash_info"]["type"] \
        == "DUMP_REQUESTED"  # type: ignore[union-attr]
    assert ours("generated-crashpad-linux-x86_64-3threads-segv.dmp").exception.reason \
        == "SIGSEGV / SEGV_MAPERR"  # type: ignore[union-attr]
    assert ours("windows-x86-dbghelp-thread-names.dmp").exception.reason \
        == "EXCEPTION_ACCESS_VIOLATION_READ"  # type: ignore[union-attr]


# ============================================================================================
# memory
# ============================================================================================

@pytest.mark.parametrize("name", NAMES)
def test_memory_matches_obj2yaml(name: str) -> None:
    d = ours(name)
    (lst,) = yaml_streams(name, "MemoryList")
    theirs = [(h(r["Start of Memory Range"]), bytes.fromhex(r.get("Content", "")))
              for r in lst["Memory Ranges"]]
    assert [(r.start, r.size) for r in d.memory.ranges] == [(s, len(c)) for s, c in theirs]
    first: dict[int, bytes] = {}
    for start, content in theirs:
        first.setdefault(start, content)  # duplicated ranges: the first one wins
    for start, content in first.items():
        assert d.memory.read(start, len(content)) == content, hex(start)
    assert yaml_streams(name, "Memory64List") == []  # no public small Memory64 fixture


@pytest.mark.parametrize("name", NAMES)
def test_memory_matches_breakpad(name: str) -> None:
    d = ours(name)
    out, err = breakpad_dump(name)
    if name not in BREAKPAD_MEMORY_READS:
        assert f"MinidumpMemoryList count {len(d.memory)} exceeds maximum 4096" in err
        assert breakpad_regions(name) == []
        return
    regions = breakpad_regions(name)
    assert len(regions) == len(d.memory)
    for start, content in regions:
        assert d.memory.read(start, len(content)) == content


@pytest.mark.parametrize("name", NAMES)
def test_memory_matches_lldb(name: str) -> None:
    got = lldb(name)
    assert got["picks"] and set(got["memory"]) == set(got["picks"])
    for address, content in got["memory"].items():
        assert ours(name).memory.read(address, 16) == content


@pytest.mark.parametrize("name", NAMES)
def test_memory_matches_skelsec(name: str) -> None:
    if name not in SKELSEC_READS:
        assert python_tool(name, "skelsec")["error"] == \
            "ValueError: 65520 is not a valid MINIDUMP_STREAM_TYPE"
        return
    segments = python_tool(name, "skelsec")["memory"]
    assert len(segments) == len(ours(name).memory)
    for start, content in segments:
        assert ours(name).memory.read(start, len(content) // 2) == bytes.fromhex(content)


@pytest.mark.parametrize("name", NAMES)
def test_udmp_parser_ignores_memory_list(name: str) -> None:
    reads = python_tool(name, "udmp")["reads"]
    assert reads and len(reads) == len({r.start for r in ours(name).memory.ranges[:8]})
    for address, content in reads.items():
        assert not content, f"udmp-parser read MemoryList bytes at {int(address):#x}"
        assert len(ours(name).memory.read(int(address), 1)) == 1


@pytest.mark.parametrize("name", NAMES)
def test_memory_read_semantics(name: str) -> None:
    mem = ours(name).memory
    r = max(mem.ranges, key=lambda r: r.size)
    assert mem.read(r.start, r.size) == mem.read(r.start, r.size // 2) + mem.read(
        r.start + r.size // 2, r.size - r.size // 2)
    assert r.start in mem and mem.find(r.start) is not None
    with pytest.raises(MemoryNotCaptured) as info:
        mem.read(r.end - 4, 4 + (1 << 40))
    assert info.value.address == r.end - 4
    assert mem.read(r.start, 0) == b""
    with pytest.raises(MemoryNotCaptured):
        mem.read(0xFFFF_FFFF_FFFF_0000, 16)
    with pytest.raises(ValueError):
        mem.read(-1, 4)


def test_memory_spans_adjacent_ranges() -> None:
    # Wine records the stack from SP to its base and separately 256 bytes around RIP,
    # unwind data, ...: find two abutting ranges and read across the seam
    d = ours("wine8-x64-normal.dmp")
    ranges = sorted(d.memory.ranges, key=lambda r: r.start)
    pairs = [(a, b) for a, b in zip(ranges, ranges[1:]) if a.end == b.start]
    assert pairs, "expected abutting ranges in Wine's MemoryList"
    a, b = pairs[0]
    (lst,) = yaml_streams("wine8-x64-normal.dmp", "MemoryList")
    content = {h(r["Start of Memory Range"]): bytes.fromhex(r["Content"])
               for r in lst["Memory Ranges"]}
    assert d.memory.read(a.end - 8, 16) == content[a.start][-8:] + content[b.start][:8]


# ============================================================================================
# Linux streams
# ============================================================================================

LINUX = ["breakpad-linux-x86_64-sigabrt.dmp", "generated-breakpad-linux-x86_64-3threads-live.dmp"]


def _breakpad_text(raw: bytes) -> str:
    """How minidump_dump prints a Linux stream: each NUL as a visible "\\0" line end."""
    return raw.replace(b"\0", b"\\0\n").decode("utf-8", "replace")


@pytest.mark.parametrize("name", LINUX)
def test_linux_text_streams_match_breakpad(name: str) -> None:
    d = ours(name)
    checked = 0
    for stream, bp_name in [(StreamType.LinuxCmdLine, "MD_LINUX_CMD_LINE"),
                            (StreamType.LinuxEnviron, "MD_LINUX_ENVIRON"),
                            (StreamType.LinuxLsbRelease, "MD_LINUX_LSB_RELEASE"),
                            (StreamType.LinuxProcStatus, "MD_LINUX_PROC_STATUS"),
                            (StreamType.LinuxCpuInfo, "MD_LINUX_CPU_INFO"),
                            (StreamType.LinuxMaps, "MD_LINUX_MAPS")]:
        theirs = breakpad_linux_stream(name, bp_name)
        raw = d.raw_stream(stream)
        assert (theirs is None) == (raw is None), bp_name
        if raw is not None and theirs is not None:
            assert theirs.startswith(_breakpad_text(raw)) and not theirs[
                len(_breakpad_text(raw)):].strip(), bp_name
            checked += 1
    assert checked >= 4
    cmdline = breakpad_linux_stream(name, "MD_LINUX_CMD_LINE")
    assert cmdline is not None
    assert d.linux_cmdline == [a for a in cmdline.split("\\0\n") if a.strip()]
    environ = breakpad_linux_stream(name, "MD_LINUX_ENVIRON")
    if environ is not None:
        pairs = [e.partition("=") for e in environ.split("\\0\n") if "=" in e]
        assert d.linux_environ == {k: v for k, _, v in reversed(pairs)}


@pytest.mark.parametrize("name", LINUX)
def test_linux_streams_match_obj2yaml_and_rust(name: str) -> None:
    d = ours(name)
    kinds = {"LinuxCPUInfo": StreamType.LinuxCpuInfo, "LinuxProcStatus": StreamType.LinuxProcStatus,
             "LinuxLSBRelease": StreamType.LinuxLsbRelease,
             "LinuxCMDLine": StreamType.LinuxCmdLine, "LinuxEnviron": StreamType.LinuxEnviron,
             "LinuxAuxv": StreamType.LinuxAuxv, "LinuxMaps": StreamType.LinuxMaps,
             "LinuxDSODebug": StreamType.LinuxDsoDebug}
    seen = 0
    for kind, stream in kinds.items():
        for y in yaml_streams(name, kind):
            raw = d.raw_stream(stream)
            assert raw is not None
            if "Content" in y:
                assert raw == bytes.fromhex(y["Content"])
            else:  # obj2yaml prints a text stream up to its first NUL
                text = raw.split(b"\0")[0].decode()
                assert text.rstrip("\n").splitlines() == y["Text"].splitlines()
            seen += 1
    assert seen >= 6
    rust = rust_json(name)
    maps = d.linux_maps
    assert maps is not None and len(maps) == rust["linux_memory_map_count"]
    lsb = d.linux_lsb_release
    if rust["lsb_release"] is not None:
        assert lsb is not None
        assert (lsb.get("DISTRIB_ID"), lsb.get("DISTRIB_RELEASE"), lsb.get("DISTRIB_CODENAME"),
                lsb.get("DISTRIB_DESCRIPTION")) == tuple(
            rust["lsb_release"][k] for k in ("id", "release", "codename", "description"))
    status = d.linux_proc_status
    assert status is not None and int(status["Pid"]) == rust["pid"]


@pytest.mark.parametrize("name", LINUX)
def test_linux_maps_and_auxv(name: str) -> None:
    d = ours(name)
    maps = d.linux_maps
    assert maps is not None
    bases = {h(m["base_addr"]): m for m in rust_json(name)["modules"]}
    # every module rust-minidump lists starts at a mapping with an offset-0 file mapping
    for base in bases:
        assert any(m.start == base for m in maps), hex(base)
    (y,) = yaml_streams(name, "LinuxMaps")
    lines = y["Text"].splitlines()
    assert len(lines) == len(maps)
    for line, m in zip(lines, maps):
        fields = line.split(None, 5)
        lo, hi = fields[0].split("-")
        assert (m.start, m.end, m.perms, m.offset, m.dev, m.inode, m.path) == (
            int(lo, 16), int(hi, 16), fields[1], int(fields[2], 16), fields[3], int(fields[4]),
            fields[5].strip() if len(fields) > 5 else None)
    auxv = d.linux_auxv
    assert auxv is not None
    (ya,) = yaml_streams(name, "LinuxAuxv")
    words = bytes.fromhex(ya["Content"])
    pairs = [(int.from_bytes(words[i:i + 8], "little"), int.from_bytes(words[i + 8:i + 16], "little"))
             for i in range(0, len(words) - 15, 16)]
    assert auxv == pairs[:pairs.index((0, 0))]
    assert dict(auxv)[6] == 4096  # AT_PAGESZ


@pytest.mark.parametrize("name", LINUX)
def test_dso_debug_link_maps_point_at_modules(name: str) -> None:
    d = ours(name)
    dso = d.linux_dso_debug
    assert dso is not None and dso.version == 1
    assert len(dso.link_maps) == dso.dso_count > 3
    raw = d.raw_stream(StreamType.LinuxDsoDebug)
    assert raw is not None and dso.dynamic_section == raw[40:]
    bases = {h(m["base_addr"]) for m in rust_json(name)["modules"]}
    (y,) = yaml_streams(name, "LinuxMaps")
    mappings = []
    for line in y["Text"].splitlines():
        fields = line.split(None, 5)
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        mappings.append((lo, hi, fields[5].strip() if len(fields) > 5 else ""))

    def file_at(address: int) -> str | None:
        return next((path for lo, hi, path in mappings if lo <= address < hi), None)

    checked = 0
    for lm in dso.link_maps:
        if not lm.name or lm.addr == 0:  # the main program of a non-PIE link map
            continue
        # a shared library's l_addr is its load base (a module base) and its _DYNAMIC
        # (l_ld) lies in a mapping of the same file
        assert lm.addr in bases, lm
        assert file_at(lm.ld) is not None and file_at(lm.ld) == file_at(lm.addr), lm
        checked += 1
    assert checked >= 4


# ============================================================================================
# Wine: the manifest written when the fixtures were made
# ============================================================================================

def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "wine" / "manifest.json").read_text())
    return data


@pytest.mark.parametrize("name", WINE_NAMES)
def test_wine_manifest(name: str) -> None:
    man = _manifest()[name]
    raw = PATHS[name].read_bytes()
    assert hashlib.sha256(raw).hexdigest() == man["sha256"]
    d = ours(name)
    hd = d.header
    assert (len(raw), hd.signature, hd.version, hd.stream_count, hd.stream_directory_rva,
            hd.checksum, hd.time_date_stamp, hd.flags) == (
        man["file_size"], h(man["signature"]), h(man["version"]), man["streams_declared"],
        man["dir_rva"], man["checksum"], man["timestamp"], h(man["flags"]))
    assert [(int(s.type), s.data_size, s.rva) for s in d.streams] == [
        (s["type"], s["size"], s["rva"]) for s in man["streams"]]
    assert sum(1 for s in d.streams if s.rva % 4) >= 3  # the unaligned RVAs are tolerated
    by_type = {s["type"]: s for s in man["streams"]}
    si = d.system_info
    assert si is not None
    sm = by_type[7]
    assert (int(si.architecture), si.number_of_processors, si.product_type, si.os_version,
            int(si.platform), si.csd_version) == (
        sm["arch"], sm["nproc"], sm["product"], sm["os"], sm["platform"], sm["csd"])
    # the Wine block between the struct and the CSD string does not disturb the string
    assert raw[sm["rva"] + 56:sm["rva"] + 60] == sm["extra_after_struct"].encode()
    assert [(t.thread_id, t.suspend_count, t.teb, t.stack_start, t.stack_size, t.context_size)
            for t in d.threads] == [
        (t["tid"], t["suspend"], h(t["teb"]), h(t["stack"][0]), t["stack"][1], t["ctx_size"])
        for t in by_type[3]["threads"]]
    assert [m.name for m in d.modules] == by_type[4]["modules"]
    assert len(d.memory.ranges) == by_type[5]["ranges"]
    assert sum(r.size for r in d.memory.ranges) == by_type[5]["bytes"]
    assert d.misc_info is not None and d.misc_info.version == 1
    assert [d.misc_info.raw.size_of_info, int(d.misc_info.flags1), d.misc_info.process_id,  # type: ignore[attr-defined]
            0, 0, 0] == by_type[15]["misc"]
    elf = d.raw_stream(0xFFF0)
    assert elf is not None and len(elf) == by_type[0xFFF0]["size"]
    if 6 in by_type:
        em = by_type[6]
        exc = d.exception
        assert exc is not None
        assert (exc.thread_id, exc.code, len(exc.parameters), exc.parameters,
                exc.context_size) == (
            em["tid"], h(em["code"]), em["nparams"], tuple(h(p) for p in em["params"]),
            em["ctx"][0])
        assert exc.context is not None
        assert exc.context.context_flags == 0x0010000F  # README: exception context flags
        assert d.raw_stream(StreamType.CommentStreamA) == by_type[10]["text"].encode() + b"\0"
        w = d.raw_stream(StreamType.CommentStreamW)
        assert w is not None and w.decode("utf-16-le").rstrip("\0") == by_type[11]["text"]
    else:
        assert d.exception is None
        assert {t.context.context_flags for t in d.threads  # type: ignore[union-attr]
                } == {0x0010000B}


# ============================================================================================
# duplicate streams
# ============================================================================================

def test_duplicate_stream_first_wins(tmp_path: Path) -> None:
    name = "generated-crashpad-linux-x86_64-3threads-segv.dmp"
    raw = bytearray(PATHS[name].read_bytes())
    count, dir_rva = int.from_bytes(raw[8:12], "little"), int.from_bytes(raw[12:16], "little")
    crashpad = next(dir_rva + 12 * i for i in range(count) if raw[dir_rva + 12 * i:
                    dir_rva + 12 * i + 4] == (0x43500001).to_bytes(4, "little"))
    # a second ThreadList after the real one: 4 bytes at offset 16 (the header checksum, 0)
    raw[crashpad:crashpad + 12] = (3).to_bytes(4, "little") + (4).to_bytes(4, "little") + \
        (16).to_bytes(4, "little")
    dup = tmp_path / "dup.dmp"
    dup.write_bytes(raw)
    with minidumpkit.open_minidump(dup) as d:
        assert [t.thread_id for t in d.threads] == [
            t["thread_id"] for t in rust_json(name)["threads"]]  # the first ThreadList
        assert [int(s.type) for s in d.streams].count(3) == 2
    # the other readers disagree, which is why this is a documented choice:
    rust = json.loads(run("minidump-stackwalk", "--json", dup, check=True).stdout)
    assert rust["thread_count"] == 0  # rust-minidump keeps the last entry
    bp = run("breakpad-stackwalk", "-m", dup)
    assert bp.returncode != 0 and "multiple streams of type 3" in bp.stderr
    lldb_run = run("lldb", "-b", "-O", "settings set symbols.enable-external-lookup false",
                   "-c", dup, "-o", "thread list")
    assert "Duplicate stream type" in lldb_run.stdout + lldb_run.stderr
