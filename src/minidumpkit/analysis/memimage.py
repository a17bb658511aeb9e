"""CFI from a module's bytes captured in the dump, when no file of it is at hand.

A loaded ELF module keeps its ELF header and program headers in its first page, and its
``.eh_frame_hdr`` and ``.eh_frame`` in a read-only PT_LOAD segment (the one
PT_GNU_EH_FRAME points into). Full dumps capture both; then the module unwinds by CFI
even on a machine that has none of its files. Nothing here is trusted beyond the dump:
every read is bounds-checked and a missing byte means "no CFI from memory".
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import MemoryNotCaptured
from .cfi import CfiError, CfiSection, _read_encoded, _Reader

if TYPE_CHECKING:
    from ..reader import Memory

__all__ = ["cfi_from_memory"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD = 1
PT_GNU_EH_FRAME = 0x6474E550
MAX_PHDRS = 256


def cfi_from_memory(memory: Memory, base: int) -> tuple[CfiSection, int] | None:
    """(.eh_frame through its header table, link-time load base) of the module mapped at
    ``base``, read from the dump's memory; None if the bytes are not all there."""
    try:
        ident, _t, _m, _v, _e, phoff, _s, _f, _eh, phentsize, phnum, *_ = _EHDR.unpack(
            memory.read(base, _EHDR.size))
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            return None
        if phentsize < _PHDR.size or not 0 < phnum <= MAX_PHDRS:
            return None
        table = memory.read(base + phoff, phnum * phentsize)
        phdrs = [_PHDR.unpack_from(table, i * phentsize) for i in range(phnum)]
        loads = [p for p in phdrs if p[0] == PT_LOAD]
        frame = next((p for p in phdrs if p[0] == PT_GNU_EH_FRAME), None)
        if not loads or frame is None:
            return None
        load_base = min(p[3] - p[2] for p in loads)
        bias = base - load_base
        hdr_vaddr, hdr_size = frame[3], frame[5]
        head = memory.read(bias + hdr_vaddr, 12)
        r = _Reader(head, 0, len(head))
        version, ptr_enc, count_enc, table_enc = r.u8(), r.u8(), r.u8(), r.u8()
        if version != 1:
            return None
        eh_vaddr = _read_encoded(r, ptr_enc, section_vaddr=hdr_vaddr, data_vaddr=hdr_vaddr)
        count = _read_encoded(r, count_enc, section_vaddr=hdr_vaddr, data_vaddr=hdr_vaddr)
        if table_enc != 0x3B or count > 1 << 24:
            return None
        hdr = memory.read(bias + hdr_vaddr, max(hdr_size, 12 + 8 * count))
        # .eh_frame runs to the end of its segment at most; read what the dump holds of it
        segment = next((p for p in loads if p[3] <= eh_vaddr < p[3] + p[4]), None)
        if segment is None:
            return None
        end = segment[3] + segment[4]
        found = memory.find(bias + eh_vaddr)
        if found is None:
            return None
        size = min(end, found.end - bias) - eh_vaddr
        data = memory.read(bias + eh_vaddr, size)
        return CfiSection(data, eh_vaddr, is_eh=True, hdr=hdr, hdr_vaddr=hdr_vaddr), load_base
    except (MemoryNotCaptured, CfiError, struct.error, ValueError, IndexError):
        return None
