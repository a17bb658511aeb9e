"""flags.py and format.py against the Windows SDK as compiled by mingw-w64 GCC.

``reference/winabi/layout-x86_64.json`` (and ``layout-i686.json``) was produced by a
program built against the SDK declarations and run under Wine: its ``constants``
section holds every enum value, its ``reference`` section every struct's size and
field offsets. Nothing here is derived from our own code.
"""

from __future__ import annotations

import enum
import json
import re
import struct
import typing

import pytest

from minidumpkit import format as md
from minidumpkit.flags import (
    CallbackType,
    ContextFlags,
    DumpType,
    MiniDumpType,
    ModuleWriteFlags,
    PssCaptureFlags,
    StreamType,
    ThreadWriteFlags,
    coerce_dump_type,
)
from oracles import FIXTURES

WINABI = FIXTURES.parent / "reference" / "winabi"


def _load(name: str) -> dict[str, typing.Any]:
    path = WINABI / name
    if not path.exists():
        pytest.fail(f"reference layout {path} is missing")
    data: dict[str, typing.Any] = json.loads(path.read_text())
    return data


X64 = _load("layout-x86_64.json")
I686 = _load("layout-i686.json")
CONSTANTS: dict[str, int] = X64["constants"]


def sdk_name(enum_cls: type[enum.Enum], member: str) -> str:
    """The SDK spelling of a member (the names are the SDK's without their prefix)."""
    if enum_cls is MiniDumpType:
        return "MiniDump" + member
    if enum_cls is PssCaptureFlags:
        return ("PSS_" if member.startswith("CREATE_") else "PSS_CAPTURE_") + member
    if enum_cls is ThreadWriteFlags:
        return "ThreadWrite" + member
    if enum_cls is ModuleWriteFlags:
        return member if member == "ModuleReferencedByMemory" else "ModuleWrite" + member
    if enum_cls is ContextFlags:
        return "CONTEXT_" + member
    return member  # CallbackType, StreamType: same names as the SDK


ENUMS = [MiniDumpType, PssCaptureFlags, CallbackType, ThreadWriteFlags, ModuleWriteFlags,
         ContextFlags]


@pytest.mark.parametrize("enum_cls", ENUMS, ids=lambda c: c.__name__)
def test_every_member_matches_the_sdk(enum_cls: type[enum.Enum]) -> None:
    for name, member in enum_cls.__members__.items():
        key = sdk_name(enum_cls, name)
        assert key in CONSTANTS, f"{enum_cls.__name__}.{name}: no SDK constant {key}"
        assert member.value == CONSTANTS[key], f"{enum_cls.__name__}.{name}"


# Which SDK constants each enum must cover completely (so none is forgotten).
SDK_PREFIXES = {
    MiniDumpType: re.compile(r"^MiniDump(?!.*Secondary)"),
    PssCaptureFlags: re.compile(r"^PSS_(CAPTURE|CREATE)_"),
    ThreadWriteFlags: re.compile(r"^ThreadWrite"),
    ModuleWriteFlags: re.compile(r"^Module(Write|ReferencedByMemory)"),
    ContextFlags: re.compile(r"^CONTEXT_(AMD64|CONTROL|INTEGER|SEGMENTS|FLOATING_POINT|"
                             r"DEBUG_REGISTERS|FULL|ALL|XSTATE|KERNEL_CET)$"),
}


@pytest.mark.parametrize("enum_cls", list(SDK_PREFIXES), ids=lambda c: c.__name__)
def test_every_sdk_constant_has_a_member(enum_cls: type[enum.Enum]) -> None:
    ours = {sdk_name(enum_cls, n) for n in enum_cls.__members__}
    theirs = {k for k in CONSTANTS if SDK_PREFIXES[enum_cls].match(k)}
    assert theirs, "the reference has no such constants"
    assert theirs <= ours, f"missing members for {sorted(theirs - ours)}"


def test_callback_types_are_complete() -> None:
    sdk = {k: v for k, v in CONSTANTS.items() if k.endswith("Callback") and v <= 20}
    assert len(sdk) == 21
    assert {m.name: m.value for m in CallbackType} == sdk


def test_stream_types_match_the_sdk() -> None:
    keys = list(CONSTANTS)  # the JSON lists MINIDUMP_STREAM_TYPE in declaration order
    first, last = keys.index("UnusedStream"), keys.index("LastReservedStream")
    sdk_streams = {k: CONSTANTS[k] for k in keys[first:last + 1]}
    assert len(sdk_streams) == 39
    for name, value in sdk_streams.items():
        assert StreamType[name].value == value, name
    # and every SDK-range member of ours is in the SDK
    for member in StreamType:
        if member.value <= 0xFFFF:
            assert CONSTANTS.get(member.name) == member.value, member.name


def test_breakpad_and_crashpad_stream_ids() -> None:
    # Breakpad minidump_format.h: MD_BREAKPAD_INFO_STREAM = 0x47670001 ... MD_LINUX_DSO_DEBUG
    # = 0x4767000a; Crashpad minidump_extensions.h: kMinidumpStreamTypeCrashpadInfo = 0x43500001.
    names = ["BreakpadInfoStream", "AssertionInfoStream", "LinuxCpuInfo", "LinuxProcStatus",
             "LinuxLsbRelease", "LinuxCmdLine", "LinuxEnviron", "LinuxAuxv", "LinuxMaps",
             "LinuxDsoDebug"]
    assert [StreamType[n].value for n in names] == list(range(0x47670001, 0x4767000B))
    assert StreamType.CrashpadInfoStream == 0x43500001
    # user streams must be above LastReservedStream
    assert StreamType.MinidumpkitInfoStream > CONSTANTS["LastReservedStream"]


def test_valid_type_flags_cover_all_25_bits() -> None:
    bits = [m for m in MiniDumpType if m.value and m is not MiniDumpType.ValidTypeFlags]
    assert len(bits) == 25
    combined = 0
    for m in bits:
        assert m.value & (m.value - 1) == 0, f"{m.name} is not a single bit"
        combined |= m.value
    assert combined == CONSTANTS["MiniDumpValidTypeFlags"] == 0x01FFFFFF


def _sdk(*names: str) -> int:
    value = 0
    for n in names:
        value |= CONSTANTS["MiniDump" + n]
    return value


def test_presets_match_the_issue() -> None:
    # issue #2: MINI is the seed tool's MiniDump, FULL is ProcDump -ma
    assert DumpType.MINI == _sdk("Normal", "WithThreadInfo", "WithHandleData",
                                 "WithIndirectlyReferencedMemory")
    assert DumpType.FULL == _sdk("WithFullMemory", "WithFullMemoryInfo", "WithHandleData",
                                 "WithThreadInfo", "WithUnloadedModules")
    # TRIAGE as documented in flags.DumpType: safe to upload, so no handles and no full memory
    assert DumpType.TRIAGE == _sdk("Normal", "WithThreadInfo", "FilterMemory",
                                   "FilterModulePaths", "WithoutOptionalData")
    for preset in (DumpType.MINI, DumpType.TRIAGE, DumpType.FULL):
        assert isinstance(preset, MiniDumpType)
        assert coerce_dump_type(preset) == preset


def test_int_flag_keeps_unknown_bits() -> None:
    # a header written by a newer Windows keeps its bits
    value = MiniDumpType(0x1_0000_0000 | 0x2)
    assert int(value) == 0x1_0000_0002 and MiniDumpType.WithFullMemory in value


def test_coerce_dump_type_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        coerce_dump_type(0x02000000)
    with pytest.raises(ValueError):
        coerce_dump_type(-1)
    with pytest.raises(TypeError):
        coerce_dump_type("WithFullMemory")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        coerce_dump_type(True)
    assert coerce_dump_type(0x1824) == (MiniDumpType.WithHandleData
                                        | MiniDumpType.WithUnloadedModules
                                        | MiniDumpType.WithFullMemoryInfo
                                        | MiniDumpType.WithThreadInfo)


# --- struct sizes and offsets of format.py against the SDK layout ----------------------

RECORD_TO_SDK = {
    "Header": "MINIDUMP_HEADER",
    "Directory": "MINIDUMP_DIRECTORY",
    "Location": "MINIDUMP_LOCATION_DESCRIPTOR",
    "Location64": "MINIDUMP_LOCATION_DESCRIPTOR64",
    "MemoryDescriptor": "MINIDUMP_MEMORY_DESCRIPTOR",
    "MemoryDescriptor64": "MINIDUMP_MEMORY_DESCRIPTOR64",
    "Memory64ListHeader": "MINIDUMP_MEMORY64_LIST",
    "MemoryInfoListHeader": "MINIDUMP_MEMORY_INFO_LIST",
    "MemoryInfo": "MINIDUMP_MEMORY_INFO",
    "Thread": "MINIDUMP_THREAD",
    "ThreadEx": "MINIDUMP_THREAD_EX",
    "ThreadName": "MINIDUMP_THREAD_NAME",
    "ThreadInfoListHeader": "MINIDUMP_THREAD_INFO_LIST",
    "ThreadInfo": "MINIDUMP_THREAD_INFO",
    "M128A": "M128A",
    "XmmSaveArea32": "XMM_SAVE_AREA32",
    "ContextAMD64": "CONTEXT",
    "VsFixedFileInfo": "VS_FIXEDFILEINFO",
    "Module": "MINIDUMP_MODULE",
    "UnloadedModuleListHeader": "MINIDUMP_UNLOADED_MODULE_LIST",
    "UnloadedModule": "MINIDUMP_UNLOADED_MODULE",
    "ExceptionRecord": "MINIDUMP_EXCEPTION",
    "ExceptionStream": "MINIDUMP_EXCEPTION_STREAM",
    "SystemInfo": "MINIDUMP_SYSTEM_INFO",
    "MiscInfo": "MINIDUMP_MISC_INFO",
    "MiscInfo2": "MINIDUMP_MISC_INFO_2",
    "MiscInfo3": "MINIDUMP_MISC_INFO_3",
    "MiscInfo4": "MINIDUMP_MISC_INFO_4",
    "MiscInfo5": "MINIDUMP_MISC_INFO_5",
    "HandleDataHeader": "MINIDUMP_HANDLE_DATA_STREAM",
    "HandleDescriptor": "MINIDUMP_HANDLE_DESCRIPTOR",
    "HandleDescriptor2": "MINIDUMP_HANDLE_DESCRIPTOR_2",
}

# Our field names where they are not the SDK's in snake_case.
FIELD_ALIASES = {
    ("Header", "NumberOfStreams"): "stream_count",
    ("Header", "StreamDirectoryRva"): "stream_directory_rva",
    ("Directory", "StreamType"): "stream_type",
    ("Directory", "Location"): "location",
    ("MemoryDescriptor64", "DataSize"): "data_size",
    ("Memory64ListHeader", "NumberOfMemoryRanges"): "number_of_memory_ranges",
    ("Memory64ListHeader", "BaseRva"): "base_rva",
    ("SystemInfo", "Cpu"): "cpu",
    ("ExceptionRecord", "NumberParameters"): "number_parameters",
    ("ExceptionRecord", "__unusedAlignment"): "unused_alignment",
    ("ExceptionStream", "ExceptionRecord"): "exception_record",
    ("ContextAMD64", "FltSave"): "flt_save",
    ("ContextAMD64", "VectorRegister"): "vector_register",
    ("ContextAMD64", "MxCsr"): "mx_csr",
    ("XmmSaveArea32", "MxCsr"): "mx_csr",
    ("XmmSaveArea32", "MxCsr_Mask"): "mx_csr_mask",
    ("VsFixedFileInfo", "dwStrucVersion"): "struc_version",
    ("VsFixedFileInfo", "dwFileVersionMS"): "file_version_hi",
    ("VsFixedFileInfo", "dwFileVersionLS"): "file_version_lo",
    ("VsFixedFileInfo", "dwProductVersionMS"): "product_version_hi",
    ("VsFixedFileInfo", "dwProductVersionLS"): "product_version_lo",
    ("VsFixedFileInfo", "dwFileDateMS"): "file_date_hi",
    ("VsFixedFileInfo", "dwFileDateLS"): "file_date_lo",
    ("MiscInfo5", "XStateData"): "xstate_data",
    ("MiscInfo4", "DbgBldStr"): "dbg_bld_str",
    ("MiscInfo5", "DbgBldStr"): "dbg_bld_str",
    ("MiscInfo4", "BuildString"): "build_string",
    ("MiscInfo5", "BuildString"): "build_string",
}


def _snake(name: str) -> str:
    name = re.sub(r"^dw", "", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name).lower()


def field_offsets(cls: type[md.Record]) -> dict[str, tuple[int, int]]:
    """Our (offset, size) of each top-level field, from its struct code."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, tuple[int, int]] = {}
    offset = 0
    for name, sub in cls._layout:
        size = sub.SIZE if sub is not None else struct.calcsize(
            "<" + typing.get_args(hints[name])[1])
        out[name] = (offset, size)
        offset += size
    return out


@pytest.mark.parametrize("ours,sdk", sorted(RECORD_TO_SDK.items()))
def test_record_layout_matches_reference(ours: str, sdk: str) -> None:
    cls = getattr(md, ours)
    ref = X64["reference"][sdk]
    assert cls.SIZE == ref["size"], f"{ours}.SIZE vs sizeof({sdk})"
    offsets = field_offsets(cls)
    matched = 0
    for field, (offset, size) in ref["fields"].items():
        if "." in field:  # members of unions / nested aggregates
            continue
        name = FIELD_ALIASES.get((ours, field)) or _snake(field)
        if name in offsets:
            assert offsets[name] == (offset, size), f"{ours}.{name} vs {sdk}.{field}"
            matched += 1
    assert matched >= min(3, len(offsets)), f"only {matched} fields of {ours} compared"


def test_x86_context_size_matches_i686_reference() -> None:
    assert md.ContextX86.SIZE == I686["reference"]["CONTEXT"]["size"] == 716
    assert md.FloatingSaveArea.SIZE == 112
    eip = I686["reference"]["CONTEXT"]["fields"]["Eip"]
    assert field_offsets(md.ContextX86)["eip"] == tuple(eip)


def test_module_is_108_bytes_not_112() -> None:
    # natural alignment would round MINIDUMP_MODULE to 112: a classic bug
    assert X64["reference"]["MINIDUMP_MODULE"]["size"] == md.Module.SIZE == 108


def test_context_flags_match_format_constants() -> None:
    assert md.CONTEXT_AMD64 == CONSTANTS["CONTEXT_AMD64"]
    assert md.CONTEXT_AMD64_ALL == CONSTANTS["CONTEXT_ALL"]
    assert md.CONTEXT_AMD64_XSTATE == CONSTANTS["CONTEXT_XSTATE"]
    assert md.SIGNATURE == CONSTANTS["MINIDUMP_SIGNATURE"]
    assert md.VERSION == CONSTANTS["MINIDUMP_VERSION"]
    assert md.EXCEPTION_MAXIMUM_PARAMETERS == CONSTANTS["EXCEPTION_MAXIMUM_PARAMETERS"]
    for flag in md.MiscInfoFlags:
        key = next(k for k in CONSTANTS if re.fullmatch(r"MINIDUMP_MISC\d_" + flag.name, k))
        assert flag.value == CONSTANTS[key]
    for flag in md.ThreadInfoFlags:
        assert flag.value == CONSTANTS["MINIDUMP_THREAD_INFO_" + flag.name]
