/* 3.13+: where each field sits inside _Py_DebugOffsets, plus the one field the walk needs
 * that the struct does not describe (PyCodeObject._co_firsttraceable). Compiled against a
 * CPython's headers by tests/test_python_offsets.py and generate.sh. */
#define Py_BUILD_CORE 1
#include "Python.h"
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"

#define P(name, value) printf("%s %ld\n", name, (long)(value))
#define D(field) P(#field, offsetof(_Py_DebugOffsets, field))

int main(void) {
    P("sizeof", sizeof(_Py_DebugOffsets));
    P("code.firsttraceable", offsetof(PyCodeObject, _co_firsttraceable));
    D(version); D(free_threaded);
    D(runtime_state.interpreters_head);
    D(interpreter_state.threads_head); D(interpreter_state.gil_runtime_state_holder);
    D(thread_state.current_frame); D(thread_state.native_thread_id);
    D(interpreter_frame.owner); D(code_object.co_code_adaptive);
    D(type_object.tp_name); D(unicode_object.asciiobject_size); D(gc.collecting);
    return 0;
}
