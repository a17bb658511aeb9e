"""A one-line progress bar on stderr, fed by :meth:`DumpCallbacks.progress`.

Three ways to use it::

    dumper.write("app.dmp", callbacks=ProgressBar())            # on its own

    class Mine(ProgressBar):                                    # as a base / mixin
        def include_thread(self, thread): ...

    dumper.write("app.dmp", callbacks=ProgressBar.wrap(mine))   # around other callbacks

It draws only when its stream is a terminal (``force=True`` draws anyway), redraws
at most every ``interval`` seconds (the first and the final state are always
drawn) and ends its line with a newline when the total is reached or when it is
closed (``with ProgressBar() as bar`` closes it, so a cancelled or failed dump
does not leave the cursor at the end of a half-drawn bar).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self, TextIO

from .callbacks import CallbackModule, CallbackThread, DumpCallbacks, VmRegion
from .flags import ModuleWriteFlags, ThreadWriteFlags

__all__ = ["ProgressBar", "format_bytes"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB`` ..."""
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class ProgressBar(DumpCallbacks):
    """Draws ``label [#####.....]  42%  12.0 MiB / 28.5 MiB`` on one line.

    ``stream`` defaults to ``sys.stderr`` (looked up when drawing, so pytest's or
    the CLI's replacement is honoured). ``width`` is the whole line's width
    (default: the terminal's, at most 100 columns). ``clock`` is for tests.
    """

    def __init__(self, label: str = "dumping", *, stream: TextIO | None = None,
                 force: bool = False, interval: float = 0.1, width: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self._stream = stream
        self.force = force
        self.interval = interval
        self.width = width
        self._clock = clock
        self._last_draw: float | None = None
        self._drawn_len = 0  # characters of the line on screen (0: nothing drawn)
        self._finished = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def enabled(self) -> bool:
        """Whether anything is drawn: the stream is a terminal, or ``force``."""
        if self.force:
            return True
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):  # a closed stream
            return False

    # -- DumpCallbacks ----------------------------------------------------------------

    def progress(self, done: int, total: int) -> None:
        self.update(done, total)

    # -- drawing ----------------------------------------------------------------------

    def render(self, done: int, total: int) -> str:
        """The line for ``done`` of ``total`` bytes (no control characters)."""
        fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        tail = f" {fraction * 100:3.0f}%  {format_bytes(done)} / {format_bytes(total)}"
        width = self.width if self.width is not None else min(
            shutil.get_terminal_size((80, 24)).columns, 100)
        room = width - len(self.label) - len(tail) - 4  # "label [" + "]" and a space
        if room < 10:  # too narrow for a bar: text only
            return f"{self.label}{tail}"[:max(width - 1, 1)]
        filled = int(room * fraction)
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}]{tail}"

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``; skipped if the last draw is less than
        ``interval`` old, unless this is the first draw or the end."""
        if self._finished or not self.enabled:
            return
        final = done >= total
        now = self._clock()
        if not final and self._last_draw is not None and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self.render(done, total)
        # Spaces over what a longer previous line left behind: no terminal escapes needed.
        pad = max(self._drawn_len - len(line), 0)
        stream = self.stream
        stream.write("\r" + line + " " * pad)
        self._drawn_len = len(line)
        if final:
            self.finish()
        else:
            stream.flush()

    def finish(self) -> None:
        """End the line (once) if anything was drawn; later updates draw nothing."""
        if self._finished:
            return
        self._finished = True
        if self._drawn_len:
            self.stream.write("\n")
            self.stream.flush()

    close = finish

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish()

    # -- around other callbacks ---------------------------------------------------------

    @classmethod
    def wrap(cls, callbacks: DumpCallbacks, label: str = "dumping", *,
             stream: TextIO | None = None, force: bool = False,
             interval: float = 0.1, width: int | None = None) -> ProgressBar:
        """A ProgressBar that also asks ``callbacks`` every question (its
        ``progress`` is called too, after the bar is drawn)."""
        return _Wrapped(callbacks, label, stream=stream, force=force, interval=interval,
                        width=width)


class _Wrapped(ProgressBar):
    """A ProgressBar in front of another DumpCallbacks: every answer is the inner one's."""

    def __init__(self, inner: DumpCallbacks, label: str, *, stream: TextIO | None,
                 force: bool, interval: float, width: int | None) -> None:
        super().__init__(label, stream=stream, force=force, interval=interval, width=width)
        self.inner = inner

    def include_thread(self, thread: CallbackThread) -> bool:
        return self.inner.include_thread(thread)

    def include_module(self, module: CallbackModule) -> bool:
        return self.inner.include_module(module)

    def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
        return self.inner.thread(thread, flags)

    def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
        return self.inner.module(module, flags)

    def memory(self) -> Iterable[tuple[int, int]]:
        return self.inner.memory()

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        return self.inner.remove_memory()

    def include_vm_region(self, region: VmRegion) -> bool:
        return self.inner.include_vm_region(region)

    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        return self.inner.read_memory_failure(address, size, error)

    def cancel(self) -> bool:
        return self.inner.cancel()

    def progress(self, done: int, total: int) -> None:
        self.update(done, total)
        self.inner.progress(done, total)
