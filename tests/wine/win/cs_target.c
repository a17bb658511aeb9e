/* A Windows C target with critical-section waits, for the Wine suite
 * (x86_64-w64-mingw32-gcc cs_target.c -o cs_target.exe).
 *
 * cs_target.exe READY: thread "ab" holds cs_a and waits in EnterCriticalSection(&cs_b);
 * thread "ba" holds cs_b and waits for cs_a (an ABBA deadlock); thread "holder" holds
 * cs_c and sleeps; thread "chained" waits for cs_c (a chain, no cycle). The critical
 * sections are globals (.bss). When every waiter is queued on its section it writes
 * READY (JSON: pid, the sections' addresses, each thread's id and role), then sleeps
 * until killed. */
#include <windows.h>
#include <stdio.h>

static CRITICAL_SECTION cs_a, cs_b, cs_c;
static HANDLE a_held, b_held, c_held;
static DWORD tid_ab, tid_ba, tid_holder, tid_chained;

static DWORD WINAPI ab(LPVOID arg)
{
    (void)arg;
    tid_ab = GetCurrentThreadId();
    EnterCriticalSection(&cs_a);
    SetEvent(a_held);
    WaitForSingleObject(b_held, INFINITE);
    EnterCriticalSection(&cs_b);  /* never returns */
    return 0;
}

static DWORD WINAPI ba(LPVOID arg)
{
    (void)arg;
    tid_ba = GetCurrentThreadId();
    EnterCriticalSection(&cs_b);
    SetEvent(b_held);
    WaitForSingleObject(a_held, INFINITE);
    EnterCriticalSection(&cs_a);  /* never returns */
    return 0;
}

static DWORD WINAPI holder(LPVOID arg)
{
    (void)arg;
    tid_holder = GetCurrentThreadId();
    EnterCriticalSection(&cs_c);
    SetEvent(c_held);
    Sleep(INFINITE);
    return 0;
}

static DWORD WINAPI chained(LPVOID arg)
{
    (void)arg;
    tid_chained = GetCurrentThreadId();
    WaitForSingleObject(c_held, INFINITE);
    EnterCriticalSection(&cs_c);  /* never returns */
    return 0;
}

/* A waiter is queued once the section counts it: LockCount > 0 with Wine's ntdll
 * (-1 free, 0 held), or a waiter count in the high bits with Windows' encoding. */
static int contended(CRITICAL_SECTION *cs)
{
    LONG count = cs->LockCount;
    return count > 0 || (count < -1 && (-1 - count) >> 2 > 0 && !(count & 1));
}

int wmain(int argc, wchar_t **argv)
{
    if (argc != 2)
        return 2;
    InitializeCriticalSection(&cs_a);
    InitializeCriticalSection(&cs_b);
    InitializeCriticalSection(&cs_c);
    a_held = CreateEventW(NULL, TRUE, FALSE, NULL);
    b_held = CreateEventW(NULL, TRUE, FALSE, NULL);
    c_held = CreateEventW(NULL, TRUE, FALSE, NULL);
    LPTHREAD_START_ROUTINE routines[] = {ab, ba, holder, chained};
    for (int i = 0; i < 4; i++) {
        HANDLE thread = CreateThread(NULL, 0, routines[i], NULL, 0, NULL);
        if (!thread)
            return 3;
        CloseHandle(thread);
    }
    while (!contended(&cs_a) || !contended(&cs_b) || !contended(&cs_c))
        Sleep(1);
    Sleep(100);  /* the waiters go from the count to their wait on the semaphore */

    wchar_t tmp[MAX_PATH + 8];
    swprintf(tmp, MAX_PATH + 8, L"%ls.tmp", argv[1]);
    FILE *out = _wfopen(tmp, L"w");
    if (!out)
        return 4;
    fprintf(out, "{\"pid\": %lu, \"main\": %lu, \"cs_a\": %llu, \"cs_b\": %llu, "
                 "\"cs_c\": %llu, \"ab\": %lu, \"ba\": %lu, \"holder\": %lu, "
                 "\"chained\": %lu}\n", GetCurrentProcessId(), GetCurrentThreadId(),
            (unsigned long long)(ULONG_PTR)&cs_a, (unsigned long long)(ULONG_PTR)&cs_b,
            (unsigned long long)(ULONG_PTR)&cs_c, tid_ab, tid_ba, tid_holder, tid_chained);
    fclose(out);
    if (!MoveFileExW(tmp, argv[1], MOVEFILE_REPLACE_EXISTING))
        return 5;
    for (;;)
        Sleep(INFINITE);
}
