// A persistent harness around Breakpad's live dumper, so a benchmark can time
// ExceptionHandler::WriteMinidumpForChild in-process (no process start-up in the figure).
//
// Reads lines "dump PID DIR" on stdin; for each, calls
// WriteMinidumpForChild(PID, PID, DIR, callback, NULL) and prints
// "DONE <ok 0|1> <wall ns> <path>". EOF ends it.
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <string>

#include "client/linux/handler/exception_handler.h"

static std::string last_path;

static bool on_dump(const google_breakpad::MinidumpDescriptor& descriptor, void*, bool succeeded) {
    last_path = descriptor.path();
    return succeeded;
}

static long long now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main() {
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        int pid;
        char dir[4000];
        if (sscanf(line, "dump %d %3999s", &pid, dir) != 2) {
            printf("ERROR bad command\n");
            fflush(stdout);
            continue;
        }
        last_path.clear();
        long long t0 = now_ns();
        bool ok = google_breakpad::ExceptionHandler::WriteMinidumpForChild(pid, pid, dir, on_dump,
                                                                          NULL);
        long long t1 = now_ns();
        printf("DONE %d %lld %s\n", ok ? 1 : 0, t1 - t0, last_path.c_str());
        fflush(stdout);
    }
    return 0;
}
