/* Print the CPython struct offsets minidumpkit's Python stack walk needs, from the
 * installed headers of one CPython (compiled with Py_BUILD_CORE against its
 * include/python3.X{,/internal}). Run by tools/pyoffsets/generate.sh; its output is
 * pasted into src/minidumpkit/_pyruntime/offsets.py and checked by
 * tests/test_python_offsets.py. */
#define Py_BUILD_CORE 1


#include "Python.h"
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"
#include "internal/pycore_gil.h"

#define P(name, value) printf("%s %ld\n", name, (long)(value))

int main(void) {
    P("version_hex", PY_VERSION_HEX);
    P("runtime.interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
    P("runtime.interpreters_main", offsetof(_PyRuntimeState, interpreters.main));
#if PY_VERSION_HEX < 0x030c0000
    P("runtime.gil_holder", offsetof(_PyRuntimeState, gilstate.tstate_current));
    P("runtime.ceval_gil", offsetof(_PyRuntimeState, ceval.gil));
#endif
    P("interp.next", offsetof(PyInterpreterState, next));
    P("interp.id", offsetof(PyInterpreterState, id));
    P("interp.threads_head", offsetof(PyInterpreterState, threads.head));
#if PY_VERSION_HEX >= 0x030c0000
    P("interp.ceval_gil", offsetof(PyInterpreterState, ceval.gil));
    P("gil.last_holder", offsetof(struct _gil_runtime_state, last_holder));
    P("gil.locked", offsetof(struct _gil_runtime_state, locked));
#endif
    P("tstate.size", sizeof(PyThreadState));
    P("tstate.next", offsetof(PyThreadState, next));
    P("tstate.interp", offsetof(PyThreadState, interp));
    P("tstate.cframe", offsetof(PyThreadState, cframe));
    P("tstate.root_cframe", offsetof(PyThreadState, root_cframe));
    P("tstate.thread_id", offsetof(PyThreadState, thread_id));
    P("tstate.native_thread_id", offsetof(PyThreadState, native_thread_id));
    P("cframe.current_frame", offsetof(_PyCFrame, current_frame));
    P("frame.size", sizeof(_PyInterpreterFrame));
    P("frame.code", offsetof(_PyInterpreterFrame, f_code));
    P("frame.previous", offsetof(_PyInterpreterFrame, previous));
    P("frame.instr", offsetof(_PyInterpreterFrame, prev_instr));
    P("frame.owner", offsetof(_PyInterpreterFrame, owner));
#if PY_VERSION_HEX < 0x030c0000
    P("frame.is_entry", offsetof(_PyInterpreterFrame, is_entry));
#endif
    P("object.ob_type", offsetof(PyObject, ob_type));
    P("code.firstlineno", offsetof(PyCodeObject, co_firstlineno));
    P("code.filename", offsetof(PyCodeObject, co_filename));
    P("code.name", offsetof(PyCodeObject, co_name));
    P("code.qualname", offsetof(PyCodeObject, co_qualname));
    P("code.linetable", offsetof(PyCodeObject, co_linetable));
    P("code.firsttraceable", offsetof(PyCodeObject, _co_firsttraceable));
    P("code.code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
    P("bytes.ob_size", offsetof(PyVarObject, ob_size));
    P("bytes.ob_sval", offsetof(PyBytesObject, ob_sval));
    P("unicode.length", offsetof(PyASCIIObject, length));
    P("unicode.state", offsetof(PyASCIIObject, state));
    P("unicode.ascii_size", sizeof(PyASCIIObject));
    P("unicode.compact_size", sizeof(PyCompactUnicodeObject));
    P("unicode.legacy_data", offsetof(PyUnicodeObject, data));
    return 0;
}
