"""format.py against layouts written out independently here.

The expected bytes are assembled with plain ``struct.pack`` from the SDK declarations
(minidumpapiset.h, winnt.h) and Breakpad's minidump_format.h, never with format.py
(minidump-synth's rule): a wrong field order or width in format.py cannot also be in
the expectation.
"""

from __future__ import annotations

import struct
import typing
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidumpkit import format as md

# Each record as the SDK declares it, field by field (pack(4), little-endian).
SDK_LAYOUTS: dict[str, str] = {
    "Location": "II",
    "Location64": "QQ",
    "Header": "IIIIIIQ",
    "Directory": "III",
    "MemoryDescriptor": "QII",
    "MemoryDescriptor64": "QQ",
    "Memory64ListHeader": "QQ",
    "MemoryInfoListHeader": "IIQ",
    "MemoryInfo": "QQIIQIIII",
    "Thread": "IIIIQ" "QII" "II",
    "ThreadEx": "IIIIQ" "QII" "II" "QII",
    "ThreadName": "IQ",
    "ThreadInfoListHeader": "III",
    "ThreadInfo": "IIII" "QQQQQQ",
    "M128A": "QQ",
    "XmmSaveArea32": "HHBBHIHHIHHII" "128s" "256s" "96s",
    "ContextAMD64": "6Q" "II" "6H" "I" "6Q" "16Q" "Q" + "HHBBHIHHIHHII128s256s96s" + "416s" "6Q",
    "FloatingSaveArea": "7I" "80s" "I",
    "ContextX86": "7I" + "7I80sI" + "4I" "6I" "6I" "512s",
    "VsFixedFileInfo": "13I",
    "Module": "QIIII" "13I" "II" "II" "QQ",
    "UnloadedModuleListHeader": "III",
    "UnloadedModule": "QIIII",
    "CvInfoPdb70Header": "I16sI",
    "CvInfoPdb20Header": "IIII",
    "ExceptionRecord": "IIQQII" "120s",
    "ExceptionStream": "II" "IIQQII120s" "II",
    "SystemInfo": "HHHBB" "IIII" "I" "HH" "24s",
    "MiscInfo": "6I",
    "MiscInfo2": "11I",
    "MiscInfo3": "15I" "172s",
    "MiscInfo4": "15I" "172s" "520s" "80s",
    "MiscInfo5": "15I" "172s" "520s" "80s" "528s" "I",
    "HandleDataHeader": "IIII",
    "HandleDescriptor": "QIIIIII",
    "HandleDescriptor2": "QIIIIIIII",
    # Breakpad's MDRawDebug64 / MDRawLinkMap64 as its C compiler lays them out (natural
    # alignment pads after dso_count and after name); the 32-bit forms have no padding.
    "Debug64": "III" "4x" "QQQ",
    "LinkMap64": "QI" "4x" "Q",
    "Debug32": "6I",
    "LinkMap32": "3I",
    "CrashpadInfoHeader": "I16s16s" "II" "II",
    # ARM64_NT_CONTEXT (winnt.h): flags, cpsr, x0-x30, sp, pc, v0-v31, fpcr, fpsr,
    # 8 bcr, 8 bvr, 2 wcr, 2 wvr
    "ContextARM64": "II" "31Q" "QQ" "512s" "II" "8I" "8Q" "2I" "2Q",
    # Breakpad's MDRawContextARM64_Old (pack(4)): u64 flags, x0-x30, sp, pc, cpsr,
    # then MDFloatingSaveAreaARM64_Old's fpsr, fpcr and 32 u128
    "ContextARM64Old": "Q" "31Q" "QQ" "I" "II" "512s",
    "FloatingSaveAreaARM": "Q" "32Q" "8I",
    "ContextARM": "I" "16I" "I" "Q32Q8I",
    "ArmCpuInfo": "II",
    "StringDictionaryEntry": "II",
    "ModuleCrashpadInfoLink": "I" "II",
    "ModuleCrashpadInfo": "I" "II" "II" "II",
    "AnnotationEntry": "IHHI",
    "BreakpadInfo": "III",
    "MinidumpkitInfo": "IIQQ",
    # minidumpkit's own (docs/threads.md gives the layout)
    "ThreadStateListHeader": "IIII",
    "ThreadState": "IIIIQQQQQ64s",
    # minidumpkit's own: docs/python-stacks.md
    "MinidumpkitPython": "IIII" "QQQ" "II" "QQ",
    "MinidumpkitMemory": "II" "QQ",
}

# Sizes quoted by the SDK documentation / Breakpad headers, for the records people
# most often get wrong.
DOCUMENTED_SIZES = {
    "Header": 32, "Directory": 12, "MemoryDescriptor": 16, "Thread": 48, "ThreadEx": 64,
    "Module": 108, "ThreadName": 12, "MemoryInfo": 48, "ThreadInfo": 64,
    "ContextAMD64": 1232, "ContextX86": 716, "XmmSaveArea32": 512, "SystemInfo": 56,
    "ExceptionStream": 168, "MiscInfo": 24, "MiscInfo2": 44, "MiscInfo3": 232,
    "MiscInfo4": 832, "MiscInfo5": 1364, "HandleDescriptor": 32, "HandleDescriptor2": 40,
    "UnloadedModule": 24, "VsFixedFileInfo": 52, "Debug64": 40, "LinkMap64": 24,
    "ContextARM64": 0x390, "ContextARM": 368, "BreakpadInfo": 12,
}


def all_records() -> list[type[md.Record]]:
    out: list[type[md.Record]] = []
    todo = list(md.Record.__subclasses__())
    while todo:
        cls = todo.pop()
        if "__annotations__" in cls.__dict__:
            out.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(out, key=lambda c: c.__name__)


RECORDS = all_records()


def test_every_record_has_an_independent_layout() -> None:
    missing = [c.__name__ for c in RECORDS if c.__name__ not in SDK_LAYOUTS]
    assert not missing, f"add the SDK layout of {missing} to SDK_LAYOUTS"


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_size_matches_sdk_layout(cls: type[md.Record]) -> None:
    assert cls.SIZE == struct.calcsize("<" + SDK_LAYOUTS[cls.__name__])


@pytest.mark.parametrize("name,size", sorted(DOCUMENTED_SIZES.items()))
def test_documented_sizes(name: str, size: int) -> None:
    assert getattr(md, name).SIZE == size


# --- golden byte layouts ---------------------------------------------------------------

def test_header_bytes() -> None:
    expected = struct.pack("<IIIIIIQ", 0x504D444D, 0xA063A793, 13, 32, 0, 0x5F5F2C88, 0x1824)
    assert expected[:4] == b"MDMP"
    h = md.Header(md.SIGNATURE, 0xA063A793, 13, 32, 0, 0x5F5F2C88, 0x1824)
    assert h.pack() == expected
    assert md.Header.unpack_from(expected) == h


def test_directory_bytes() -> None:
    expected = struct.pack("<III", 0x47670009, 3475, 0xBAC0)
    d = md.Directory(0x47670009, md.Location(3475, 0xBAC0))
    assert d.pack() == expected
    assert md.Directory.unpack_from(b"\xff" * 4 + expected, 4) == d


def test_thread_bytes() -> None:
    expected = struct.pack("<IIIIQQIIII", 0x5BE6, 1, 0x20, 8, 0x7F00DEAD0000,
                           0x7FFCDB5E5000, 0x2000, 0xF8, 0x4D0, 0x5F78)
    t = md.Thread(0x5BE6, 1, 0x20, 8, 0x7F00DEAD0000,
                  md.MemoryDescriptor(0x7FFCDB5E5000, md.Location(0x2000, 0xF8)),
                  md.Location(0x4D0, 0x5F78))
    assert t.pack() == expected
    assert md.Thread.unpack_from(expected) == t


def test_module_bytes_are_108_with_no_tail_padding() -> None:
    vs = struct.pack("<13I", 0xFEEF04BD, 0x10000, 0x000A0000, 0x55F0011A, 0x000A0000,
                     0x55F0011A, 0x3F, 0, 0x40004, 2, 0, 0, 0)
    expected = (struct.pack("<QIIII", 0x7FF911140000, 0x207000, 0x1F1A09, 0xB594BEDC, 0x1234)
                + vs + struct.pack("<IIIIQQ", 34, 0x5678, 0, 0, 0, 0))
    assert len(expected) == 108
    m = md.Module.unpack_from(expected)
    assert (m.base_of_image, m.size_of_image, m.checksum, m.time_date_stamp,
            m.module_name_rva) == (0x7FF911140000, 0x207000, 0x1F1A09, 0xB594BEDC, 0x1234)
    assert m.version_info.file_version_lo == 0x55F0011A
    assert m.version_info.file_os == 0x40004
    assert m.cv_record == md.Location(34, 0x5678)
    assert m.pack() == expected


def test_system_info_bytes() -> None:
    vendor = b"GenuineIntel" + bytes(12)
    expected = struct.pack("<HHHBBIIIIIHH24s", 0, 6, 0x0D08, 1, 1, 5, 1, 2600, 2, 0x400, 0x100,
                           0, vendor)
    s = md.SystemInfo.unpack_from(expected)
    assert (s.processor_architecture, s.processor_level, s.processor_revision,
            s.number_of_processors, s.product_type) == (0, 6, 0x0D08, 1, 1)
    assert (s.major_version, s.minor_version, s.build_number, s.platform_id) == (5, 1, 2600, 2)
    assert (s.csd_version_rva, s.suite_mask, s.cpu) == (0x400, 0x100, vendor)
    assert s.pack() == expected


def test_exception_stream_bytes() -> None:
    params = struct.pack("<3Q", 0x11111111, 0x22222222, 0x33333333) + bytes(96)
    expected = struct.pack("<IIIIQQII120sII", 308, 0, 0xE0000001, 1, 0, 0x7B013D7E, 3, 0,
                           params, 1232, 199741)
    e = md.ExceptionStream.unpack_from(expected)
    assert e.thread_id == 308
    assert e.exception_record.exception_code == 0xE0000001
    assert e.exception_record.exception_flags == 1
    assert e.exception_record.exception_address == 0x7B013D7E
    assert e.exception_record.parameters() == (0x11111111, 0x22222222, 0x33333333)
    assert e.thread_context == md.Location(1232, 199741)
    assert e.pack() == expected


def test_exception_parameters_are_capped_at_15() -> None:
    raw = struct.pack("<IIQQII120s", 6, 0, 0, 0, 0xFFFFFFFF, 0, struct.pack("<15Q", *range(15)))
    assert md.ExceptionRecord.unpack_from(raw).parameters() == tuple(range(15))


def test_thread_name_is_12_bytes_with_unaligned_rva64() -> None:
    expected = struct.pack("<IQ", 0x2AE0, 0x123456789A)
    assert len(expected) == 12
    assert md.ThreadName.unpack_from(expected) == md.ThreadName(0x2AE0, 0x123456789A)


def test_memory_info_and_handle_descriptor_2_bytes() -> None:
    mi = struct.pack("<QQIIQIIII", 0x7FFE0000, 0x7FFE0000, 2, 0, 0x1000, 0x1000, 2, 0x20000, 0)
    r = md.MemoryInfo.unpack_from(mi)
    assert (r.base_address, r.region_size, r.state, r.protect, r.type) == (
        0x7FFE0000, 0x1000, 0x1000, 2, 0x20000)
    hd = struct.pack("<QIIIIIIII", 4, 0x9CE0, 0, 0, 0x12019F, 2, 98303, 0x40, 0)
    h = md.HandleDescriptor2.unpack_from(hd)
    assert (h.handle, h.type_name_rva, h.granted_access, h.pointer_count, h.object_info_rva) == (
        4, 0x9CE0, 0x12019F, 98303, 0x40)


def test_memory64_list_header_bytes() -> None:
    expected = struct.pack("<QQ", 72, 0x2000)
    assert md.Memory64ListHeader(72, 0x2000).pack() == expected


def test_context_amd64_register_offsets() -> None:
    # Offsets from winnt.h's CONTEXT for AMD64 (the same as Breakpad's MDRawContextAMD64).
    raw = bytearray(1232)
    struct.pack_into("<I", raw, 0x30, 0x0010001F)  # ContextFlags
    struct.pack_into("<I", raw, 0x34, 0x1F80)  # MxCsr
    struct.pack_into("<H", raw, 0x38, 0x33)  # SegCs
    struct.pack_into("<I", raw, 0x44, 0x10202)  # EFlags
    struct.pack_into("<Q", raw, 0x78, 0xAAAA)  # Rax
    struct.pack_into("<Q", raw, 0x98, 0x7FFD886A4B18)  # Rsp
    struct.pack_into("<Q", raw, 0xA0, 0x7FFD886A4B20)  # Rbp
    struct.pack_into("<Q", raw, 0xF0, 0xF15)  # R15
    struct.pack_into("<Q", raw, 0xF8, 0x558B4108B219)  # Rip
    struct.pack_into("<I", raw, 0x100 + 24, 0x1F80)  # FltSave.MxCsr
    struct.pack_into("<Q", raw, 0x1A0, 0x1234)  # Xmm0 low (FltSave + 160)
    struct.pack_into("<Q", raw, 0x4C8, 0xBEEF)  # LastExceptionFromRip
    c = md.ContextAMD64.unpack_from(bytes(raw))
    assert c.context_flags == 0x0010001F and c.mx_csr == 0x1F80 and c.seg_cs == 0x33
    assert c.eflags == 0x10202 and c.rax == 0xAAAA and c.r15 == 0xF15
    assert (c.pc, c.sp, c.rbp) == (0x558B4108B219, 0x7FFD886A4B18, 0x7FFD886A4B20)
    assert c.flt_save.mx_csr == 0x1F80
    assert c.flt_save.xmm_registers[:8] == struct.pack("<Q", 0x1234)
    assert c.last_exception_from_rip == 0xBEEF
    assert c.pack() == bytes(raw)
    regs = c.registers()
    assert regs["rip"] == 0x558B4108B219 and regs["rsp"] == 0x7FFD886A4B18
    assert regs["cs"] == 0x33 and regs["eflags"] == 0x10202


def test_context_x86_register_offsets() -> None:
    raw = bytearray(716)
    struct.pack_into("<I", raw, 0x00, 0x0001003F)  # ContextFlags
    struct.pack_into("<I", raw, 0x8C, 0x2B)  # SegGs
    struct.pack_into("<I", raw, 0x90, 0x3B)  # SegFs
    struct.pack_into("<I", raw, 0xB0, 0xEAEA)  # Eax
    struct.pack_into("<I", raw, 0xB4, 0x61FD4C)  # Ebp
    struct.pack_into("<I", raw, 0xB8, 0x778106AC)  # Eip
    struct.pack_into("<I", raw, 0xBC, 0x23)  # SegCs
    struct.pack_into("<I", raw, 0xC0, 0x246)  # EFlags
    struct.pack_into("<I", raw, 0xC4, 0x61FCDC)  # Esp
    struct.pack_into("<I", raw, 0xC8, 0x2B)  # SegSs
    raw[0xCC] = 0x7F  # ExtendedRegisters[0]
    c = md.ContextX86.unpack_from(bytes(raw))
    assert c.gs == 0x2B
    assert (c.context_flags, c.fs, c.eax, c.ebp, c.eip, c.cs, c.eflags, c.esp, c.ss) == (
        0x0001003F, 0x3B, 0xEAEA, 0x61FD4C, 0x778106AC, 0x23, 0x246, 0x61FCDC, 0x2B)
    assert c.extended_registers[0] == 0x7F
    assert (c.pc, c.sp) == (0x778106AC, 0x61FCDC)
    assert c.pack() == bytes(raw)


def test_breakpad_dso_debug_layout_is_padded() -> None:
    # MDRawDebug64 {u32 version; MDRVA map; u32 dso_count; [pad]; u64 brk, ldbase, dynamic}
    expected = struct.pack("<III4xQQQ", 1, 0xCA00, 8, 0x7F5AA195D1C0, 0x7F5AA193A000, 0x600E28)
    d = md.Debug64.unpack_from(expected)
    assert (d.version, d.map, d.dso_count, d.brk, d.ldbase, d.dynamic) == (
        1, 0xCA00, 8, 0x7F5AA195D1C0, 0x7F5AA193A000, 0x600E28)
    lm = struct.pack("<QI4xQ", 0x7F5AA171C000, 0x6000, 0x7F5AA1934D50)
    link = md.LinkMap64.unpack_from(lm)
    assert (link.addr, link.name, link.ld) == (0x7F5AA171C000, 0x6000, 0x7F5AA1934D50)


def test_codeview_pdb70_header() -> None:
    guid = uuid.UUID("5a9832e5-2872-41c1-838e-d98914e9b7ff")
    raw = struct.pack("<I16sI", 0x53445352, guid.bytes_le, 1) + b"c:\\test_app.pdb\0"
    h = md.CvInfoPdb70Header.unpack_from(raw)
    assert raw[:4] == b"RSDS" and h.cv_signature == md.CV_SIGNATURE_PDB70
    assert uuid.UUID(bytes_le=h.signature) == guid and h.age == 1
    assert struct.pack("<I", md.CV_SIGNATURE_ELF) == b"LEpB"
    assert struct.pack("<I", md.CV_SIGNATURE_PDB20) == b"NB10"


def test_constants() -> None:
    assert struct.pack("<I", md.SIGNATURE) == b"MDMP"
    assert md.VERSION == 42899
    assert md.DUMP_REQUESTED == 0xFFFFFFFF
    assert md.VS_FFI_SIGNATURE == 0xFEEF04BD
    assert md.CONTEXT_AMD64_ALL == md.CONTEXT_AMD64 | 0x1F


def test_pack_string_golden() -> None:
    assert md.pack_string("ab") == struct.pack("<I", 4) + "ab".encode("utf-16-le") + b"\0\0"
    assert md.pack_string("") == b"\0\0\0\0\0\0"
    assert md.string_size("héllo") == len(md.pack_string("héllo"))
    # a non-BMP character is two UTF-16 units
    assert md.pack_string("\U0001F600")[:4] == struct.pack("<I", 4)


def test_build_id_to_debug_id_matches_rust_minidump() -> None:
    # Values printed by minidump-stackwalk 0.25 (`--json`, debug_id) for the modules of
    # fixtures/third-party/generated-crashpad-linux-x86_64-3threads-segv.dmp and
    # crashpad-linux-x86_64-sigill.dmp (an 8-byte lld build id, zero-padded).
    assert md.build_id_to_debug_id(bytes.fromhex("bc915f23a1602c89a64d2f20598fd287c32297eb")) \
        == "235F91BC60A1892CA64D2F20598FD2870"
    assert md.build_id_to_debug_id(bytes.fromhex("10faa6bbaab83db3")) \
        == "BBA6FA10B8AAB33D00000000000000000"


# --- round trips ---------------------------------------------------------------------------

def _field_strategy(code: str) -> st.SearchStrategy[typing.Any]:
    if code.endswith("s"):
        n = int(code[:-1])
        return st.binary(min_size=n, max_size=n)
    bits = struct.calcsize("<" + code) * 8
    if code.islower():
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


def _record_strategy(cls: type[md.Record]) -> st.SearchStrategy[md.Record]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, st.SearchStrategy[typing.Any]] = {}
    for name, sub in cls._layout:
        fields[name] = (_record_strategy(sub) if sub is not None
                        else _field_strategy(typing.get_args(hints[name])[1]))
    return st.builds(cls, **fields)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_pack_unpack_round_trip(cls: type[md.Record], data: st.DataObject) -> None:
    record = data.draw(_record_strategy(cls))
    packed = record.pack()
    assert len(packed) == cls.SIZE
    assert cls.unpack_from(packed) == record
    raw = data.draw(st.binary(min_size=cls.SIZE, max_size=cls.SIZE))
    assert cls.unpack_from(raw).pack() == raw


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_zero_is_all_zero_bytes(cls: type[md.Record]) -> None:
    assert cls.zero().pack() == bytes(cls.SIZE)
