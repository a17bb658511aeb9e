"""The out-of-process watchdog behind :func:`minidumpkit.dump_on_hang` and the pytest plugin.

``python -m minidumpkit._watchdog CONFIG_JSON`` watches one process (the target) from
outside it. Its owner arms and disarms deadlines over the watchdog's stdin, one JSON
object a line:

* ``{"start": KEY, "timeout": SECONDS}``: arm KEY (a pytest nodeid, or ``"block"``);
  ``timeout`` null arms nothing but names the work in progress (crash records);
* ``{"stop": KEY}``: disarm; answered ``{"stopped": KEY, "fired": BOOL}`` (after the
  ``fired`` line, when KEY fired);
* ``{"ack": KEY}``: the target answered the interrupt signal (it runs Python again).

When KEY's deadline passes, the target and (``descendants``) every process below it are
dumped, the dumps are summarised (each thread's top native and Python frames and the
lock verdict, from our reader), and ``{"fired": KEY, "dumps": [...], "errors": [...]}``
is written on stdout. With ``interrupt`` the target is then sent that signal; when no
``ack`` (or ``stop``) comes within ``grace`` seconds, the target and its descendants are
killed (SIGKILL), a one-line report goes to stderr and a JSON record to
``record_dir``, and the watchdog exits.

With ``crash`` the target and every process it starts are traced
(:class:`~._backends._linux_watch.LinuxWatch`, ``on_crash``, ``follow_children``): a
crash signal that will kill one of them is dumped where it happened. The target's crash
is recorded (stderr, ``record_dir``); a descendant's is said on stdout,
``{"crashed": KEY, "pid", "comm", "signal", "dumps": [...]}`` (KEY: the work in
progress, or null), and in one line on stderr. The timeout dumps of the traced
processes are taken through that same tracer, and so are dump requests of other
processes for them (:class:`~._backends._tracer_socket.TracerServer`).

The end of stdin (the owner exited or closed it), a new parent, SIGTERM or SIGHUP end
the watchdog once the dump in progress, if any, is written; SIGINT is ignored (Ctrl-C
reaches the whole foreground group: the owner decides). A traced target is detached on
every way out.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import MinidumpError

if TYPE_CHECKING:
    from .analysis.stackwalk import Frame

# How long the loop sleeps at most between two looks at the parent.
POLL_SECONDS = 0.25
# Native frames shown per thread in a summary line.
TOP_NATIVE = 3


# --- the process tree ---------------------------------------------------------------

def descendants(pid: int, *, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Every process below ``pid`` (children first, breadth first), from
    /proc/PID/task/TID/children, else from the parent field of every /proc/PID/stat."""
    found: list[int] = []
    queue = [pid]
    seen = {pid}
    parents: dict[int, list[int]] | None = None
    while queue:
        parent = queue.pop(0)
        kids = _children(parent)
        if kids is None:
            if parents is None:
                parents = _all_parents()
            kids = parents.get(parent, [])
        for kid in kids:
            if kid not in seen and kid not in exclude:
                seen.add(kid)
                found.append(kid)
                queue.append(kid)
    return found


def _children(pid: int) -> list[int] | None:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            if tid == str(pid):
                return None  # a kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return kids


def _all_parents() -> dict[int, list[int]]:
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(name))
    return parents


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "process"


def slug(text: str, limit: int = 80) -> str:
    """``tests/test_x.py::test_y[1]`` -> ``test_x.py-test_y-1`` (a file-name part)."""
    text = text.rsplit("/", 1)[-1]
    text = re.sub(r"[^A-Za-z0-9._+-]+", "-", text.replace("::", "-")).strip("-.")
    return text[:limit] or "dump"


def unique_path(directory: str, stem: str) -> str:
    path = os.path.join(directory, stem + ".dmp")
    n = 2
    while os.path.lexists(path):
        path = os.path.join(directory, f"{stem}-{n}.dmp")
        n += 1
    return path


def dump_process(pid: int, path: str, dump_type: int) -> Path:
    """A dump of ``pid`` from a VA-clone snapshot where the target allows one: the
    target is paused only for the clone, and the Python walk of the writer gets the
    snapshot's budget instead of the few milliseconds of a held process (a pytest
    process of many threads and frames needs it). Else a stop-and-dump."""
    from .dumper import dump
    from .errors import UnsupportedError
    from .snapshot import SnapshotRefused

    try:
        return dump(pid, path, dump_type, overwrite=False, snapshot="always")
    except (SnapshotRefused, UnsupportedError):
        return dump(pid, path, dump_type, overwrite=False)


# --- what a dump says ---------------------------------------------------------------

def _frame_words(frame: Frame) -> str:
    if frame.function:
        offset = frame.function_offset
        return frame.function + (f"+0x{offset:x}" if offset else "")
    if frame.module and frame.module_offset is not None:
        return f"{os.path.basename(frame.module)}+0x{frame.module_offset:x}"
    return f"0x{frame.pc:x}"


def summarize(path: str | os.PathLike[str]) -> list[str]:
    """The lock verdict, then one line per thread: its top native frames (innermost
    first), its top Python frame and what it waits for; from our reader alone."""
    from .analysis import python_stacks, walk_stacks
    from .analysis.deadlocks import wait_graph
    from .reader import open_minidump

    lines: list[str] = []
    with open_minidump(path) as dump:
        stacks = walk_stacks(dump)
        try:
            graph = wait_graph(dump, frames={s.thread_id: s.frames for s in stacks})
        except MinidumpError as exc:
            graph = None
            lines.append(f"locks: not analysed ({exc})")
        if graph is not None:
            lines += graph.verdict()
            lines += [f"chain: {c}" for c in graph.chains]
        try:
            runtime = python_stacks(dump)
            python = {t.os_thread_id: t for t in runtime.threads}
        except MinidumpError:
            python = {}
        names = {} if graph is None else {tid: w.name for tid, w in graph.waits.items()}
        exception = dump.exception
        crashed = exception.thread_id if exception is not None and \
            not exception.requested else None
        for stack in stacks:
            tid = stack.thread_id
            mark = " crashed" if tid == crashed else ""
            frames = list(stack.frames)
            if tid == crashed:  # a handler re-raised it (faulthandler): show the fault
                handler = [i for i, f in enumerate(frames) if f.function == "__restore_rt"]
                if handler and handler[0] + 1 < len(frames):
                    frames = frames[handler[0] + 1:]
                    mark += " (at the fault, under its signal handler)"
            native = " < ".join(_frame_words(f) for f in frames[:TOP_NATIVE]) \
                or f"(no frames: {stack.status})"
            parts = [f'thread {tid} "{stack.thread_name or ""}"{mark}: {native}']
            pythread = python.get(tid)
            if pythread is not None and pythread.frames:
                top = pythread.frames[0]
                parts.append(f"Python {top.qualname} ({top.filename}:{top.line})")
            wait = None if graph is None else graph.waits.get(tid)
            if wait is not None:
                parts.append(f"waits {wait.phrase(names)}")
            lines.append("  " + "; ".join(parts))
    return lines


# --- the watchdog -------------------------------------------------------------------

class Watchdog:
    """The watchdog's state: what is armed, when, and what fired. ``step()`` does one
    round of work; it blocks at most ``block`` seconds."""

    def __init__(self, config: dict[str, Any], out: IO[str], err: IO[str]) -> None:
        self.target = int(config["target"])
        self.directory = os.path.abspath(str(config.get("directory", ".")))
        self.type = int(config.get("type", 0))
        self.with_descendants = bool(config.get("descendants", True))
        self.interrupt = config.get("interrupt")
        self.grace = float(config.get("grace", 5.0))
        self.record_dir = config.get("record_dir")
        self.summary = bool(config.get("summary", True))
        self.label = str(config.get("label", "watchdog"))
        self.out, self.err = out, err
        self.parent = os.getppid()
        self.deadlines: dict[str, tuple[float, float]] = {}  # key: (deadline, timeout)
        self.current: str | None = None  # the last key started (crash records name it)
        self.fired: set[str] = set()
        self.awaiting: tuple[str, float, list[dict[str, Any]]] | None = None
        self.stopping = False
        self.done = False
        self.exit_code = 0
        self._buffer = b""
        self._unsent = bytearray()  # said, not yet written to the owner (flush_out)
        # crash mode: (trigger, path, pid) -> the path written, None if not traced
        self.held_dump: Callable[[str, str, int], str | None] | None = None

    # -- I/O --
    def say(self, message: dict[str, Any]) -> None:
        self._unsent += (json.dumps(message) + "\n").encode()
        self.flush_out(block=False)

    def flush_out(self, *, block: bool) -> None:
        """Write what waits for the owner. Never blocks unless ``block``: a message is
        often said while a process is held (a crash record), and a pipe the owner has
        not read for a while is full (found in review: a test crashing many
        subprocesses would have held the last one until the owner read)."""
        try:
            fd = self.out.fileno()
            while self._unsent:
                if not block and not select.select([], [fd], [], 0)[1]:
                    return
                # a writable pipe has room for a page: this write does not block
                sent = os.write(fd, self._unsent[:4096])
                del self._unsent[:sent]
        except InterruptedError:
            return
        except (OSError, ValueError):
            self._unsent.clear()
            self.stopping = True

    def _commands(self, block: float) -> list[dict[str, Any]]:
        try:
            ready = select.select([sys.stdin.fileno()], [], [], max(0.0, block))[0]
        except InterruptedError:
            return []
        if not ready:
            return []
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            self.stopping = True  # our owner is gone, or done
            return []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        found = []
        for line in lines:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
        return found

    # -- one round --
    def step(self, block: float) -> None:
        self.flush_out(block=False)
        now = time.monotonic()
        waits = [d for d, _ in self.deadlines.values()]
        if self.awaiting is not None:
            waits.append(self.awaiting[1])
        limit = min([block, POLL_SECONDS] + [max(0.0, w - now) for w in waits])
        for command in self._commands(limit):
            self._handle(command)
        if os.getppid() != self.parent:
            self.stopping = True
        now = time.monotonic()
        if self.awaiting is not None and now >= self.awaiting[1]:
            key, _, dumps = self.awaiting
            self.awaiting = None
            self._kill(key, dumps)
            return
        for key, (deadline, timeout) in list(self.deadlines.items()):
            if now >= deadline and not self.done:
                del self.deadlines[key]
                self._fire(key, timeout)

    def _handle(self, command: dict[str, Any]) -> None:
        if "start" in command:
            key = str(command["start"])
            self.current = key
            timeout = command.get("timeout")
            if timeout is not None:
                self.deadlines[key] = (time.monotonic() + float(timeout), float(timeout))
        elif "stop" in command:
            key = str(command["stop"])
            self.deadlines.pop(key, None)
            if self.awaiting is not None and self.awaiting[0] == key:
                self.awaiting = None  # it finished by itself: answer enough
            if self.current == key:
                self.current = None
            self.say({"stopped": key, "fired": key in self.fired})
            self.fired.discard(key)
        elif "ack" in command:
            if self.awaiting is not None and self.awaiting[0] == str(command["ack"]):
                self.awaiting = None

    # -- firing --
    def _fire(self, key: str, timeout: float) -> None:
        self.fired.add(key)
        dumps, errors = self.dump_tree(key, "timeout")
        self.say({"fired": key, "timeout": timeout, "dumps": dumps, "errors": errors})
        if self.interrupt:
            try:
                _tgkill(self.target, self.target, int(self.interrupt))
            except ProcessLookupError:
                return
            self.awaiting = (key, time.monotonic() + self.grace, dumps)

    def dump_tree(self, key: str, trigger: str) -> tuple[list[dict[str, Any]], list[str]]:
        pids = [self.target]
        if self.with_descendants:
            pids += descendants(self.target, exclude=frozenset({os.getpid()}))
        dumps: list[dict[str, Any]] = []
        errors: list[str] = []
        for pid in pids:
            comm = comm_of(pid)
            path = unique_path(self.directory, f"{slug(key)}_{pid}_{slug(comm, 20)}_{trigger}")
            try:
                written = None if self.held_dump is None else \
                    self.held_dump(trigger, path, pid)
                if written is None:
                    written = os.fspath(dump_process(pid, path, self.type))
            except (MinidumpError, OSError) as exc:
                errors.append(f"pid {pid} ({comm}) not dumped: {exc}")
                continue
            dumps.append(self._described(pid, comm, written))
        return dumps, errors

    def _described(self, pid: int, comm: str, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"pid": pid, "comm": comm, "path": path, "summary": []}
        if self.summary:
            try:
                entry["summary"] = summarize(path)
            except Exception as exc:  # noqa: BLE001  the dump is kept; say why no summary
                entry["summary"] = [f"(not summarised: {type(exc).__name__}: {exc})"]
        return entry

    def _kill(self, key: str, dumps: list[dict[str, Any]]) -> None:
        """The target did not answer the interrupt: kill it and what runs below it."""
        victims = [self.target] + descendants(self.target, exclude=frozenset({os.getpid()}))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.record(key, "killed", dumps,
                    f"{self.label}: {key} did not answer the timeout in {self.grace:g} s "
                    f"(native code holding the GIL?): killed pid {self.target}")
        self.done = True
        self.exit_code = 0

    def record(self, key: str | None, what: str, dumps: list[dict[str, Any]],
               line: str) -> None:
        paths = " ".join(d["path"] for d in dumps) or "none"
        try:
            self.err.write(f"{line}; dumps: {paths}\n")
            self.err.flush()
        except (OSError, ValueError):
            pass
        if self.record_dir:
            record = {"nodeid": key, "what": what, "pid": self.target, "dumps": dumps,
                      "line": line}
            try:
                os.makedirs(self.record_dir, exist_ok=True)
                path = os.path.join(self.record_dir, f"{what}-{self.target}.json")
                with open(path + ".part", "w", encoding="utf-8") as f:
                    json.dump(record, f)
                os.replace(path + ".part", path)
            except OSError:
                pass


def _tgkill(tgid: int, tid: int, sig: int) -> None:
    """Signal thread ``tid`` of ``tgid`` (the main thread: where Python runs handlers)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(234, tgid, tid, sig) == -1:  # SYS_tgkill on x86_64
        err = ctypes.get_errno()
        if err == 3:
            raise ProcessLookupError(err, os.strerror(err))
        os.kill(tgid, sig)


def _run_plain(dog: Watchdog) -> None:
    while not dog.stopping and not dog.done:
        dog.step(POLL_SECONDS)


def _run_traced(dog: Watchdog) -> None:
    """Crash mode: trace the target and every process it starts (follow_children); the
    watchdog's rounds run between two ptrace events. Dump requests for the processes
    traced (dump(), the plugin's ``minidump`` fixture) are served by this tracer."""
    from . import _output
    from ._backends._linux_watch import ChildWakeup, LinuxWatch
    from ._backends._tracer_socket import TracerServer
    from ._triggers import Triggers
    from .flags import MiniDumpType

    pending: dict[str, str] = {}  # the path the next held dump goes to

    def on_dump(trigger: str, write: Callable[[IO[bytes], MiniDumpType, bool], object]) -> None:
        pid = int(getattr(write, "pid", dog.target))
        comm = comm_of(pid)
        if trigger == "crash" or "path" not in pending:
            key = dog.current or dog.label
            path = unique_path(dog.directory, f"{slug(key)}_{pid}_{slug(comm, 20)}_crash")
        else:
            path = pending.pop("path")
        dest = _output.check(path, overwrite=False)
        with _output.open_output(dest) as out:
            write(out, MiniDumpType(dog.type), False)
        written = dest.written or dest.path
        pending["written"] = written
        if trigger != "crash":
            return
        # said while the process is held: before anyone (xdist's controller, the test
        # that waits for its child) can see it die and look for the record
        entry = dog._described(pid, comm, written)
        name = _signal_name(written)
        if pid == dog.target:
            dog.record(dog.current, "crashed", [entry],
                       f"{dog.label}: {dog.current or 'pid ' + str(dog.target)} crashed: "
                       f"pid {dog.target} dies of {name}")
            return
        during = dog.current or "between two tests"
        dog.say({"crashed": dog.current, "pid": pid, "comm": comm, "signal": name,
                 "dumps": [entry]})
        try:
            dog.err.write(f"{dog.label}: {during}: pid {pid} ({comm}), a descendant of pid "
                          f"{dog.target}, dies of {name}; dump: {written}\n")
            dog.err.flush()
        except (OSError, ValueError):
            pass

    def on_dump_error(exc: BaseException) -> None:
        # a crash dump that fails (a full disk, a vanished process) is reported, and the
        # watch goes on: the rest of the session keeps its crash and timeout cover
        dog.say({"error": f"a crash dump failed: {type(exc).__name__}: {exc}"})

    watch = LinuxWatch(dog.target, Triggers(on_crash=True, count=1 << 31, interval=0,
                                            follow_children=True),
                       on_dump, reap_leader=True, on_error=on_dump_error)

    def held_dump(trigger: str, path: str, pid: int) -> str | None:
        if not watch.traces(pid):
            return None  # not ours: dumped as any process
        pending["path"] = path
        pending.pop("written", None)
        watch._dump(trigger, pid, always=True)
        pending.pop("path", None)
        written = pending.pop("written", None)
        if written is None:
            raise MinidumpError(f"process {pid} was not dumped (it exited?)")
        return written

    dog.held_dump = held_dump
    try:
        server: TracerServer | None = TracerServer(dog.target)  # on the tracing thread
    except OSError:
        server = None  # dump requests then fail as AlreadyTraced; the rest works
    try:
        try:
            watch.attach()
        except (MinidumpError, OSError) as exc:
            dog.say({"error": f"cannot watch pid {dog.target} for crashes: {exc}"})
            dog.held_dump = None
            _run_plain(dog)
            return
        dog.say({"traced": True})

        def should_stop() -> bool:
            dog.step(0.0)
            return dog.stopping or dog.done

        # woken at once by each ptrace report (SIGCHLD), a command on stdin or a dump
        # request: a test's subprocess is not slowed down by a poll
        handlers: dict[int, Callable[[], object]] = {sys.stdin.fileno(): lambda: None}
        if server is not None:
            tracer = server
            handlers[tracer.fileno()] = lambda: tracer.serve(watch.write_requested)
        watch.run(should_stop, ChildWakeup(handlers))
    finally:
        if server is not None:
            server.close()


def _signal_name(path: str) -> str:
    """The crash signal a dump's exception stream names."""
    from .reader import open_minidump

    try:
        with open_minidump(path) as dump:
            code = dump.exception.code if dump.exception is not None else 0
        return signal.Signals(code).name
    except (MinidumpError, OSError, ValueError):
        return "a crash signal"


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])

    def on_term(signum: int, frame: object) -> None:
        dog.stopping = True  # after the dump in progress

    dog = Watchdog(config, sys.stdout, sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)
    dog.say({"ready": os.getpid()})
    if config.get("crash"):
        _run_traced(dog)
    else:
        _run_plain(dog)
    dog.flush_out(block=True)
    return dog.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
