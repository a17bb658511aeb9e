"""minidumpkit: write minidumps (MDMP) of live processes, and read anyone's.

    import minidumpkit as mdk
    mdk.dump(pid, "app.dmp")                              # DumpType.MINI
    mdk.dump(pid, "app.dmp", type=mdk.DumpType.FULL)
    with mdk.open_minidump("app.dmp") as d:
        print(d.threads, d.modules, d.exception)

Importing this package loads no native library and does not import cffi; the
platform backend is chosen and loaded on first use. The names marked (lazy) are
imported from their module the first time they are used; ``dir(minidumpkit)``,
``help(minidumpkit)`` and tab completion list them all the same.

Writing dumps
    dump(pid, path, type=DumpType.MINI, ...)   one dump of a live process (lazy)
    Dumper(pid)                                 repeated dumps, snapshots (lazy)
    Snapshot, SnapshotRefused                   PSS-style process snapshots (lazy)
    Watcher, dump_self, Triggers, DumpWritten
                                                dumps when a trigger fires (lazy)
    enable_crash_dumps(directory), CrashDumps   minidumps of this process's crashes (lazy)
    DumpCallbacks, CallbackThread, CallbackModule, VmRegion
                                                MiniDumpCallback-style filtering (lazy)
    DumpType, MiniDumpType, ThreadWriteFlags, ModuleWriteFlags, CallbackType,
    PssCaptureFlags                             the dbghelp flag sets

Watching processes
    Watcher(target, on_crash=..., on_hang=...) dump a watched process when a trigger fires (lazy)
    Triggers, DumpWritten                       its trigger set, and what it reports (lazy)
    dump_self(path)                             dump the calling process (lazy)
    dump_on_hang(target, timeout, directory)    a context manager: dump a process (and its
                                                descendants) if the block runs too long (lazy)
    HangDump                                    what dump_on_hang returns: .dumps, .fired (lazy)

Reading dumps
    open_minidump(path_or_bytes)                a Minidump, usable as a context manager (lazy)
    Minidump                                    threads, modules, memory, exception, ... (lazy)
    StreamType                                  the stream directory's types

Errors (all derive from MinidumpError; OS failures are also OSError)
    MinidumpError, MinidumpFormatError, MemoryNotCaptured, UnsupportedError,
    DumpCancelled, ProcessError, ProcessNotFound, AccessDenied, AlreadyTraced,
    InvalidTargetError, PathError, PathNotFoundError, PathPermissionError,
    PathIsADirectoryError, PathNotADirectoryError, NotARegularFileError,
    OutputExistsError

Submodules: minidumpkit.analysis (Python stacks from a dump), minidumpkit.format (the
MDMP records), minidumpkit.flags, minidumpkit.errors, minidumpkit.cli. In a notebook, a
dump, its threads, a thread and its module list display as HTML (docs/notebooks.md).
The pytest plugin (minidumpkit.pytest_plugin: --minidump-on-timeout, --minidump-on-crash)
dumps hung and crashed tests (docs/harness.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AccessDenied,
    AlreadyTraced,
    DumpCancelled,
    InvalidTargetError,
    MemoryNotCaptured,
    MinidumpError,
    MinidumpFormatError,
    NotARegularFileError,
    OutputExistsError,
    PathError,
    PathIsADirectoryError,
    PathNotADirectoryError,
    PathNotFoundError,
    PathPermissionError,
    ProcessError,
    ProcessNotFound,
    UnsupportedError,
)
from .flags import (
    CallbackType,
    DumpType,
    MiniDumpType,
    ModuleWriteFlags,
    PssCaptureFlags,
    StreamType,
    ThreadWriteFlags,
)

if TYPE_CHECKING:
    from .callbacks import CallbackModule, CallbackThread, DumpCallbacks, VmRegion
    from .crashdumps import CrashDumps, enable_crash_dumps
    from .dumper import Dumper, dump
    from .hang import HangDump, dump_on_hang
    from .reader import Minidump, open_minidump
    from .snapshot import Snapshot, SnapshotRefused
    from .watch import DumpWritten, Triggers, Watcher, dump_self

__version__ = "0.1.0.dev0"

# Public names that live in modules imported on first use (PEP 562).
_LAZY = {
    "open_minidump": "reader",
    "Minidump": "reader",
    "Dumper": "dumper",
    "dump": "dumper",
    "DumpCallbacks": "callbacks",
    "CallbackThread": "callbacks",
    "CallbackModule": "callbacks",
    "VmRegion": "callbacks",
    "Snapshot": "snapshot",
    "SnapshotRefused": "snapshot",
    "Watcher": "watch",
    "Triggers": "watch",
    "DumpWritten": "watch",
    "dump_self": "watch",
    "dump_on_hang": "hang",
    "HangDump": "hang",
    "enable_crash_dumps": "crashdumps",
    "CrashDumps": "crashdumps",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'minidumpkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names with the lazy ones (PEP 562): ``dir()``, ``help()`` and tab
    completion show the whole public API before anything was loaded."""
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AccessDenied",
    "AlreadyTraced",
    "CallbackModule",
    "CallbackThread",
    "CallbackType",
    "CrashDumps",
    "DumpCallbacks",
    "DumpCancelled",
    "DumpType",
    "DumpWritten",
    "Dumper",
    "HangDump",
    "InvalidTargetError",
    "MemoryNotCaptured",
    "MiniDumpType",
    "Minidump",
    "MinidumpError",
    "MinidumpFormatError",
    "ModuleWriteFlags",
    "NotARegularFileError",
    "OutputExistsError",
    "PathError",
    "PathIsADirectoryError",
    "PathNotADirectoryError",
    "PathNotFoundError",
    "PathPermissionError",
    "ProcessError",
    "ProcessNotFound",
    "PssCaptureFlags",
    "Snapshot",
    "SnapshotRefused",
    "StreamType",
    "ThreadWriteFlags",
    "Triggers",
    "UnsupportedError",
    "VmRegion",
    "Watcher",
    "dump",
    "dump_on_hang",
    "dump_self",
    "enable_crash_dumps",
    "open_minidump",
]
