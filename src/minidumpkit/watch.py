"""Dumps at the moment that matters: watch a process and dump it when a trigger fires.

    import subprocess, minidumpkit as mdk
    proc = subprocess.Popen(["./server"])
    with mdk.Watcher(proc, on_crash=True, on_hang=30, directory="dumps",
                     on_dump=lambda d: print("wrote", d.path, "for", d.trigger)) as w:
        proc.wait()

:func:`run` starts a command traced and watches it (``minidumpkit run``);
:class:`Watcher` watches a pid or a ``subprocess.Popen`` on a thread of its own
(``minidumpkit watch``); :func:`dump_self` dumps the calling process. Linux only for
now. See docs/watch.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from . import _output
from ._triggers import DEFAULT_NAME, Triggers, check_template, dump_name
from .errors import UnsupportedError
from .flags import DumpType, MiniDumpType, coerce_dump_type

__all__ = ["DumpWritten", "Triggers", "Watcher", "dump_self", "run"]

StrPath = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class DumpWritten:
    """One dump a watcher wrote: where, why and when. ``os.fspath()`` gives its path."""

    path: Path
    trigger: str  # crash, first-chance, hang, signal, cpu, memory, threads, fds, timer
    pid: int
    time: datetime.datetime

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def _linux_only() -> None:
    if not sys.platform.startswith("linux"):
        raise UnsupportedError(f"watching a process is implemented on Linux only so far, "
                               f"not on {sys.platform!r}")


class _Writer:
    """Names and writes each dump a trigger asks for (the backend's on_dump)."""

    def __init__(self, pid: int, directory: StrPath, name: str, dump_type: MiniDumpType,
                 all_memory: bool, on_dump: Callable[[DumpWritten], object] | None) -> None:
        check_template(name)
        self.pid = pid
        self.directory = os.fspath(directory)
        self.name = name
        self.dump_type = dump_type
        self.all_memory = all_memory
        self.on_dump = on_dump
        self.dumps: list[DumpWritten] = []
        # the directory is checked before the target is touched
        _output.check(os.path.join(self.directory, "probe.dmp"), overwrite=False, numbered=True)

    def __call__(self, trigger: str, write: Callable[[BinaryIO, MiniDumpType, bool], object]
                 ) -> None:
        try:
            with open(f"/proc/{self.pid}/comm", encoding="utf-8", errors="replace") as f:
                comm = f.read().strip()
        except OSError:
            comm = "process"
        now = datetime.datetime.now()
        name = dump_name(self.name, comm=comm, pid=self.pid, trigger=trigger,
                         n=len(self.dumps) + 1, now=now)
        dest = _output.check(os.path.join(self.directory, name), overwrite=False,
                             numbered=True)
        with _output.open_output(dest) as out:
            write(out, self.dump_type, self.all_memory)
        event = DumpWritten(Path(dest.written or dest.path), trigger, self.pid, now)
        self.dumps.append(event)
        if self.on_dump is not None:
            self.on_dump(event)


def _triggers(triggers: Triggers | None, options: dict[str, Any]) -> Triggers:
    if triggers is not None and options:
        raise TypeError("give either a Triggers or trigger keywords, not both")
    result = triggers if triggers is not None else Triggers(**options)
    if not result.any:
        raise ValueError("no trigger given: on_crash, on_hang, signal, cpu, memory_mb, "
                         "threads, fds or timer")
    return result


class Watcher:
    """Watch process ``target`` (a pid or a ``subprocess.Popen``) and write a dump each
    time a trigger fires, until the process exits, ``count`` dumps are written or
    :meth:`stop` is called.

    Triggers are a :class:`Triggers` or its fields as keywords (``on_crash=True``,
    ``on_hang=30``, ``signal=signal.SIGUSR1``, ...). Dumps go to ``directory`` named
    by ``name`` (fields ``<comm> <pid> <time> <trigger> <n>``; a taken name gets -2,
    -3, ...), of ``type`` (any dump type of :func:`minidumpkit.dump`). ``on_dump`` is
    called with a :class:`DumpWritten` for each, on the watcher's thread, while the
    process is held when the trigger was a crash: keep it short. ``on_error`` gets an
    exception a dump met (the watch goes on); without it errors are kept in
    :attr:`errors`.

    The process is traced (ptrace) while watched: a debugger cannot attach meanwhile.
    Every thread is detached when the watch ends, whatever the reason. Use it as a
    context manager, or :meth:`start` and :meth:`stop`.
    """

    def __init__(self, target: int | subprocess.Popen[Any], triggers: Triggers | None = None,
                 *, directory: StrPath = ".", name: str = DEFAULT_NAME,
                 type: int | MiniDumpType = DumpType.MINI, all_memory: bool = False,
                 on_dump: Callable[[DumpWritten], object] | None = None,
                 on_error: Callable[[BaseException], object] | None = None,
                 **trigger_options: Any) -> None:
        _linux_only()
        pid = target.pid if isinstance(target, subprocess.Popen) else target
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise TypeError(f"target must be a pid or a subprocess.Popen, not "
                            f"{target.__class__.__name__}")
        self.pid = pid
        self.triggers = _triggers(triggers, trigger_options)
        self._writer = _Writer(pid, directory, name, coerce_dump_type(type), all_memory,
                               on_dump)
        self._on_error = on_error
        #: exceptions met by dumps (when no on_error was given)
        self.errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._attached = threading.Event()
        self._attach_error: BaseException | None = None
        self._failure: BaseException | None = None

    @property
    def dumps(self) -> list[DumpWritten]:
        """The dumps written so far, oldest first."""
        return list(self._writer.dumps)

    def __repr__(self) -> str:
        return f"<Watcher pid={self.pid} dumps={len(self._writer.dumps)}>"

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Watcher:
        """Attach and start watching; raises here if the process cannot be traced
        (ProcessNotFound, AlreadyTraced, AccessDenied)."""
        if self._thread is not None:
            raise RuntimeError("this Watcher was already started")
        from ._backends import load_backend

        load_backend().check_target(self.pid)
        self._thread = threading.Thread(target=self._main, name=f"minidumpkit-watch-{self.pid}",
                                        daemon=True)
        self._thread.start()
        self._attached.wait()
        if self._attach_error is not None:
            self._thread.join()
            raise self._attach_error
        return self

    def _report(self, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(exc)
        else:
            self.errors.append(exc)

    def _main(self) -> None:
        from ._backends._linux_watch import LinuxWatch

        watch = LinuxWatch(self.pid, self.triggers, self._writer, on_error=self._report)
        try:
            try:
                watch.attach()
            except BaseException as exc:  # noqa: BLE001  re-raised by start()
                self._attach_error = exc
                return
            finally:
                self._attached.set()
            watch.run(self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001  kept for wait()/stop()
            self._failure = exc
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the watch ends (process gone, ``count`` reached, stopped); True if
        it has. Re-raises an error that ended it."""
        done = self._done.wait(timeout)
        if done and self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return done

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop watching: every thread is detached, then the watcher's thread ends."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.wait(0)


def run(argv: Sequence[str], triggers: Triggers | None = None, *, directory: StrPath = ".",
        name: str = DEFAULT_NAME, type: int | MiniDumpType = DumpType.MINI,
        all_memory: bool = False, on_dump: Callable[[DumpWritten], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        on_start: Callable[[int], object] | None = None, **trigger_options: Any) -> int:
    """Start ``argv`` traced from its first instruction, watch it on the calling thread
    and return its wait status (as ``os.waitpid`` gives it) once it has exited.

    Raises FileNotFoundError / PermissionError if the command cannot be run. On
    KeyboardInterrupt every thread is detached first; the child runs on untraced and
    is not waited for (its pid was given to ``on_start``)."""
    _linux_only()
    from ._backends._linux_watch import LinuxWatch, spawn_traced

    spec = _triggers(triggers, trigger_options)
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("no command given")
    dump_type = coerce_dump_type(type)
    check_template(name)
    _output.check(os.path.join(os.fspath(directory), "probe.dmp"), overwrite=False,
                  numbered=True)  # before the child exists
    pid, go = spawn_traced(args)
    try:
        writer = _Writer(pid, directory, name, dump_type, all_memory, on_dump)
        watch = LinuxWatch(pid, spec, writer, reap_leader=True, on_error=on_error)
        watch.attach()
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # still blocked before its exec
        os.waitpid(pid, 0)
        raise
    try:
        go()
    except OSError:
        watch.detach()
        os.waitpid(pid, 0)  # it exited 127 after the failed exec
        raise
    if on_start is not None:
        on_start(pid)
    watch.run()
    if watch.exit_status is not None:
        return watch.exit_status
    return os.waitpid(pid, 0)[1]  # detached early (count reached): wait as its parent


def dump_self(path: StrPath, type: int | MiniDumpType = DumpType.MINI, *,
              overwrite: bool = True, all_memory: bool = False) -> Path:
    """Write a minidump of the calling process to ``path`` and return it.

    The dump is written by a helper process that ptraces this one (a process cannot
    trace itself); the calling thread is the one the dump's exception stream names
    (DUMP_REQUESTED). Everything else is as :func:`minidumpkit.dump`."""
    from .dumper import dump

    return dump(os.getpid(), path, type, overwrite=overwrite, all_memory=all_memory,
                snapshot="never")
