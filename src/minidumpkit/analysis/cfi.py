"""DWARF call frame information: find the FDE for a pc and run it to the row for that pc.

Sources: ``.eh_frame`` (looked up through ``.eh_frame_hdr``'s sorted table when present,
else through an index of FDE starts built on first use) and ``.debug_frame``. Only the
entry covering the pc is parsed, then only its instructions up to the pc are run, so
naming and unwinding a few frames does not parse a whole section.

Addresses here are link-time addresses (``vaddr``) of the file the section came from.
Malformed data raises :class:`CfiError`; callers treat it as "no CFI for this pc".
"""

from __future__ import annotations

import bisect
import struct
from typing import Callable

from .._lazydataclass import lazy_dataclass

__all__ = ["Cie", "CfiError", "CfiSection", "Fde", "Row", "Rule", "eval_expression"]

# DWARF register numbers on x86_64 (System V psABI, figure 3.36)
RSP = 7
RBP = 6
RA = 16  # the return address column (rip)


class CfiError(Exception):
    """Malformed call frame information."""


# --- little readers ---------------------------------------------------------------------

_STRUCTS: dict[str, struct.Struct] = {}


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview | bytes, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def need(self, n: int) -> int:
        p = self.pos
        if p + n > self.end:
            raise CfiError(f"CFI read of {n} bytes at 0x{p:x} past the end 0x{self.end:x}")
        self.pos = p + n
        return p

    def u8(self) -> int:
        return self.buf[self.need(1)]

    def fmt(self, f: str) -> int:
        st = _STRUCTS.get(f)
        if st is None:
            st = _STRUCTS[f] = struct.Struct("<" + f)
        value: int = st.unpack_from(self.buf, self.need(st.size))[0]
        return value

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.u8()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift > 70:
                raise CfiError("LEB128 too long")

    def sleb(self) -> int:
        result = shift = 0
        while True:
            b = self.u8()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result
            if shift > 70:
                raise CfiError("LEB128 too long")

    def cstr(self) -> bytes:
        start = self.pos
        while self.u8() != 0:
            pass
        return bytes(self.buf[start:self.pos - 1])


DW_EH_PE_omit = 0xFF
_PE_FORMATS = {0x02: "H", 0x03: "I", 0x04: "Q", 0x0A: "h", 0x0B: "i", 0x0C: "q"}


def _read_encoded(r: _Reader, enc: int, *, section_vaddr: int, data_vaddr: int = 0) -> int:
    """A DW_EH_PE_* encoded pointer (pcrel relative to where it is read)."""
    if enc == DW_EH_PE_omit:
        raise CfiError("omitted pointer read")
    at = r.pos
    low = enc & 0x0F
    if low == 0x00:
        value = r.fmt("Q")
    elif low == 0x01:
        value = r.uleb()
    elif low == 0x09:
        value = r.sleb()
    elif low in _PE_FORMATS:
        value = r.fmt(_PE_FORMATS[low])
    else:
        raise CfiError(f"unknown pointer encoding 0x{enc:02x}")
    app = enc & 0x70
    if app == 0x10:  # pcrel
        value += section_vaddr + at
    elif app == 0x30:  # datarel (in .eh_frame_hdr: relative to the header)
        value += data_vaddr
    elif app not in (0x00, 0x20, 0x40, 0x50):  # absptr, textrel (unused on Linux), funcrel, aligned
        raise CfiError(f"unsupported pointer application 0x{enc:02x}")
    return value & 0xFFFF_FFFF_FFFF_FFFF


# --- CIE / FDE --------------------------------------------------------------------------

class Cie:
    """A Common Information Entry: what its FDEs share."""

    __slots__ = ("code_align", "data_align", "ra_register", "fde_encoding", "lsda_encoding",
                 "augmentation_data", "signal_frame", "initial_instructions", "address_size")

    def __init__(self, code_align: int, data_align: int, ra_register: int, fde_encoding: int,
                 lsda_encoding: int, augmentation_data: bool, signal_frame: bool,
                 initial_instructions: bytes, address_size: int = 8) -> None:
        self.code_align = code_align
        self.data_align = data_align
        self.ra_register = ra_register
        self.fde_encoding = fde_encoding
        self.lsda_encoding = lsda_encoding
        self.augmentation_data = augmentation_data  # 'z': FDEs carry an augmentation length
        self.signal_frame = signal_frame  # 'S': a signal trampoline; its caller's pc is exact
        self.initial_instructions = initial_instructions
        self.address_size = address_size

    def __repr__(self) -> str:
        return _repr(self)

    def __eq__(self, other: object) -> bool:
        return _eq(self, other)

    __hash__ = None  # type: ignore[assignment]


class Fde:
    """A Frame Description Entry: the unwind rules of ``[start, end)``."""

    __slots__ = ("cie", "start", "end", "instructions")

    def __init__(self, cie: Cie, start: int, end: int, instructions: bytes) -> None:
        self.cie, self.start, self.end, self.instructions = cie, start, end, instructions

    def __repr__(self) -> str:
        return _repr(self)

    def __eq__(self, other: object) -> bool:
        return _eq(self, other)

    __hash__ = None  # type: ignore[assignment]


@lazy_dataclass
class Rule:
    """How to recover one register: kind is 'undefined', 'same', 'offset' (saved at
    CFA+arg), 'val_offset' (value CFA+arg), 'register' (in register arg), 'expression'
    (saved at the address the expression computes), 'val_expression'."""

    kind: str
    arg: int = 0
    expr: bytes = b""


class Row:
    """The unwind rules at one address: the CFA and each register's rule."""

    __slots__ = ("cfa_register", "cfa_offset", "cfa_expression", "rules", "signal_frame")

    def __init__(self, cfa_register: int = RSP, cfa_offset: int = 0,
                 cfa_expression: bytes | None = None, rules: dict[int, Rule] | None = None,
                 signal_frame: bool = False) -> None:
        self.cfa_register = cfa_register
        self.cfa_offset = cfa_offset
        self.cfa_expression = cfa_expression
        self.rules: dict[int, Rule] = {} if rules is None else rules
        self.signal_frame = signal_frame

    def __repr__(self) -> str:
        return _repr(self)

    def __eq__(self, other: object) -> bool:
        return _eq(self, other)

    __hash__ = None  # type: ignore[assignment]


def _repr(obj: object) -> str:
    """A dataclass-like repr of a slotted class (these classes are made by the thousand
    per walk: plain classes, not dataclasses, whose generation costs every start-up)."""
    names: tuple[str, ...] = getattr(type(obj), "__slots__")
    fields = ", ".join(f"{n}={getattr(obj, n)!r}" for n in names)
    return f"{type(obj).__name__}({fields})"


def _eq(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return NotImplemented  # type: ignore[no-any-return]  # (what == expects)
    names: tuple[str, ...] = getattr(type(a), "__slots__")
    return all(getattr(a, n) == getattr(b, n) for n in names)


class _Shifted:
    """A read-only sequence of ints, each ``shift`` more than in ``values`` (enough for
    ``bisect`` and indexing)."""

    __slots__ = ("values", "shift")

    def __init__(self, values: memoryview, shift: int) -> None:
        self.values, self.shift = values, shift

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> int:
        value: int = self.values[index] + self.shift
        return value


class CfiSection:
    """``.eh_frame`` (``is_eh=True``) or ``.debug_frame`` bytes at link-time address
    ``vaddr``, with an optional ``.eh_frame_hdr`` for binary search."""

    def __init__(self, data: memoryview | bytes, vaddr: int, *, is_eh: bool,
                 hdr: memoryview | bytes | None = None, hdr_vaddr: int = 0) -> None:
        self.data = data
        self.vaddr = vaddr
        self.is_eh = is_eh
        self._cies: dict[int, Cie] = {}
        self._table: tuple[list[int], list[int]] | None = None
        if hdr is not None:
            self._table = self._hdr_table(hdr, hdr_vaddr)

    # .eh_frame_hdr: version, eh_frame_ptr_enc, fde_count_enc, table_enc, then the table
    def _hdr_table(self, hdr: memoryview | bytes, hdr_vaddr: int) -> tuple[list[int], list[int]] | None:
        r = _Reader(hdr, 0, len(hdr))
        version, ptr_enc, count_enc, table_enc = r.u8(), r.u8(), r.u8(), r.u8()
        if version != 1 or count_enc == DW_EH_PE_omit or table_enc == DW_EH_PE_omit:
            return None
        _read_encoded(r, ptr_enc, section_vaddr=hdr_vaddr, data_vaddr=hdr_vaddr)
        count = _read_encoded(r, count_enc, section_vaddr=hdr_vaddr, data_vaddr=hdr_vaddr)
        if table_enc == 0x3B:  # datarel|sdata4, what every GNU linker writes: decode at C speed
            size = count * 8
            if r.pos + size > len(hdr):
                raise CfiError(f".eh_frame_hdr table of {count} entries is truncated")
            flat = memoryview(bytes(hdr[r.pos:r.pos + size])).cast("i")
            # kept as they are, shifted on each read: node's 100,000 entries would take
            # 8 ms to copy into lists, a lookup bisects only ~17 of them
            return (_Shifted(flat[0::2], hdr_vaddr),  # type: ignore[return-value]
                    _Shifted(flat[1::2], hdr_vaddr - self.vaddr))
        else:
            starts, offsets = [], []
            for _ in range(count):
                starts.append(_read_encoded(r, table_enc, section_vaddr=hdr_vaddr,
                                            data_vaddr=hdr_vaddr))
                offsets.append(_read_encoded(r, table_enc, section_vaddr=hdr_vaddr,
                                             data_vaddr=hdr_vaddr) - self.vaddr)
        return starts, offsets

    def _scan_table(self) -> tuple[list[int], list[int]]:
        """Every FDE's (start, offset), sorted: for sections without a search table."""
        pairs: list[tuple[int, int]] = []
        pos, end = 0, len(self.data)
        while pos + 4 <= end:
            length, body, next_pos = self._entry_bounds(pos)
            if length == 0:
                if self.is_eh:
                    break  # the terminator
                pos = next_pos
                continue
            cie_ptr = self._cie_pointer(body)
            if not self._is_cie(cie_ptr):
                try:
                    fde = self._parse_fde(pos)
                except CfiError:
                    fde = None
                if fde is not None and fde.end > fde.start:
                    pairs.append((fde.start, pos))
            pos = next_pos
        pairs.sort()
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _entry_bounds(self, pos: int) -> tuple[int, int, int]:
        r = _Reader(self.data, pos, len(self.data))
        length = r.fmt("I")
        if length == 0xFFFFFFFF:
            length = r.fmt("Q")
        body = r.pos
        if body + length > len(self.data):
            raise CfiError(f"CFI entry at 0x{pos:x} runs past its section")
        return length, body, body + length

    def _cie_pointer(self, body: int) -> int:
        return struct.unpack_from("<I", self.data, body)[0] if body + 4 <= len(self.data) else 0

    def _is_cie(self, cie_ptr: int) -> bool:
        return cie_ptr == 0 if self.is_eh else cie_ptr == 0xFFFFFFFF

    def _cie(self, pos: int) -> Cie:
        cached = self._cies.get(pos)
        if cached is not None:
            return cached
        _length, body, end = self._entry_bounds(pos)
        r = _Reader(self.data, body + 4, end)
        version = r.u8()
        if version not in (1, 3, 4):
            raise CfiError(f"CIE at 0x{pos:x}: version {version}")
        aug = r.cstr()
        address_size = 8
        if version == 4:
            address_size = r.u8()
            r.u8()  # segment selector size
        code_align = r.uleb()
        data_align = r.sleb()
        ra = r.u8() if version == 1 else r.uleb()
        fde_enc, lsda_enc, has_z, signal = 0x00, DW_EH_PE_omit, False, False
        if aug.startswith(b"z"):
            has_z = True
            aug_len = r.uleb()
            aug_end = r.pos + aug_len
            for ch in aug[1:]:
                if ch == ord("R"):
                    fde_enc = r.u8()
                elif ch == ord("L"):
                    lsda_enc = r.u8()
                elif ch == ord("P"):
                    penc = r.u8()
                    _read_encoded(r, penc & 0x7F, section_vaddr=self.vaddr)
                elif ch == ord("S"):
                    signal = True
                elif ch in (ord("B"), ord("G")):  # arm64 BTI / MTE markers: no data
                    pass
                else:
                    break  # unknown augmentation: the rest of its data is skipped by length
            r.pos = aug_end
        elif aug not in (b"",):
            if aug != b"eh":
                raise CfiError(f"CIE at 0x{pos:x}: unknown augmentation {aug!r}")
            r.fmt("Q")  # "eh": old GCC's EH data pointer
        cie = Cie(code_align, data_align, ra, fde_enc, lsda_enc, has_z, signal,
                  bytes(self.data[r.pos:end]), address_size)
        self._cies[pos] = cie
        return cie

    def _parse_fde(self, pos: int) -> Fde | None:
        _length, body, end = self._entry_bounds(pos)
        cie_ptr = self._cie_pointer(body)
        if self._is_cie(cie_ptr):
            return None
        cie_pos = body - cie_ptr if self.is_eh else cie_ptr
        if not 0 <= cie_pos < len(self.data):
            raise CfiError(f"FDE at 0x{pos:x} points at a CIE outside its section")
        cie = self._cie(cie_pos)
        r = _Reader(self.data, body + 4, end)
        if self.is_eh:
            start = _read_encoded(r, cie.fde_encoding, section_vaddr=self.vaddr)
            size = _read_encoded(r, cie.fde_encoding & 0x0F, section_vaddr=self.vaddr)
        else:
            start, size = r.fmt("Q"), r.fmt("Q")
        if cie.augmentation_data:
            r.pos += r.uleb()
        return Fde(cie, start, start + size, bytes(self.data[r.pos:end]))

    def find(self, vaddr: int) -> Fde | None:
        """The FDE whose [start, end) covers ``vaddr``, or None."""
        if self._table is None:
            self._table = self._scan_table()
        starts, offsets = self._table
        i = bisect.bisect_right(starts, vaddr) - 1
        # the search table gives the nearest start at or before vaddr; it must cover it
        while i >= 0:
            fde = self._parse_fde(offsets[i])
            if fde is not None and fde.start <= vaddr < fde.end:
                return fde
            if i == 0 or starts[i - 1] != starts[i]:
                return None
            i -= 1
        return None

    def row(self, fde: Fde, vaddr: int) -> Row:
        """Run the CIE's initial instructions, then the FDE's up to ``vaddr``."""
        row = Row(signal_frame=fde.cie.signal_frame)
        initial = _execute(fde.cie, fde.cie.initial_instructions, row, None, fde.start,
                           vaddr, self.vaddr)
        _execute(fde.cie, fde.instructions, row, initial, fde.start, vaddr, self.vaddr)
        return row


def _copy(row: Row) -> Row:
    return Row(row.cfa_register, row.cfa_offset, row.cfa_expression, dict(row.rules),
               row.signal_frame)


def _execute(cie: Cie, code: bytes, row: Row, initial: Row | None, loc: int, target: int,
             section_vaddr: int) -> Row:
    """Run CFA instructions into ``row`` until the location passes ``target``; returns a
    copy of the row as it stood at the end (the CIE's initial row for DW_CFA_restore)."""
    r = _Reader(code, 0, len(code))
    stack: list[Row] = []
    da, ca = cie.data_align, cie.code_align
    rules = row.rules
    while r.pos < r.end:
        op = r.u8()
        high, low = op & 0xC0, op & 0x3F
        if high == 0x40:  # advance_loc
            loc += low * ca
            if loc > target:
                break
            continue
        if high == 0x80:  # offset
            rules[low] = Rule("offset", r.uleb() * da)
            continue
        if high == 0xC0:  # restore
            _restore(rules, initial, low)
            continue
        if op == 0x00:  # nop
            continue
        if op in (0x02, 0x03, 0x04, 0x01):  # advance_loc1/2/4, set_loc
            if op == 0x01:
                loc = r.fmt("Q") if cie.fde_encoding == 0 else _read_encoded(
                    r, cie.fde_encoding, section_vaddr=section_vaddr)
            else:
                loc += r.fmt({0x02: "B", 0x03: "H", 0x04: "I"}[op]) * ca
            if loc > target:
                break
        elif op == 0x05:  # offset_extended
            reg = r.uleb()
            rules[reg] = Rule("offset", r.uleb() * da)
        elif op == 0x06:  # restore_extended
            _restore(rules, initial, r.uleb())
        elif op == 0x07:
            rules[r.uleb()] = Rule("undefined")
        elif op == 0x08:
            rules[r.uleb()] = Rule("same")
        elif op == 0x09:
            reg = r.uleb()
            rules[reg] = Rule("register", r.uleb())
        elif op == 0x0A:  # remember_state
            stack.append(_copy(row))
        elif op == 0x0B:  # restore_state
            if not stack:
                raise CfiError("DW_CFA_restore_state with an empty stack")
            saved = stack.pop()
            row.cfa_register, row.cfa_offset = saved.cfa_register, saved.cfa_offset
            row.cfa_expression = saved.cfa_expression
            rules.clear()
            rules.update(saved.rules)
        elif op == 0x0C:  # def_cfa
            row.cfa_register, row.cfa_offset, row.cfa_expression = r.uleb(), r.uleb(), None
        elif op == 0x0D:  # def_cfa_register
            row.cfa_register, row.cfa_expression = r.uleb(), None
        elif op == 0x0E:  # def_cfa_offset
            row.cfa_offset = r.uleb()
        elif op == 0x0F:  # def_cfa_expression
            n = r.uleb()
            row.cfa_expression = bytes(code[r.need(n):r.pos])
        elif op in (0x10, 0x16):  # expression, val_expression
            reg = r.uleb()
            n = r.uleb()
            rules[reg] = Rule("expression" if op == 0x10 else "val_expression",
                              expr=bytes(code[r.need(n):r.pos]))
        elif op == 0x11:  # offset_extended_sf
            reg = r.uleb()
            rules[reg] = Rule("offset", r.sleb() * da)
        elif op == 0x12:  # def_cfa_sf
            row.cfa_register, row.cfa_offset, row.cfa_expression = r.uleb(), r.sleb() * da, None
        elif op == 0x13:  # def_cfa_offset_sf
            row.cfa_offset = r.sleb() * da
        elif op in (0x14, 0x15):  # val_offset, val_offset_sf
            reg = r.uleb()
            rules[reg] = Rule("val_offset", (r.uleb() if op == 0x14 else r.sleb()) * da)
        elif op == 0x2E:  # GNU_args_size: only matters for landing pads
            r.uleb()
        elif op == 0x2F:  # GNU_negative_offset_extended
            reg = r.uleb()
            rules[reg] = Rule("offset", -r.uleb() * da)
        else:
            raise CfiError(f"unknown CFA instruction 0x{op:02x}")
    return _copy(row)


def _restore(rules: dict[int, Rule], initial: Row | None, reg: int) -> None:
    if initial is not None and reg in initial.rules:
        rules[reg] = initial.rules[reg]
    else:
        rules.pop(reg, None)


# --- DWARF expressions ------------------------------------------------------------------

_MASK = 0xFFFF_FFFF_FFFF_FFFF


def eval_expression(expr: bytes, register: Callable[[int], int], read_u64: Callable[[int], int],
                    initial: list[int] | None = None) -> int:
    """Evaluate a DWARF expression the way CFI uses it (the subset compilers and glibc
    emit: constants, breg, deref, arithmetic, comparisons, branches). ``register(n)``
    gives a register's value (raising if unknown), ``read_u64`` reads target memory."""
    stack = list(initial or [])
    r = _Reader(expr, 0, len(expr))
    steps = 0

    def pop() -> int:
        if not stack:
            raise CfiError("DWARF expression stack underflow")
        return stack.pop()

    while r.pos < r.end:
        steps += 1
        if steps > 10_000:
            raise CfiError("DWARF expression does not terminate")
        op = r.u8()
        if 0x30 <= op <= 0x4F:  # lit0..lit31
            stack.append(op - 0x30)
        elif 0x70 <= op <= 0x8F:  # breg0..breg31
            stack.append((register(op - 0x70) + r.sleb()) & _MASK)
        elif 0x50 <= op <= 0x6F:  # reg0..reg31 (a register's value, as CFI uses it)
            stack.append(register(op - 0x50))
        elif op == 0x92:  # bregx
            reg = r.uleb()
            stack.append((register(reg) + r.sleb()) & _MASK)
        elif op == 0x03:  # addr
            stack.append(r.fmt("Q"))
        elif op in (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F):
            fmt = {0x08: "B", 0x09: "b", 0x0A: "H", 0x0B: "h", 0x0C: "I", 0x0D: "i",
                   0x0E: "Q", 0x0F: "q"}[op]
            stack.append(r.fmt(fmt) & _MASK)
        elif op == 0x10:
            stack.append(r.uleb())
        elif op == 0x11:
            stack.append(r.sleb() & _MASK)
        elif op == 0x12:  # dup
            v = pop()
            stack += [v, v]
        elif op == 0x13:
            pop()
        elif op == 0x14:  # over
            if len(stack) < 2:
                raise CfiError("DWARF expression stack underflow")
            stack.append(stack[-2])
        elif op == 0x15:  # pick
            idx = r.u8()
            if idx >= len(stack):
                raise CfiError("DW_OP_pick past the stack")
            stack.append(stack[-1 - idx])
        elif op == 0x16:  # swap
            a, b = pop(), pop()
            stack += [a, b]
        elif op == 0x17:  # rot
            a, b, c = pop(), pop(), pop()
            stack += [a, c, b]
        elif op == 0x06:  # deref
            stack.append(read_u64(pop()))
        elif op == 0x94:  # deref_size
            n = r.u8()
            if not 1 <= n <= 8:
                raise CfiError(f"DW_OP_deref_size {n}")
            stack.append(read_u64(pop()) & ((1 << (8 * n)) - 1))
        elif op == 0x23:  # plus_uconst
            stack.append((pop() + r.uleb()) & _MASK)
        elif op in _BINARY:
            b, a = pop(), pop()
            stack.append(_BINARY[op](a, b) & _MASK)
        elif op == 0x1F:  # neg
            stack.append(-pop() & _MASK)
        elif op == 0x20:  # not
            stack.append(~pop() & _MASK)
        elif op == 0x19:  # abs
            v = _signed(pop())
            stack.append(abs(v) & _MASK)
        elif op == 0x2F:  # skip
            r.pos += r.fmt("h")
            if not 0 <= r.pos <= r.end:
                raise CfiError("DW_OP_skip out of the expression")
        elif op == 0x28:  # bra
            off = r.fmt("h")
            if pop() != 0:
                r.pos += off
                if not 0 <= r.pos <= r.end:
                    raise CfiError("DW_OP_bra out of the expression")
        elif op == 0x96:  # nop
            pass
        else:
            raise CfiError(f"unsupported DWARF expression op 0x{op:02x}")
    if not stack:
        raise CfiError("DWARF expression left no value")
    return stack[-1]


def _signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _div(a: int, b: int) -> int:
    if b == 0:
        raise CfiError("DWARF expression divides by zero")
    sa, sb = _signed(a), _signed(b)
    q = abs(sa) // abs(sb)
    return q if (sa < 0) == (sb < 0) else -q


def _mod(a: int, b: int) -> int:
    if b == 0:
        raise CfiError("DWARF expression divides by zero")
    return a % b


_BINARY: dict[int, Callable[[int, int], int]] = {
    0x1A: lambda a, b: a & b,
    0x1B: _div,
    0x1C: lambda a, b: a - b,
    0x1D: _mod,
    0x1E: lambda a, b: a * b,
    0x21: lambda a, b: a | b,
    0x22: lambda a, b: a + b,
    0x24: lambda a, b: a << (b & 63),
    0x25: lambda a, b: a >> (b & 63),
    0x26: lambda a, b: _signed(a) >> (b & 63),
    0x27: lambda a, b: a ^ b,
    0x29: lambda a, b: int(a == b),
    0x2A: lambda a, b: int(_signed(a) >= _signed(b)),
    0x2B: lambda a, b: int(_signed(a) > _signed(b)),
    0x2C: lambda a, b: int(_signed(a) <= _signed(b)),
    0x2D: lambda a, b: int(_signed(a) < _signed(b)),
    0x2E: lambda a, b: int(a != b),
}
