"""C++ (and legacy Rust) name demangling through libstdc++'s ``__cxa_demangle``.

The library is opened with :mod:`ctypes` on the first mangled name, never at import: its
soname ``libstdc++.so.6`` first, ``ctypes.util.find_library`` only if that fails (it runs
``ldconfig``). ctypes rather than cffi's ABI mode: a cffi ``cdef`` parses C with pycparser
at run time, 30 ms of a ``minidumpkit info`` start on a C++ program, for one function.
Where libstdc++ cannot be loaded (a system without it), names stay mangled: ``demangle``
never fails.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["demangle"]

_cxa_demangle: Any = None
_free: Any = None
_ctypes: Any = None  # the module, imported with the library (3 ms a C program never pays)
_tried = False


def _load() -> bool:
    global _cxa_demangle, _free, _ctypes, _tried
    if _tried:
        return _cxa_demangle is not None
    _tried = True
    try:
        import ctypes

        try:
            lib = ctypes.CDLL("libstdc++.so.6")
        except OSError:
            from ctypes.util import find_library

            lib = ctypes.CDLL(find_library("stdc++") or "libstdc++.so.6")
        function = lib.__cxa_demangle
        function.restype = ctypes.c_void_p  # freed by us: not c_char_p, which copies
        function.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_int)]
        free = lib.free
        free.restype = None
        free.argtypes = [ctypes.c_void_p]
        _cxa_demangle, _free, _ctypes = function, free, ctypes
    except (OSError, AttributeError, ImportError):
        _cxa_demangle = None
    return _cxa_demangle is not None


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """The demangled form of an Itanium-ABI name (``_Z...``), else ``name`` unchanged."""
    if not name.startswith("_Z") or not _load():
        return name
    status = _ctypes.c_int(0)
    out = _cxa_demangle(name.encode(), None, None, _ctypes.byref(status))
    if not out:
        return name
    try:
        text: str = _ctypes.string_at(out).decode("utf-8", "replace")
        return text
    finally:
        _free(out)
