"""A minimal x64 PE unwinder for :mod:`.winlocks`: frames through Windows modules from
their exception directory (``.pdata`` RUNTIME_FUNCTIONs, ``.xdata`` UNWIND_INFO) and
their names from the export directory.

A module's image is read from the dump's memory (a FULL dump holds it) or from a file
of the same name in ``image_paths`` whose TimeDateStamp and SizeOfImage match the
module's (how a symbol server keys PE images). Frames are named only by exports
(``RtlEnterCriticalSection``, ...); a function that is not exported has no name. A frame
whose unwind data cannot be read ends the walk (nothing is scanned or guessed).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MemoryNotCaptured

if TYPE_CHECKING:
    from .._streams import Module, Thread
    from ..reader import Minidump

REGS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
        "r12", "r13", "r14", "r15")
_SLOTS = {0: 1, 2: 1, 3: 1, 4: 2, 5: 3, 6: 2, 8: 2, 9: 3, 10: 1}  # op -> code slots
UWOP_PUSH_NONVOL, UWOP_ALLOC_LARGE, UWOP_ALLOC_SMALL, UWOP_SET_FPREG = 0, 1, 2, 3
UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR, UWOP_PUSH_MACHFRAME = 4, 5, 10
UNW_FLAG_CHAININFO = 4
MAX_FRAMES = 64

# Bounds on what an image (from a dump, maybe hostile) may make us read: far above real
# modules (ntdll exports ~2,500 functions; the PE format allows 96 sections at most).
MAX_EXPORTS = 1 << 16
MAX_PDATA_BYTES = 16 << 20
MAX_SECTIONS = 96


class ImageError(Exception):
    """A PE image (headers, unwind data) that cannot be read."""


class Image:
    """One module's PE image: ``read(rva, size)`` and its functions and exports."""

    def __init__(self, name: str, base: int, size: int,
                 read: Callable[[int, int], bytes]) -> None:
        self.name, self.base, self.size, self._read = name, base, size, read
        try:
            self._load()
        except (MemoryNotCaptured, ValueError, struct.error, OSError) as e:
            raise ImageError(f"{name}: {e}") from None

    def read(self, rva: int, size: int) -> bytes:
        data = self._read(rva, size)
        if len(data) != size:
            raise ValueError(f"short read at rva 0x{rva:x}")
        return data

    def _load(self) -> None:
        pe = struct.unpack("<I", self.read(0x3C, 4))[0]
        if self.read(pe, 4) != b"PE\0\0" or struct.unpack("<H", self.read(pe + 24, 2))[0] != 0x20B:
            raise ValueError("not a PE32+ image")
        dirs = pe + 24 + 112
        export_rva, _ = struct.unpack("<II", self.read(dirs, 8))
        pdata_rva, pdata_size = struct.unpack("<II", self.read(dirs + 3 * 8, 8))
        if pdata_size > MAX_PDATA_BYTES:
            raise ValueError(f"exception directory of {pdata_size} bytes")
        raw = self.read(pdata_rva, pdata_size - pdata_size % 12) if pdata_rva else b""
        self.functions = sorted(struct.iter_unpack("<III", raw))
        self.exports: dict[int, str] = {}
        if export_rva:
            count, names, functions, name_table, ordinals = struct.unpack(
                "<IIIII", self.read(export_rva + 20, 20))
            if count > MAX_EXPORTS or names > MAX_EXPORTS:
                raise ValueError(f"export directory of {count} functions, {names} names")
            addresses = struct.unpack(f"<{count}I", self.read(functions, 4 * count))
            name_rvas = struct.unpack(f"<{names}I", self.read(name_table, 4 * names))
            indexes = struct.unpack(f"<{names}H", self.read(ordinals, 2 * names))
            for name_rva, index in zip(name_rvas, indexes):
                if index < count:
                    self.exports.setdefault(addresses[index], self._cstring(name_rva))

    def _cstring(self, rva: int) -> str:
        out = b""
        while b"\0" not in out and len(out) < 256:
            out += self.read(rva + len(out), 16 if len(out) < 240 else 1)
        return out.split(b"\0", 1)[0].decode("ascii", "replace")

    def function(self, rva: int) -> tuple[int, int, int] | None:
        """The RUNTIME_FUNCTION (begin, end, unwind info) containing ``rva``."""
        lo, hi = 0, len(self.functions)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.functions[mid][1] <= rva:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.functions) and self.functions[lo][0] <= rva:
            return self.functions[lo]
        return None

    def name_at(self, rva: int) -> str | None:
        """The export whose function contains ``rva`` (its RUNTIME_FUNCTION's start), or
        the export at or before a leaf ``rva`` with no RUNTIME_FUNCTION."""
        found = self.function(rva)
        if found is not None:
            return self.exports.get(found[0])
        before = [a for a in self.exports if a <= rva and rva - a < 0x40]
        return self.exports[max(before)] if before else None


def image_of(dump: Minidump, module: Module, image_paths: Iterable[str | os.PathLike[str]]) \
        -> Image:
    """``module``'s image, from the dump's memory or a matching file in ``image_paths``."""
    try:
        return Image(module.basename, module.base, module.size,
                     lambda rva, size: dump.memory.read(module.base + rva, size))
    except ImageError as e:
        problem = str(e)
    for directory in image_paths:
        path = Path(directory) / module.basename
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
            reader = _file_reader(data)
            image = Image(module.basename, module.base, module.size, reader)
            pe = struct.unpack("<I", reader(0x3C, 4))[0]
            stamp = struct.unpack("<I", reader(pe + 8, 4))[0]
            size = struct.unpack("<I", reader(pe + 24 + 56, 4))[0]
        except (ImageError, struct.error, ValueError, OSError, IndexError):
            continue  # not a PE32+ file after all, or unreadable: not this module's image
        if stamp == module.timestamp and size == module.size:
            return image
    raise ImageError(f"{module.basename}'s image is not in the dump ({problem}) and no "
                     "matching file is in the image paths")


def _file_reader(data: bytes) -> Callable[[int, int], bytes]:
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    count, optional = struct.unpack_from("<H", data, pe + 6)[0], \
        struct.unpack_from("<H", data, pe + 20)[0]
    if count > MAX_SECTIONS:
        raise ValueError(f"{count} sections")
    sections = [struct.unpack_from("<IIII", data, pe + 24 + optional + 40 * i + 8)
                for i in range(count)]  # VirtualSize, VirtualAddress, SizeOfRawData, Pointer

    def read(rva: int, size: int) -> bytes:
        if rva + size <= 0x1000:
            return data[rva:rva + size]
        for vsize, va, raw_size, pointer in sections:
            if va <= rva and rva + size <= va + max(vsize, raw_size):
                start = pointer + rva - va
                chunk = data[start:start + size] if rva - va < raw_size else b""
                return chunk.ljust(size, b"\0")
        raise ValueError(f"rva 0x{rva:x} is in no section")
    return read


class PeFrame:
    """One frame: ``pc`` (the return address for callers), ``sp``, its module and export
    name, and the non-volatile registers as they were in this frame (as far as known)."""

    __slots__ = ("pc", "sp", "module", "function", "registers")

    def __init__(self, pc: int, sp: int, module: str | None, function: str | None,
                 registers: dict[str, int]) -> None:
        self.pc, self.sp, self.module, self.function = pc, sp, module, function
        self.registers = registers

    def __repr__(self) -> str:
        return f"<PeFrame 0x{self.pc:x} sp=0x{self.sp:x} {self.module}!{self.function}>"


def walk(dump: Minidump, thread: Thread, images: dict[int, Image]) -> tuple[list[PeFrame], str]:
    """``thread``'s frames through the PE modules in ``images`` (by base) and why the walk
    ended."""
    context = thread.context
    if context is None or not hasattr(context, "rip"):
        return [], "no x64 context"
    regs: dict[str, int] = {name: getattr(context, name) for name in REGS}
    pc: int = getattr(context, "rip")
    frames: list[PeFrame] = []
    for depth in range(MAX_FRAMES):
        image = next((i for b, i in images.items() if b <= pc < b + i.size), None) \
            if images else None
        lookup = pc - (1 if depth else 0) - (image.base if image else 0)
        frames.append(PeFrame(pc, regs["rsp"], image.name if image else None,
                              image.name_at(lookup) if image else None, dict(regs)))
        if image is None:
            return frames, f"0x{pc:x} is in no module whose image is read"
        try:
            pc = _unwind(dump, image, regs, lookup)
        except (MemoryNotCaptured, ValueError, struct.error, ImageError) as e:
            return frames, f"unwind stopped at 0x{pc:x}: {e}"
        if pc == 0:
            return frames, "end of stack"
    return frames, "frame limit"


def _unwind(dump: Minidump, image: Image, regs: dict[str, int], rva: int) -> int:
    """Unwind one frame in place; returns the caller's pc."""
    found = image.function(rva)
    if found is None:  # a leaf (a syscall stub): the return address is at rsp
        pc = dump.memory.read_u64(regs["rsp"])
        regs["rsp"] += 8
        return pc
    begin, _end, info = found
    offset = rva - begin  # a caller's rva is its pc - 1: inside the call
    for _ in range(8):  # chained unwind infos
        header = image.read(info, 4)
        flags, prolog, count, frame = header[0] >> 3, header[1], header[2], header[3]
        codes = image.read(info + 4, 2 * count)
        frame_reg, frame_offset = frame & 15, frame >> 4
        applied = [i for i in range(0, 2 * count, 2) if codes[i] <= offset or offset >= prolog]
        if frame_reg and any(codes[i + 1] & 15 == UWOP_SET_FPREG for i in applied):
            regs["rsp"] = regs[REGS[frame_reg]] - 16 * frame_offset
        base, i = regs["rsp"], 0
        while i < count:
            at, op, op_info = codes[2 * i], codes[2 * i + 1] & 15, codes[2 * i + 1] >> 4
            slots = (2 if op_info == 0 else 3) if op == UWOP_ALLOC_LARGE else _SLOTS.get(op)
            if slots is None:
                raise ValueError(f"unknown unwind code {op}")
            if at <= offset or offset >= prolog:
                extra = codes[2 * i + 2:2 * i + 2 * slots]
                if op == UWOP_PUSH_NONVOL:
                    regs[REGS[op_info]] = dump.memory.read_u64(regs["rsp"])
                    regs["rsp"] += 8
                elif op == UWOP_ALLOC_LARGE:
                    regs["rsp"] += struct.unpack("<H", extra)[0] * 8 if op_info == 0 \
                        else struct.unpack("<I", extra)[0]
                elif op == UWOP_ALLOC_SMALL:
                    regs["rsp"] += op_info * 8 + 8
                elif op == UWOP_SAVE_NONVOL:
                    regs[REGS[op_info]] = dump.memory.read_u64(
                        base + struct.unpack("<H", extra)[0] * 8)
                elif op == UWOP_SAVE_NONVOL_FAR:
                    regs[REGS[op_info]] = dump.memory.read_u64(
                        base + struct.unpack("<I", extra)[0])
                elif op == UWOP_PUSH_MACHFRAME:
                    raise ValueError("a machine frame (interrupt or exception) is not unwound")
            i += slots
        if not flags & UNW_FLAG_CHAININFO:
            break
        begin, _end, info = struct.unpack("<III", image.read(info + 4 + 2 * (count + (count & 1)),
                                                              12))
        offset = 1 << 30  # a chained info applies whole
    pc = dump.memory.read_u64(regs["rsp"])
    regs["rsp"] += 8
    return pc
