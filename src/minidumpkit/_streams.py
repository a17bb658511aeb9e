"""Typed, read-only views of minidump streams, as :mod:`minidumpkit.reader` returns them.

Everything here is plain data plus pure functions (crash-reason names, identifier
formatting, Linux text-stream parsing). Nothing here touches the file: the reader
bounds-checks every byte before it builds one of these objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import format as md
from ._lazydataclass import lazy_dataclass
from .errors import MinidumpFormatError
from .flags import StreamType

if TYPE_CHECKING:  # uuid imports platform: both are read-time needs, not import-time
    import datetime
    import os
    import uuid
    from collections.abc import Iterable

    from .analysis import CallStack
    from .reader import Minidump

__all__ = [
    "BreakpadInfo",
    "CodeView",
    "CodeViewElf",
    "CodeViewPdb20",
    "CodeViewPdb70",
    "CodeViewUnknown",
    "Context",
    "CrashpadAnnotation",
    "CrashpadInfo",
    "DsoDebug",
    "ExceptionInfo",
    "Handle",
    "LinkMap",
    "LinuxMapping",
    "MemoryRange",
    "MemoryRegionInfo",
    "MinidumpkitInfo",
    "MinidumpkitPython",
    "MiscInfo",
    "Module",
    "ModuleCrashpadInfo",
    "StreamInfo",
    "SystemInfo",
    "Thread",
    "ThreadInfo",
    "ThreadState",
    "UnloadedModule",
    "crash_address",
    "crash_reason",
    "stream_type",
]

Context = md.ContextAMD64 | md.ContextX86 | md.ContextARM64 | md.ContextARM64Old | md.ContextARM


def stream_type(value: int) -> StreamType | int:
    """``value`` as a StreamType member when it names one, else the plain int (never lost)."""
    member = StreamType._value2member_map_.get(value)
    return member if isinstance(member, StreamType) else value


def architecture(value: int) -> md.ProcessorArchitecture | int:
    member = md.ProcessorArchitecture._value2member_map_.get(value)
    return member if isinstance(member, md.ProcessorArchitecture) else value


def platform(value: int) -> md.PlatformId | int:
    member = md.PlatformId._value2member_map_.get(value)
    return member if isinstance(member, md.PlatformId) else value


def _hex(value: int | None) -> str:
    return "?" if value is None else f"0x{value:x}"


def _size(n: int) -> str:
    """``n`` bytes as people read them: "512 B", "12.0 KiB", "3.4 MiB"."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:.1f} {unit}"


def _quoted(text: str | None, limit: int = 60) -> str:
    """``text`` for a repr: quoted, cut at ``limit`` characters (names come from the dump
    and may be anything)."""
    if text is None:
        return "(no name)"
    return repr(text if len(text) <= limit else text[:limit - 1] + "\u2026")


def _flag_name(value: object) -> str:
    """An IntFlag/IntEnum member by its name(s), a plain int in hex."""
    name = getattr(value, "name", None)
    return name if name else f"0x{int(value):x}"  # type: ignore[call-overload]


def _html_of(obj: object) -> str | None:
    from . import _display  # the HTML renderer loads only when a notebook asks

    return _display.html_of(obj)


# --- directory ------------------------------------------------------------------------

@lazy_dataclass
class StreamInfo:
    """One stream directory entry. ``type`` is a StreamType when known, else an int."""

    index: int
    type: StreamType | int
    data_size: int
    rva: int

    @property
    def name(self) -> str:
        return self.type.name if isinstance(self.type, StreamType) else f"0x{self.type:x}"

    def __repr__(self) -> str:
        return f"<StreamInfo #{self.index} {self.name} {self.data_size} bytes at 0x{self.rva:x}>"


# --- system info ----------------------------------------------------------------------

_OS_NAMES: dict[int, str] = {
    md.PlatformId.WIN32S: "Windows",
    md.PlatformId.WIN32_WINDOWS: "Windows",
    md.PlatformId.WIN32_NT: "Windows NT",
    md.PlatformId.WIN32_CE: "Windows CE",
    md.PlatformId.UNIX: "Unix",
    md.PlatformId.MACOS: "Mac OS X",
    md.PlatformId.IOS: "iOS",
    md.PlatformId.LINUX: "Linux",
    md.PlatformId.SOLARIS: "Solaris",
    md.PlatformId.ANDROID: "Android",
    md.PlatformId.PS3: "PS3",
    md.PlatformId.NACL: "NaCl",
    md.PlatformId.FUCHSIA: "Fuchsia",
}

# The spellings Breakpad and rust-minidump print, so output lines up with theirs.
_CPU_NAMES: dict[int, str] = {
    md.ProcessorArchitecture.X86: "x86",
    md.ProcessorArchitecture.X86_WIN64: "x86",
    md.ProcessorArchitecture.AMD64: "amd64",
    md.ProcessorArchitecture.ARM: "arm",
    md.ProcessorArchitecture.ARM64: "arm64",
    md.ProcessorArchitecture.ARM64_OLD: "arm64",
    md.ProcessorArchitecture.PPC: "ppc",
    md.ProcessorArchitecture.PPC64: "ppc64",
    md.ProcessorArchitecture.SPARC: "sparc",
    md.ProcessorArchitecture.MIPS: "mips",
    md.ProcessorArchitecture.MIPS64: "mips64",
}

# MIDR implementer codes and (implementer, part) masks of well-known cores, from the
# Arm and Qualcomm technical reference manuals.
_ARM_VENDORS = {0x41: "ARM", 0x51: "Qualcomm", 0x56: "Marvell", 0x69: "Intel"}
_ARM_PARTS = {
    0x4100C050: "Cortex-A5", 0x4100C080: "Cortex-A8", 0x4100C090: "Cortex-A9",
    0x4100C0F0: "Cortex-A15", 0x4100C140: "Cortex-R4", 0x4100C150: "Cortex-R5",
    0x4100B360: "ARM1136", 0x4100B560: "ARM1156", 0x4100B760: "ARM1176",
    0x4100B020: "ARM11-MPCore", 0x41009260: "ARM926", 0x41009460: "ARM946",
    0x41009660: "ARM966", 0x510006F0: "Krait", 0x510000F0: "Scorpion",
}
# Linux's 32-bit ARM AT_HWCAP bits (arch/arm/include/uapi/asm/hwcap.h), in bit order
_ARM_HWCAPS = ("swp", "half", "thumb", "26bit", "fastmult", "fpa", "vfpv2", "edsp", "java",
               "iwmmxt", "crunch", "thumbee", "neon", "vfpv3", "vfpv3d16", "tls", "vfpv4",
               "idiva", "idivt")


def _arm_cpu_info(level: int, info: md.ArmCpuInfo) -> str:
    text = f"ARMv{level}"
    if info.cpuid:
        vendor = (info.cpuid >> 24) & 0xFF
        part = info.cpuid & 0xFF00FFF0
        text += " " + _ARM_VENDORS.get(vendor, f"vendor(0x{vendor:x})")
        text += " " + _ARM_PARTS.get(part, f"part(0x{part:x})")
    features = [name for bit, name in enumerate(_ARM_HWCAPS) if info.elf_hwcaps >> bit & 1]
    if features:
        text += " features: " + ",".join(features)
    return text


_WINDOWS_PLATFORMS = (md.PlatformId.WIN32_NT, md.PlatformId.WIN32_WINDOWS)
_LINUX_PLATFORMS = (md.PlatformId.LINUX, md.PlatformId.ANDROID)


@lazy_dataclass(hidden=("raw",))
class SystemInfo:
    """SystemInfoStream: operating system and CPU of the machine that was dumped."""

    architecture: md.ProcessorArchitecture | int
    platform: md.PlatformId | int
    processor_level: int
    processor_revision: int
    number_of_processors: int
    product_type: int
    major_version: int
    minor_version: int
    build_number: int
    csd_version: str | None
    suite_mask: int
    cpu_vendor: str | None
    raw: md.SystemInfo

    @property
    def os(self) -> str:
        """"Windows NT", "Linux", ... (the names Breakpad and rust-minidump print)."""
        name = _OS_NAMES.get(self.platform)
        return name if name is not None else f"unknown 0x{self.platform:x}"

    @property
    def cpu(self) -> str:
        """"amd64", "x86", "arm64", ..."""
        name = _CPU_NAMES.get(self.architecture)
        return name if name is not None else f"unknown 0x{self.architecture:x}"

    @property
    def os_version(self) -> str:
        return f"{self.major_version}.{self.minor_version}.{self.build_number}"

    @property
    def version_string(self) -> str:
        """``major.minor.build`` followed by the CSD version, as Breakpad prints it."""
        return f"{self.os_version} {self.csd_version}" if self.csd_version else self.os_version

    @property
    def is_windows(self) -> bool:
        return self.platform in _WINDOWS_PLATFORMS

    @property
    def is_linux(self) -> bool:
        return self.platform in _LINUX_PLATFORMS

    @property
    def is_apple(self) -> bool:
        """macOS or iOS."""
        return self.platform in (md.PlatformId.MACOS, md.PlatformId.IOS)

    @property
    def cpu_family(self) -> int:
        return self.processor_level

    @property
    def cpu_model(self) -> int:
        return (self.processor_revision >> 8) & 0xFF

    @property
    def cpu_stepping(self) -> int:
        return self.processor_revision & 0xFF

    @property
    def cpu_info(self) -> str | None:
        """"GenuineIntel family 6 model 13 stepping 8" on x86 (the vendor is only recorded
        there), "family 6 model 85 stepping 4" on amd64; on 32-bit ARM the architecture
        level, the CPU's implementer and part from its MIDR and the AT_HWCAP features
        ("ARMv7 ARM Cortex-A9 features: swp,half,thumb"), as rust-minidump prints them;
        None elsewhere (arm64 writers record no CPU information)."""
        if self.architecture == md.ProcessorArchitecture.ARM:
            return _arm_cpu_info(self.processor_level,
                                 md.ArmCpuInfo.unpack_from(self.raw.cpu))
        if self.architecture not in (md.ProcessorArchitecture.X86, md.ProcessorArchitecture.AMD64):
            return None
        text = f"family {self.cpu_family} model {self.cpu_model} stepping {self.cpu_stepping}"
        return f"{self.cpu_vendor} {text}" if self.cpu_vendor else text

    @property
    def pointer_size(self) -> int:
        return 4 if self.architecture in (md.ProcessorArchitecture.X86, md.ProcessorArchitecture.ARM,
                                          md.ProcessorArchitecture.PPC, md.ProcessorArchitecture.MIPS,
                                          md.ProcessorArchitecture.SPARC) else 8

    def __repr__(self) -> str:
        cpus = f", {self.number_of_processors} CPUs" if self.number_of_processors else ""
        # Linux writers leave the numbers 0 and put uname in the CSD string
        version = (self.version_string if self.os_version != "0.0.0"
                   else self.csd_version or "")
        return f"<SystemInfo {self.os} {self.cpu}{cpus} {_quoted(version, 60)}>"


# --- misc info ------------------------------------------------------------------------

@lazy_dataclass(hidden=("raw",))
class MiscInfo:
    """MiscInfoStream, versions 1 to 5 (picked by the stream's size).

    Fields whose ``flags1`` bit is clear, or that the version lacks, are None.
    Times are seconds (creation: a UTC datetime).
    """

    version: int
    flags1: md.MiscInfoFlags
    process_id: int | None
    process_create_time: datetime.datetime | None
    process_user_time: int | None
    process_kernel_time: int | None
    processor_max_mhz: int | None
    processor_current_mhz: int | None
    processor_mhz_limit: int | None
    process_integrity_level: int | None
    process_execute_flags: int | None
    protected_process: int | None
    time_zone_id: int | None
    build_string: str | None
    dbg_bld_str: str | None
    process_cookie: int | None
    raw: md.Record

    def __repr__(self) -> str:
        parts = [f"v{self.version}"]
        if self.process_id is not None:
            parts.append(f"pid {self.process_id}")
        if self.process_create_time is not None:
            parts.append(f"started {self.process_create_time:%Y-%m-%d %H:%M:%S} UTC")
        if self.processor_max_mhz:
            parts.append(f"{self.processor_max_mhz} MHz")
        if self.build_string:
            parts.append(_quoted(self.build_string, 40))
        return f"<MiscInfo {' '.join(parts)}>"


# --- threads --------------------------------------------------------------------------

@lazy_dataclass(eq=False, hidden=("_stack_rva", "_dump"))
class Thread:
    """One entry of ThreadList (or ThreadExList).

    ``context`` is the CPU state the thread list records (for the crashing thread of a
    crash dump the fault-time state is in :attr:`ExceptionInfo.context`). ``stack`` is
    read from the file on each access.
    """

    thread_id: int
    suspend_count: int
    priority_class: int
    priority: int
    teb: int
    stack_start: int
    stack_size: int
    name: str | None
    context: Context | None
    context_size: int
    _stack_rva: int
    _dump: Minidump

    @property
    def stack(self) -> bytes:
        """The stack bytes the thread list points at (empty when none were captured)."""
        return self._dump._bytes(self._stack_rva, self.stack_size,
                                 stream_type=StreamType.ThreadListStream, what="thread stack")

    @property
    def stack_end(self) -> int:
        return self.stack_start + self.stack_size

    def frames(self, symbol_paths: Iterable[str | os.PathLike[str]] = ()) -> CallStack:
        """This thread's call stack: :func:`minidumpkit.analysis.walk_stack` (imported on
        call; the reader itself never loads the analysis layer)."""
        from .analysis import walk_stack

        return walk_stack(self._dump, self, symbol_paths=symbol_paths)

    @property
    def registers(self) -> dict[str, int]:
        return self.context.registers() if self.context is not None else {}

    @property
    def pc(self) -> int | None:
        return self.context.pc if self.context is not None else None

    @property
    def sp(self) -> int | None:
        return self.context.sp if self.context is not None else None

    @property
    def fp(self) -> int | None:
        """The frame pointer: rbp, ebp, x29 on arm64; r11 on ARM (r7 in Apple's
        Thumb code, which :attr:`registers` has as ``r7``)."""
        ctx = self.context
        if isinstance(ctx, md.ContextAMD64):
            return ctx.rbp
        if isinstance(ctx, md.ContextX86):
            return ctx.ebp
        if isinstance(ctx, (md.ContextARM64, md.ContextARM64Old)):
            return ctx.fp
        if isinstance(ctx, md.ContextARM):
            return ctx.r(11)
        return None

    def pc_location(self) -> str | None:
        """Where the pc is: ``"libc.so.6+0x8612b"`` (module basename + offset), the bare
        address when no module holds it, None without a context."""
        pc = self.pc
        if pc is None:
            return None
        try:
            module = self._dump.module_at(pc)
        except (MinidumpFormatError, ValueError):  # a damaged module list, a closed dump
            module = None
        return f"0x{pc:x}" if module is None else f"{module.basename}+0x{pc - module.base:x}"

    def __repr__(self) -> str:
        where = self.pc_location()
        state = "no context" if where is None else f"pc={_hex(self.pc)} ({where}) sp={_hex(self.sp)}"
        return f"<Thread {self.thread_id} {_quoted(self.name)} {state}>"

    def _repr_html_(self) -> str | None:
        return _html_of(self)


@lazy_dataclass
class ThreadInfo:
    """ThreadInfoListStream entry (MINIDUMP_THREAD_INFO). Times are 100 ns units."""

    thread_id: int
    dump_flags: md.ThreadInfoFlags
    dump_error: int
    exit_status: int
    create_time: int
    exit_time: int
    kernel_time: int
    user_time: int
    start_address: int
    affinity: int

    def __repr__(self) -> str:
        exited = f" exit {self.exit_status}" if self.exit_time else ""
        return (f"<ThreadInfo {self.thread_id} start=0x{self.start_address:x} "
                f"flags={self.dump_flags.value:#x}{exited}>")


@lazy_dataclass
class ThreadState:
    """MinidumpkitThreadStateStream entry: a thread's scheduler state and system call.

    ``state`` is the /proc state letter ("S", "R", "D", ...) and ``wchan`` the kernel
    function it slept in, read ``sample_age_ns`` before the thread was stopped (None,
    None, None when not sampled). ``orig_rax`` is the raw register (-1: not in a system
    call). ``syscall`` is the call the thread is blocked in (``blocked``), with a
    ``restart_syscall`` mapped back to the call it restarts (``restarted``; None when
    the call site did not tell). ``interrupted``: the stop broke the call off (it
    returns EINTR when the thread resumes). ``robust_list``: (head, len) of its robust mutex list.
    """

    thread_id: int
    flags: md.ThreadStateFlags
    state: str | None
    wchan: str | None
    sample_age_ns: int | None
    orig_rax: int
    blocked: bool
    syscall: int | None
    restarted: bool
    robust_list: tuple[int, int] | None
    interrupted: bool = False

    @property
    def syscall_name(self) -> str | None:
        from ._syscalls import syscall_name

        return None if self.syscall is None else syscall_name(self.syscall)


# --- modules --------------------------------------------------------------------------

@lazy_dataclass
class CodeViewPdb70:
    """'RSDS' record: a PDB 7.0 GUID, age and PDB file name."""

    guid: uuid.UUID
    age: int
    pdb_file: str

    def __repr__(self) -> str:
        return f"<CodeViewPdb70 {_guid_hex(self.guid)} age {self.age} {_quoted(self.pdb_file)}>"


@lazy_dataclass
class CodeViewPdb20:
    """'NB10' record: a PDB 2.0 timestamp signature, age and PDB file name."""

    signature: int
    age: int
    pdb_file: str

    def __repr__(self) -> str:
        return f"<CodeViewPdb20 {self.signature:08X} age {self.age} {_quoted(self.pdb_file)}>"


@lazy_dataclass
class CodeViewElf:
    """Breakpad's 'BpEL' record: the ELF build id (any length)."""

    build_id: bytes

    def __repr__(self) -> str:
        return f"<CodeViewElf build id {self.build_id.hex()[:80]}>"


@lazy_dataclass
class CodeViewUnknown:
    """A CodeView record in a format this reader does not decode."""

    data: bytes

    def __repr__(self) -> str:
        return f"<CodeViewUnknown {len(self.data)} bytes: {self.data[:16].hex()}>"


CodeView = CodeViewPdb70 | CodeViewPdb20 | CodeViewElf | CodeViewUnknown


def _guid_hex(guid: uuid.UUID) -> str:
    return guid.hex.upper()


def debug_id_of(cv: CodeView | None) -> str | None:
    """Breakpad's debug identifier, as rust-minidump derives it: the GUID in upper-case
    hex, then the age in lower-case hex (both print the age with ``%x``/``{:x}``: a
    PDB of age 0x1c gives ``...1c``, never ``...1C``).

    None when there is no usable record: no CodeView, a nil PDB GUID, an all-zero build id.
    """
    if isinstance(cv, CodeViewPdb70):
        return None if cv.guid.int == 0 else f"{_guid_hex(cv.guid)}{cv.age:x}"
    if isinstance(cv, CodeViewPdb20):
        return f"{cv.signature:08X}{cv.age:x}"
    if isinstance(cv, CodeViewElf):
        return None if not any(cv.build_id) else md.build_id_to_debug_id(cv.build_id)
    return None


def code_id_of(cv: CodeView | None, timestamp: int, size: int, windows: bool,
               apple: bool = False) -> str | None:
    """The code identifier rust-minidump reports (lower-case hex).

    Mach-O modules (macOS and iOS dumps, where Breakpad and Crashpad put the image's
    LC_UUID in a PDB70 record with age 0): that UUID, 32 hex digits. PE modules (a
    PDB record, or no record in a Windows dump): ``TimeDateStamp`` as 8 hex digits
    followed by ``SizeOfImage`` (what symbol servers index by). ELF modules: the build
    id. Otherwise None.
    """
    if isinstance(cv, CodeViewElf):
        return cv.build_id.hex() if any(cv.build_id) else None
    if apple and isinstance(cv, CodeViewPdb70):
        return cv.guid.hex
    if isinstance(cv, (CodeViewPdb70, CodeViewPdb20)) or (cv is None and windows):
        return f"{timestamp:08x}{size:x}"
    return None


def version_of(vs: md.VsFixedFileInfo, windows_style: bool) -> str | None:
    """File version as rust-minidump prints it; None without a VS_FIXEDFILEINFO signature."""
    if vs.signature != md.VS_FFI_SIGNATURE or vs.struc_version != md.VS_FFI_STRUCVERSION:
        return None
    if windows_style:
        return (f"{vs.file_version_hi >> 16}.{vs.file_version_hi & 0xFFFF}."
                f"{vs.file_version_lo >> 16}.{vs.file_version_lo & 0xFFFF}")
    # Crashpad on Linux stores four 32-bit numbers here instead of four 16-bit ones.
    return (f"{vs.file_version_hi}.{vs.file_version_lo}."
            f"{vs.product_version_hi}.{vs.product_version_lo}")


@lazy_dataclass(hidden=("version_info", "misc_record"))
class Module:
    """One ModuleList entry with its CodeView identity decoded.

    ``name`` is the code file as recorded (a path). ``debug_id``/``code_id`` follow
    rust-minidump (and Breakpad, up to letter case).
    """

    name: str
    base: int
    size: int
    checksum: int
    timestamp: int
    version_info: md.VsFixedFileInfo
    version: str | None
    cv_record: CodeView | None
    misc_record: bytes | None
    debug_id: str | None
    code_id: str | None

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def basename(self) -> str:
        return self.name.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def build_id(self) -> bytes | None:
        return self.cv_record.build_id if isinstance(self.cv_record, CodeViewElf) else None

    @property
    def pdb_guid(self) -> uuid.UUID | None:
        return self.cv_record.guid if isinstance(self.cv_record, CodeViewPdb70) else None

    @property
    def pdb_age(self) -> int | None:
        if isinstance(self.cv_record, (CodeViewPdb70, CodeViewPdb20)):
            return self.cv_record.age
        return None

    @property
    def debug_file(self) -> str | None:
        """The PDB file name, or for ELF modules the code file (Breakpad's convention)."""
        if isinstance(self.cv_record, (CodeViewPdb70, CodeViewPdb20)):
            return self.cv_record.pdb_file
        if isinstance(self.cv_record, CodeViewElf):
            return self.name
        return None

    def __repr__(self) -> str:
        ident = f" id {self.code_id[:40]}" if self.code_id else ""
        # (Crashpad on Linux records 0.0.0.0: no version)
        version = f" v{self.version}" if self.version and self.version != "0.0.0.0" else ""
        return (f"<Module {_quoted(self.basename)} 0x{self.base:x}-0x{self.end:x} "
                f"({_size(self.size)}){version}{ident}>")


@lazy_dataclass
class UnloadedModule:
    """UnloadedModuleList entry."""

    name: str
    base: int
    size: int
    checksum: int
    timestamp: int

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def code_id(self) -> str:
        return f"{self.timestamp:08x}{self.size:x}"

    def __repr__(self) -> str:
        base = self.name.replace("\\", "/").rsplit("/", 1)[-1]
        return f"<UnloadedModule {_quoted(base)} 0x{self.base:x}-0x{self.end:x}>"


# --- memory ---------------------------------------------------------------------------

@lazy_dataclass
class MemoryRange:
    """A captured range: ``size`` bytes of process memory at ``start``, stored at file offset ``rva``."""

    start: int
    size: int
    rva: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def __repr__(self) -> str:
        return f"<MemoryRange 0x{self.start:x}-0x{self.end:x} ({_size(self.size)})>"


@lazy_dataclass
class MemoryRegionInfo:
    """MemoryInfoList entry (VirtualQuery's MEMORY_BASIC_INFORMATION)."""

    base_address: int
    allocation_base: int
    allocation_protect: md.MemProtect
    region_size: int
    state: md.MemState
    protect: md.MemProtect
    type: md.MemType

    @property
    def end(self) -> int:
        return self.base_address + self.region_size

    def __repr__(self) -> str:
        return (f"<MemoryRegionInfo 0x{self.base_address:x}-0x{self.end:x} "
                f"{_flag_name(self.state)} {_flag_name(self.protect)} {_flag_name(self.type)}>")


# --- exception ------------------------------------------------------------------------

@lazy_dataclass
class ExceptionInfo:
    """ExceptionStream: why the dump was written.

    ``address`` is ExceptionAddress as recorded; ``crash_address`` is the address a
    crash reporter shows (the faulting data address for Windows access violations and
    in-page errors, else ``address``), as rust-minidump computes it.
    """

    thread_id: int
    code: int
    flags: int
    record: int
    address: int
    parameters: tuple[int, ...]
    context: Context | None
    context_size: int
    reason: str
    crash_address: int

    @property
    def requested(self) -> bool:
        """True when the dump was taken on request, not at a crash: Breakpad's
        DUMP_REQUESTED convention (code 0xFFFFFFFF in a Linux/Android dump), which
        minidumpkit, Breakpad and Crashpad write for a dump of a running process.
        ``thread_id`` then names the requesting thread (a process dumping itself: the
        thread that called ``dump``; another process: its main thread) and ``context``
        its registers when the dump was taken. Stack walkers still label it
        "crashed" (rust-minidump's minidump-stackwalk, Breakpad's minidump_stackwalk:
        ``Crash reason: DUMP_REQUESTED``)."""
        return self.reason == "DUMP_REQUESTED"

    def __repr__(self) -> str:
        pc = f" pc=0x{self.context.pc:x}" if self.context is not None else ""
        if self.requested:
            return f"<ExceptionInfo DUMP_REQUESTED by thread {self.thread_id}{pc}>"
        return (f"<ExceptionInfo {self.reason} at 0x{self.crash_address:x} "
                f"in thread {self.thread_id}{pc}>")


# --- handles --------------------------------------------------------------------------

@lazy_dataclass
class Handle:
    """HandleData descriptor (MINIDUMP_HANDLE_DESCRIPTOR or _2)."""

    handle: int
    type_name: str | None
    object_name: str | None
    attributes: int
    granted_access: int
    handle_count: int
    pointer_count: int
    object_info_rva: int | None = None

    def __repr__(self) -> str:
        name = f" {_quoted(self.object_name)}" if self.object_name else ""
        return f"<Handle 0x{self.handle:x} {self.type_name or '?'}{name}>"


# --- Linux streams --------------------------------------------------------------------

@lazy_dataclass
class LinuxMapping:
    """One line of /proc/PID/maps (LinuxMaps stream)."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str | None

    @property
    def size(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        path = f" {_quoted(self.path)}" if self.path else ""
        return f"<LinuxMapping 0x{self.start:x}-0x{self.end:x} {self.perms}{path}>"


def parse_maps(text: str) -> list[LinuxMapping]:
    """Parse /proc/PID/maps text; lines that do not parse are skipped (as rust-minidump does)."""
    out: list[LinuxMapping] = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        addr, perms, offset, dev, inode = parts[:5]
        lo, sep, hi = addr.partition("-")
        try:
            start, end = int(lo, 16), int(hi, 16)
            off, ino = int(offset, 16), int(inode)
        except ValueError:
            continue
        if not sep:
            continue
        path = parts[5].strip() if len(parts) == 6 else None
        out.append(LinuxMapping(start, end, perms, off, dev, ino, path or None))
    return out


def parse_key_values(text: str, sep: str) -> dict[str, str]:
    """``KEY<sep>value`` lines (proc status, lsb-release); quotes around values are dropped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        key = key.strip()
        if not found or not key or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.setdefault(key, value)
    return out


@lazy_dataclass
class LinkMap:
    """One ``struct link_map`` entry of the dynamic linker's list (LinuxDsoDebug)."""

    addr: int
    name: str | None
    ld: int

    def __repr__(self) -> str:
        return f"<LinkMap 0x{self.addr:x} {_quoted(self.name)}>"


@lazy_dataclass(hidden=("dynamic_section",))
class DsoDebug:
    """LinuxDsoDebug: the dynamic linker's ``r_debug`` and its link-map list."""

    version: int
    map_rva: int
    dso_count: int
    brk: int
    ldbase: int
    dynamic: int
    link_maps: tuple[LinkMap, ...]
    dynamic_section: bytes

    def __repr__(self) -> str:
        return (f"<DsoDebug r_debug v{self.version}, {self.dso_count} link maps, "
                f"ldbase=0x{self.ldbase:x}>")


# --- minidumpkit's own stream ---------------------------------------------------------

CAPTURE_NAMES = {md.CAPTURE_STOP: "stop", md.CAPTURE_VA_CLONE: "va_clone",
                 md.CAPTURE_SNAPSHOT_LIVE: "snapshot_live"}


@lazy_dataclass
class MinidumpkitInfo:
    """MinidumpkitInfoStream: how a minidumpkit dump was taken.

    ``capture`` is md.CAPTURE_STOP / CAPTURE_VA_CLONE / CAPTURE_SNAPSHOT_LIVE;
    ``pause_ns`` how long the target was held stopped; ``details`` the writer's JSON.
    """

    capture: int
    dump_type: int
    pause_ns: int
    details: dict[str, object]

    @property
    def capture_name(self) -> str:
        return CAPTURE_NAMES.get(self.capture, f"unknown {self.capture}")

    def __repr__(self) -> str:
        return (f"<MinidumpkitInfo capture={self.capture_name} "
                f"pause={self.pause_ns / 1e6:.3f} ms, {len(self.details)} details>")


@lazy_dataclass
class MinidumpkitPython:
    """MinidumpkitPythonStream: the CPython runtime minidumpkit's writer walked.

    ``status`` is "complete", "partial walk: why" or "no Python runtime found: why";
    ``range_count`` / ``range_bytes`` the memory the capture added; ``details`` the
    whole JSON (version, layout, model, module, found_by, threads, frames).
    """

    format_version: int
    version_hex: int
    version: str | None
    status: str
    runtime_address: int
    code_type_address: int
    module_base: int
    module: str | None
    layout: str | None
    range_count: int
    range_bytes: int
    walk_ns: int
    details: dict[str, object]

    @property
    def complete(self) -> bool:
        return self.status == "complete"


# --- Crashpad and Breakpad info -------------------------------------------------------

@lazy_dataclass
class CrashpadAnnotation:
    """One of a module's annotation objects: ``type`` 1 is a string (``text``); types
    from 0x8000 up are user-defined bytes, which readers show as ``<user defined>``."""

    type: int
    value: bytes

    @property
    def text(self) -> str | None:
        if self.type != md.ANNOTATION_STRING:
            return None
        return self.value.decode("utf-8", "replace")


@lazy_dataclass
class ModuleCrashpadInfo:
    """Crashpad's annotations of one module; ``module_index`` indexes ModuleList."""

    module_index: int
    version: int
    list_annotations: list[str]
    simple_annotations: dict[str, str]
    annotation_objects: dict[str, CrashpadAnnotation]


@lazy_dataclass
class CrashpadInfo:
    """CrashpadInfoStream: the report and client ids (UUIDs, as Crashpad prints them),
    the process-wide simple annotations and each annotated module's annotations."""

    version: int
    report_id: uuid.UUID
    client_id: uuid.UUID
    simple_annotations: dict[str, str]
    modules: list[ModuleCrashpadInfo]


@lazy_dataclass
class BreakpadInfo:
    """BreakpadInfoStream: the thread that wrote the dump (Breakpad's handler thread)
    and the thread that asked for it (the crashed one); None where not valid."""

    dump_thread_id: int | None
    requesting_thread_id: int | None


# --- crash reasons --------------------------------------------------------------------
# Names follow rust-minidump's minidump-common errors module (which follows the SDK's
# winnt.h/ntstatus.h and Linux's signum.h/siginfo.h), so the strings compare equal.

_WINDOWS_EXCEPTIONS = {
    0x80000001: "EXCEPTION_GUARD_PAGE",
    0x80000002: "EXCEPTION_DATATYPE_MISALIGNMENT",
    0x80000003: "EXCEPTION_BREAKPOINT",
    0x80000004: "EXCEPTION_SINGLE_STEP",
    0xC0000005: "EXCEPTION_ACCESS_VIOLATION",
    0xC0000006: "EXCEPTION_IN_PAGE_ERROR",
    0xC0000008: "EXCEPTION_INVALID_HANDLE",
    0xC000001D: "EXCEPTION_ILLEGAL_INSTRUCTION",
    0xC0000025: "EXCEPTION_NONCONTINUABLE_EXCEPTION",
    0xC0000026: "EXCEPTION_INVALID_DISPOSITION",
    0xC000008C: "EXCEPTION_BOUNDS_EXCEEDED",
    0xC000008D: "EXCEPTION_FLT_DENORMAL_OPERAND",
    0xC000008E: "EXCEPTION_FLT_DIVIDE_BY_ZERO",
    0xC000008F: "EXCEPTION_FLT_INEXACT_RESULT",
    0xC0000090: "EXCEPTION_FLT_INVALID_OPERATION",
    0xC0000091: "EXCEPTION_FLT_OVERFLOW",
    0xC0000092: "EXCEPTION_FLT_STACK_CHECK",
    0xC0000093: "EXCEPTION_FLT_UNDERFLOW",
    0xC0000094: "EXCEPTION_INT_DIVIDE_BY_ZERO",
    0xC0000095: "EXCEPTION_INT_OVERFLOW",
    0xC0000096: "EXCEPTION_PRIV_INSTRUCTION",
    0xC00000FD: "EXCEPTION_STACK_OVERFLOW",
    0xC0000194: "EXCEPTION_POSSIBLE_DEADLOCK",
    0xE0000008: "Out of Memory",  # Chromium's OOM exception
    0xE06D7363: "Unhandled C++ Exception",  # MSVC's throw
    0xE0434352: "MANAGED_EXCEPTION_CODE_V4",  # the CLR
    0x0517A7ED: "Simulated Exception",  # Crashpad's DumpWithoutCrashing
}

# A selection of ntstatus.h: the codes that end processes in practice.
_NTSTATUS = {
    0x40000015: "STATUS_FATAL_APP_EXIT",
    0x4000001F: "STATUS_WX86_BREAKPOINT",
    0x80000026: "STATUS_LONGJUMP",
    0x80000029: "STATUS_UNWIND_CONSOLIDATE",
    0xC0000001: "STATUS_UNSUCCESSFUL",
    0xC0000002: "STATUS_NOT_IMPLEMENTED",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC0000010: "STATUS_INVALID_DEVICE_REQUEST",
    0xC0000017: "STATUS_NO_MEMORY",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC0000028: "STATUS_BAD_STACK",
    0xC0000029: "STATUS_INVALID_UNWIND_TARGET",
    0xC0000034: "STATUS_OBJECT_NAME_NOT_FOUND",
    0xC000004B: "STATUS_THREAD_IS_TERMINATING",
    0xC000007B: "STATUS_INVALID_IMAGE_FORMAT",
    0xC000009A: "STATUS_INSUFFICIENT_RESOURCES",
    0xC00000AF: "STATUS_ILLEGAL_FUNCTION",
    0xC000012D: "STATUS_COMMITMENT_LIMIT",
    0xC0000135: "STATUS_DLL_NOT_FOUND",
    0xC0000138: "STATUS_ORDINAL_NOT_FOUND",
    0xC0000139: "STATUS_ENTRYPOINT_NOT_FOUND",
    0xC000013A: "STATUS_CONTROL_C_EXIT",
    0xC0000141: "STATUS_INVALID_ADDRESS",
    0xC0000142: "STATUS_DLL_INIT_FAILED",
    0xC0000225: "STATUS_NOT_FOUND",
    0xC0000235: "STATUS_HANDLE_NOT_CLOSABLE",
    0xC000027B: "STATUS_STOWED_EXCEPTION",
    0xC00002B4: "STATUS_FLOAT_MULTIPLE_FAULTS",
    0xC00002B5: "STATUS_FLOAT_MULTIPLE_TRAPS",
    0xC00002C9: "STATUS_REG_NAT_CONSUMPTION",
    0xC0000374: "STATUS_HEAP_CORRUPTION",
    0xC0000409: "STATUS_STACK_BUFFER_OVERRUN",
    0xC0000417: "STATUS_INVALID_CRUNTIME_PARAMETER",
    0xC000041D: "STATUS_FATAL_USER_CALLBACK_EXCEPTION",
    0xC0000420: "STATUS_ASSERTION_FAILURE",
    0xC0000421: "STATUS_VERIFIER_STOP",
    0xC0000423: "STATUS_CALLBACK_POP_STACK",
    0xC00004A2: "STATUS_ENCLAVE_VIOLATION",
    0xC0000602: "STATUS_FAIL_FAST_EXCEPTION",
    0xC000071C: "STATUS_INVALID_THREAD",
    0xC015000F: "STATUS_SXS_EARLY_DEACTIVATION",
    0xC0150010: "STATUS_SXS_INVALID_DEACTIVATION",
}

_FAST_FAIL = dict(enumerate((
    "LEGACY_GS_VIOLATION", "VTGUARD_CHECK_FAILURE", "STACK_COOKIE_CHECK_FAILURE",
    "CORRUPT_LIST_ENTRY", "INCORRECT_STACK", "INVALID_ARG", "GS_COOKIE_INIT", "FATAL_APP_EXIT",
    "RANGE_CHECK_FAILURE", "UNSAFE_REGISTRY_ACCESS", "GUARD_ICALL_CHECK_FAILURE",
    "GUARD_WRITE_CHECK_FAILURE", "INVALID_FIBER_SWITCH", "INVALID_SET_OF_CONTEXT",
    "INVALID_REFERENCE_COUNT", None, None, None, "INVALID_JUMP_BUFFER", "MRDATA_MODIFIED",
    "CERTIFICATION_FAILURE", "INVALID_EXCEPTION_CHAIN", "CRYPTO_LIBRARY",
    "INVALID_CALL_IN_DLL_CALLOUT", "INVALID_IMAGE_BASE", "DLOAD_PROTECTION_FAILURE",
    "UNSAFE_EXTENSION_CALL", "DEPRECATED_SERVICE_INVOKED", "INVALID_BUFFER_ACCESS",
    "INVALID_BALANCED_TREE", "INVALID_NEXT_THREAD", "GUARD_ICALL_CHECK_SUPPRESSED",
    "APCS_DISABLED", "INVALID_IDLE_STATE", "MRDATA_PROTECTION_FAILURE",
    "UNEXPECTED_HEAP_EXCEPTION", "INVALID_LOCK_STATE", "GUARD_JUMPTABLE",
    "INVALID_LONGJUMP_TARGET", "INVALID_DISPATCH_CONTEXT", "INVALID_THREAD",
    "INVALID_SYSCALL_NUMBER", "INVALID_FILE_OPERATION", "LPAC_ACCESS_DENIED",
    "GUARD_SS_FAILURE", "LOADER_CONTINUITY_FAILURE", "GUARD_EXPORT_SUPPRESSION_FAILURE",
    "INVALID_CONTROL_STACK", "SET_CONTEXT_DENIED", "INVALID_IAT", "HEAP_METADATA_CORRUPTION",
    "PAYLOAD_RESTRICTION_VIOLATION", "LOW_LABEL_ACCESS_DENIED", "ENCLAVE_CALL_FAILURE",
    "UNHANDLED_LSS_EXCEPTON", "ADMINLESS_ACCESS_DENIED", "UNEXPECTED_CALL",
    "CONTROL_INVALID_RETURN_ADDRESS", "UNEXPECTED_HOST_BEHAVIOR", "FLAGS_CORRUPTION",
    "VEH_CORRUPTION", "ETW_CORRUPTION", "RIO_ABORT", "INVALID_PFN",
    "GUARD_ICALL_CHECK_FAILURE_XFG", "CAST_GUARD", "HOST_VISIBILITY_CHANGE",
    "KERNEL_CET_SHADOW_STACK_ASSIST", "PATCH_CALLBACK_FAILED", "NTDLL_PATCH_FAILED",
    "INVALID_FLS_DATA", "ASAN_ERROR", "CLR_EXCEPTION_AOT", "POINTER_AUTH_INVALID_RETURN_ADDRESS",
    "INVALID_THREAD_STATE", "CORRUPT_WOW64_STATE", "INVALID_EXTENDED_STATE",
)))

_ACCESS_TYPES = {0: "READ", 1: "WRITE", 8: "EXEC"}

_SIGNALS = dict(enumerate((
    None, "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
    "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
    "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
)))
_SIGNALS[md.DUMP_REQUESTED] = "DUMP_REQUESTED"

# si_code values per signal (asm-generic/siginfo.h), index = si_code
_SI_CODES: dict[str, tuple[str, ...]] = {
    "SIGILL": ("", "ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR", "ILL_ILLTRP", "ILL_PRVOPC",
               "ILL_PRVREG", "ILL_COPROC", "ILL_BADSTK", "ILL_BADIADDR"),
    "SIGTRAP": ("", "TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT", "TRAP_UNK",
                "TRAP_PERF"),
    "SIGFPE": ("", "FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND",
               "FPE_FLTRES", "FPE_FLTINV", "FPE_FLTSUB"),
    "SIGSEGV": ("", "SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR"),
    "SIGBUS": ("", "BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"),
    "SIGSYS": ("", "SYS_SECCOMP", "SYS_USER_DISPATCH"),
}

_GENERIC_SI_CODES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER",
                     -3: "SI_MESGQ", -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL",
                     -7: "SI_DETHREAD", -60: "SI_ASYNCNL"}


def _hex32(value: int) -> str:
    return f"0x{value & 0xFFFFFFFF:08x}"


def _windows_reason(code: int, params: tuple[int, ...]) -> str:
    name = _WINDOWS_EXCEPTIONS.get(code) or _NTSTATUS.get(code)
    if name is None:
        return f"unknown {_hex32(code)}"
    if code == 0xC0000005 and params and params[0] in _ACCESS_TYPES:
        return f"EXCEPTION_ACCESS_VIOLATION_{_ACCESS_TYPES[params[0]]}"
    if code == 0xC0000006 and len(params) >= 3 and params[0] in _ACCESS_TYPES:
        status = params[2] & 0xFFFFFFFF
        return (f"EXCEPTION_IN_PAGE_ERROR_{_ACCESS_TYPES[params[0]]} / "
                f"{_NTSTATUS.get(status) or _hex32(status)}")
    if code == 0xC0000409 and params:
        fast_fail = params[0] & 0xFFFFFFFF
        ff_name = _FAST_FAIL.get(fast_fail)
        return ("EXCEPTION_STACK_BUFFER_OVERRUN / "
                + (f"FAST_FAIL_{ff_name}" if ff_name else _hex32(fast_fail)))
    return name


def _linux_reason(code: int, flags: int) -> str:
    signal = _SIGNALS.get(code)
    if signal is None:
        return f"unknown {_hex32(code)} / {_hex32(flags)}"
    kinds = _SI_CODES.get(signal, ())
    if 0 < flags < len(kinds):
        return f"{signal} / {kinds[flags]}"
    si_code = flags - (1 << 32) if flags & 0x80000000 else flags
    generic = _GENERIC_SI_CODES.get(si_code)
    if generic == "SI_USER":
        return signal
    if generic is not None:
        return f"{signal} / {generic}"
    return f"{signal} / {_hex32(flags)}"


_MAC_EXCEPTIONS = {
    1: "EXC_BAD_ACCESS", 2: "EXC_BAD_INSTRUCTION", 3: "EXC_ARITHMETIC", 4: "EXC_EMULATION",
    5: "EXC_SOFTWARE", 6: "EXC_BREAKPOINT", 7: "EXC_SYSCALL", 8: "EXC_MACH_SYSCALL",
    9: "EXC_RPC_ALERT", 11: "EXC_RESOURCE", 12: "EXC_GUARD",
    0x43507378: "SIMULATED",  # Crashpad's SimulateCrash ('CPsx')
}
# kern_return_t values (mach/kern_return.h) an EXC_BAD_ACCESS carries as its code
_MAC_KERN = {1: "KERN_INVALID_ADDRESS", 2: "KERN_PROTECTION_FAILURE", 5: "KERN_FAILURE",
             8: "KERN_NO_ACCESS", 9: "KERN_MEMORY_FAILURE", 10: "KERN_MEMORY_ERROR",
             50: "KERN_CODESIGN_ERROR"}
# CPU-specific codes (mach/i386/exception.h, mach/arm/exception.h), per exception
_MAC_CODES_X86 = {
    "EXC_BAD_ACCESS": {13: "EXC_I386_GPFLT"},
    "EXC_BAD_INSTRUCTION": {1: "EXC_I386_INVOP", 10: "EXC_I386_INVTSSFLT",
                            11: "EXC_I386_SEGNPFLT", 12: "EXC_I386_STKFLT",
                            13: "EXC_I386_GPFLT", 17: "EXC_I386_ALIGNFLT"},
    "EXC_ARITHMETIC": {1: "EXC_I386_DIV", 2: "EXC_I386_INTO", 3: "EXC_I386_NOEXT",
                       4: "EXC_I386_EXTOVR", 5: "EXC_I386_EXTERR", 6: "EXC_I386_EMERR",
                       7: "EXC_I386_BOUND", 8: "EXC_I386_SSEEXTERR"},
    "EXC_BREAKPOINT": {1: "EXC_I386_SGL", 2: "EXC_I386_BPT"},
}
_MAC_CODES_ARM = {
    "EXC_BAD_ACCESS": {0x101: "EXC_ARM_DA_ALIGN", 0x102: "EXC_ARM_DA_DEBUG"},
    "EXC_BAD_INSTRUCTION": {1: "EXC_ARM_UNDEFINED"},
    "EXC_BREAKPOINT": {1: "EXC_ARM_BREAKPOINT", 0x101: "EXC_ARM_DA_ALIGN",
                       0x102: "EXC_ARM_DA_DEBUG"},
}
_MAC_SOFTWARE = {0x00010002: "SIGABRT", 0xDEADC0DE: "UNCAUGHT_NS_EXCEPTION"}


def _mac_reason(code: int, flags: int, system: SystemInfo) -> str:
    """``EXC_BAD_ACCESS / KERN_INVALID_ADDRESS``: the Mach exception (``code``) and its
    first code (``flags``, as Breakpad and Crashpad record them), in rust-minidump's
    spelling; a code without a name is shown in hex."""
    name = _MAC_EXCEPTIONS.get(code)
    if name is None:
        return f"unknown {_hex32(code)} / {_hex32(flags)}"
    arm = system.architecture in (md.ProcessorArchitecture.ARM, md.ProcessorArchitecture.ARM64,
                                  md.ProcessorArchitecture.ARM64_OLD)
    cpu_codes = (_MAC_CODES_ARM if arm else _MAC_CODES_X86).get(name, {})
    sub = None
    if name == "EXC_BAD_ACCESS":
        sub = _MAC_KERN.get(flags) or cpu_codes.get(flags)
    elif name == "EXC_SOFTWARE":
        sub = _MAC_SOFTWARE.get(flags)
    elif name == "SIMULATED":
        return name
    else:
        sub = cpu_codes.get(flags)
    return f"{name} / {sub or _hex32(flags)}"


def crash_reason(code: int, flags: int, params: tuple[int, ...], system: SystemInfo | None) -> str:
    """A human name for an exception, in rust-minidump's spelling.

    Windows: the exception / NTSTATUS name, refined for access violations (READ/WRITE/
    EXEC), in-page errors and fast-fail codes. Linux/Android: the signal and its
    ``si_code`` name (``SIGSEGV / SEGV_MAPERR``), ``DUMP_REQUESTED`` for 0xFFFFFFFF.
    macOS/iOS: the Mach exception and its code (``EXC_BAD_ACCESS / KERN_INVALID_ADDRESS``).
    Unknown codes give ``unknown 0x...``.
    """
    if system is not None and system.is_windows:
        return _windows_reason(code, params)
    if system is not None and system.is_apple:
        return _mac_reason(code, flags, system)
    if system is not None and system.is_linux:
        return _linux_reason(code, flags)
    return f"unknown {_hex32(code)} / {_hex32(flags)}"


def crash_address(code: int, address: int, params: tuple[int, ...],
                  system: SystemInfo | None) -> int:
    """The address a crash report shows (see :class:`ExceptionInfo`)."""
    addr = address
    if (system is not None and system.is_windows and code in (0xC0000005, 0xC0000006)
            and len(params) >= 2):
        addr = params[1]
    if system is not None and system.pointer_size == 4:
        addr &= 0xFFFFFFFF  # 32-bit writers sometimes sign-extend
    return addr


def unix_time(value: int) -> datetime.datetime | None:
    """A time_t as a UTC datetime, None for 0 or out of range."""
    if not value:
        return None
    import datetime

    try:
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None



# --- lists ----------------------------------------------------------------------------

__all__ += ["ModuleList", "ThreadList"]

_REPR_ITEMS = 8  # a list's repr shows this many entries, then how many more


class _ShortList(list):  # type: ignore[type-arg]
    """A list whose repr stays short however long it is (a dump can hold thousands of
    threads or modules): the first entries, then a count of the rest."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(repr(item) for item in self[:_REPR_ITEMS])
        more = f", ... {len(self) - _REPR_ITEMS} more" if len(self) > _REPR_ITEMS else ""
        return f"[{shown}{more}]"

    def _repr_html_(self) -> str | None:
        return _html_of(self)


class ThreadList(_ShortList):
    """:attr:`Minidump.threads <minidumpkit.Minidump.threads>`: a list of
    :class:`Thread`, shown briefly by ``repr`` and as a table in a notebook."""

    __slots__ = ()


class ModuleList(_ShortList):
    """:attr:`Minidump.modules <minidumpkit.Minidump.modules>`: a list of
    :class:`Module`, shown briefly by ``repr`` and as a table in a notebook."""

    __slots__ = ()
