"""A small, lazy ELF64 reader: just what the stack walker needs from a module's file.

The file is memory-mapped; headers are decoded on open, everything else (section bytes,
symbol tables) on first use. Only little-endian ELF64 is read (the x86_64 walker's
modules). Anything malformed raises :class:`ElfError`, which the symbol layer turns into
a per-module status ("corrupt"); it never reaches the caller of a stack walk.

This is deliberately independent of ``minidumpkit._backends._elf`` (the writer's build-id
reader): the analysis layer sits above the reader and must not import a backend.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from functools import cached_property

from .._lazydataclass import lazy_dataclass

__all__ = ["ElfError", "ElfFile", "Section", "Segment", "read_build_id"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_NHDR = struct.Struct("<III")
_CHDR = struct.Struct("<IIQQ")  # Elf64_Chdr

SHT_NOBITS = 8
SHF_COMPRESSED = 0x800
PT_LOAD = 1
PT_NOTE = 4
PT_GNU_EH_FRAME = 0x6474E550
PF_X = 1
NT_GNU_BUILD_ID = 3
ELFCOMPRESS_ZLIB = 1


class ElfError(Exception):
    """The file is not an ELF64 little-endian object we can read, or is malformed."""


@lazy_dataclass
class Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@lazy_dataclass
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


class ElfFile:
    """One ELF file, mapped read-only. ``close()`` releases the mapping."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _EHDR.size:
                raise ElfError(f"{path}: too small for an ELF header")
            self._map: mmap.mmap | None = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.data = memoryview(self._map)
        ident, _type, machine, _v, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, \
            shentsize, shnum, shstrndx = _EHDR.unpack_from(self.data)
        if ident[:4] != b"\x7fELF":
            raise ElfError(f"{path}: not an ELF file")
        if ident[4] != 2 or ident[5] != 1:
            raise ElfError(f"{path}: not a little-endian ELF64 file")
        self.machine = machine
        self.segments: list[Segment] = []
        for i in range(phnum if phentsize >= _PHDR.size else 0):
            p = self._unpack(_PHDR, phoff + i * phentsize)
            self.segments.append(Segment(p[0], p[1], p[2], p[3], p[5], p[6]))
        raw = [self._unpack(_SHDR, shoff + i * shentsize)
               for i in range(shnum if shoff and shentsize >= _SHDR.size else 0)]
        names = raw[shstrndx] if 0 < shstrndx < len(raw) else None
        self._inflated: dict[str, bytes] = {}
        self._partial: dict[str, _Inflater] = {}  # compressed sections inflated in part
        self.by_index: list[Section] = []
        self.sections: dict[str, Section] = {}
        for r in raw:
            name = self._cstr(names[4] + r[0], names[5]) if names is not None else ""
            sec = Section(name, r[1], r[2], r[3], r[4], r[5], r[6], r[9])
            self.by_index.append(sec)
            self.sections.setdefault(name, sec)

    def _unpack(self, st: struct.Struct, offset: int) -> tuple[int, ...]:
        if offset < 0 or offset + st.size > len(self.data):
            raise ElfError(f"{self.path}: header at 0x{offset:x} outside the file")
        return st.unpack_from(self.data, offset)

    def _cstr(self, offset: int, limit: int | None = None) -> str:
        end = len(self.data) if limit is None else min(len(self.data), offset + limit)
        if not 0 <= offset < end:
            return ""
        stop = self._map.find(b"\0", offset, end) if self._map is not None else -1
        return bytes(self.data[offset:stop if stop >= 0 else end]).decode("utf-8", "replace")

    def close(self) -> None:
        """Unmap the file, unless section views handed out still use the mapping (it
        then goes when they do)."""
        try:
            self.data.release()
            if self._map is not None:
                self._map.close()
                self._map = None
        except BufferError:
            pass

    # --- layout ------------------------------------------------------------------------

    @cached_property
    def load_base(self) -> int:
        """The link-time address the module's first mapping (file offset 0) has: the
        lowest PT_LOAD vaddr, page aligned. runtime address = module base - load_base +
        vaddr."""
        loads = [s.vaddr - s.offset for s in self.segments if s.type == PT_LOAD]
        return min(loads) if loads else 0

    def is_executable(self, vaddr: int) -> bool:
        return any(s.type == PT_LOAD and s.flags & PF_X and s.vaddr <= vaddr < s.vaddr + s.memsz
                   for s in self.segments)

    def read_vaddr(self, vaddr: int, size: int) -> bytes | None:
        """File bytes at link-time address ``vaddr`` (from a PT_LOAD), or None."""
        for s in self.segments:
            if s.type == PT_LOAD and s.vaddr <= vaddr and vaddr + size <= s.vaddr + s.filesz:
                off = s.offset + vaddr - s.vaddr
                if off + size <= len(self.data):
                    return bytes(self.data[off:off + size])
        return None

    def section_bytes(self, name: str, upto: int | None = None) -> memoryview | bytes | None:
        """A section's contents (decompressed if SHF_COMPRESSED), None if absent or NOBITS
        (separate debug files keep .eh_frame and .text as NOBITS).

        With ``upto``, a compressed section may come back shorter than its full size but
        holding at least its first ``upto`` bytes: inflating libc's 5.8 MB .debug_info to
        read one unit header near its start costs most of a walk otherwise. The partial
        output is kept and grown by later calls."""
        sec = self.sections.get(name)
        if sec is None or sec.type == SHT_NOBITS:
            return None
        if sec.offset + sec.size > len(self.data):
            raise ElfError(f"{self.path}: section {name} extends past the end of the file")
        raw = self.data[sec.offset:sec.offset + sec.size]
        if not sec.flags & SHF_COMPRESSED:
            return raw
        cached = self._inflated.get(name)
        if cached is not None:
            return cached
        if len(raw) < _CHDR.size:
            raise ElfError(f"{self.path}: compressed section {name} has no header")
        ctype, _res, size, _align = _CHDR.unpack_from(raw)
        if ctype != ELFCOMPRESS_ZLIB:
            raise ElfError(f"{self.path}: section {name} uses compression type {ctype}")
        partial = self._partial.get(name)
        if partial is None:
            partial = self._partial[name] = _Inflater(raw[_CHDR.size:])
        try:
            # grow in steps of an eighth of the section: few rounds, little waste
            target = size if upto is None else \
                upto if partial.size >= upto else max(upto, partial.size + size // 8)
            out = partial.inflate(target)
        except zlib.error as e:
            raise ElfError(f"{self.path}: section {name} does not decompress: {e}") from None
        if upto is not None and not partial.done:
            if len(out) < min(upto, size):
                raise ElfError(f"{self.path}: section {name} decompressed to {len(out)} "
                               f"bytes, header says {size}")
            return out
        del self._partial[name]
        if len(out) != size:
            raise ElfError(f"{self.path}: section {name} decompressed to {len(out)} bytes, "
                           f"header says {size}")
        self._inflated[name] = out  # inflated once per file: lookups come back to it
        return out

    @cached_property
    def build_id(self) -> bytes | None:
        """NT_GNU_BUILD_ID from a note section or PT_NOTE segment."""
        spans = [(s.offset, s.size) for s in self.sections.values()
                 if s.name.startswith(".note") and s.type != SHT_NOBITS]
        spans += [(s.offset, s.filesz) for s in self.segments if s.type == PT_NOTE]
        for offset, size in spans:
            end = min(offset + size, len(self.data))
            pos = offset
            while pos + _NHDR.size <= end:
                namesz, descsz, ntype = _NHDR.unpack_from(self.data, pos)
                name_at = pos + _NHDR.size
                desc_at = name_at + ((namesz + 3) & ~3)
                if desc_at + descsz > end:
                    break
                if ntype == NT_GNU_BUILD_ID and bytes(self.data[name_at:name_at + namesz]) \
                        .rstrip(b"\0") == b"GNU":
                    return bytes(self.data[desc_at:desc_at + descsz])
                pos = desc_at + ((descsz + 3) & ~3)
        return None


def read_build_id(path: str) -> bytes | None:
    """The GNU build id of the ELF file at ``path`` (None if it has none)."""
    elf = ElfFile(path)
    try:
        return elf.build_id
    finally:
        elf.close()


class _Inflater:
    """A zlib stream inflated on demand, its output so far kept (grown in large steps,
    so each step's copy of the output is paid a few times per section, not per read)."""

    def __init__(self, compressed: memoryview | bytes) -> None:
        self._inflater = zlib.decompressobj()
        self._input: memoryview | bytes = compressed
        self._parts: list[bytes] = []
        self._joined = b""
        self.size = 0
        self.done = False

    def inflate(self, upto: int) -> bytes:
        """At least the first ``upto`` bytes of output (all of it once the stream ends)."""
        while not self.done and self.size < upto:
            chunk = self._inflater.decompress(self._input, upto - self.size)
            self._input = self._inflater.unconsumed_tail
            self._parts.append(chunk)
            self.size += len(chunk)
            if self._inflater.eof or (not chunk and not self._input):
                self.done = True
        if len(self._joined) != self.size:
            self._joined = b"".join([self._joined, *self._parts])
            self._parts.clear()
        return self._joined

