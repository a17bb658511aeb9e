"""Dumps at the moment that matters: watch a process and dump it when a trigger fires.

    import subprocess, minidumpkit as mdk
    proc = subprocess.Popen(["./server"])
    with mdk.Watcher(proc, on_crash=True, on_hang=30, directory="dumps",
                     on_dump=lambda d: print("wrote", d.path, "for", d.trigger)) as w:
        proc.wait()

:func:`run` starts a command traced and watches it (``minidumpkit run``);
:class:`Watcher` watches a pid or a ``subprocess.Popen`` on a thread of its own
(``minidumpkit watch``); :func:`dump_self` dumps the calling process. On Windows only
the crash triggers exist so far (the debugging API: docs/watch.md, "Windows").
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from . import _output
from ._triggers import WINDOWS_TRIGGERS, DEFAULT_NAME, Triggers, check_template, dump_name
from .errors import UnsupportedError
from .flags import DumpType, MiniDumpType, coerce_dump_type

__all__ = ["DumpWritten", "Triggers", "Watcher", "dump_self", "run"]

StrPath = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class DumpWritten:
    """One dump a watcher wrote: where, why and when. ``os.fspath()`` gives its path."""

    path: Path
    trigger: str  # crash, first-chance, hang, signal, cpu, memory, threads, fds, timer
    pid: int  # the process dumped (with follow_children, maybe a child of the target)
    time: datetime.datetime

    def __fspath__(self) -> str:
        return os.fspath(self.path)


WINDOWS = sys.platform == "win32"


def _check_platform(triggers: Triggers) -> None:
    """Linux has every trigger; Windows the crash ones (on_crash, first_chance)."""
    if WINDOWS:
        others = [f.name for f in dataclasses.fields(Triggers)
                  if f.name not in (*WINDOWS_TRIGGERS, "count", "interval", "cpu_for")
                  and getattr(triggers, f.name) not in (None, False)]  # follow_children
        if others or not triggers.on_crash:
            raise UnsupportedError("on Windows a watcher has the crash triggers only so far "
                                   "(on_crash, first_chance), not " +
                                   ", ".join(others or ["a watch without on_crash"]))
        return
    if not sys.platform.startswith("linux"):
        raise UnsupportedError(f"watching a process is implemented on Linux and Windows "
                               f"only, not on {sys.platform!r}")


def _process_name(pid: int) -> str:
    if WINDOWS:
        from ._backends.windows import process_name

        try:
            return process_name(pid)
        except OSError:
            return "process"
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "process"


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

    def __call__(self, trigger: str, write: Callable[[IO[bytes], MiniDumpType, bool], object]
                 ) -> None:
        pid = getattr(write, "pid", self.pid)  # a child's, with follow_children
        comm = _process_name(pid)
        now = datetime.datetime.now()
        name = dump_name(self.name, comm=comm, pid=pid, trigger=trigger,
                         n=len(self.dumps) + 1, now=now)
        dest = _output.check(os.path.join(self.directory, name), overwrite=False,
                             numbered=True)
        with _output.open_output(dest) as out:
            write(out, self.dump_type, self.all_memory)
        event = DumpWritten(Path(dest.written or dest.path), trigger, pid, now)
        self.dumps.append(event)
        if self.on_dump is not None:
            self.on_dump(event)


    def sample(self, trigger: str, write: Callable[[IO[bytes], MiniDumpType, bool], object]
               ) -> bool:
        """on_hang's lock rule (the backend's on_sample): write a dump of the held
        process, unnamed (O_TMPFILE) or hidden until published, run the lock analysis
        on it once the process runs again, and publish it as the ``trigger`` dump only
        if it holds a lock cycle; else nothing is left and False is returned.

        The analysis is done here, in the watcher layer, not in the backend: the
        backends sit under the analysis layer and never import it (it is imported on
        the first sample only, so a watch that never samples does not load it)."""
        pid = getattr(write, "pid", self.pid)
        comm = _process_name(pid)
        now = datetime.datetime.now()
        name = dump_name(self.name, comm=comm, pid=pid, trigger=trigger,
                         n=len(self.dumps) + 1, now=now)
        dest = _output.check(os.path.join(self.directory, name), overwrite=False,
                             numbered=True)
        try:
            with _output.open_output(dest) as out:
                write(out, self.dump_type, self.all_memory)
                out.flush()
                if not _has_lock_cycle(out):
                    raise _NoCycle
        except _NoCycle:
            return False
        event = DumpWritten(Path(dest.written or dest.path), trigger, pid, now)
        self.dumps.append(event)
        if self.on_dump is not None:
            self.on_dump(event)
        return True


class _NoCycle(Exception):
    """A lock sample without a lock cycle: discarded (open_output leaves nothing)."""


def _has_lock_cycle(out: IO[bytes]) -> bool:
    from .analysis import wait_graph
    from .reader import open_minidump

    out.seek(0)
    with open_minidump(cast(BinaryIO, out)) as dump:
        return bool(wait_graph(dump).deadlocks)


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
    ``on_hang=30``, ``signal=signal.SIGUSR1``, ...); ``follow_children=True`` watches
    every process it starts too (and those that already run), until all have ended. Dumps go to ``directory`` named
    by ``name`` (fields ``<comm> <pid> <time> <trigger> <n>``; a taken name gets -2,
    -3, ...), of ``type`` (any dump type of :func:`minidumpkit.dump`). ``on_dump`` is
    called with a :class:`DumpWritten` for each, on a thread of the watcher. ``on_error``
    gets an exception a dump met (the watch goes on); without it errors are kept in
    :attr:`errors`.

    The tracer is a helper process (``python -m minidumpkit.watch``): a tracer in this
    process would receive the ptrace stops of our own child through
    ``subprocess.Popen.wait``. The process is traced while watched, so a debugger
    cannot attach meanwhile; every thread is detached when the watch ends, whatever
    the reason (the helper also stops when this process goes away). Use it as a
    context manager, or :meth:`start` and :meth:`stop`.

    On Windows the helper is the process's debugger (DebugActiveProcess; crash
    triggers only); it lets the process go when stopped (DebugActiveProcessStop) and,
    should it die, the system lets it go (DebugSetProcessKillOnExit FALSE).
    """

    def __init__(self, target: int | subprocess.Popen[Any], triggers: Triggers | None = None,
                 *, directory: StrPath = ".", name: str = DEFAULT_NAME,
                 type: int | MiniDumpType = DumpType.MINI, all_memory: bool = False,
                 on_dump: Callable[[DumpWritten], object] | None = None,
                 on_error: Callable[[BaseException], object] | None = None,
                 **trigger_options: Any) -> None:
        pid = target.pid if isinstance(target, subprocess.Popen) else target
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise TypeError(f"target must be a pid or a subprocess.Popen, not "
                            f"{target.__class__.__name__}")
        self.pid = pid
        self.triggers = _triggers(triggers, trigger_options)
        _check_platform(self.triggers)
        check_template(name)
        self.directory = os.path.abspath(os.fspath(directory))
        _output.check(os.path.join(self.directory, "probe.dmp"), overwrite=False, numbered=True)
        self._config = {"pid": pid, "triggers": dataclasses.asdict(self.triggers),
                        "directory": self.directory, "name": name,
                        "type": int(coerce_dump_type(type)), "all_memory": all_memory}
        self._on_dump = on_dump
        self._on_error = on_error
        #: exceptions met by dumps (when no on_error was given)
        self.errors: list[BaseException] = []
        self._dumps: list[DumpWritten] = []
        self._helper: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._done = threading.Event()
        self._failure: BaseException | None = None

    @property
    def dumps(self) -> list[DumpWritten]:
        """The dumps written so far, oldest first."""
        return list(self._dumps)

    def __repr__(self) -> str:
        return f"<Watcher pid={self.pid} dumps={len(self._dumps)}>"

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Watcher:
        """Attach and start watching; raises here if the process cannot be traced
        (ProcessNotFound, AlreadyTraced, AccessDenied)."""
        if self._helper is not None:
            raise RuntimeError("this Watcher was already started")
        from ._backends import load_backend
        from ._backends._selfdump import _package_root

        load_backend().check_target(self.pid)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(),
                                                          env.get("PYTHONPATH")]))
        self._helper = subprocess.Popen(
            [sys.executable, "-m", "minidumpkit.watch", json.dumps(self._config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self._helper.stdout is not None
        try:
            first = _message(self._helper.stdout.readline())
        except BaseException:  # interrupted while it attaches: it detaches on SIGTERM
            self._done.set()
            self._ask_helper_to_stop(self._helper)
            self._helper.wait()
            raise
        if first.get("attached") is not True:
            self._helper.wait()
            self._done.set()
            raise _rebuild(first, self.pid)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"minidumpkit-watch-{self.pid}")
        self._reader.start()
        return self

    @staticmethod
    def _ask_helper_to_stop(helper: subprocess.Popen[bytes]) -> None:
        """SIGTERM on Linux; on Windows (where SIGTERM is TerminateProcess) the end of
        its stdin. Either way it lets the process go between two events."""
        if WINDOWS:
            try:
                if helper.stdin is not None:
                    helper.stdin.close()
            except OSError:
                pass
            return
        try:
            helper.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _read(self) -> None:
        helper = self._helper
        assert helper is not None and helper.stdout is not None
        try:
            for line in helper.stdout:
                message = _message(line)
                if "dump" in message:
                    event = DumpWritten(Path(str(message["dump"])), str(message["trigger"]),
                                        int(message.get("pid", self.pid)),
                                        datetime.datetime.fromisoformat(
                                            str(message["time"])))
                    self._dumps.append(event)
                    if self._on_dump is not None:
                        self._call(self._on_dump, event)
                elif "dump_error" in message:
                    self._report(_rebuild(message["dump_error"], self.pid))
                elif "error" in message:
                    self._failure = _rebuild(message, self.pid)
            helper.wait()
        finally:
            self._done.set()

    def _call(self, fn: Callable[[DumpWritten], object], event: DumpWritten) -> None:
        try:
            fn(event)
        except Exception as exc:  # noqa: BLE001  a callback's bug must not end the watch
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(exc)
        else:
            self.errors.append(exc)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the watch ends (process gone, ``count`` reached, stopped); True if
        it has. Re-raises an error that ended it."""
        done = self._done.wait(timeout)
        if done and self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return done

    @property
    def helper_pid(self) -> int | None:
        """The tracer's process id once started (the watched process's TracerPid)."""
        return self._helper.pid if self._helper is not None else None

    @property
    def running(self) -> bool:
        return self._helper is not None and not self._done.is_set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop watching: every thread is detached, then the helper ends."""
        helper = self._helper
        if helper is None:
            return
        if helper.poll() is None:
            self._ask_helper_to_stop(helper)
        try:
            helper.wait(timeout)
        except subprocess.TimeoutExpired:
            helper.kill()  # the kernel detaches what a dead tracer held
            helper.wait()
        if helper.stdin is not None:
            try:
                helper.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout)
        self.wait(0)


def _message(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {"error": "ProcessError", "message": "the watch helper ended without a word"}
    return value if isinstance(value, dict) else {}


def _rebuild(report: dict[str, Any], pid: int) -> BaseException:
    from . import errors

    name, message = str(report.get("error")), str(report.get("message", ""))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, (errors.ProcessError, errors.PathError)):
        code = report.get("errno")
        code = code if isinstance(code, int) else errno.EIO
        if issubclass(cls, errors.PathError):
            return cls(code, message, str(report.get("path", "")))
        return cls(code, message, pid=pid)
    if isinstance(cls, type) and issubclass(cls, errors.InvalidTargetError):
        return cls(message, pid=pid)
    if isinstance(cls, type) and issubclass(cls, errors.MinidumpError):
        return cls(message)
    return errors.ProcessError(errno.EIO, f"watch helper: {name}: {message}", pid=pid)


def _describe_error(exc: BaseException) -> dict[str, Any]:
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return {"error": type(exc).__name__, "message": message,
            "errno": getattr(exc, "errno", None), "path": getattr(exc, "filename", None)}


def _helper_main(argv: list[str]) -> int:
    """The tracer behind :class:`Watcher`: JSON config in argv, one JSON line per event
    out; SIGTERM, SIGINT, SIGHUP or the end of stdin (the owner went away) stop it."""
    config = json.loads(argv[0])
    stopping = threading.Event()
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda signum, frame: stopping.set())

    def say(message: dict[str, Any]) -> None:
        try:
            sys.stdout.write(json.dumps(message, default=str) + "\n")
            sys.stdout.flush()
        except OSError:
            stopping.set()

    if WINDOWS:
        def until_eof() -> None:  # select() takes sockets only on Windows: read on a thread
            try:  # (os.read, not sys.stdin: a daemon thread blocked inside the buffered
                # reader holds its lock, and the interpreter aborts at exit over it)
                while os.read(fd, 1):
                    pass
            except OSError:
                pass
            stopping.set()  # our owner closed our stdin or is gone

        fd = sys.stdin.fileno()

        threading.Thread(target=until_eof, daemon=True).start()
        should_stop = stopping.is_set
    else:
        import select

        def should_stop() -> bool:
            if not stopping.is_set() and select.select([sys.stdin], [], [], 0)[0] \
                    and not os.read(sys.stdin.fileno(), 1):
                stopping.set()  # our owner is gone
            return stopping.is_set()

    pid = int(config["pid"])
    writer = _Writer(pid, config["directory"], config["name"], MiniDumpType(config["type"]),
                     bool(config["all_memory"]),
                     lambda e: say({"dump": os.fspath(e.path), "trigger": e.trigger,
                                    "pid": e.pid, "time": e.time.isoformat()}))
    on_error = lambda exc: say({"dump_error": _describe_error(exc)})  # noqa: E731
    triggers = Triggers(**config["triggers"])
    watch: Any
    if WINDOWS:
        from ._backends._win_watch import WindowsWatch

        watch = WindowsWatch(pid, triggers, writer, on_error=on_error)
    else:
        from ._backends._linux_watch import LinuxWatch

        watch = LinuxWatch(pid, triggers, writer, reap_leader=True, on_error=on_error,
                           on_sample=writer.sample)
    try:
        watch.attach()
    except Exception as exc:  # noqa: BLE001  reported to the owner, which re-raises it
        say(_describe_error(exc))
        return 1
    # dump() of the watched process comes to us (one tracer per process); listening
    # before the owner hears "attached" (Linux: Windows has no ptrace to share)
    server: Any = None
    if not WINDOWS:
        from ._backends._tracer_socket import TracerServer

        try:
            server = TracerServer(pid)
        except OSError:
            server = None
    say({"attached": True})
    try:
        if WINDOWS:
            watch.run(should_stop)
        else:
            from ._backends._linux_watch import ChildWakeup

            handlers: dict[int, Callable[[], object]] = {sys.stdin.fileno(): lambda: None}
            if server is not None:  # (stdin's handler: should_stop reads it)
                tracer = server
                handlers[server.fileno()] = lambda: tracer.serve(watch.write_requested)
            watch.run(should_stop, ChildWakeup(handlers))
    except Exception as exc:  # noqa: BLE001
        say(_describe_error(exc))
        return 1
    finally:
        if server is not None:
            server.close()
    say({"end": True, "exit_status": getattr(watch, "exit_status", None)
         if not WINDOWS else watch.exit_code})
    return 0


def run(argv: Sequence[str], triggers: Triggers | None = None, *, directory: StrPath = ".",
        name: str = DEFAULT_NAME, type: int | MiniDumpType = DumpType.MINI,
        all_memory: bool = False, on_dump: Callable[[DumpWritten], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        on_start: Callable[[int], object] | None = None,
        should_stop: Callable[[], bool] = lambda: False, **trigger_options: Any) -> int | None:
    """Start ``argv`` traced from its first instruction, watch it on the calling thread
    and return its wait status (as ``os.waitpid`` gives it) once it has exited; on
    Windows its exit code (unsigned: 0xC0000005 for an access violation). With
    ``follow_children=True`` (Linux) every process it starts is watched too, and this
    returns once all of them have ended (still with ``argv``'s own status).

    Raises :class:`~minidumpkit._triggers.CommandError` (an OSError whose
    errno says why) if the command cannot be executed. Once
    ``should_stop()`` (polled between events) is true, or on an exception, every thread
    is detached and the child runs on untraced, not waited for (its pid was given to
    ``on_start``): then None is returned.

    On Windows the child is started with CreateProcess(DEBUG_ONLY_THIS_PROCESS) and
    the calling thread is its debugger (crash triggers only)."""
    spec = _triggers(triggers, trigger_options)
    _check_platform(spec)
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("no command given")
    dump_type = coerce_dump_type(type)
    check_template(name)
    _output.check(os.path.join(os.fspath(directory), "probe.dmp"), overwrite=False,
                  numbered=True)  # before the child exists
    if WINDOWS:
        return _run_windows(args, spec, directory, name, dump_type, all_memory, on_dump,
                            on_error, on_start, should_stop)
    from ._backends._linux_watch import LinuxWatch, spawn_traced

    pid, go = spawn_traced(args)
    try:
        writer = _Writer(pid, directory, name, dump_type, all_memory, on_dump)
        watch = LinuxWatch(pid, spec, writer, reap_leader=True, on_error=on_error,
                           on_sample=writer.sample)
        watch.attach()
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # still blocked before its exec
        os.waitpid(pid, 0)
        raise
    from ._backends._tracer_socket import TracerServer

    try:  # dump() of the child comes to us (one tracer per process), from its first step
        server: TracerServer | None = TracerServer(pid)
    except OSError:
        server = None
    try:
        go()
    except OSError:
        if server is not None:
            server.close()
        watch.detach()
        if watch.exit_status is None:
            os.waitpid(pid, 0)  # it exited 127 after the failed exec
        raise
    except BaseException:  # KeyboardInterrupt before it runs: let it go, untraced
        if server is not None:
            server.close()
        watch.detach()
        raise
    serve: tuple[int, Callable[[], object]] | None = None
    if server is not None:
        tracer = server
        serve = (tracer.fileno(), lambda: tracer.serve(watch.write_requested))
    try:
        if on_start is not None:
            on_start(pid)  # (its exception detaches too: run's finally does it)
        watch.run(should_stop, serve=serve)
    finally:
        if server is not None:
            server.close()
        if not watch.finished and not watch.detached:
            watch.detach()  # on_start raised: nothing may stay traced
    if watch.exit_status is not None:
        return watch.exit_status
    if should_stop():
        return None
    return os.waitpid(pid, 0)[1]  # detached early (count reached): wait as its parent


def _run_windows(args: list[str], spec: Triggers, directory: StrPath, name: str,
                 dump_type: MiniDumpType, all_memory: bool,
                 on_dump: Callable[[DumpWritten], object] | None,
                 on_error: Callable[[BaseException], object] | None,
                 on_start: Callable[[int], object] | None,
                 should_stop: Callable[[], bool]) -> int | None:
    from ._backends._win_watch import WindowsWatch, spawn_debugged, wait_exit_code
    from ._triggers import CommandError

    try:
        proc = spawn_debugged(args)
    except OSError as exc:  # FileNotFoundError, PermissionError, ERROR_BAD_EXE_FORMAT
        code = exc.errno if exc.errno in (errno.ENOENT, errno.EACCES) else errno.ENOEXEC
        raise CommandError(code, exc.strerror or os.strerror(code), args[0]) from None
    watch: WindowsWatch | None = None
    try:
        writer = _Writer(proc.pid, directory, name, dump_type, all_memory, on_dump)
        watch = WindowsWatch(proc.pid, spec, writer, created=True, on_error=on_error)
        watch.attach()
    except BaseException:
        if watch is not None:
            watch.detach()
        proc.kill()  # it has not run a line of its own yet
        proc.wait()
        raise
    if on_start is not None:
        on_start(proc.pid)
    watch.run(should_stop)
    if watch.exit_code is not None:
        proc.wait()  # the handle Popen holds
        return watch.exit_code
    if should_stop():
        return None
    return wait_exit_code(proc)


def dump_self(path: StrPath, type: int | MiniDumpType = DumpType.MINI, *,
              overwrite: bool = True, all_memory: bool = False) -> Path:
    """Write a minidump of the calling process to ``path`` and return it.

    The dump is written by a helper process that ptraces this one (a process cannot
    trace itself); the calling thread is the one the dump's exception stream names
    (DUMP_REQUESTED). Everything else is as :func:`minidumpkit.dump`."""
    from .dumper import dump

    return dump(os.getpid(), path, type, overwrite=overwrite, all_memory=all_memory,
                snapshot="never")


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
