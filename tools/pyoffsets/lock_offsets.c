/* The offsets the Python-level lock analysis reads (minidumpkit/_pyruntime/offsets.py,
   LockOffsets), from CPython's own headers: cc -I<include/python3.X> -I<…/internal>.
   tests/test_python_offsets.py compiles it against 3.11, 3.12 and 3.13 and compares. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_gil.h"

#define P(name, value) printf("%s %ld\n", name, (long)(value))

int main(void) {
    P("frame_localsplus", offsetof(_PyInterpreterFrame, localsplus));
    P("code_nlocalsplus", offsetof(PyCodeObject, co_nlocalsplus));
    P("code_stacksize", offsetof(PyCodeObject, co_stacksize));
    P("gil_cond", offsetof(struct _gil_runtime_state, cond));
    P("gil_cond_size", sizeof(PyCOND_T));
    P("gil_mutex", offsetof(struct _gil_runtime_state, mutex));
    P("gil_mutex_size", sizeof(PyMUTEX_T));
    P("cfunction_self", offsetof(PyCFunctionObject, m_self));
#if PY_VERSION_HEX < 0x030d0000
    P("frame_code", offsetof(_PyInterpreterFrame, f_code));
#else
    P("frame_code", offsetof(_PyInterpreterFrame, f_executable));
#endif
    return 0;
}
