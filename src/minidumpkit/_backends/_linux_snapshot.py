"""Snapshots on Linux: the :class:`~minidumpkit.snapshot.SnapshotBackend` of ptrace.

``LinuxSnapshot(pid, flags)`` stops every thread (:class:`~._ptrace.ProcessStop`),
captures what the flags name (threads and registers, fds, the address space, and
everything a dump's non-memory streams need), and with PssCaptureFlags.VA_CLONE
makes a copy-on-write clone of the address space (:mod:`._clone`), then releases
the target. Dumps are written later from that state:

* memory of private mappings is read from the clone (point in time);
* MAP_SHARED / shmem / memfd mappings (live in the clone) and MADV_DONTFORK /
  MADV_WIPEONFORK ones (absent / zeroed in it) are copied from the target while it
  is still stopped, up to ``frozen_limit`` bytes in all; what does not fit is read
  live when a dump is written and listed as not point-in-time in the dump's
  MinidumpkitSnapshot stream;
* without VA_CLONE every byte of memory is read from the live process when a dump
  is written (as PssCaptureSnapshot without VA_CLONE does on Windows).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import json
import os
import warnings
from typing import IO, BinaryIO, cast

from .. import format as md
from .._capture import CapturedThread, Region
from .._ffi import libc
from .._selection import DumpPolicy, never_read, select
from ..errors import ProcessError, ProcessNotFound, UnsupportedError
from ..flags import ContextFlags, MiniDumpType, PssCaptureFlags, StreamType
from ..snapshot import (
    SnapshotHandle,
    SnapshotProcessInfo,
    SnapshotRefused,
    SnapshotThread,
    SnapshotVaRegion,
)
from . import _clone, _memory, _procfs, _python_capture, linux
from ._ptrace import ProcessStop

__all__ = ["FROZEN_LIMIT", "SNAPSHOT_STREAM", "LinuxSnapshot"]

#: Bytes of mappings the clone cannot freeze (shared, DONTFORK, WIPEONFORK) copied
#: while the target is stopped; each byte costs pause (~4 GiB/s).
FROZEN_LIMIT = 32 << 20
SNAPSHOT_STREAM = md.MINIDUMPKIT_SNAPSHOT_STREAM

_F = PssCaptureFlags
_PAGE_NOACCESS, _PAGE_READONLY, _PAGE_READWRITE, _PAGE_WRITECOPY = 0x01, 0x02, 0x04, 0x08
_PAGE_EXECUTE, _PAGE_EXECUTE_READ, _PAGE_EXECUTE_READWRITE, _PAGE_EXECUTE_WRITECOPY = \
    0x10, 0x20, 0x40, 0x80
_MEM_PRIVATE, _MEM_MAPPED, _MEM_IMAGE = 0x20000, 0x40000, 0x1000000


def _protect(r: Region) -> int:
    if not (r.readable or r.writable or r.executable):
        return _PAGE_NOACCESS
    if r.executable:
        if r.writable:
            return _PAGE_EXECUTE_WRITECOPY if r.private and r.path.startswith("/") \
                else _PAGE_EXECUTE_READWRITE
        return _PAGE_EXECUTE_READ if r.readable else _PAGE_EXECUTE
    if r.writable:
        return _PAGE_WRITECOPY if r.private and r.path.startswith("/") else _PAGE_READWRITE
    return _PAGE_READONLY


def _overlaps(r: Region, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(s < r.end and r.start < e for s, e in ranges)


def _mask_context(ctx: md.ContextAMD64, flags: int, with_context: bool) -> md.ContextAMD64:
    """The context as PssCaptureSnapshot's ThreadContextFlags asked for it: parts not
    named are zeroed and left out of ContextFlags."""
    if not with_context:
        return dataclasses.replace(md.ContextAMD64.zero(), context_flags=int(ContextFlags.AMD64))
    wanted = int(flags) & int(ContextFlags.ALL)
    zero = md.ContextAMD64.zero()
    ctx = dataclasses.replace(ctx, context_flags=wanted)
    if not wanted & int(ContextFlags.FLOATING_POINT) & 0xFF:
        ctx = dataclasses.replace(ctx, flt_save=zero.flt_save, mx_csr=0)
    if not wanted & int(ContextFlags.DEBUG_REGISTERS) & 0xFF:
        ctx = dataclasses.replace(ctx, dr0=0, dr1=0, dr2=0, dr3=0, dr6=0, dr7=0)
    return ctx


class _FrozenBlocks:
    """Bytes copied from the stopped target, served by address (prefix semantics)."""

    def __init__(self, blocks: dict[int, bytes]) -> None:
        self._snap = linux.MemorySnapshot(blocks)

    def read(self, address: int, size: int) -> bytes:
        return self._snap.read(address, size)


class _SnapshotMemory:
    """Reads each mapping from where its point-in-time (or best) copy lives."""

    def __init__(self, regions: list[Region], source_of: dict[int, object]) -> None:
        self._regions = sorted(regions, key=lambda r: r.start)
        self._starts = [r.start for r in self._regions]
        self._source_of = source_of  # region.start → source with .read

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address < 0:
            return b""
        out = b""
        while size > 0:
            source, want = self._source(address, size)
            if source is None:
                break
            data = source.read(address, want)  # type: ignore[attr-defined]
            out += data
            if len(data) < want:
                break
            address += want
            size -= want
        return out

    def read_into(self, address: int, size: int, buf: bytearray) -> int:
        """:meth:`read` into ``buf`` (sources that can read in place do: the clone and
        the live process), for the writer's bulk copy."""
        if size <= 0 or address < 0:
            return 0
        view = memoryview(buf)
        done = 0
        while done < size:
            source, want = self._source(address + done, size - done)
            if source is None:
                break
            into = getattr(source, "read_into", None)
            if into is not None:
                # the caller's own buffer when reading from its start: sources cache
                # what they derive from it (cffi's view of it)
                got = into(address + done, want, buf if done == 0 else view[done:done + want])
            else:
                data = source.read(address + done, want)  # type: ignore[attr-defined]
                got = len(data)
                view[done:done + got] = data
            done += got
            if got < want:
                break
        return done

    def consumed(self, address: int, size: int) -> None:
        """Passed on to the source of ``address`` (the clone releases pages there)."""
        source, _ = self._source(address, size)
        consumed = getattr(source, "consumed", None)
        if consumed is not None:
            consumed(address, size)

    def _source(self, address: int, size: int) -> tuple[object | None, int]:
        """The source holding ``address`` and how many of ``size`` bytes it holds."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0 or not self._regions[i].contains(address):
            return None, 0
        region = self._regions[i]
        return self._source_of.get(region.start), min(size, region.end - address)


class LinuxSnapshot:
    """PSS semantics on Linux; see the module docstring and docs/snapshots.md.

    ``preflight_inputs`` replaces what the VA-clone preflight reads from /proc (tests).
    """

    def __init__(self, pid: int, flags: int | PssCaptureFlags,
                 context_flags: int | ContextFlags = ContextFlags.ALL, *,
                 preflight_inputs: _clone.PreflightInputs | None = None,
                 frozen_limit: int = FROZEN_LIMIT) -> None:
        self._clone: _clone.Clone | None = None  # first: close() must always work
        self._clone_memory: _clone.CloneMemory | None = None
        self._given_back = False  # a last write released (some of) the clone's memory
        self._readers: list[object] = []
        self._live_regions: set[int] = set()
        self._closed = False
        self.flags = _F(int(flags))
        self.context_flags = ContextFlags(int(context_flags))
        pid = linux.resolve_pid(pid)
        self.pid = pid
        if pid == os.getpid():
            raise UnsupportedError("a process cannot take a snapshot of itself (it would have "
                                   "to ptrace itself); use minidumpkit.dump(os.getpid(), path)")
        status = linux._read_status(pid)
        linux.check_target(pid, status)
        va_clone = bool(self.flags & _F.VA_CLONE)
        pre = _clone.preflight(pid, preflight_inputs) if va_clone else None
        libc.load()
        linux.system_info()
        machine = linux.machine_streams()
        capture_type = MiniDumpType.WithThreadInfo
        if self.flags & _F.HANDLES:  # reading every fd's link lengthens the pause
            capture_type |= MiniDumpType.WithHandleData
        if self.context_flags & ContextFlags.XSTATE & 0xFF:
            capture_type |= MiniDumpType.WithAvxXStateContext
        live = linux.ProcessMemory(pid)
        self._readers.append(live)
        self.frozen: list[dict[str, object]] = []
        self.not_point_in_time: list[dict[str, object]] = []
        self.clone_ns = 0
        self.fatal_window_ns = 0
        self._stub: dict[str, int] | None = None
        self._python: tuple[_python_capture.PythonCapture | None] | None = None
        try:
            stop = ProcessStop(pid)
            with stop:
                if va_clone and stop.group_stopped:
                    raise SnapshotRefused(
                        f"process {pid} is in a job-control stop; it cannot run the clone() a "
                        "VA-clone snapshot needs; dump it with snapshot='never'",
                        pid=pid, reason="stopped")
                cap = linux.capture(pid, stop, live, capture_type, machine)
                self._syscalls: dict[int, tuple[int, int]] = {}
                for tid in stop.tids:
                    try:
                        regs = stop.general_registers(tid)
                    except ProcessError:
                        continue
                    orig = regs["orig_rax"]
                    self._syscalls[tid] = (orig - (1 << 64) if orig >= 1 << 63 else orig,
                                           regs["rdi"])
                self._suspended = set(stop.group_stopped)
                self._proc = self._read_process_info(pid, len(cap.threads))
                source_of: dict[int, object] = {}
                if pre is not None:
                    frozen = self._freeze_unclonable(live, cap.regions, pre, frozen_limit)
                    self._clone = _clone.make_clone(stop, cap.regions)
                    clone_mem = _clone.CloneMemory(self._clone)
                    self._readers.append(clone_mem)
                    self._clone_memory = clone_mem
                    self.clone_ns = self._clone.clone_ns
                    self.fatal_window_ns = self._clone.fatal_window_ns
                    self._stub = {"address": self._clone.stub_address,
                                  "size": len(self._clone.original),
                                  "thread": self._clone.injected_tid}
                    for r in cap.regions:
                        source_of[r.start] = frozen.get(r.start, clone_mem)
                        if r.start in self._live_regions:
                            source_of[r.start] = live
                else:
                    for r in cap.regions:
                        source_of[r.start] = live
            self.pause_ns = stop.detached_ns - stop.stop_started_ns
            if self._clone is not None:
                self._check_clone_maps(cap.regions, source_of, live)
            # Which pages exist and what the kernel would dump (smaps, pagemap), for the
            # bulk-memory dump types; after the release: from the clone, whose pages are
            # the target's at capture time (a mapping the clone lacks stays "unknown",
            # i.e. read whole).
            elf_starts = frozenset(m.base for m in cap.modules)
            annotated = _memory.annotate(
                self._clone.pid if self._clone is not None else pid, cap.regions,
                elf_starts=elf_starts, private_pages=True)
            if self._clone is not None:
                # fork copies no page tables of shared mappings and none of DONTFORK
                # ones: the clone's pagemap says nothing about their pages; the target's does
                special = {r.start for r in cap.regions
                           if not r.private or not isinstance(source_of.get(r.start),
                                                              _clone.CloneMemory)}
                own = {r.start: r for r in _memory.annotate(
                    pid, [r for r in cap.regions if r.start in special],
                    elf_starts=elf_starts, private_pages=True)}
                annotated = [own.get(r.start, r) for r in annotated]
            cap.regions = annotated
        except BaseException:
            self.close()
            raise
        self.capture_method = md.CAPTURE_VA_CLONE if va_clone else md.CAPTURE_SNAPSHOT_LIVE
        self._cap = cap
        self._memory = _SnapshotMemory(cap.regions, source_of)

    # --- capture helpers --------------------------------------------------------------

    def _freeze_unclonable(self, live: linux.ProcessMemory, regions: list[Region],
                           pre: _clone.PreflightResult, limit: int) -> dict[int, object]:
        """Copy, while stopped, the mappings a clone would not hold as they are now."""
        self._live_regions = set()
        wanted: list[tuple[Region, str]] = []
        for r in regions:
            if not r.readable or never_read(r):
                continue
            if _overlaps(r, pre.not_copied):
                wanted.append((r, "dontfork"))
            elif _overlaps(r, pre.wiped):
                wanted.append((r, "wipeonfork"))
            elif not r.private:
                wanted.append((r, "shared"))
        budget = limit
        take: list[tuple[Region, str]] = []
        for r, why in wanted:
            entry = {"start": r.start, "end": r.end, "path": r.path, "why": why}
            if r.size <= budget:
                budget -= r.size
                take.append((r, why))
                self.frozen.append(entry)
            else:
                self._live_regions.add(r.start)
                self.not_point_in_time.append(entry)
        blocks: dict[int, bytes] = {}
        ranges = [(r.start, r.size) for r, _ in take]
        for (start, _size), data in zip(ranges, live.read_many(ranges), strict=True):
            blocks[start] = data
        return {start: _FrozenBlocks({start: data}) for start, data in blocks.items()}

    def _check_clone_maps(self, regions: list[Region], source_of: dict[int, object],
                          live: linux.ProcessMemory) -> None:
        """A mapping the clone lacks (DONTFORK set after the preflight read smaps) and
        that was not frozen is read live and marked."""
        assert self._clone is not None
        try:
            text = _procfs.read_text(f"/proc/{self._clone.pid}/maps", self._clone.pid)
        except ProcessError:
            return
        present = {(r.start, r.end) for r in _procfs.parse_maps(text)}
        for r in regions:
            src = source_of.get(r.start)
            if (r.start, r.end) not in present and isinstance(src, _clone.CloneMemory) \
                    and r.readable and not never_read(r):
                source_of[r.start] = live
                self.not_point_in_time.append({"start": r.start, "end": r.end, "path": r.path,
                                               "why": "absent_from_clone"})

    @staticmethod
    def _read_process_info(pid: int, threads: int) -> SnapshotProcessInfo:
        st = _procfs.read_stat(pid)
        status = _procfs.parse_status(_procfs.read_text(f"/proc/{pid}/status", pid))
        raw = _procfs.read_text(f"/proc/{pid}/stat", pid)
        rest = raw[raw.rindex(")") + 2:].split()

        def kib(key: str) -> int:
            try:
                return int(status.get(key, "0 kB").split()[0]) * 1024
            except (ValueError, IndexError):
                return 0

        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = st.comm
        return SnapshotProcessInfo(
            pid=pid, parent_pid=st.ppid, image_file_name=exe,
            create_time=_procfs.start_filetime(st.starttime),
            user_time=_procfs.ticks_to_filetime_units(st.utime),
            kernel_time=_procfs.ticks_to_filetime_units(st.stime),
            virtual_size=kib("VmSize"), peak_virtual_size=kib("VmPeak"),
            working_set_size=kib("VmRSS"), peak_working_set_size=kib("VmHWM"),
            page_fault_count=int(rest[7]) + int(rest[9]), thread_count=threads,
            base_priority=int(rest[15]))

    # --- the walks ----------------------------------------------------------------------

    def threads(self) -> list[SnapshotThread]:
        self._check_open()
        if not self.flags & _F.THREADS:
            return []
        with_ctx = bool(self.flags & _F.THREAD_CONTEXT)
        return [SnapshotThread(
            tid=t.tid, pid=self.pid, name=t.name, teb=t.teb, start_address=t.start_address,
            affinity=t.affinity, create_time=t.create_time, user_time=t.user_time,
            kernel_time=t.kernel_time, suspended=t.tid in self._suspended,
            last_syscall_number=self._syscalls.get(t.tid, (-1, 0))[0],
            last_syscall_first_argument=self._syscalls.get(t.tid, (-1, 0))[1],
            context=_mask_context(t.context, self.context_flags, True) if with_ctx else None)
            for t in self._cap.threads]

    def handles(self) -> list[SnapshotHandle]:
        self._check_open()
        if not self.flags & _F.HANDLES:
            return []
        return [SnapshotHandle(handle=h.handle, type_name=h.type_name, object_name=h.object_name,
                               attributes=h.attributes, granted_access=h.granted_access)
                for h in self._cap.handles]

    def va_space(self) -> list[SnapshotVaRegion]:
        self._check_open()
        if not self.flags & _F.VA_SPACE:
            return []
        images = [(m.base, m.base + m.size) for m in self._cap.modules]
        live = {e["start"] for e in self.not_point_in_time}
        out = []
        for r in self._cap.regions:
            image = any(s <= r.start < e for s, e in images)
            kind = _MEM_IMAGE if image else _MEM_MAPPED if (r.path.startswith("/") or
                                                           not r.private) else _MEM_PRIVATE
            out.append(SnapshotVaRegion(
                base_address=r.start, region_size=r.size, protect=_protect(r), type=kind,
                allocation_base=r.start, allocation_protect=_protect(r),
                mapped_file_name=r.path,
                point_in_time=bool(self.flags & _F.VA_CLONE) and r.start not in live))
        return out

    def process_info(self) -> SnapshotProcessInfo:
        self._check_open()
        return self._proc

    # --- writing ------------------------------------------------------------------------

    def details(self) -> dict[str, object]:
        """What the dump's MinidumpkitSnapshot stream records (JSON)."""
        return {
            "capture": "va_clone" if self._clone is not None else "snapshot_live",
            "flags": int(self.flags),
            "pause_ns": self.pause_ns,
            "clone_ns": self.clone_ns,
            "fatal_window_ns": self.fatal_window_ns,
            "stub": self._stub,
            "frozen_while_stopped": self.frozen,
            "not_point_in_time": self.not_point_in_time if self._clone is not None
            else [{"start": 0, "end": 1 << 64, "path": "", "why": "no_va_clone"}],
        }

    def write(self, out: IO[bytes], dump_type: MiniDumpType,
              policy: DumpPolicy | None, *, last: bool = False,
              all_memory: bool = False, python: bool = True) -> linux.DumpTimes:
        """Write a dump of the snapshot to ``out``. ``last``: no dump will follow, so
        the clone's pages are given back as the bulk memory is written. ``all_memory``:
        WithFullMemory copies every readable page (see ``_selection.select``).
        ``python``: add the target's CPython runtime memory and stream, walked in the
        snapshot's memory (the clone's, frozen; live without VA_CLONE)."""
        from ..writer import SUPPORTED_TYPES, flag_names, write_minidump

        self._check_open()
        if self._given_back:
            raise ValueError("the snapshot's memory was given back by its last write "
                             "(write(..., close=True)); take a new snapshot")
        unsupported = dump_type & ~SUPPORTED_TYPES
        if unsupported:
            raise UnsupportedError(
                f"MiniDumpType.{flag_names(unsupported)} is not implemented by the Linux "
                f"writer yet (it writes {flag_names(SUPPORTED_TYPES)}); leave it out")
        cap = self._cap
        with_threads = bool(self.flags & _F.THREADS)
        with_ctx = bool(self.flags & _F.THREAD_CONTEXT)
        threads: list[CapturedThread] = [
            dataclasses.replace(t, context=_mask_context(t.context, self.context_flags, with_ctx))
            for t in cap.threads] if with_threads else []
        raw = dict(cap.raw_streams)
        raw[SNAPSHOT_STREAM] = json.dumps(self.details(), sort_keys=True).encode()
        py = self._python_capture() if python else None
        if py is not None:
            raw[StreamType.MinidumpkitPythonStream] = py.stream
        view = dataclasses.replace(
            cap, threads=threads, memory=self._memory,
            exception=cap.exception if threads else None,
            handles=list(cap.handles) if self.flags & _F.HANDLES else [],
            raw_streams=raw, capture_method=self.capture_method, pause_ns=self.pause_ns)
        if policy is None:
            policy = DumpPolicy()
        checkpoint = linux._Planned(policy).checkpoint
        sel = select(view, dump_type, policy, checkpoint, all_memory=all_memory)
        if py is not None:
            _python_capture.add_to_selection(sel, py.ranges)
        clone_mem = self._clone_memory
        if last and clone_mem is not None:
            clone_mem.releasing = True
            self._given_back = True
        try:
            stats = write_minidump(view, cast(BinaryIO, out), dump_type, policy=policy,
                                   selection=sel)
        finally:
            if clone_mem is not None:
                clone_mem.flush_release()
                clone_mem.releasing = False
        return linux.DumpTimes(threads=len(threads), stop_ns=0, pause_ns=self.pause_ns,
                               stats=stats)

    def _python_capture(self) -> _python_capture.PythonCapture | None:
        """The walk of the snapshot's CPython runtime, made once: a VA-clone snapshot's
        memory does not change, so every dump of it holds the same walk."""
        if self._python is None or self._clone is None:
            self._python = (_python_capture.capture_python(
                self._memory, self._cap.modules,
                time_limit=_python_capture.SNAPSHOT_TIME_LIMIT),)
        return self._python[0]

    # --- freeing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the snapshot is closed")

    def close(self) -> None:
        """Kill and collect the clone, have the target reap its zombie, close readers."""
        self._closed = True
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()  # type: ignore[attr-defined]
        clone, self._clone = self._clone, None
        if clone is None:
            return
        clone.kill()
        try:
            _clone.reap_clone_zombie(clone.parent, clone.pid)
        except (ProcessError, SnapshotRefused) as exc:
            if exc.__class__ is ProcessNotFound or getattr(exc, "errno", 0) == errno.ESRCH:
                return
            # The clone is dead whatever happened: what is left is its zombie, a child of
            # the target until the target exits or waits for it (as after a killed
            # dumper). Raising here would turn a complete, published dump into an error:
            # the target racing an execve refuses the short stop (found by tests/stress,
            # with an EPERM that could not be told from a refusal within 50 ms).
            warnings.warn(f"the snapshot's clone {clone.pid} was killed but its zombie was "
                          f"not collected: {exc}; it stays a child of process "
                          f"{clone.parent} until that exits", RuntimeWarning, stacklevel=2)
