"""The context-manager and unclosed-warning behaviour shared by objects that hold an
operating-system resource (a file mapping, a process snapshot, a cloned process).

``with`` closes; an object collected while still open warns ``ResourceWarning`` (so
leaks show up under ``-W error`` and in tests) and is closed then, because a leaked
snapshot or clone costs the machine memory until the interpreter exits.
"""

from __future__ import annotations

import contextlib
import warnings
from types import TracebackType
from typing import Self

__all__ = ["Closeable"]


class Closeable:
    """Mixin: ``__enter__``/``__exit__`` around :meth:`close`, and ``__del__`` that warns
    and closes. Subclasses define :meth:`close` and :meth:`_open`."""

    #: The ResourceWarning text, formatted with the object.
    _UNCLOSED = "unclosed {!r}: use 'with' or close()"

    def close(self) -> None:
        raise NotImplementedError

    def _open(self) -> bool:
        """Whether the resource is still held (the object may be half-initialised)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._open():
            return
        warnings.warn(self._UNCLOSED.format(self), ResourceWarning, source=self, stacklevel=2)
        # close() raising in a finaliser would only print "Exception ignored"
        with contextlib.suppress(Exception):
            self.close()
