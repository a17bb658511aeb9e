"""Dumping our own process: a helper process ptraces us and writes the dump.

A process cannot ptrace itself, and a thread of ours that stopped the others could
deadlock on a lock they hold (the GIL, malloc's). So :func:`dump_self` starts
``python -m minidumpkit._backends._selfdump PID FD TYPE``, hands it the output
file descriptor, lets it trace us (``prctl(PR_SET_PTRACER)`` where Yama would
otherwise refuse a non-ancestor), and waits. The helper reports success or the
exception it met as one JSON line on stdout, which is re-raised here.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .. import errors
from ..flags import MiniDumpType

if TYPE_CHECKING:
    from .linux import DumpTimes

YAMA_SCOPE_PATH = "/proc/sys/kernel/yama/ptrace_scope"


def read_yama_scope() -> int | None:
    """Yama's ptrace_scope (0..3), or None when Yama is not in the kernel."""
    try:
        with open(YAMA_SCOPE_PATH) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def set_ptracer(pid: int) -> None:
    """prctl(PR_SET_PTRACER, pid): allow ``pid`` to trace us under Yama scope 1 (0 revokes)."""
    from .._ffi import libc
    from .._ffi._errors import check_errno

    ffi, lib = libc.load()
    check_errno(int(lib.prctl(libc.PR_SET_PTRACER, ffi.cast("unsigned long", pid))),
                "prctl(PR_SET_PTRACER)", os.getpid())


def allow_tracer(pid: int, *, read_scope: Callable[[], int | None] = read_yama_scope,
                 set_tracer: Callable[[int], None] = set_ptracer) -> bool:
    """Let helper ``pid`` trace us if Yama needs to be told; True if we told it.

    Scope 1 ("restricted") allows only ancestors unless the tracee names its tracer;
    scope 2 needs CAP_SYS_PTRACE and scope 3 forbids attaching, which no prctl changes.
    """
    scope = read_scope()
    if scope is None or scope == 0:
        return False
    if scope >= 2:
        raise errors.AccessDenied(
            errno.EPERM, f"Yama ptrace_scope is {scope}: "
            + ("only a process with CAP_SYS_PTRACE may trace, so a self-dump needs root"
               if scope == 2 else "ptrace attach is disabled on this system"),
            pid=os.getpid())
    set_tracer(pid)
    return True


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def dump_self(out: BinaryIO, dump_type: MiniDumpType, *, all_memory: bool = False,
              python: bool = True) -> DumpTimes:
    """Write a minidump of the calling process to ``out`` through a helper process.

    The calling thread is recorded as the one that requested the dump."""
    from .linux import DumpTimes

    out.flush()
    fd = out.fileno()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "minidumpkit._backends._selfdump", str(os.getpid()), str(fd),
         str(int(dump_type)), str(threading.get_native_id()), str(int(all_memory)),
         str(int(python))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        pass_fds=(fd,), env=env)
    told_yama = False
    try:
        told_yama = allow_tracer(proc.pid)
        # the helper starts only once it may trace us
        stdout, stderr = proc.communicate(b"go\n")
    except BaseException:
        # Interrupted (KeyboardInterrupt ...): the helper detaches on SIGTERM, then exits.
        proc.send_signal(signal.SIGTERM)
        proc.communicate()
        raise
    finally:
        if told_yama:
            set_ptracer(0)
    report = _parse_report(stdout)
    if report is None:
        raise errors.ProcessError(
            errno.EIO, f"the self-dump helper exited with status {proc.returncode} and no "
            f"report: {stderr.decode('utf-8', 'replace').strip()[-2000:]}", pid=os.getpid())
    if "error" in report:
        raise _rebuild(report)
    out.seek(0, os.SEEK_END)
    return DumpTimes(threads=_int(report, "threads"), stop_ns=_int(report, "stop_ns"),
                     pause_ns=_int(report, "pause_ns"))


def _int(report: dict[str, object], key: str) -> int:
    value = report.get(key)
    return value if isinstance(value, int) else 0


def _parse_report(stdout: bytes) -> dict[str, object] | None:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _rebuild(report: dict[str, object]) -> BaseException:
    name = str(report.get("error"))
    message = str(report.get("message", ""))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.ProcessError):
        code = report.get("errno")
        return cls(int(code) if isinstance(code, int) else errno.EIO, message, pid=os.getpid())
    if isinstance(cls, type) and issubclass(cls, errors.InvalidTargetError):
        return cls(message, pid=os.getpid())
    if isinstance(cls, type) and issubclass(cls, errors.MinidumpError):
        return cls(message)
    return errors.ProcessError(errno.EIO, f"self-dump helper failed: {name}: {message}",
                               pid=os.getpid())


def _helper_main(argv: list[str]) -> int:
    pid, fd, dump_type = int(argv[0]), int(argv[1]), MiniDumpType(int(argv[2]))
    requesting_tid, all_memory = int(argv[3]), argv[4] == "1"
    python = len(argv) < 6 or argv[5] == "1"

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through ProcessStop, which detaches

    signal.signal(signal.SIGTERM, on_term)
    sys.stdin.readline()  # wait until the parent has allowed us to trace it
    report: dict[str, object]
    try:
        from .linux import write_dump

        with os.fdopen(fd, "r+b", closefd=False) as out:
            times = write_dump(pid, out, dump_type, all_memory=all_memory, python=python,
                               requesting_tid=requesting_tid)
            out.flush()
        report = {"threads": times.threads, "stop_ns": times.stop_ns, "pause_ns": times.pause_ns}
    except KeyboardInterrupt:
        report = {"error": "DumpCancelled", "message": "the self-dump was interrupted"}
    except Exception as exc:  # noqa: BLE001  reported to the parent, which re-raises it
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        report = {"error": type(exc).__name__, "message": message,
                  "errno": getattr(exc, "errno", None)}
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    sys.stdout.flush()
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
