"""Error checkers for the FFI boundary: one per error convention.

libc returns -1 and sets ``errno``; :func:`check_errno` turns that into the
matching :class:`~minidumpkit.errors.ProcessError` subclass (ESRCH →
ProcessNotFound, EPERM/EACCES → AccessDenied).
"""

from __future__ import annotations

from ..errors import ProcessError
from . import libc


def last_errno() -> int:
    """errno of the most recent cffi call in this thread (cffi saves it per thread)."""
    return int(libc.load().ffi.errno)


def check_errno(rc: int, what: str, pid: int | None = None) -> int:
    """Return ``rc`` unless it is -1; then raise the ProcessError matching errno.

    Call it directly on the C call's result: cffi keeps the errno of the last
    call per thread, so no Python code in between can clobber it.
    """
    if rc != -1:
        return rc
    raise ProcessError.from_errno(last_errno(), what, pid=pid)
