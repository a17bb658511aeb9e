"""HTML views of a dump for notebooks (IPython's ``_repr_html_``): a dump, its thread
list, one thread, its module list, a live snapshot.

Imported only when a notebook asks for HTML (the ``_repr_html_`` methods import it), so
a plain ``import minidumpkit`` or a read never loads :mod:`html`. The page is static
HTML and CSS: no JavaScript (notebook viewers strip it), ``<details>`` for what is
folded. Every string taken from a dump (thread and module names, paths, symbol names,
which hold ``<`` in C++) goes through :func:`html.escape`.

Summary first: what the dump is and why it was written (the crashing or requesting
thread), the lock verdict when the analysis layer gives one, then one row per thread
with its top frame, then the details. The analysis layer sits above the reader; it is
reached here by name, and what it does not provide (yet) is left out:

* native frames: ``minidumpkit.analysis.walk_stack(dump, thread)`` returning an object
  with ``frames`` (each with ``pc``, and optionally ``function``, ``function_offset``,
  ``module``, ``module_offset``, ``source_file``, ``source_line``); without it, the pc
  as ``module+offset`` and the registers;
* Python frames: ``minidumpkit.analysis.python_stacks(dump)``, shown for the threads
  that run Python;
* what a thread waits for: ``minidumpkit.analysis.threads.thread_status`` and
  ``minidumpkit.analysis.locks.futex_waits`` (objects with ``describe()``).

An analysis that raises is reported in the page (its exception's one line), never
hidden and never breaking the view.
"""

from __future__ import annotations

import html
import importlib
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._streams import Module, Thread, _size

if TYPE_CHECKING:
    from .reader import Minidump
    from .snapshot import Snapshot

__all__ = ["html_of"]

TOP_FRAMES = 3  # frames shown in a thread's summary row
MAX_FRAMES = 64  # frames listed in a thread's details
MAX_ROWS = 500  # threads or modules listed (a dump may hold thousands)

_STYLE = """<style>
.mdk{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:13px;color:#1f2328;
background:#fff;max-width:1100px}
.mdk h3{margin:4px 0 6px 0;font-size:16px}
.mdk .facts{margin:0 0 8px 0;color:#444}
.mdk .verdict{padding:6px 10px;margin:6px 0;border-left:4px solid #d1242f;background:#fff1f0}
.mdk .verdict.req{border-color:#0969da;background:#eef6ff}
.mdk .verdict.locks{border-color:#bf8700;background:#fff8c5}
.mdk table{border-collapse:collapse;margin:4px 0 8px 0;font-size:13px}
.mdk th,.mdk td{border:1px solid #d0d7de;padding:2px 6px;text-align:left;vertical-align:top}
.mdk th{background:#f6f8fa}
.mdk tr.crashed td{background:#ffebe9}
.mdk tr.requesting td{background:#eef6ff}
.mdk code,.mdk .mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.mdk details{margin:2px 0 2px 0}
.mdk summary{cursor:pointer}
.mdk .note{color:#57606a}
</style>"""


def html_of(obj: object) -> str | None:
    """The HTML view of ``obj`` (a dump, a thread list, a thread, a module list, a
    snapshot), or None when there is nothing to show (IPython then falls back to
    ``repr``)."""
    from .reader import Minidump
    from .snapshot import Snapshot
    from ._streams import ModuleList, ThreadList

    if isinstance(obj, Minidump):
        return None if obj.closed else _page(_dump(obj))
    if isinstance(obj, ThreadList):
        if not obj:
            return None
        dump = obj[0]._dump
        return None if dump.closed else _page(_threads(dump, list(obj), _Analysis.of(dump)))
    if isinstance(obj, Thread):
        return None if obj._dump.closed else _page(_thread(obj, _Analysis.of(obj._dump)))
    if isinstance(obj, ModuleList):
        return _page(_modules(list(obj))) if obj else None
    if isinstance(obj, Snapshot):
        return None if obj.closed else _page(_snapshot(obj))
    return None


def _page(body: str) -> str:
    return f'<div class="mdk">{_STYLE}{body}</div>'


def esc(value: object) -> str:
    """``value`` as HTML text (quotes escaped too: safe in an attribute)."""
    return html.escape(str(value), quote=True)


def _hex(value: int | None) -> str:
    return "?" if value is None else f"0x{value:x}"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


# --- the analysis layer, reached by name ------------------------------------------------

def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` if the analysis layer has it in this install, else None."""
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return found if callable(found) else None


class _Analysis:
    """What the analysis layer says about one dump, computed once per dump and kept
    while the dump lives (a notebook re-displays the same objects)."""

    _cache: weakref.WeakKeyDictionary[Minidump, _Analysis] = weakref.WeakKeyDictionary()

    def __init__(self, dump: Minidump) -> None:
        self.dump = dump
        self.problems: list[str] = []  # analyses that failed, one line each
        self._frames: dict[int, tuple[list[Any] | None, str | None]] = {}
        self.python = self._python()
        self.status: dict[int, str] = {}  # the blocking call, one line
        self.notes: dict[int, str] = {}  # scheduler state, wchan, or why no call is known
        self.waits: dict[int, str] = {}
        self._waits_done = False

    @classmethod
    def of(cls, dump: Minidump) -> _Analysis:
        found = cls._cache.get(dump)
        if found is None:
            found = cls._cache[dump] = cls(dump)
        return found

    def frames(self, thread: Thread) -> tuple[list[Any] | None, str | None]:
        """(native frames innermost first, or None without a stack walker; the walk's
        status when it is not "ok")."""
        if thread.thread_id in self._frames:
            return self._frames[thread.thread_id]
        walk = _optional("minidumpkit.analysis", "walk_stack")
        result: tuple[list[Any] | None, str | None] = (None, None)
        if walk is not None:
            try:
                stack = walk(self.dump, thread)
                status = getattr(stack, "status", "ok")
                result = (list(getattr(stack, "frames", ())), None if status == "ok" else status)
            except Exception as exc:  # shown in the page, not raised into the notebook
                result = (None, f"stack walk failed: {_one_line(exc)}")
        self._frames[thread.thread_id] = result
        return result

    def _python(self) -> dict[int, Any]:
        """{OS thread id: PythonThread} from the Python stack walk, when there are any."""
        walk = _optional("minidumpkit.analysis", "python_stacks")
        if walk is None:
            return {}
        try:
            runtime = walk(self.dump)
        except Exception as exc:
            self.problems.append(f"Python stacks: {_one_line(exc)}")
            return {}
        found: dict[int, Any] = {}
        for pythread in getattr(runtime, "threads", ()):
            tid = getattr(pythread, "os_thread_id", None)
            if tid is not None:
                found.setdefault(tid, pythread)
        return found

    def lock_facts(self) -> None:
        """Fill ``status`` and ``waits`` (once): the blocking call of each thread and
        what each futex waiter waits for, with the native frames when there are any."""
        if self._waits_done:
            return
        self._waits_done = True
        thread_status = _optional("minidumpkit.analysis.threads", "thread_status")
        if thread_status is not None:
            for thread in self.dump.threads:
                try:
                    status = thread_status(self.dump, thread)
                except Exception as exc:
                    self.problems.append(f"thread {thread.thread_id} status: {_one_line(exc)}")
                    break
                self._status(thread.thread_id, status)
        futex_waits = _optional("minidumpkit.analysis.locks", "futex_waits")
        if futex_waits is not None:
            frames = {t.thread_id: f for t in self.dump.threads
                      if (f := self.frames(t)[0]) is not None}
            try:
                waits = futex_waits(self.dump, frames or None)
            except Exception as exc:
                self.problems.append(f"lock analysis: {_one_line(exc)}")
            else:
                self.waits = {tid: _described(w) for tid, w in waits.items()}


    def _status(self, tid: int, status: object) -> None:
        """A ThreadStatus: its ``call`` in the row, ``state``/``wchan``/``note`` in the
        details (an object of another shape: its ``describe()`` in the row)."""
        if not hasattr(status, "call"):
            self.status[tid] = _described(status)
            return
        call = getattr(status, "call", None)
        if call is not None:
            self.status[tid] = _described(call)
        facts = [f"{label} {value}" for label, value in
                 (("state", getattr(status, "state", None)),
                  ("wchan", getattr(status, "wchan", None))) if value]
        note = getattr(status, "note", "")
        if call is None and note:
            facts.append(str(note))
        if facts:
            self.notes[tid] = ", ".join(facts)


def _described(fact: object) -> str:
    describe = getattr(fact, "describe", None)
    return str(describe() if callable(describe) else fact)


# --- pieces -----------------------------------------------------------------------------

def _frame_text(frame: Any) -> str:
    """One native frame as ``function+0x1a (file:line)`` or ``module+0x8612b``, escaped."""
    function = getattr(frame, "function", None)
    if function:
        offset = getattr(frame, "function_offset", None)
        text = esc(function) + (f"+0x{offset:x}" if offset else "")
    else:
        module = getattr(frame, "module_basename", None) or getattr(frame, "module", None)
        offset = getattr(frame, "module_offset", None)
        text = (f"{esc(module)}+0x{offset:x}" if module and offset is not None
                else _hex(getattr(frame, "pc", None)))
    source = getattr(frame, "source_file", None)
    if source:  # the file's name; its whole path on hover
        line = getattr(frame, "source_line", None)
        name = source.replace("\\", "/").rsplit("/", 1)[-1]
        text += (f' <span class="note" title="{esc(source)}">'
                 f'({esc(name)}{":" + str(line) if line else ""})</span>')
    return text


def _python_frame_text(frame: Any) -> str:
    line = getattr(frame, "line", None)
    return (f"{esc(getattr(frame, 'qualname', '?'))} "
            f'<span class="note">({esc(getattr(frame, "filename", "?"))}'
            f'{":" + str(line) if line else ""})</span>')


def _python_frames(analysis: _Analysis, thread: Thread) -> tuple[Any, ...]:
    """The Python frames the thread runs, newest first (none when it runs no Python)."""
    pythread = analysis.python.get(thread.thread_id)
    return () if pythread is None else tuple(getattr(pythread, "frames", ()))


def _top(thread: Thread, analysis: _Analysis) -> str:
    """The thread's top frames for its summary row (Python first when it runs Python)."""
    frames, status = analysis.frames(thread)
    parts: list[str] = []
    python_frames = _python_frames(analysis, thread)
    if python_frames:
        parts.append("Python: " + _python_frame_text(python_frames[0]))
    if frames:
        parts += [_frame_text(f) for f in frames[:TOP_FRAMES]]
    else:
        where = thread.pc_location()
        parts.append(f"pc {esc(where)}" if where else '<span class="note">no context</span>')
    if status:
        parts.append(f'<span class="note">{esc(status)}</span>')
    return "<br>".join(parts)


def _registers(thread: Thread) -> str:
    regs = thread.registers
    if not regs:
        return '<p class="note">no registers recorded</p>'
    cells = "".join(f"<tr><th>{esc(name)}</th><td class=mono>0x{value:016x}</td></tr>"
                    for name, value in regs.items())
    return f"<details><summary>registers</summary><table>{cells}</table></details>"


def _thread_details(thread: Thread, analysis: _Analysis) -> str:
    out: list[str] = []
    frames, status = analysis.frames(thread)
    if frames:
        rows = "".join(
            f"<tr><td>#{i}</td><td class=mono>{_hex(getattr(f, 'pc', None))}</td>"
            f"<td>{_frame_text(f)}</td></tr>" for i, f in enumerate(frames[:MAX_FRAMES]))
        more = (f'<p class="note">... {len(frames) - MAX_FRAMES} more frames</p>'
                if len(frames) > MAX_FRAMES else "")
        out.append(f"<table><tr><th>#</th><th>pc</th><th>frame</th></tr>{rows}</table>{more}")
    elif status:
        out.append(f'<p class="note">{esc(status)}</p>')
    python_frames = _python_frames(analysis, thread)
    if python_frames:
        pythread = analysis.python[thread.thread_id]
        gil = " (holds the GIL)" if getattr(pythread, "holds_gil", False) else ""
        rows = "".join(f"<li>{_python_frame_text(f)}</li>" for f in python_frames[:MAX_FRAMES])
        out.append(f"<p>Python stack{gil}, newest first:</p><ol>{rows}</ol>")
    note = analysis.notes.get(thread.thread_id)
    if note:
        out.append(f'<p class="note">{esc(note)}</p>')
    stack = (f"stack 0x{thread.stack_start:x}-0x{thread.stack_end:x} "
             f"({_size(thread.stack_size)} captured)" if thread.stack_size else "no stack captured")
    out.append(f'<p class="note">{stack}; pc {_hex(thread.pc)}, sp {_hex(thread.sp)}</p>')
    out.append(_registers(thread))
    return "".join(out)


def _thread_label(thread: Thread) -> str:
    name = f" “{esc(thread.name)}”" if thread.name else ""
    return f"thread {thread.thread_id}{name}"


def _thread(thread: Thread, analysis: _Analysis) -> str:
    analysis.lock_facts()
    facts = [f for f in (analysis.status.get(thread.thread_id),
                         analysis.waits.get(thread.thread_id)) if f]
    said = "".join(f'<p class="facts">{esc(f)}</p>' for f in facts)
    return (f"<h3>{_thread_label(thread)}</h3>{said}"
            f"<p>{_top(thread, analysis)}</p>{_thread_details(thread, analysis)}"
            f"{_problems(analysis)}")


def _threads(dump: Minidump, threads: Sequence[Thread], analysis: _Analysis,
             marked: tuple[int, str] | None = None) -> str:
    """The thread table; ``marked``: (thread id, "crashed" or "requesting")."""
    analysis.lock_facts()
    waits_column = bool(analysis.status or analysis.waits)  # only when the layer tells
    rows: list[str] = []
    for thread in threads[:MAX_ROWS]:
        mark = f' class="{marked[1]}"' if marked and thread.thread_id == marked[0] else ""
        waits = [f for f in (analysis.status.get(thread.thread_id),
                             analysis.waits.get(thread.thread_id)) if f]
        rows.append(
            f"<tr{mark}><td class=mono>{thread.thread_id}</td>"
            f"<td>{esc(thread.name) if thread.name else ''}</td>"
            f"<td class=mono>{_top(thread, analysis)}</td>"
            + (f"<td>{'<br>'.join(esc(w) for w in waits)}</td>" if waits_column else "")
            + f"<td><details><summary>details</summary>{_thread_details(thread, analysis)}"
            f"</details></td></tr>")
    more = (f'<p class="note">... {len(threads) - MAX_ROWS} more threads</p>'
            if len(threads) > MAX_ROWS else "")
    head = "<th>waits for</th>" if waits_column else ""
    return (f"<table><tr><th>thread</th><th>name</th><th>top frames</th>{head}"
            f"<th></th></tr>{''.join(rows)}</table>{more}")


def _modules(modules: Sequence[Module]) -> str:
    rows = "".join(
        f"<tr><td>{esc(m.basename)}</td><td class=mono>0x{m.base:x}-0x{m.end:x}</td>"
        f"<td>{_size(m.size)}</td><td class=mono>{esc(m.code_id or '')}</td>"
        f"<td>{esc(m.name)}</td></tr>" for m in modules[:MAX_ROWS])
    more = (f'<p class="note">... {len(modules) - MAX_ROWS} more modules</p>'
            if len(modules) > MAX_ROWS else "")
    return (f"<table><tr><th>module</th><th>range</th><th>size</th><th>code id</th>"
            f"<th>path</th></tr>{rows}</table>{more}")


def _problems(analysis: _Analysis) -> str:
    if not analysis.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in analysis.problems)
    return f'<p class="note">Analyses that failed:</p><ul class="note">{items}</ul>'


def _section(title: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary><b>{title}</b></summary>{body}</details>"


def _guarded(what: str, build: Callable[[], str]) -> str:
    """A part of the page; a damaged stream spoils only its own part."""
    try:
        return build()
    except Exception as exc:
        return f'<p class="note">{esc(what)}: {esc(_one_line(exc))}</p>'


def _dump(dump: Minidump) -> str:
    analysis = _Analysis.of(dump)
    exc = _guarded_value(lambda: dump.exception)
    title = esc(dump._name.replace("\\", "/").rsplit("/", 1)[-1]) if dump._name else "minidump"
    facts = ", ".join(esc(p) for p in dump._summary(reason=False))
    out = [f"<h3>{title}</h3><p class='facts'>{facts}</p>"]
    marked: tuple[int, str] | None = None
    if exc is not None:
        marked = (exc.thread_id, "requesting" if exc.requested else "crashed")
        thread = _guarded_value(lambda: dump.thread(exc.thread_id))
        label = _thread_label(thread) if thread is not None else f"thread {exc.thread_id}"
        if exc.requested:
            out.append(f'<div class="verdict req">Dump requested (not a crash); requesting '
                       f"{label}</div>")
        else:
            pc = ""
            if exc.context is not None:
                module = _guarded_value(lambda: dump.module_at(exc.context.pc))
                where = (f"{module.basename}+0x{exc.context.pc - module.base:x}"
                         if module is not None else f"0x{exc.context.pc:x}")
                pc = f", pc <span class=mono>{esc(where)}</span>"
            out.append(f'<div class="verdict"><b>{esc(exc.reason)}</b> at '
                       f"<span class=mono>0x{exc.crash_address:x}</span> in {label}{pc}</div>")
    _guarded_value(analysis.lock_facts)
    if analysis.waits:
        items = "".join(f"<li>thread {tid}: {esc(text)}</li>"
                        for tid, text in analysis.waits.items())
        out.append(f'<div class="verdict locks">Lock waits:<ul>{items}</ul></div>')
    threads = _guarded_value(lambda: dump.threads) or []
    out.append(_section(f"Threads ({len(threads)})",
                        _guarded("threads", lambda: _threads(dump, threads, analysis, marked)),
                        open_=True))
    modules = _guarded_value(lambda: dump.modules) or []
    out.append(_section(f"Modules ({len(modules)})",
                        _guarded("modules", lambda: _modules(modules))))
    out.append(_section("Streams", _guarded("streams", lambda: _streams(dump))))
    out.append(_problems(analysis))
    return "".join(out)


def _guarded_value(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except Exception:  # the part that needs it says nothing; _guarded reports it
        return None


def _streams(dump: Minidump) -> str:
    rows = "".join(f"<tr><td>{i.index}</td><td>{esc(i.name)}</td><td>{i.data_size}</td>"
                   f"<td class=mono>0x{i.rva:x}</td></tr>" for i in dump.streams[:MAX_ROWS])
    return f"<table><tr><th>#</th><th>type</th><th>bytes</th><th>at</th></tr>{rows}</table>"


def _snapshot(snap: Snapshot) -> str:
    info = _guarded_value(lambda: snap.process_info)
    name = esc(info.image_file_name) if info is not None else ""
    from . import format as md

    method = {md.CAPTURE_VA_CLONE: "VA clone (memory frozen)",
              md.CAPTURE_SNAPSHOT_LIVE: "live"}.get(snap.capture_method,
                                                    str(snap.capture_method))
    out = [f"<h3>snapshot of pid {snap.pid} {name}</h3>",
           f"<p class='facts'>{esc(method)}; target held {snap.pause_ns / 1e6:.2f} ms; "
           f"flags {esc(snap.flags)}</p>"]
    rows = "".join(
        f"<tr><td class=mono>{t.tid}</td><td>{esc(t.name)}</td>"
        f"<td class=mono>{_hex(t.context.pc) if t.context is not None else ''}</td>"
        f"<td>{t.last_syscall_number if t.last_syscall_number >= 0 else ''}</td></tr>"
        for t in snap.threads[:MAX_ROWS])
    out.append(_section(f"Threads ({len(snap.threads)})",
                        f"<table><tr><th>thread</th><th>name</th><th>pc</th><th>syscall</th>"
                        f"</tr>{rows}</table>", open_=True))
    handles: Iterable[Any] = snap.handles[:MAX_ROWS]
    hrows = "".join(f"<tr><td>{h.handle}</td><td>{esc(h.type_name)}</td>"
                    f"<td>{esc(h.object_name)}</td></tr>" for h in handles)
    if hrows:
        out.append(_section(f"Handles ({len(snap.handles)})",
                            f"<table><tr><th>fd</th><th>type</th><th>object</th></tr>{hrows}"
                            f"</table>"))
    return "".join(out)
