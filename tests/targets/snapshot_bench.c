/* Benchmark target for benchmarks/bench_snapshot.py (also built by the tests).
 *
 * argv[1]: heap size in MiB. The heap (private anonymous, 4 KiB pages: no
 * MADV_HUGEPAGE) is touched whole before READY. A writer thread keeps rewriting heap
 * pages (one every ~10 us), a heartbeat thread (SCHED_FIFO 10 when allowed) sleeps
 * 1 ms at a time and keeps the largest gap between two wake-ups, a reader thread is
 * blocked in read() on a pipe.
 * Commands: resetgap -> "GAPRESET"; maxgap -> "MAXGAP us=N"; quit.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"

static volatile uint64_t *heap;
static size_t heap_words;
static int pipefd[2];

static void *heartbeat(void *arg) {
    (void)arg;
    struct sched_param sp = {.sched_priority = 10};
    pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    heartbeat_loop();
    return NULL;
}

static void *writer(void *arg) {
    (void)arg;
    uint64_t stamp = 1;
    for (size_t i = 0;; i = (i + 512 * 7) % heap_words) {
        heap[i] = stamp++;
        if ((stamp & 63) == 0) {
            struct timespec ts = {0, 640000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    char c;
    for (;;) if (read(pipefd[0], &c, 1) <= 0) return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    size_t bytes = mib << 20;
    heap = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (heap == MAP_FAILED) return 2;
    madvise((void *)heap, bytes, MADV_NOHUGEPAGE);
    memset((void *)heap, 0x5a, bytes);
    heap_words = bytes / 8;
    if (pipe(pipefd)) return 3;
    pthread_t t;
    pthread_create(&t, NULL, heartbeat, NULL);
    pthread_create(&t, NULL, writer, NULL);
    pthread_create(&t, NULL, reader, NULL);
    printf("READY heap=0x%lx mib=%zu\n", (unsigned long)heap, mib);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "resetgap", 8)) { max_gap_ns = 0; printf("GAPRESET\n"); }
        else if (!strncmp(line, "maxgap", 6)) printf("MAXGAP us=%lld\n", max_gap_ns / 1000);
        else if (!strncmp(line, "quit", 4)) return 0;
    }
    return 0;
}
