"""Analysis over a read minidump: native call stacks with symbols (x86_64 Linux) and
Python stacks (CPython 3.11-3.13).

    import minidumpkit
    from minidumpkit.analysis import walk_stack

    with minidumpkit.open_minidump("app.dmp") as dump:
        for thread in dump.threads:
            print(walk_stack(dump, thread, symbol_paths=["/opt/app/debug"]))

* :func:`walk_stack`, :func:`walk_stacks` (:mod:`.stackwalk`): native call stacks; see
  docs/stacks.md for what is and is not walked.
* :func:`python_stacks` (:mod:`minidumpkit.analysis.python`): every thread's Python stack;
  see docs/python-stacks.md. :func:`merged_stacks` (:mod:`.pymerge`): each thread's
  Python frames placed among its native ones, as ``pystack --native`` shows them.
* :func:`wait_graph` (:mod:`.deadlocks`): what every thread waits for, the deadlocks
  and the chains; see docs/locks.md. :func:`critical_section` (:mod:`.winlocks`): a
  Windows x64 ``CRITICAL_SECTION``'s owner read from the dump's memory.

This layer sits above the reader: it imports the reader and the format, never the
reverse, and never a backend.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .deadlocks import WaitGraph, wait_graph
from .stackwalk import CallStack, Frame, FrameTrust, walk_thread
from .symbols import Symbolizer
from .winlocks import CriticalSection, critical_section

if TYPE_CHECKING:
    from .._streams import Thread
    from .pymerge import merged_stacks
    from .python import python_stacks
    from ..reader import Minidump

__all__ = ["CallStack", "CriticalSection", "Frame", "FrameTrust", "Symbolizer", "WaitGraph",
           "critical_section", "merged_stacks", "python_stacks",
           "symbolizer_for", "wait_graph", "walk_stack", "walk_stacks"]

_SYMBOLIZERS: weakref.WeakKeyDictionary[Minidump, dict[tuple[tuple[str, ...], bool], Symbolizer]] \
    = weakref.WeakKeyDictionary()


def symbolizer_for(dump: Minidump, symbol_paths: Iterable[str | os.PathLike[str]] = (), *,
                   use_local_files: bool = True) -> Symbolizer:
    """The (cached) :class:`Symbolizer` of ``dump`` for these search paths: files and
    indexes are opened once per dump however many threads are walked."""
    key = (tuple(os.fspath(p) for p in symbol_paths), use_local_files)
    per_dump = _SYMBOLIZERS.setdefault(dump, {})
    found = per_dump.get(key)
    if found is None:
        found = per_dump[key] = Symbolizer(dump, key[0], use_local_files=use_local_files)
    return found


def walk_stack(dump: Minidump, thread: Thread, *,
               symbol_paths: Iterable[str | os.PathLike[str]] = (),
               use_local_files: bool = True, max_frames: int = 1024) -> CallStack:
    """The call stack of ``thread`` (one of ``dump.threads``), innermost frame first.

    ``symbol_paths``: extra files or directories (a sysroot, a directory of debug files,
    a ``.build-id`` tree) searched after the module's own file and
    ``/usr/lib/debug/.build-id``. ``use_local_files=False`` leaves out the module paths
    the dump records and /usr/lib/debug (only ``symbol_paths`` are used).

    Raises only :class:`~minidumpkit.MinidumpFormatError` (from the reader, for a
    malformed dump); a thread that cannot be walked gets a ``status`` saying why.
    """
    return walk_thread(dump, thread, symbolizer_for(dump, symbol_paths,
                                                    use_local_files=use_local_files),
                       max_frames=max_frames)


def walk_stacks(dump: Minidump, *, symbol_paths: Iterable[str | os.PathLike[str]] = (),
                use_local_files: bool = True) -> list[CallStack]:
    """:func:`walk_stack` for every thread of ``dump``, in the dump's thread order."""
    paths = tuple(os.fspath(p) for p in symbol_paths)
    return [walk_stack(dump, t, symbol_paths=paths, use_local_files=use_local_files)
            for t in dump.threads]


def __getattr__(name: str) -> Any:
    """``python_stacks`` on first use: the CPython runtime tables it loads cost a native
    walk (``minidumpkit info``) a tenth of its start-up otherwise."""
    if name == "python_stacks":
        from .python import python_stacks as found
        return found
    if name == "merged_stacks":
        from .pymerge import merged_stacks as merged
        return merged
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

