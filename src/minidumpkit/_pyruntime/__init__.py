"""CPython's runtime state in another process's memory: locate ``_PyRuntime``, pick the
struct layout, walk interpreters, threads and frames. Shared by the dump reader
(:mod:`minidumpkit.analysis.python`) and the writer's Python-aware capture, so both read
exactly the same things. This package imports nothing above :mod:`minidumpkit.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from . import offsets
from .locate import Located, ModuleRef, layout_for, locate, read_local_file
from .walk import (
    DEFAULT_TIME_LIMIT,
    MemorySource,
    PythonFrame,
    PythonRuntime,
    PythonThread,
    Walker,
    line_for,
    version_string,
)

__all__ = ["Located", "MemorySource", "ModuleRef", "PythonFrame", "PythonRuntime",
           "PythonThread", "line_for", "walk_process"]

NOT_FOUND = "no Python runtime found"


def walk_process(source: MemorySource, modules: Iterable[ModuleRef], *,
                 model: str = offsets.LP64,
                 open_file: Callable[[str], bytes | None] | None = read_local_file,
                 time_limit: float = DEFAULT_TIME_LIMIT,
                 log: list[tuple[int, int]] | None = None,
                 located: Located | None = None) -> PythonRuntime:
    """Find and walk the CPython runtime of a process image. Never raises for bad or
    missing memory: the result's ``status`` says what was found. ``log`` collects every
    (address, size) the walk read, for a writer that wants to keep exactly that memory.
    ``located``: where ``_PyRuntime`` is, already known (a dump's MinidumpkitPythonStream),
    so nothing is looked up. ``time_limit`` covers the lookup and the walk."""
    started = time.monotonic()
    modules = list(modules)
    if log is not None:
        source = _Logged(source, log)
    found = located if located is not None else locate(source, modules, open_file=open_file)
    if found is None:
        names = [m.name for m in modules]
        why = "no libpython/python module" if not any(
            "python" in n.rsplit("/", 1)[-1] for n in names) else \
            "_PyRuntime not found in the python module (its image is not in memory" + (
                " and no file of the same build is on this machine)" if open_file
                else "; local files not looked at)")
        return PythonRuntime(status=f"{NOT_FOUND}: {why}")
    layout, version, why = layout_for(source, found, model)
    result = PythonRuntime(status="ok", version=version_string(version) if version else None,
                           version_hex=version or None, runtime_address=found.runtime,
                           module=found.module.name, found_by=found.found_by,
                           code_type_address=found.code_type)
    if layout is None:
        result.status = f"{NOT_FOUND}: {why}"
        return result
    result.layout = layout.name
    walker = Walker(source, layout, code_type=found.code_type,
                    time_limit=time_limit - (time.monotonic() - started))
    result.threads, result.status = walker.walk(found.runtime)
    return result


class _Logged:
    """A memory source that records every successful read (the locator's and the walk's)."""

    def __init__(self, source: MemorySource, log: list[tuple[int, int]]) -> None:
        self.source, self.log = source, log

    def read(self, address: int, size: int) -> bytes:
        data = self.source.read(address, size)
        self.log.append((address, size))
        return data
