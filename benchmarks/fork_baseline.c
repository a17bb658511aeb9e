/* Benchmark-only helper for benchmarks/bench_snapshot.py: how long fork() of a
 * process holding an N MiB touched private anonymous heap (4 KiB pages) takes, under
 * the conditions that change that cost.
 *
 *   fork_baseline MIB REPS THREADS HOLD_MS FLAGS
 *
 * THREADS: 0 = single-threaded; 1 = plus a writer thread rewriting heap pages as
 *   tests/targets/snapshot_bench.c does (one word every 7 pages, ~100k pages/s).
 * HOLD_MS: how long the child lives before it is killed (0 = it exits at once), as a
 *   snapshot's clone lives during the write.
 * FLAGS: "fork" = fork(); "files" = raw clone(CLONE_FILES | SIGCHLD), the
 *   injected call.
 * Prints one line per rep: the parent's time in the syscall, in ns.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t *heap;
static size_t heap_words;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
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

int main(int argc, char **argv) {
    if (argc < 6) return 1;
    size_t bytes = strtoul(argv[1], NULL, 10) << 20;
    int reps = atoi(argv[2]), threads = atoi(argv[3]), hold_ms = atoi(argv[4]);
    int files = !strcmp(argv[5], "files");
    heap = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (heap == MAP_FAILED) return 2;
    madvise((void *)heap, bytes, MADV_NOHUGEPAGE);
    memset((void *)heap, 0x5a, bytes);
    heap_words = bytes / 8;
    pthread_t t;
    if (threads) pthread_create(&t, NULL, writer, NULL);
    for (int r = 0; r < reps; r++) {
        struct timespec gap = {0, 200000000};
        nanosleep(&gap, NULL);
        long long t0 = now_ns();
        long pid = files ? syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0)
                         : (long)fork();
        if (pid == 0) {
            if (hold_ms) pause();
            _exit(0);
        }
        long long dt = now_ns() - t0;
        if (pid < 0) return 3;
        if (hold_ms) {
            struct timespec h = {hold_ms / 1000, (hold_ms % 1000) * 1000000L};
            nanosleep(&h, NULL);
            kill(pid, SIGKILL);
        }
        waitpid(pid, NULL, 0);
        printf("%lld\n", dt);
    }
    return 0;
}
