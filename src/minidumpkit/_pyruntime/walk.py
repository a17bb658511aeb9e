"""Walk CPython's runtime state in another process's memory: interpreters, thread states,
frames, code objects, strings and line tables (CPython 3.11-3.13, x86_64 Linux).

The same code serves the dump reader (memory = the dump's) and the writer (memory = the
stopped target's), through :class:`MemorySource`. Reads are object-granular (a whole thread
state, a whole frame, a code object's header, a string's header and characters) and, when
asked, logged, so the writer can copy exactly what a reader will need. The memory is
untrusted: every loop is bounded (interpreters, threads, frames, string and line-table
sizes, a cycle check on every list) and the whole walk has a time limit; a read that fails
ends the part of the walk that needed it and is reported as "partial walk: why".
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import MemoryNotCaptured
from . import offsets as o
from .offsets import Layout

MAX_INTERPRETERS = 256
MAX_THREADS = 4096
MAX_FRAMES = 4096
MAX_STRING_CHARS = 4096
MAX_LINETABLE = 1 << 20
DEFAULT_TIME_LIMIT = 5.0

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class MemorySource(Protocol):
    """Bytes of the target's address space. ``read`` returns exactly ``size`` bytes or
    raises (MemoryNotCaptured for a dump, OSError for a live process)."""

    def read(self, address: int, size: int) -> bytes: ...


class WalkStopped(Exception):
    """Internal: the walk cannot go on (a read failed, a limit was hit)."""


@dataclass(frozen=True)
class PythonFrame:
    """One Python frame: ``qualname`` is what tracebacks print (3.11+ ``co_qualname``);
    ``line`` is None when the location table has no line for the instruction; ``is_entry``
    marks a frame the interpreter entered from C (the newest Python frame of one
    ``_PyEval_EvalFrameDefault`` call)."""

    function: str
    qualname: str
    filename: str
    line: int | None
    first_line: int
    is_entry: bool = False
    address: int = 0

    def __repr__(self) -> str:
        entry = " entry" if self.is_entry else ""
        return f"<PythonFrame {self.qualname} {self.filename}:{self.line}{entry}>"

    def format(self) -> str:
        """This frame as Python's own tracebacks print it (two spaces, no source line)."""
        return f'  File "{self.filename}", line {self.line}, in {self.qualname}'


@dataclass
class PythonThread:
    """One Python thread state. ``frames`` is newest first (as py-spy prints them);
    ``os_thread_id`` is the OS thread running it (from the C-stack anchor in a thread's
    stack range, else ``native_thread_id``); ``status`` says why the frames may be
    incomplete ("partial walk: ...") or is None."""

    interpreter_id: int
    thread_id: int
    native_thread_id: int
    holds_gil: bool
    frames: tuple[PythonFrame, ...]
    address: int = 0
    anchors: tuple[int, ...] = ()
    os_thread_id: int | None = None
    mapped_by: str | None = None
    status: str | None = None
    gil_address: int = 0  # its interpreter's GIL (struct _gil_runtime_state), 0 if unknown

    def __repr__(self) -> str:
        gil = " holds GIL" if self.holds_gil else ""
        top = f" in {self.frames[0].qualname}" if self.frames else ""
        part = f" ({self.status})" if self.status else ""
        return (f"<PythonThread os={self.os_thread_id} interp={self.interpreter_id}{gil} "
                f"{len(self.frames)} frames{top}{part}>")

    def format(self) -> str:
        """A traceback of this thread, oldest call first, as Python prints one."""
        head = (f"Thread {self.os_thread_id if self.os_thread_id is not None else '?'} "
                f"(interpreter {self.interpreter_id}"
                f"{', holds the GIL' if self.holds_gil else ''})")
        lines = [head, "Traceback (most recent call last):"]
        lines += [f.format() for f in reversed(self.frames)]
        if self.status:
            lines.append(f"  [{self.status}]")
        return "\n".join(lines)


@dataclass
class PythonRuntime:
    """What the walk found. ``status`` is "ok", "partial walk: why" or "no Python runtime
    found: why" (then ``threads`` is empty)."""

    status: str
    version: str | None = None
    version_hex: int | None = None
    runtime_address: int | None = None
    module: str | None = None
    layout: str | None = None
    found_by: str | None = None
    code_type_address: int | None = None  # &PyCode_Type when the locator found it
    threads: list[PythonThread] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __repr__(self) -> str:
        where = f" _PyRuntime=0x{self.runtime_address:x}" if self.runtime_address else ""
        return (f"<PythonRuntime {self.version or '?'}{where} {len(self.threads)} threads "
                f"status={self.status!r}>")

    def format(self) -> str:
        if not self.threads:
            return f"Python: {self.status}"
        head = f"Python {self.version} ({self.module})"
        if self.status != "ok":
            head += f": {self.status}"
        return "\n\n".join([head] + [t.format() for t in self.threads])


def version_string(hexversion: int) -> str:
    major, minor, micro = hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF
    level, serial = (hexversion >> 4) & 0xF, hexversion & 0xF
    suffix = {0xA: "a", 0xB: "b", 0xC: "rc"}.get(level)
    return f"{major}.{minor}.{micro}" + (f"{suffix}{serial}" if suffix else "")


def line_for(table: bytes, first_line: int, addrq: int) -> int | None:
    """The line of byte offset ``addrq`` in a 3.11+ location table (Objects/locations.md;
    the ``start <= addrq < end`` rule of ``_PyCode_CheckLineNumber``)."""
    if addrq < 0:
        return first_line
    line, addr, pos, n = first_line, 0, 0, len(table)

    def varint() -> int:
        nonlocal pos
        if pos >= n:
            raise IndexError
        b = table[pos]
        pos += 1
        value, shift = b & 63, 6
        while b & 64:
            if pos >= n or shift > 60:
                raise IndexError
            b = table[pos]
            pos += 1
            value |= (b & 63) << shift
            shift += 6
        return value

    def svarint() -> int:
        u = varint()
        return -(u >> 1) if u & 1 else u >> 1

    try:
        while pos < n:
            first = table[pos]
            pos += 1
            if not first & 0x80:
                return None
            code, end = (first >> 3) & 15, addr + ((first & 7) + 1) * 2
            entry: int | None = line
            if code == 15:
                entry = None
            elif code == 14:
                line += svarint()
                entry = line
                varint(), varint(), varint()
            elif code == 13:
                line += svarint()
                entry = line
            elif code >= 10:
                line += code - 10
                entry = line
                pos += 2
            else:
                pos += 1
            if addr <= addrq < end:
                return entry
            addr = end
    except IndexError:
        return None
    return None


class _Memory:
    """Reads with a log, a read budget and a deadline."""

    def __init__(self, source: MemorySource, deadline: float, log: list[tuple[int, int]] | None):
        self.source, self.deadline, self.log = source, deadline, log

    def read(self, address: int, size: int, what: str) -> bytes:
        if time.monotonic() > self.deadline:
            raise WalkStopped("time limit reached")
        if address <= 0 or address + size > 1 << 64:
            raise WalkStopped(f"{what}: bad address 0x{address:x}")
        try:
            data = self.source.read(address, size)
        except (MemoryNotCaptured, OSError, ValueError) as e:
            raise WalkStopped(f"{what} at 0x{address:x} not readable ({type(e).__name__})") from e
        if len(data) != size:
            raise WalkStopped(f"{what} at 0x{address:x} short read")
        if self.log is not None:
            self.log.append((address, size))
        return data

    def ptr(self, address: int, what: str) -> int:
        value: int = _U64.unpack(self.read(address, 8, what))[0]
        return value


@dataclass
class _Code:
    name: str
    qualname: str
    filename: str
    first_line: int
    linetable: bytes
    firsttraceable: int | None


class Walker:
    """One walk of one runtime. ``code_type`` is ``&PyCode_Type`` when known; otherwise an
    object is a code object when its type's ``tp_name`` is "code"."""

    def __init__(self, source: MemorySource, layout: Layout, *, code_type: int | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT, log: list[tuple[int, int]] | None = None):
        self.layout = layout
        self.mem = _Memory(source, time.monotonic() + time_limit, log)
        self.code_type = code_type
        self._is_code: dict[int, bool] = {}
        self._codes: dict[int, _Code] = {}
        self._strings: dict[int, str] = {}

    # --- objects ---------------------------------------------------------------------
    def string(self, address: int) -> str:
        if address in self._strings:
            return self._strings[address]
        lo = self.layout
        head = self.mem.read(address, lo.unicode_ascii_size, "str header")
        length = _I64.unpack_from(head, lo.unicode_length)[0]
        state = _U32.unpack_from(head, lo.unicode_state)[0]
        kind, compact, ascii = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
        if kind not in (1, 2, 4) or not 0 <= length:
            raise WalkStopped(f"str at 0x{address:x}: kind {kind}, length {length}")
        length = min(length, MAX_STRING_CHARS)
        if compact:
            data = address + (lo.unicode_ascii_size if ascii else lo.unicode_compact_size)
        else:
            data = self.mem.ptr(address + lo.unicode_legacy_data, "str data pointer")
        raw = self.mem.read(data, length * kind, "str data") if length else b""
        codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
        text = raw.decode(codec, errors="replace")
        self._strings[address] = text
        return text

    def bytes_object(self, address: int, limit: int) -> bytes:
        lo = self.layout
        head = self.mem.read(address, lo.bytes_sval, "bytes header")
        size = _I64.unpack_from(head, lo.bytes_size)[0]
        if not 0 <= size <= limit:
            raise WalkStopped(f"bytes at 0x{address:x}: size {size}")
        return self.mem.read(address + lo.bytes_sval, size, "bytes data") if size else b""

    def is_code(self, obj: int) -> bool:
        lo = self.layout
        type_address = self.mem.ptr(obj + lo.object_type, "object type")
        if self.code_type is not None:
            return type_address == self.code_type
        if type_address not in self._is_code:
            name_ptr = self.mem.ptr(type_address + lo.type_name, "type name")
            self._is_code[type_address] = self.mem.read(name_ptr, 5, "type name") == b"code\0"
        return self._is_code[type_address]

    def code(self, address: int) -> _Code:
        if address in self._codes:
            return self._codes[address]
        lo = self.layout
        raw = self.mem.read(address, lo.code_adaptive, "code object")

        def ptr(offset: int) -> int:
            value: int = _U64.unpack_from(raw, offset)[0]
            return value

        code = _Code(
            name=self.string(ptr(lo.code_name)),
            qualname=self.string(ptr(lo.code_qualname)),
            filename=self.string(ptr(lo.code_filename)),
            first_line=_I32.unpack_from(raw, lo.code_firstlineno)[0],
            linetable=self.bytes_object(ptr(lo.code_linetable), MAX_LINETABLE),
            firsttraceable=(_I32.unpack_from(raw, lo.code_firsttraceable)[0]
                            if lo.code_firsttraceable is not None else None),
        )
        self._codes[address] = code
        return code

    # --- lists ---------------------------------------------------------------------
    def interpreters(self, runtime: int) -> list[int]:
        out: list[int] = []
        interp = self.mem.ptr(runtime + self.layout.runtime_interpreters_head, "interpreters")
        while interp and interp not in out:
            if len(out) >= MAX_INTERPRETERS:
                raise WalkStopped(f"more than {MAX_INTERPRETERS} interpreters")
            out.append(interp)
            interp = self.mem.ptr(interp + self.layout.interp_next, "interpreter next")
        return out

    def gil_holder(self, runtime: int, interp: int) -> tuple[int, int | None]:
        """The GIL's address (0 if not known) and its holder's thread state."""
        lo = self.layout
        if lo.runtime_gil_holder is not None:
            gil = runtime + lo.runtime_ceval_gil if lo.runtime_ceval_gil is not None else 0
            return gil, self.mem.ptr(runtime + lo.runtime_gil_holder, "GIL holder") or None
        assert lo.interp_ceval_gil is not None and lo.gil_locked is not None
        assert lo.gil_last_holder is not None
        gil = self.mem.ptr(interp + lo.interp_ceval_gil, "GIL pointer")
        if not gil:
            return 0, None
        locked = _I32.unpack(self.mem.read(gil + lo.gil_locked, 4, "GIL locked"))[0]
        return gil, self.mem.ptr(gil + lo.gil_last_holder, "GIL holder") if locked else None

    def frames(self, tstate_raw: bytes, tstate: int) -> tuple[list[PythonFrame], list[int],
                                                               str | None]:
        """The frames of one thread state (newest first), its C-stack anchors, and why the
        walk stopped early (None when it reached the bottom)."""
        lo = self.layout
        frames: list[PythonFrame] = []
        anchors: list[int] = []
        try:
            if lo.tstate_cframe is not None:
                assert lo.cframe_current_frame is not None and lo.tstate_root_cframe is not None
                cframe = _U64.unpack_from(tstate_raw, lo.tstate_cframe)[0]
                if not cframe:
                    return frames, anchors, None
                if cframe != tstate + lo.tstate_root_cframe:
                    anchors.append(cframe)
                frame = self.mem.ptr(cframe + lo.cframe_current_frame, "cframe")
            else:
                assert lo.tstate_current_frame is not None
                frame = _U64.unpack_from(tstate_raw, lo.tstate_current_frame)[0]
            seen: set[int] = set()
            while frame:
                if frame in seen:
                    return frames, anchors, "partial walk: frame list loops"
                if len(seen) >= MAX_FRAMES:
                    return frames, anchors, f"partial walk: more than {MAX_FRAMES} frames"
                seen.add(frame)
                raw = self.mem.read(frame, lo.frame_size, "frame")
                code = _U64.unpack_from(raw, lo.frame_code)[0]
                previous = _U64.unpack_from(raw, lo.frame_previous)[0]
                instr = _U64.unpack_from(raw, lo.frame_instr)[0]
                owner = raw[lo.frame_owner]
                is_entry = lo.frame_is_entry is not None and raw[lo.frame_is_entry] != 0
                if owner == o.OWNED_BY_CSTACK and lo.frame_is_entry is None:
                    # 3.12+: a shim frame on the C stack of _PyEval_EvalFrameDefault; the
                    # Python frame above it was entered from C.
                    anchors.append(frame)
                    if frames and not frames[-1].is_entry:
                        frames[-1] = _with_entry(frames[-1])
                elif code and self.is_code(code):
                    info = self.code(code)
                    index = (instr - (code + lo.code_adaptive)) // 2
                    incomplete = (owner != o.OWNED_BY_GENERATOR and info.firsttraceable is not None
                                  and index < info.firsttraceable)
                    if not incomplete:
                        frames.append(PythonFrame(
                            function=info.name, qualname=info.qualname or info.name,
                            filename=info.filename, line=line_for(info.linetable,
                                                                  info.first_line, index * 2),
                            first_line=info.first_line, is_entry=is_entry, address=frame))
                frame = previous
        except WalkStopped as stop:
            return frames, anchors, f"partial walk: {stop}"
        return frames, anchors, None

    def walk(self, runtime: int) -> tuple[list[PythonThread], str]:
        lo = self.layout
        threads: list[PythonThread] = []
        try:
            interps = self.interpreters(runtime)
        except WalkStopped as stop:
            return threads, f"partial walk: {stop}"
        if not interps:
            return threads, "partial walk: no interpreter (runtime not initialised or finalised)"
        status = "ok"
        seen: set[int] = set()
        for interp in interps:
            try:
                interp_id = _I64.unpack(self.mem.read(interp + lo.interp_id, 8, "interp id"))[0]
                gil, holder = self.gil_holder(runtime, interp)
                tstate = self.mem.ptr(interp + lo.interp_threads_head, "thread list")
                while tstate:
                    if tstate in seen:
                        raise WalkStopped("thread list loops")
                    if len(seen) >= MAX_THREADS:
                        raise WalkStopped(f"more than {MAX_THREADS} thread states")
                    seen.add(tstate)
                    raw = self.mem.read(tstate, lo.tstate_size, "thread state")
                    tid_format = "<Q" if lo.thread_id_size == 8 else "<I"
                    frames, anchors, why = self.frames(raw, tstate)
                    threads.append(PythonThread(
                        interpreter_id=interp_id,
                        thread_id=struct.unpack_from(tid_format, raw, lo.tstate_thread_id)[0],
                        native_thread_id=struct.unpack_from(
                            tid_format, raw, lo.tstate_native_thread_id)[0],
                        holds_gil=holder == tstate, frames=tuple(frames), address=tstate,
                        anchors=tuple(anchors), status=why, gil_address=gil))
                    if why is not None and status == "ok":
                        status = why
                    tstate = _U64.unpack_from(raw, lo.tstate_next)[0]
            except WalkStopped as stop:
                status = f"partial walk: {stop}"
                if "time limit" in str(stop):
                    break
        return threads, status


def _with_entry(frame: PythonFrame) -> PythonFrame:
    return PythonFrame(frame.function, frame.qualname, frame.filename, frame.line,
                       frame.first_line, True, frame.address)
