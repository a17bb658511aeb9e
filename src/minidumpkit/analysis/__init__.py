"""Analysis over a read minidump. This layer sits above the reader: it imports the reader
and the format, never the reverse, and never a backend.

* :func:`python_stacks` (:mod:`minidumpkit.analysis.python`): every thread's Python stack.
"""

from __future__ import annotations

from .python import python_stacks

__all__ = ["python_stacks"]
