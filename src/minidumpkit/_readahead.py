"""Read the next chunk of process memory while the writer writes the current one.

A full-memory dump is a loop of two system calls that each take about half the time:
read a chunk from the process (process_vm_readv, or /proc/PID/mem of a snapshot's
clone) and write it to the file. Both release the GIL, so one worker thread reading
ahead into a second buffer overlaps them: the copy runs at the speed of the slower of
the two instead of their sum. With a stopped target that shortens the pause; with a
snapshot it shortens the time its clone holds the target's pages (docs/snapshots.md).

Only reading happens on the worker: a memory source's ``read_into`` must work from
any thread (process_vm_readv and /proc/PID/mem do; ptrace requests would not, and no
source reads with them). Callbacks, progress and the file stay on the caller's thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["ReadAhead"]

ReadInto = Callable[[int, int, bytearray], int]


class ReadAhead:
    """One worker and two buffers of ``chunk`` bytes: while the caller holds the
    buffer it last :meth:`take`-n, the worker fills the other one.

    At most one read is in flight; :meth:`settle` waits for it, and must be called
    before the memory source is closed (a read must never outlive its descriptor).
    """

    def __init__(self, read_into: ReadInto, chunk: int) -> None:
        # 20 ms to import: only when a dump needs it
        from concurrent.futures import ThreadPoolExecutor

        self._read_into = read_into
        self._buffers = (bytearray(chunk), bytearray(chunk))
        self._next = 0  # the buffer the next read fills
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="minidumpkit-read")
        # the read in flight, or the size read at once when no thread could be started
        self._pending: Future[int] | int | None = None

    def submit(self, address: int, size: int) -> None:
        """Start reading ``size`` bytes at ``address`` into the buffer not held."""
        assert self._pending is None, "one read at a time"
        buffer = self._buffers[self._next]
        if self._pool is not None:
            try:
                self._pending = self._pool.submit(self._read_into, address, size, buffer)
                return
            except RuntimeError:
                # no thread could be started (RLIMIT_NPROC, interpreter shutting down):
                # the dump goes on, reading in turn as without read-ahead
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        self._pending = self._read_into(address, size, buffer)  # its errors: raised now

    def take(self) -> memoryview:
        """The submitted read's bytes (its readable prefix); its errors are raised here
        (by :meth:`submit` itself when reading in turn). The view stays valid until the
        next :meth:`take`."""
        pending = self._pending
        assert pending is not None, "take() without submit()"
        try:
            size = pending if isinstance(pending, int) else pending.result()
        except Exception:
            self._pending = None  # over: its error is the caller's now
            raise
        # (interrupted while waiting, the read stays pending for settle() to wait for)
        self._pending = None
        buffer = self._buffers[self._next]
        self._next ^= 1
        return memoryview(buffer)[:size]

    def settle(self) -> None:
        """Wait for a read still in flight; its result and errors are dropped (the
        caller is leaving, usually on an error of its own)."""
        pending, self._pending = self._pending, None
        if pending is None or isinstance(pending, int):
            return
        interrupted: KeyboardInterrupt | SystemExit | None = None
        while True:  # the read is one chunk: short, and it must be over before we go
            try:
                with contextlib.suppress(Exception):
                    pending.result()
                break
            except (KeyboardInterrupt, SystemExit) as exc:  # re-raised once it is over
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def close(self) -> None:
        self.settle()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
