"""One tracer per process: dump requests for a process a minidumpkit tracer holds go
through that tracer.

A process has at most one ptrace tracer. While ours holds a process (``enable_crash_dumps``,
``Watcher``), a second PTRACE_SEIZE by :func:`minidumpkit.dump` would fail, so the
tracer listens on a Unix socket and writes the dump itself, holding the threads it
already traces with PTRACE_INTERRUPT:

* the socket is in the abstract namespace, ``\\0minidumpkit-tracer-<tracer tid>`` (the
  tracing thread, which TracerPid names):
  nothing on disk, nothing left behind when the tracer dies, whatever kills it;
* a client finds it from the target's ``TracerPid`` (/proc/PID/status) and trusts it
  only if the peer's credentials (SO_PEERCRED) are that thread's process, running as our
  uid or root; the tracer serves only clients of its own uid or root (what ptrace
  itself would allow them);
* the request is one JSON line with the output file's descriptor attached
  (SCM_RIGHTS): the dump is written into the caller's file, which the caller opened
  and checked. The answer is one JSON line, the dump's figures or the error.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import IO, Any

from .. import errors
from ..flags import MiniDumpType
from . import _procfs

PREFIX = "minidumpkit-tracer-"
# Long enough for a dump held a while (a FULL dump of a big process), short enough that
# a tracer that stopped answering does not hang the caller for ever.
REQUEST_SECONDS = 600.0
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

WriteRequested = Callable[..., Any]
"""write(out, dump_type, all_memory, requesting_tid, python, pid=PID) -> DumpTimes-like
(threads, stop_ns, pause_ns attributes): a dump of process PID, which the tracer must
trace (it raises otherwise)."""


def address(tracer_pid: int) -> str:
    return f"\0{PREFIX}{tracer_pid}"


def _peer(sock: socket.socket) -> tuple[int, int, int]:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    return pid, uid, gid


def tracer_pid(pid: int) -> int:
    """The TracerPid of ``pid``'s main thread (0: not traced)."""
    status = _procfs.parse_status(_procfs.read_text(f"/proc/{pid}/status", pid))
    return int(status.get("TracerPid", "0") or 0)


def connect(pid: int, tracer: int | None = None) -> socket.socket | None:
    """A connection to the minidumpkit tracer that holds ``pid``, or None when ``pid`` is
    untraced or traced by something else (gdb, strace: nothing answers, or not as
    that process)."""
    if tracer is None:
        try:
            tracer = tracer_pid(pid)
        except errors.ProcessError:
            return None
    if not tracer:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(address(tracer))
        peer_pid, peer_uid, _ = _peer(sock)
    except OSError:
        sock.close()
        return None
    if peer_pid != _tgid(tracer) or peer_uid not in (os.geteuid(), 0):
        sock.close()  # not the process that traces it: someone else's name
        return None
    if peer_pid == os.getpid():
        # our own tracer: the request would wait for an answer only this process can
        # give (found in review: a watchdog dumping a child it had not adopted yet)
        sock.close()
        return None
    return sock


def _tgid(tid: int) -> int:
    """The process of thread ``tid`` (TracerPid names the tracing thread)."""
    try:
        status = _procfs.parse_status(_procfs.read_text(f"/proc/{tid}/status", tid))
        return int(status.get("Tgid", "0") or 0)
    except (errors.ProcessError, ValueError):
        return 0


def held_by_us(pid: int, tracer: int | None = None) -> bool:
    """Whether ``pid`` is traced by a minidumpkit tracer that answers dump requests."""
    sock = connect(pid, tracer)
    if sock is None:
        return False
    sock.close()
    return True


def request_dump(sock: socket.socket, pid: int, out: IO[bytes], dump_type: MiniDumpType,
                 *, all_memory: bool = False, requesting_tid: int | None = None,
                 python: bool = True) -> dict[str, Any]:
    """Ask the tracer on ``sock`` (from :func:`connect`) to write a dump of ``pid`` into
    ``out``; returns its figures (threads, stop_ns, pause_ns) or raises its error."""
    out.flush()
    request = {"dump": pid, "type": int(dump_type), "all_memory": bool(all_memory),
               "requesting_tid": requesting_tid, "python": bool(python)}
    with sock:
        sock.settimeout(REQUEST_SECONDS)
        try:
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [out.fileno()])
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            raise errors.ProcessError(errno.ETIMEDOUT, f"the minidumpkit tracer of process "
                                      f"{pid} did not answer in {REQUEST_SECONDS:g} s",
                                      pid=pid) from None
        except OSError as exc:
            raise errors.ProcessError(exc.errno or errno.EIO, f"the minidumpkit tracer of "
                                      f"process {pid} failed to take the request: {exc}",
                                      pid=pid) from None
    try:
        answer = json.loads(reply)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise errors.ProcessError(errno.EIO, f"the minidumpkit tracer of process {pid} "
                                  "ended without an answer", pid=pid)
    if "error" in answer:
        raise rebuild(answer, pid)
    out.seek(0, os.SEEK_END)
    return answer


def rebuild(report: dict[str, Any], pid: int) -> BaseException:
    """The exception a helper described as {"error": class name, "message", "errno"}."""
    name, message = str(report.get("error")), str(report.get("message", ""))
    cls = getattr(errors, name, None)
    code = report.get("errno")
    code = code if isinstance(code, int) else errno.EIO
    if isinstance(cls, type) and issubclass(cls, errors.ProcessError):
        return cls(code, message, pid=pid)
    if isinstance(cls, type) and issubclass(cls, errors.InvalidTargetError):
        return cls(message, pid=pid)
    if isinstance(cls, type) and issubclass(cls, errors.MinidumpError) \
            and not issubclass(cls, OSError):
        return cls(message)
    return errors.ProcessError(code, f"the minidumpkit tracer failed: {name}: {message}",
                               pid=pid)


def describe(exc: BaseException) -> dict[str, Any]:
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return {"error": type(exc).__name__, "message": message,
            "errno": getattr(exc, "errno", None)}


class TracerServer:
    """The tracer's side: listens at ``address(tid of the calling thread)``, the
    TracerPid its tracees show (create it on the tracing thread); :meth:`serve` answers
    the requests waiting (call it when :meth:`fileno` is readable, from that thread).
    A request may name any process the tracer traces (``pid``, or one it follows): the
    writer refuses the others."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid = pid
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.bind(address(threading.get_native_id()))
            self._sock.listen(8)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def serve(self, write: WriteRequested) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            with conn:
                try:
                    self._answer(conn, write)
                except (OSError, ValueError, KeyError, TypeError):
                    pass  # the client went away, or it was no request: hang up

    def _answer(self, conn: socket.socket, write: WriteRequested) -> None:
        conn.setblocking(True)
        conn.settimeout(5.0)  # a request is one short line, sent at once
        _, peer_uid, _ = _peer(conn)
        if peer_uid not in (os.geteuid(), 0):
            return
        data, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        try:
            if not data:
                return  # a probe (held_by_us): connected and hung up
            request = json.loads(data)
            target = request.get("dump") if isinstance(request, dict) else None
            if not fds or not isinstance(target, int) or isinstance(target, bool) \
                    or target <= 0:
                return  # not a request we know: hang up
            with os.fdopen(fds.pop(), "r+b") as out:
                try:
                    tid = request.get("requesting_tid")
                    times = write(out, MiniDumpType(int(request["type"])),
                                  bool(request.get("all_memory")),
                                  tid if isinstance(tid, int) else None,
                                  request.get("python") is not False, pid=target)
                    out.flush()
                    answer = {name: getattr(times, name, 0)
                              for name in ("threads", "stop_ns", "pause_ns")}
                except Exception as exc:  # noqa: BLE001  the client re-raises it
                    answer = describe(exc)
            conn.settimeout(5.0)
            conn.sendall(json.dumps(answer, default=str).encode() + b"\n")
        finally:
            for fd in fds:
                os.close(fd)
