"""Find CPython's exported symbols (``_PyRuntime``, ``Py_Version``, ``PyCode_Type``) in an
ELF image: as it lies in (dump or process) memory, through PT_DYNAMIC and the GNU or SysV
hash table, or in the file on disk, through ``.dynsym`` and the ``.PyRuntime`` section.

Layouts from elf.h (Elf64_Ehdr 64 B, Elf64_Phdr 56 B, Elf64_Shdr 64 B, Elf64_Dyn 16 B,
Elf64_Sym 24 B); the GNU hash layout from the ELF gABI extension as glibc's dl-lookup.c
reads it. Every count and walk is bounded: the image is untrusted input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

ReadFn = Callable[[int, int], bytes]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
PT_LOAD, PT_DYNAMIC, PT_NOTE = 1, 2, 4
DT_NULL, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ = 0, 4, 5, 6, 10
DT_GNU_HASH = 0x6FFFFEF5
SHT_DYNSYM = 11
MAX_PHNUM = 128
MAX_SHNUM = 4096
MAX_DYN = 1024
MAX_CHAIN = 4096
MAX_NAME = 128
MAX_DYNSYM = 1 << 18


class ElfError(ValueError):
    """The image is not a 64-bit little-endian ELF we can read, or lacks what we need."""


def _ehdr(data: bytes) -> tuple[int, ...]:
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF image")
    return _EHDR.unpack_from(data)


def gnu_hash(name: bytes) -> int:
    h = 5381
    for c in name:
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def sysv_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def symbols_from_memory(read: ReadFn, base: int, size: int,
                        names: Iterable[str]) -> dict[str, int]:
    """Addresses of the wanted dynamic symbols of the image mapped at ``base`` (``size`` bytes
    of address space), read with ``read`` (which raises for memory it does not have)."""
    ehdr = _ehdr(read(base, _EHDR.size))
    phoff, phentsize, phnum = ehdr[5], ehdr[9], ehdr[10]
    if phentsize != _PHDR.size or not 0 < phnum <= MAX_PHNUM:
        raise ElfError(f"{phnum} program headers of {phentsize} B")
    phdrs = [_PHDR.unpack_from(read(base + phoff, phnum * _PHDR.size), i * _PHDR.size)
             for i in range(phnum)]
    loads = [p[3] for p in phdrs if p[0] == PT_LOAD]
    dynamic = [p for p in phdrs if p[0] == PT_DYNAMIC]
    if not loads or not dynamic:
        raise ElfError("no PT_LOAD or no PT_DYNAMIC")
    bias = base - (min(loads) & ~0xFFF)

    def absolute(ptr: int) -> int:
        # ld.so rewrites d_ptr in place to absolute addresses (glibc elf_get_dynamic_info);
        # a pristine image keeps link-time addresses.
        return ptr if base <= ptr < base + size else ptr + bias

    dyn_count = min(dynamic[0][5] // 16, MAX_DYN)
    raw = read(dynamic[0][3] + bias, dyn_count * 16)
    tags: dict[int, int] = {}
    for tag, value in struct.iter_unpack("<qQ", raw):
        if tag == DT_NULL:
            break
        tags.setdefault(tag, value)
    if DT_SYMTAB not in tags or DT_STRTAB not in tags:
        raise ElfError("no DT_SYMTAB / DT_STRTAB")
    symtab, strtab = absolute(tags[DT_SYMTAB]), absolute(tags[DT_STRTAB])
    strsz = tags.get(DT_STRSZ, 1 << 20)

    def symbol(index: int, want: bytes) -> int | None:
        name_off, _info, _other, shndx, value, _size = _SYM.unpack(
            read(symtab + index * _SYM.size, _SYM.size))
        if shndx == 0 or name_off >= strsz:
            return None
        got = read(strtab + name_off, len(want) + 1)
        return value + bias if got == want + b"\0" else None

    found: dict[str, int] = {}
    for text in names:
        want = text.encode()
        if DT_GNU_HASH in tags:
            address = _gnu_lookup(read, absolute(tags[DT_GNU_HASH]), want, symbol)
        elif DT_HASH in tags:
            address = _sysv_lookup(read, absolute(tags[DT_HASH]), want, symbol)
        else:
            raise ElfError("no DT_GNU_HASH / DT_HASH")
        if address is not None:
            found[text] = address
    return found


def _gnu_lookup(read: ReadFn, table: int, want: bytes,
                symbol: Callable[[int, bytes], int | None]) -> int | None:
    nbuckets, symoffset, bloom_size, _shift = struct.unpack("<IIII", read(table, 16))
    if nbuckets == 0 or nbuckets > 1 << 24 or bloom_size > 1 << 24:
        raise ElfError(f"GNU hash table with {nbuckets} buckets")
    h = gnu_hash(want)
    buckets = table + 16 + bloom_size * 8
    index = struct.unpack("<I", read(buckets + (h % nbuckets) * 4, 4))[0]
    if index < symoffset:
        return None
    chains = buckets + nbuckets * 4
    for _ in range(MAX_CHAIN):
        entry = struct.unpack("<I", read(chains + (index - symoffset) * 4, 4))[0]
        if (entry | 1) == (h | 1):
            address = symbol(index, want)
            if address is not None:
                return address
        if entry & 1:
            return None
        index += 1
    return None


def _sysv_lookup(read: ReadFn, table: int, want: bytes,
                 symbol: Callable[[int, bytes], int | None]) -> int | None:
    nbucket, nchain = struct.unpack("<II", read(table, 8))
    if nbucket == 0 or nbucket > 1 << 24:
        raise ElfError(f"SysV hash table with {nbucket} buckets")
    index = struct.unpack("<I", read(table + 8 + (sysv_hash(want) % nbucket) * 4, 4))[0]
    chains = table + 8 + nbucket * 4
    for _ in range(MAX_CHAIN):
        if index == 0 or index >= nchain:
            return None
        address = symbol(index, want)
        if address is not None:
            return address
        index = struct.unpack("<I", read(chains + index * 4, 4))[0]
    return None


class ElfFile:
    """The parts of an ELF file on disk the locator needs: build id, dynamic symbols,
    section addresses, and bytes at a link-time address (from the PT_LOAD that holds it)."""

    def __init__(self, data: bytes) -> None:
        ehdr = _ehdr(data)
        self.data = data
        phoff, shoff, phentsize, phnum, shentsize, shnum = (ehdr[5], ehdr[6], ehdr[9],
                                                            ehdr[10], ehdr[11], ehdr[12])
        shstrndx = ehdr[13]
        if phentsize != _PHDR.size or not 0 < phnum <= MAX_PHNUM:
            raise ElfError("bad program headers")
        self.phdrs = [_PHDR.unpack_from(data, phoff + i * _PHDR.size) for i in range(phnum)
                      if phoff + (i + 1) * _PHDR.size <= len(data)]
        self.sections: dict[str, tuple[int, ...]] = {}
        if shentsize == _SHDR.size and 0 < shnum <= MAX_SHNUM \
                and shoff + shnum * _SHDR.size <= len(data):
            shdrs = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
            names = shdrs[shstrndx] if shstrndx < shnum else None
            for sh in shdrs:
                name = self._cstr(names[4] + sh[0]) if names else ""
                self.sections.setdefault(name, sh)
            self._shdrs = shdrs
        else:
            self._shdrs = []

    def _cstr(self, offset: int) -> str:
        end = self.data.find(b"\0", offset, offset + 4096)
        return self.data[offset:end].decode("latin-1") if end >= 0 else ""

    @property
    def link_base(self) -> int:
        loads: list[int] = [p[3] for p in self.phdrs if p[0] == PT_LOAD]
        if not loads:
            raise ElfError("no PT_LOAD")
        return min(loads) & ~0xFFF

    def build_id(self) -> bytes | None:
        for p in self.phdrs:
            if p[0] != PT_NOTE:
                continue
            notes = self.data[p[2]:p[2] + min(p[5], 1 << 16)]
            pos = 0
            while pos + 12 <= len(notes):
                namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
                desc = pos + 12 + ((namesz + 3) & ~3)
                if ntype == 3 and notes[pos + 12:pos + 12 + namesz] == b"GNU\0":
                    return notes[desc:desc + descsz]
                pos = desc + ((descsz + 3) & ~3)
        return None

    def dynamic_symbols(self, names: Iterable[str]) -> dict[str, int]:
        wanted = set(names)
        found: dict[str, int] = {}
        for sh in self._shdrs:
            if sh[1] != SHT_DYNSYM or sh[6] >= len(self._shdrs):
                continue
            strtab = self._shdrs[sh[6]]
            count = min(sh[5] // _SYM.size, MAX_DYNSYM)
            for i in range(count):
                at = sh[4] + i * _SYM.size
                if at + _SYM.size > len(self.data):
                    break
                name_off, _info, _other, shndx, value, _size = _SYM.unpack_from(self.data, at)
                if shndx == 0:
                    continue
                name = self._cstr(strtab[4] + name_off)
                if name in wanted:
                    found.setdefault(name, value)
        return found

    def read_vaddr(self, vaddr: int, size: int) -> bytes | None:
        for p in self.phdrs:
            if p[0] == PT_LOAD and p[3] <= vaddr and vaddr + size <= p[3] + p[5]:
                at = p[2] + vaddr - p[3]
                return self.data[at:at + size]
        return None
