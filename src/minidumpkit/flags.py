"""Typed enums for every flag set of the minidump and process-snapshot APIs.

Members carry the Windows SDK names without their prefix, so
``MiniDumpType.WithFullMemory`` is ``MiniDumpWithFullMemory`` and
``PssCaptureFlags.VA_CLONE`` is ``PSS_CAPTURE_VA_CLONE`` in Microsoft's docs.
Values are pinned by tests against ``reference/winabi/layout-x86_64.json``.

IntFlag keeps unknown bits, so a header written by a newer Windows round-trips.
Stream types that are not listed stay plain ``int`` wherever the reader meets them.
"""

from __future__ import annotations

import enum

__all__ = [
    "CallbackType",
    "ContextFlags",
    "DumpType",
    "MiniDumpType",
    "ModuleWriteFlags",
    "PssCaptureFlags",
    "StreamType",
    "ThreadWriteFlags",
    "coerce_dump_type",
]


class MiniDumpType(enum.IntFlag):
    """MINIDUMP_TYPE (minidumpapiset.h): what a dump contains."""

    Normal = 0x00000000
    WithDataSegs = 0x00000001
    WithFullMemory = 0x00000002
    WithHandleData = 0x00000004
    FilterMemory = 0x00000008
    ScanMemory = 0x00000010
    WithUnloadedModules = 0x00000020
    WithIndirectlyReferencedMemory = 0x00000040
    FilterModulePaths = 0x00000080
    WithProcessThreadData = 0x00000100
    WithPrivateReadWriteMemory = 0x00000200
    WithoutOptionalData = 0x00000400
    WithFullMemoryInfo = 0x00000800
    WithThreadInfo = 0x00001000
    WithCodeSegs = 0x00002000
    WithoutAuxiliaryState = 0x00004000
    WithFullAuxiliaryState = 0x00008000
    WithPrivateWriteCopyMemory = 0x00010000
    IgnoreInaccessibleMemory = 0x00020000
    WithTokenInformation = 0x00040000
    WithModuleHeaders = 0x00080000
    FilterTriage = 0x00100000
    WithAvxXStateContext = 0x00200000
    WithIptTrace = 0x00400000
    ScanInaccessiblePartialPages = 0x00800000
    FilterWriteCombinedMemory = 0x01000000
    ValidTypeFlags = 0x01FFFFFF


class DumpType:
    """Ready-made MiniDumpType combinations.

    MINI
        The seed tool's "MiniDump": threads with contexts and stacks, modules,
        thread times, handles, and memory that stack words point at.
    TRIAGE
        What a crash-triage service wants and can safely upload: MINI without
        handles, with module paths reduced to file names, stack words that are not
        pointers zeroed and optional memory dropped (dbghelp's FilterTriage idea).
    FULL
        WithFullMemory plus the full memory map, handles, thread info and unloaded
        modules: ProcDump ``-ma``. On Windows dbghelp copies every committed readable
        page. On Linux WithFullMemory copies what the kernel's own core dump of the
        process would hold: the target's ``/proc/PID/coredump_filter`` applied as the
        kernel does (by default anonymous and shared memory, file mappings that were
        written, the first page of each ELF file; no program or library code, no
        unwritten file mappings) and nothing marked ``MADV_DONTDUMP``. Pass
        ``all_memory=True`` to ``dump``/``Dumper.write``/``Snapshot.write`` (CLI
        ``--all-memory``) for every readable page; see docs/dump-types.md.
    PYTHON
        A tiny dump for Python stacks: every thread with its context, stack and
        thread times, the module list with file names only (the reader finds
        libpython by its name and base; the capture's stream says which it is) and,
        through the Python-aware capture that every dump type gets by default, the
        memory of the CPython runtime's interpreters, thread states, frames, code
        objects and strings; no handles, no referenced or optional memory. See
        docs/python-stacks.md.
    """

    MINI = (MiniDumpType.Normal | MiniDumpType.WithThreadInfo | MiniDumpType.WithHandleData
            | MiniDumpType.WithIndirectlyReferencedMemory)
    TRIAGE = (MiniDumpType.Normal | MiniDumpType.WithThreadInfo | MiniDumpType.FilterMemory
              | MiniDumpType.FilterModulePaths | MiniDumpType.WithoutOptionalData)
    PYTHON = (MiniDumpType.Normal | MiniDumpType.WithThreadInfo
              | MiniDumpType.FilterModulePaths | MiniDumpType.WithoutOptionalData)
    FULL = (MiniDumpType.WithFullMemory | MiniDumpType.WithFullMemoryInfo
            | MiniDumpType.WithHandleData | MiniDumpType.WithThreadInfo
            | MiniDumpType.WithUnloadedModules)


def coerce_dump_type(value: int | MiniDumpType) -> MiniDumpType:
    """Accept a preset, a MiniDumpType combination or an int; reject unknown bits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"dump type must be a MiniDumpType (or int), not {type(value).__name__}")
    if value < 0 or int(value) & ~int(MiniDumpType.ValidTypeFlags):  # IntFlag ~ stays in-range
        raise ValueError(f"0x{value:x} has bits outside MiniDumpValidTypeFlags (0x01FFFFFF)")
    return MiniDumpType(value)


class PssCaptureFlags(enum.IntFlag):
    """PSS_CAPTURE_FLAGS (processsnapshot.h): what PssCaptureSnapshot captures."""

    NONE = 0x00000000
    VA_CLONE = 0x00000001
    RESERVED_00000002 = 0x00000002
    HANDLES = 0x00000004
    HANDLE_NAME_INFORMATION = 0x00000008
    HANDLE_BASIC_INFORMATION = 0x00000010
    HANDLE_TYPE_SPECIFIC_INFORMATION = 0x00000020
    HANDLE_TRACE = 0x00000040
    THREADS = 0x00000080
    THREAD_CONTEXT = 0x00000100
    THREAD_CONTEXT_EXTENDED = 0x00000200
    RESERVED_00000400 = 0x00000400
    VA_SPACE = 0x00000800
    VA_SPACE_SECTION_INFORMATION = 0x00001000
    IPT_TRACE = 0x00002000
    RESERVED_00004000 = 0x00004000
    CREATE_BREAKAWAY_OPTIONAL = 0x04000000
    CREATE_BREAKAWAY = 0x08000000
    CREATE_FORCE_BREAKAWAY = 0x10000000
    CREATE_USE_VM_ALLOCATIONS = 0x20000000
    CREATE_MEASURE_PERFORMANCE = 0x40000000
    CREATE_RELEASE_SECTION = 0x80000000


class CallbackType(enum.IntEnum):
    """MINIDUMP_CALLBACK_TYPE: why MiniDumpWriteDump called the callback."""

    ModuleCallback = 0
    ThreadCallback = 1
    ThreadExCallback = 2
    IncludeThreadCallback = 3
    IncludeModuleCallback = 4
    MemoryCallback = 5
    CancelCallback = 6
    WriteKernelMinidumpCallback = 7
    KernelMinidumpStatusCallback = 8
    RemoveMemoryCallback = 9
    IncludeVmRegionCallback = 10
    IoStartCallback = 11
    IoWriteAllCallback = 12
    IoFinishCallback = 13
    ReadMemoryFailureCallback = 14
    SecondaryFlagsCallback = 15
    IsProcessSnapshotCallback = 16
    VmStartCallback = 17
    VmQueryCallback = 18
    VmPreReadCallback = 19
    VmPostReadCallback = 20


class ThreadWriteFlags(enum.IntFlag):
    """THREAD_WRITE_FLAGS: what is written for one thread."""

    Thread = 0x01
    Stack = 0x02
    Context = 0x04
    BackingStore = 0x08
    InstructionWindow = 0x10
    ThreadData = 0x20
    ThreadInfo = 0x40


class ModuleWriteFlags(enum.IntFlag):
    """MODULE_WRITE_FLAGS: what is written for one module."""

    Module = 0x01
    DataSeg = 0x02
    MiscRecord = 0x04
    CvRecord = 0x08
    ModuleReferencedByMemory = 0x10
    TlsData = 0x20
    CodeSegs = 0x40


class StreamType(enum.IntEnum):
    """MINIDUMP_STREAM_TYPE plus the Breakpad (0x4767xxxx), Crashpad and LLDB ids.

    Unknown ids are kept as plain ints by the reader, never dropped.
    """

    UnusedStream = 0
    ReservedStream0 = 1
    ReservedStream1 = 2
    ThreadListStream = 3
    ModuleListStream = 4
    MemoryListStream = 5
    ExceptionStream = 6
    SystemInfoStream = 7
    ThreadExListStream = 8
    Memory64ListStream = 9
    CommentStreamA = 10
    CommentStreamW = 11
    HandleDataStream = 12
    FunctionTableStream = 13
    UnloadedModuleListStream = 14
    MiscInfoStream = 15
    MemoryInfoListStream = 16
    ThreadInfoListStream = 17
    HandleOperationListStream = 18
    TokenStream = 19
    JavaScriptDataStream = 20
    SystemMemoryInfoStream = 21
    ProcessVmCountersStream = 22
    IptTraceStream = 23
    ThreadNamesStream = 24
    ceStreamNull = 0x8000
    ceStreamSystemInfo = 0x8001
    ceStreamException = 0x8002
    ceStreamModuleList = 0x8003
    ceStreamProcessList = 0x8004
    ceStreamThreadList = 0x8005
    ceStreamThreadContextList = 0x8006
    ceStreamThreadCallStackList = 0x8007
    ceStreamMemoryVirtualList = 0x8008
    ceStreamMemoryPhysicalList = 0x8009
    ceStreamBucketParameters = 0x800A
    ceStreamProcessModuleMap = 0x800B
    ceStreamDiagnosisList = 0x800C
    LastReservedStream = 0xFFFF
    # Breakpad (minidump_format.h)
    BreakpadInfoStream = 0x47670001
    AssertionInfoStream = 0x47670002
    LinuxCpuInfo = 0x47670003
    LinuxProcStatus = 0x47670004
    LinuxLsbRelease = 0x47670005
    LinuxCmdLine = 0x47670006
    LinuxEnviron = 0x47670007
    LinuxAuxv = 0x47670008
    LinuxMaps = 0x47670009
    LinuxDsoDebug = 0x4767000A
    # LLDB (MinidumpConstants.def)
    LinuxProcStat = 0x4767000B
    LinuxProcUptime = 0x4767000C
    LinuxProcFD = 0x4767000D
    # Crashpad
    CrashpadInfoStream = 0x43500001
    # minidumpkit's own user stream (> LastReservedStream): how the dump was taken
    MinidumpkitInfoStream = 0x4D4B0001
    # JSON: what a snapshot froze while the target was stopped and what it read live
    MinidumpkitSnapshotStream = 0x4D4B0002
    # per-thread scheduler state, wchan and blocking system call (docs/threads.md)
    MinidumpkitThreadStateStream = 0x4D4B0003
    # The CPython runtime the writer walked (format.MinidumpkitPython + JSON);
    # 0x4D4B0003 is the per-thread state stream
    MinidumpkitPythonStream = 0x4D4B0004
    # Process memory a writer added as a user stream (format.MinidumpkitMemory): the
    # Windows writer's Python capture, which dbghelp's MemoryList cannot take
    MinidumpkitMemoryStream = 0x4D4B0005


class ContextFlags(enum.IntFlag):
    """CONTEXT_* flags for AMD64 (the x86 values are ``AMD64_*`` with 0x00010000)."""

    AMD64 = 0x00100000
    CONTROL = 0x00100001
    INTEGER = 0x00100002
    SEGMENTS = 0x00100004
    FLOATING_POINT = 0x00100008
    DEBUG_REGISTERS = 0x00100010
    FULL = 0x0010000B
    ALL = 0x0010001F
    XSTATE = 0x00100040
    KERNEL_CET = 0x00100080
