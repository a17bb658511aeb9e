"""The little ELF reading the Linux backend needs: build ids and the dynamic linker's r_debug.

Sources are the process's memory (through a ``read(address, size) -> bytes``
function that returns a possibly short prefix) or a file on disk. Every walk is
bounded, so a corrupt or hostile image cannot make us loop or allocate without end.
Layouts: elf.h (Elf64_Ehdr 64 B, Elf64_Phdr 56 B, Elf64_Shdr 64 B, Elf64_Dyn 16 B),
link.h (struct r_debug, struct link_map).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .._capture import DsoDebug, LinkMapEntry

ReadFn = Callable[[int, int], bytes]

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
PT_LOAD, PT_DYNAMIC, PT_NOTE, PT_PHDR = 1, 2, 4, 6
SHT_PROGBITS, SHT_NOTE = 1, 7
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
NT_GNU_BUILD_ID = 3
DT_NULL, DT_DEBUG = 0, 21

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_DYN = struct.Struct("<qQ")

MAX_PHNUM = 128
MAX_SHNUM = 4096
MAX_NOTE_BYTES = 1 << 16
MAX_BUILD_ID = 1024
MAX_DYN_ENTRIES = 4096
MAX_LINK_MAPS = 4096
MAX_SONAME = 256


def _phdrs(data: bytes, count: int) -> list[tuple[int, ...]]:
    n = min(count, len(data) // _PHDR.size)
    return [_PHDR.unpack_from(data, i * _PHDR.size) for i in range(n)]


def _header(data: bytes) -> tuple[int, ...] | None:
    if len(data) < _EHDR.size or data[:4] != ELF_MAGIC or data[4] != ELFCLASS64:
        return None
    return _EHDR.unpack_from(data)


def _build_id_from_notes(data: bytes) -> bytes | None:
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        end = desc_at + ((descsz + 3) & ~3)
        if desc_at + descsz > len(data):
            return None
        if ntype == NT_GNU_BUILD_ID and data[name_at:name_at + namesz] == b"GNU\0" \
                and 0 < descsz <= MAX_BUILD_ID:
            return data[desc_at:desc_at + descsz]
        pos = end
    return None


def build_id_from_memory(read: ReadFn, base: int) -> bytes | None:
    """The NT_GNU_BUILD_ID of the ELF image whose headers are mapped at ``base``."""
    ehdr = _header(read(base, _EHDR.size))
    if ehdr is None:
        return None
    phoff, phentsize, phnum = ehdr[5], ehdr[9], ehdr[10]
    if phentsize != _PHDR.size or not 0 < phnum <= MAX_PHNUM:
        return None
    phdrs = _phdrs(read(base + phoff, phnum * _PHDR.size), phnum)
    loads = [p[3] for p in phdrs if p[0] == PT_LOAD]
    if not loads:
        return None
    bias = base - (min(loads) & ~0xFFF)
    for ptype, _flags, _off, vaddr, _pa, filesz, _memsz, _align in phdrs:
        if ptype == PT_NOTE and 0 < filesz <= MAX_NOTE_BYTES:
            found = _build_id_from_notes(read(bias + vaddr, filesz))
            if found:
                return found
    return None


def image_end(read: ReadFn, base: int) -> int | None:
    """Where the ELF image whose headers are mapped at ``base`` ends in memory: its
    load bias plus the highest PT_LOAD ``p_vaddr + p_memsz``. None if ``base`` holds no
    readable 64-bit ELF header with PT_LOAD segments."""
    ehdr = _header(read(base, _EHDR.size))
    if ehdr is None:
        return None
    phoff, phentsize, phnum = ehdr[5], ehdr[9], ehdr[10]
    if phentsize != _PHDR.size or not 0 < phnum <= MAX_PHNUM:
        return None
    loads = [p for p in _phdrs(read(base + phoff, phnum * _PHDR.size), phnum) if p[0] == PT_LOAD]
    if not loads:
        return None
    # the segment at file offset 0 (the headers) is mapped at base, its page-aligned vaddr
    bias = base - (min(p[3] for p in loads) & ~0xFFF)
    return bias + max(p[3] + p[6] for p in loads)


def build_id_from_file(path: str) -> bytes | None:
    """NT_GNU_BUILD_ID from the file's PT_NOTE segments or SHT_NOTE sections;
    failing both, Breakpad's fallback: the first 4 KiB of ``.text`` XOR-folded into
    16 bytes. None if the file cannot be read or is not ELF."""
    if path.startswith("/dev/"):  # opening a device node may block or have side effects
        return None
    try:
        with open(path, "rb") as f:
            ehdr = _header(f.read(_EHDR.size))
            if ehdr is None:
                return None
            phoff, shoff, phentsize, phnum = ehdr[5], ehdr[6], ehdr[9], ehdr[10]
            shentsize, shnum = ehdr[11], ehdr[12]

            def pread(offset: int, size: int) -> bytes:
                f.seek(offset)
                return f.read(size)

            if phentsize == _PHDR.size and 0 < phnum <= MAX_PHNUM:
                for p in _phdrs(pread(phoff, phnum * _PHDR.size), phnum):
                    if p[0] == PT_NOTE and 0 < p[5] <= MAX_NOTE_BYTES:
                        found = _build_id_from_notes(pread(p[2], p[5]))
                        if found:
                            return found
            if shentsize != _SHDR.size or not 0 < shnum <= MAX_SHNUM:
                return None
            raw = pread(shoff, shnum * _SHDR.size)
            shdrs = [_SHDR.unpack_from(raw, i * _SHDR.size)
                     for i in range(len(raw) // _SHDR.size)]
            for sh in shdrs:
                if sh[1] == SHT_NOTE and 0 < sh[5] <= MAX_NOTE_BYTES:
                    found = _build_id_from_notes(pread(sh[4], sh[5]))
                    if found:
                        return found
            text = _text_section(shdrs, ehdr[13], pread)
            if text is not None:
                return text_hash(pread(text[4], min(text[5], 4096)))
    except OSError:
        return None
    return None


def _text_section(shdrs: list[tuple[int, ...]], shstrndx: int,
                  pread: Callable[[int, int], bytes]) -> tuple[int, ...] | None:
    """The section named ``.text`` (Breakpad looks it up by name), else the first
    allocated executable PROGBITS section."""
    if shstrndx < len(shdrs):
        names = pread(shdrs[shstrndx][4], min(shdrs[shstrndx][5], MAX_NOTE_BYTES * 16))
        for sh in shdrs:
            if sh[1] == SHT_PROGBITS and names[sh[0]:sh[0] + 6] == b".text\0":
                return sh
    for sh in shdrs:
        if sh[1] == SHT_PROGBITS and sh[2] & (SHF_ALLOC | SHF_EXECINSTR) == \
                SHF_ALLOC | SHF_EXECINSTR:
            return sh
    return None


def text_hash(text: bytes) -> bytes:
    """Breakpad's identifier for ELF files without a build id (file_id.cc HashElfTextSection)."""
    out = bytearray(16)
    for i, byte in enumerate(text[:4096]):
        out[i % 16] ^= byte
    return bytes(out)


def _read_cstring(read: ReadFn, address: int, limit: int = MAX_SONAME) -> str:
    data = read(address, limit) if address else b""
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def read_dso_debug(read: ReadFn, phdr_address: int, phnum: int) -> DsoDebug | None:
    """The dynamic linker's r_debug and link-map list of the main executable.

    Found from auxv: AT_PHDR/AT_PHNUM give the executable's program headers; PT_PHDR
    gives the load bias, PT_DYNAMIC the _DYNAMIC array, whose DT_DEBUG entry points
    at r_debug. None for static executables (no PT_DYNAMIC / no DT_DEBUG).
    """
    if not phdr_address or not 0 < phnum <= MAX_PHNUM:
        return None
    phdrs = _phdrs(read(phdr_address, phnum * _PHDR.size), phnum)
    bias: int | None = None
    for p in phdrs:
        if p[0] == PT_PHDR:
            bias = phdr_address - p[3]
    if bias is None:  # no PT_PHDR: the headers sit in the first page of the offset-0 PT_LOAD
        first = [p for p in phdrs if p[0] == PT_LOAD and p[2] == 0]
        if not first:
            return None
        bias = (phdr_address & ~0xFFF) - first[0][3]
    dyn = [p for p in phdrs if p[0] == PT_DYNAMIC]
    if not dyn:
        return None
    dyn_addr = bias + dyn[0][3]
    count = min(max(dyn[0][6] // _DYN.size, 1), MAX_DYN_ENTRIES)
    raw = read(dyn_addr, count * _DYN.size)
    r_debug = 0
    used = 0
    for i in range(len(raw) // _DYN.size):
        tag, value = _DYN.unpack_from(raw, i * _DYN.size)
        used = (i + 1) * _DYN.size
        if tag == DT_DEBUG:
            r_debug = value
        elif tag == DT_NULL:
            break
    dynamic = raw[:used]
    if not r_debug:
        return None
    rd = read(r_debug, 40)
    if len(rd) < 40:
        return None
    version, r_map, brk, _state, ldbase = struct.unpack("<i4xQQi4xQ", rd)
    maps: list[LinkMapEntry] = []
    seen: set[int] = set()
    node = r_map
    while node and node not in seen and len(maps) < MAX_LINK_MAPS:
        seen.add(node)
        lm = read(node, 40)
        if len(lm) < 40:
            break
        l_addr, l_name, l_ld, l_next, _l_prev = struct.unpack("<5Q", lm)
        maps.append(LinkMapEntry(addr=l_addr, name=_read_cstring(read, l_name), ld=l_ld))
        node = l_next
    return DsoDebug(version=version, brk=brk, ldbase=ldbase, dynamic_address=dyn_addr,
                    dynamic=dynamic, link_maps=tuple(maps))
