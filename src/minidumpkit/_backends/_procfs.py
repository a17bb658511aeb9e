"""Reading and parsing /proc for the Linux backend (no ptrace, no ELF here).

Every function takes the text or bytes it parses, or reads one /proc file and
translates the OS errors a vanished or foreign process produces into the
library's exceptions (ENOENT/ESRCH → ProcessNotFound, EACCES/EPERM → AccessDenied).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import stat as stat_mod
import struct
from collections.abc import Iterator

from .._capture import CapturedHandle, Region
from ..errors import AccessDenied, ProcessError, ProcessNotFound

# Seconds between 1601-01-01 (FILETIME epoch) and 1970-01-01.
FILETIME_EPOCH_OFFSET = 11_644_473_600
# Linux task flag of kernel threads (include/linux/sched.h).
PF_KTHREAD = 0x00200000

# auxv keys (elf.h)
AT_NULL = 0
AT_PHDR = 3
AT_PHNUM = 5
AT_ENTRY = 9
AT_SYSINFO_EHDR = 33


def _os_error(exc: OSError, path: str, pid: int | None) -> ProcessError:
    if exc.errno in (errno.ENOENT, errno.ESRCH):
        return ProcessNotFound(errno.ESRCH, f"process {pid} does not exist (or exited): "
                               f"{path} is gone", pid=pid)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return AccessDenied(exc.errno, f"cannot read {path}: permission denied; "
                            "run as the target's user or as root", pid=pid)
    return ProcessError(exc.errno or errno.EIO, f"cannot read {path}: {exc.strerror}", pid=pid)


def read_bytes(path: str, pid: int | None = None) -> bytes:
    """The whole file (proc files report size 0, so read until EOF)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, path, pid) from exc
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise _os_error(exc, path, pid) from exc
    finally:
        os.close(fd)


def read_text(path: str, pid: int | None = None) -> str:
    return read_bytes(path, pid).decode("utf-8", "surrogateescape")


def try_read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None if it cannot be read (optional streams)."""
    try:
        return read_bytes(path)
    except ProcessError:
        return None


# --- /proc/PID/status and /proc/PID/stat ----------------------------------------------

def parse_status(text: str) -> dict[str, str]:
    """``Key:\\tvalue`` lines of /proc/PID/status."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


@dataclasses.dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat (or /proc/PID/task/TID/stat) the backend uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    flags: int
    utime: int  # clock ticks
    stime: int
    starttime: int  # clock ticks after boot


def parse_stat(text: str) -> Stat:
    # comm may hold spaces and parentheses: it ends at the *last* ')'.
    lpar, rpar = text.index("("), text.rindex(")")
    rest = text[rpar + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n - 3]
    return Stat(pid=int(text[:lpar]), comm=text[lpar + 1:rpar], state=rest[0],
                ppid=int(rest[1]), flags=int(rest[6]), utime=int(rest[11]),
                stime=int(rest[12]), starttime=int(rest[19]))


def read_stat(pid: int, tid: int | None = None) -> Stat:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    return parse_stat(read_text(path, pid))


def task_ids(pid: int) -> list[int]:
    """Thread ids listed in /proc/PID/task, main thread first."""
    path = f"/proc/{pid}/task"
    try:
        tids = sorted(int(name) for name in os.listdir(path) if name.isdigit())
    except OSError as exc:
        raise _os_error(exc, path, pid) from exc
    if pid in tids:
        tids.remove(pid)
        tids.insert(0, pid)
    return tids


def thread_name(pid: int, tid: int) -> str:
    data = try_read_bytes(f"/proc/{pid}/task/{tid}/comm")
    return data.decode("utf-8", "replace").rstrip("\n") if data is not None else ""



@functools.cache
def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


@functools.cache
def boot_time() -> int:
    """Boot time in seconds since the epoch (``btime`` of /proc/stat)."""
    for line in read_text("/proc/stat").splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    return 0


def ticks_to_filetime_units(ticks: int) -> int:
    """Clock ticks → 100 ns units (FILETIME resolution)."""
    return ticks * 10_000_000 // clock_ticks()


def start_filetime(starttime_ticks: int) -> int:
    """A task's start (ticks after boot) as a FILETIME: 100 ns units since 1601."""
    return (boot_time() + FILETIME_EPOCH_OFFSET) * 10_000_000 + ticks_to_filetime_units(starttime_ticks)


# --- /proc/PID/maps -----------------------------------------------------------------

def parse_maps(text: str) -> list[Region]:
    """One Region per line of /proc/PID/maps."""
    regions = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, _, hi = parts[0].partition("-")
        perms = parts[1]
        regions.append(Region(
            start=int(lo, 16), end=int(hi, 16),
            readable=perms[0] == "r", writable=perms[1] == "w", executable=perms[2] == "x",
            private=perms[3] == "p", offset=int(parts[2], 16), device=parts[3],
            inode=int(parts[4]), path=parts[5].strip() if len(parts) > 5 else ""))
    return regions


def find_region(regions: list[Region], address: int) -> Region | None:
    for region in regions:
        if region.start <= address < region.end:
            return region
    return None


# --- /proc/PID/auxv -----------------------------------------------------------------

def parse_auxv(data: bytes) -> dict[int, int]:
    """Elf64_auxv_t pairs up to AT_NULL."""
    out: dict[int, int] = {}
    for key, value in struct.iter_unpack("<QQ", data[:len(data) - len(data) % 16]):
        if key == AT_NULL:
            break
        out[key] = value
    return out


# --- /proc/PID/fd -------------------------------------------------------------------

def _handle_type(target: str, mode: int | None) -> str:
    if target.startswith("socket:"):
        return "Socket"
    if target.startswith("pipe:"):
        return "Pipe"
    if target.startswith("anon_inode:"):
        return "Anon"
    if mode is None:
        return "Unknown"
    if stat_mod.S_ISDIR(mode):
        return "Directory"
    if stat_mod.S_ISREG(mode):
        return "File"
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return "Device"
    if stat_mod.S_ISFIFO(mode):
        return "Pipe"
    if stat_mod.S_ISSOCK(mode):
        return "Socket"
    return "Unknown"


def _fd_flags(pid: int, fd: int) -> int:
    data = try_read_bytes(f"/proc/{pid}/fdinfo/{fd}")
    if data is None:
        return 0
    for line in data.decode("ascii", "replace").splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8)
    return 0


def iter_handles(pid: int) -> Iterator[CapturedHandle]:
    """One CapturedHandle per open descriptor of ``pid``, in fd order.

    type from the link target (socket:/pipe:/anon_inode:) or the st_mode of what the
    descriptor refers to; name is the link target; attributes the st_mode;
    granted_access the open flags from fdinfo. Descriptors that close while we look
    are skipped.
    """
    path = f"/proc/{pid}/fd"
    try:
        fds = sorted(int(name) for name in os.listdir(path) if name.isdigit())
    except OSError as exc:
        raise _os_error(exc, path, pid) from exc
    for fd in fds:
        link = f"{path}/{fd}"
        try:
            target = os.readlink(link)
        except OSError:
            continue
        mode: int | None
        try:
            # stat follows the magic link to the open file itself, never opens it
            mode = os.stat(link).st_mode
        except OSError:
            mode = None
        yield CapturedHandle(handle=fd, type_name=_handle_type(target, mode), object_name=target,
                             attributes=mode or 0, granted_access=_fd_flags(pid, fd))


# --- /proc/cpuinfo ------------------------------------------------------------------

def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's ``key : value`` block, plus ``count`` = number of processors."""
    first: dict[str, str] = {}
    count = 0
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" in fields:
            count += 1
            if not first:
                first = fields
    first["count"] = str(count)
    return first
