"""The MDMP file format, defined once and shared by the writer and the reader.

Every on-disk structure is a frozen dataclass whose field annotations carry their
``struct`` code (``Annotated[int, "I"]``, ``Annotated[bytes, "16s"]``); ``SIZE``,
:meth:`Record.unpack_from` and :meth:`Record.pack` are derived from them. The
dataclass methods are generated on first use, which keeps this import cheap. All layouts are little-endian with no implicit padding: where
``#pragma pack(4)`` or natural alignment would pad, the padding is an explicit
field, as in Microsoft's headers. Nested records are written as a field whose
annotation is the record class.

Sources: Microsoft's minidumpapiset.h documentation, Breakpad's
``minidump_format.h`` and ``minidump_cpu_amd64.h``, rust-minidump's
``format.rs``. Sizes are pinned by tests with bytes assembled independently.

Import it as ``from minidumpkit import format as md``.
"""

from __future__ import annotations

import enum
import operator
import struct
import sys
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar, Self

from ._lazydataclass import LazyDataclass
from .flags import StreamType

__all__ = ["StreamType"]  # the rest is reached as md.Name

SIGNATURE = 0x504D444D  # b"MDMP"
VERSION = 0xA793  # low word of Header.version; Windows puts an implementation word above it

U8 = Annotated[int, "B"]
U16 = Annotated[int, "H"]
U32 = Annotated[int, "I"]
I32 = Annotated[int, "i"]
U64 = Annotated[int, "Q"]

# struct code of each alias above, read straight from an annotation string
_ALIAS_CODES = {"U8": "B", "U16": "H", "U32": "I", "I32": "i", "U64": "Q"}


def _field_code(owner: type, name: str, ann: Any) -> tuple[str, type[Record] | None]:
    """The struct code of one field, and its record class when the field is nested.

    Annotations are strings here (``from __future__ import annotations``): the common
    spellings (``U32``, ``Annotated[bytes, "16s"]``, a record class name) are read
    without ``eval``, which keeps importing this module cheap."""
    if isinstance(ann, str):
        namespace = vars(sys.modules[owner.__module__])
        if ann in _ALIAS_CODES and namespace.get(ann) is globals()[ann]:
            return _ALIAS_CODES[ann], None
        found = namespace.get(ann)
        if found is None and ann.startswith("Annotated[") and ann.endswith("]"):
            code = ann[:-1].rpartition(",")[2].strip()
            if len(code) >= 3 and code[0] == code[-1] and code[0] in "\"'":
                return code[1:-1], None
        ann = found if found is not None else eval(ann, namespace)  # our own annotations
    if isinstance(ann, type) and issubclass(ann, Record):
        return ann._struct.format.lstrip("<"), ann
    args = typing.get_args(ann)
    if len(args) != 2 or not isinstance(args[1], str):
        raise TypeError(f"{owner.__name__}.{name}: annotate with a struct code, "
                        f"Annotated[int, 'I'], or a Record class (got {ann!r})")
    return args[1], None


class Record(LazyDataclass):
    """Base of every fixed-size on-disk structure (see the module docstring).

    Each subclass is a frozen dataclass whose dataclass methods are generated on first
    use (see :mod:`minidumpkit._lazydataclass`): decoding and packing never need them.
    """

    SIZE: ClassVar[int]
    _struct: ClassVar[struct.Struct]
    # (field name, nested record class or None) in declaration order
    _layout: ClassVar[tuple[tuple[str, type[Record] | None], ...]]
    _codes: ClassVar[tuple[str, ...]]  # each field's struct code, in declaration order
    # every field's value in declaration order; indexes of the nested-record fields
    _values: ClassVar[Callable[[Any], tuple[Any, ...]]]
    _nested: ClassVar[tuple[int, ...]]
    # dotted paths of every leaf field in struct order; their getter (None if only one)
    _paths: ClassVar[tuple[str, ...]]
    _leaves: ClassVar[Callable[[Any], tuple[Any, ...]] | None]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        spec = cls.__dict__.get("__lazy_spec__")
        if spec is None:  # no fields of its own
            return
        layout: list[tuple[str, type[Record] | None]] = []
        codes: list[str] = []
        for name in spec.names:
            code, sub = _field_code(cls, name, spec.annotations[name])
            codes.append(code)
            layout.append((name, sub))
        cls._struct = struct.Struct("<" + "".join(codes))
        cls._codes = tuple(codes)
        cls.SIZE = cls._struct.size
        cls._layout = tuple(layout)
        names = [name for name, _ in layout]
        # pack() runs for every record of every dump: fetch all fields in one C call
        getter = operator.attrgetter(*names)
        cls._values = getter if len(names) > 1 else (lambda obj: (getter(obj),))
        cls._nested = tuple(i for i, (_, sub) in enumerate(layout) if sub is not None)
        # A nested record packs from one dotted-path attrgetter (one C call for every
        # leaf of a CONTEXT, instead of a Python walk per nested record).
        paths: list[str] = []
        for name, sub in layout:
            paths += [name] if sub is None else [f"{name}.{p}" for p in sub._paths]
        cls._paths = tuple(paths)
        cls._leaves = operator.attrgetter(*paths) if len(paths) > 1 else None

    @classmethod
    def offset_of(cls, name: str) -> int:
        """Byte offset of field ``name`` in the packed record."""
        names = [field for field, _ in cls._layout]
        return struct.calcsize("<" + "".join(cls._codes[:names.index(name)]))

    @classmethod
    def _build(cls, values: tuple[Any, ...], pos: int) -> tuple[Self, int]:
        kwargs: dict[str, Any] = {}
        for name, sub in cls._layout:
            if sub is None:
                kwargs[name] = values[pos]
                pos += 1
            else:
                kwargs[name], pos = sub._build(values, pos)
        return cls._from_fields(kwargs), pos

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]) -> Self:
        """``cls(**fields)`` for a dict that names every field exactly once, without the
        frozen ``__init__``'s per-field ``object.__setattr__`` (records have no defaults
        and no ``__post_init__``): decoding and building contexts do this per thread."""
        obj = object.__new__(cls)
        obj.__dict__.update(fields)
        return obj

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> Self:
        """Decode one record at ``offset``; the caller bounds-checks (struct.error otherwise)."""
        return cls._build(cls._struct.unpack_from(buf, offset), 0)[0]

    def _flat(self) -> list[Any]:
        values = type(self)._values(self)
        out: list[Any] = []
        prev = 0
        for i in self._nested:
            out += values[prev:i]
            out += values[i]._flat()
            prev = i + 1
        out += values[prev:]
        return out

    def pack(self) -> bytes:
        if not self._nested:
            return self._struct.pack(*type(self)._values(self))
        leaves = type(self)._leaves
        if leaves is None:
            return self._struct.pack(*self._flat())
        return self._struct.pack(*leaves(self))

    @classmethod
    def zero(cls) -> Self:
        """A record with every field zero (the all-zero byte pattern)."""
        return cls.unpack_from(bytes(cls.SIZE))


# --- header and directory ---------------------------------------------------------

class Location(Record):
    """MINIDUMP_LOCATION_DESCRIPTOR: a 32-bit (size, rva) pair."""
    data_size: U32
    rva: U32


class Location64(Record):
    """MINIDUMP_LOCATION_DESCRIPTOR64."""
    data_size: U64
    rva: U64


class Header(Record):
    """MINIDUMP_HEADER (32 bytes)."""
    signature: U32
    version: U32
    stream_count: U32
    stream_directory_rva: U32
    checksum: U32
    time_date_stamp: U32
    flags: U64


class Directory(Record):
    """MINIDUMP_DIRECTORY (12 bytes)."""
    stream_type: U32
    location: Location


# --- memory -----------------------------------------------------------------------

class MemoryDescriptor(Record):
    """MINIDUMP_MEMORY_DESCRIPTOR (16 bytes): a range whose bytes are at a 32-bit RVA."""
    start_of_memory_range: U64
    memory: Location


class MemoryDescriptor64(Record):
    """MINIDUMP_MEMORY_DESCRIPTOR64 (16 bytes): bytes follow Memory64List.base_rva in order."""
    start_of_memory_range: U64
    data_size: U64


class Memory64ListHeader(Record):
    """MINIDUMP_MEMORY64_LIST without its array."""
    number_of_memory_ranges: U64
    base_rva: U64


class MemoryInfoListHeader(Record):
    """MINIDUMP_MEMORY_INFO_LIST without its array."""
    size_of_header: U32
    size_of_entry: U32
    number_of_entries: U64


class MemoryInfo(Record):
    """MINIDUMP_MEMORY_INFO (48 bytes), VirtualQuery's MEMORY_BASIC_INFORMATION64."""
    base_address: U64
    allocation_base: U64
    allocation_protect: U32
    alignment1: U32
    region_size: U64
    state: U32
    protect: U32
    type: U32
    alignment2: U32


class MemState(enum.IntFlag):
    COMMIT = 0x1000
    RESERVE = 0x2000
    FREE = 0x10000


class MemType(enum.IntFlag):
    PRIVATE = 0x20000
    MAPPED = 0x40000
    IMAGE = 0x1000000


class MemProtect(enum.IntFlag):
    NOACCESS = 0x01
    READONLY = 0x02
    READWRITE = 0x04
    WRITECOPY = 0x08
    EXECUTE = 0x10
    EXECUTE_READ = 0x20
    EXECUTE_READWRITE = 0x40
    EXECUTE_WRITECOPY = 0x80
    GUARD = 0x100
    NOCACHE = 0x200
    WRITECOMBINE = 0x400


# --- threads ----------------------------------------------------------------------

class Thread(Record):
    """MINIDUMP_THREAD (48 bytes)."""
    thread_id: U32
    suspend_count: U32
    priority_class: U32
    priority: U32
    teb: U64
    stack: MemoryDescriptor
    thread_context: Location


class ThreadEx(Record):
    """MINIDUMP_THREAD_EX (64 bytes)."""
    thread_id: U32
    suspend_count: U32
    priority_class: U32
    priority: U32
    teb: U64
    stack: MemoryDescriptor
    thread_context: Location
    backing_store: MemoryDescriptor


class ThreadName(Record):
    """MINIDUMP_THREAD_NAME (12 bytes under pack(4)): the name is a MINIDUMP_STRING at a 64-bit RVA."""
    thread_id: U32
    rva_of_thread_name: U64


class ThreadInfoListHeader(Record):
    """MINIDUMP_THREAD_INFO_LIST without its array."""
    size_of_header: U32
    size_of_entry: U32
    number_of_entries: U32


class ThreadInfo(Record):
    """MINIDUMP_THREAD_INFO (64 bytes). Times are FILETIME-style 100 ns units."""
    thread_id: U32
    dump_flags: U32
    dump_error: U32
    exit_status: U32
    create_time: U64
    exit_time: U64
    kernel_time: U64
    user_time: U64
    start_address: U64
    affinity: U64


class ThreadInfoFlags(enum.IntFlag):
    ERROR_THREAD = 0x1
    WRITING_THREAD = 0x2
    EXITED_THREAD = 0x4
    INVALID_INFO = 0x8
    INVALID_CONTEXT = 0x10
    INVALID_TEB = 0x20


# --- CPU contexts -----------------------------------------------------------------

class M128A(Record):
    low: U64
    high: U64


class XmmSaveArea32(Record):
    """XMM_SAVE_AREA32 (512 bytes): the FXSAVE layout, as PTRACE NT_PRFPREG returns it."""
    control_word: U16
    status_word: U16
    tag_word: U8
    reserved1: U8
    error_opcode: U16
    error_offset: U32
    error_selector: U16
    reserved2: U16
    data_offset: U32
    data_selector: U16
    reserved3: U16
    mx_csr: U32
    mx_csr_mask: U32
    float_registers: Annotated[bytes, "128s"]
    xmm_registers: Annotated[bytes, "256s"]
    reserved4: Annotated[bytes, "96s"]


AMD64_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
              "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class Registers(dict[str, int]):
    """Register values by name; ``repr`` shows them in hex, as debuggers do."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{name!r}: 0x{value:x}" for name, value in self.items()) + "}"


class ContextAMD64(Record):
    """CONTEXT for AMD64 (1232 = 0x4d0 bytes)."""
    p1_home: U64
    p2_home: U64
    p3_home: U64
    p4_home: U64
    p5_home: U64
    p6_home: U64
    context_flags: U32
    mx_csr: U32
    seg_cs: U16
    seg_ds: U16
    seg_es: U16
    seg_fs: U16
    seg_gs: U16
    seg_ss: U16
    eflags: U32
    dr0: U64
    dr1: U64
    dr2: U64
    dr3: U64
    dr6: U64
    dr7: U64
    rax: U64
    rcx: U64
    rdx: U64
    rbx: U64
    rsp: U64
    rbp: U64
    rsi: U64
    rdi: U64
    r8: U64
    r9: U64
    r10: U64
    r11: U64
    r12: U64
    r13: U64
    r14: U64
    r15: U64
    rip: U64
    flt_save: XmmSaveArea32
    vector_register: Annotated[bytes, "416s"]
    vector_control: U64
    debug_control: U64
    last_branch_to_rip: U64
    last_branch_from_rip: U64
    last_exception_to_rip: U64
    last_exception_from_rip: U64

    @property
    def pc(self) -> int:
        return self.rip

    @property
    def sp(self) -> int:
        return self.rsp

    def registers(self) -> Registers:
        """General registers by their lowercase names, as debuggers show them."""
        regs = Registers({name: getattr(self, name) for name in AMD64_GPRS})
        regs["rip"] = self.rip
        regs["eflags"] = self.eflags
        for seg in ("cs", "ds", "es", "fs", "gs", "ss"):
            regs[seg] = getattr(self, "seg_" + seg)
        return regs

    def __repr__(self) -> str:  # the general registers in hex, not 1232 bytes of fields
        regs = " ".join(f"{name}=0x{getattr(self, name):x}" for name in ("rip", *AMD64_GPRS))
        return f"<ContextAMD64 {regs} eflags=0x{self.eflags:x}>"


class FloatingSaveArea(Record):
    """FLOATING_SAVE_AREA of the x86 CONTEXT (112 bytes)."""
    control_word: U32
    status_word: U32
    tag_word: U32
    error_offset: U32
    error_selector: U32
    data_offset: U32
    data_selector: U32
    register_area: Annotated[bytes, "80s"]
    cr0_npx_state: U32


class ContextX86(Record):
    """CONTEXT for x86 (716 bytes)."""
    context_flags: U32
    dr0: U32
    dr1: U32
    dr2: U32
    dr3: U32
    dr6: U32
    dr7: U32
    float_save: FloatingSaveArea
    gs: U32
    fs: U32
    es: U32
    ds: U32
    edi: U32
    esi: U32
    ebx: U32
    edx: U32
    ecx: U32
    eax: U32
    ebp: U32
    eip: U32
    cs: U32
    eflags: U32
    esp: U32
    ss: U32
    extended_registers: Annotated[bytes, "512s"]

    @property
    def pc(self) -> int:
        return self.eip

    @property
    def sp(self) -> int:
        return self.esp

    def registers(self) -> Registers:
        return Registers({name: getattr(self, name) for name in _X86_REGISTERS})

    def __repr__(self) -> str:  # the general registers in hex, not 716 bytes of fields
        regs = " ".join(f"{name}=0x{getattr(self, name):x}"
                        for name in ("eip", *_X86_REGISTERS[:8], "eflags"))
        return f"<ContextX86 {regs}>"


_X86_REGISTERS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags",
                  "cs", "ds", "es", "fs", "gs", "ss")


ARM64_GPRS = tuple(f"x{i}" for i in range(31))  # x29 is the frame pointer, x30 the link register


class _ContextARM64Registers:
    """What the two arm64 layouts share: 31 general registers, sp, pc and cpsr by name."""

    iregs: bytes
    sp: int
    pc: int
    cpsr: int

    def x(self, number: int) -> int:
        """General register ``x<number>`` (0..30)."""
        value: int = struct.unpack_from("<Q", self.iregs, number * 8)[0]
        return value

    @property
    def fp(self) -> int:
        return self.x(29)

    @property
    def lr(self) -> int:
        return self.x(30)

    def registers(self) -> dict[str, int]:
        """x0..x30, sp, pc and cpsr, the names minidump-stackwalk and lldb print."""
        regs = dict(zip(ARM64_GPRS, struct.unpack("<31Q", self.iregs)))
        regs["sp"] = self.sp
        regs["pc"] = self.pc
        regs["cpsr"] = self.cpsr
        return regs


class ContextARM64(_ContextARM64Registers, Record):
    """ARM64_NT_CONTEXT (912 = 0x390 bytes): Microsoft's arm64 CONTEXT, which Breakpad's
    MDRawContextARM64 (flag 0x00400000) and Crashpad match byte for byte."""
    context_flags: U32
    cpsr: U32
    iregs: Annotated[bytes, "248s"]  # x0..x30
    sp: U64
    pc: U64
    float_regs: Annotated[bytes, "512s"]  # v0..v31, 16 bytes each
    fpcr: U32
    fpsr: U32
    bcr: Annotated[bytes, "32s"]
    bvr: Annotated[bytes, "64s"]
    wcr: Annotated[bytes, "8s"]
    wvr: Annotated[bytes, "16s"]


class ContextARM64Old(_ContextARM64Registers, Record):
    """Breakpad's first arm64 context, MDRawContextARM64_Old (796 bytes under pack(4);
    flag 0x80000000 in a 64-bit ``context_flags``); processor architecture 0x8003."""
    context_flags: U64
    iregs: Annotated[bytes, "248s"]  # x0..x30
    sp: U64
    pc: U64
    cpsr: U32
    fpsr: U32
    fpcr: U32
    float_regs: Annotated[bytes, "512s"]


ARM_GPRS = ("r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12",
            "sp", "lr", "pc")


class FloatingSaveAreaARM(Record):
    """MDFloatingSaveAreaARM (296 bytes): fpscr, d0..d31 and 8 extra words."""
    fpscr: U64
    regs: Annotated[bytes, "256s"]
    extra: Annotated[bytes, "32s"]


class ContextARM(Record):
    """Breakpad's MDRawContextARM (368 bytes, flag 0x40000000): r0..r15, cpsr, VFP state.
    Not Windows' ARM CONTEXT, which no minidump writer in use emits."""
    context_flags: U32
    iregs: Annotated[bytes, "64s"]  # r0..r15: r13 sp, r14 lr, r15 pc
    cpsr: U32
    float_save: FloatingSaveAreaARM

    def r(self, number: int) -> int:
        """General register ``r<number>`` (0..15)."""
        value: int = struct.unpack_from("<I", self.iregs, number * 4)[0]
        return value

    @property
    def pc(self) -> int:
        return self.r(15)

    @property
    def sp(self) -> int:
        return self.r(13)

    @property
    def lr(self) -> int:
        return self.r(14)

    def registers(self) -> dict[str, int]:
        """r0..r12, sp, lr, pc and cpsr (Breakpad's and rust-minidump's names)."""
        regs = dict(zip(ARM_GPRS, struct.unpack("<16I", self.iregs)))
        regs["cpsr"] = self.cpsr
        return regs


CONTEXT_ARM = 0x40000000
CONTEXT_ARM64 = 0x00400000
CONTEXT_ARM64_OLD = 0x80000000


class ArmCpuInfo(Record):
    """CPU_INFORMATION of an ARM dump (Breakpad's MDARMCpuInfo): MIDR and AT_HWCAP."""
    cpuid: U32
    elf_hwcaps: U32


CONTEXT_AMD64 = 0x00100000
CONTEXT_X86 = 0x00010000
CONTEXT_AMD64_ALL = 0x0010001F
CONTEXT_AMD64_XSTATE = 0x00100040


# --- modules ----------------------------------------------------------------------

class VsFixedFileInfo(Record):
    """VS_FIXEDFILEINFO (52 bytes)."""
    signature: U32
    struc_version: U32
    file_version_hi: U32
    file_version_lo: U32
    product_version_hi: U32
    product_version_lo: U32
    file_flags_mask: U32
    file_flags: U32
    file_os: U32
    file_type: U32
    file_subtype: U32
    file_date_hi: U32
    file_date_lo: U32


VS_FFI_SIGNATURE = 0xFEEF04BD
VS_FFI_STRUCVERSION = 0x00010000


class Module(Record):
    """MINIDUMP_MODULE (108 bytes: no tail padding in the file)."""
    base_of_image: U64
    size_of_image: U32
    checksum: U32
    time_date_stamp: U32
    module_name_rva: U32
    version_info: VsFixedFileInfo
    cv_record: Location
    misc_record: Location
    reserved0: U64
    reserved1: U64


class UnloadedModuleListHeader(Record):
    size_of_header: U32
    size_of_entry: U32
    number_of_entries: U32


class UnloadedModule(Record):
    """MINIDUMP_UNLOADED_MODULE (24 bytes)."""
    base_of_image: U64
    size_of_image: U32
    checksum: U32
    time_date_stamp: U32
    module_name_rva: U32


CV_SIGNATURE_PDB70 = 0x53445352  # b"RSDS"
CV_SIGNATURE_PDB20 = 0x3031424E  # b"NB10"
CV_SIGNATURE_ELF = 0x4270454C  # b"LEpB": Breakpad's ELF build-id record


class CvInfoPdb70Header(Record):
    """CV_INFO_PDB70 without its NUL-terminated UTF-8 pdb file name."""
    cv_signature: U32
    signature: Annotated[bytes, "16s"]  # GUID as stored (data1/2/3 little-endian)
    age: U32


class CvInfoPdb20Header(Record):
    cv_signature: U32
    cv_offset: U32
    signature: U32
    age: U32


# --- exception --------------------------------------------------------------------

EXCEPTION_MAXIMUM_PARAMETERS = 15


class ExceptionRecord(Record):
    """MINIDUMP_EXCEPTION (152 bytes)."""
    exception_code: U32
    exception_flags: U32
    exception_record: U64
    exception_address: U64
    number_parameters: U32
    unused_alignment: U32
    exception_information: Annotated[bytes, "120s"]  # 15 u64 parameters

    def parameters(self) -> tuple[int, ...]:
        n = min(self.number_parameters, EXCEPTION_MAXIMUM_PARAMETERS)
        return struct.unpack_from(f"<{n}Q", self.exception_information)


class ExceptionStream(Record):
    """MINIDUMP_EXCEPTION_STREAM (168 bytes)."""
    thread_id: U32
    alignment: U32
    exception_record: ExceptionRecord
    thread_context: Location


DUMP_REQUESTED = 0xFFFFFFFF  # Breakpad's MD_EXCEPTION_CODE_LIN_DUMP_REQUESTED


# --- system and process info ------------------------------------------------------

class SystemInfo(Record):
    """MINIDUMP_SYSTEM_INFO (56 bytes); ``cpu`` is the 24-byte CPU_INFORMATION union."""
    processor_architecture: U16
    processor_level: U16
    processor_revision: U16
    number_of_processors: U8
    product_type: U8
    major_version: U32
    minor_version: U32
    build_number: U32
    platform_id: U32
    csd_version_rva: U32
    suite_mask: U16
    reserved2: U16
    cpu: Annotated[bytes, "24s"]


class ProcessorArchitecture(enum.IntEnum):
    X86 = 0
    MIPS = 1
    ALPHA = 2
    PPC = 3
    SHX = 4
    ARM = 5
    IA64 = 6
    ALPHA64 = 7
    MSIL = 8
    AMD64 = 9
    X86_WIN64 = 10
    ARM64 = 12
    SPARC = 0x8001
    PPC64 = 0x8002
    ARM64_OLD = 0x8003
    MIPS64 = 0x8004
    UNKNOWN = 0xFFFF


class PlatformId(enum.IntEnum):
    WIN32S = 0
    WIN32_WINDOWS = 1
    WIN32_NT = 2
    WIN32_CE = 3
    UNIX = 0x8000
    MACOS = 0x8101
    IOS = 0x8102
    LINUX = 0x8201
    SOLARIS = 0x8202
    ANDROID = 0x8203
    PS3 = 0x8204
    NACL = 0x8205
    FUCHSIA = 0x8206


class MiscInfo(Record):
    """MINIDUMP_MISC_INFO (24 bytes)."""
    size_of_info: U32
    flags1: U32
    process_id: U32
    process_create_time: U32
    process_user_time: U32
    process_kernel_time: U32


class MiscInfo2(Record):
    """MINIDUMP_MISC_INFO_2 (44 bytes)."""
    size_of_info: U32
    flags1: U32
    process_id: U32
    process_create_time: U32
    process_user_time: U32
    process_kernel_time: U32
    processor_max_mhz: U32
    processor_current_mhz: U32
    processor_mhz_limit: U32
    processor_max_idle_state: U32
    processor_current_idle_state: U32


class MiscInfo3(Record):
    """MINIDUMP_MISC_INFO_3 (232 bytes); ``time_zone`` is a raw TIME_ZONE_INFORMATION."""
    size_of_info: U32
    flags1: U32
    process_id: U32
    process_create_time: U32
    process_user_time: U32
    process_kernel_time: U32
    processor_max_mhz: U32
    processor_current_mhz: U32
    processor_mhz_limit: U32
    processor_max_idle_state: U32
    processor_current_idle_state: U32
    process_integrity_level: U32
    process_execute_flags: U32
    protected_process: U32
    time_zone_id: U32
    time_zone: Annotated[bytes, "172s"]


class MiscInfo4(Record):
    """MINIDUMP_MISC_INFO_4 (832 bytes): adds UTF-16 build strings."""
    size_of_info: U32
    flags1: U32
    process_id: U32
    process_create_time: U32
    process_user_time: U32
    process_kernel_time: U32
    processor_max_mhz: U32
    processor_current_mhz: U32
    processor_mhz_limit: U32
    processor_max_idle_state: U32
    processor_current_idle_state: U32
    process_integrity_level: U32
    process_execute_flags: U32
    protected_process: U32
    time_zone_id: U32
    time_zone: Annotated[bytes, "172s"]
    build_string: Annotated[bytes, "520s"]
    dbg_bld_str: Annotated[bytes, "80s"]


class MiscInfo5(Record):
    """MINIDUMP_MISC_INFO_5 (1364 bytes): adds XSTATE configuration and a process cookie."""
    size_of_info: U32
    flags1: U32
    process_id: U32
    process_create_time: U32
    process_user_time: U32
    process_kernel_time: U32
    processor_max_mhz: U32
    processor_current_mhz: U32
    processor_mhz_limit: U32
    processor_max_idle_state: U32
    processor_current_idle_state: U32
    process_integrity_level: U32
    process_execute_flags: U32
    protected_process: U32
    time_zone_id: U32
    time_zone: Annotated[bytes, "172s"]
    build_string: Annotated[bytes, "520s"]
    dbg_bld_str: Annotated[bytes, "80s"]
    xstate_data: Annotated[bytes, "528s"]
    process_cookie: U32


MISC_INFO_VERSIONS: tuple[type[Record], ...] = (MiscInfo5, MiscInfo4, MiscInfo3, MiscInfo2, MiscInfo)


class MiscInfoFlags(enum.IntFlag):
    PROCESS_ID = 0x1
    PROCESS_TIMES = 0x2
    PROCESSOR_POWER_INFO = 0x4
    PROCESS_INTEGRITY = 0x10
    PROCESS_EXECUTE_FLAGS = 0x20
    TIMEZONE = 0x40
    PROTECTED_PROCESS = 0x80
    BUILDSTRING = 0x100
    PROCESS_COOKIE = 0x200


# --- handles ----------------------------------------------------------------------

class HandleDataHeader(Record):
    """MINIDUMP_HANDLE_DATA_STREAM (16 bytes)."""
    size_of_header: U32
    size_of_descriptor: U32
    number_of_descriptors: U32
    reserved: U32


class HandleDescriptor(Record):
    """MINIDUMP_HANDLE_DESCRIPTOR (32 bytes)."""
    handle: U64
    type_name_rva: U32
    object_name_rva: U32
    attributes: U32
    granted_access: U32
    handle_count: U32
    pointer_count: U32


class HandleDescriptor2(Record):
    """MINIDUMP_HANDLE_DESCRIPTOR_2 (40 bytes)."""
    handle: U64
    type_name_rva: U32
    object_name_rva: U32
    attributes: U32
    granted_access: U32
    handle_count: U32
    pointer_count: U32
    object_info_rva: U32
    reserved0: U32


# --- Breakpad Linux DSO debug (Breakpad's naturally aligned 40/24-byte layout) ------

class Debug64(Record):
    """MDRawDebug64 as Breakpad's C compiler lays it out (40 bytes); ``_DYNAMIC`` follows."""
    version: U32
    map: U32
    dso_count: U32
    padding: U32
    brk: U64
    ldbase: U64
    dynamic: U64


class LinkMap64(Record):
    """MDRawLinkMap64 (24 bytes, padded after ``name``)."""
    addr: U64
    name: U32
    padding: U32
    ld: U64


class Debug32(Record):
    """MDRawDebug32 (24 bytes), the 32-bit form of :class:`Debug64`."""
    version: U32
    map: U32
    dso_count: U32
    brk: U32
    ldbase: U32
    dynamic: U32


class LinkMap32(Record):
    """MDRawLinkMap32 (12 bytes)."""
    addr: U32
    name: U32
    ld: U32


# --- Crashpad ---------------------------------------------------------------------

class CrashpadInfoHeader(Record):
    """MinidumpCrashpadInfo's fixed part (version 1)."""
    version: U32
    report_id: Annotated[bytes, "16s"]
    client_id: Annotated[bytes, "16s"]
    simple_annotations: Location
    module_list: Location


class StringDictionaryEntry(Record):
    """MinidumpSimpleStringDictionaryEntry: RVAs of two MinidumpUTF8Strings (u32 length,
    UTF-8 bytes, NUL); a u32 count precedes the entries."""
    key: U32
    value: U32


class ModuleCrashpadInfoLink(Record):
    """MinidumpModuleCrashpadInfoLink: which ModuleList entry, and where its info is."""
    minidump_module_list_index: U32
    location: Location


class ModuleCrashpadInfo(Record):
    """MinidumpModuleCrashpadInfo (version 1)."""
    version: U32
    list_annotations: Location  # MinidumpRVAList of MinidumpUTF8Strings
    simple_annotations: Location  # a string dictionary
    annotation_objects: Location  # MinidumpAnnotationList


class AnnotationEntry(Record):
    """MinidumpAnnotation: a name (MinidumpUTF8String) and a typed value
    (MinidumpByteArray: u32 length, bytes)."""
    name: U32
    type: U16
    reserved: U16
    value: U32


ANNOTATION_STRING = 1  # crashpad::Annotation::Type::kString
ANNOTATION_USER_DEFINED = 0x8000  # kUserDefinedStart and above


# --- Breakpad ---------------------------------------------------------------------

class BreakpadInfo(Record):
    """MDRawBreakpadInfo (12 bytes): which thread wrote the dump and which asked for it."""
    validity: U32
    dump_thread_id: U32
    requesting_thread_id: U32


BREAKPAD_INFO_VALID_DUMP_THREAD_ID = 0x1
BREAKPAD_INFO_VALID_REQUESTING_THREAD_ID = 0x2


# --- minidumpkit's own stream -----------------------------------------------------

class MinidumpkitInfo(Record):
    """Payload of StreamType.MinidumpkitInfoStream: how this dump was taken.

    ``capture`` is one of the CAPTURE_* values; ``pause_ns`` the time the target was
    held stopped; the rest of the stream is a UTF-8 JSON object with details.
    """
    size_of_header: U32
    capture: U32
    dump_type: U64
    pause_ns: U64


class ThreadStateListHeader(Record):
    """Header of StreamType.MinidumpkitThreadStateStream (docs/threads.md); the entries
    (``number_of_entries`` of ``size_of_entry`` bytes) follow at ``size_of_header``."""
    size_of_header: U32
    size_of_entry: U32
    number_of_entries: U32
    reserved: U32


class ThreadState(Record):
    """One thread's scheduler state and system call (120 bytes).

    ``state`` is the /proc/PID/task/TID/stat state letter (ASCII code; 0 = not sampled)
    and ``wchan`` the kernel function it sleeps in (NUL-padded ASCII), both read
    ``sample_age_ns`` before the thread was stopped (once stopped every thread reads
    ``t`` / ``ptrace_stop``). ``orig_rax`` is the register ptrace returns (the system
    call number while in a call, all ones outside one); ``syscall`` the call the thread
    is blocked in, with ``restart_syscall`` mapped back to the interrupted call (valid
    with BLOCKED and not SYSCALL_UNKNOWN). The argument registers are in the thread's
    CONTEXT. ``robust_list_head``/``_len``: what get_robust_list(2) returned.
    """
    thread_id: U32
    flags: U32
    state: U32
    reserved: U32
    sample_age_ns: U64
    orig_rax: U64
    syscall: U64
    robust_list_head: U64
    robust_list_len: U64
    wchan: Annotated[bytes, "64s"]


class ThreadStateFlags(enum.IntFlag):
    """ThreadState.flags."""
    SAMPLED = 0x1  # state, wchan and sample_age_ns were read before the stop
    IN_SYSCALL = 0x2  # orig_rax holds a system call number
    BLOCKED = 0x4  # rax held -ERESTART*: stopped while blocked in that call
    RESTARTED = 0x8  # orig_rax is restart_syscall; ``syscall`` comes from the call site
    SYSCALL_UNKNOWN = 0x10  # restarted, and the call site loads no constant number
    ROBUST_LIST = 0x20  # robust_list_head/_len are valid
    # rax held -EINTR: the stop broke off this call (epoll_wait, select and others that
    # are never restarted return EINTR when the thread resumes; signal(7)); set with
    # BLOCKED only when the thread was sampled asleep just before the stop
    INTERRUPTED = 0x40
class MinidumpkitPython(Record):
    """Head of StreamType.MinidumpkitPythonStream: the CPython runtime the writer's
    Python-aware capture walked while the target was held, and the memory it added.

    ``format_version`` is PYTHON_STREAM_VERSION (a reader skips ``size_of_header`` bytes,
    so later versions may grow the head); ``walk_status`` is one of PYTHON_WALK_*;
    addresses are 0 when unknown. The rest of the stream is a UTF-8 JSON object:
    ``version`` ("3.12.1"), ``layout``, ``model`` ("lp64"), ``module`` (path),
    ``status`` ("complete" or "partial walk: why" or "no Python runtime found: why"),
    ``found_by``, ``threads``, ``frames``, ``time_limit_ns``.
    """
    size_of_header: U32
    format_version: U32
    version_hex: U32  # PY_VERSION_HEX
    walk_status: U32
    runtime_address: U64  # &_PyRuntime
    code_type_address: U64  # &PyCode_Type
    module_base: U64  # the module holding _PyRuntime
    range_count: U32  # memory ranges the capture added (merged)
    reserved: U32
    range_bytes: U64
    walk_ns: U64  # how long the walk held the target


PYTHON_STREAM_VERSION = 1
PYTHON_WALK_COMPLETE = 0
PYTHON_WALK_PARTIAL = 1
PYTHON_WALK_NOT_FOUND = 2


class MinidumpkitMemory(Record):
    """Head of StreamType.MinidumpkitMemoryStream: process memory a writer added as a user
    stream rather than to the MemoryList. The Windows writer puts its Python capture
    there: dbghelp writes the MemoryList itself and adds memory only through its Memory
    callback, which Wine's dbghelp never sends.

    ``range_count`` MemoryDescriptor64-like (start u64, size u64) pairs follow the head
    (``size_of_header`` bytes), then the bytes of every range in that order, from
    ``data_offset`` (counted from the stream's start). Readers that do not know the
    stream ignore it; minidumpkit's reader serves reads from it as from the MemoryList.
    """
    size_of_header: U32
    format_version: U32
    range_count: U64
    data_offset: U64


MEMORY_STREAM_VERSION = 1


def pack_memory_stream(ranges: Iterable[tuple[int, bytes]]) -> bytes:
    """A MinidumpkitMemoryStream holding ``ranges``: (start address, the bytes there)."""
    ranges = list(ranges)
    data_offset = MinidumpkitMemory.SIZE + 16 * len(ranges)
    head = MinidumpkitMemory(size_of_header=MinidumpkitMemory.SIZE,
                             format_version=MEMORY_STREAM_VERSION, range_count=len(ranges),
                             data_offset=data_offset)
    table = b"".join(struct.pack("<QQ", start, len(data)) for start, data in ranges)
    return head.pack() + table + b"".join(data for _, data in ranges)


CAPTURE_STOP = 1  # stop every thread, read, detach
CAPTURE_VA_CLONE = 2  # copy-on-write clone snapshot
CAPTURE_SNAPSHOT_LIVE = 3  # snapshot of threads/handles; memory read from the live process


def string_size(text: str) -> int:
    """Bytes a MINIDUMP_STRING of ``text`` occupies (length, UTF-16LE units, NUL)."""
    return 4 + len(text.encode("utf-16-le")) + 2


def pack_string(text: str) -> bytes:
    """MINIDUMP_STRING: u32 byte length (without the NUL), UTF-16LE, then a UTF-16 NUL."""
    data = text.encode("utf-16-le", "surrogatepass")
    return struct.pack("<I", len(data)) + data + b"\0\0"


def build_id_to_debug_id(build_id: bytes) -> str:
    """Breakpad's debug identifier for an ELF build id: a GUID of its first 16 bytes + age 0."""
    b = (build_id + bytes(16))[:16]
    swapped = b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]
    return swapped.hex().upper() + "0"


# minidumpkit's snapshot stream (a raw user stream): UTF-8 JSON saying how a snapshot
# dump's memory was frozen, which mappings were copied while the target was stopped
# and which were read live (not point-in-time). See docs/snapshots.md.
MINIDUMPKIT_SNAPSHOT_STREAM = 0x4D4B0002
