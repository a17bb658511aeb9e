/* Shared by the C targets and benchmarks that measure the pause a dump inflicts:
 * a thread that wakes every 1 ms and records the largest gap it saw between wake-ups.
 * A header (not a .c file) because tests/conftest.py compiles every .c file in
 * tests/targets as its own program. */
#ifndef MDK_HEARTBEAT_H
#define MDK_HEARTBEAT_H

#include <time.h>

static volatile long long max_gap_ns;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Never returns: sleeps 1 ms at a time and keeps max_gap_ns up to date. */
static void heartbeat_loop(void) {
    long long last = now_ns();
    for (;;) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        long long t = now_ns();
        if (t - last > max_gap_ns) max_gap_ns = t - last;
        last = t;
    }
}

#endif
