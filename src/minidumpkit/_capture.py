"""What a backend captured from a process: the contract between backends and the writer.

A platform backend fills a :class:`ProcessCapture` (threads with their CPU
context, mapped regions, modules, handles, raw OS streams and a way to read
memory); :mod:`minidumpkit.writer` turns it into MDMP streams without knowing
where it came from. Nothing here touches the OS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from . import format as md


class MemorySource(Protocol):
    """Reads the captured process's memory.

    ``read`` returns up to ``size`` bytes at ``address``; it returns fewer (possibly
    none) where the range stops being readable, and raises only for failures that are
    not the memory's fault (the process vanished: ProcessNotFound).
    """

    def read(self, address: int, size: int) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class Region:
    """One mapping of the address space (a /proc/PID/maps line, or a VirtualQuery result)."""

    start: int
    end: int
    readable: bool
    writable: bool
    executable: bool
    private: bool  # 'p' (copy-on-write) versus 's' (shared)
    offset: int = 0
    device: str = "00:00"
    inode: int = 0
    path: str = ""  # "" for anonymous; "[stack]", "[heap]", "[vdso]" ... kept as the kernel says

    @property
    def size(self) -> int:
        return self.end - self.start

    def contains(self, address: int) -> bool:
        return self.start <= address < self.end


@dataclasses.dataclass(frozen=True)
class CapturedThread:
    """One thread, captured while stopped."""

    tid: int
    name: str
    context: md.ContextAMD64
    # The thread's TLS pointer (fs_base on x86_64 Linux, the TEB on Windows).
    teb: int = 0
    # ThreadInfo fields: FILETIME-style 100 ns units; start_time is absolute (since 1601).
    create_time: int = 0
    user_time: int = 0
    kernel_time: int = 0
    start_address: int = 0
    affinity: int = 0
    # Extended state (XSAVE area) when the dump type asks for it.
    xstate: bytes | None = None

    @property
    def sp(self) -> int:
        return self.context.rsp

    @property
    def pc(self) -> int:
        return self.context.rip


@dataclasses.dataclass(frozen=True)
class CapturedThreadState:
    """A thread's scheduler state and system call (the MinidumpkitThreadState stream).

    ``state``/``wchan`` were read ``sample_age_ns`` before the thread was stopped ("" and
    None when not sampled). ``orig_rax`` is the raw register (-1 outside a system call);
    ``syscall`` the call it is blocked in (None if not blocked, or a restart whose call
    site gave no number); ``restarted``: orig_rax was restart_syscall.
    """

    tid: int
    state: str = ""
    wchan: str = ""
    sample_age_ns: int | None = None
    orig_rax: int = -1
    blocked: bool = False
    syscall: int | None = None
    restarted: bool = False
    interrupted: bool = False  # the stop broke the call off (rax -EINTR); see ThreadStateFlags
    robust_list: tuple[int, int] | None = None  # (head, len) from get_robust_list(2)


@dataclasses.dataclass(frozen=True)
class CapturedModule:
    """A loaded image: an ELF file mapped into the process (or a PE image on Windows)."""

    base: int
    size: int
    path: str
    build_id: bytes = b""  # ELF NT_GNU_BUILD_ID, written as a 'BpEL' CodeView record
    version: md.VsFixedFileInfo | None = None


@dataclasses.dataclass(frozen=True)
class CapturedHandle:
    """One open handle / file descriptor."""

    handle: int
    type_name: str  # "File", "Socket", "Pipe", "Anon", "Directory", "Device", ...
    object_name: str  # readlink(/proc/PID/fd/N) on Linux
    attributes: int = 0  # st_mode on Linux
    granted_access: int = 0  # open flags on Linux


@dataclasses.dataclass(frozen=True)
class CapturedException:
    """Why the dump was taken: a crash signal/exception, or a plain request."""

    thread_id: int
    code: int = md.DUMP_REQUESTED
    flags: int = 0
    address: int = 0
    parameters: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class CapturedSystem:
    """SystemInfo and MiscInfo inputs."""

    processor_architecture: int = md.ProcessorArchitecture.AMD64
    processor_level: int = 0
    processor_revision: int = 0
    number_of_processors: int = 1
    platform_id: int = md.PlatformId.LINUX
    major_version: int = 0
    minor_version: int = 0
    build_number: int = 0
    csd_version: str = ""
    cpu_vendor: bytes = b""  # 12-byte CPUID vendor string
    cpu_version_information: int = 0
    cpu_feature_information: int = 0
    cpu_amd_extended_features: int = 0


@dataclasses.dataclass
class ProcessCapture:
    """Everything the writer needs; filled by a backend while (or after) the target is stopped."""

    pid: int
    threads: list[CapturedThread]
    regions: list[Region]
    modules: list[CapturedModule]  # the main executable first
    memory: MemorySource
    system: CapturedSystem
    exception: CapturedException | None = None
    handles: list[CapturedHandle] = dataclasses.field(default_factory=list)
    # MiscInfo: seconds since the epoch, and CPU seconds
    process_create_time: int = 0
    process_user_time: int = 0
    process_kernel_time: int = 0
    # Raw OS streams copied verbatim (Linux: /proc/cpuinfo, status, maps, auxv, ...)
    raw_streams: dict[int, bytes] = dataclasses.field(default_factory=dict)
    # Breakpad LinuxDsoDebug inputs, if the backend found r_debug
    dso_debug: DsoDebug | None = None
    # How the memory was frozen: md.CAPTURE_STOP, CAPTURE_VA_CLONE, ...
    capture_method: int = md.CAPTURE_STOP
    pause_ns: int = 0
    # per-thread scheduler state and system call, by thread id (Linux)
    thread_states: dict[int, CapturedThreadState] = dataclasses.field(default_factory=dict)
    # (address, size) of memory the lock analysis needs (futex objects, robust lists,
    # TCB words), copied even in a MINI dump within DumpPolicy.max_lock_memory_bytes
    lock_memory: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    # When the process was frozen (seconds since the epoch) for the header's TimeDateStamp;
    # 0 means "now", taken by the writer.
    timestamp: int = 0


@dataclasses.dataclass(frozen=True)
class LinkMapEntry:
    addr: int  # l_addr
    name: str  # l_name
    ld: int  # l_ld


@dataclasses.dataclass(frozen=True)
class DsoDebug:
    """The dynamic linker's r_debug, for Breakpad's LinuxDsoDebug stream."""

    version: int
    brk: int
    ldbase: int
    dynamic_address: int
    dynamic: bytes  # raw copy of the _DYNAMIC array
    link_maps: Sequence[LinkMapEntry]


# A hook for progress reports: (bytes done, bytes total).
ProgressHook = Callable[[int, int], None]
