"""Where a module's symbols and unwind tables come from, and naming a pc with them.

For each module of a dump the :class:`Symbolizer` looks, in this order, at:

1. the module's own file on this machine (the path the dump records),
2. ``/usr/lib/debug/.build-id/xx/rest.debug`` (Debian/Fedora separate debug files),
3. the paths the user gives: files, directories searched by basename, as a sysroot
   (directory + the recorded absolute path) and as a ``.build-id`` tree.

A file is used only when its GNU build id equals the one the dump records for the
module; every other outcome (absent, different id, unreadable) is kept so a frame
without a name can say why. Everything is built on first use and cached per module.
"""

from __future__ import annotations

import bisect
import os
import struct
from array import array
from functools import cached_property
from typing import TYPE_CHECKING

from .._lazydataclass import lazy_dataclass
from ..errors import MinidumpFormatError
from .breakpad import BreakpadError, BreakpadSymbols, read_module_line
from .cfi import CfiError, CfiSection, Fde, Row
from .demangle import demangle
from .elf import SHT_NOBITS, ElfError, ElfFile
from .lines import LineTable
from .memimage import cfi_from_memory

if TYPE_CHECKING:
    from .._streams import Module
    from ..reader import Minidump

__all__ = ["ModuleSymbols", "SymbolMatch", "Symbolizer"]

DEBUG_ROOT = "/usr/lib/debug"
# where the dynamic loader looks by default (Debian's multiarch directories first)
LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib")
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
STT_NOTYPE, STT_FUNC, STT_GNU_IFUNC = 0, 2, 10
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
SHF_EXECINSTR = 0x4
_BIND_RANK = {STB_GLOBAL: 0, STB_WEAK: 1, STB_LOCAL: 2}


@lazy_dataclass
class SymbolMatch:
    """The function a pc lies in: ``name`` demangled and without symbol version,
    ``raw`` as in the table, ``aliases`` the other names at the same address."""

    name: str
    raw: str
    start: int  # link-time address
    size: int   # 0 if the extent came from the covering FDE
    aliases: tuple[str, ...]
    table: str  # ".symtab" or ".dynsym"


class _SymbolTable:
    """One ELF symbol table. A lookup first probes the symbols that start where the FDE
    covering the pc starts (a search of the st_value column for that value, at C speed):
    that is where compilers put a function's symbol. Only when that finds nothing is the whole
    table indexed (function symbols sorted by address), once. Names are decoded on use."""

    def __init__(self, elf: ElfFile, section: str) -> None:
        self.section = section
        sec = elf.sections[section]
        self._elf = elf
        self._strtab = elf.by_index[sec.link] if 0 < sec.link < len(elf.by_index) else None
        data = elf.section_bytes(section)
        if data is None or self._strtab is None:
            raise ElfError(f"{elf.path}: {section} is empty or has no string table")
        self._data = data
        self._count = len(data) // _SYM.size
        self._code_sections = {i for i, s in enumerate(elf.by_index)
                               if s.flags & SHF_EXECINSTR}
        self._probed: dict[int, list[tuple[int, int, int]]] = {}
        self._scans = 0  # lookups answered by a scan of the columns, not the index

    def _wanted(self, info: int, shndx: int, value: int) -> bool:
        kind = info & 0xF
        if value == 0 or shndx == 0 or shndx >= 0xFF00:
            return False
        return kind in (STT_FUNC, STT_GNU_IFUNC) or (
            kind == STT_NOTYPE and shndx in self._code_sections)

    @cached_property
    def _index(self) -> tuple[list[int], array[int], array[int], array[int]]:
        entries: list[tuple[int, int, int, int]] = []
        for name, info, _other, shndx, value, size in _SYM.iter_unpack(
                bytes(self._data[:self._count * _SYM.size])):
            if self._wanted(info, shndx, value):
                entries.append((value, size, name, info >> 4))
        entries.sort()
        return ([e[0] for e in entries], array("Q", [e[1] for e in entries]),
                array("Q", [e[2] for e in entries]), array("B", [min(e[3], 255) for e in entries]))

    def _string(self, offset: int) -> str:
        assert self._strtab is not None
        return self._elf._cstr(self._strtab.offset + offset)

    def _probe(self, value: int) -> list[tuple[int, int, int]]:
        """(size, name offset, binding) of every wanted symbol whose value is ``value``."""
        cached = self._probed.get(value)
        if cached is None:
            cached = self._probed[value] = self._search(value)
        return cached

    @cached_property
    def _columns(self) -> tuple[array[int], array[int], bytes]:
        """Every symbol's st_value and st_size, in table order, and st_value again as
        little-endian bytes: the table read as 8-byte words holds each Elf64_Sym in three
        of them (strided slices, at C speed). node's 110,000 symbols take about a
        millisecond, and a search of the bytes (``bytes.find``) a tenth of one."""
        words = array("Q")
        words.frombytes(bytes(self._data[:self._count * _SYM.size]))
        values = words[1::3]
        return values, words[2::3], values.tobytes()

    @property
    def _values(self) -> bytes:
        return self._columns[2]

    def _search(self, value: int) -> list[tuple[int, int, int]]:
        values, needle = self._values, struct.pack("<Q", value)
        out = []
        at = values.find(needle)
        while at >= 0:
            if at % 8 == 0:  # a whole word, not the tail of one and head of the next
                name, info, _o, shndx, val, size = _SYM.unpack_from(
                    self._data, at // 8 * _SYM.size)
                if self._wanted(info, shndx, val):
                    out.append((size, name, info >> 4))
            at = values.find(needle, at + 1)
        return out

    def _best(self, start: int, size: int, group: list[tuple[int, int, int]]) -> SymbolMatch:
        """The alias to show among the symbols at ``start``: one of ``size``, global before
        weak before local, fewest leading underscores; the others are kept."""
        best = min(group, key=lambda g: (g[0] != size, _BIND_RANK.get(g[2], 3),
                                         _name_rank(self._string(g[1]))))
        raw = self._string(best[1])
        aliases = tuple(sorted({self._string(g[1]) for g in group} - {raw}))
        return SymbolMatch(demangle(raw.split("@", 1)[0]), raw, start, size, aliases,
                           self.section)

    def _group_at(self, k: int) -> list[tuple[int, int, int]]:
        starts, sizes, names, binds = self._index
        lo = bisect.bisect_left(starts, starts[k])
        hi = bisect.bisect_right(starts, starts[k])
        return [(sizes[j], names[j], binds[j]) for j in range(lo, hi)]

    def _scan(self, vaddr: int, fde: Fde | None) -> SymbolMatch | None:
        """:meth:`lookup` without the index: the wanted symbol of the greatest start
        whose [start, start + size) holds ``vaddr`` (its largest size there), else the
        size-0 rule through the index."""
        values, sizes, _raw = self._columns
        best_start, best_size = -1, 0
        for k in [k for k, v in enumerate(values) if v <= vaddr < v + sizes[k]]:
            start, size = values[k], sizes[k]
            if (start, size) <= (best_start, best_size):
                continue
            _name, info, _o, shndx, _v, _s = _SYM.unpack_from(self._data, k * _SYM.size)
            if self._wanted(info, shndx, start):
                best_start, best_size = start, size
        if best_start >= 0:
            return self._best(best_start, best_size, self._probe(best_start))
        if fde is None:
            return None
        self._scans = 4  # the size-0 rule needs the index
        return self.lookup(vaddr, fde)

    def lookup(self, vaddr: int, fde: Fde | None) -> SymbolMatch | None:
        if fde is not None:
            group = self._probe(fde.start)
            sizes = [g[0] for g in group if g[0] and fde.start + g[0] > vaddr]
            if sizes:
                return self._best(fde.start, max(sizes), group)
        if "_index" not in self.__dict__ and self._scans < 4:
            # a few misses scan the columns (a millisecond for libc) rather than sort
            # the whole table (ten); many misses build the index
            self._scans += 1
            return self._scan(vaddr, fde)
        starts, sizes_, _names, _binds = self._index
        i = bisect.bisect_right(starts, vaddr) - 1
        # a sized symbol [start, start + size) that contains vaddr; nested or overlapping
        # symbols are rare, so only a bounded number of predecessors is looked at
        k = i
        while k >= 0 and i - k < 256:
            if starts[k] + sizes_[k] > vaddr:
                return self._best(starts[k], sizes_[k], self._group_at(k))
            k -= 1
        # size-0 symbols (hand-written assembly) take the extent of the FDE covering vaddr
        if fde is None:
            return None
        lo = bisect.bisect_left(starts, fde.start)
        hi = bisect.bisect_left(starts, fde.end)
        inside = range(lo, hi)
        if any(sizes_[j] for j in inside) or not inside:
            return None
        before = [j for j in inside if starts[j] <= vaddr]
        j = before[-1] if before else lo
        return self._best(starts[j], 0, self._group_at(j))


def _name_rank(name: str) -> tuple[int, int, int, str]:
    base = name.split("@", 1)[0]
    return (len(base) - len(base.lstrip("_")), "." in base, len(base), base)


class ModuleSymbols:
    """What was found for one module: its files (build id checked) and the reason when
    nothing usable was found."""

    def __init__(self, module: Module, runtime: ElfFile | None = None,
                 debug: ElfFile | None = None, breakpad: BreakpadSymbols | None = None,
                 memory_cfi: CfiSection | None = None, memory_load_base: int = 0,
                 attempts: list[str] | None = None, problem: str | None = None) -> None:
        self.module = module
        self.runtime = runtime    # the module's own file: .eh_frame, .dynsym
        self.debug = debug        # a file with .symtab / .debug_frame (may be `runtime`)
        self.breakpad = breakpad  # a .sym file, when no ELF file was found
        self.memory_cfi = memory_cfi  # .eh_frame read from the dump, when no binary
        self.memory_load_base = memory_load_base
        self._fdes: dict[int, tuple[CfiSection, Fde] | None] = {}
        self._rows: dict[int, Row] = {}
        self._named: dict[int, SymbolMatch | None] = {}
        self._lined: dict[int, tuple[str, int] | None] = {}
        self.attempts: list[str] = [] if attempts is None else attempts
        self.problem = problem    # why no file was used

    def __repr__(self) -> str:
        files = ", ".join(f.path for f in self.files) or (
            self.breakpad.path if self.breakpad is not None else "none")
        return (f"<ModuleSymbols {self.module.name!r}: {files}"
                + (f"; {self.problem}" if self.problem else "") + ">")

    @property
    def files(self) -> list[ElfFile]:
        out = [f for f in (self.debug, self.runtime) if f is not None]
        return out if len(out) < 2 or out[0] is not out[1] else out[:1]

    @cached_property
    def load_base(self) -> int:
        for f in (self.runtime, self.debug):
            if f is not None:
                return f.load_base
        return self.memory_load_base

    def vaddr(self, address: int) -> int:
        return address - self.module.base + self.load_base

    @cached_property
    def _cfi(self) -> list[CfiSection]:
        out: list[CfiSection] = []
        for elf in self.files:
            try:
                eh = elf.sections.get(".eh_frame")
                data = elf.section_bytes(".eh_frame") if eh is not None else None
                if eh is not None and data is not None:
                    hdr_sec = elf.sections.get(".eh_frame_hdr")
                    hdr = elf.section_bytes(".eh_frame_hdr") if hdr_sec is not None else None
                    out.append(CfiSection(data, eh.addr, is_eh=True, hdr=hdr,
                                          hdr_vaddr=hdr_sec.addr if hdr_sec else 0))
                dbg = elf.sections.get(".debug_frame")
                data = elf.section_bytes(".debug_frame") if dbg is not None else None
                if dbg is not None and data is not None:
                    out.append(CfiSection(data, 0, is_eh=False))
            except (ElfError, CfiError):
                continue  # one unreadable table does not hide the others
        if self.memory_cfi is not None:
            out.append(self.memory_cfi)
        return out

    def find_fde(self, vaddr: int) -> tuple[CfiSection, Fde] | None:
        if vaddr in self._fdes:
            return self._fdes[vaddr]
        found = self._fdes[vaddr] = self._find_fde(vaddr)
        return found

    def row(self, section: CfiSection, fde: Fde, vaddr: int) -> Row:
        """The CFI row at ``vaddr`` (cached per address)."""
        row = self._rows.get(vaddr)
        if row is None:
            row = self._rows[vaddr] = section.row(fde, vaddr)
        return row

    def _find_fde(self, vaddr: int) -> tuple[CfiSection, Fde] | None:
        for section in self._cfi:
            try:
                fde = section.find(vaddr)
            except (CfiError, struct.error, IndexError, ValueError):
                continue
            if fde is not None:
                return section, fde
        return None

    @cached_property
    def _tables(self) -> list[_SymbolTable]:
        out: list[_SymbolTable] = []
        for name in (".symtab", ".dynsym"):
            for elf in self.files:
                sec = elf.sections.get(name)
                if sec is None or sec.type == SHT_NOBITS:
                    continue
                try:
                    out.append(_SymbolTable(elf, name))
                except (ElfError, struct.error, ValueError):
                    continue
            if out:
                return out  # .symtab wins over .dynsym entirely: it holds a superset
        return out

    @property
    def has_symbols(self) -> bool:
        if self.breakpad is not None:
            return self.breakpad.has_functions
        return bool(self._tables)

    def symbolize(self, vaddr: int) -> SymbolMatch | None:
        """The function containing ``vaddr`` (cached: threads share most addresses)."""
        if vaddr in self._named:
            return self._named[vaddr]
        found = self._named[vaddr] = self._symbolize(vaddr)
        return found

    def _symbolize(self, vaddr: int) -> SymbolMatch | None:
        if self.breakpad is not None:
            named = self.breakpad.function(vaddr)
            if named is None:
                return None
            return SymbolMatch(named[0], named[0], named[1], 0, (), "breakpad")
        found = self.find_fde(vaddr)
        fde = found[1] if found is not None else None
        for table in self._tables:
            match = table.lookup(vaddr, fde)
            if match is not None:
                return match
        return None

    @cached_property
    def _lines(self) -> LineTable | None:
        for elf in self.files:
            sec = elf.sections.get(".debug_line")
            if sec is not None and sec.type != SHT_NOBITS and ".debug_aranges" in elf.sections:
                return LineTable(elf)
        return None

    def source(self, vaddr: int) -> tuple[str, int] | None:
        """(source file path, line) from .debug_line, when a file has it (cached)."""
        if vaddr in self._lined:
            return self._lined[vaddr]
        found = self._lined[vaddr] = self._source(vaddr)
        return found

    def _source(self, vaddr: int) -> tuple[str, int] | None:
        if self.breakpad is not None:
            return self.breakpad.source(vaddr)
        lines = self._lines
        return None if lines is None else lines.lookup(vaddr)

    def why_unnamed(self) -> str:
        if self.problem is not None:
            return self.problem
        if self.breakpad is not None:
            return f"no FUNC record covers this address ({self.breakpad.path})"
        if not self._tables:
            return "stripped: no symbol table"
        if all(t.section == ".dynsym" for t in self._tables):
            return "stripped: no .symtab, and no exported (.dynsym) symbol covers this address"
        return "no .symtab symbol covers this address"

    def code_bytes(self, vaddr: int, size: int) -> bytes | None:
        if self.runtime is None:
            return None
        return self.runtime.read_vaddr(vaddr, size)

    def is_executable(self, vaddr: int) -> bool | None:
        elf = self.runtime or self.debug
        return None if elf is None else elf.is_executable(vaddr)


def _ids_match(recorded: bytes, found: bytes | None) -> bool:
    """Equal, or the dump holds the first 16+ bytes (writers that keep a GUID's worth)."""
    if found is None:
        return False
    return found == recorded or (len(recorded) >= 16 and found.startswith(recorded))


class Symbolizer:
    """Finds and caches :class:`ModuleSymbols` for the modules of one dump."""

    def __init__(self, dump: Minidump, symbol_paths: tuple[str, ...] = (), *,
                 use_local_files: bool = True, debug_root: str = DEBUG_ROOT) -> None:
        self.dump = dump
        self.symbol_paths = tuple(os.fspath(p) for p in symbol_paths)
        self.use_local_files = use_local_files
        self.debug_root = debug_root
        try:
            mods = sorted(dump.modules, key=lambda m: m.base)
            self.module_error: str | None = None
        except MinidumpFormatError as exc:  # walk on without modules: FP and no names
            mods, self.module_error = [], str(exc)
        self._modules: list[Module] = mods
        self._bases = [m.base for m in mods]
        self._cache: dict[int, ModuleSymbols] = {}
        self._files: dict[str, ElfFile | str] = {}

    def module_at(self, address: int) -> Module | None:
        i = bisect.bisect_right(self._bases, address) - 1
        if i >= 0 and address < self._modules[i].end:
            return self._modules[i]
        return self._mapped_module(address)

    @cached_property
    def _file_mappings(self) -> tuple[list[int], list[tuple[int, Module]]]:
        """LinuxMaps mappings of a module's file that its record does not cover (writers
        that end a module at the first gap between its mappings: node, lld-linked
        binaries), as (start, (end, module))."""
        try:
            maps = self.dump.linux_maps or []
        except MinidumpFormatError:
            maps = []
        by_path: dict[str, Module] = {}
        for m in self._modules:
            by_path.setdefault(m.name, m)
        spans = sorted((m.start, m.end, by_path[m.path]) for m in maps
                       if m.path in by_path and m.start >= by_path[m.path].base)
        return [s[0] for s in spans], [(s[1], s[2]) for s in spans]

    def _mapped_module(self, address: int) -> Module | None:
        starts, rest = self._file_mappings
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < rest[i][0]:
            module: Module = rest[i][1]
            return module
        return None

    def for_module(self, module: Module) -> ModuleSymbols:
        key = id(module)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._locate(module)
        return found

    def _open(self, path: str) -> ElfFile | str:
        """The ELF at ``path`` (cached) or a one-line reason it cannot be used."""
        cached = self._files.get(path)
        if cached is not None:
            return cached
        result: ElfFile | str
        try:
            result = ElfFile(path)
        except (ElfError, struct.error) as e:
            result = f"{path}: {e}"
        except OSError as e:
            result = f"{path}: {e.strerror or e}"
        self._files[path] = result
        return result

    def _candidates(self, module: Module, build_id: bytes) -> list[str]:
        name = module.name
        base = module.basename
        hexid = build_id.hex()
        tail = os.path.join(".build-id", hexid[:2], hexid[2:] + ".debug")
        out: list[str] = []
        if self.use_local_files:
            out.append(name)
            if "/" not in name and "\\" not in name:  # a bare file name (Crashpad: libc.so.6)
                out += [os.path.join(d, name) for d in LIBRARY_DIRS]
            out.append(os.path.join(self.debug_root, tail))
        for p in self.symbol_paths:
            if os.path.isdir(p):
                out += [os.path.join(p, name.lstrip("/")), os.path.join(p, base),
                        os.path.join(p, base + ".debug"), os.path.join(p, tail),
                        os.path.join(p, "debug", tail)]
            else:
                out.append(p)
        seen: set[str] = set()
        return [c for c in out if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]

    def _debuglink_candidates(self, path: str, elf: ElfFile) -> list[str]:
        """Where GDB looks for the debug file a ``.gnu_debuglink`` section names: the
        binary's directory, its ``.debug/`` subdirectory, the same path under the global
        debug directory, and the user's directories. The file must still carry the
        module's build id (stronger than the link's CRC, which is not checked)."""
        try:
            raw = elf.section_bytes(".gnu_debuglink")
        except ElfError:
            return []
        if raw is None:
            return []
        name = bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")
        if not name or "/" in name:
            return []
        directory = os.path.dirname(os.path.abspath(path))
        out = []
        if self.use_local_files:
            out += [os.path.join(directory, name), os.path.join(directory, ".debug", name),
                    os.path.join(self.debug_root, directory.lstrip("/"), name)]
        out += [os.path.join(p, name) for p in self.symbol_paths if os.path.isdir(p)]
        return out

    def _locate(self, module: Module) -> ModuleSymbols:
        ms = ModuleSymbols(module)
        build_id = module.build_id
        if not build_id or not any(build_id):
            # PE and Mach-O modules: only a Breakpad store, keyed by the PDB/UUID debug id
            ms.breakpad = self._breakpad(module, ms, [])
            if ms.breakpad is None:
                ms.problem = ("no build id in the dump: no file can be checked against it"
                              if not module.debug_id else
                              f"no Breakpad symbols for {module.debug_file} {module.debug_id}")
            return ms
        mismatches: list[str] = []
        candidates = self._candidates(module, build_id)
        for path in candidates:  # grows by the .gnu_debuglink names of the files found
            if not os.path.isfile(path):
                ms.attempts.append(f"{path}: absent")
                continue
            elf = self._open(path)
            if isinstance(elf, str):
                ms.attempts.append(elf)
                continue
            file_id = elf.build_id
            if not _ids_match(build_id, file_id):
                ms.attempts.append(f"{path}: build id {file_id.hex() if file_id else 'none'}")
                mismatches.append(f"{path} has build id {file_id.hex() if file_id else 'none'}, "
                                  f"the dump records {build_id.hex()}")
                continue
            ms.attempts.append(f"{path}: used")
            candidates += [c for c in self._debuglink_candidates(path, elf)
                           if c not in candidates]
            eh = elf.sections.get(".eh_frame")
            if ms.runtime is None and eh is not None and eh.type != SHT_NOBITS:
                ms.runtime = elf
            if ms.debug is None and ".symtab" in elf.sections:
                ms.debug = elf
            if ms.runtime is not None and ms.debug is not None:
                break
        if ms.runtime is None and ms.debug is None:
            ms.breakpad = self._breakpad(module, ms, mismatches)
        if ms.runtime is None and ms.breakpad is None:
            self._cfi_from_dump(module, ms)
        if ms.runtime is None and ms.debug is None and ms.breakpad is None:
            ms.problem = ("build id mismatch: " + mismatches[0]) if mismatches else \
                f"no file: {module.name} not found (searched {len(ms.attempts)} places)"
        return ms

    def _cfi_from_dump(self, module: Module, ms: ModuleSymbols) -> None:
        """The module's .eh_frame as the dump captured it (full dumps hold it)."""
        if ms.debug is not None and ms.debug.load_base is None:
            return
        try:
            memory = self.dump.memory
        except MinidumpFormatError:
            return
        found = cfi_from_memory(memory, module.base)
        if found is None:
            return
        ms.memory_cfi, ms.memory_load_base = found
        if ms.debug is not None and ms.debug.load_base != found[1]:
            ms.memory_cfi = None  # the debug file describes another layout: trust neither
            return
        ms.attempts.append(f"{module.name}: .eh_frame from the dump's memory")

    def _breakpad(self, module: Module, ms: ModuleSymbols,
                  mismatches: list[str]) -> BreakpadSymbols | None:
        """A Breakpad .sym file for ``module`` from the user paths: a store
        (``dir/NAME/DEBUGID/NAME.sym``) or a .sym file given directly, accepted only if
        its MODULE id equals the module's debug id."""
        debug_id = module.debug_id
        if not debug_id:
            return None
        # the store is keyed by the debug file (a PDB's name for PE modules), whose .pdb
        # becomes .sym, as Breakpad and rust-minidump look it up
        name = (module.debug_file or module.name).replace("\\", "/").rsplit("/", 1)[-1]
        sym_name = (name[:-4] if name.lower().endswith(".pdb") else name) + ".sym"
        for p in self.symbol_paths:
            path = os.path.join(p, name, debug_id, sym_name) if os.path.isdir(p) else p
            head = read_module_line(path) if os.path.isfile(path) else None
            if head is None:
                if os.path.isdir(p):
                    ms.attempts.append(f"{path}: absent")
                continue
            if head[2].upper() != debug_id.upper():
                if os.path.isdir(p):
                    mismatches.append(f"{path} has debug id {head[2]}, the dump records "
                                      f"{debug_id}")
                continue
            try:
                found = BreakpadSymbols(path)
            except (BreakpadError, OSError) as e:
                ms.attempts.append(f"{path}: {e}")
                continue
            ms.attempts.append(f"{path}: used")
            return found
        return None
