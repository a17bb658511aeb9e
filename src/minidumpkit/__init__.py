"""minidumpkit: write minidumps (MDMP) of live processes, and read anyone's.

    import minidumpkit as mdk
    mdk.dump(pid, "app.dmp")                              # DumpType.MINI
    mdk.dump(pid, "app.dmp", type=mdk.DumpType.FULL)
    with mdk.open_minidump("app.dmp") as d:
        print(d.threads, d.modules, d.exception)

Importing this package loads no native library and does not import cffi; the
platform backend is chosen and loaded on first use.
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
    from .dumper import Dumper, dump
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
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'minidumpkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AccessDenied",
    "AlreadyTraced",
    "CallbackModule",
    "CallbackThread",
    "CallbackType",
    "DumpCallbacks",
    "DumpCancelled",
    "DumpType",
    "DumpWritten",
    "Dumper",
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
    "dump_self",
    "open_minidump",
]
