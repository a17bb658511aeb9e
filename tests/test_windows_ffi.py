"""The Windows cffi declarations, measured on Linux against independent ground truth.

What runs here and what it proves (docs/windows.md has the long version):

* Layouts: every structure the cffi modules declare has the size, alignment and
  field offsets/sizes of ``reference/winabi/layout-x86_64.json`` (GCC-compiled
  SDK declarations, run under Wine), and — through an ILP32 model of the same
  declaration text — of ``layout-i686.json``. Every JSON structure that is not
  declared is listed with the reason.
* Context placement: the run-time helper agrees with the JSON's MSVC model and
  GCC reference, and picks the GCC placement for Thread callbacks that Wine's
  real dbghelp.dll delivered (fixtures/wine/*.callbacks.jsonl).
* windows-sys: field order, scalar sizes and constant values agree with the
  facts read from Microsoft's metadata-generated binding (tests/data).
* Marshalling: a C library compiled here with its own pack(4) structures calls
  the cffi MINIDUMP_CALLBACK_ROUTINE through a real function pointer, the way
  dbghelp does, and receives MiniDumpWriteDump / Pss* / kernel32 arguments.
  (SysV x86-64 calls, not the Win64 convention: that part is libffi's on Windows.)
* Hygiene: ``import minidumpkit`` imports none of this; importing it loads no DLL.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cffi
import pytest
from oracles import FIXTURES

from minidumpkit import flags
from minidumpkit import format as md
from minidumpkit._ffi import _win32, dbghelp, kernel32, pss
from minidumpkit.errors import UnsupportedError

WINABI = FIXTURES.parent / "reference" / "winabi"
LAYOUT64 = json.loads((WINABI / "layout-x86_64.json").read_text())
LAYOUT32 = json.loads((WINABI / "layout-i686.json").read_text())
WINDOWS_SYS = json.loads((Path(__file__).parent / "data" / "windows-sys-facts.json").read_text())

# Which cffi module declares each structure of the JSON.
BASE = ["CONTEXT", "EXCEPTION_RECORD", "EXCEPTION_POINTERS", "VS_FIXEDFILEINFO", "FILETIME",
        "MEMORY_BASIC_INFORMATION"]
DBGHELP = [
    "MINIDUMP_EXCEPTION_INFORMATION", "MINIDUMP_EXCEPTION_INFORMATION64", "MINIDUMP_USER_STREAM",
    "MINIDUMP_USER_STREAM_INFORMATION", "MINIDUMP_CALLBACK_INFORMATION", "MINIDUMP_THREAD_CALLBACK",
    "MINIDUMP_THREAD_EX_CALLBACK", "MINIDUMP_INCLUDE_THREAD_CALLBACK", "MINIDUMP_MODULE_CALLBACK",
    "MINIDUMP_INCLUDE_MODULE_CALLBACK", "MINIDUMP_IO_CALLBACK",
    "MINIDUMP_READ_MEMORY_FAILURE_CALLBACK", "MINIDUMP_VM_QUERY_CALLBACK",
    "MINIDUMP_VM_PRE_READ_CALLBACK", "MINIDUMP_VM_POST_READ_CALLBACK", "MINIDUMP_CALLBACK_INPUT",
    "MINIDUMP_MEMORY_INFO", "MINIDUMP_CALLBACK_OUTPUT",
]
PSS = [
    "PSS_PROCESS_INFORMATION", "PSS_VA_CLONE_INFORMATION", "PSS_AUXILIARY_PAGES_INFORMATION",
    "PSS_VA_SPACE_INFORMATION", "PSS_HANDLE_INFORMATION", "PSS_THREAD_INFORMATION",
    "PSS_HANDLE_TRACE_INFORMATION", "PSS_PERFORMANCE_COUNTERS", "PSS_HANDLE_ENTRY",
    "PSS_THREAD_ENTRY", "PSS_VA_SPACE_ENTRY", "PSS_AUXILIARY_PAGE_ENTRY", "PSS_THREAD_NAME",
    "PSS_ALLOCATOR",
]
# x64 only / x86 only parts of CONTEXT
ARCH_X64 = ["M128A", "XMM_SAVE_AREA32"]
ARCH_X86 = ["FLOATING_SAVE_AREA"]

_FILE_FORMAT = "a file-format record: defined once in minidumpkit.format (md.{})"
_NOT_YET = ("a file-format record minidumpkit neither reads nor writes yet; it belongs in "
            "minidumpkit.format, not in the cffi declarations, when it does")
#: JSON structures the cffi modules do not declare: name -> (format.py record or None, why).
NOT_DECLARED: dict[str, tuple[str | None, str]] = {
    "MINIDUMP_HEADER": ("Header", _FILE_FORMAT),
    "MINIDUMP_DIRECTORY": ("Directory", _FILE_FORMAT + "; opaque in dbghelp.ffi, only "
                           "MiniDumpReadDumpStream hands out a pointer to one"),
    "MINIDUMP_LOCATION_DESCRIPTOR": ("Location", _FILE_FORMAT),
    "MINIDUMP_LOCATION_DESCRIPTOR64": ("Location64", _FILE_FORMAT),
    "MINIDUMP_MEMORY_DESCRIPTOR": ("MemoryDescriptor", _FILE_FORMAT),
    "MINIDUMP_MEMORY_DESCRIPTOR64": ("MemoryDescriptor64", _FILE_FORMAT),
    "MINIDUMP_MEMORY_LIST": ("MemoryDescriptor", _FILE_FORMAT + ": a count, then records"),
    "MINIDUMP_MEMORY64_LIST": ("Memory64ListHeader", _FILE_FORMAT),
    "MINIDUMP_THREAD": ("Thread", _FILE_FORMAT),
    "MINIDUMP_THREAD_LIST": ("Thread", _FILE_FORMAT + ": a count, then records"),
    "MINIDUMP_THREAD_EX": ("ThreadEx", _FILE_FORMAT),
    "MINIDUMP_THREAD_EX_LIST": ("ThreadEx", _FILE_FORMAT + ": a count, then records"),
    "MINIDUMP_MODULE": ("Module", _FILE_FORMAT),
    "MINIDUMP_MODULE_LIST": ("Module", _FILE_FORMAT + ": a count, then records"),
    "CPU_INFORMATION": ("SystemInfo", _FILE_FORMAT + ", part of it"),
    "MINIDUMP_SYSTEM_INFO": ("SystemInfo", _FILE_FORMAT),
    "MINIDUMP_MISC_INFO": ("MiscInfo", _FILE_FORMAT),
    "MINIDUMP_MISC_INFO_2": ("MiscInfo2", _FILE_FORMAT),
    "MINIDUMP_MISC_INFO_3": ("MiscInfo3", _FILE_FORMAT),
    "MINIDUMP_MISC_INFO_4": ("MiscInfo4", _FILE_FORMAT),
    "MINIDUMP_MISC_INFO_5": ("MiscInfo5", _FILE_FORMAT),
    "TIME_ZONE_INFORMATION": ("MiscInfo3", _FILE_FORMAT + ", only inside MINIDUMP_MISC_INFO_3+"),
    "XSTATE_FEATURE": ("MiscInfo5", _FILE_FORMAT + ", only inside MINIDUMP_MISC_INFO_5"),
    "XSTATE_CONFIG_FEATURE_MSC_INFO": ("MiscInfo5", _FILE_FORMAT + ", only inside it"),
    "MINIDUMP_EXCEPTION": ("ExceptionRecord", _FILE_FORMAT),
    "MINIDUMP_EXCEPTION_STREAM": ("ExceptionStream", _FILE_FORMAT),
    "MINIDUMP_HANDLE_DATA_STREAM": ("HandleDataHeader", _FILE_FORMAT),
    "MINIDUMP_HANDLE_DESCRIPTOR": ("HandleDescriptor", _FILE_FORMAT),
    "MINIDUMP_HANDLE_DESCRIPTOR_2": ("HandleDescriptor2", _FILE_FORMAT),
    "MINIDUMP_THREAD_INFO": ("ThreadInfo", _FILE_FORMAT),
    "MINIDUMP_THREAD_INFO_LIST": ("ThreadInfoListHeader", _FILE_FORMAT),
    "MINIDUMP_MEMORY_INFO_LIST": ("MemoryInfoListHeader", _FILE_FORMAT),
    "MINIDUMP_UNLOADED_MODULE": ("UnloadedModule", _FILE_FORMAT),
    "MINIDUMP_UNLOADED_MODULE_LIST": ("UnloadedModuleListHeader", _FILE_FORMAT),
    "MINIDUMP_THREAD_NAME": ("ThreadName", _FILE_FORMAT),
    "MINIDUMP_THREAD_NAME_LIST": ("ThreadName", _FILE_FORMAT + ": a count, then records"),
    "MINIDUMP_STRING": ("pack_string", _FILE_FORMAT + " (a length, then UTF-16)"),
    "MINIDUMP_HANDLE_OBJECT_INFORMATION": (None, _NOT_YET),
    "MINIDUMP_HANDLE_OPERATION_LIST": (None, _NOT_YET),
    "MINIDUMP_FUNCTION_TABLE_DESCRIPTOR": (None, _NOT_YET),
    "MINIDUMP_FUNCTION_TABLE_STREAM": (None, _NOT_YET),
    "MINIDUMP_USER_RECORD": (None, _NOT_YET),
    "MINIDUMP_TOKEN_INFO_HEADER": (None, _NOT_YET),
    "MINIDUMP_TOKEN_INFO_LIST": (None, _NOT_YET),
    "MINIDUMP_PROCESS_VM_COUNTERS_1": (None, _NOT_YET),
    "MINIDUMP_PROCESS_VM_COUNTERS_2": (None, _NOT_YET),
}

# cffi cannot express DECLSPEC_ALIGN(16): these report alignment 8 instead of 16.
# Offsets inside them are unaffected; inside pack(4) structures see the MSVC model.
ALIGN16_X64 = {"CONTEXT", "M128A", "XMM_SAVE_AREA32"}


def _declared(arch: str) -> dict[str, str]:
    """structure -> name of the FFI (``dbghelp`` / ``pss``) that declares it."""
    out = {name: "dbghelp" for name in DBGHELP}
    out.update({name: "pss" for name in PSS})
    out.update({name: "dbghelp" for name in BASE + (ARCH_X64 if arch == "x64" else ARCH_X86)})
    return out


# --- layout machinery ---------------------------------------------------------------

def field_layout(ffi: Any, struct_name: str, dotted: str) -> tuple[int, int]:
    """(offset, size) of a JSON field name such as ``Thread.Context`` or ``Xmm0``.

    cffi lists the members of anonymous unions/structs among their parent's
    fields, which is exactly how the JSON names them.
    """
    ctype = ffi.typeof(struct_name)
    offset = 0
    for part in dotted.split("."):
        fields = dict(ctype.fields)
        if part not in fields:
            raise KeyError(f"{struct_name} has no field {dotted!r} (stuck at {part!r})")
        field = fields[part]
        offset += field.offset
        ctype = field.type
    if ctype.kind == "array" and ctype.length is None:
        return offset, 0  # flexible array member
    return offset, ffi.sizeof(ctype)


def layout_mismatches(ffi: Any, name: str, ref: dict[str, Any],
                      check_align: bool = True) -> list[str]:
    problems = []
    if ffi.sizeof(name) != ref["size"]:
        problems.append(f"sizeof {ffi.sizeof(name)} != {ref['size']}")
    if check_align and ffi.alignof(name) != ref["align"]:
        problems.append(f"alignof {ffi.alignof(name)} != {ref['align']}")
    for field, expected in ref["fields"].items():
        got = list(field_layout(ffi, name, field))
        if got != expected:
            problems.append(f"{field}: [offset, size] {got} != {expected}")
    return problems


FFIS64 = {"dbghelp": dbghelp.ffi, "pss": pss.ffi}


def _ilp32(pointer_block: str) -> str:
    """Re-declare every pointer typedef of a block as a 32-bit integer."""
    text = re.sub(r"/\*.*?\*/", "", pointer_block, flags=re.DOTALL)
    out = []
    for stmt in text.split(";"):
        stmt = " ".join(stmt.split())
        if not stmt:
            continue
        fnptr = re.fullmatch(r"typedef .*\(\s*(?:WINAPI\s*)?\*\s*(\w+)\s*\)\s*\(.*\)", stmt)
        ptr = re.fullmatch(r"typedef .*\*\s*(\w+)", stmt)
        match = fnptr or ptr
        assert match, f"not a pointer typedef: {stmt}"
        out.append(f"typedef uint32_t {match.group(1)};")
    return "\n".join(out)


def ilp32_ffis() -> dict[str, Any]:
    """The same structure text with 32-bit pointers: a model of the i686 ABI.

    cffi on a 64-bit host cannot make pointers 4 bytes, but every pointer in the
    structure text goes through a typedef (see _win32's docstring), so replacing
    those typedefs by uint32_t reproduces the x86 layout rules: 4-byte pointers,
    ULONG_PTR 32-bit, 64-bit integers 8-aligned (as in MSVC's x86 structs).
    """
    scalars = _win32.WIN32_TYPES.replace("uintptr_t", "uint32_t")
    ffis = {}
    for name, module in (("dbghelp", dbghelp), ("pss", pss)):
        ffi = cffi.FFI()
        ffi.cdef(scalars)
        ffi.cdef(_ilp32(_win32.WIN32_POINTERS + module.POINTERS))
        ffi.cdef(_win32.CONTEXT_X86 + _win32.WINNT_STRUCTS)
        ffi.cdef(module.STRUCTS, pack=4 if module is dbghelp else 0)
        ffis[name] = ffi
    return ffis


# --- every JSON structure is declared and equal, or listed ------------------------

def test_every_json_structure_is_declared_or_listed_with_a_reason() -> None:
    """No silent gaps: JSON structures = declared ∪ NOT_DECLARED, and the reasons are true."""
    for layout, arch in ((LAYOUT64, "x64"), (LAYOUT32, "x86")):
        names = set(layout["reference"])
        declared = set(_declared(arch))
        assert declared <= names, f"declared but absent from the {arch} JSON: {declared - names}"
        assert names - declared == set(NOT_DECLARED), (
            f"{arch}: undeclared without a reason: {names - declared - set(NOT_DECLARED)}; "
            f"listed but declared: {set(NOT_DECLARED) & declared}")
    for name, (record, _why) in NOT_DECLARED.items():
        if record is not None:
            assert hasattr(md, record), f"{name}: minidumpkit.format has no {record}"
        for ffi in FFIS64.values():
            with pytest.raises((ValueError, cffi.CDefError)):
                ffi.sizeof(name)  # not declared, or (MINIDUMP_DIRECTORY) opaque


@pytest.mark.parametrize("name", sorted(_declared("x64")))
def test_x64_layout_equals_the_reference_json(name: str) -> None:
    """sizeof, alignof, and every field's [offset, size] equal layout-x86_64.json."""
    ffi = FFIS64[_declared("x64")[name]]
    problems = layout_mismatches(ffi, name, LAYOUT64["reference"][name],
                                 check_align=name not in ALIGN16_X64)
    assert not problems, problems


def test_the_16_aligned_types_are_the_only_alignment_difference() -> None:
    """CONTEXT, M128A, XMM_SAVE_AREA32: cffi says 8, Windows 16; nothing else differs."""
    for name in ALIGN16_X64:
        assert LAYOUT64["reference"][name]["align"] == 16
        assert dbghelp.ffi.alignof(name) == 8
        assert dbghelp.ffi.sizeof(name) % 16 == 0  # arrays of them keep Windows' stride


@pytest.fixture(scope="module")
def ffis32() -> dict[str, Any]:
    return ilp32_ffis()


@pytest.mark.parametrize("name", sorted(_declared("x86")))
def test_i686_layout_equals_the_reference_json(name: str, ffis32: dict[str, Any]) -> None:
    """The same declaration text, with 32-bit pointers, gives layout-i686.json."""
    ffi = ffis32[_declared("x86")[name]]
    problems = layout_mismatches(ffi, name, LAYOUT32["reference"][name])
    assert not problems, problems


def test_i686_msvc_model_equals_the_reference() -> None:
    """On x86 CONTEXT is 4-aligned: MSVC and GCC agree, so one declaration serves both."""
    for name, model in LAYOUT32["msvc_model"].items():
        assert model == LAYOUT32["reference"][name.removesuffix("_MSVC")]


def test_declared_constants_equal_the_json() -> None:
    """Every constant the cffi modules declare equals reference/winabi's value."""
    const = LAYOUT64["constants"]
    ours: dict[str, int] = {
        "MAX_PATH": _win32.MAX_PATH,
        "EXCEPTION_MAXIMUM_PARAMETERS": _win32.EXCEPTION_MAXIMUM_PARAMETERS,
        "PSS_PERF_RESOLUTION": pss.PSS_PERF_RESOLUTION,
        "MiniSecondaryWithoutPowerInfo": dbghelp.MiniSecondaryFlags.WithoutPowerInfo,
        "MiniSecondaryValidFlags": dbghelp.MiniSecondaryFlags.ValidFlags,
    }
    for prefix, enum_cls in (("PSS_QUERY_", pss.PssQueryInformationClass),
                             ("PSS_WALK_", pss.PssWalkInformationClass),
                             ("PSS_DUPLICATE_", pss.PssDuplicateFlags),
                             ("PSS_PROCESS_FLAGS_", pss.PssProcessFlags),
                             ("PSS_THREAD_FLAGS_", pss.PssThreadFlags),
                             ("PSS_HANDLE_", pss.PssHandleFlags),
                             ("PSS_OBJECT_TYPE_", pss.PssObjectType)):
        members = {name: int(member) for name, member in enum_cls.__members__.items()}
        json_names = [n for n in const if n.startswith(prefix)
                      and not (prefix == "PSS_HANDLE_" and n.startswith("PSS_HANDLE_ENTRY"))]
        assert sorted(n.removeprefix(prefix) for n in json_names) == sorted(members), prefix
        ours.update({prefix + name: value for name, value in members.items()})
    mismatches = {n: (v, const[n]) for n, v in ours.items() if const[n] != v}
    assert not mismatches
    assert ffi_array_length(pss.ffi, "PSS_PROCESS_INFORMATION", "ImageFileName") == const["MAX_PATH"]
    assert dbghelp.ffi.sizeof("CONTEXT") == _win32.CONTEXT_SIZE_AMD64 == LAYOUT64["reference"]["CONTEXT"]["size"]
    assert _win32.CONTEXT_SIZE_X86 == LAYOUT32["reference"]["CONTEXT"]["size"]


def ffi_array_length(ffi: Any, struct_name: str, field: str) -> int:
    return int(dict(ffi.typeof(struct_name).fields)[field].type.length)


# Owners of the other JSON constants (their values are tested in tests/test_flags.py and the
# format tests; here only that each has an owner, so none is silently undeclared).
def _constant_owner(name: str) -> bool:
    checks = [
        (name.startswith("MiniDump"), lambda: name.removeprefix("MiniDump") in flags.MiniDumpType.__members__),
        (name.endswith("Callback"), lambda: name in flags.CallbackType.__members__),
        (True, lambda: name in flags.StreamType.__members__),
        (name.startswith("ThreadWrite"), lambda: name.removeprefix("ThreadWrite") in flags.ThreadWriteFlags.__members__),
        (name.startswith("Module") and ("Write" in name or "Referenced" in name),
         lambda: name.removeprefix("ModuleWrite") in flags.ModuleWriteFlags.__members__
         or name in flags.ModuleWriteFlags.__members__),
        (name.startswith(("PSS_CAPTURE_", "PSS_CREATE_")),
         lambda: name.removeprefix("PSS_CAPTURE_").removeprefix("PSS_") in flags.PssCaptureFlags.__members__),
        (name.startswith("CONTEXT_"), lambda: name.removeprefix("CONTEXT_") in flags.ContextFlags.__members__),
        (name.startswith("MINIDUMP_MISC"), lambda: name.split("_", 2)[2] in md.MiscInfoFlags.__members__),
        (name.startswith("MINIDUMP_THREAD_INFO_"),
         lambda: name.removeprefix("MINIDUMP_THREAD_INFO_") in md.ThreadInfoFlags.__members__),
        (name in ("MINIDUMP_SIGNATURE", "MINIDUMP_VERSION"), lambda: True),  # md.SIGNATURE / md.VERSION
    ]
    return any(applies and owned() for applies, owned in checks)


#: JSON constants with no owner anywhere, and why.
CONSTANTS_NOT_DECLARED = {
    **{f"CONTEXT_{name}": "kernel-side exception-state bits reported in ContextFlags; "
                          "minidumpkit neither sets nor interprets them"
       for name in ("EXCEPTION_ACTIVE", "SERVICE_ACTIVE", "EXCEPTION_REQUEST", "EXCEPTION_REPORTING")},
    "MAXIMUM_XSTATE_FEATURES": "only sizes XSTATE_CONFIG_FEATURE_MSC_INFO.Features (md.MiscInfo5)",
    **{name: "MINIDUMP_HANDLE_OBJECT_INFORMATION_TYPE: MINIDUMP_HANDLE_OBJECT_INFORMATION is not "
             "read or written yet (see NOT_DECLARED)"
       for name in LAYOUT64["constants"] if name.startswith("Mini") and "Information" in name},
}


def test_every_json_constant_has_an_owner_or_a_reason() -> None:
    mine = {"MAX_PATH", "EXCEPTION_MAXIMUM_PARAMETERS", "PSS_PERF_RESOLUTION",
            "MiniSecondaryWithoutPowerInfo", "MiniSecondaryValidFlags"}
    mine_prefixes = ("PSS_QUERY_", "PSS_WALK_", "PSS_DUPLICATE_", "PSS_PROCESS_FLAGS_",
                     "PSS_THREAD_FLAGS_", "PSS_HANDLE_", "PSS_OBJECT_TYPE_")
    orphans = [n for n in LAYOUT64["constants"]
               if n not in mine and not n.startswith(mine_prefixes)
               and n not in CONSTANTS_NOT_DECLARED and not _constant_owner(n)]
    assert not orphans
    assert md.SIGNATURE == LAYOUT64["constants"]["MINIDUMP_SIGNATURE"]


# --- the CONTEXT placement inside MINIDUMP_CALLBACK_INPUT ------------------------------

def _json_input_offsets(section: str, name: str) -> dict[str, int]:
    fields = LAYOUT64[section][name]["fields"]
    return {f: fields[f][0] for f in fields}


@pytest.mark.parametrize(("layout", "section", "name"), [
    (dbghelp.GCC_X64, "reference", "MINIDUMP_CALLBACK_INPUT"),
    (dbghelp.MSVC_X64, "msvc_model", "MINIDUMP_CALLBACK_INPUT_MSVC"),
])
def test_placement_constants_equal_the_json(layout: dbghelp.ThreadCallbackLayout, section: str,
                                            name: str) -> None:
    """GCC_X64 = layout-x86_64.json reference; MSVC_X64 = its msvc_model (Windows' dbghelp)."""
    at = _json_input_offsets(section, name)
    for member in ("Thread", "ThreadEx"):
        assert layout.context == at[f"{member}.Context"]
        assert layout.size_of_context == at[f"{member}.SizeOfContext"]
        assert layout.stack_base == at[f"{member}.StackBase"]
        assert layout.stack_end == at[f"{member}.StackEnd"]
    assert layout.backing_store_base == at["ThreadEx.BackingStoreBase"]
    assert layout.backing_store_end == at["ThreadEx.BackingStoreEnd"]
    # ThreadId and ThreadHandle do not move; every other union member is the same too.
    same = {f: o for f, o in at.items()
            if not f.startswith(("Thread.", "ThreadEx.")) or f.endswith(("ThreadId", "ThreadHandle"))}
    for field, offset in same.items():
        assert field_layout(dbghelp.ffi, "MINIDUMP_CALLBACK_INPUT", field)[0] == offset, field


def test_msvc_thread_callback_structs_match_the_placement() -> None:
    """The MSVC models of MINIDUMP_THREAD(_EX)_CALLBACK sit at input offset 16."""
    union = dbghelp.ffi.offsetof("MINIDUMP_CALLBACK_INPUT", "Thread")
    for name in ("MINIDUMP_THREAD_CALLBACK_MSVC", "MINIDUMP_THREAD_EX_CALLBACK_MSVC"):
        fields = LAYOUT64["msvc_model"][name]["fields"]
        assert fields["Context"][0] + union == dbghelp.MSVC_X64.context
        assert fields["SizeOfContext"][0] + union == dbghelp.MSVC_X64.size_of_context
        assert fields["StackEnd"][0] + union == dbghelp.MSVC_X64.stack_end


def _input_with(offsets: dict[str, int], values: dict[str, int], widths: dict[str, int],
                size: int = 1312) -> bytearray:
    buf = bytearray(size)
    for name, value in values.items():
        buf[offsets[name]:offsets[name] + widths[name]] = value.to_bytes(widths[name], "little")
    return buf


@pytest.mark.parametrize(("section", "name", "expected"), [
    ("reference", "MINIDUMP_CALLBACK_INPUT", "gcc"),
    ("msvc_model", "MINIDUMP_CALLBACK_INPUT_MSVC", "msvc"),
])
def test_placement_detection_on_json_built_inputs(section: str, name: str, expected: str) -> None:
    """A Thread input laid out per the JSON is recognised by SizeOfContext == 1232."""
    at = _json_input_offsets(section, name)
    ctx = LAYOUT64["reference"]["CONTEXT"]["fields"]
    offsets = {"SizeOfContext": at["Thread.SizeOfContext"], "StackBase": at["Thread.StackBase"],
               "ContextFlags": at["Thread.Context"] + ctx["ContextFlags"][0],
               "MxCsr": at["Thread.Context"] + ctx["MxCsr"][0]}
    buf = _input_with(offsets, {"SizeOfContext": 1232, "StackBase": 0x7FFE0000,
                                "ContextFlags": 0x0010001F, "MxCsr": 0x1F80},
                      {"SizeOfContext": 4, "StackBase": 8, "ContextFlags": 4, "MxCsr": 4})
    found = dbghelp.thread_callback_layout(buf)
    assert found is not None and found.name == expected


def test_placement_detection_gives_up_on_garbage_and_breaks_ties_by_context_flags() -> None:
    assert dbghelp.thread_callback_layout(bytes(1312)) is None
    assert dbghelp.thread_callback_layout(b"\xd0\x04\x00\x00" * 10) is None  # too short
    # Both SizeOfContext slots read 1232; only the MSVC Context carries CONTEXT_AMD64.
    buf = bytearray(1312)
    for layout in (dbghelp.GCC_X64, dbghelp.MSVC_X64):
        struct.pack_into("<I", buf, layout.size_of_context, 1232)
    struct.pack_into("<I", buf, dbghelp.MSVC_X64.context + 48, 0x0010000B)
    assert dbghelp.thread_callback_layout(buf) == dbghelp.MSVC_X64


def _wine_thread_records() -> Iterator[dict[str, Any]]:
    for path in sorted((FIXTURES / "wine").glob("*.callbacks.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["CallbackType"] == flags.CallbackType.ThreadCallback:
                yield record


def test_placement_detection_on_what_wines_dbghelp_delivered() -> None:
    """Rebuild the bytes Wine's real dbghelp.dll passed (read at both placements) and detect GCC.

    The probe logged each Thread callback's fields at the GCC and at the MSVC
    offsets of the same buffer; writing both readings back reproduces those bytes
    (overlapping readings must agree, which is checked). Wine's dbghelp is built
    with GCC, so the helper must answer "gcc" and read the real values there.
    """
    ctx = LAYOUT64["reference"]["CONTEXT"]["fields"]
    records = list(_wine_thread_records())
    assert len(records) >= 10
    for record in records:
        buf = bytearray(1312)
        written = bytearray(1312)  # which bytes some reading already fixed
        for layout in (dbghelp.GCC_X64, dbghelp.MSVC_X64):
            seen = record[layout.name]
            for field, offset, width in (
                    ("ContextFlags", layout.context + ctx["ContextFlags"][0], 4),
                    ("Sp", layout.context + ctx["Rsp"][0], 8),
                    ("Ip", layout.context + ctx["Rip"][0], 8),
                    ("SizeOfContext", layout.size_of_context, 4),
                    ("StackBase", layout.stack_base, 8),
                    ("StackEnd", layout.stack_end, 8)):
                raw = seen[field].to_bytes(width, "little")
                for i, byte in enumerate(raw):
                    if written[offset + i]:
                        assert buf[offset + i] == byte, (record["seq"], field)
                    buf[offset + i], written[offset + i] = byte, 1
        found = dbghelp.thread_callback_layout(buf)
        assert found == dbghelp.GCC_X64, record["seq"]
        assert int.from_bytes(buf[found.stack_base:found.stack_base + 8], "little") == record["gcc"]["StackBase"]


# --- windows-sys (Microsoft's metadata) cross-check ------------------------------------

def _ws_expanded(name: str) -> list[str]:
    """windows-sys field names, with its synthetic ``Anonymous*`` members expanded."""
    names = []
    for field, rust_type in WINDOWS_SYS["structs"][name]["fields"]:
        if field.startswith("Anonymous") and rust_type in WINDOWS_SYS["structs"]:
            names.extend(_ws_expanded(rust_type))
        else:
            names.append(field)
    return names


def _our_fields(ffi: Any, name: str) -> list[str]:
    return [field for field, _ in ffi.typeof(name).fields]


_WS_TOP = [n for n in WINDOWS_SYS["structs"] if not re.search(r"_\d+(_\d+)?$", n)]


@pytest.mark.parametrize("name", sorted(_WS_TOP))
def test_field_order_agrees_with_windows_sys(name: str) -> None:
    """Declared structures: exactly windows-sys's fields in its order. Others: the JSON's order."""
    theirs = _ws_expanded(name)
    json_name = {"XSAVE_FORMAT": "XMM_SAVE_AREA32"}.get(name, name)
    declared = _declared("x64")
    if json_name in declared:
        assert _our_fields(FFIS64[declared[json_name]], json_name) == theirs
    json_top = [f for f in LAYOUT64["reference"][json_name]["fields"] if "." not in f]
    positions = [theirs.index(f) for f in json_top]  # KeyError-like failure if a name is missing
    assert positions == sorted(positions), "the JSON lists fields in another order"


_RUST_SIZES = {"u8": 1, "u16": 2, "u32": 4, "i32": 4, "u64": 8, "i64": 8, "usize": 8, "isize": 8}


def _rust_size(rust_type: str) -> int | None:
    rust_type = WINDOWS_SYS["type_aliases"].get(rust_type, rust_type)
    if rust_type.startswith("*"):
        return 8
    array = re.fullmatch(r"\[(\w+); (\d+)\]", rust_type)
    if array:
        element = _rust_size(array.group(1))
        return None if element is None else element * int(array.group(2))
    return _RUST_SIZES.get(rust_type)


@pytest.mark.parametrize("name", sorted(n for n in WINDOWS_SYS["structs"]
                                        if {"XSAVE_FORMAT": "XMM_SAVE_AREA32"}.get(n, n)
                                        in _declared("x64")))
def test_scalar_field_sizes_agree_with_windows_sys(name: str) -> None:
    """Every scalar, pointer and scalar-array member has windows-sys's width."""
    json_name = {"XSAVE_FORMAT": "XMM_SAVE_AREA32"}.get(name, name)
    ffi = FFIS64[_declared("x64")[json_name]]
    ours = dict(ffi.typeof(json_name).fields)
    checked = 0
    for field, rust_type in WINDOWS_SYS["structs"][name]["fields"]:
        size = _rust_size(rust_type)
        if size is None or field not in ours:
            continue  # a nested structure (compared by its own test) or an unresolved alias
        assert ffi.sizeof(ours[field].type) == size, (field, rust_type)
        checked += 1
    assert checked or all(_rust_size(t) is None for _, t in WINDOWS_SYS["structs"][name]["fields"])


def _our_constant(name: str) -> int | None:
    table: list[tuple[str, Any]] = [
        ("MiniDump", flags.MiniDumpType), ("MiniSecondary", dbghelp.MiniSecondaryFlags),
        ("ThreadWrite", flags.ThreadWriteFlags), ("ModuleWrite", flags.ModuleWriteFlags),
        ("PSS_CAPTURE_", flags.PssCaptureFlags), ("PSS_QUERY_", pss.PssQueryInformationClass),
        ("PSS_WALK_", pss.PssWalkInformationClass), ("PSS_DUPLICATE_", pss.PssDuplicateFlags),
        ("PSS_PROCESS_FLAGS_", pss.PssProcessFlags), ("PSS_THREAD_FLAGS_", pss.PssThreadFlags),
        ("PSS_HANDLE_", pss.PssHandleFlags), ("PSS_OBJECT_TYPE_", pss.PssObjectType),
        ("MINIDUMP_THREAD_INFO_", md.ThreadInfoFlags),
    ]
    for prefix, enum_cls in table:
        if name.startswith(prefix) and name.removeprefix(prefix) in enum_cls.__members__:
            return int(enum_cls[name.removeprefix(prefix)])
    if name.startswith("PSS_CREATE_"):
        return int(flags.PssCaptureFlags[name.removeprefix("PSS_")])
    if name.startswith("MINIDUMP_MISC"):
        return int(md.MiscInfoFlags[name.split("_", 2)[2]])
    for enum_cls in (flags.CallbackType, flags.StreamType, flags.ModuleWriteFlags):
        if name in enum_cls.__members__:
            return int(enum_cls[name])
    return {"MINIDUMP_VERSION": md.VERSION, "PSS_PERF_RESOLUTION": pss.PSS_PERF_RESOLUTION}.get(name)


#: windows-sys constants we deliberately have no equivalent for, and why.
WS_CONSTANTS_ELSEWHERE = {
    n: "MINIDUMP_HANDLE_OBJECT_INFORMATION_TYPE: the structure is not read or written yet"
    for n in WINDOWS_SYS["constants"] if n.startswith("Mini") and "Information" in n
}


def test_constants_agree_with_windows_sys() -> None:
    """Every value read from windows-sys equals ours (flags.py, format.py, pss.py, dbghelp.py)."""
    missing, wrong = [], {}
    for name, value in WINDOWS_SYS["constants"].items():
        if name in WS_CONSTANTS_ELSEWHERE:
            continue
        ours = _our_constant(name)
        if ours is None:
            missing.append(name)
        elif ours != value:
            wrong[name] = (ours, value)
    assert not missing and not wrong, (missing, wrong)


def test_windows_sys_functions_have_our_parameter_counts_and_widths() -> None:
    """MiniDumpWriteDump, MiniDumpReadDumpStream, the callback and the Pss* functions."""
    pss_lib_types = _function_types(pss)
    dbg_types = _function_types(dbghelp)
    dbg_types["MINIDUMP_CALLBACK_ROUTINE"] = dbghelp.ffi.typeof("MINIDUMP_CALLBACK_ROUTINE")
    for name, params in WINDOWS_SYS["functions"].items():
        ctype = dbg_types.get(name) or pss_lib_types[name]
        *args, (_arrow, result) = params
        ffi = dbghelp.ffi if name in dbg_types else pss.ffi
        assert len(ctype.args) == len(args), name
        for (_pname, rust_type), our in zip(args, ctype.args, strict=True):
            assert ffi.sizeof(our) == _rust_size(rust_type), (name, rust_type, our)
        assert ffi.sizeof(ctype.result) == _rust_size(result), name


def _function_types(module: Any) -> dict[str, Any]:
    """The function types the cdef declares, without opening any library."""
    found = {}
    for match in re.finditer(r"(\w+)\s+WINAPI\s+(\w+)\s*\(([^;]*)\);", module.FUNCTIONS):
        result, name, params = match.groups()
        params = re.sub(r"/\*.*?\*/", "", params)
        found[name] = module.ffi.typeof(f"{result} (*)({params})")
    return found


# --- real C calls through the declarations -------------------------------------------

FAKE_C = textwrap.dedent(r"""
    /* Stand-ins for dbghelp.dll, kernel32.dll's Pss* and a few kernel32 calls, written
       from the SDK's declarations (not from minidumpkit's cdef) and compiled by gcc
       with the SDK's pragma pack(4). They call the callback the way dbghelp does and
       log what they received into the buffer passed as hFile. */
    #include <stdint.h>
    #include <string.h>
    typedef int32_t BOOL;
    typedef void *HANDLE;

    #pragma pack(push, 4)
    typedef struct { uint32_t ThreadId; void *ExceptionPointers; BOOL ClientPointers; } EXC_INFO;
    typedef struct { uint32_t Type; uint32_t BufferSize; void *Buffer; } USTREAM;
    typedef struct { uint32_t UserStreamCount; USTREAM *UserStreamArray; } USTREAM_INFO;
    typedef struct { uint32_t ThreadId; HANDLE ThreadHandle; unsigned char Context[1232];
                     uint32_t SizeOfContext; uint64_t StackBase, StackEnd,
                     BackingStoreBase, BackingStoreEnd; } THREAD_GCC;
    typedef struct { uint32_t ThreadId; HANDLE ThreadHandle; uint32_t MsvcPad;
                     unsigned char Context[1232]; uint32_t SizeOfContext;
                     uint64_t StackBase, StackEnd; } THREAD_MSVC;
    typedef struct { uint32_t dw[13]; } VS_FIXEDFILEINFO;
    typedef struct { uint16_t *FullPath; uint64_t BaseOfImage; uint32_t SizeOfImage, CheckSum,
                     TimeDateStamp; VS_FIXEDFILEINFO VersionInfo; void *CvRecord;
                     uint32_t SizeOfCvRecord; void *MiscRecord; uint32_t SizeOfMiscRecord; } MODULE_CB;
    typedef struct { HANDLE Handle; uint64_t Offset; void *Buffer; uint32_t BufferBytes; } IO_CB;
    typedef struct { uint64_t Offset; uint32_t Bytes; int32_t FailureStatus; } RMF_CB;
    typedef struct { uint64_t Offset; void *Buffer; uint32_t Size, Completed; int32_t Status; } POST_CB;
    typedef struct {
        uint32_t ProcessId; HANDLE ProcessHandle; uint32_t CallbackType;
        union { int32_t Status; THREAD_GCC Thread; THREAD_MSVC ThreadMsvc; MODULE_CB Module;
                uint32_t IncludeThreadId; uint64_t IncludeModuleBase; IO_CB Io; RMF_CB Rmf;
                uint64_t VmQueryOffset; POST_CB VmPostRead; unsigned char raw[1300]; };
    } INPUT;
    typedef BOOL (*ROUTINE)(void *param, INPUT *input, unsigned char *output);
    typedef struct { ROUTINE CallbackRoutine; void *CallbackParam; } CB_INFO;
    #pragma pack(pop)

    static const uint16_t path[] = {'C',':','\\','f','a','k','e','\\','m','o','d','.','d','l','l',0};
    static unsigned char io_bytes[] = "HELLO";

    static void put_context(unsigned char *ctx) {
        uint32_t flags = 0x0010001F; uint64_t rsp = 0x7FFE1000, rip = 0x401000;
        memcpy(ctx + 48, &flags, 4); memcpy(ctx + 152, &rsp, 8); memcpy(ctx + 248, &rip, 8);
    }

    /* log layout: uint64 header[16]; then one 64-byte entry per callback:
       int32 return, uint32 type, 52 output bytes, 4 spare */
    static void call(CB_INFO *cb, INPUT *in, unsigned char *log, int *n) {
        unsigned char out[52];
        memset(out, 0xAA, sizeof out);
        BOOL ret = cb->CallbackRoutine(cb->CallbackParam, in, out);
        unsigned char *e = log + 128 + 64 * (*n)++;
        memcpy(e, &ret, 4); memcpy(e + 4, &in->CallbackType, 4); memcpy(e + 8, out, 52);
    }

    BOOL MiniDumpWriteDump(HANDLE hProcess, uint32_t pid, HANDLE hFile, uint32_t type,
                           EXC_INFO *exc, USTREAM_INFO *us, CB_INFO *cb) {
        uint64_t *h = (uint64_t *)hFile; unsigned char *log = hFile; int n = 0;
        INPUT in;
        h[0] = 0x4D444B46414B45ull; h[1] = (uintptr_t)hProcess; h[2] = pid; h[3] = type;
        h[4] = exc->ThreadId; h[5] = (uintptr_t)exc->ExceptionPointers; h[6] = exc->ClientPointers;
        h[7] = us->UserStreamCount;
        h[8] = us->UserStreamArray[0].Type; h[9] = us->UserStreamArray[0].BufferSize;
        memcpy(&h[10], us->UserStreamArray[0].Buffer, 8);
        h[11] = us->UserStreamArray[1].Type; h[12] = us->UserStreamArray[1].BufferSize;

        #define START(t) memset(&in, 0, sizeof in); in.ProcessId = pid; \
                         in.ProcessHandle = hProcess; in.CallbackType = (t)
        START(16); call(cb, &in, log, &n);                                   /* IsProcessSnapshot */
        START(3); in.IncludeThreadId = 0x1111; call(cb, &in, log, &n);       /* IncludeThread */
        START(1); in.Thread.ThreadId = 0x1111; in.Thread.ThreadHandle = (HANDLE)0x2222;
        put_context(in.Thread.Context); in.Thread.SizeOfContext = 1232;
        in.Thread.StackBase = 0x7FFF0000; in.Thread.StackEnd = 0x7FFE0000;
        call(cb, &in, log, &n);                                              /* Thread, GCC */
        START(1); in.ThreadMsvc.ThreadId = 0x3333; in.ThreadMsvc.ThreadHandle = (HANDLE)0x4444;
        put_context(in.ThreadMsvc.Context); in.ThreadMsvc.SizeOfContext = 1232;
        in.ThreadMsvc.StackBase = 0x7FFF0000; in.ThreadMsvc.StackEnd = 0x7FFE0000;
        call(cb, &in, log, &n);                                              /* Thread, MSVC */
        START(0); in.Module.FullPath = (uint16_t *)path; in.Module.BaseOfImage = 0x140000000ull;
        in.Module.SizeOfImage = 0x5000; in.Module.CheckSum = 0x1234;
        in.Module.TimeDateStamp = 0x5F000000; in.Module.VersionInfo.dw[0] = 0xFEEF04BD;
        in.Module.CvRecord = "RSDS"; in.Module.SizeOfCvRecord = 4;
        call(cb, &in, log, &n);                                              /* Module */
        START(4); in.IncludeModuleBase = 0x140000000ull; call(cb, &in, log, &n);
        START(5); call(cb, &in, log, &n);                                    /* Memory */
        START(6); call(cb, &in, log, &n);                                    /* Cancel */
        START(14); in.Rmf.Offset = 0x10000; in.Rmf.Bytes = 4096;
        in.Rmf.FailureStatus = (int32_t)0x8007012B; call(cb, &in, log, &n);
        START(12); in.Io.Handle = (HANDLE)0x44; in.Io.Offset = 0x100; in.Io.Buffer = io_bytes;
        in.Io.BufferBytes = 5; call(cb, &in, log, &n);                       /* IoWriteAll */
        START(18); in.VmQueryOffset = 0x20000; call(cb, &in, log, &n);       /* VmQuery */
        START(20); in.VmPostRead.Offset = 0x30000; in.VmPostRead.Buffer = io_bytes;
        in.VmPostRead.Size = 16; in.VmPostRead.Completed = 8;
        in.VmPostRead.Status = (int32_t)0x8007012B; call(cb, &in, log, &n); /* VmPostRead */
        START(15); call(cb, &in, log, &n);                                   /* SecondaryFlags */
        START(10); call(cb, &in, log, &n);                                   /* IncludeVmRegion */
        START(2); in.Thread.ThreadId = 0x5555; put_context(in.Thread.Context);
        in.Thread.SizeOfContext = 1232; in.Thread.StackBase = 0x7FFF0000;
        in.Thread.StackEnd = 0x7FFE0000; in.Thread.BackingStoreBase = 0xB000;
        in.Thread.BackingStoreEnd = 0xA000; call(cb, &in, log, &n);         /* ThreadEx, GCC */
        h[15] = n;
        return 1;
    }

    /* Process Snapshotting stand-ins (PssDuplicateSnapshot deliberately missing). */
    typedef struct { uint32_t lo, hi; } FILETIME;
    typedef struct { uint32_t ExitStatus; void *TebBaseAddress; uint32_t ProcessId, ThreadId;
                     uintptr_t AffinityMask; int32_t Priority, BasePriority;
                     void *LastSyscallFirstArgument; uint16_t LastSyscallNumber;
                     FILETIME CreateTime, ExitTime, KernelTime, UserTime;
                     void *Win32StartAddress; FILETIME CaptureTime; uint32_t Flags;
                     uint16_t SuspendCount, SizeOfContextRecord; void *ContextRecord; } THREAD_ENTRY;
    static unsigned char snapshot_context[1232];
    static int walked;
    uint32_t PssCaptureSnapshot(HANDLE proc, uint32_t flags, uint32_t ctxflags, void **snap) {
        if (!proc) return 87;
        *snap = (void *)(uintptr_t)(0x50000 + flags + ctxflags);
        return 0;
    }
    uint32_t PssQuerySnapshot(void *snap, uint32_t cls, void *buf, uint32_t len) {
        if (cls != 5 || len < 8) return 24;
        ((uint32_t *)buf)[0] = 3; ((uint32_t *)buf)[1] = 1232;
        return 0;
    }
    uint32_t PssWalkMarkerCreate(const void *allocator, void **marker) {
        walked = 0; *marker = (void *)0xFA11; return allocator ? 87 : 0;
    }
    uint32_t PssWalkSnapshot(void *snap, uint32_t cls, void *marker, void *buf, uint32_t len) {
        THREAD_ENTRY *e = buf;
        if (cls != 3 || marker != (void *)0xFA11 || len < sizeof *e) return 87;
        if (walked++) return 259;
        memset(e, 0, sizeof *e);
        e->TebBaseAddress = (void *)0x7FF00000; e->ProcessId = 4242; e->ThreadId = 0x77;
        e->LastSyscallNumber = 0x1B; e->CreateTime.lo = 1; e->CreateTime.hi = 2;
        e->Flags = 1; e->SuspendCount = 2; e->SizeOfContextRecord = 1232;
        put_context(snapshot_context); e->ContextRecord = snapshot_context;
        return 0;
    }
    uint32_t PssWalkMarkerFree(void *marker) { return marker == (void *)0xFA11 ? 0 : 6; }
    uint32_t PssFreeSnapshot(HANDLE proc, void *snap) { return snap ? 0 : 6; }

    /* kernel32 stand-ins: a per-library "last error" */
    static uint32_t last_error;
    uint32_t GetLastError(void) { return last_error; }
    void SetLastError(uint32_t code) { last_error = code; }
    HANDLE OpenProcess(uint32_t access, BOOL inherit, uint32_t pid) {
        if (pid == 0) { last_error = 87; return 0; }
        if (pid == 4) { last_error = 5; return 0; }
        return (HANDLE)(uintptr_t)(0x1000 + pid + access + inherit);
    }
    HANDLE CreateFileW(const uint16_t *name, uint32_t access, uint32_t share, void *sa,
                       uint32_t disposition, uint32_t attributes, HANDLE template_) {
        uintptr_t units = 0, sum = 0;
        while (name[units]) sum += name[units++];
        if (!units) { last_error = 2; return (HANDLE)(intptr_t)-1; }
        return (HANDLE)(units << 32 | sum);
    }
""")


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in library, built with the system C compiler."""
    src = tmp_path_factory.mktemp("fakewin") / "fake_windows.c"
    src.write_text(FAKE_C)
    lib = src.with_suffix(".so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-Wno-unused-parameter",
                    "-o", str(lib), str(src)], check=True, capture_output=True)
    return lib


def test_minidump_write_dump_and_every_callback_type_through_real_c(fake_lib: Path) -> None:
    """C calls the cffi MINIDUMP_CALLBACK_ROUTINE with C-built inputs; we check both directions.

    Inputs: values the C side constructed arrive in the declared fields (both
    context placements). Outputs: the 52 bytes C gets back hold exactly what the
    callback wrote, at the SDK offsets from the JSON, and nothing else (0xAA).
    """
    ffi = dbghelp.ffi
    # A wrong layout would make the C side follow garbage pointers and crash the whole
    # run; fail here, readably, instead (the layout tests above say which field).
    for name, field, offset in (("MINIDUMP_EXCEPTION_INFORMATION", "ExceptionPointers", 4),
                                ("MINIDUMP_USER_STREAM_INFORMATION", "UserStreamArray", 4),
                                ("MINIDUMP_CALLBACK_INPUT", "CallbackType", 12)):
        assert ffi.offsetof(name, field) == offset, "fix the layout before calling C"
    lib = ffi.dlopen(str(fake_lib))
    seen: list[tuple[int, dict[str, Any]]] = []
    out_at = {f: o for f, (o, _s) in LAYOUT64["reference"]["MINIDUMP_CALLBACK_OUTPUT"]["fields"].items()}
    info_at = {f: o for f, (o, _s) in LAYOUT64["reference"]["MINIDUMP_MEMORY_INFO"]["fields"].items()}

    def thread_fields(raw: bytes) -> dict[str, int]:
        layout = dbghelp.thread_callback_layout(raw)
        assert layout is not None

        def u(offset: int, width: int) -> int:
            return int.from_bytes(raw[offset:offset + width], "little")

        return {"placement": layout.name, "flags": u(layout.context + 48, 4),
                "rsp": u(layout.context + 152, 8), "rip": u(layout.context + 248, 8),
                "size": u(layout.size_of_context, 4), "base": u(layout.stack_base, 8),
                "end": u(layout.stack_end, 8), "bs_base": u(layout.backing_store_base, 8),
                "bs_end": u(layout.backing_store_end, 8)}

    def callback(param: Any, inp: Any, out: Any) -> int:
        kind = inp.CallbackType
        got: dict[str, Any] = {"pid": inp.ProcessId, "handle": int(ffi.cast("uintptr_t", inp.ProcessHandle)),
                               "param": ffi.from_handle(param)}
        if kind == flags.CallbackType.IsProcessSnapshotCallback:
            out.Status = dbghelp.S_FALSE
        elif kind == flags.CallbackType.IncludeThreadCallback:
            got["tid"] = inp.IncludeThread.ThreadId
        elif kind in (flags.CallbackType.ThreadCallback, flags.CallbackType.ThreadExCallback):
            got["tid"] = inp.Thread.ThreadId
            got["thandle"] = int(ffi.cast("uintptr_t", inp.Thread.ThreadHandle))
            got.update(thread_fields(bytes(ffi.buffer(inp, 1300))))
            out.ThreadWriteFlags = flags.ThreadWriteFlags.Thread | flags.ThreadWriteFlags.Stack
        elif kind == flags.CallbackType.ModuleCallback:
            m = inp.Module
            got.update(path=ffi.string(m.FullPath), base=m.BaseOfImage, size=m.SizeOfImage,
                       checksum=m.CheckSum, stamp=m.TimeDateStamp, sig=m.VersionInfo.dwSignature,
                       cv=bytes(ffi.buffer(m.CvRecord, m.SizeOfCvRecord)), misc=m.MiscRecord == ffi.NULL)
            out.ModuleWriteFlags = flags.ModuleWriteFlags.Module | flags.ModuleWriteFlags.CvRecord
        elif kind == flags.CallbackType.IncludeModuleCallback:
            got["base"] = inp.IncludeModule.BaseOfImage
            seen.append((kind, got))
            return 0  # FALSE: leave this module out
        elif kind == flags.CallbackType.MemoryCallback:
            out.MemoryBase, out.MemorySize = 0x1000, 0x20
        elif kind == flags.CallbackType.CancelCallback:
            out.CheckCancel, out.Cancel = 0, 1
        elif kind == flags.CallbackType.ReadMemoryFailureCallback:
            r = inp.ReadMemoryFailure
            got.update(offset=r.Offset, bytes=r.Bytes, status=r.FailureStatus & 0xFFFFFFFF)
            out.Status = dbghelp.S_OK
        elif kind == flags.CallbackType.IoWriteAllCallback:
            io = inp.Io
            got.update(h=int(ffi.cast("uintptr_t", io.Handle)), offset=io.Offset,
                       data=bytes(ffi.buffer(io.Buffer, io.BufferBytes)))
            out.Status = dbghelp.S_OK
        elif kind == flags.CallbackType.VmQueryCallback:
            got["offset"] = inp.VmQuery.Offset
            out.VmQueryStatus = dbghelp.S_OK
            out.VmQueryResult.BaseAddress = 0x20000
            out.VmQueryResult.RegionSize = 0x1000
            out.VmQueryResult.Protect = 0x04
        elif kind == flags.CallbackType.VmPostReadCallback:
            p = inp.VmPostRead
            got.update(offset=p.Offset, size=p.Size, completed=p.Completed,
                       status=p.Status & 0xFFFFFFFF, data=bytes(ffi.buffer(p.Buffer, 5)))
            out.VmReadStatus, out.VmReadBytesCompleted = dbghelp.S_OK, 8
        elif kind == flags.CallbackType.SecondaryFlagsCallback:
            out.SecondaryFlags = dbghelp.MiniSecondaryFlags.WithoutPowerInfo
        elif kind == flags.CallbackType.IncludeVmRegionCallback:
            out.VmRegion.BaseAddress, out.VmRegion.RegionSize, out.Continue = 0x40000, 0x2000, 1
        seen.append((kind, got))
        return 1

    routine = ffi.callback("MINIDUMP_CALLBACK_ROUTINE", callback)
    payload = object()
    handle = ffi.new_handle(payload)
    cbinfo = ffi.new("MINIDUMP_CALLBACK_INFORMATION *", {"CallbackRoutine": routine, "CallbackParam": handle})
    exc = ffi.new("MINIDUMP_EXCEPTION_INFORMATION *",
                  {"ThreadId": 7, "ExceptionPointers": ffi.cast("PEXCEPTION_POINTERS", 0xABC0),
                   "ClientPointers": 1})
    comment = ffi.new("char[]", b"comment!")
    streams = ffi.new("MINIDUMP_USER_STREAM[2]", [
        {"Type": flags.StreamType.CommentStreamA, "BufferSize": 9, "Buffer": comment},
        {"Type": 0x10000, "BufferSize": 0, "Buffer": ffi.NULL}])
    usinfo = ffi.new("MINIDUMP_USER_STREAM_INFORMATION *", {"UserStreamCount": 2, "UserStreamArray": streams})
    log = ffi.new("unsigned char[]", 4096)

    ok = lib.MiniDumpWriteDump(ffi.cast("HANDLE", 0x1234), 4242, log,
                               int(flags.DumpType.FULL), exc, usinfo, cbinfo)

    assert ok == 1
    header = struct.unpack_from("<16Q", bytes(log), 0)
    assert header[0] == 0x4D444B46414B45
    assert header[1:8] == (0x1234, 4242, int(flags.DumpType.FULL), 7, 0xABC0, 1, 2)
    assert header[8:13] == (10, 9, int.from_bytes(b"comment!", "little"), 0x10000, 0)
    n = header[15]
    assert n == 15 == len(seen)
    for _kind, got in seen:
        assert (got["pid"], got["handle"], got["param"]) == (4242, 0x1234, payload)
    kinds = [k for k, _ in seen]
    assert kinds == [16, 3, 1, 1, 0, 4, 5, 6, 14, 12, 18, 20, 15, 10, 2]
    thread = {"flags": 0x0010001F, "rsp": 0x7FFE1000, "rip": 0x401000, "size": 1232,
              "base": 0x7FFF0000, "end": 0x7FFE0000}
    assert seen[1][1]["tid"] == 0x1111
    for index, placement, tid, thandle in ((2, "gcc", 0x1111, 0x2222), (3, "msvc", 0x3333, 0x4444)):
        got = seen[index][1]
        assert {k: got[k] for k in thread} == thread
        assert (got["placement"], got["tid"], got["thandle"]) == (placement, tid, thandle)
    assert seen[14][1]["placement"] == "gcc"
    assert (seen[14][1]["tid"], seen[14][1]["bs_base"], seen[14][1]["bs_end"]) == (0x5555, 0xB000, 0xA000)
    module = seen[4][1]
    assert module["path"] == "C:\\fake\\mod.dll"
    assert (module["base"], module["size"], module["checksum"], module["stamp"], module["sig"]) == (
        0x140000000, 0x5000, 0x1234, 0x5F000000, 0xFEEF04BD)
    assert (module["cv"], module["misc"]) == (b"RSDS", True)
    assert seen[5][1]["base"] == 0x140000000
    assert {k: seen[8][1][k] for k in ("offset", "bytes", "status")} == {
        "offset": 0x10000, "bytes": 4096, "status": 0x8007012B}
    assert {k: seen[9][1][k] for k in ("h", "offset", "data")} == {"h": 0x44, "offset": 0x100, "data": b"HELLO"}
    assert seen[10][1]["offset"] == 0x20000
    assert {k: seen[11][1][k] for k in ("offset", "size", "completed", "status", "data")} == {
        "offset": 0x30000, "size": 16, "completed": 8, "status": 0x8007012B, "data": b"HELLO"}

    def expect(*writes: tuple[int, str, int]) -> bytes:
        out = bytearray(b"\xaa" * 52)
        for offset, fmt, value in writes:
            struct.pack_into("<" + fmt, out, offset, value)
        return bytes(out)

    vq, vr = out_at["VmQueryResult"], out_at["VmRegion"]
    expected_out = {
        0: (1, expect((out_at["Status"], "i", 1))),
        1: (1, expect()),
        2: (1, expect((out_at["ThreadWriteFlags"], "I", 3))),
        3: (1, expect((out_at["ThreadWriteFlags"], "I", 3))),
        4: (1, expect((out_at["ModuleWriteFlags"], "I", 9))),
        5: (0, expect()),
        6: (1, expect((out_at["MemoryBase"], "Q", 0x1000), (out_at["MemorySize"], "I", 0x20))),
        7: (1, expect((out_at["CheckCancel"], "i", 0), (out_at["Cancel"], "i", 1))),
        8: (1, expect((out_at["Status"], "i", 0))),
        9: (1, expect((out_at["Status"], "i", 0))),
        10: (1, expect((out_at["VmQueryStatus"], "i", 0), (vq + info_at["BaseAddress"], "Q", 0x20000),
                       (vq + info_at["RegionSize"], "Q", 0x1000), (vq + info_at["Protect"], "I", 4))),
        11: (1, expect((out_at["VmReadStatus"], "i", 0), (out_at["VmReadBytesCompleted"], "I", 8))),
        12: (1, expect((out_at["SecondaryFlags"], "I", 1))),
        13: (1, expect((vr + info_at["BaseAddress"], "Q", 0x40000), (vr + info_at["RegionSize"], "Q", 0x2000),
                       (out_at["Continue"], "i", 1))),
        14: (1, expect((out_at["ThreadWriteFlags"], "I", 3))),
    }
    for index, (ret, out) in expected_out.items():
        entry = bytes(log[128 + 64 * index:128 + 64 * index + 60])
        assert struct.unpack_from("<iI", entry) == (ret, kinds[index]), index
        assert entry[8:60] == out, (index, kinds[index], entry[8:60].hex())


def test_pss_functions_and_structures_through_real_c(fake_lib: Path) -> None:
    """HPSS out-parameters, PSS_THREAD_INFORMATION / PSS_THREAD_ENTRY filled by C, lazy lookup."""
    ffi = pss.ffi
    assert ffi.offsetof("PSS_THREAD_ENTRY", "ContextRecord") == 112, "fix the layout before calling C"
    lib = ffi.dlopen(str(fake_lib))
    process = kernel32.ffi.cast("HANDLE", 0x99)  # a HANDLE from another FFI is accepted

    snap = ffi.new("HPSS *")
    capture = pss.function("PssCaptureSnapshot", lib)
    assert capture(process, flags.PssCaptureFlags.THREADS, flags.ContextFlags.ALL, snap) == 0
    assert int(ffi.cast("uintptr_t", snap[0])) == 0x50000 + 0x80 + 0x0010001F

    info = ffi.new("PSS_THREAD_INFORMATION *")
    query = pss.function("PssQuerySnapshot", lib)
    assert query(snap[0], pss.PssQueryInformationClass.THREAD_INFORMATION, info,
                 ffi.sizeof(info[0])) == 0
    assert (info.ThreadsCaptured, info.ContextLength) == (3, 1232)

    marker = ffi.new("HPSSWALK *")
    assert pss.function("PssWalkMarkerCreate", lib)(ffi.NULL, marker) == 0
    entry = ffi.new("PSS_THREAD_ENTRY *")
    walk = pss.function("PssWalkSnapshot", lib)
    assert walk(snap[0], pss.PssWalkInformationClass.THREADS, marker[0], entry, ffi.sizeof(entry[0])) == 0
    assert (entry.ProcessId, entry.ThreadId, entry.LastSyscallNumber) == (4242, 0x77, 0x1B)
    assert int(ffi.cast("uintptr_t", entry.TebBaseAddress)) == 0x7FF00000
    assert (entry.CreateTime.dwLowDateTime, entry.CreateTime.dwHighDateTime) == (1, 2)
    assert (entry.Flags, entry.SuspendCount, entry.SizeOfContextRecord) == (
        pss.PssThreadFlags.TERMINATED, 2, 1232)
    context = entry.ContextRecord[0]  # PCONTEXT -> the declared CONTEXT
    assert (context.ContextFlags, context.Rsp, context.Rip) == (0x0010001F, 0x7FFE1000, 0x401000)
    assert walk(snap[0], pss.PssWalkInformationClass.THREADS, marker[0], entry,
                ffi.sizeof(entry[0])) == 259  # ERROR_NO_MORE_ITEMS
    assert pss.function("PssWalkMarkerFree", lib)(marker[0]) == 0
    assert pss.function("PssFreeSnapshot", lib)(process, snap[0]) == 0

    # The HPSS goes to MiniDumpWriteDump as hProcess (Microsoft's snapshot example).
    assert dbghelp.ffi.cast("HANDLE", snap[0]) != dbghelp.ffi.NULL

    # A real cffi library that lacks the export: UnsupportedError naming the function.
    with pytest.raises(UnsupportedError, match="PssDuplicateSnapshot"):
        pss.function("PssDuplicateSnapshot", lib)


def test_kernel32_calls_through_real_c(fake_lib: Path) -> None:
    """OpenProcess/GetLastError as declared; CreateFileW takes a Python str as UTF-16."""
    from minidumpkit._ffi._winerror import ERROR_INVALID_PARAMETER, check_bool_hresult
    from minidumpkit.errors import AccessDenied, ProcessNotFound

    lib = kernel32.ffi.dlopen(str(fake_lib))
    handle = lib.OpenProcess(kernel32.PROCESS_QUERY_INFORMATION | kernel32.PROCESS_VM_READ, 0, 1000)
    assert int(kernel32.ffi.cast("uintptr_t", handle)) == 0x1000 + 1000 + 0x410
    check_bool_hresult(handle, "OpenProcess", pid=1000, get_last_error=lib.GetLastError)

    missing = lib.OpenProcess(kernel32.PROCESS_QUERY_INFORMATION, 0, 0)
    assert missing == kernel32.ffi.NULL
    with pytest.raises(ProcessNotFound) as info:
        check_bool_hresult(missing, "OpenProcess", pid=0, get_last_error=lib.GetLastError,
                           not_found=(ERROR_INVALID_PARAMETER,))
    assert info.value.winerror == 87  # type: ignore[attr-defined]

    with pytest.raises(AccessDenied):
        check_bool_hresult(lib.OpenProcess(0, 0, 4), "OpenProcess", pid=4,
                           get_last_error=lib.GetLastError)

    name = "C:\\dumps\\é.dmp"
    units = name.encode("utf-16-le")
    h = int(kernel32.ffi.cast("uintptr_t", lib.CreateFileW(
        name, kernel32.GENERIC_WRITE, 0, kernel32.ffi.NULL, kernel32.CREATE_ALWAYS,
        kernel32.FILE_ATTRIBUTE_NORMAL, kernel32.ffi.NULL)))
    assert h == (len(units) // 2) << 32 | sum(struct.unpack(f"<{len(units) // 2}H", units))
    bad = lib.CreateFileW("", 0, 0, kernel32.ffi.NULL, 0, 0, kernel32.ffi.NULL)
    assert bad == kernel32.INVALID_HANDLE_VALUE and lib.GetLastError() == 2


# --- loaders and import hygiene ------------------------------------------------------

@pytest.mark.parametrize("module", [dbghelp, pss, kernel32])
def test_load_refuses_off_windows_without_opening_anything(module: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[object] = []
    monkeypatch.setattr(module.ffi, "dlopen", lambda *a: opened.append(a))
    module.load.cache_clear()
    with pytest.raises(UnsupportedError, match="Windows"):
        module.load()
    assert opened == []


def test_dbghelp_load_message() -> None:
    dbghelp.load.cache_clear()
    with pytest.raises(UnsupportedError, match="dbghelp.dll is a Windows library; on Linux "
                                               "minidumpkit uses its own writer"):
        dbghelp.load()


@pytest.mark.parametrize("tag,opens", [("win-amd64", True), ("win32", True),
                                       ("win-arm64", False), ("win-arm32", False)])
def test_dbghelp_load_checks_the_process_architecture_without_wmi(
        tag: str, opens: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows, load() asks sysconfig for the interpreter's own build (the process's
    architecture, the one its dbghelp.dll fills CONTEXT for), never platform.machine():
    that is a WMI query on CPython 3.12+ (Wine aborts the interpreter on it)."""
    import platform
    import sysconfig

    def no_wmi() -> str:
        raise AssertionError("platform.machine() called")

    opened: list[str] = []
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(platform, "machine", no_wmi)
    monkeypatch.setattr(sysconfig, "get_platform", lambda: tag)
    monkeypatch.setenv("SystemRoot", "C:\\Windows")
    monkeypatch.setattr(dbghelp.ffi, "dlopen", lambda path: opened.append(path) or "lib")
    dbghelp.load.cache_clear()
    try:
        if opens:
            assert dbghelp.load() == "lib"
            assert opened == [os.path.join("C:\\Windows", "System32", "dbghelp.dll")]
        else:
            with pytest.raises(UnsupportedError, match=f"x64 and x86 processes only, not {tag}"):
                dbghelp.load()
            assert opened == []
    finally:
        dbghelp.load.cache_clear()


def test_pss_function_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="not a declared"):
        pss.function("PssFrobnicate", object())  # type: ignore[arg-type]


def _run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_import_minidumpkit_imports_no_windows_binding_and_no_cffi() -> None:
    out = _run_python(
        "import sys, minidumpkit\n"
        "bad = [m for m in ('cffi', 'minidumpkit._ffi.dbghelp', 'minidumpkit._ffi.pss',\n"
        "       'minidumpkit._ffi.kernel32', 'minidumpkit._ffi._winerror') if m in sys.modules]\n"
        "print(bad)")
    assert out == "[]"


def test_importing_the_declarations_opens_no_library() -> None:
    """Importing the three modules maps only cffi's extension (and what it links) and
    CPython's own stdlib extensions: no DLL, no other shared library."""
    out = _run_python(
        "import json, sys, sysconfig, minidumpkit\n"
        "def libs():\n"
        "    return {line.split()[-1] for line in open('/proc/self/maps') if '.so' in line}\n"
        "before = libs()\n"
        "import minidumpkit._ffi.dbghelp, minidumpkit._ffi.pss, minidumpkit._ffi.kernel32\n"
        "import _cffi_backend\n"
        "print(json.dumps({'new': sorted(libs() - before), 'cffi': _cffi_backend.__file__,\n"
        "                  'stdlib': sysconfig.get_path('platstdlib', vars={\n"
        "                      'platbase': sys.base_exec_prefix, 'base': sys.base_prefix})}))")
    report = json.loads(out)
    assert report["cffi"] in report["new"]
    strays = [path for path in report["new"]
              if path != report["cffi"] and not path.startswith(report["stdlib"])
              and not re.match(r"lib(pthread|ffi)[.-]", path.rsplit("/", 1)[-1])]
    assert not strays, strays
