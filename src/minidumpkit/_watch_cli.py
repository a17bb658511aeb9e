"""``minidumpkit run [triggers] -- CMD ...`` and ``minidumpkit watch PID [triggers]``.

Exit status of ``watch`` (and of ``run`` when it fails before the command runs):
2 bad usage, 3 no such process, 4 the process is already traced (a debugger),
5 no permission to trace it, 6 a trigger value out of range, 126 the command is not
executable, 127 the command is not found, 1 anything else, 130 interrupted (Ctrl-C).
``run`` otherwise ends as its command did: the same exit code, or killed by the same
signal (re-raised on itself, with no core file of its own). On Windows (crash
triggers only) the same exit code: 0xC0000005 after an access violation.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from ._triggers import (
    DEFAULT_NAME,
    CommandError,
    Triggers,
    TriggerValueError,
    check_template,
    parse_signal,
)
from .errors import (
    AccessDenied,
    AlreadyTraced,
    MinidumpError,
    PathError,
    ProcessNotFound,
    UnsupportedError,
)
from .flags import DumpType, MiniDumpType

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_PROCESS = 3
EXIT_TRACED = 4
EXIT_PERMISSION = 5
EXIT_TRIGGER_RANGE = 6
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130


def add_commands(sub: Any, dump_type_arg: Callable[[str], MiniDumpType],
                 pid_arg: Callable[[str], int]) -> None:
    """Add ``run`` and ``watch`` to the ``minidumpkit`` subparsers."""
    run = sub.add_parser(
        "run", help="start a command and dump it on a crash, a hang or another trigger",
        description="Start CMD traced from its first instruction and write a dump when a "
                    "trigger fires; end as CMD did (its exit code, or its signal).",
        usage="minidumpkit run [triggers] [dump options] -- CMD [ARGS...]")
    _add_options(run, dump_type_arg)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                     help="the command to run")
    watch = sub.add_parser(
        "watch", help="watch a running process and dump it when a trigger fires",
        description="Trace process PID and write a dump when a trigger fires; ends when "
                    "the process exits or COUNT dumps are written.")
    watch.add_argument("pid", metavar="PID", type=pid_arg, help="the process to watch")
    _add_options(watch, dump_type_arg)


def _add_options(parser: argparse.ArgumentParser,
                 dump_type_arg: Callable[[str], MiniDumpType]) -> None:
    t = parser.add_argument_group("triggers (any number; at least one)")
    t.add_argument("--on-crash", action="store_true",
                   help="a crash signal (SEGV BUS FPE ILL ABRT SYS TRAP) that will kill the "
                        "process: dumped before it is delivered")
    t.add_argument("--first-chance", action="store_true",
                   help="with --on-crash: also dump crash signals the program handles")
    t.add_argument("--on-hang", type=float, metavar="SECONDS",
                   help="every thread blocked in the same system call at the same pc, "
                        "without running, for SECONDS (an idle event loop counts: restrict "
                        "the threads or give a heartbeat); or threads waiting on locks for "
                        "SECONDS whose sampled dump shows a lock cycle")
    t.add_argument("--hang-threads", metavar="REGEX",
                   help="with --on-hang: only threads whose name matches REGEX count")
    t.add_argument("--heartbeat", metavar="FILE",
                   help="with --on-hang: hung when FILE's mtime has not advanced for SECONDS")
    t.add_argument("--signal", metavar="SIG",
                   help="dump when the process receives SIG (e.g. USR1); swallowed after the "
                        "dump unless the program handles it")
    t.add_argument("--cpu", type=float, metavar="PCT",
                   help="CPU use at least PCT percent of one CPU (as top shows) ...")
    t.add_argument("--for", dest="cpu_for", type=float, default=10.0, metavar="SECONDS",
                   help="... held for SECONDS (default 10)")
    t.add_argument("--memory", type=float, metavar="MB", help="resident memory reaches MB")
    t.add_argument("--threads", type=int, metavar="N", help="N threads or more")
    t.add_argument("--fds", type=int, metavar="N", help="N open file descriptors or more")
    t.add_argument("--timer", type=float, metavar="SECONDS",
                   help="a dump SECONDS after the watch began (then every --interval)")
    o = parser.add_argument_group("dumps")
    o.add_argument("--follow-children", action="store_true",
                   help="also watch every process it starts (fork, vfork, clone, exec), "
                        "and theirs, each with the same triggers; the watch lasts until "
                        "all have ended")
    o.add_argument("-n", dest="count", type=int, default=1, metavar="COUNT",
                   help="stop watching after COUNT dumps (default 1)")
    o.add_argument("--interval", type=float, metavar="SECONDS",
                   help="a trigger that fired waits SECONDS before it fires again (default: "
                        "--timer's period, else 5)")
    o.add_argument("--dir", default=".", metavar="DIR", help="where dumps go (default: here)")
    o.add_argument("--name", default=DEFAULT_NAME, metavar="TEMPLATE",
                   help=f"file name template, fields <comm> <pid> <time> <trigger> <n> "
                        f"(default {DEFAULT_NAME}; a taken name gets -2, -3, ...)")
    kind = o.add_mutually_exclusive_group()
    kind.add_argument("--mini", dest="type", action="store_const", const=DumpType.MINI,
                      help="DumpType.MINI (the default)")
    kind.add_argument("--triage", dest="type", action="store_const", const=DumpType.TRIAGE,
                      help="DumpType.TRIAGE")
    kind.add_argument("--full", dest="type", action="store_const", const=DumpType.FULL,
                      help="DumpType.FULL")
    kind.add_argument("--type", dest="type", type=dump_type_arg, metavar="NAME[,NAME...]",
                      help="any MiniDumpType combination")
    o.add_argument("--all-memory", action="store_true",
                   help="WithFullMemory copies every readable page (implies --full)")


def _triggers(args: argparse.Namespace) -> Triggers:
    if args.heartbeat is not None and not args.heartbeat:
        raise TriggerValueError("--heartbeat needs a file name")
    check_template(args.name)
    return Triggers(
        on_crash=args.on_crash, first_chance=args.first_chance, on_hang=args.on_hang,
        hang_threads=args.hang_threads, heartbeat=args.heartbeat,
        signal=parse_signal(args.signal) if args.signal is not None else None,
        cpu=args.cpu, cpu_for=args.cpu_for, memory_mb=args.memory, threads=args.threads,
        fds=args.fds, timer=args.timer, count=args.count, interval=args.interval,
        follow_children=args.follow_children)


def main(args: argparse.Namespace, *, err: TextIO) -> int:
    """Run ``run`` or ``watch`` from parsed arguments; returns the exit status."""
    if args.first_chance and not args.on_crash:
        return _fail(err, EXIT_USAGE, "--first-chance refines --on-crash: give both")
    try:
        triggers = _triggers(args)
    except TriggerValueError as exc:
        return _fail(err, EXIT_TRIGGER_RANGE, str(exc).replace("_", "-"))
    if not triggers.any:
        return _fail(err, EXIT_USAGE, "give at least one trigger: --on-crash, --on-hang, "
                     "--signal, --cpu, --memory, --threads, --fds or --timer")
    dump_type = args.type if args.type is not None else (
        DumpType.FULL if args.all_memory else DumpType.MINI)
    if args.all_memory and not dump_type & MiniDumpType.WithFullMemory:
        return _fail(err, EXIT_USAGE, "--all-memory widens WithFullMemory: use it with --full")
    if sys.platform == "win32":
        from .watch import _check_platform

        try:
            _check_platform(triggers)
        except UnsupportedError as exc:
            return _fail(err, EXIT_ERROR, str(exc).replace("_", "-"))
    elif not sys.platform.startswith("linux"):
        return _fail(err, EXIT_ERROR, f"{args.command} is implemented on Linux and Windows "
                     "only")

    def wrote(event: Any) -> None:
        print(f"minidumpkit: wrote {os.fspath(event.path)} ({event.trigger})", file=err,
              flush=True)

    def failed(exc: BaseException) -> None:
        print(f"minidumpkit: a dump failed: {exc}", file=err, flush=True)

    options: dict[str, Any] = {"directory": args.dir, "name": args.name, "type": dump_type,
                               "all_memory": args.all_memory, "on_dump": wrote,
                               "on_error": failed}
    if args.command == "run":
        return _run(args.argv, triggers, options, err)
    return _watch(args.pid, triggers, options, err)


def _interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP end the watch as Ctrl-C does: every thread is detached first
    (the kernel would detach them too if we just died, but a thread we held in a stop
    would lose the signal it was about to receive)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in _signals("SIGTERM", "SIGHUP"):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, interrupt)


def _signals(*names: str) -> list[int]:
    """The signals of ``names`` this platform has (Windows has no SIGHUP)."""
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def _fail(err: TextIO, status: int, message: str) -> int:
    print(f"minidumpkit: error: {message}", file=err, flush=True)
    return status


def _target_error(err: TextIO, exc: BaseException) -> int:
    if isinstance(exc, AlreadyTraced):
        return _fail(err, EXIT_TRACED, str(exc))
    if isinstance(exc, AccessDenied):
        return _fail(err, EXIT_PERMISSION, str(exc))
    if isinstance(exc, ProcessNotFound):
        return _fail(err, EXIT_NO_PROCESS, str(exc))
    if isinstance(exc, PathError):
        return _fail(err, EXIT_ERROR, str(exc))
    return _fail(err, EXIT_ERROR, str(exc))


def _watch(pid: int, triggers: Triggers, options: dict[str, Any], err: TextIO) -> int:
    from .watch import Watcher

    _interrupt_on_termination()
    try:
        watcher = Watcher(pid, triggers, **options)
        watcher.start()
    except (MinidumpError, OSError) as exc:
        return _target_error(err, exc)
    except KeyboardInterrupt:
        print(f"minidumpkit: interrupted; process {pid} released", file=err, flush=True)
        return EXIT_INTERRUPTED
    try:
        while not watcher.wait(0.2):
            pass
    except KeyboardInterrupt:
        watcher.stop()
        print(f"minidumpkit: interrupted; process {pid} released", file=err, flush=True)
        return EXIT_INTERRUPTED
    except MinidumpError as exc:
        watcher.stop()
        return _fail(err, EXIT_ERROR, str(exc))
    return 0


def _run(argv: list[str], triggers: Triggers, options: dict[str, Any], err: TextIO) -> int:
    from .watch import run

    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        return _fail(err, EXIT_USAGE, "no command given: minidumpkit run [triggers] -- CMD")
    found = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
    if found is None or not os.path.exists(found):
        return _fail(err, EXIT_NOT_FOUND, f"command not found: {argv[0]}")
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        return _fail(err, EXIT_NOT_EXECUTABLE, f"command not executable: {found}")
    child: list[int] = []
    # Ctrl-C, SIGTERM, SIGHUP: the loop stops between two events and detaches
    stop = threading.Event()
    previous = {}
    for sig in _signals("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    try:
        status = run(argv, triggers, on_start=child.append, should_stop=stop.is_set,
                     **options)
    except CommandError as exc:
        if exc.errno == errno.ENOENT:
            return _fail(err, EXIT_NOT_FOUND, f"command not found: {argv[0]}")
        return _fail(err, EXIT_NOT_EXECUTABLE, f"command not executable: {argv[0]}: "
                     f"{exc.strerror}")
    except (MinidumpError, OSError) as exc:
        return _target_error(err, exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status is None:  # interrupted: the child runs on, untraced
        pid = child[0]
        print(f"minidumpkit: interrupted; process {pid} released, waiting for it to end",
              file=err, flush=True)
        if sys.platform == "win32":  # the console sent Ctrl-C to the child too
            from ._backends._win_watch import wait_for_pid

            try:
                return wait_for_pid(pid)
            except (OSError, KeyboardInterrupt):
                return EXIT_INTERRUPTED
        try:
            if os.getpgid(pid) != os.getpgrp():  # else the terminal already sent it SIGINT
                os.kill(pid, signal.SIGINT)
            status = os.waitpid(pid, 0)[1]
        except (ProcessLookupError, ChildProcessError, KeyboardInterrupt):
            return EXIT_INTERRUPTED
    if sys.platform == "win32":
        return status  # the exit code itself (sys.exit takes 0xC0000005 as it is)
    return end_as(status)


def end_as(status: int) -> int:
    """The exit code for wait status ``status``; a death by signal is re-raised on us."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            import resource  # POSIX only: imported here so the CLI loads on Windows

            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(
                resource.RLIMIT_CORE)[1]))  # the child's core (if any) is the one that counts
            if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be changed
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
        except (OSError, ValueError):
            pass
        return 128 + sig
    return EXIT_ERROR
