/* A small Windows C target for the Wine suite (x86_64-w64-mingw32-gcc target.c -o target.exe).
 *
 * target.exe READY: three worker threads and the main thread, each named with
 * SetThreadDescription ("mdk-main", "mdk-worker-N"), each with a known marker array on
 * its stack, and a 64 KiB heap block holding a known pattern. When every thread is
 * parked in Sleep it writes READY (JSON: pid, image base, thread ids, marker and heap
 * addresses),
 * then sleeps until killed. */
#include <windows.h>
#include <stdio.h>

#define WORKERS 3
#define MARKER_WORDS 8
#define HEAP_BYTES 65536

typedef HRESULT (WINAPI *SetThreadDescriptionFn)(HANDLE, PCWSTR);

static volatile LONG parked;
static DWORD tids[WORKERS + 1];
static ULONG_PTR markers[WORKERS + 1];

/* Word k of thread i's stack marker: "MDKSTK" i k, easy to find in a hex dump. */
static unsigned long long marker_word(int thread, int k)
{
    return 0x4D444B53544B0000ULL | ((unsigned long long)thread << 8) | (unsigned long long)k;
}

static void park(int index)
{
    volatile unsigned long long marker[MARKER_WORDS];
    for (int k = 0; k < MARKER_WORDS; k++)
        marker[k] = marker_word(index, k);
    markers[index] = (ULONG_PTR)marker;
    tids[index] = GetCurrentThreadId();
    InterlockedIncrement(&parked);
    for (;;)
        Sleep(INFINITE);
}

static DWORD WINAPI worker(LPVOID arg)
{
    park((int)(INT_PTR)arg);
    return 0;
}

int wmain(int argc, wchar_t **argv)
{
    if (argc != 2)
        return 2;
    SetThreadDescriptionFn describe = (SetThreadDescriptionFn)(void *)GetProcAddress(
        GetModuleHandleW(L"kernelbase.dll"), "SetThreadDescription");
    unsigned int *heap = HeapAlloc(GetProcessHeap(), 0, HEAP_BYTES);
    for (unsigned int k = 0; k < HEAP_BYTES / 4; k++)
        heap[k] = 0xC0DE0000u | (k & 0xFFFFu);
    if (describe)
        describe(GetCurrentThread(), L"mdk-main");
    for (int i = 1; i <= WORKERS; i++) {
        HANDLE thread = CreateThread(NULL, 0, worker, (LPVOID)(INT_PTR)i, 0, NULL);
        if (!thread)
            return 3;
        wchar_t name[32];
        swprintf(name, 32, L"mdk-worker-%d", i);
        if (describe)
            describe(thread, name);
        CloseHandle(thread);
    }
    while (parked < WORKERS)
        Sleep(1);
    /* The main thread's marker: its own frame, then the JSON, then it parks. */
    volatile unsigned long long marker[MARKER_WORDS];
    for (int k = 0; k < MARKER_WORDS; k++)
        marker[k] = marker_word(0, k);
    markers[0] = (ULONG_PTR)marker;
    tids[0] = GetCurrentThreadId();

    wchar_t tmp[MAX_PATH + 8];
    swprintf(tmp, MAX_PATH + 8, L"%ls.tmp", argv[1]);
    FILE *out = _wfopen(tmp, L"w");
    if (!out)
        return 4;
    fprintf(out, "{\"pid\": %lu, \"named\": %d, \"image\": %llu, \"heap\": %llu, "
                 "\"heap_size\": %d, \"threads\": [", GetCurrentProcessId(), describe != NULL,
            (unsigned long long)(ULONG_PTR)GetModuleHandleW(NULL),
            (unsigned long long)(ULONG_PTR)heap, HEAP_BYTES);
    for (int i = 0; i <= WORKERS; i++)
        fprintf(out, "%s{\"tid\": %lu, \"name\": \"%s%.0d\", \"marker\": %llu}",
                i ? ", " : "", tids[i], i ? "mdk-worker-" : "mdk-main", i,
                (unsigned long long)markers[i]);
    fprintf(out, "]}\n");
    fclose(out);
    if (!MoveFileExW(tmp, argv[1], MOVEFILE_REPLACE_EXISTING))
        return 5;
    for (;;)
        Sleep(INFINITE);
}
