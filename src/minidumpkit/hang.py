"""Dump a process that has not finished in time: :func:`dump_on_hang`.

    import subprocess, minidumpkit as mdk
    proc = subprocess.Popen(["./server", "--selftest"])
    with mdk.dump_on_hang(proc, timeout=60, directory="dumps") as hang:
        proc.wait()
    print(hang.dumps)        # [] if it finished in time

The deadline is watched by a watchdog process (``python -m minidumpkit._watchdog``),
not a thread of the caller: it fires even while the caller is stuck in native code
that holds the GIL. See docs/harness.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from . import _output
from .errors import ProcessError, ProcessNotFound, UnsupportedError
from .flags import DumpType, MiniDumpType, coerce_dump_type

__all__ = ["HangDump", "dump_on_hang"]

StrPath = str | os.PathLike[str]


class WatchdogProcess:
    """The owner's end of one ``minidumpkit._watchdog`` process (see its module doc)."""

    def __init__(self, config: dict[str, Any], *, stderr: IO[str] | int | None = None) -> None:
        from ._backends._selfdump import _package_root

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(),
                                                          env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minidumpkit._watchdog", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
            bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout
        self.events: list[dict[str, Any]] = []
        try:
            first = self._read()
        except BaseException:
            self.close(kill=True)
            raise
        if first is None or "ready" not in first:
            self.close(kill=True)
            raise ProcessError(5, "the minidumpkit watchdog did not start")
        self.pid = int(first["ready"])

    def send(self, message: dict[str, Any]) -> None:
        """One command; a single write(2) below PIPE_BUF, so it is never interleaved
        with another (a signal handler's ack)."""
        os.write(self._in, (json.dumps(message) + "\n").encode())

    def _read(self) -> dict[str, Any] | None:
        line = self._out.readline()
        if not line:
            return None
        try:
            value = json.loads(line)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def read_until(self, key: str, field: str) -> dict[str, Any] | None:
        """Read events (kept in :attr:`events`) until ``{field: key}``; None if the
        watchdog ended first."""
        while True:
            event = self._read()
            if event is None:
                return None
            if event.get(field) == key:
                return event
            self.events.append(event)

    def stop(self, key: str) -> tuple[bool, list[dict[str, Any]]]:
        """Disarm ``key``; (whether it fired, its ``fired`` events)."""
        try:
            self.send({"stop": key})
        except OSError:
            return False, self.take(key)
        reply = self.read_until(key, "stopped")
        return bool(reply and reply.get("fired")), self.take(key)

    def take(self, key: str) -> list[dict[str, Any]]:
        mine = [e for e in self.events if e.get("fired") == key]
        self.events = [e for e in self.events if e.get("fired") != key]
        return mine

    def poll(self) -> None:
        """Read the events already written (kept in :attr:`events`), without waiting."""
        import select

        fd = self._out.fileno()
        while select.select([fd], [], [], 0)[0]:
            event = self._read()
            if event is None:
                return
            self.events.append(event)

    def take_crashes(self) -> list[dict[str, Any]]:
        """The ``crashed`` events read so far (descendants that died of a signal)."""
        mine = [e for e in self.events if "crashed" in e]
        self.events = [e for e in self.events if "crashed" not in e]
        return mine

    def close(self, *, kill: bool = False, timeout: float = 30.0) -> None:
        """End the watchdog: the end of its stdin tells it to go (after a dump in
        progress); SIGKILL if it does not within ``timeout`` (or at once with ``kill``)."""
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if kill and proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # the kernel detaches what a dead tracer held
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


class HangDump:
    """What :func:`dump_on_hang` returns: after the block, :attr:`dumps` holds the dumps
    written (the target's first, then its descendants'), empty if it finished in
    time; :attr:`fired` says whether the deadline passed; :attr:`errors` the processes
    that could not be dumped and why; :attr:`summaries` {path: lines} each dump's
    threads (top native and Python frames, what each waits for) and lock verdict."""

    def __init__(self, pid: int, timeout: float, directory: str, dump_type: MiniDumpType,
                 descendants: bool, name: str) -> None:
        self.pid = pid
        self.timeout = timeout
        self.directory = directory
        self._config = {"target": pid, "directory": directory, "type": int(dump_type),
                        "descendants": descendants, "label": name, "summary": True}
        self._key = name
        self._watchdog: WatchdogProcess | None = None
        self.fired = False
        self.dumps: list[Path] = []
        self.errors: list[str] = []
        self.summaries: dict[Path, list[str]] = {}

    def __repr__(self) -> str:
        return f"<HangDump pid={self.pid} timeout={self.timeout:g} dumps={len(self.dumps)}>"

    def __enter__(self) -> HangDump:
        if self._watchdog is not None:
            raise RuntimeError("this dump_on_hang was already entered")
        self._watchdog = WatchdogProcess(self._config)
        try:
            self._watchdog.send({"start": self._key, "timeout": self.timeout})
        except BaseException:
            self._watchdog.close(kill=True)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        watchdog = self._watchdog
        if watchdog is None:
            return
        try:
            self.fired, events = watchdog.stop(self._key)
        except BaseException:
            watchdog.close(kill=False)  # interrupted: it still ends after its dump
            raise
        watchdog.close()
        for event in events:
            for entry in event.get("dumps", ()):
                path = Path(entry["path"])
                self.dumps.append(path)
                self.summaries[path] = list(entry.get("summary", ()))
            self.errors += list(event.get("errors", ()))


def dump_on_hang(target: int | subprocess.Popen[Any], timeout: float,
                 directory: StrPath = ".", *, type: int | MiniDumpType = DumpType.MINI,
                 descendants: bool = True, name: str = "hang") -> HangDump:
    """A context manager: if its block has not finished ``timeout`` seconds after it
    began, dump ``target`` (a pid or a ``subprocess.Popen``) and, with ``descendants``,
    every process below it (from /proc, at that moment) into ``directory``, as
    ``<name>_<pid>_<comm>_timeout.dmp``.

    The watchdog is a process of its own: it fires however stuck the caller is. The
    block is not interrupted and the target not killed: the dumps are taken (each
    process paused only while it is written) and the block goes on. When the block
    ends the watchdog ends too (after a dump in progress, so none is left half
    written), also on an exception or KeyboardInterrupt. The returned
    :class:`HangDump` lists the dumps after the block. Linux only so far."""
    if not sys.platform.startswith("linux"):
        raise UnsupportedError(f"dump_on_hang is implemented on Linux only so far, not on "
                               f"{sys.platform!r}")
    pid = target.pid if isinstance(target, subprocess.Popen) else target
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"target must be a pid or a subprocess.Popen, not "
                        f"{target.__class__.__name__}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            not 0 < timeout <= 10 * 365 * 86400:
        raise ValueError(f"timeout must be a number of seconds above 0, not {timeout!r}")
    if not os.path.exists(f"/proc/{pid}"):
        raise ProcessNotFound(3, f"no process {pid}", pid=pid)
    directory = os.path.abspath(os.fspath(directory))
    _output.check(os.path.join(directory, "probe.dmp"), overwrite=False, numbered=True)
    return HangDump(pid, float(timeout), directory, coerce_dump_type(type), descendants,
                    name)

