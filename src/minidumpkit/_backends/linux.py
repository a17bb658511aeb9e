"""The Linux backend: stop a process with ptrace, capture it, write it, let it go.

``write_dump(pid, out, dump_type)`` is the whole job: preflight checks from /proc
(:func:`check_target`), every thread held by :class:`~._ptrace.ProcessStop`, a
:class:`~minidumpkit._capture.ProcessCapture` filled from ptrace, /proc and the
process's memory (:func:`capture`), the platform-free writer run while the target
is still stopped, and the threads released in every case. Dumping our own process
goes through a helper process (:mod:`._selfdump`), since a process cannot ptrace
itself.

Helpers, one job each: :mod:`._procfs` (parsing /proc), :mod:`._elf` (build ids,
r_debug), :mod:`._ptrace` (the stop protocol).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import time
from typing import Any, BinaryIO

from .. import format as md
from .._capture import (
    CapturedException,
    CapturedModule,
    CapturedSystem,
    CapturedThread,
    ProcessCapture,
    Region,
)
from .._ffi import libc
from .._ffi._errors import last_errno
from ..errors import (
    AccessDenied,
    AlreadyTraced,
    InvalidTargetError,
    ProcessError,
    ProcessNotFound,
    UnsupportedError,
)
from ..flags import MiniDumpType, StreamType
from . import _elf, _procfs
from ._ptrace import _PERMISSION_HINT, ProcessStop

__all__ = ["ProcessMemory", "capture", "check_target", "resolve_pid", "write_dump"]

PAGE = os.sysconf("SC_PAGE_SIZE")
# one process_vm_readv call moves at most this much (the kernel copies in page batches anyway)
_READ_CHUNK = 1 << 22


# --- memory -------------------------------------------------------------------------

class ProcessMemory:
    """Reads a (stopped) process's memory: process_vm_readv, else /proc/PID/mem.

    ``read`` returns the readable prefix of the range (short or empty where the
    range stops being mapped or readable) and raises ProcessNotFound if the process
    is gone. process_vm_readv is refused in some sandboxes (EPERM, ENOSYS); then
    /proc/PID/mem serves every later read.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._mem_fd: int | None = None
        self._use_mem_file = False

    def close(self) -> None:
        fd, self._mem_fd = self._mem_fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address < 0:
            return b""
        out = bytearray()
        while size > 0:
            want = min(size, _READ_CHUNK)
            chunk = self._read_once(address, want)
            if len(chunk) < want:
                # The range may continue to be readable after a hole at a page boundary
                # only for callers that ask for holes; our contract is the prefix, but a
                # short transfer can also stop mid-range for reasons other than a hole,
                # so retry the rest page by page before giving up.
                out += chunk
                address += len(chunk)
                size -= len(chunk)
                while size > 0:
                    step = min(size, PAGE - address % PAGE)
                    page = self._read_once(address, step)
                    out += page
                    if len(page) < step:
                        return bytes(out)
                    address += step
                    size -= step
                return bytes(out)
            out += chunk
            address += want
            size -= want
        return bytes(out)

    def _read_once(self, address: int, size: int) -> bytes:
        if not self._use_mem_file:
            got = self._vm_readv(address, size)
            if got is not None:
                return got
            self._use_mem_file = True
        return self._pread(address, size)

    def _vm_readv(self, address: int, size: int) -> bytes | None:
        ffi, lib = libc.load()
        buf = ffi.new("char[]", size)
        local = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": size})
        remote = ffi.new("struct iovec *", {"iov_base": ffi.cast("void *", address),
                                            "iov_len": size})
        n = int(lib.process_vm_readv(self.pid, local, 1, remote, 1, 0))
        if n >= 0:
            return bytes(ffi.buffer(buf, n))
        err = last_errno()
        if err == errno.EFAULT:
            return b""
        if err == errno.ESRCH:
            raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited during the dump",
                                  pid=self.pid)
        if err in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            return None
        raise ProcessError.from_errno(err, f"process_vm_readv(0x{address:x}, {size})",
                                      pid=self.pid)

    def _pread(self, address: int, size: int) -> bytes:
        if self._mem_fd is None:
            path = f"/proc/{self.pid}/mem"
            try:
                self._mem_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise _procfs._os_error(exc, path, self.pid) from exc
        try:
            return os.pread(self._mem_fd, size, address)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EFAULT, errno.EINVAL):
                return b""
            if exc.errno == errno.ESRCH:
                raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited during the dump",
                                      pid=self.pid) from exc
            raise ProcessError.from_errno(exc.errno or errno.EIO, "reading /proc/PID/mem",
                                          pid=self.pid) from exc


# --- preflight ----------------------------------------------------------------------

def resolve_pid(pid: int) -> int:
    """The process (thread group) id of ``pid``; a thread id names its process.

    Raises ProcessNotFound if there is no such process or thread.
    """
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ProcessNotFound(errno.ESRCH, f"{pid} is not a valid process id (must be > 0)",
                              pid=pid)
    status = _read_status(pid)
    try:
        return int(status.get("Tgid", pid))
    except ValueError:
        return pid


def _read_status(pid: int) -> dict[str, str]:
    if pid <= 0:
        raise ProcessNotFound(errno.ESRCH, f"{pid} is not a valid process id (must be > 0)",
                              pid=pid)
    try:
        return _procfs.parse_status(_procfs.read_text(f"/proc/{pid}/status", pid))
    except ProcessNotFound:
        raise ProcessNotFound(errno.ESRCH, f"no process with pid {pid} exists (it may have "
                              f"exited); check the pid, e.g. with `ps -p {pid}`", pid=pid) from None


def check_target(pid: int, status: dict[str, str] | None = None) -> None:
    """Raise a clear error now if ``pid`` cannot be dumped; do nothing otherwise.

    Checks: the process exists, is not a zombie or a kernel thread, is not traced by
    someone else, and we may read its private /proc files (the same permission
    ptrace needs). Our own process passes: it is dumped through a helper process.
    """
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if status is None:
        status = _read_status(pid)
    name = status.get("Name", "?")
    state = status.get("State", "")
    threads = int(status.get("Threads", "1") or 1)
    if state.startswith("Z") and threads <= 1 or state.startswith("X"):
        raise InvalidTargetError(
            f"process {pid} ({name}) is a zombie: it has exited and only waits for its "
            "parent to reap it, so there is no memory or thread left to dump", pid=pid)
    if _is_kernel_thread(pid):
        raise InvalidTargetError(
            f"pid {pid} ({name}) is a kernel thread: it has no user-space memory, threads or "
            "modules to dump; pick a user process", pid=pid)
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer and pid != os.getpid():
        raise _already_traced(pid, name, tracer)
    if pid == os.getpid():
        return
    try:
        with open(f"/proc/{pid}/auxv", "rb") as f:  # needs PTRACE_MODE_READ, like ptrace
            f.read(16)
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessNotFound(errno.ESRCH, f"process {pid} exited", pid=pid) from None
    except PermissionError as exc:
        raise AccessDenied(exc.errno or errno.EACCES,
                           f"not allowed to inspect process {pid} ({name}) owned by uid "
                           f"{status.get('Uid', '?').split()[0]}: {_PERMISSION_HINT}",
                           pid=pid) from None


def _already_traced(pid: int, name: str, tracer: int) -> AlreadyTraced:
    try:
        tracer_name = _procfs.read_text(f"/proc/{tracer}/comm").strip()
    except ProcessError:
        tracer_name = "?"
    return AlreadyTraced(
        errno.EPERM,
        f"process {pid} ({name}) is already traced by pid {tracer} ({tracer_name}); a process "
        "can have only one tracer: detach that debugger or tracer (or let it finish) and try "
        "again", pid=pid)


def _is_kernel_thread(pid: int) -> bool:
    try:
        return bool(_procfs.read_stat(pid).flags & _procfs.PF_KTHREAD)
    except ProcessError:
        pass
    try:  # no stat: judge by the missing executable and address space
        os.readlink(f"/proc/{pid}/exe")
        return False
    except FileNotFoundError:
        # no executable: a kernel thread if it also has no mappings
        data = _procfs.try_read_bytes(f"/proc/{pid}/maps")
        return data == b""
    except OSError:
        return False


# --- capture ------------------------------------------------------------------------

@functools.cache
def _zero_context_fields() -> dict[str, Any]:
    zero = md.ContextAMD64.zero()
    return {f.name: getattr(zero, f.name) for f in dataclasses.fields(md.ContextAMD64)}


def _context(regs: dict[str, int], fxsave: bytes, debug: list[int]) -> md.ContextAMD64:
    """CONTEXT_AMD64 as Crashpad fills it: every GPR and segment, eflags, the debug
    registers, top-level MxCsr, and the FXSAVE image copied whole (CONTEXT_ALL)."""
    flt = md.XmmSaveArea32.unpack_from(fxsave)
    fields: dict[str, Any] = dict(_zero_context_fields())
    fields.update(
        context_flags=md.CONTEXT_AMD64_ALL,
        mx_csr=flt.mx_csr,
        seg_cs=regs["cs"] & 0xFFFF, seg_ds=regs["ds"] & 0xFFFF, seg_es=regs["es"] & 0xFFFF,
        seg_fs=regs["fs"] & 0xFFFF, seg_gs=regs["gs"] & 0xFFFF, seg_ss=regs["ss"] & 0xFFFF,
        eflags=regs["eflags"] & 0xFFFF_FFFF,
        dr0=debug[0], dr1=debug[1], dr2=debug[2], dr3=debug[3], dr6=debug[6], dr7=debug[7],
        flt_save=flt)
    for name in md.AMD64_GPRS:
        fields[name] = regs[name]
    fields["rip"] = regs["rip"]
    return md.ContextAMD64(**fields)


def _affinity(tid: int) -> int:
    try:
        return sum(1 << cpu for cpu in os.sched_getaffinity(tid) if cpu < 64)
    except OSError:
        return 0


def _capture_thread(stop: ProcessStop, pid: int, tid: int, with_info: bool) -> CapturedThread:
    regs = stop.general_registers(tid)
    context = _context(regs, stop.fpu_registers(tid), stop.debug_registers(tid))
    thread = CapturedThread(tid=tid, name=_procfs.thread_name(pid, tid), context=context,
                            teb=regs["fs_base"])
    if with_info:
        try:
            st = _procfs.read_stat(pid, tid)
        except ProcessError:
            return thread  # ended while stopped (killed): its times are gone
        thread = dataclasses.replace(
            thread, create_time=_procfs.start_filetime(st.starttime),
            user_time=_procfs.ticks_to_filetime_units(st.utime),
            kernel_time=_procfs.ticks_to_filetime_units(st.stime), affinity=_affinity(tid))
    return thread


@dataclasses.dataclass
class _ModuleSpan:
    path: str
    key: tuple[str, str, int]
    start: int
    end: int


def _module_spans(regions: list[Region]) -> list[_ModuleSpan]:
    """Mapped ELF files: each run of adjacent mappings of one file that starts at file
    offset 0 (where the ELF headers are) becomes one module, from its first byte to the
    end of its last adjacent mapping of the same file (this covers the r--/r-x/r--/rw-
    segments and the PROT_NONE alignment gaps ld.so leaves, which keep the file's name).
    Device mappings (/dev/...) are never modules and never opened."""
    spans: list[_ModuleSpan] = []
    cur: _ModuleSpan | None = None
    for r in regions:
        path = r.path
        if not path.startswith("/") or path.startswith("/dev/"):
            cur = None
            continue
        key = (path, r.device, r.inode)
        if cur is not None and cur.key == key and r.start == cur.end:
            cur.end = r.end
            continue
        if r.offset == 0:
            cur = _ModuleSpan(path=path, key=key, start=r.start, end=r.end)
            spans.append(cur)
        else:
            cur = None
    return spans


def _module_name(path: str) -> str:
    return path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path


def _is_elf(memory: ProcessMemory, span: _ModuleSpan) -> bool:
    head = memory.read(span.start, 4)
    if len(head) == 4:
        return head == _elf.ELF_MAGIC
    try:  # the header page is not readable in memory: look at the file
        with open(_module_name(span.path), "rb") as f:
            return f.read(4) == _elf.ELF_MAGIC
    except OSError:
        return False


def _modules(regions: list[Region], auxv: dict[int, int],
             memory: ProcessMemory) -> list[CapturedModule]:
    modules: list[CapturedModule] = []
    for span in _module_spans(regions):
        if span.end - span.start < PAGE or not _is_elf(memory, span):
            continue
        build_id = _elf.build_id_from_memory(memory.read, span.start)
        if not build_id:
            build_id = _elf.build_id_from_file(_module_name(span.path)) or b""
        modules.append(CapturedModule(base=span.start, size=span.end - span.start,
                                      path=_module_name(span.path), build_id=build_id))
    vdso = auxv.get(_procfs.AT_SYSINFO_EHDR, 0)
    for r in regions:
        if r.path == "[vdso]" or (vdso and r.start == vdso):
            build_id = _elf.build_id_from_memory(memory.read, r.start) or b""
            # Breakpad's and minidump-writer's name for the vDSO
            modules.append(CapturedModule(base=r.start, size=r.size, path="linux-gate.so",
                                          build_id=build_id))
            break
    # Readers treat module 0 as the main executable: the one holding the entry point.
    entry = auxv.get(_procfs.AT_ENTRY, 0)
    for i, mod in enumerate(modules):
        if mod.base <= entry < mod.base + mod.size:
            modules.insert(0, modules.pop(i))
            break
    return modules


_EDX_FLAGS = {"fpu": 0, "vme": 1, "de": 2, "pse": 3, "tsc": 4, "msr": 5, "pae": 6, "mce": 7,
              "cx8": 8, "apic": 9, "sep": 11, "mtrr": 12, "pge": 13, "mca": 14, "cmov": 15,
              "pat": 16, "pse36": 17, "pn": 18, "clflush": 19, "dts": 21, "acpi": 22, "mmx": 23,
              "fxsr": 24, "sse": 25, "sse2": 26, "ss": 27, "ht": 28, "tm": 29, "ia64": 30,
              "pbe": 31}
_AMD_EXT_EDX_FLAGS = {"syscall": 11, "mp": 19, "nx": 20, "mmxext": 22, "fxsr_opt": 25,
                      "pdpe1gb": 26, "rdtscp": 27, "lm": 29, "3dnowext": 30, "3dnow": 31}


def _cpuid_version(family: int, model: int, stepping: int) -> int:
    """CPUID leaf 1 EAX rebuilt from the decoded family/model/stepping /proc shows."""
    base_family, ext_family = (0xF, family - 0xF) if family >= 0xF else (family, 0)
    base_model, ext_model = model & 0xF, model >> 4
    return (stepping & 0xF) | base_model << 4 | base_family << 8 | ext_model << 16 \
        | (ext_family & 0xFF) << 20


@functools.cache
def system_info() -> CapturedSystem:
    """SystemInfo inputs: /proc/cpuinfo (as Breakpad reads it) and uname."""
    cpu = _procfs.parse_cpuinfo(_procfs.read_text("/proc/cpuinfo"))
    uname = os.uname()

    def num(key: str) -> int:
        try:
            return int(cpu.get(key, "0"), 0)
        except ValueError:
            return 0

    family, model, stepping = num("cpu family"), num("model"), num("stepping")
    flags = set(cpu.get("flags", "").split())
    vendor = cpu.get("vendor_id", "")
    amd_ext = 0
    if vendor == "AuthenticAMD":
        amd_ext = sum(1 << bit for name, bit in _AMD_EXT_EDX_FLAGS.items() if name in flags)
    return CapturedSystem(
        processor_architecture=md.ProcessorArchitecture.AMD64,
        processor_level=family & 0xFFFF,
        processor_revision=((model & 0xFF) << 8 | (stepping & 0xFF)),
        number_of_processors=min(max(num("count"), os.cpu_count() or 1, 1), 255),
        platform_id=md.PlatformId.LINUX,
        csd_version=f"{uname.sysname} {uname.release} {uname.version} {uname.machine}",
        cpu_vendor=vendor.encode("ascii", "replace")[:12].ljust(12, b"\0"),
        cpu_version_information=_cpuid_version(family, model, stepping),
        cpu_feature_information=sum(1 << bit for name, bit in _EDX_FLAGS.items() if name in flags),
        cpu_amd_extended_features=amd_ext)


def machine_streams() -> dict[int, bytes]:
    """The raw streams that describe the machine, not the process (/proc/cpuinfo and the
    distribution's release file): read before the target is stopped."""
    streams: dict[int, bytes] = {}
    cpuinfo = _procfs.try_read_bytes("/proc/cpuinfo")
    if cpuinfo is not None:
        streams[StreamType.LinuxCpuInfo] = cpuinfo
    release = _procfs.try_read_bytes("/etc/lsb-release")
    if release is None:
        release = _procfs.try_read_bytes("/etc/os-release")
    if release is not None:
        streams[StreamType.LinuxLsbRelease] = release
    return streams


def _raw_streams(pid: int, maps: bytes, auxv: bytes,
                 machine: dict[int, bytes] | None) -> dict[int, bytes]:
    streams = dict(machine_streams() if machine is None else machine)
    status = _procfs.try_read_bytes(f"/proc/{pid}/status")
    if status is not None:
        streams[StreamType.LinuxProcStatus] = status
    for stream, name in ((StreamType.LinuxCmdLine, "cmdline"), (StreamType.LinuxEnviron, "environ")):
        data = _procfs.try_read_bytes(f"/proc/{pid}/{name}")
        if data is not None:
            streams[stream] = data
    streams[StreamType.LinuxAuxv] = auxv
    streams[StreamType.LinuxMaps] = maps
    return streams


def capture(pid: int, stop: ProcessStop, memory: ProcessMemory,
            dump_type: MiniDumpType, machine: dict[int, bytes] | None = None) -> ProcessCapture:
    """Fill a ProcessCapture of ``pid``, whose threads ``stop`` holds stopped.

    ``machine`` is :func:`machine_streams` read beforehand (read now if None)."""
    maps = _procfs.read_bytes(f"/proc/{pid}/maps", pid)
    regions = _procfs.parse_maps(maps.decode("utf-8", "surrogateescape"))
    auxv_raw = _procfs.read_bytes(f"/proc/{pid}/auxv", pid)
    auxv = _procfs.parse_auxv(auxv_raw)
    with_info = bool(dump_type & MiniDumpType.WithThreadInfo)
    threads = []
    for tid in stop.tids:
        try:
            threads.append(_capture_thread(stop, pid, tid, with_info))
        except ProcessNotFound:
            if tid == pid:
                raise
            # a thread SIGKILLed (with its process) while stopped: its registers are gone
    if not threads:
        raise ProcessNotFound(errno.ESRCH, f"process {pid} exited during the dump", pid=pid)
    proc_stat = _procfs.read_stat(pid)
    ticks = _procfs.clock_ticks()
    blamed = threads[0]
    return ProcessCapture(
        pid=pid,
        threads=threads,
        regions=regions,
        modules=_modules(regions, auxv, memory),
        memory=memory,
        system=system_info(),
        exception=CapturedException(thread_id=blamed.tid, address=blamed.pc),
        handles=(list(_procfs.iter_handles(pid))
                 if dump_type & MiniDumpType.WithHandleData else []),
        process_create_time=_procfs.boot_time() + proc_stat.starttime // ticks,
        process_user_time=proc_stat.utime // ticks,
        process_kernel_time=proc_stat.stime // ticks,
        raw_streams=_raw_streams(pid, maps, auxv_raw, machine),
        dso_debug=_elf.read_dso_debug(memory.read, auxv.get(_procfs.AT_PHDR, 0),
                                      auxv.get(_procfs.AT_PHNUM, 0)),
        capture_method=md.CAPTURE_STOP,
        timestamp=int(time.time()),
    )


# --- the whole dump -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DumpTimes:
    """Where a stop-and-dump spent its time (perf_counter ns)."""

    threads: int
    stop_ns: int  # first PTRACE_SEIZE → every thread stopped
    pause_ns: int  # first PTRACE_SEIZE → last PTRACE_DETACH: what the target felt
    stats: object = None  # the writer's WriteStats


def write_dump(pid: int, out: BinaryIO, dump_type: MiniDumpType) -> DumpTimes:
    """Write a minidump of ``pid`` to ``out`` (a seekable binary file).

    The target is stopped for the capture and the writing and released afterwards,
    whatever happens. ``pid`` may name a thread; its process is dumped.
    """
    from ..writer import SUPPORTED_TYPES, flag_names, write_minidump

    unsupported = dump_type & ~SUPPORTED_TYPES
    if unsupported:  # refuse before the target is stopped, not half-way through
        raise UnsupportedError(
            f"MiniDumpType.{flag_names(unsupported)} is not implemented by the Linux writer "
            f"yet (it writes {flag_names(SUPPORTED_TYPES)}); leave it out")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    status = _read_status(pid)
    tgid = int(status.get("Tgid", pid) or pid)
    if tgid != pid:  # a thread id: dump its process
        pid, status = tgid, _read_status(tgid)
    if pid == os.getpid():
        from . import _selfdump

        return _selfdump.dump_self(out, dump_type)
    check_target(pid, status)
    # Everything that does not depend on the target's state is done before it is stopped.
    libc.load()
    system_info()
    machine = machine_streams()
    stop = ProcessStop(pid)
    stats: object = None
    with stop, ProcessMemory(pid) as memory:
        cap = capture(pid, stop, memory, dump_type, machine)
        cap.pause_ns = time.perf_counter_ns() - stop.stop_started_ns
        stats = write_minidump(cap, out, dump_type)
    return DumpTimes(threads=len(cap.threads),
                     stop_ns=stop.stopped_ns - stop.stop_started_ns,
                     pause_ns=stop.detached_ns - stop.stop_started_ns, stats=stats)
