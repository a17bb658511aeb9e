"""C++ (and legacy Rust) name demangling through libstdc++'s ``__cxa_demangle``.

The library is opened with cffi's ABI mode (no compiler needed) on the first mangled
name, never at import. Where libstdc++ cannot be loaded (a system without it), names
stay mangled: ``demangle`` never fails.
"""

from __future__ import annotations

import ctypes.util
from functools import lru_cache
from typing import Any

__all__ = ["demangle"]

_CDEF = """
char *__cxa_demangle(const char *mangled_name, char *output_buffer, size_t *length,
                     int *status);
void free(void *ptr);
"""
_lib: Any = None
_ffi: Any = None
_tried = False


def _load() -> bool:
    global _lib, _ffi, _tried
    if _tried:
        return _lib is not None
    _tried = True
    try:
        import cffi  # type: ignore[import-untyped,unused-ignore]  # cffi ships no types

        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        name = ctypes.util.find_library("stdc++") or "libstdc++.so.6"
        _lib = ffi.dlopen(name)
        _ffi = ffi
    except (OSError, ImportError, AttributeError):
        _lib = None
    return _lib is not None


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """The demangled form of an Itanium-ABI name (``_Z...``), else ``name`` unchanged."""
    if not name.startswith("_Z") or not _load():
        return name
    status = _ffi.new("int *")
    out = _lib.__cxa_demangle(name.encode(), _ffi.NULL, _ffi.NULL, status)
    if out == _ffi.NULL:
        return name
    try:
        text: str = _ffi.string(out).decode("utf-8", "replace")
        return text
    finally:
        _lib.free(out)
