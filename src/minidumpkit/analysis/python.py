"""Python stacks from a minidump: per OS thread, the interpreter id, Python thread id, GIL
ownership and frames (function, qualified name, file, line; entry frames marked).

    import minidumpkit
    from minidumpkit.analysis import python_stacks

    with minidumpkit.open_minidump("app.dmp") as dump:
        runtime = python_stacks(dump)
        print(runtime.status)          # "ok", "partial walk: ...", "no Python runtime found: ..."
        for thread in runtime.threads:
            print(thread.format())     # File "...", line N, in qualname

``_PyRuntime`` is found from the module list and the dump's memory (the python module's
ELF as captured), else from the module's file on this machine when its build id matches;
in a dump minidumpkit wrote, from its MinidumpkitPythonStream first. The dump must hold
the runtime's memory: every minidumpkit dump of a CPython process does (the writer's
Python-aware capture), as does any dump with all memory. See docs/python-stacks.md.
"""

from __future__ import annotations

from .. import format as md
from .._pyruntime import (
    Located,
    ModuleRef,
    PythonFrame,
    PythonRuntime,
    PythonThread,
    offsets,
    walk_process,
)
from .._pyruntime.locate import read_local_file
from .._pyruntime.walk import DEFAULT_TIME_LIMIT
from ..reader import Minidump

__all__ = ["PythonFrame", "PythonRuntime", "PythonThread", "python_stacks"]


class _DumpMemory:
    def __init__(self, dump: Minidump) -> None:
        self._memory = dump.memory

    def read(self, address: int, size: int) -> bytes:
        return self._memory.read(address, size)


def _model(dump: Minidump) -> str | None:
    """The C data model of the dumped process, or None when it is not one we walk."""
    info = dump.system_info
    if info is None:
        return offsets.LP64  # no SystemInfo: try x86_64 Linux, the walk checks everything
    if info.architecture != md.ProcessorArchitecture.AMD64:
        return None
    return offsets.LLP64 if info.is_windows else offsets.LP64


def python_stacks(dump: Minidump, *, use_local_files: bool = True,
                  time_limit: float = DEFAULT_TIME_LIMIT) -> PythonRuntime:
    """Every Python thread of the dumped process, each mapped to its OS thread.

    Never raises for a dump without Python or with missing memory: ``status`` says what was
    found. A dump whose structure is broken raises MinidumpFormatError, as every reader
    call does. ``use_local_files``: look at the python module's file on this machine when
    the dump lacks its ELF headers (only if the build id matches).
    """
    model = _model(dump)
    if model is None:
        return PythonRuntime(status="no Python runtime found: only x86_64 dumps are walked")
    modules = [ModuleRef(m.name, m.base, m.size, m.build_id, m.timestamp or None)
               for m in dump.modules]
    memory = _DumpMemory(dump)
    runtime = None
    located = _from_stream(dump, modules)
    if located is not None:
        runtime = walk_process(memory, modules, model=model, time_limit=time_limit,
                               located=located)
        if runtime.layout is None:  # the stream's version has no layout: look it up
            runtime = None
    if runtime is None:
        runtime = walk_process(memory, modules, model=model,
                               open_file=read_local_file if use_local_files else None,
                               time_limit=time_limit)
    _map_threads(dump, runtime.threads)
    return runtime


def _from_stream(dump: Minidump, modules: list[ModuleRef]) -> Located | None:
    """Where the writer found ``_PyRuntime`` (its MinidumpkitPythonStream), when it
    did and the module holding it is in the dump's module list."""
    info = dump.minidumpkit_python
    if info is None or not info.runtime_address:
        return None
    module = next((m for m in modules if m.base == info.module_base
                   and m.base <= info.runtime_address < m.base + m.size), None) or next(
        (m for m in modules if m.base <= info.runtime_address < m.base + m.size), None)
    if module is None:
        return None
    return Located(module, info.runtime_address, info.version_hex,
                   info.code_type_address or None, "minidumpkit Python stream")


def _map_threads(dump: Minidump, threads: list[PythonThread]) -> None:
    """OS thread of each Python thread: the dump thread whose stack range holds one of its
    C-stack anchors (the _PyCFrame of 3.11/3.12, the shim frames of 3.12+); else its
    native_thread_id (the thread that created the thread state: wrong for a thread state
    reused on another thread, see docs/python-stacks.md)."""
    stacks = [(t.stack_start, t.stack_end, t.thread_id) for t in dump.threads if t.stack_size]
    known = {t.thread_id for t in dump.threads}
    for thread in threads:
        for anchor in thread.anchors:
            owner = next((tid for start, end, tid in stacks if start <= anchor < end), None)
            if owner is not None:
                thread.os_thread_id, thread.mapped_by = owner, "C-stack anchor"
                break
        else:
            thread.os_thread_id = thread.native_thread_id
            thread.mapped_by = ("native_thread_id" if thread.native_thread_id in known
                                else "native_thread_id (not in the dump's thread list)")
