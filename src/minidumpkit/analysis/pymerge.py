"""Merged native + Python stacks, as ``pystack --native`` shows them (docs/python-stacks.md).

    import minidumpkit
    from minidumpkit.analysis.pymerge import merged_stacks

    with minidumpkit.open_minidump("app.dmp") as dump:
        for stack in merged_stacks(dump):
            print(stack)      # native frames, each eval loop preceded by its Python frames

Each call of CPython's ``_PyEval_EvalFrameDefault`` runs the Python frames from one entry
frame (the frame C code entered: 3.11's ``is_entry``, 3.12+'s frame above a C-stack shim)
up to the next entry. Walking the native frames innermost first, the k-th eval frame gets
the k-th group of Python frames, newest first. That holds only when the thread has as
many eval frames as Python entry frames (pystack's rule): a native walk that stopped
early, a libpython without symbols, or an eval call that has not pushed its first frame
yet break it, and the thread then keeps its two stacks apart, ``status`` saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._pyruntime import PythonFrame, PythonRuntime, PythonThread
from .stackwalk import CallStack, Frame

if TYPE_CHECKING:
    from ..reader import Minidump

__all__ = ["EVAL_FUNCTIONS", "MergedFrame", "MergedStack", "is_eval_frame", "merge_thread",
           "merged_stacks"]

# the C function of CPython's eval loop (3.11-3.13); a thread runs Python frames only
# inside its calls
EVAL_FUNCTIONS = frozenset({"_PyEval_EvalFrameDefault"})
MERGED = "merged"


def is_eval_frame(frame: Frame) -> bool:
    """``frame`` is a call of CPython's eval loop (by its name, aliases or raw name)."""
    names = {frame.function, frame.mangled, *frame.aliases}
    return any(n is not None and n.split("@", 1)[0] in EVAL_FUNCTIONS for n in names)


@dataclass(frozen=True)
class MergedFrame:
    """One frame of a merged stack: ``native`` (a walker frame) or ``python``."""

    native: Frame | None = None
    python: PythonFrame | None = None

    @property
    def kind(self) -> str:
        return "native" if self.native is not None else "python"

    def __str__(self) -> str:
        if self.native is not None:
            return str(self.native)
        assert self.python is not None
        return f'   File "{self.python.filename}", line {self.python.line}, ' \
               f'in {self.python.qualname}'

    def to_json(self) -> dict[str, Any]:
        """``{"kind": "native", "index": N}`` (the index into the thread's ``frames``) or
        ``{"kind": "python", ...the Python frame's fields}``."""
        if self.native is not None:
            return {"kind": "native", "index": self.native.index}
        assert self.python is not None
        f = self.python
        return {"kind": "python", "function": f.function, "qualname": f.qualname,
                "filename": f.filename, "line": f.line, "first_line": f.first_line,
                "is_entry": f.is_entry}


@dataclass
class MergedStack:
    """A thread's merged stack, innermost first. ``status``: ``merged``; or why the two
    stacks are kept apart (``frames`` is then the native frames alone and ``python``
    still has the Python thread); or ``no Python thread`` (a thread that runs no Python).
    ``eval_frames`` / ``entry_frames``: the two counts the rule compares. ``others``:
    the thread states of other interpreters this OS thread also runs, older first
    after ``python`` (a thread inside ``_interpreters.run_string``)."""

    thread_id: int
    thread_name: str | None
    native: CallStack
    python: PythonThread | None
    frames: list[MergedFrame] = field(default_factory=list)
    status: str = MERGED
    eval_frames: int = 0
    entry_frames: int = 0
    others: list[PythonThread] = field(default_factory=list)

    @property
    def merged(self) -> bool:
        return self.status == MERGED

    def __str__(self) -> str:
        head = f'thread {self.thread_id} "{self.thread_name or ""}"'
        lines = [head] + [f"  {f}" for f in self.frames]
        if self.python is not None and not self.merged:
            lines.append(f"  ({self.status}; the Python stack alone:)")
            for thread in reversed([self.python, *self.others]):  # outermost first
                lines += ["  " + line for line in thread.format().splitlines()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<MergedStack thread {self.thread_id} {len(self.frames)} frames "
                f"status={self.status!r}>")


def merge_thread(native: CallStack,
                 python: PythonThread | Sequence[PythonThread] | None) -> MergedStack:
    """Place the Python frames among ``native``'s (both innermost first), when the
    counts of eval frames and Python entry frames agree. ``python``: the thread state,
    or all those the OS thread runs (a thread that entered a subinterpreter runs one per
    interpreter: the one whose C-stack anchor is lowest, i.e. innermost, comes first)."""
    pythons = [] if python is None else [python] if isinstance(python, PythonThread) \
        else sorted(python, key=lambda t: min(t.anchors, default=1 << 64))
    pythons = [t for t in pythons if t.frames] or pythons
    plain = [MergedFrame(native=f) for f in native.frames]
    out = MergedStack(native.thread_id, native.thread_name, native,
                      pythons[0] if pythons else None, plain, others=pythons[1:])
    out.eval_frames = sum(is_eval_frame(f) for f in native.frames)
    if not pythons:
        out.status = "no Python thread"
        return out
    py_frames = [f for t in pythons for f in t.frames]
    out.entry_frames = sum(f.is_entry for f in py_frames)
    if not py_frames:
        out.status = "no Python frames"
        return out
    if not py_frames[-1].is_entry:
        out.status = "not merged: the oldest Python frame is not an entry frame"
        return out
    if out.eval_frames != out.entry_frames:
        out.status = (f"not merged: {out.eval_frames} eval frame(s) "
                      f"(_PyEval_EvalFrameDefault) in the native stack, "
                      f"{out.entry_frames} Python entry frame(s)")
        return out
    groups = _groups(py_frames)
    frames: list[MergedFrame] = []
    for frame in native.frames:
        if is_eval_frame(frame):
            frames += [MergedFrame(python=p) for p in groups.pop(0)]
        frames.append(MergedFrame(native=frame))
    out.frames = frames
    return out


def _groups(frames: Sequence[PythonFrame]) -> list[list[PythonFrame]]:
    """Python frames (newest first) cut after each entry frame: one list per eval call."""
    groups: list[list[PythonFrame]] = [[]]
    for frame in frames:
        groups[-1].append(frame)
        if frame.is_entry:
            groups.append([])
    return [g for g in groups if g]


def merged_stacks(dump: Minidump, *, symbol_paths: Iterable[str | os.PathLike[str]] = (),
                  use_local_files: bool = True, runtime: PythonRuntime | None = None,
                  native: Iterable[CallStack] | None = None) -> list[MergedStack]:
    """Every thread of ``dump``, in its thread order, with its Python frames placed among
    its native ones. ``runtime`` / ``native``: the Python stacks and the call stacks when
    already computed (else :func:`~minidumpkit.analysis.python_stacks` and
    :func:`~minidumpkit.analysis.walk_stacks` are run). Raises only
    :class:`~minidumpkit.MinidumpFormatError`."""
    from . import walk_stacks
    from .python import python_stacks

    if runtime is None:
        runtime = python_stacks(dump, use_local_files=use_local_files)
    stacks = list(native) if native is not None else walk_stacks(
        dump, symbol_paths=symbol_paths, use_local_files=use_local_files)
    return [merge_thread(stack, [t for t in runtime.threads
                                 if t.os_thread_id == stack.thread_id])
            for stack in stacks]
