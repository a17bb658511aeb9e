"""Find CPython's exported data (``_PyRuntime``, ``Py_Version``, ``PyCode_Type``) in a
PE32+ image: ``python3XY.dll`` as it lies in (dump or process) memory, or its file.

The headers (IMAGE_DOS_HEADER.e_lfanew, IMAGE_NT_HEADERS64, the export data directory)
and IMAGE_EXPORT_DIRECTORY are laid out as winnt.h declares them; an export's address
is the module base plus its RVA. The name table is sorted (the loader binary-searches
it), so each name is found by binary search, reading only the name-pointer entries and
the names it compares: a writer that logs these reads keeps a few hundred bytes, enough
for a reader to find the same exports in the dump alone. Every count is bounded: the
image is untrusted input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

ReadFn = Callable[[int, int], bytes]

PE32_PLUS = 0x20B
MAX_EXPORTS = 1 << 16
MAX_SECTIONS = 96
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_EXPORT_DIRECTORY = struct.Struct("<IIHHIIIIIII")  # 40 bytes


class PeError(ValueError):
    """The image is not a PE32+ image we can read, or lacks what we need."""


class PeImage:
    """A PE32+ image reached through ``read_rva(rva, size)`` (exact bytes or an error)."""

    def __init__(self, read_rva: ReadFn) -> None:
        self.read_rva = read_rva
        dos = read_rva(0, 64)
        if dos[:2] != b"MZ":
            raise PeError("no MZ header")
        self.nt = _U32.unpack_from(dos, 0x3C)[0]
        if not 0 < self.nt < 1 << 16:
            raise PeError(f"e_lfanew {self.nt:#x} out of bounds")
        head = read_rva(self.nt, 24 + 112 + 8)  # signature, file header, optional header
        if head[:4] != b"PE\0\0" or _U16.unpack_from(head, 24)[0] != PE32_PLUS:
            raise PeError("not a PE32+ image")
        self.timestamp = _U32.unpack_from(head, 8)[0]
        self.section_count = _U16.unpack_from(head, 6)[0]
        self.optional_size = _U16.unpack_from(head, 20)[0]
        self.size_of_image = _U32.unpack_from(head, 24 + 56)[0]
        directories = _U32.unpack_from(head, 24 + 108)[0]
        self.export_rva, self.export_size = (struct.unpack_from("<II", head, 24 + 112)
                                             if directories else (0, 0))

    def sections(self) -> list[tuple[bytes, int, int, int, int]]:
        """(name, virtual address, virtual size, raw offset, raw size) of every section."""
        count = min(self.section_count, MAX_SECTIONS)
        table = self.read_rva(self.nt + 24 + self.optional_size, 40 * count)
        out = []
        for k in range(count):
            name, vsize, vaddr, rsize, roff = struct.unpack_from("<8sIIII", table, 40 * k)
            out.append((name.rstrip(b"\0"), vaddr, vsize, roff, rsize))
        return out

    def exports(self, names: Iterable[str]) -> dict[str, int]:
        """The RVA of each of ``names`` the export table has (forwarders left out)."""
        if not self.export_rva:
            raise PeError("no export directory")
        fields = _EXPORT_DIRECTORY.unpack(self.read_rva(self.export_rva, _EXPORT_DIRECTORY.size))
        functions, named = fields[6], fields[7]
        address_of_functions, address_of_names, address_of_ordinals = fields[8:11]
        if functions > MAX_EXPORTS or named > MAX_EXPORTS:
            raise PeError(f"{functions} exports, {named} names: out of bounds")
        found: dict[str, int] = {}
        for name in names:
            index = self._find_name(name.encode() + b"\0", address_of_names, named)
            if index is None:
                continue
            ordinal = _U16.unpack(self.read_rva(address_of_ordinals + 2 * index, 2))[0]
            if ordinal >= functions:
                continue
            rva = _U32.unpack(self.read_rva(address_of_functions + 4 * ordinal, 4))[0]
            if self.export_rva <= rva < self.export_rva + self.export_size:
                continue  # a forwarder string, not data
            found[name] = rva
        return found

    def _find_name(self, wanted: bytes, table: int, count: int) -> int | None:
        """Binary search of the sorted name table; compares ``len(wanted)`` bytes of each
        name (``wanted`` ends with NUL, so that decides strcmp's order)."""
        lo, hi = 0, count
        while lo < hi:
            mid = (lo + hi) // 2
            name_rva = _U32.unpack(self.read_rva(table + 4 * mid, 4))[0]
            name = self._name(name_rva, len(wanted))
            if name == wanted:
                return mid
            if name < wanted:
                lo = mid + 1
            else:
                hi = mid
        return None

    def _name(self, rva: int, size: int) -> bytes:
        """``size`` bytes at ``rva``, or fewer at the end of readable memory, cut after the
        first NUL (what strcmp would look at)."""
        while True:
            try:
                data = self.read_rva(rva, size)
                break
            except (OSError, LookupError, ValueError):
                if size <= 1:
                    raise
                size = 1 if size <= 8 else size // 2
        end = data.find(b"\0")
        return data if end < 0 else data[:end + 1]


def exports_from_memory(read: ReadFn, base: int, names: Iterable[str]) -> tuple[
        PeImage, dict[str, int]]:
    """The loaded image at ``base`` and the absolute addresses of ``names`` it exports."""
    image = PeImage(lambda rva, size: read(base + rva, size))
    return image, {name: base + rva for name, rva in image.exports(names).items()}


def file_image(data: bytes) -> PeImage:
    """A PE file's image: RVAs mapped to file offsets through the section table."""
    def raw(offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > len(data):
            raise PeError(f"{size} bytes at file offset {offset:#x} outside the file")
        return data[offset:offset + size]

    headers = PeImage(raw)
    sections = headers.sections()

    def read_rva(rva: int, size: int) -> bytes:
        for _, vaddr, vsize, roff, rsize in sections:
            if vaddr <= rva and rva + size <= vaddr + max(vsize, rsize):
                offset = rva - vaddr
                chunk = data[roff + offset:roff + min(rsize, offset + size)] if offset < rsize \
                    else b""
                return chunk + bytes(size - len(chunk))  # past the raw data: zero-filled
        if rva + size <= (sections[0][1] if sections else len(data)):
            return raw(rva, size)  # the headers
        raise PeError(f"RVA {rva:#x} outside every section")

    return PeImage(read_rva)
