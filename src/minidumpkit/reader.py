"""Read minidumps (MDMP) written by anyone: dbghelp, Breakpad, Crashpad, Wine, minidumpkit.

    with minidumpkit.open_minidump("app.dmp") as d:
        d.system_info.os, d.exception.reason
        for t in d.threads: t.thread_id, t.name, t.pc
        d.memory.read(address, 64)

A path is memory-mapped; bytes and file objects work too. Nothing is parsed until a
property is first used, and each result is cached. Every byte the reader touches goes
through :meth:`Minidump._span`, which checks it against the file (and, inside a stream,
against the stream) and raises :class:`~minidumpkit.MinidumpFormatError` with the file
offset and stream type; list lengths are checked against the bytes that hold them before
any list is built, so a hostile count cannot make the reader allocate more than the
file justifies.

Tolerated on purpose (each seen in real dumps): stream directories padded with
``UnusedStream`` entries; unaligned RVAs; unknown stream types (kept raw); duplicate
stream types (the first entry wins, as a directory scan in dbghelp does; rust-minidump
keeps the last, Breakpad and lldb refuse such files); 4 bytes of padding after the
count of a thread/module/memory list; list entries larger than the record we know
(newer writers); overlapping or duplicated memory ranges (the range starting first
wins); a context too small for its CPU (``context`` is None).
"""

from __future__ import annotations

import bisect
import errno
import io
import json
import mmap
import os
import stat
import struct
from array import array
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import BinaryIO, TypeVar, Union, cast

from . import _streams as s
from . import format as md
from ._closing import Closeable
from ._streams import (
    BreakpadInfo,
    CodeView,
    Context,
    CrashpadAnnotation,
    CrashpadInfo,
    DsoDebug,
    ExceptionInfo,
    Handle,
    LinkMap,
    LinuxMapping,
    MemoryRange,
    MemoryRegionInfo,
    MinidumpkitInfo,
    MinidumpkitPython,
    MiscInfo,
    Module,
    ModuleCrashpadInfo,
    StreamInfo,
    SystemInfo,
    Thread,
    ThreadInfo,
    ThreadState,
    UnloadedModule,
)
from ._streams import ModuleList, ThreadList
from .errors import (
    MemoryNotCaptured,
    MinidumpFormatError,
    NotARegularFileError,
    PathIsADirectoryError,
)
from .flags import MiniDumpType, StreamType

__all__ = ["Memory", "Minidump", "Source", "open_minidump"]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]
R = TypeVar("R", bound=md.Record)

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_DESCRIPTOR = struct.Struct("<QII")  # MINIDUMP_MEMORY_DESCRIPTOR
_DESCRIPTOR64 = struct.Struct("<QQ")  # MINIDUMP_MEMORY_DESCRIPTOR64


def _open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file; refuse anything else at once
    (opening a FIFO for reading waits for a writer; a device may have side effects)."""
    user = os.fspath(path)
    st = os.stat(user)  # follows a symlink; FileNotFoundError & co. as open() gives them
    _require_regular(st.st_mode, user)
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    fd = os.open(user, flags)  # O_NONBLOCK: never wait, should a FIFO be swapped in
    try:
        _require_regular(os.fstat(fd).st_mode, user)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _require_regular(mode: int, path: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise PathIsADirectoryError(errno.EISDIR, f"{path} is a directory, not a minidump",
                                    path)
    what = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a character device" if stat.S_ISCHR(mode) else
            "a block device" if stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise NotARegularFileError(errno.EINVAL, f"{path} is {what}, not a minidump file", path)


# The longest MINIDUMP_STRING accepted, in bytes: a UNICODE_STRING's largest length.
MAX_STRING_BYTES = 0xFFFE


def open_minidump(source: Source) -> Minidump:
    """Open a minidump from a path, bytes-like object or binary file object.

    Raises :class:`~minidumpkit.MinidumpFormatError` if it is not a minidump (bad
    signature or version, directory outside the file) and OSError if it cannot be read.
    A path must name a regular file (a symbolic link to one is fine): a directory
    raises :class:`~minidumpkit.PathIsADirectoryError`, a FIFO, device or socket
    :class:`~minidumpkit.NotARegularFileError` at once, without reading from it.
    Use it as a context manager, or call :meth:`Minidump.close`.
    """
    return Minidump(source)


class Minidump(Closeable):
    """An open minidump. Properties parse their stream on first use and cache it.

    A property whose stream is absent is None (lists: empty). A stream that is present
    but malformed raises :class:`~minidumpkit.MinidumpFormatError` from that property
    only; the rest of the dump stays readable.
    """

    _buf: mmap.mmap | bytes | None = None  # class default: close()/__del__ work if __init__ fails
    _mmap: mmap.mmap | None = None
    _name: str | None = None  # the path (or file object's name) it was opened from
    # (not the full repr: a finaliser, maybe at interpreter exit, parses nothing)
    _UNCLOSED = "unclosed minidump {0._identity}"

    def __init__(self, source: Source) -> None:
        if isinstance(source, (str, os.PathLike)):
            self._name = os.fspath(source)
        elif isinstance(getattr(source, "name", None), str):
            self._name = source.name  # type: ignore[union-attr]
        self._buf = self._load(source)
        self._size = len(self._buf)
        raw = self._record(md.Header, 0, what="header")
        if raw.signature != md.SIGNATURE:
            if raw.signature == 0x4D444D50:
                raise MinidumpFormatError("big-endian minidumps are not supported", offset=0)
            raise MinidumpFormatError(
                f"not a minidump: signature 0x{raw.signature:08x}, expected 'MDMP'", offset=0)
        if raw.version & 0xFFFF != md.VERSION:
            raise MinidumpFormatError(
                f"unsupported minidump version 0x{raw.version & 0xFFFF:04x} "
                f"(expected 0x{md.VERSION:04x})", offset=4)
        self.header: md.Header = md.Header(
            raw.signature, raw.version, raw.stream_count, raw.stream_directory_rva,
            raw.checksum, raw.time_date_stamp, MiniDumpType(raw.flags))
        """MINIDUMP_HEADER; ``flags`` is the MiniDumpType the writer was asked for."""
        self._span(raw.stream_directory_rva, raw.stream_count * md.Directory.SIZE,
                   what=f"stream directory of {raw.stream_count} entries")
        streams: list[StreamInfo] = []
        self._index: dict[int, StreamInfo] = {}
        for i in range(raw.stream_count):
            entry = self._record(md.Directory, raw.stream_directory_rva + i * md.Directory.SIZE,
                                 what="directory entry")
            info = StreamInfo(i, s.stream_type(entry.stream_type), entry.location.data_size,
                              entry.location.rva)
            streams.append(info)
            if entry.stream_type != StreamType.UnusedStream:
                self._index.setdefault(entry.stream_type, info)  # first of duplicates wins
        self.streams: list[StreamInfo] = s._ShortList(streams)
        """Every directory entry in file order, ``UnusedStream`` padding included."""

    # --- lifetime ----------------------------------------------------------------------

    def _load(self, source: Source) -> mmap.mmap | bytes:
        if isinstance(source, bytes):
            return source
        if isinstance(source, (bytearray, memoryview)):
            return bytes(source)  # a private copy: the caller may mutate theirs
        if isinstance(source, (str, os.PathLike)):
            with _open_regular_file(source) as f:
                return self._map(f)
        if hasattr(source, "read"):
            try:
                source.fileno()
            except (AttributeError, OSError, io.UnsupportedOperation):
                data = source.read()
                if not isinstance(data, bytes):
                    raise TypeError("the file object must be opened in binary mode")
                return data
            return self._map(source)
        raise TypeError(f"cannot open a minidump from {type(source).__name__}: "
                        "pass a path, bytes or a binary file object")

    def _map(self, f: BinaryIO) -> mmap.mmap | bytes:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # a pipe the caller opened: read it to the end
            data = f.read()
            if not isinstance(data, bytes):
                raise TypeError("the file object must be opened in binary mode")
            return data
        if st.st_size == 0:
            return b""  # mmap refuses empty files; the header check reports it
        self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mmap

    def close(self) -> None:
        """Release the file mapping. Idempotent; parsed results stay usable, reads do not."""
        self._buf = None
        mm, self._mmap = self._mmap, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # someone still holds a buffer of it: it goes with them
                pass

    @property
    def closed(self) -> bool:
        return self._buf is None

    def _open(self) -> bool:
        return self._mmap is not None

    @property
    def _identity(self) -> str:
        """The repr of a dump that is closed, half-made or being finalised."""
        name = f"{os.path.basename(self._name)!r} " if self._name else ""
        state = "closed" if self.closed else f"{getattr(self, '_size', 0)} bytes"
        return f"<Minidump {name}{len(getattr(self, 'streams', ()))} streams, {state}>"

    def __repr__(self) -> str:
        if self.closed or "streams" not in self.__dict__:
            return self._identity
        name = f"{os.path.basename(self._name)!r} " if self._name else ""
        return f"<Minidump {name}{', '.join(self._summary())}>"

    def _summary(self, reason: bool = True) -> list[str]:
        """The facts a repr shows, each left out if its stream is damaged; ``reason``:
        with why the dump was written."""
        parts: list[str] = []

        def add(fact: Callable[[], str | None]) -> None:
            try:
                text = fact()
            except Exception:  # noqa: BLE001 - a damaged stream: repr() must not raise
                return
            if text:
                parts.append(text)

        def system() -> str | None:
            info = self._basic_system()
            return None if info is None else f"{info.os} {info.cpu}"

        def pid() -> str | None:
            return None if self.process_id is None else f"pid {self.process_id}"

        def why() -> str | None:
            exc = self.exception
            if exc is None:
                return None
            if exc.requested:
                return f"requested by thread {exc.thread_id}"
            return f"{exc.reason} in thread {exc.thread_id}"

        add(system)
        add(pid)
        add(lambda: f"{len(self.threads)} threads")
        add(lambda: f"{len(self.modules)} modules")
        add(lambda: f"{s._size(self.memory.total_size)} memory")
        if reason:
            add(why)
        return parts

    def _repr_html_(self) -> str | None:
        """The notebook view (IPython's rich display): see :mod:`minidumpkit._display`."""
        from . import _display

        return _display.html_of(self)

    # --- the one bounds check ----------------------------------------------------------

    def _span(self, rva: int, size: int, what: str, stream_type: int | None = None,
              within: tuple[int, int] | None = None) -> None:
        """Check that ``size`` bytes at file offset ``rva`` lie in the file and in ``within``.

        ``within`` is (start, end) of the enclosing stream; None means the whole file.
        """
        if self._buf is None:
            raise ValueError("I/O operation on a closed minidump")
        end = rva + size
        if (rva < 0 or size < 0 or end > self._size
                or (within is not None and (rva < within[0] or end > within[1]))):
            where = ("the file" if within is None
                     else f"its stream (0x{within[0]:x}..0x{within[1]:x})")
            raise MinidumpFormatError(
                f"{what}: {size} bytes at 0x{rva:x} lie outside {where}; "
                f"the file has {self._size} bytes",
                offset=rva, stream_type=stream_type)

    def _bytes(self, rva: int, size: int, what: str, stream_type: int | None = None,
               within: tuple[int, int] | None = None) -> bytes:
        self._span(rva, size, what, stream_type, within)
        return self._buf[rva:rva + size]  # type: ignore[index]  # _span: not None

    def _record(self, cls: type[R], rva: int, *, what: str, stream_type: int | None = None,
                within: tuple[int, int] | None = None) -> R:
        self._span(rva, cls.SIZE, what=what, stream_type=stream_type, within=within)
        return cls.unpack_from(cast(bytes, self._buf), rva)  # an mmap is a buffer too

    def _u32(self, rva: int, *, what: str, stream_type: int | None = None,
             within: tuple[int, int] | None = None) -> int:
        self._span(rva, 4, what=what, stream_type=stream_type, within=within)
        assert self._buf is not None
        value: int = _U32.unpack_from(self._buf, rva)[0]
        return value

    def _string(self, rva: int, *, what: str, stream_type: int | None = None) -> str:
        """A MINIDUMP_STRING (u32 byte length, UTF-16LE); the NUL after it is optional."""
        length = self._u32(rva, what=what, stream_type=stream_type)
        if length > MAX_STRING_BYTES:
            # Windows strings are UNICODE_STRINGs (at most 0xFFFE bytes); a longer length
            # is damage, and taken on trust it would copy and decode most of the file
            # once per string that points at it
            raise MinidumpFormatError(f"{what} claims {length} bytes (at most "
                                      f"{MAX_STRING_BYTES})", offset=rva, stream_type=stream_type)
        data = self._bytes(rva + 4, length, what=what, stream_type=stream_type)
        return data.decode("utf-16-le", "replace").rstrip("\0")

    # --- streams -----------------------------------------------------------------------

    def stream(self, stream_type: int) -> StreamInfo | None:
        """The directory entry of ``stream_type`` (the first one if repeated), or None."""
        return self._index.get(int(stream_type))

    def raw_stream(self, stream_type: int) -> bytes | None:
        """The bytes of a stream (any type, known or not), or None if absent."""
        info = self._located(stream_type)
        if info is None:
            return None
        return self._bytes(info.rva, info.data_size, what=f"{info.name} stream",
                           stream_type=int(info.type))

    def _located(self, stream_type: int, min_size: int = 0) -> StreamInfo | None:
        info = self._index.get(int(stream_type))
        if info is None:
            return None
        st = int(info.type)
        self._span(info.rva, info.data_size, what=f"{info.name} stream", stream_type=st)
        if info.data_size < min_size:
            raise MinidumpFormatError(
                f"{info.name} stream is {info.data_size} bytes, needs at least {min_size}",
                offset=info.rva, stream_type=st)
        return info

    def _list(self, stream_type: StreamType, entry_size: int) -> tuple[StreamInfo, int, int] | None:
        """(stream, offset of the first entry, count) of a u32-counted list stream."""
        info = self._located(stream_type, 4)
        if info is None:
            return None
        st = int(stream_type)
        count = self._u32(info.rva, what=f"{info.name} count", stream_type=st)
        needed = 4 + count * entry_size
        if needed > info.data_size:
            raise MinidumpFormatError(
                f"{info.name}: {count} entries of {entry_size} bytes do not fit in "
                f"the stream's {info.data_size} bytes", offset=info.rva, stream_type=st)
        # Some dbghelp versions pad the count to 8 bytes (rust-minidump and Breakpad allow it).
        first = info.rva + (8 if info.data_size - needed == 4 else 4)
        return info, first, count

    def _ex_list(self, stream_type: StreamType, header_size: int, entry_size: int,
                 ) -> tuple[StreamInfo, int, int, int] | None:
        """(stream, first entry, stride, count) of a list with SizeOfHeader/SizeOfEntry."""
        info = self._located(stream_type, 12)
        if info is None:
            return None
        st = int(stream_type)
        within = (info.rva, info.rva + info.data_size)
        size_of_header = self._u32(info.rva, what=f"{info.name} header", stream_type=st)
        stride = self._u32(info.rva + 4, what=f"{info.name} header", stream_type=st)
        if stream_type == StreamType.MemoryInfoListStream:
            self._span(info.rva, 16, what=f"{info.name} header", stream_type=st, within=within)
            assert self._buf is not None
            count: int = _U64.unpack_from(self._buf, info.rva + 8)[0]
        else:
            count = self._u32(info.rva + 8, what=f"{info.name} header", stream_type=st,
                              within=within)
        if size_of_header < header_size or stride < entry_size:
            raise MinidumpFormatError(
                f"{info.name}: header/entry sizes {size_of_header}/{stride} are smaller "
                f"than the {header_size}/{entry_size} bytes of the format",
                offset=info.rva, stream_type=st)
        self._span(info.rva + size_of_header, count * stride,
                   what=f"{info.name}: {count} entries of {stride} bytes", stream_type=st,
                   within=within)
        return info, info.rva + size_of_header, stride, count

    def _list_records(self, found: tuple[StreamInfo, int, int], cls: type[R], what: str,
                      stream_type: StreamType) -> Iterator[R]:
        """The entries of a u32-counted list stream that :meth:`_list` found."""
        info, first, count = found
        within = (info.rva, info.rva + info.data_size)
        for i in range(count):
            yield self._record(cls, first + i * cls.SIZE, what=what, stream_type=stream_type,
                               within=within)

    def _ex_records(self, stream_type: StreamType, header_size: int, cls: type[R],
                    what: str) -> Iterator[R]:
        """The entries of a SizeOfHeader/SizeOfEntry list stream (none if it is absent)."""
        found = self._ex_list(stream_type, header_size, cls.SIZE)
        if found is None:
            return
        _, first, stride, count = found
        for i in range(count):
            yield self._record(cls, first + i * stride, what=what, stream_type=stream_type)

    # --- system -------------------------------------------------------------------------

    @cached_property
    def _system_raw(self) -> md.SystemInfo | None:
        info = self._located(StreamType.SystemInfoStream, md.SystemInfo.SIZE)
        if info is None:
            return None
        return self._record(md.SystemInfo, info.rva, what="SystemInfo",
                            stream_type=StreamType.SystemInfoStream)

    @cached_property
    def system_info(self) -> SystemInfo | None:
        """SystemInfoStream: OS, version, CPU. None if the dump has none."""
        raw = self._system_raw
        if raw is None:
            return None
        st = StreamType.SystemInfoStream
        csd = (self._string(raw.csd_version_rva, what="CSD version string", stream_type=st)
               if raw.csd_version_rva else None)
        vendor = None
        if raw.processor_architecture == md.ProcessorArchitecture.X86:
            # x86 CPU_INFORMATION starts with the CPUID vendor string (other CPUs: features)
            vendor = raw.cpu[:12].decode("ascii", "replace").rstrip("\0") or None
        return SystemInfo(
            architecture=s.architecture(raw.processor_architecture),
            platform=s.platform(raw.platform_id),
            processor_level=raw.processor_level,
            processor_revision=raw.processor_revision,
            number_of_processors=raw.number_of_processors,
            product_type=raw.product_type,
            major_version=raw.major_version,
            minor_version=raw.minor_version,
            build_number=raw.build_number,
            csd_version=csd,
            suite_mask=raw.suite_mask,
            cpu_vendor=vendor,
            raw=raw,
        )

    def _basic_system(self) -> SystemInfo | None:
        """SystemInfo without its CSD string: what decoding contexts and ids needs, and
        a damaged CSD string need not break threads and modules."""
        raw = self._system_raw
        if raw is None:
            return None
        return SystemInfo(s.architecture(raw.processor_architecture), s.platform(raw.platform_id),
                          raw.processor_level, raw.processor_revision, raw.number_of_processors,
                          raw.product_type, raw.major_version, raw.minor_version,
                          raw.build_number, None, raw.suite_mask, None, raw)

    @cached_property
    def misc_info(self) -> MiscInfo | None:
        """MiscInfoStream (MINIDUMP_MISC_INFO .. _5, the largest the stream holds)."""
        st = StreamType.MiscInfoStream
        info = self._located(st, md.MiscInfo.SIZE)
        if info is None:
            return None
        size_of_info = self._u32(info.rva, what="MiscInfo size", stream_type=st)
        limit = min(size_of_info, info.data_size)
        version, cls = next(((5 - i, c) for i, c in enumerate(md.MISC_INFO_VERSIONS)
                             if c.SIZE <= limit), (1, md.MiscInfo))
        raw = self._record(cls, info.rva, what="MiscInfo", stream_type=st)
        flags = md.MiscInfoFlags(raw.flags1)  # type: ignore[attr-defined]

        def field(name: str, flag: md.MiscInfoFlags) -> int | None:
            value = getattr(raw, name, None)
            return value if value is not None and flag in flags else None

        def text(name: str, flag: md.MiscInfoFlags | None = None) -> str | None:
            value = getattr(raw, name, None)
            if value is None or (flag is not None and flag not in flags):
                return None
            return bytes(value).decode("utf-16-le", "replace").split("\0", 1)[0]

        times = md.MiscInfoFlags.PROCESS_TIMES
        power = md.MiscInfoFlags.PROCESSOR_POWER_INFO
        create = field("process_create_time", times)
        return MiscInfo(
            version=version,
            flags1=flags,
            process_id=field("process_id", md.MiscInfoFlags.PROCESS_ID),
            process_create_time=s.unix_time(create) if create is not None else None,
            process_user_time=field("process_user_time", times),
            process_kernel_time=field("process_kernel_time", times),
            processor_max_mhz=field("processor_max_mhz", power),
            processor_current_mhz=field("processor_current_mhz", power),
            processor_mhz_limit=field("processor_mhz_limit", power),
            process_integrity_level=field("process_integrity_level",
                                          md.MiscInfoFlags.PROCESS_INTEGRITY),
            process_execute_flags=field("process_execute_flags",
                                        md.MiscInfoFlags.PROCESS_EXECUTE_FLAGS),
            protected_process=field("protected_process", md.MiscInfoFlags.PROTECTED_PROCESS),
            time_zone_id=field("time_zone_id", md.MiscInfoFlags.TIMEZONE),
            build_string=text("build_string", md.MiscInfoFlags.BUILDSTRING),
            dbg_bld_str=text("dbg_bld_str", md.MiscInfoFlags.BUILDSTRING),
            process_cookie=field("process_cookie", md.MiscInfoFlags.PROCESS_COOKIE),
            raw=raw,
        )

    @property
    def process_id(self) -> int | None:
        """The dumped process id, from MiscInfo or (Linux dumps) LinuxProcStatus."""
        misc = self.misc_info
        if misc is not None and misc.process_id is not None:
            return misc.process_id
        status = self.linux_proc_status
        if status is not None:
            try:
                return int(status.get("Tgid") or status.get("Pid") or "")
            except ValueError:
                return None
        return None

    # --- contexts and threads ----------------------------------------------------------

    def _context(self, loc: md.Location, stream_type: int) -> Context | None:
        """Decode a CONTEXT by the dump's CPU; None if empty, foreign or too small."""
        if loc.data_size == 0:
            return None
        self._span(loc.rva, loc.data_size, what="thread context", stream_type=stream_type)
        assert self._buf is not None
        raw = self._system_raw
        arch = raw.processor_architecture if raw is not None else None
        size = loc.data_size
        flags_x86 = _U32.unpack_from(self._buf, loc.rva)[0] if size >= 4 else 0
        flags_amd64 = _U32.unpack_from(self._buf, loc.rva + 0x30)[0] if size >= 0x34 else 0
        amd64 = md.ProcessorArchitecture.AMD64
        x86 = md.ProcessorArchitecture.X86
        if size >= md.ContextAMD64.SIZE and (
                arch == amd64 or (arch is None and flags_amd64 & md.CONTEXT_AMD64)):
            return self._record(md.ContextAMD64, loc.rva, what="thread context",
                                stream_type=stream_type)
        if size >= md.ContextX86.SIZE and (
                arch == x86 or ((arch is None or arch == amd64) and flags_x86 & md.CONTEXT_X86
                                and not flags_x86 & md.CONTEXT_AMD64)):
            return self._record(md.ContextX86, loc.rva, what="thread context",  # or WOW64
                                stream_type=stream_type)
        arm_family = arch is None or arch in (md.ProcessorArchitecture.ARM64,
                                              md.ProcessorArchitecture.ARM64_OLD,
                                              md.ProcessorArchitecture.ARM)
        if not arm_family:
            return None
        # The arm contexts are told apart by their flag word, as rust-minidump and
        # Breakpad do: Breakpad's old arm64 layout is used with either architecture code.
        cls: type[Context] | None = None
        if flags_x86 & md.CONTEXT_ARM64_OLD and size >= md.ContextARM64Old.SIZE:
            cls = md.ContextARM64Old
        elif flags_x86 & md.CONTEXT_ARM64 and size >= md.ContextARM64.SIZE:
            cls = md.ContextARM64
        elif flags_x86 & md.CONTEXT_ARM and size >= md.ContextARM.SIZE:
            cls = md.ContextARM
        if cls is None:
            return None
        return self._record(cls, loc.rva, what="thread context", stream_type=stream_type)

    @cached_property
    def thread_names(self) -> dict[int, str]:
        """ThreadNamesStream as {thread id: name} (empty if absent)."""
        st = StreamType.ThreadNamesStream
        found = self._list(st, md.ThreadName.SIZE)
        if found is None:
            return {}
        names: dict[int, str] = {}
        for entry in self._list_records(found, md.ThreadName, "thread name entry", st):
            if entry.rva_of_thread_name:
                name = self._string(entry.rva_of_thread_name, what="thread name", stream_type=st)
                names.setdefault(entry.thread_id, name)
        return names

    @cached_property
    def threads(self) -> ThreadList:
        """ThreadList (or ThreadExList) entries with names, contexts and lazy stacks."""
        st = StreamType.ThreadListStream
        cls: type[md.Thread | md.ThreadEx] = md.Thread
        found = self._list(st, md.Thread.SIZE)
        if found is None:
            st, cls = StreamType.ThreadExListStream, md.ThreadEx
            found = self._list(st, md.ThreadEx.SIZE)
        if found is None:
            return ThreadList()
        names = self.thread_names
        threads = ThreadList()
        for raw in self._list_records(found, cls, "thread entry", st):
            stack = raw.stack
            threads.append(Thread(
                thread_id=raw.thread_id, suspend_count=raw.suspend_count,
                priority_class=raw.priority_class, priority=raw.priority, teb=raw.teb,
                stack_start=stack.start_of_memory_range, stack_size=stack.memory.data_size,
                name=names.get(raw.thread_id),
                context=self._context(raw.thread_context, st),
                context_size=raw.thread_context.data_size,
                _stack_rva=stack.memory.rva, _dump=self))
        return threads

    def thread(self, thread_id: int) -> Thread | None:
        """The thread with this id, or None."""
        return next((t for t in self.threads if t.thread_id == thread_id), None)

    @cached_property
    def thread_info(self) -> list[ThreadInfo]:
        """ThreadInfoListStream entries (empty if absent)."""
        out: list[ThreadInfo] = s._ShortList()  # a short repr however many
        for r in self._ex_records(StreamType.ThreadInfoListStream, md.ThreadInfoListHeader.SIZE,
                                  md.ThreadInfo, "thread info entry"):
            out.append(ThreadInfo(r.thread_id, md.ThreadInfoFlags(r.dump_flags), r.dump_error,
                                  r.exit_status, r.create_time, r.exit_time, r.kernel_time,
                                  r.user_time, r.start_address, r.affinity))
        return out

    @cached_property
    def thread_states(self) -> dict[int, ThreadState]:
        """MinidumpkitThreadStateStream as {thread id: ThreadState} (empty if absent)."""
        out: dict[int, ThreadState] = {}
        for r in self._ex_records(StreamType.MinidumpkitThreadStateStream,
                                  md.ThreadStateListHeader.SIZE, md.ThreadState,
                                  "thread state entry"):
            flags = md.ThreadStateFlags(r.flags)
            sampled = bool(flags & md.ThreadStateFlags.SAMPLED)
            blocked = bool(flags & md.ThreadStateFlags.BLOCKED)
            known = blocked and not flags & md.ThreadStateFlags.SYSCALL_UNKNOWN
            orig = r.orig_rax - (1 << 64) if r.orig_rax >= 1 << 63 else r.orig_rax
            out.setdefault(r.thread_id, ThreadState(
                thread_id=r.thread_id, flags=flags,
                state=chr(r.state) if sampled and 0 < r.state < 128 else None,
                wchan=r.wchan.rstrip(b"\0").decode("ascii", "replace") if sampled else None,
                sample_age_ns=r.sample_age_ns if sampled else None,
                orig_rax=orig if flags & md.ThreadStateFlags.IN_SYSCALL else -1,
                blocked=blocked, syscall=r.syscall if known else None,
                restarted=bool(flags & md.ThreadStateFlags.RESTARTED),
                robust_list=((r.robust_list_head, r.robust_list_len)
                             if flags & md.ThreadStateFlags.ROBUST_LIST else None),
                interrupted=bool(flags & md.ThreadStateFlags.INTERRUPTED)))
        return out

    # --- exception ---------------------------------------------------------------------

    @cached_property
    def exception(self) -> ExceptionInfo | None:
        """ExceptionStream with a decoded reason, or None for a dump without one."""
        st = StreamType.ExceptionStream
        info = self._located(st, md.ExceptionStream.SIZE)
        if info is None:
            return None
        raw = self._record(md.ExceptionStream, info.rva, what="exception", stream_type=st)
        rec = raw.exception_record
        params = rec.parameters()
        system = self._basic_system()
        return ExceptionInfo(
            thread_id=raw.thread_id, code=rec.exception_code, flags=rec.exception_flags,
            record=rec.exception_record, address=rec.exception_address, parameters=params,
            context=self._context(raw.thread_context, st),
            context_size=raw.thread_context.data_size,
            reason=s.crash_reason(rec.exception_code, rec.exception_flags, params, system),
            crash_address=s.crash_address(rec.exception_code, rec.exception_address, params,
                                          system))

    # --- modules -----------------------------------------------------------------------

    def _codeview(self, loc: md.Location, st: int) -> CodeView | None:
        if loc.data_size == 0:
            return None
        data = self._bytes(loc.rva, loc.data_size, what="CodeView record", stream_type=st)
        sig = _U32.unpack_from(data)[0] if len(data) >= 4 else None
        if sig == md.CV_SIGNATURE_PDB70 and len(data) >= md.CvInfoPdb70Header.SIZE:
            head = md.CvInfoPdb70Header.unpack_from(data)
            name = data[md.CvInfoPdb70Header.SIZE:].split(b"\0", 1)[0]
            import uuid  # Windows modules only: uuid imports platform, 2 ms of a start

            return s.CodeViewPdb70(uuid.UUID(bytes_le=head.signature), head.age,
                                   name.decode("utf-8", "replace"))
        if sig == md.CV_SIGNATURE_PDB20 and len(data) >= md.CvInfoPdb20Header.SIZE:
            head20 = md.CvInfoPdb20Header.unpack_from(data)
            name = data[md.CvInfoPdb20Header.SIZE:].split(b"\0", 1)[0]
            return s.CodeViewPdb20(head20.signature, head20.age, name.decode("utf-8", "replace"))
        if sig == md.CV_SIGNATURE_ELF:
            return s.CodeViewElf(data[4:])
        return s.CodeViewUnknown(data)

    @cached_property
    def modules(self) -> ModuleList:
        """ModuleList entries, in file order (the main executable is usually first)."""
        st = StreamType.ModuleListStream
        found = self._list(st, md.Module.SIZE)
        if found is None:
            return ModuleList()
        system = self._basic_system()
        windows = system is not None and system.is_windows
        apple = system is not None and system.is_apple
        pe_versions = system is not None and system.platform in (
            md.PlatformId.WIN32_NT, md.PlatformId.WIN32_WINDOWS, md.PlatformId.MACOS,
            md.PlatformId.IOS)
        out = ModuleList()
        for raw in self._list_records(found, md.Module, "module entry", st):
            name = self._string(raw.module_name_rva, what="module name", stream_type=st)
            cv = self._codeview(raw.cv_record, st)
            misc = (self._bytes(raw.misc_record.rva, raw.misc_record.data_size,
                                what="module misc record", stream_type=st)
                    if raw.misc_record.data_size else None)
            out.append(Module(
                name=name, base=raw.base_of_image, size=raw.size_of_image,
                checksum=raw.checksum, timestamp=raw.time_date_stamp,
                version_info=raw.version_info,
                version=s.version_of(raw.version_info, pe_versions),
                cv_record=cv, misc_record=misc, debug_id=s.debug_id_of(cv),
                code_id=s.code_id_of(cv, raw.time_date_stamp, raw.size_of_image, windows,
                                     apple)))
        return out

    def module_at(self, address: int) -> Module | None:
        """The module whose image contains ``address``."""
        return next((m for m in self.modules if m.base <= address < m.end), None)

    @cached_property
    def unloaded_modules(self) -> list[UnloadedModule]:
        """UnloadedModuleListStream entries (empty if absent)."""
        st = StreamType.UnloadedModuleListStream
        out: list[UnloadedModule] = s._ShortList()  # a short repr however many
        for r in self._ex_records(st, md.UnloadedModuleListHeader.SIZE, md.UnloadedModule,
                                  "unloaded module"):
            out.append(UnloadedModule(
                self._string(r.module_name_rva, what="unloaded module name", stream_type=st),
                r.base_of_image, r.size_of_image, r.checksum, r.time_date_stamp))
        return out

    # --- memory ------------------------------------------------------------------------

    @cached_property
    def memory(self) -> Memory:
        """All captured memory: MemoryListStream, Memory64ListStream and minidumpkit's
        memory stream together."""
        return Memory(self)

    @cached_property
    def memory_info(self) -> list[MemoryRegionInfo]:
        """MemoryInfoListStream entries (the address-space map; empty if absent)."""
        out: list[MemoryRegionInfo] = s._ShortList()  # a short repr however many
        for r in self._ex_records(StreamType.MemoryInfoListStream, md.MemoryInfoListHeader.SIZE,
                                  md.MemoryInfo, "memory info entry"):
            out.append(MemoryRegionInfo(
                r.base_address, r.allocation_base, md.MemProtect(r.allocation_protect),
                r.region_size, md.MemState(r.state), md.MemProtect(r.protect),
                md.MemType(r.type)))
        return out

    # --- handles -----------------------------------------------------------------------

    @cached_property
    def handles(self) -> list[Handle]:
        """HandleDataStream descriptors with their type and object names (empty if absent)."""
        st = StreamType.HandleDataStream
        info = self._located(st, md.HandleDataHeader.SIZE)
        if info is None:
            return []
        head = self._record(md.HandleDataHeader, info.rva, what="handle data header",
                            stream_type=st)
        stride = head.size_of_descriptor
        if head.size_of_header < md.HandleDataHeader.SIZE or stride < md.HandleDescriptor.SIZE:
            raise MinidumpFormatError(
                f"HandleData: header/descriptor sizes {head.size_of_header}/{stride} are too small",
                offset=info.rva, stream_type=st)
        within = (info.rva, info.rva + info.data_size)
        first = info.rva + head.size_of_header
        count = head.number_of_descriptors
        self._span(first, count * stride, what=f"HandleData: {count} descriptors of {stride} bytes",
                   stream_type=st, within=within)
        cls: type[md.HandleDescriptor | md.HandleDescriptor2] = (
            md.HandleDescriptor2 if stride >= md.HandleDescriptor2.SIZE else md.HandleDescriptor)

        def name(rva: int, what: str) -> str | None:
            return self._string(rva, what=what, stream_type=st) if rva else None

        out: list[Handle] = s._ShortList()  # a short repr however many
        for i in range(count):
            d = self._record(cls, first + i * stride, what="handle descriptor", stream_type=st)
            out.append(Handle(
                d.handle, name(d.type_name_rva, "handle type name"),
                name(d.object_name_rva, "handle object name"), d.attributes, d.granted_access,
                d.handle_count, d.pointer_count,
                d.object_info_rva if isinstance(d, md.HandleDescriptor2) else None))
        return out

    # --- Crashpad and Breakpad info ----------------------------------------------------

    def _utf8_string(self, rva: int, what: str, st: int) -> str:
        """A Crashpad MinidumpUTF8String: u32 byte length, UTF-8 bytes (then a NUL)."""
        length = self._u32(rva, what=what, stream_type=st)
        return self._bytes(rva + 4, length, what, st).decode("utf-8", "replace")

    def _string_dictionary(self, loc: md.Location, what: str, st: int) -> dict[str, str]:
        """A MinidumpSimpleStringDictionary (empty when ``loc`` is empty)."""
        if loc.data_size == 0:
            return {}
        self._span(loc.rva, loc.data_size, what=what, stream_type=st)
        count = self._u32(loc.rva, what=what, stream_type=st)
        entry = md.StringDictionaryEntry
        within = (loc.rva, loc.rva + loc.data_size)
        self._span(loc.rva + 4, count * entry.SIZE, what=f"{what}: {count} entries",
                   stream_type=st, within=within)
        out: dict[str, str] = {}
        for i in range(count):
            e = self._record(entry, loc.rva + 4 + i * entry.SIZE, what=what, stream_type=st)
            out[self._utf8_string(e.key, what, st)] = self._utf8_string(e.value, what, st)
        return out

    def _module_crashpad_info(self, index: int, loc: md.Location, st: int,
                              ) -> ModuleCrashpadInfo:
        what = "Crashpad module info"
        if loc.data_size < md.ModuleCrashpadInfo.SIZE:
            # Crashpad before annotation objects (2017) wrote 20 bytes: version and the
            # list and simple annotations. rust-minidump and Breakpad refuse those files.
            self._span(loc.rva, md.ModuleCrashpadInfo.offset_of("annotation_objects"),
                       what=what, stream_type=st)
            head = self._bytes(loc.rva, md.ModuleCrashpadInfo.offset_of("annotation_objects"),
                               what, st)
            raw = md.ModuleCrashpadInfo.unpack_from(head + bytes(md.Location.SIZE))
        else:
            raw = self._record(md.ModuleCrashpadInfo, loc.rva, what=what, stream_type=st)
        lists: list[str] = []
        if raw.list_annotations.data_size:
            at = raw.list_annotations.rva
            count = self._u32(at, what=what, stream_type=st)
            self._span(at + 4, count * 4, what=f"{what}: {count} list annotations",
                       stream_type=st)
            lists = [self._utf8_string(self._u32(at + 4 + 4 * i, what=what, stream_type=st),
                                       what, st) for i in range(count)]
        objects: dict[str, CrashpadAnnotation] = {}
        if raw.annotation_objects.data_size:
            at = raw.annotation_objects.rva
            count = self._u32(at, what=what, stream_type=st)
            entry = md.AnnotationEntry
            self._span(at + 4, count * entry.SIZE, what=f"{what}: {count} annotations",
                       stream_type=st)
            for i in range(count):
                a = self._record(entry, at + 4 + i * entry.SIZE, what=what, stream_type=st)
                size = self._u32(a.value, what=what, stream_type=st)
                objects[self._utf8_string(a.name, what, st)] = CrashpadAnnotation(
                    a.type, self._bytes(a.value + 4, size, what, st))
        return ModuleCrashpadInfo(
            index, raw.version, lists,
            self._string_dictionary(raw.simple_annotations, what, st), objects)

    @cached_property
    def crashpad_info(self) -> CrashpadInfo | None:
        """CrashpadInfoStream (dumps written by Crashpad): report and client ids,
        simple annotations, and per-module list, simple and object annotations."""
        st = StreamType.CrashpadInfoStream
        info = self._located(st, md.CrashpadInfoHeader.SIZE)
        if info is None:
            return None
        raw = self._record(md.CrashpadInfoHeader, info.rva, what="Crashpad info",
                           stream_type=st)
        modules: list[ModuleCrashpadInfo] = []
        if raw.module_list.data_size:
            at = raw.module_list.rva
            count = self._u32(at, what="Crashpad module list", stream_type=st)
            link = md.ModuleCrashpadInfoLink
            self._span(at + 4, count * link.SIZE,
                       what=f"Crashpad module list: {count} entries", stream_type=st)
            for i in range(count):
                entry = self._record(link, at + 4 + i * link.SIZE,
                                     what="Crashpad module link", stream_type=st)
                modules.append(self._module_crashpad_info(
                    entry.minidump_module_list_index, entry.location, st))
        import uuid  # only here: uuid imports platform, a cost every start would pay

        # Crashpad's UUID type stores its first three fields little-endian, like a GUID
        return CrashpadInfo(
            raw.version, uuid.UUID(bytes_le=raw.report_id), uuid.UUID(bytes_le=raw.client_id),
            self._string_dictionary(raw.simple_annotations, "Crashpad simple annotations", st),
            modules)

    @cached_property
    def breakpad_info(self) -> BreakpadInfo | None:
        """BreakpadInfoStream (Breakpad's and Crashpad's Windows clients)."""
        st = StreamType.BreakpadInfoStream
        info = self._located(st, md.BreakpadInfo.SIZE)
        if info is None:
            return None
        raw = self._record(md.BreakpadInfo, info.rva, what="Breakpad info", stream_type=st)
        dump = raw.validity & md.BREAKPAD_INFO_VALID_DUMP_THREAD_ID
        requesting = raw.validity & md.BREAKPAD_INFO_VALID_REQUESTING_THREAD_ID
        return BreakpadInfo(raw.dump_thread_id if dump else None,
                            raw.requesting_thread_id if requesting else None)

    # --- minidumpkit's own stream ------------------------------------------------------

    @cached_property
    def minidumpkit_info(self) -> MinidumpkitInfo | None:
        """MinidumpkitInfoStream (dumps written by minidumpkit): capture method, pause."""
        st = StreamType.MinidumpkitInfoStream
        info = self._located(st, md.MinidumpkitInfo.SIZE)
        if info is None:
            return None
        head = self._record(md.MinidumpkitInfo, info.rva, what="minidumpkit info",
                            stream_type=st)
        skip = max(head.size_of_header, md.MinidumpkitInfo.SIZE)
        text = self._bytes(info.rva + skip, max(0, info.data_size - skip),
                           "minidumpkit info details", st)
        try:
            details = json.loads(text) if text.strip() else {}
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise MinidumpFormatError(f"minidumpkit info: details are not JSON ({exc})",
                                      offset=info.rva + skip, stream_type=st) from None
        if not isinstance(details, dict):
            raise MinidumpFormatError("minidumpkit info: details are not a JSON object",
                                      offset=info.rva + skip, stream_type=st)
        return MinidumpkitInfo(head.capture, MiniDumpType(head.dump_type), head.pause_ns,
                               details)

    @cached_property
    def minidumpkit_python(self) -> MinidumpkitPython | None:
        """MinidumpkitPythonStream: the CPython runtime minidumpkit's writer walked (its
        version, ``_PyRuntime`` address, layout, walk status, the memory it added);
        None when the dump has none. :func:`minidumpkit.analysis.python_stacks` uses it."""
        st = StreamType.MinidumpkitPythonStream
        info = self._located(st, md.MinidumpkitPython.SIZE)
        if info is None:
            return None
        head = self._record(md.MinidumpkitPython, info.rva, what="minidumpkit python",
                            stream_type=st)
        skip = max(head.size_of_header, md.MinidumpkitPython.SIZE)
        if skip > info.data_size:
            raise MinidumpFormatError(
                f"minidumpkit python: header of {skip} bytes in a {info.data_size}-byte stream",
                offset=info.rva, stream_type=st)
        text = self._bytes(info.rva + skip, info.data_size - skip, "minidumpkit python details",
                           st)
        try:
            details = json.loads(text) if text.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise MinidumpFormatError(f"minidumpkit python: details are not JSON ({exc})",
                                      offset=info.rva + skip, stream_type=st) from None
        if not isinstance(details, dict):
            raise MinidumpFormatError("minidumpkit python: details are not a JSON object",
                                      offset=info.rva + skip, stream_type=st)

        def text_of(key: str) -> str | None:
            value = details.get(key)
            return value if isinstance(value, str) else None

        status = text_of("status") or {
            md.PYTHON_WALK_COMPLETE: "complete",
            md.PYTHON_WALK_PARTIAL: "partial walk: (no reason recorded)",
        }.get(head.walk_status, "no Python runtime found: (no reason recorded)")
        return MinidumpkitPython(
            head.format_version, head.version_hex, text_of("version"), status,
            head.runtime_address, head.code_type_address, head.module_base, text_of("module"),
            text_of("layout"), head.range_count, head.range_bytes, head.walk_ns, details)

    # --- Linux (Breakpad) streams ------------------------------------------------------

    def _text(self, stream_type: StreamType) -> str | None:
        data = self.raw_stream(stream_type)
        return None if data is None else data.decode("utf-8", "replace")

    @cached_property
    def linux_cpuinfo(self) -> str | None:
        """LinuxCpuInfo: /proc/cpuinfo as text."""
        return self._text(StreamType.LinuxCpuInfo)

    @cached_property
    def linux_proc_status(self) -> dict[str, str] | None:
        """LinuxProcStatus: /proc/PID/status as {field: value}."""
        text = self._text(StreamType.LinuxProcStatus)
        return None if text is None else s.parse_key_values(text, ":")

    @cached_property
    def linux_lsb_release(self) -> dict[str, str] | None:
        """LinuxLsbRelease: /etc/lsb-release (or os-release) as {KEY: value}."""
        text = self._text(StreamType.LinuxLsbRelease)
        return None if text is None else s.parse_key_values(text, "=")

    @cached_property
    def linux_cmdline(self) -> list[str] | None:
        """LinuxCmdLine: /proc/PID/cmdline split into arguments."""
        data = self.raw_stream(StreamType.LinuxCmdLine)
        if data is None:
            return None
        args = data.split(b"\0")
        if args and args[-1] == b"":
            args.pop()
        return [a.decode("utf-8", "replace") for a in args]

    @cached_property
    def linux_environ(self) -> dict[str, str] | None:
        """LinuxEnviron: /proc/PID/environ as a dict (the first of repeated names wins)."""
        data = self.raw_stream(StreamType.LinuxEnviron)
        if data is None:
            return None
        env: dict[str, str] = {}
        for item in data.split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if sep:
                env.setdefault(key, value)
        return env

    @cached_property
    def linux_auxv(self) -> list[tuple[int, int]] | None:
        """LinuxAuxv: the auxiliary vector as (AT_* type, value) pairs, up to AT_NULL."""
        data = self.raw_stream(StreamType.LinuxAuxv)
        if data is None:
            return None
        system = self._basic_system()
        word = struct.Struct("<II" if system is not None and system.pointer_size == 4 else "<QQ")
        pairs: list[tuple[int, int]] = []
        for key, value in word.iter_unpack(data[:len(data) - len(data) % word.size]):
            if key == 0:
                break
            pairs.append((key, value))
        return pairs

    @cached_property
    def linux_maps(self) -> list[LinuxMapping] | None:
        """LinuxMaps: /proc/PID/maps, one entry per line."""
        text = self._text(StreamType.LinuxMaps)
        return None if text is None else s._ShortList(s.parse_maps(text))

    @cached_property
    def linux_dso_debug(self) -> DsoDebug | None:
        """LinuxDsoDebug: ``r_debug`` and the link-map list, in Breakpad's padded layout."""
        st = StreamType.LinuxDsoDebug
        system = self._basic_system()
        wide = system is None or system.pointer_size == 8
        head_cls: type[md.Debug64 | md.Debug32] = md.Debug64 if wide else md.Debug32
        map_cls: type[md.LinkMap64 | md.LinkMap32] = md.LinkMap64 if wide else md.LinkMap32
        info = self._located(st, head_cls.SIZE)
        if info is None:
            return None
        head = self._record(head_cls, info.rva, what="DSO debug header", stream_type=st)
        self._span(head.map, head.dso_count * map_cls.SIZE,
                   what=f"DSO debug: {head.dso_count} link maps", stream_type=st)
        maps: list[LinkMap] = []
        for i in range(head.dso_count):
            lm = self._record(map_cls, head.map + i * map_cls.SIZE, what="link map",
                              stream_type=st)
            name = self._string(lm.name, what="link map name", stream_type=st) if lm.name else None
            maps.append(LinkMap(lm.addr, name, lm.ld))
        dynamic = self._bytes(info.rva + head_cls.SIZE, info.data_size - head_cls.SIZE,
                              what="DSO debug dynamic section", stream_type=st)
        return DsoDebug(head.version, head.map, head.dso_count, head.brk, head.ldbase,
                        head.dynamic, tuple(maps), dynamic)


class Memory:
    """The process memory a dump holds, from MemoryList and Memory64List together (and
    StreamType.MinidumpkitMemoryStream, where minidumpkit's Windows writer puts memory
    dbghelp would not take).

    ``read(address, size)`` returns bytes and may span adjacent ranges; it raises
    :class:`~minidumpkit.MemoryNotCaptured` if any byte of the request is missing.
    Built on first use: the ranges are sorted once into disjoint segments (where
    ranges overlap, the one starting first wins) kept in compact arrays, and each read
    is a binary search.
    """

    def __init__(self, dump: Minidump) -> None:
        self._dump = dump
        self._ranges = self._collect(dump)
        self._starts, self._ends, self._offsets = self._segments(self._ranges)

    def __repr__(self) -> str:
        if not self._starts:
            return "<Memory: none captured>"
        return (f"<Memory {len(self)} ranges, {s._size(self.total_size)} captured, "
                f"0x{self._starts[0]:x}-0x{self._ends[-1]:x}>")

    @staticmethod
    def _collect(dump: Minidump) -> array[int]:
        """(start, size, rva) triples of every range, validated against the file."""
        flat: array[int] = array("Q")
        st = StreamType.MemoryListStream
        found = dump._list(st, md.MemoryDescriptor.SIZE)
        if found is not None:
            _, first, count = found
            table = dump._bytes(first, count * 16, "MemoryList descriptors", st)
            for start, size, rva in _DESCRIPTOR.iter_unpack(table):
                dump._span(rva, size, "memory range", st)
                flat.extend((start, size, rva))
        st = StreamType.Memory64ListStream
        info64 = dump._located(st, md.Memory64ListHeader.SIZE)
        if info64 is not None:
            head = dump._record(md.Memory64ListHeader, info64.rva, what="Memory64List header",
                                stream_type=st)
            count = head.number_of_memory_ranges
            table = dump._bytes(info64.rva + 16, count * 16,
                                f"Memory64List: {count} descriptors", st,
                                (info64.rva, info64.rva + info64.data_size))
            rva = head.base_rva
            for start, size in _DESCRIPTOR64.iter_unpack(table):
                dump._span(rva, size, "memory64 range", st)
                flat.extend((start, size, rva))
                rva += size
        st = StreamType.MinidumpkitMemoryStream
        info = dump._located(st, md.MinidumpkitMemory.SIZE)
        if info is not None:
            within = (info.rva, info.rva + info.data_size)
            mk = dump._record(md.MinidumpkitMemory, info.rva, what="minidumpkit memory header",
                              stream_type=st)
            count = mk.range_count
            table = dump._bytes(info.rva + max(mk.size_of_header, md.MinidumpkitMemory.SIZE),
                                count * 16, f"minidumpkit memory: {count} descriptors", st,
                                within)
            rva = info.rva + mk.data_offset
            for start, size in _DESCRIPTOR64.iter_unpack(table):
                dump._span(rva, size, "minidumpkit memory range", st, within)
                flat.extend((start, size, rva))
                rva += size
        return flat

    @staticmethod
    def _segments(flat: array[int]) -> tuple[list[int], array[int], array[int]]:
        # starts is a list: bisect on it is 3x faster than on an array (no boxing)
        starts: list[int] = []
        ends: array[int] = array("Q")
        offsets: array[int] = array("Q")
        order = sorted(range(0, len(flat), 3), key=flat.__getitem__)
        covered = 0
        for k in order:
            start, size, rva = flat[k], flat[k + 1], flat[k + 2]
            end = start + size
            if size == 0 or end <= covered or end >= 1 << 64:
                continue
            if start < covered:  # overlap: keep only the part not seen yet
                rva += covered - start
                start = covered
            starts.append(start)
            ends.append(end)
            offsets.append(rva)
            covered = end
        return starts, ends, offsets

    @cached_property
    def ranges(self) -> list[MemoryRange]:
        """Every captured range as recorded (MemoryList first, then Memory64List, then
        minidumpkit's memory stream)."""
        f = self._ranges
        return s._ShortList(MemoryRange(f[i], f[i + 1], f[i + 2]) for i in range(0, len(f), 3))

    @property
    def total_size(self) -> int:
        """Distinct bytes of process memory captured."""
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def __len__(self) -> int:
        return len(self._ranges) // 3

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, int):
            return False
        i = bisect.bisect_right(self._starts, address) - 1
        return i >= 0 and address < self._ends[i]

    def find(self, address: int) -> MemoryRange | None:
        """The captured segment containing ``address`` (after overlaps were resolved)."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0 or address >= self._ends[i]:
            return None
        return MemoryRange(self._starts[i], self._ends[i] - self._starts[i], self._offsets[i])

    def read(self, address: int, size: int) -> bytes:
        """``size`` bytes of process memory at ``address``."""
        if address < 0 or size < 0:
            raise ValueError(f"negative address or size: 0x{address:x}, {size}")
        if size == 0:
            return b""
        starts, ends, offsets = self._starts, self._ends, self._offsets
        i = bisect.bisect_right(starts, address) - 1
        if i < 0 or address >= ends[i]:
            raise MemoryNotCaptured(address, size)
        stop = address + size
        dump = self._dump
        if stop <= ends[i]:
            return dump._bytes(offsets[i] + address - starts[i], size, "memory read")
        # Spans segments: prove the whole request is covered before copying anything.
        last = i
        while stop > ends[last]:
            if last + 1 == len(starts) or starts[last + 1] != ends[last]:
                raise MemoryNotCaptured(address, size)
            last += 1
        parts: list[bytes] = []
        cur = address
        for j in range(i, last + 1):
            chunk = min(stop, ends[j]) - cur
            parts.append(dump._bytes(offsets[j] + cur - starts[j], chunk, "memory read"))
            cur += chunk
        return b"".join(parts)

    def read_u32(self, address: int) -> int:
        value: int = _U32.unpack(self.read(address, 4))[0]
        return value

    def read_u64(self, address: int) -> int:
        value: int = _U64.unpack(self.read(address, 8))[0]
        return value
