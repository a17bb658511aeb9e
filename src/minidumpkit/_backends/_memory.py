"""Which pages of a Linux process exist, and which the kernel's core dumper would write.

Full-memory and private-memory dump types copy whole mappings; this module tells
the writer's plan what in them is worth copying, from three /proc files:

* ``/proc/PID/smaps``: per mapping the ``VmFlags`` (``dd`` = VM_DONTDUMP set by
  ``madvise(MADV_DONTDUMP)``, ``io`` = VM_IO device memory, ``ht`` = hugetlb) and the
  ``Rss``/``Swap``/``Anonymous`` sizes, which often settle a mapping without pagemap.
* ``/proc/PID/coredump_filter``: which kinds of mapping the target wants in core
  dumps (*core(5)*); applied exactly as ``vma_dump_size()`` in fs/coredump.c does.
* ``/proc/PID/pagemap``: one 64-bit entry per page; bit 63 present, 62 swapped,
  61 file page or shared anonymous. Without CAP_SYS_ADMIN the kernel zeroes the
  frame numbers but keeps these bits, which is all we read. Pages that are neither
  present nor swapped were never touched: reading them would map the zero page into
  the target (or allocate), so they are left out of the dump.

The result is a :class:`~minidumpkit._selection.VmArea` per mapping; nothing here
writes anything or touches the target's memory.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable

from .._capture import Region
from .._selection import VmArea

__all__ = ["DEFAULT_COREDUMP_FILTER", "SmapsEntry", "annotate", "kernel_dump_size",
           "page_runs", "parse_smaps", "read_coredump_filter"]

PAGE = os.sysconf("SC_PAGE_SIZE")
# core(5): anonymous private + anonymous shared + ELF headers + private hugetlb
DEFAULT_COREDUMP_FILTER = 0x33
_ANON_PRIVATE, _ANON_SHARED, _MAPPED_PRIVATE, _MAPPED_SHARED = 1, 2, 4, 8
_ELF_HEADERS, _HUGETLB_PRIVATE, _HUGETLB_SHARED = 16, 32, 64
# pagemap entries read per pread (8 MiB of entries = 4 GiB of address space)
_PAGEMAP_BATCH = 1 << 20
# high byte of a pagemap entry: bit 63 present, 62 swapped, 61 file/shared-anon page
_EXISTS = bytes(1 if b & 0xC0 else 0 for b in range(256))
_PRIVATE = bytes(1 if (b & 0x40) or (b & 0xA0) == 0x80 else 0 for b in range(256))
_RUN = re.compile(rb"\x01+")


@dataclasses.dataclass(frozen=True)
class SmapsEntry:
    """The smaps fields the plan and the clone preflight use (sizes in bytes)."""

    vm_flags: frozenset[str]
    rss: int = 0
    swap: int = 0
    anonymous: int = 0
    start: int = 0
    end: int = 0
    writable: bool = False
    private: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_smaps(text: str) -> dict[int, SmapsEntry]:
    """{mapping start: SmapsEntry} from /proc/PID/smaps."""
    out: dict[int, SmapsEntry] = {}
    start: int | None = None
    end = 0
    perms = ""
    sizes: dict[str, int] = {}
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):
            low, _, high = head.partition("-")
            start, end = int(low, 16), int(high, 16)
            perms = rest[:4]
            sizes = {}
            continue
        if start is None:
            continue
        if head == "VmFlags:":
            out[start] = SmapsEntry(vm_flags=frozenset(rest.split()), rss=sizes.get("Rss", 0),
                                    swap=sizes.get("Swap", 0), anonymous=sizes.get("Anonymous", 0),
                                    start=start, end=end, writable=perms[1:2] == "w",
                                    private=perms[3:4] == "p")
            start = None
        elif head.endswith(":") and head[:-1] in ("Rss", "Swap", "Anonymous"):
            sizes[head[:-1]] = int(rest.split()[0]) * 1024
    return out


def read_coredump_filter(pid: int) -> int:
    """The target's /proc/PID/coredump_filter (the kernel default when unreadable)."""
    try:
        with open(f"/proc/{pid}/coredump_filter", "rb") as f:
            return int(f.read().strip() or b"33", 16)
    except (OSError, ValueError):
        return DEFAULT_COREDUMP_FILTER


def maps_regular_file(region: Region) -> bool:
    """Whether the mapping's pages come from a regular file (so reading a page that is
    not mapped yet brings in file content, never a zero page)."""
    path = region.path
    return (path.startswith("/") and region.inode != 0
            and not path.startswith(("/dev/", "/SYSV", "/memfd:")))


def _anonymous_shared(region: Region) -> bool:
    # vma_dump_size() tests i_nlink == 0: shmem objects with no name (MAP_SHARED|MAP_ANONYMOUS
    # shows as "/dev/zero (deleted)"), SysV segments, memfds, deleted files.
    path = region.path
    return (not path or path.endswith("(deleted)")
            or path.startswith(("/SYSV", "/memfd:", "[anon_shmem")))


def kernel_dump_size(region: Region, smaps: SmapsEntry | None, coredump_filter: int,
                     elf_header: bool) -> int:
    """Bytes from the mapping's start that the kernel's core dumper writes (fs/coredump.c
    ``vma_dump_size``): the whole mapping, its first page (ELF headers) or nothing."""
    flags = smaps.vm_flags if smaps is not None else frozenset()
    if "dd" in flags or "io" in flags or not region.readable:
        return 0
    shared = not region.private
    if "ht" in flags:
        wanted = _HUGETLB_SHARED if shared else _HUGETLB_PRIVATE
        return region.size if coredump_filter & wanted else 0
    if shared:
        wanted = _ANON_SHARED if _anonymous_shared(region) else _MAPPED_SHARED
        return region.size if coredump_filter & wanted else 0
    file_backed = bool(region.path.startswith("/") and region.inode)
    # anon_vma exists once a page of the mapping was written (an anonymous copy made)
    written = not file_backed or (smaps is not None and (smaps.anonymous or smaps.swap))
    if written and coredump_filter & _ANON_PRIVATE:
        return region.size
    if not file_backed:
        return 0
    if coredump_filter & _MAPPED_PRIVATE:
        return region.size
    if coredump_filter & _ELF_HEADERS and region.offset == 0 and elf_header:
        return min(PAGE, region.size)
    return 0


def page_runs(fd: int, start: int, end: int, table: bytes = _EXISTS) -> list[tuple[int, int]]:
    """``[(run start, run end)]`` of pages in ``[start, end)`` whose pagemap entry
    matches ``table`` (default: present or swapped), read from the open pagemap ``fd``."""
    runs: list[tuple[int, int]] = []
    page = start // PAGE
    last = end // PAGE
    while page < last:
        count = min(_PAGEMAP_BATCH, last - page)
        data = os.pread(fd, count * 8, page * 8)
        if not data:
            break
        # one byte per entry (its high byte), classified by a C-speed translate
        marks = data[7::8].translate(table)
        for m in _RUN.finditer(marks):
            lo, hi = (page + m.start()) * PAGE, (page + m.end()) * PAGE
            if runs and runs[-1][1] == lo:
                runs[-1] = (runs[-1][0], hi)
            else:
                runs.append((lo, hi))
        page += len(data) // 8
    return runs


def annotate(pid: int, regions: Iterable[Region], *, elf_starts: frozenset[int] = frozenset(),
             private_pages: bool = False) -> list[Region]:
    """``regions`` as :class:`VmArea` with smaps flags, the kernel's dump size and the page
    runs that exist (pagemap). ``elf_starts``: starts of mappings that begin with an ELF
    header (the modules). ``private_pages``: also find the anonymous (copied-on-write)
    pages of private file mappings (WithPrivateWriteCopyMemory).

    The target must be stopped. Where smaps or pagemap cannot be read the facts are
    left unknown (every page assumed to exist), never guessed smaller.
    """
    regions = list(regions)
    try:
        with open(f"/proc/{pid}/smaps", "rb") as f:
            smaps = parse_smaps(f.read().decode("utf-8", "surrogateescape"))
    except OSError:
        smaps = {}
    core_filter = read_coredump_filter(pid)
    try:
        fd: int | None = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = None
    try:
        out: list[Region] = []
        for r in regions:
            entry = smaps.get(r.start)
            flags = entry.vm_flags if entry is not None else frozenset()
            pages: tuple[tuple[int, int], ...] | None = None
            written: tuple[tuple[int, int], ...] | None = None
            readable = r.readable and "io" not in flags
            file_pages = maps_regular_file(r)
            # the vDSO's pages always exist (the kernel's own code and data), but a
            # clone's page tables do not show them: fork copies none for it
            whole = file_pages or r.path == "[vdso]"
            if readable and not whole and entry is not None and fd is not None:
                resident = entry.rss + entry.swap
                if resident == 0:
                    pages = ()
                elif resident < r.size:
                    pages = tuple(page_runs(fd, r.start, r.end))
            if private_pages and readable and file_pages and r.private:
                if entry is not None and entry.anonymous + entry.swap == 0:
                    written = ()
                elif fd is not None:
                    written = tuple(page_runs(fd, r.start, r.end, _PRIVATE))
            elif private_pages:
                written = ()
            out.append(VmArea(
                start=r.start, end=r.end, readable=r.readable, writable=r.writable,
                executable=r.executable, private=r.private, offset=r.offset, device=r.device,
                inode=r.inode, path=r.path, vm_flags=flags,
                core_dump_size=kernel_dump_size(r, entry, core_filter, r.start in elf_starts),
                pages=pages, written_pages=written))
        return out
    finally:
        if fd is not None:
            os.close(fd)
