/* Benchmark target: N threads in total (argv[1], at least 2): main reads commands on
 * stdin, one heartbeat thread wakes every 1 ms and records the largest gap between two
 * wake-ups (what a pause of the process looks like from inside), the others are parked
 * in nanosleep, futex or read like an application's idle threads.
 * Commands: "resetgap" -> "OK"; "gap" -> "GAP <max gap in microseconds>".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tests/targets/heartbeat.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int idle_pipe[2];

static void *heartbeat(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "heartbeat");
    heartbeat_loop();
    return NULL;
}

static void *idle(void *arg) {
    long kind = (long)arg % 3;
    char name[16];
    snprintf(name, sizeof name, "idle-%ld", (long)arg);
    pthread_setname_np(pthread_self(), name);
    if (kind == 0) {
        for (;;) {
            struct timespec ts = {3600, 0};
            nanosleep(&ts, NULL);
        }
    } else if (kind == 1) {
        pthread_mutex_lock(&mu);
        for (;;) pthread_cond_wait(&cv, &mu);
    } else {
        char c;
        for (;;)
            if (read(idle_pipe[0], &c, 1) < 0) return NULL;
    }
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (n < 2 || pipe(idle_pipe)) return 2;
    pthread_t t;
    pthread_create(&t, NULL, heartbeat, NULL);
    for (long i = 0; i < n - 2; i++) pthread_create(&t, NULL, idle, (void *)i);
    printf("READY pid=%d threads=%d\n", getpid(), n);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "resetgap", 8)) {
            max_gap_ns = 0;
            printf("OK\n");
        } else if (!strncmp(line, "gap", 3)) {
            printf("GAP %lld\n", max_gap_ns / 1000);
        } else {
            printf("UNKNOWN\n");
        }
        fflush(stdout);
    }
    return 0;
}
