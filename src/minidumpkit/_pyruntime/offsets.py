"""CPython struct offsets for the Python stack walk, per (minor version, data model).

3.11 and 3.12 come from tables derived from CPython's own headers: ``tools/pyoffsets/
offsets.c`` compiled with ``Py_BUILD_CORE`` against pyenv 3.11.7 and 3.12.1
(``include/python3.1x{,/internal}``: pycore_runtime.h, pycore_interp.h, cpython/pystate.h,
pycore_frame.h, cpython/code.h, cpython/unicodeobject.h) by ``tools/pyoffsets/generate.sh``;
tests/test_python_offsets.py recompiles it and compares every number. 3.13 and later carry
their own ``_Py_DebugOffsets`` at the start of ``_PyRuntime`` (pycore_runtime.h): it is read
from the target and parsed with the field order of that minor version (``DEBUG_FIELDS``), so
only the few fields it does not describe come from a table here.

The static tables are x86_64 Linux (LP64) only. Windows x64 (LLP64) differs in the
runtime and thread-state fields and the width of the thread ids (4 B): 3.13 is walked
there through ``_Py_DebugOffsets`` with 4-byte thread ids; 3.11/3.12 tables for
``"llp64"`` would go next to these (see docs/python-stacks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

LP64 = "lp64"
LLP64 = "llp64"

# _PyInterpreterFrame.owner values (pycore_frame.h, 3.11-3.13)
OWNED_BY_THREAD, OWNED_BY_GENERATOR, OWNED_BY_FRAME_OBJECT, OWNED_BY_CSTACK = 0, 1, 2, 3


@dataclass(frozen=True)
class Layout:
    """Every offset the walk reads. ``None``: the field does not exist in this version."""

    name: str
    thread_id_size: int
    # _PyRuntimeState
    runtime_interpreters_head: int
    runtime_gil_holder: int | None          # gilstate.tstate_current (<= 3.11)
    # PyInterpreterState
    interp_next: int
    interp_id: int
    interp_threads_head: int
    interp_ceval_gil: int | None            # pointer to _gil_runtime_state (>= 3.12)
    gil_last_holder: int | None
    gil_locked: int | None
    # PyThreadState
    tstate_size: int
    tstate_next: int
    tstate_interp: int
    tstate_cframe: int | None               # 3.11/3.12: -> _PyCFrame (on the C stack)
    tstate_root_cframe: int | None
    tstate_current_frame: int | None        # 3.13+: the frame directly
    tstate_thread_id: int
    tstate_native_thread_id: int
    cframe_current_frame: int | None
    # _PyInterpreterFrame
    frame_size: int
    frame_code: int
    frame_previous: int
    frame_instr: int                         # prev_instr (3.11/3.12), instr_ptr (3.13+)
    frame_owner: int
    frame_is_entry: int | None               # 3.11 only
    # objects
    object_type: int
    type_name: int                           # PyTypeObject.tp_name
    code_firstlineno: int
    code_filename: int
    code_name: int
    code_qualname: int
    code_linetable: int
    code_firsttraceable: int | None
    code_adaptive: int
    bytes_size: int
    bytes_sval: int
    unicode_length: int
    unicode_state: int
    unicode_ascii_size: int
    unicode_compact_size: int
    unicode_legacy_data: int
    # _PyRuntime.ceval.gil, the GIL itself (3.11: one per runtime; 3.12+: interp_ceval_gil)
    runtime_ceval_gil: int | None = None


# tools/pyoffsets/generate.sh /root/.pyenv/versions/3.11.7 (x86_64 Linux, gcc 12)
PY311_LP64 = Layout(
    name="3.11-lp64", thread_id_size=8,
    runtime_interpreters_head=40, runtime_gil_holder=576,
    interp_next=0, interp_id=48, interp_threads_head=16,
    interp_ceval_gil=None, gil_last_holder=None, gil_locked=None,
    tstate_size=360, tstate_next=8, tstate_interp=16, tstate_cframe=56, tstate_root_cframe=336,
    tstate_current_frame=None, tstate_thread_id=152, tstate_native_thread_id=160,
    cframe_current_frame=8,
    frame_size=80, frame_code=32, frame_previous=48, frame_instr=56, frame_owner=69,
    frame_is_entry=68,
    object_type=8, type_name=24,
    code_firstlineno=72, code_filename=112, code_name=120, code_qualname=128,
    code_linetable=136, code_firsttraceable=168, code_adaptive=184,
    bytes_size=16, bytes_sval=32,
    unicode_length=16, unicode_state=32, unicode_ascii_size=48, unicode_compact_size=72,
    unicode_legacy_data=72, runtime_ceval_gil=360,
)

# tools/pyoffsets/generate.sh /root/.pyenv/versions/3.12.1 (x86_64 Linux, gcc 12)
PY312_LP64 = Layout(
    name="3.12-lp64", thread_id_size=8,
    runtime_interpreters_head=40, runtime_gil_holder=None,
    interp_next=0, interp_id=8, interp_threads_head=72,
    interp_ceval_gil=384, gil_last_holder=8, gil_locked=16,
    tstate_size=288, tstate_next=8, tstate_interp=16, tstate_cframe=56, tstate_root_cframe=272,
    tstate_current_frame=None, tstate_thread_id=136, tstate_native_thread_id=144,
    cframe_current_frame=0,
    frame_size=80, frame_code=0, frame_previous=8, frame_instr=56, frame_owner=70,
    frame_is_entry=None,
    object_type=8, type_name=24,
    code_firstlineno=68, code_filename=112, code_name=120, code_qualname=128,
    code_linetable=136, code_firsttraceable=176, code_adaptive=192,
    bytes_size=16, bytes_sval=32,
    unicode_length=16, unicode_state=32, unicode_ascii_size=40, unicode_compact_size=56,
    unicode_legacy_data=56,
)

STATIC_LAYOUTS: dict[tuple[int, int, str], Layout] = {
    (3, 11, LP64): PY311_LP64,
    (3, 12, LP64): PY312_LP64,
}

# _Py_DebugOffsets of 3.13 (include/python3.13/internal/pycore_runtime.h): cookie[8], then
# only uint64_t fields in this order, so field k sits at 8 + 8*k on every data model.
DEBUG_FIELDS_313: tuple[str, ...] = (
    "version", "free_threaded",
    "runtime_state.size", "runtime_state.finalizing", "runtime_state.interpreters_head",
    "interpreter_state.size", "interpreter_state.id", "interpreter_state.next",
    "interpreter_state.threads_head", "interpreter_state.gc", "interpreter_state.imports_modules",
    "interpreter_state.sysdict", "interpreter_state.builtins", "interpreter_state.ceval_gil",
    "interpreter_state.gil_runtime_state", "interpreter_state.gil_runtime_state_enabled",
    "interpreter_state.gil_runtime_state_locked", "interpreter_state.gil_runtime_state_holder",
    "thread_state.size", "thread_state.prev", "thread_state.next", "thread_state.interp",
    "thread_state.current_frame", "thread_state.thread_id", "thread_state.native_thread_id",
    "thread_state.datastack_chunk", "thread_state.status",
    "interpreter_frame.size", "interpreter_frame.previous", "interpreter_frame.executable",
    "interpreter_frame.instr_ptr", "interpreter_frame.localsplus", "interpreter_frame.owner",
    "code_object.size", "code_object.filename", "code_object.name", "code_object.qualname",
    "code_object.linetable", "code_object.firstlineno", "code_object.argcount",
    "code_object.localsplusnames", "code_object.localspluskinds", "code_object.co_code_adaptive",
    "pyobject.size", "pyobject.ob_type",
    "type_object.size", "type_object.tp_name", "type_object.tp_repr", "type_object.tp_flags",
    "tuple_object.size", "tuple_object.ob_item", "tuple_object.ob_size",
    "list_object.size", "list_object.ob_item", "list_object.ob_size",
    "dict_object.size", "dict_object.ma_keys", "dict_object.ma_values",
    "float_object.size", "float_object.ob_fval",
    "long_object.size", "long_object.lv_tag", "long_object.ob_digit",
    "bytes_object.size", "bytes_object.ob_size", "bytes_object.ob_sval",
    "unicode_object.size", "unicode_object.state", "unicode_object.length",
    "unicode_object.asciiobject_size",
    "gc.size", "gc.collecting",
)
DEBUG_COOKIE = b"xdebugpy"
DEBUG_FIELDS: dict[tuple[int, int], tuple[str, ...]] = {(3, 13): DEBUG_FIELDS_313}

# What _Py_DebugOffsets (3.13) does not describe: PyCodeObject._co_firsttraceable
# (cpython/code.h), 184 on x86_64 Linux 3.13.0 (tools/pyoffsets/debug_offsets.c) and on
# Windows x64 3.13.2 (python.org's build: no `long` precedes it in PyCodeObject; checked
# with ctypes against the RESUME index of co_code in that interpreter under Wine).
EXTRA_313 = {"code_firsttraceable": 184}

MAX_STRUCT = 1 << 20  # no CPython struct the walk reads is near 1 MiB (pystack's bound)


def layout_from_debug_offsets(values: dict[str, int], minor: int, model: str) -> Layout:
    """The walk's layout from a parsed ``_Py_DebugOffsets``; raises ValueError naming the
    first field that is out of bounds (the table is untrusted input)."""
    def field(name: str, within: str) -> int:
        value = values[name]
        size = values[within + ".size"]
        if not 0 < size <= MAX_STRUCT or not 0 <= value < size:
            raise ValueError(f"_Py_DebugOffsets {name}={value} outside its struct ({size} B)")
        return value

    thread_id_size = 8 if model == LP64 else 4
    gil = values["interpreter_state.gil_runtime_state"]
    extra = EXTRA_313 if minor == 13 else {}
    layout = Layout(
        name=f"debug-offsets-3.{minor}-{model}", thread_id_size=thread_id_size,
        runtime_interpreters_head=field("runtime_state.interpreters_head", "runtime_state"),
        runtime_gil_holder=None,
        interp_next=field("interpreter_state.next", "interpreter_state"),
        interp_id=field("interpreter_state.id", "interpreter_state"),
        interp_threads_head=field("interpreter_state.threads_head", "interpreter_state"),
        interp_ceval_gil=field("interpreter_state.ceval_gil", "interpreter_state"),
        gil_last_holder=field("interpreter_state.gil_runtime_state_holder",
                              "interpreter_state") - gil,
        gil_locked=field("interpreter_state.gil_runtime_state_locked", "interpreter_state") - gil,
        tstate_size=values["thread_state.size"],
        tstate_next=field("thread_state.next", "thread_state"),
        tstate_interp=field("thread_state.interp", "thread_state"),
        tstate_cframe=None, tstate_root_cframe=None,
        tstate_current_frame=field("thread_state.current_frame", "thread_state"),
        tstate_thread_id=field("thread_state.thread_id", "thread_state"),
        tstate_native_thread_id=field("thread_state.native_thread_id", "thread_state"),
        cframe_current_frame=None,
        frame_size=values["interpreter_frame.size"],
        frame_code=field("interpreter_frame.executable", "interpreter_frame"),
        frame_previous=field("interpreter_frame.previous", "interpreter_frame"),
        frame_instr=field("interpreter_frame.instr_ptr", "interpreter_frame"),
        frame_owner=field("interpreter_frame.owner", "interpreter_frame"),
        frame_is_entry=None,
        object_type=field("pyobject.ob_type", "pyobject"),
        type_name=field("type_object.tp_name", "type_object"),
        code_firstlineno=field("code_object.firstlineno", "code_object"),
        code_filename=field("code_object.filename", "code_object"),
        code_name=field("code_object.name", "code_object"),
        code_qualname=field("code_object.qualname", "code_object"),
        code_linetable=field("code_object.linetable", "code_object"),
        code_firsttraceable=extra.get("code_firsttraceable"),
        code_adaptive=field("code_object.co_code_adaptive", "code_object"),
        bytes_size=field("bytes_object.ob_size", "bytes_object"),
        bytes_sval=field("bytes_object.ob_sval", "bytes_object"),
        unicode_length=field("unicode_object.length", "unicode_object"),
        unicode_state=field("unicode_object.state", "unicode_object"),
        unicode_ascii_size=values["unicode_object.asciiobject_size"],
        unicode_compact_size=values["unicode_object.asciiobject_size"] + 16,
        unicode_legacy_data=values["unicode_object.asciiobject_size"] + 16,
    )
    for name in ("gil_locked", "gil_last_holder"):
        if not 0 <= getattr(layout, name) < MAX_STRUCT:
            raise ValueError(f"_Py_DebugOffsets: {name} outside the GIL state")
    for name in ("tstate_size", "frame_size", "unicode_ascii_size"):
        if not 0 < getattr(layout, name) <= MAX_STRUCT:
            raise ValueError(f"_Py_DebugOffsets: {name} out of bounds")
    return layout


@dataclass(frozen=True)
class LockOffsets:
    """What the Python-level lock analysis reads (analysis/pylocks.py), beyond ``Layout``.
    ``_PyInterpreterFrame.localsplus``, ``PyCodeObject.co_nlocalsplus`` / ``co_stacksize``
    and ``struct _gil_runtime_state``'s ``cond`` / ``mutex`` (pycore_gil.h: 48-byte
    pthread_cond_t, 40-byte pthread_mutex_t), ``PyCFunctionObject.m_self``: from
    ``tools/pyoffsets/lock_offsets.c`` compiled with ``Py_BUILD_CORE`` against pyenv
    3.11.7, 3.12.1 and 3.13.0's headers (x86_64 Linux, gcc 12; tests/test_python_offsets.py
    recompiles it and compares); ``_thread.RLock`` / ``_thread.lock`` are Modules/_threadmodule.c's
    private ``rlockobject`` {HEAD, rlock_lock, rlock_owner, rlock_count} and ``lockobject``
    {HEAD, lock_lock}, the same in 3.11-3.13 (tests/test_python_merge.py checks them
    against the child's own reprs)."""

    frame_code: int
    frame_localsplus: int
    code_nlocalsplus: int
    code_stacksize: int
    gil_cond: int = 32
    gil_cond_size: int = 48
    gil_mutex: int = 80
    gil_mutex_size: int = 40
    cfunction_self: int = 24
    rlock_lock: int = 16
    rlock_owner: int = 24
    rlock_count: int = 32
    lock_lock: int = 16


LOCK_OFFSETS: dict[tuple[int, int, str], LockOffsets] = {
    (3, 11, LP64): LockOffsets(frame_code=32, frame_localsplus=72, code_nlocalsplus=76,
                               code_stacksize=68),
    (3, 12, LP64): LockOffsets(frame_code=0, frame_localsplus=72, code_nlocalsplus=72,
                               code_stacksize=64),
    (3, 13, LP64): LockOffsets(frame_code=0, frame_localsplus=72, code_nlocalsplus=72,
                               code_stacksize=64),
}
