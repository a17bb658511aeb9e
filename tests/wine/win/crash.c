/* Crash targets of the Windows `run --on-crash` tests (tests/wine/test_wine_crash.py).

   crash.exe av        writes 42 to BAD_ADDRESS in mdk_crash_write (access violation)
   crash.exe thread    the same, from a second thread
   crash.exe abort     abort() (mingw-w64 links msvcrt.dll: raise(SIGABRT), then _exit(3))
   crash.exe fastfail  __fastfail(FAST_FAIL_FATAL_APP_EXIT): what the UCRT's abort() does
   crash.exe handled   the same write, answered by a vectored exception handler that
                       skips the faulting instruction; then exits HANDLED_EXIT
   crash.exe wait GO   polls until the file GO exists (a watcher attached), then av
   crash.exe layout OUT  writes the debugging structures' sizes and offsets as JSON
*/
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#define BAD_ADDRESS 0xBAD8  /* below 64 KiB: never mapped on Windows (nor under Wine) */
#define HANDLED_EXIT 7

__attribute__((noinline)) void mdk_crash_write(volatile int *p) {
    /* one instruction with a known length the handler can skip:
       movl $42, (%rax) is c7 00 2a 00 00 00, 6 bytes */
    __asm__ volatile("movl $42, (%0)" : : "a"(p) : "memory");
}

static LONG WINAPI skip_fault(EXCEPTION_POINTERS *info) {
    if (info->ExceptionRecord->ExceptionCode == EXCEPTION_ACCESS_VIOLATION
            && info->ExceptionRecord->ExceptionInformation[1] == BAD_ADDRESS) {
        info->ContextRecord->Rip += 6;
        return EXCEPTION_CONTINUE_EXECUTION;
    }
    return EXCEPTION_CONTINUE_SEARCH;
}

static DWORD WINAPI crash_thread(void *arg) {
    (void)arg;
    mdk_crash_write((volatile int *)BAD_ADDRESS);
    return 0;
}

#define FIELD(out, type, member) \
    fprintf(out, "\"" #type "." #member "\": [%u, %u], ", (unsigned)offsetof(type, member), \
            (unsigned)sizeof(((type *)0)->member))
#define SIZE(out, type) fprintf(out, "\"" #type "\": %u, ", (unsigned)sizeof(type))

static int layout(const char *path) {
    FILE *out = fopen(path, "w");
    if (!out) return 2;
    fprintf(out, "{");
    SIZE(out, DEBUG_EVENT); SIZE(out, EXCEPTION_RECORD); SIZE(out, CONTEXT);
    SIZE(out, EXCEPTION_DEBUG_INFO); SIZE(out, CREATE_PROCESS_DEBUG_INFO);
    SIZE(out, CREATE_THREAD_DEBUG_INFO); SIZE(out, LOAD_DLL_DEBUG_INFO);
    SIZE(out, OUTPUT_DEBUG_STRING_INFO); SIZE(out, EXCEPTION_POINTERS);
    FIELD(out, DEBUG_EVENT, dwDebugEventCode); FIELD(out, DEBUG_EVENT, dwProcessId);
    FIELD(out, DEBUG_EVENT, dwThreadId); FIELD(out, DEBUG_EVENT, u);
    FIELD(out, EXCEPTION_DEBUG_INFO, ExceptionRecord);
    FIELD(out, EXCEPTION_DEBUG_INFO, dwFirstChance);
    FIELD(out, EXCEPTION_RECORD, ExceptionCode); FIELD(out, EXCEPTION_RECORD, ExceptionFlags);
    FIELD(out, EXCEPTION_RECORD, ExceptionRecord);
    FIELD(out, EXCEPTION_RECORD, ExceptionAddress);
    FIELD(out, EXCEPTION_RECORD, NumberParameters);
    FIELD(out, EXCEPTION_RECORD, ExceptionInformation);
    FIELD(out, CREATE_PROCESS_DEBUG_INFO, hFile); FIELD(out, CREATE_PROCESS_DEBUG_INFO, hProcess);
    FIELD(out, CREATE_PROCESS_DEBUG_INFO, hThread);
    FIELD(out, CREATE_PROCESS_DEBUG_INFO, lpBaseOfImage);
    FIELD(out, CREATE_PROCESS_DEBUG_INFO, lpThreadLocalBase);
    FIELD(out, CREATE_PROCESS_DEBUG_INFO, lpStartAddress);
    FIELD(out, CREATE_PROCESS_DEBUG_INFO, lpImageName);
    FIELD(out, CREATE_PROCESS_DEBUG_INFO, fUnicode);
    FIELD(out, CREATE_THREAD_DEBUG_INFO, hThread);
    FIELD(out, CREATE_THREAD_DEBUG_INFO, lpStartAddress);
    FIELD(out, LOAD_DLL_DEBUG_INFO, hFile); FIELD(out, LOAD_DLL_DEBUG_INFO, lpBaseOfDll);
    FIELD(out, LOAD_DLL_DEBUG_INFO, lpImageName); FIELD(out, LOAD_DLL_DEBUG_INFO, fUnicode);
    FIELD(out, EXIT_PROCESS_DEBUG_INFO, dwExitCode);
    FIELD(out, OUTPUT_DEBUG_STRING_INFO, nDebugStringLength);
    FIELD(out, CONTEXT, ContextFlags); FIELD(out, CONTEXT, Rsp); FIELD(out, CONTEXT, Rip);
    FIELD(out, CONTEXT, FltSave); FIELD(out, CONTEXT, VectorRegister);
    FIELD(out, CONTEXT, LastExceptionFromRip);
    fprintf(out, "\"CONTEXT.align\": %u}\n", (unsigned)__alignof__(CONTEXT));
    fclose(out);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "av";
    if (!strcmp(mode, "layout") && argc > 2) return layout(argv[2]);
    if (!strcmp(mode, "av")) mdk_crash_write((volatile int *)BAD_ADDRESS);
    if (!strcmp(mode, "thread")) {
        HANDLE t = CreateThread(NULL, 0, crash_thread, NULL, 0, NULL);
        WaitForSingleObject(t, INFINITE);
    }
    if (!strcmp(mode, "abort")) abort();
    if (!strcmp(mode, "fastfail")) __asm__ volatile("int $0x29" : : "c"(7));  /* __fastfail */
    if (!strcmp(mode, "handled")) {
        AddVectoredExceptionHandler(1, skip_fault);
        mdk_crash_write((volatile int *)BAD_ADDRESS);
        return HANDLED_EXIT;
    }
    if (!strcmp(mode, "wait") && argc > 2) {
        while (GetFileAttributesA(argv[2]) == INVALID_FILE_ATTRIBUTES) Sleep(20);
        mdk_crash_write((volatile int *)BAD_ADDRESS);
    }
    return 1;
}
