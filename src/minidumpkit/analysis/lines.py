"""Source file and line of an address from DWARF ``.debug_line``, parsed lazily.

Only what one lookup needs: ``.debug_aranges`` maps the address to its compilation unit;
that unit's first DIE gives the offset of its line program (``DW_AT_stmt_list``) and its
directory; the program is run once into sorted rows (cached per unit) and bisected. DWARF
versions 2 to 5 are read. Anything unreadable raises :class:`LineError`: the frame then
has no line, nothing else changes.
"""

from __future__ import annotations

import bisect
import posixpath
import struct
from functools import cached_property
from typing import Any, Protocol

from .cfi import CfiError, _Reader
from .elf import ElfError, ElfFile

__all__ = ["LineError", "LineTable"]


class FileNames(Protocol):
    """A unit's file table: a list of paths, or DWARF 5's made-on-use :class:`_Names`."""

    def __getitem__(self, index: int, /) -> str: ...
    def __len__(self) -> int: ...


class LineError(Exception):
    """DWARF line information that cannot be read."""


class _Unit:
    __slots__ = ("addresses", "ends", "files", "lines", "names")

    def __init__(self, addresses: list[int], ends: list[int], files: list[int],
                 lines: list[int], names: FileNames) -> None:
        self.addresses = addresses  # row start addresses, sorted
        self.ends = ends            # for each row, where its range ends
        self.files = files
        self.lines = lines
        self.names = names          # file index -> path


# fixed-size forms: DW_FORM_* -> byte size (offset-size forms are handled apart)
_FIXED = {0x01: 8, 0x05: 2, 0x06: 4, 0x07: 8, 0x0B: 1, 0x0C: 1, 0x11: 1, 0x12: 2, 0x13: 4,
          0x14: 8, 0x19: 0, 0x1E: 16, 0x20: 8, 0x21: 0, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4,
          0x29: 1, 0x2A: 2, 0x2B: 3, 0x2C: 4, 0x1C: 4, 0x24: 8}
_OFFSET_FORMS = {0x0E, 0x10, 0x17, 0x1D, 0x1F}  # strp, ref_addr, sec_offset, strp_sup, line_strp
_ULEB_FORMS = {0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23}


_STRING_SECTIONS = {0x0E: ".debug_str", 0x1F: ".debug_line_str"}  # strp, line_strp
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ARANGE_HEAD = struct.Struct("<IHIBB")  # 32-bit DWARF: length, version, CU offset, sizes
_SHF_COMPRESSED = 0x800


class LineTable:
    """Lines of one ELF file (usually a separate debug file)."""

    def __init__(self, elf: ElfFile) -> None:
        self.elf = elf
        self._units: dict[int, _Unit | None] = {}     # by CU offset (.debug_info)
        self._programs: dict[int, _Unit | None] = {}  # by line program offset
        self._line_offsets = [0]  # where the line programs start, as far as walked
        self._strings: dict[tuple[int, int], str] = {}
        # read compressed sections only as far as a unit needs (see ElfFile.section_bytes);
        # turned off for a retry when a unit reads past the prefix it asked for
        self._prefixes = True
        info = elf.sections.get(".debug_info")
        # A compressed .debug_info (Debian's debug files) must be inflated up to a unit to
        # read its DIE, most of it for a few scattered units: 40 ms for libc. Its unit's line
        # program is found by order instead (see _by_order), and checked.
        self._by_order_first = info is not None and bool(info.flags & _SHF_COMPRESSED)

    def _section(self, name: str, upto: int | None = None) -> memoryview | bytes:
        data = self.elf.section_bytes(name, upto if self._prefixes else None)
        if data is None:
            raise LineError(f"{self.elf.path}: no {name}")
        return data

    @cached_property
    def _aranges(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """Every address range of .debug_aranges sorted by start: (starts, ends, CU offsets,
        ordinals: the index of the range's set in the section, which is the index of its
        unit among the CUs when every CU has a set, as linkers write them)."""
        data = self._section(".debug_aranges")
        quads: list[tuple[int, int, int, int]] = []
        pos, size, ordinal = 0, len(data), 0
        head, pair = _ARANGE_HEAD, struct.Struct("<QQ")
        while pos + 4 <= size:
            length = _U32.unpack_from(data, pos)[0]
            if length == 0xFFFFFFFF:  # 64-bit DWARF
                if pos + 24 > size:
                    break
                length = _U64.unpack_from(data, pos + 4)[0]
                end = pos + 12 + length
                cu = _U64.unpack_from(data, pos + 14)[0]
                address_size, first = data[pos + 22], pos + 24
            else:
                if pos + 12 > size:
                    break
                end = pos + 4 + length
                _length, _version, cu, address_size, _seg = head.unpack_from(data, pos)
                first = pos + 12
            if end > size or length == 0:
                break
            if address_size == 8:
                first += -(first - pos) % 16  # tuples are aligned to twice the address size
                count = (end - first) // 16
                for start, span in pair.iter_unpack(data[first:first + 16 * count]):
                    if start == 0 and span == 0:
                        break
                    quads.append((start, start + span, cu, ordinal))
            pos = end
            ordinal += 1
        quads.sort()
        return ([q[0] for q in quads], [q[1] for q in quads], [q[2] for q in quads],
                [q[3] for q in quads])

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """(file path, line) of the row covering ``vaddr``, or None."""
        try:
            starts, ends, cus, ordinals = self._aranges
            i = bisect.bisect_right(starts, vaddr) - 1
            if i < 0 or vaddr >= ends[i]:
                return None
            if self._by_order_first:
                found = self._by_order(ordinals[i], vaddr)
                if found is not None:
                    return found
            if cus[i] in self._units:
                unit = self._units[cus[i]]
            else:
                unit = self._units[cus[i]] = self._unit_read(cus[i])
            return None if unit is None else _row(unit, vaddr)
        except (LineError, CfiError, ElfError, struct.error, IndexError, ValueError,
                KeyError, UnicodeDecodeError):
            return None

    # --- a unit's line program by its order, without its DIE ------------------------------

    def _by_order(self, ordinal: int, vaddr: int) -> tuple[str, int] | None:
        """The line of ``vaddr`` from the ``ordinal``-th line program, if that program is a
        DWARF 5 one (its directory 0 is the compilation directory, which older versions
        keep in the unit's DIE only) whose rows cover ``vaddr``.
        Linkers lay out .debug_aranges sets, units and line programs in the same input
        order, so this is the unit's program; when it is not (a unit without a set or
        without a program), its rows describe another unit's code, never this address,
        and the caller reads the DIE. None: not found that way."""
        try:
            offset = self._line_offset(ordinal)
        except (LineError, ElfError, struct.error, IndexError, ValueError):
            return None  # the DIE's way may still read it
        if offset is None:
            return None
        if offset in self._programs:
            unit = self._programs[offset]
        else:
            unit = None
            try:
                head = self._section(".debug_line", offset + 16)
                version_at = offset + (12 if _U32.unpack_from(head, offset)[0] == 0xFFFFFFFF
                                       else 4)
                if struct.unpack_from("<H", head, version_at)[0] >= 5:
                    unit = self._program(offset, None)
            except (LineError, CfiError, ElfError, struct.error, IndexError, ValueError,
                    KeyError):
                unit = None
            self._programs[offset] = unit
        if unit is None:
            return None
        return _row(unit, vaddr)

    def _line_offset(self, ordinal: int) -> int | None:
        """Where the ``ordinal``-th line program starts (unit headers walked once)."""
        offsets = self._line_offsets
        head: memoryview | bytes = b""
        while len(offsets) <= ordinal:
            pos = offsets[-1]
            if pos + 12 > len(head):  # (a compressed section is inflated as far as needed)
                head = self._section(".debug_line", pos + 12)
                if pos + 4 > len(head):
                    return None
            length = _U32.unpack_from(head, pos)[0]
            if length == 0xFFFFFFFF:
                if pos + 12 > len(head):
                    return None
                nxt = pos + 12 + _U64.unpack_from(head, pos + 4)[0]
            else:
                nxt = pos + 4 + length
            if length == 0:
                return None
            offsets.append(nxt)
        return offsets[ordinal]

    # --- the unit's DIE: stmt_list and comp_dir ------------------------------------------

    def _unit_read(self, cu_offset: int) -> _Unit | None:
        try:
            return self._unit(cu_offset)
        except (LineError, CfiError, struct.error, IndexError, ValueError):
            if not self._prefixes:
                raise
        self._prefixes = False  # a unit beyond its prefix: read whole sections from now on
        return self._unit(cu_offset)

    def _unit(self, cu_offset: int) -> _Unit | None:
        info = self._section(".debug_info", cu_offset + 4096)
        r = _Reader(info, cu_offset, len(info))
        length, offset_size = r.fmt("I"), 4
        if length == 0xFFFFFFFF:
            length, offset_size = r.fmt("Q"), 8
        r.end = min(len(info), r.pos + length)
        version = r.fmt("H")
        off_fmt = "I" if offset_size == 4 else "Q"
        if version >= 5:
            unit_type, _addr_size = r.u8(), r.u8()
            abbrev_offset = r.fmt(off_fmt)
            if unit_type in (0x02, 0x06):  # type units: signature + type offset
                r.pos += 8 + offset_size
            elif unit_type in (0x04, 0x05):  # skeleton / split: dwo id
                r.pos += 8
        else:
            abbrev_offset = r.fmt(off_fmt)
            r.u8()
        code = r.uleb()
        attrs = self._abbrev(abbrev_offset, code)
        stmt_list = comp_dir = None
        for attr, form, implicit in attrs:
            value = self._form(r, form, offset_size, implicit)
            if attr == 0x10:
                stmt_list = value
            elif attr == 0x1B:
                comp_dir = self._string(form, value)
        if not isinstance(stmt_list, int):
            return None
        return self._program(stmt_list, comp_dir if isinstance(comp_dir, str) else None)

    def _abbrev(self, offset: int, code: int) -> list[tuple[int, int, int]]:
        data = self._section(".debug_abbrev", offset + 16384)
        r = _Reader(data, offset, len(data))
        while True:
            this = r.uleb()
            if this == 0:
                raise LineError(f"abbreviation {code} not found")
            r.uleb()  # tag
            r.u8()    # has children
            attrs: list[tuple[int, int, int]] = []
            while True:
                attr, form = r.uleb(), r.uleb()
                implicit = r.sleb() if form == 0x21 else 0
                if attr == 0 and form == 0:
                    break
                attrs.append((attr, form, implicit))
            if this == code:
                return attrs

    def _form(self, r: _Reader, form: int, offset_size: int, implicit: int) -> int | bytes | None:
        if form in _OFFSET_FORMS:
            return r.fmt("I" if offset_size == 4 else "Q")
        if form in _ULEB_FORMS:
            return r.uleb()
        if form == 0x0D:
            return r.sleb()
        if form == 0x08:
            return r.cstr()
        if form == 0x21:
            return implicit
        if form in (0x09, 0x18):  # block, exprloc
            r.pos += r.uleb()
            return None
        if form in (0x0A, 0x03, 0x04):  # block1, block2, block4
            r.pos += r.fmt({0x0A: "B", 0x03: "H", 0x04: "I"}[form])
            return None
        if form == 0x16:  # indirect (once: a chain of them is malformed)
            inner = r.uleb()
            if inner == 0x16:
                raise LineError("DW_FORM_indirect to DW_FORM_indirect")
            return self._form(r, inner, offset_size, implicit)
        size = _FIXED.get(form)
        if size is None:
            raise LineError(f"unknown DWARF form 0x{form:x}")
        start = r.need(size)
        return int.from_bytes(r.buf[start:start + size], "little") if size <= 8 else None

    def _string(self, form: int, value: int | bytes | None) -> str | None:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if not isinstance(value, int):
            return None
        section = _STRING_SECTIONS.get(form)
        if section is None:
            return None
        key = (form, value)  # DWARF 5 units share their directories' and files' strings
        found = self._strings.get(key)
        if found is None:
            data = self._section(section, value + 4096)
            end = value
            while end < len(data) and end < value + 4096:
                stop = bytes(data[end:end + 64]).find(b"\0")
                if stop >= 0:
                    end += stop
                    break
                end += 64
            else:
                end = value  # no terminator: as before, an empty string
            found = self._strings[key] = bytes(data[value:end]).decode("utf-8", "replace")
        return found

    # --- the line program ----------------------------------------------------------------

    def _program(self, offset: int, comp_dir: str | None) -> _Unit:
        head = self._section(".debug_line", offset + 12)
        length = struct.unpack_from("<I", head, offset)[0]
        if length == 0xFFFFFFFF:
            length = struct.unpack_from("<Q", head, offset + 4)[0] + 8
        data = self._section(".debug_line", offset + 4 + length)
        r = _Reader(data, offset, len(data))
        length, offset_size = r.fmt("I"), 4
        if length == 0xFFFFFFFF:
            length, offset_size = r.fmt("Q"), 8
        end = min(len(data), r.pos + length)
        r.end = end
        version = r.fmt("H")
        if version >= 5:
            r.u8()  # address size
            r.u8()  # segment selector size
        header_length = r.fmt("I" if offset_size == 4 else "Q")
        program = r.pos + header_length
        min_inst = r.u8()
        if version >= 4:
            r.u8()  # maximum operations per instruction (VLIW only)
        default_is_stmt = r.u8()
        line_base = struct.unpack("b", bytes([r.u8()]))[0]
        line_range = r.u8()
        opcode_base = r.u8()
        if line_range == 0:
            raise LineError("line_range 0")
        std_lengths = [r.u8() for _ in range(opcode_base - 1)]
        names = self._file_names(r, version, offset_size, comp_dir)
        r.pos = program
        return self._run(r, min_inst, bool(default_is_stmt), line_base, line_range,
                         opcode_base, std_lengths, names, version)

    def _entries(self, r: _Reader, offset_size: int) -> list[dict[int, Any]]:
        """A DWARF 5 directory or file table: each entry's content codes -> values, the
        path (content 1) as (form, value), read on use."""
        formats = [(r.uleb(), r.uleb()) for _ in range(r.u8())]
        out = []
        count = r.uleb()
        if count > r.end - r.pos + 1 or (count and not formats):
            raise LineError(f"{count} directory/file entries cannot fit in the header")
        form = self._form
        for _ in range(count):
            entry: dict[int, Any] = {}
            for content, code in formats:
                value = form(r, code, offset_size, 0)
                entry[content] = (code, value) if content == 1 else value
            out.append(entry)
        return out

    def _file_names(self, r: _Reader, version: int, offset_size: int,
                    comp_dir: str | None) -> FileNames:
        if version >= 5:
            return _Names(self, self._entries(r, offset_size), self._entries(r, offset_size),
                          comp_dir)
        dirs = [comp_dir or ""]
        while True:
            directory = r.cstr()
            if not directory:
                break
            dirs.append(directory.decode("utf-8", "replace"))
        out = [""]  # DWARF 2-4 count files from 1
        while True:
            raw = r.cstr()
            if not raw:
                break
            index = r.uleb()
            r.uleb()
            r.uleb()
            base = dirs[index] if index < len(dirs) else ""
            out.append(_join(comp_dir, base, raw.decode("utf-8", "replace")))
        return out

    def _run(self, r: _Reader, min_inst: int, default_is_stmt: bool, line_base: int,
             line_range: int, opcode_base: int, std_lengths: list[int],
             names: FileNames,
             version: int) -> _Unit:
        # each sequence's rows as parallel lists (address, file, line), and where it ends
        sequences: list[tuple[list[int], list[int], list[int], int]] = []
        addrs: list[int] = []
        files: list[int] = []
        lines: list[int] = []
        address, file, line = 0, 1, 1
        # The hot loop of a lookup (a unit of libc runs ~10^4 opcodes): plain locals and
        # bytes indexing, LEB128 inline, no method call per byte, no tuple per row.
        code = bytes(r.buf[r.pos:r.end])
        pos, end = 0, len(code)
        special_advance = [(op - opcode_base) // line_range * min_inst for op in range(256)]
        special_line = [line_base + (op - opcode_base) % line_range for op in range(256)]
        std = [0, *std_lengths] + [0] * 256
        add_a, add_f, add_l = addrs.append, files.append, lines.append
        try:
            while pos < end:
                op = code[pos]
                pos += 1
                if op >= opcode_base:
                    address += special_advance[op]
                    line += special_line[op]
                    add_a(address)
                    add_f(file)
                    add_l(line)
                    continue
                if op == 0:
                    size = shift = 0
                    while True:
                        b = code[pos]
                        pos += 1
                        size |= (b & 0x7F) << shift
                        shift += 7
                        if not b & 0x80:
                            break
                    stop = pos + size
                    sub = code[pos] if size else 0
                    if sub == 1:
                        if addrs:
                            sequences.append((addrs, files, lines, address))
                            addrs, files, lines = [], [], []
                            add_a, add_f, add_l = addrs.append, files.append, lines.append
                        address, file, line = 0, 1, 1
                    elif sub == 2 and size == 9:
                        address = int.from_bytes(code[pos + 1:pos + 9], "little")
                    pos = stop
                elif op == 1:
                    add_a(address)
                    add_f(file)
                    add_l(line)
                elif op in (2, 3, 4, 5):
                    value = shift = 0
                    while True:
                        b = code[pos]
                        pos += 1
                        value |= (b & 0x7F) << shift
                        shift += 7
                        if not b & 0x80:
                            break
                    if op == 2:
                        address += value * min_inst
                    elif op == 3:
                        line += value - (1 << shift) if b & 0x40 else value
                    elif op == 4:
                        file = value
                elif op == 8:
                    address += special_advance[255]
                elif op == 9:
                    address += code[pos] | code[pos + 1] << 8
                    pos += 2
                elif op not in (6, 7, 10, 11):
                    for _ in range(std[op]):
                        while code[pos] & 0x80:
                            pos += 1
                        pos += 1
        except IndexError:
            raise LineError("line program runs past its end") from None
        del version, default_is_stmt
        return _rows(sequences, names)


def _rows(sequences: list[tuple[list[int], list[int], list[int], int]],
          names: FileNames) -> _Unit:
    """The rows of a unit's sequences, sorted by address, each with the address where it
    ends (the next row's, or the sequence's end). Sequences that do not overlap (as
    compilers lay out a unit's code) are joined whole; a row of the same address as the
    next one in its sequence is then shadowed by it (a lookup bisects to the last), as if
    left out. Overlapping sequences (discarded code relocated to 0) sort row by row, empty
    rows left out."""
    sequences.sort(key=lambda q: (q[0][0], q[3]))
    addresses: list[int] = []
    ends: list[int] = []
    files: list[int] = []
    lines: list[int] = []
    previous_end = -1
    for addrs, fs, ls, end in sequences:
        if addrs[0] < previous_end or end < addrs[-1]:
            break  # overlapping sequences, or one that runs backwards
        addresses += addrs
        ends += addrs[1:]
        ends.append(end)
        files += fs
        lines += ls
        previous_end = end
    else:
        if addresses == sorted(addresses):  # (already-sorted runs: a linear check in C)
            return _Unit(addresses, ends, files, lines, names)
    rows: list[tuple[int, int, int, int]] = []
    for addrs, fs, ls, end in sequences:
        for k, a in enumerate(addrs):
            nxt = addrs[k + 1] if k + 1 < len(addrs) else end
            if nxt > a:
                rows.append((a, nxt, fs[k], ls[k]))
    rows.sort()
    return _Unit([x[0] for x in rows], [x[1] for x in rows], [x[2] for x in rows],
                 [x[3] for x in rows], names)


class _Names:
    """A DWARF 5 unit's file index -> path, each path made on first use (a unit lists
    dozens of headers; a frame needs one of them). Directory 0 is the compilation
    directory (DWARF 5 6.2.4.1: the unit's DW_AT_comp_dir), the others are absolute or
    relative to it."""

    __slots__ = ("_table", "_dirs", "_files", "_comp_dir", "_made")

    def __init__(self, table: LineTable, dirs: list[dict[int, Any]],
                 files: list[dict[int, Any]], comp_dir: str | None) -> None:
        self._table, self._dirs, self._files, self._comp_dir = table, dirs, files, comp_dir
        self._made: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._files)

    def _text(self, entry: dict[int, Any]) -> str:
        raw = entry.get(1)
        return (self._table._string(*raw) or "") if raw is not None else ""

    def __getitem__(self, index: int) -> str:
        made = self._made.get(index)
        if made is None:
            entry = self._files[index]
            d = entry.get(2)
            base = self._text(self._dirs[d]) if isinstance(d, int) and 0 <= d < len(
                self._dirs) else ""
            root = (self._text(self._dirs[0]) if self._dirs else "") or self._comp_dir
            made = self._made[index] = _join(None if d == 0 else root, base,
                                             self._text(entry))
        return made


def _row(unit: _Unit, vaddr: int) -> tuple[str, int] | None:
    k = bisect.bisect_right(unit.addresses, vaddr) - 1
    if k < 0 or vaddr >= unit.ends[k]:
        return None
    f = unit.files[k]
    if not 0 <= f < len(unit.names):
        return None
    return unit.names[f], unit.lines[k]


def _join(comp_dir: str | None, directory: str, name: str) -> str:
    if posixpath.isabs(name):
        return posixpath.normpath(name)
    path = posixpath.join(directory, name)
    if not posixpath.isabs(path) and comp_dir:
        path = posixpath.join(comp_dir, path)
    return posixpath.normpath(path)
