"""Find ``_PyRuntime`` and the CPython version of a process image, and pick the layout.

Sources, in order: the python module's image as it lies in the target's memory (ELF:
PT_DYNAMIC, hash table, ``.dynsym``; PE: the export table; what a FULL dump or a live
process has), then the module's file on this machine when it is the same build (ELF: its
GNU build id equals the one the dump recorded, then ``.dynsym``, the ``.PyRuntime``
section, ``Py_Version`` from the file's read-only data; PE: its TimeDateStamp and
SizeOfImage equal the module's, then the export table). The python module is
``libpython3.X.so…``, ``python3XY.dll`` or, for a statically linked interpreter, the
``python3…`` executable. A Windows module path (``Z:\\dir\\python313.dll``, a dump of a
process under Wine) is looked for where Wine maps its drive (:func:`local_paths`).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import offsets as o
from .elfsym import ElfError, ElfFile, symbols_from_memory
from .pesym import PeError, exports_from_memory, file_image
from .walk import MemorySource, WalkStopped, version_string

SYMBOLS = ("_PyRuntime", "Py_Version", "PyCode_Type")
_LIBPYTHON = re.compile(r"(^|/)libpython3\.\d+[a-z]*\.so(\.[0-9.]+)?$")
_EXECUTABLE = re.compile(r"(^|/)python3?(\.\d+)?[a-z]*$")
_DLL = re.compile(r"(^|[/\\])python3\d+(_d)?\.dll$", re.IGNORECASE)
_DRIVE = re.compile(r"^([A-Za-z]):\\")
MAX_ELF_FILE = 256 << 20
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class ModuleRef:
    """A loaded module as the locator needs it (from a dump's module list or /proc maps)."""

    name: str
    base: int
    size: int
    build_id: bytes | None
    timestamp: int | None = None  # PE TimeDateStamp (the dump's module list)


@dataclass(frozen=True)
class Located:
    module: ModuleRef
    runtime: int
    version_hex: int
    code_type: int | None
    found_by: str


def python_modules(modules: Iterable[ModuleRef]) -> list[ModuleRef]:
    """libpython or python3XY.dll first, then python executables (a --enable-shared
    build's executable does not hold the runtime, but a static build's does)."""
    mods = list(modules)
    return ([m for m in mods if _LIBPYTHON.search(m.name) or _DLL.search(m.name)]
            + [m for m in mods if _EXECUTABLE.search(m.name)])


def _from_memory(source: MemorySource, module: ModuleRef) -> Located | None:
    def read(address: int, size: int) -> bytes:
        return source.read(address, size)
    if _DLL.search(module.name):
        return _pe_from_memory(source, module)
    try:
        symbols = symbols_from_memory(read, module.base, module.size, SYMBOLS)
    except (ElfError, WalkStopped, OSError, LookupError, ValueError, struct.error):
        return None
    if "_PyRuntime" not in symbols:
        return None
    version = 0
    if "Py_Version" in symbols:
        try:
            version = struct.unpack("<I", source.read(symbols["Py_Version"], 4))[0]
        except (OSError, LookupError, ValueError):
            version = 0
    return Located(module, symbols["_PyRuntime"], version, symbols.get("PyCode_Type"),
                   "dump memory (ELF dynamic symbols)")


def _version_at(source: MemorySource, address: int | None) -> int:
    if address is None:
        return 0
    try:
        return int(struct.unpack("<I", source.read(address, 4))[0])
    except (OSError, LookupError, ValueError):
        return 0


def _pe_from_memory(source: MemorySource, module: ModuleRef) -> Located | None:
    try:
        _, symbols = exports_from_memory(source.read, module.base, SYMBOLS)
    except (PeError, WalkStopped, OSError, LookupError, ValueError, struct.error):
        return None
    if "_PyRuntime" not in symbols:
        return None
    # Py_Version is a `const unsigned long`: 4 bytes on Windows
    return Located(module, symbols["_PyRuntime"], _version_at(source, symbols.get("Py_Version")),
                   symbols.get("PyCode_Type"), "dump memory (PE export table)")


def _pe_from_file(module: ModuleRef, data: bytes) -> Located | None:
    try:
        image = file_image(data)
        if module.timestamp is None or (image.timestamp, image.size_of_image) != (
                module.timestamp, module.size):
            return None
        symbols = image.exports(SYMBOLS)
        if "_PyRuntime" not in symbols:
            return None
        version = 0
        if "Py_Version" in symbols:
            version = _U32.unpack(image.read_rva(symbols["Py_Version"], 4))[0]
    except (PeError, struct.error, IndexError):
        return None
    code_type = module.base + symbols["PyCode_Type"] if "PyCode_Type" in symbols else None
    return Located(module, module.base + symbols["_PyRuntime"], version, code_type,
                   f"{module.name} on this machine (PE timestamp and size match)")


def local_paths(name: str) -> list[str]:
    """Where a module's file may be on this machine: its name, and for a Windows path
    (a process under Wine) the Linux path of its drive: ``$WINEPREFIX/dosdevices/x:``
    (``~/.wine`` without WINEPREFIX), and ``/`` for ``Z:``, Wine's default."""
    drive = _DRIVE.match(name)
    if drive is None:
        return [name]
    rest = name[3:].replace("\\", "/")
    prefix = os.environ.get("WINEPREFIX") or os.path.expanduser("~/.wine")
    paths = [os.path.join(prefix, "dosdevices", drive.group(1).lower() + ":", rest)]
    if drive.group(1).lower() == "z":
        paths.insert(0, "/" + rest)
    return paths


def _open_module(module: ModuleRef, open_file: Callable[[str], bytes | None]) -> bytes | None:
    for path in local_paths(module.name):
        data = open_file(path)
        if data is not None:
            return data
    return None


def _from_file(module: ModuleRef, open_file: Callable[[str], bytes | None]) -> Located | None:
    if _DLL.search(module.name):
        data = _open_module(module, open_file)
        return _pe_from_file(module, data) if data is not None else None
    if module.build_id is None:
        return None
    data = open_file(module.name)
    if data is None:
        return None
    try:
        elf = ElfFile(data)
        if elf.build_id() != module.build_id:
            return None
        symbols = elf.dynamic_symbols(SYMBOLS)
        bias = module.base - elf.link_base
        if "_PyRuntime" in symbols:
            runtime = symbols["_PyRuntime"] + bias
        elif ".PyRuntime" in elf.sections:
            runtime = elf.sections[".PyRuntime"][3] + bias
        else:
            return None
        version = 0
        if "Py_Version" in symbols:
            raw = elf.read_vaddr(symbols["Py_Version"], 4)
            version = struct.unpack("<I", raw)[0] if raw else 0
    except (ElfError, struct.error, IndexError):
        return None
    code_type = symbols["PyCode_Type"] + bias if "PyCode_Type" in symbols else None
    return Located(module, runtime, version, code_type,
                   f"{module.name} on this machine (build id matches)")


def read_local_file(path: str) -> bytes | None:
    """The file at ``path`` when it is a regular file of sane size, else None."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not os.path.isfile(path) or st.st_size > MAX_ELF_FILE:
                return None
            return f.read()
    except OSError:
        return None


def locate(source: MemorySource, modules: Iterable[ModuleRef], *,
           open_file: Callable[[str], bytes | None] | None = read_local_file) -> Located | None:
    for module in python_modules(modules):
        found = _from_memory(source, module)
        if found is None and open_file is not None:
            found = _from_file(module, open_file)
        if found is not None:
            return found
    return None


def layout_for(source: MemorySource, found: Located, model: str = o.LP64) -> tuple[
        o.Layout | None, int, str]:
    """The layout for the located runtime, the version (from ``_Py_DebugOffsets`` when the
    symbol gave none) and, when there is no layout, why."""
    version = found.version_hex
    try:
        head = source.read(found.runtime, 24)
    except (OSError, LookupError, ValueError):
        head = b""
    has_debug = head[:8] == o.DEBUG_COOKIE
    if has_debug and not version:
        version = struct.unpack_from("<Q", head, 8)[0] & 0xFFFFFFFF
    if not version:
        return None, 0, "CPython version unknown (no Py_Version, no _Py_DebugOffsets)"
    major, minor = version >> 24, (version >> 16) & 0xFF
    if (major, minor, model) in o.STATIC_LAYOUTS:
        return o.STATIC_LAYOUTS[(major, minor, model)], version, ""
    if (major, minor) in o.DEBUG_FIELDS:
        if not has_debug:
            return None, version, "_Py_DebugOffsets missing at _PyRuntime"
        if struct.unpack_from("<Q", head, 16)[0]:
            return None, version, "free-threaded CPython is not supported yet"
        names = o.DEBUG_FIELDS[(major, minor)]
        try:
            raw = source.read(found.runtime + 8, 8 * len(names))
            values = dict(zip(names, struct.unpack(f"<{len(names)}Q", raw)))
            return o.layout_from_debug_offsets(values, minor, model), version, ""
        except (OSError, LookupError) as e:
            return None, version, f"_Py_DebugOffsets not readable ({type(e).__name__})"
        except ValueError as e:
            return None, version, str(e)
    if (major, minor, o.LP64) in o.STATIC_LAYOUTS:
        return None, version, f"CPython {version_string(version)} on Windows x64 (LLP64) " \
            "is not supported yet (3.13 is)"
    return None, version, f"CPython {version_string(version)} is not supported " \
        "(3.11, 3.12, 3.13 are)"


__all__ = ["Located", "ModuleRef", "layout_for", "local_paths", "locate", "python_modules"]
