"""Crash dumps of the calling Python process, written from outside it.

    import minidumpkit as mdk
    crash_dumps = mdk.enable_crash_dumps("/var/crash/myapp")
    ...                                   # a segfault anywhere leaves a minidump there
    crash_dumps.disable()                 # optional: also done at normal exit

:func:`enable_crash_dumps` starts a helper process (``python -m minidumpkit.crashdumps``)
and lets it trace this one (``prctl(PR_SET_PTRACER)`` where Yama asks for it). The
helper seizes every thread and waits; it runs the ``--on-crash`` watch of
``minidumpkit run`` (:class:`~._backends._linux_watch.LinuxWatch`): a crash signal that
will kill the process (its default action, or faulthandler's re-raise) is held at its
delivery, the dump is written with the crashing thread in its Exception stream, then
the signal is delivered and the process dies as it would have. A crashed process
cannot be trusted to write its own dump; the helper's memory is intact. Linux only.
See docs/crash-dumps.md.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _output
from ._triggers import DEFAULT_NAME, Triggers, check_template
from .errors import AlreadyTraced, UnsupportedError
from .flags import DumpType, MiniDumpType, coerce_dump_type

__all__ = ["CrashDumps", "enable_crash_dumps"]

StrPath = str | os.PathLike[str]

_lock = threading.Lock()
_active: CrashDumps | None = None


class CrashDumps:
    """Crash dumps enabled by :func:`enable_crash_dumps`; :meth:`disable` ends them."""

    def __init__(self, directory: Path, helper: subprocess.Popen[bytes]) -> None:
        #: where dumps are written
        self.directory = directory
        #: the process whose crashes are dumped (the caller)
        self.pid = os.getpid()
        self._helper: subprocess.Popen[bytes] | None = helper
        #: the tracer's process id (it shows as TracerPid in /proc/PID/status)
        self.helper_pid = helper.pid

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<CrashDumps {state} pid={self.pid} helper_pid={self.helper_pid} " \
               f"directory={str(self.directory)!r}>"

    @property
    def enabled(self) -> bool:
        return self._helper is not None and self._helper.poll() is None

    def disable(self, timeout: float = 10.0) -> None:
        """Detach every thread and end the helper. Idempotent; a debugger may attach
        afterwards."""
        global _active
        with _lock:
            helper, self._helper = self._helper, None
            if _active is self:
                _active = None
        atexit.unregister(self.disable)
        if helper is None or self.pid != os.getpid():
            return  # (a forked child: the helper is its parent's)
        if helper.poll() is None:
            try:
                helper.send_signal(signal.SIGTERM)  # it detaches, then exits
            except ProcessLookupError:
                pass
        try:
            helper.wait(timeout)
        except subprocess.TimeoutExpired:
            helper.kill()  # the kernel detaches what a dead tracer held
            helper.wait()
        for stream in (helper.stdin, helper.stdout):
            if stream is not None:
                stream.close()


def enable_crash_dumps(directory: StrPath = ".", *, type: int | MiniDumpType = DumpType.MINI,
                       name: str = DEFAULT_NAME, all_memory: bool = False,
                       detach_at_exit: bool = True) -> CrashDumps:
    """Write a minidump to ``directory`` when this process crashes, from a helper
    process that traces it; returns a :class:`CrashDumps` (``disable()``,
    ``helper_pid``).

    A crash is a SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS or SIGTRAP that will
    kill the process (a segfault in a C extension or through ctypes included; with
    :mod:`faulthandler` on, its re-raise after the traceback). Signals the program
    handles and survives give no dump. The dump's Exception stream holds the signal,
    ``si_code``, the fault address and the crashing thread; then the process dies of
    the signal as it would have. ``name`` (fields ``<comm> <pid> <time> <trigger>
    <n>``), ``type`` and ``all_memory`` are those of :class:`~minidumpkit.Watcher`.

    Nothing is left behind on a normal exit: the helper detaches and ends at exit, in
    an :mod:`atexit` handler (it also ends by itself when this process is gone,
    whatever killed it). ``detach_at_exit=False`` keeps the watch on to the very end
    (a crash in the interpreter's finalization, after the atexit handlers, is dumped
    too); the helper then ends by itself once the process is gone, reaped by init
    (or the nearest subreaper) instead of this process. While enabled
    this process has a tracer, so a debugger (gdb -p) cannot attach; dumps of it
    (:func:`minidumpkit.dump`, :func:`minidumpkit.dump_self`) are written by the helper.

    Raises AlreadyTraced if crash dumps are already enabled here or a debugger traces
    this process, AccessDenied if ptrace is not allowed (Yama ptrace_scope 2 or 3,
    seccomp, a container without ptrace), a PathError if ``directory`` is not a
    writable directory.
    """
    global _active
    if not sys.platform.startswith("linux"):
        raise UnsupportedError(f"enable_crash_dumps is implemented on Linux only so far, "
                               f"not on {sys.platform!r}")
    dump_type = coerce_dump_type(type)
    check_template(name)
    folder = Path(os.path.abspath(os.fspath(directory)))
    _output.check(os.fspath(folder / "probe.dmp"), overwrite=False, numbered=True)
    with _lock:
        if _active is not None and _active.enabled:
            raise AlreadyTraced(errno.EBUSY, f"crash dumps are already enabled for process "
                                f"{os.getpid()} (helper pid {_active.helper_pid}); call "
                                "disable() on the object enable_crash_dumps returned first",
                                pid=os.getpid())
        _active = _start(folder, name, dump_type, all_memory, detach_at_exit)
        return _active


def _start(folder: Path, name: str, dump_type: MiniDumpType, all_memory: bool,
           detach_at_exit: bool) -> CrashDumps:
    from ._backends import load_backend
    from ._backends._selfdump import _package_root, allow_tracer, set_ptracer

    load_backend().check_target(os.getpid())  # not a zombie, ...
    _check_untraced()
    config = {"pid": os.getpid(), "directory": os.fspath(folder), "name": name,
              "type": int(dump_type), "all_memory": all_memory}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    helper = subprocess.Popen(
        [sys.executable, "-m", "minidumpkit.crashdumps", json.dumps(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        start_new_session=True)  # the terminal's Ctrl-C and Ctrl-Z are not for it
    assert helper.stdin is not None and helper.stdout is not None
    told_yama = False
    try:
        told_yama = allow_tracer(helper.pid)  # Yama scope 1: our child, not our ancestor
        helper.stdin.write(b"go\n")
        helper.stdin.flush()
        line = helper.stdout.readline()
    except BaseException:  # (Yama refused, KeyboardInterrupt ...)
        helper.stdin.close()  # before "go": it ends at once
        helper.send_signal(signal.SIGTERM)  # after: it detaches, then exits
        helper.wait()
        helper.stdout.close()
        raise
    finally:
        if told_yama:  # attached or not, the permission has served (Yama checks at attach)
            try:
                set_ptracer(0)
            except OSError:
                pass
    try:
        first = json.loads(line)
    except ValueError:
        first = {"error": "ProcessError", "message": "the crash-dump helper ended without "
                 "a word (its error is on stderr)"}
    if not isinstance(first, dict) or first.get("attached") is not True:
        helper.wait()
        for stream in (helper.stdin, helper.stdout):
            stream.close()
        from ._backends._tracer_socket import rebuild

        raise rebuild(first if isinstance(first, dict) else {}, os.getpid())
    result = CrashDumps(folder, helper)
    if detach_at_exit:
        atexit.register(result.disable)
    return result


def _check_untraced() -> None:
    from ._backends._tracer_socket import tracer_pid

    tracer = tracer_pid(os.getpid())
    if tracer:
        from ._backends.linux import _already_traced

        raise _already_traced(os.getpid(), "this process", tracer)


def _forget_in_child() -> None:
    global _active, _lock
    _lock = threading.Lock()
    _active = None  # a forked child is not traced: it may enable its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


# --- the helper ---------------------------------------------------------------------

def _helper_main(argv: list[str]) -> int:
    """Trace the process named in the JSON config and dump its crashes; answer dump
    requests for it (:mod:`._backends._tracer_socket`). Ends when it exits, on SIGTERM,
    or when stdin closes (the owner went away)."""
    from ._backends._linux_watch import ChildWakeup, LinuxWatch
    from ._backends._tracer_socket import TracerServer, describe
    from .watch import _Writer

    config = json.loads(argv[0])
    pid = int(config["pid"])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)

    def say(message: dict[str, Any]) -> None:
        try:
            sys.stdout.write(json.dumps(message, default=str) + "\n")
            sys.stdout.flush()
        except OSError:
            pass  # the owner is gone (it crashed): the dump matters, not the report

    if sys.stdin.readline() != "go\n":  # the owner allows us to trace it first
        return 1
    try:
        server: TracerServer | None = TracerServer(pid)
    except OSError:
        server = None  # dump requests then fail as "already traced"
    try:
        writer = _Writer(pid, config["directory"], config["name"],
                         MiniDumpType(config["type"]), bool(config["all_memory"]), None)
        watch = LinuxWatch(pid, Triggers(on_crash=True), writer, reap_leader=False,
                           on_error=lambda exc: print(f"minidumpkit: crash dump of process "
                                                      f"{pid} failed: {exc}", file=sys.stderr))
        watch.attach()
    except Exception as exc:  # noqa: BLE001  reported to the owner, which re-raises it
        say(describe(exc))
        return 1
    say({"attached": True})
    handlers: dict[int, Callable[[], object]] = {}

    def owner_gone() -> None:  # (its exit report follows, or SIGTERM)
        if not os.read(sys.stdin.fileno(), 64):
            handlers.pop(sys.stdin.fileno(), None)  # (the dict ChildWakeup waits on)

    handlers[sys.stdin.fileno()] = owner_gone
    if server is not None:
        tracer = server
        handlers[server.fileno()] = lambda: tracer.serve(watch.write_requested)
    wait_idle = ChildWakeup(handlers)
    try:
        watch.run(stopping.is_set, wait_idle)
    except Exception as exc:  # noqa: BLE001
        print(f"minidumpkit: the crash-dump helper of process {pid} failed: {exc}",
              file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
