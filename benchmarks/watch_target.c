/* The child for bench_watch.py: one kind of work, timed by itself.

   watch_target cpu N       N rounds of an arithmetic loop (no system call)
   watch_target threads N   create and join N threads, one at a time
   watch_target signals N   send itself SIGUSR1 N times (a handler counts them)
   watch_target idle N S    N threads sleeping 100 ms at a time, for S seconds

   Prints the seconds the work took (CLOCK_MONOTONIC), measured inside, so that the
   start-up of a watcher around it is not in the figure. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t received;
static volatile int stop_idle;

static void on_usr1(int sig) { (void)sig; received++; }

static void *nothing(void *arg) { return arg; }

static void *sleeper(void *arg) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    while (!stop_idle) nanosleep(&ts, NULL);
    return arg;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s cpu|threads|signals|idle N [SECONDS]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    double start = now();
    if (!strcmp(argv[1], "cpu")) {
        volatile unsigned long x = 1;
        for (long i = 0; i < n; i++)
            for (int j = 0; j < 1000000; j++) x = x * 6364136223846793005UL + 1442695040888963407UL;
    } else if (!strcmp(argv[1], "threads")) {
        for (long i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, nothing, NULL) != 0) { perror("pthread_create"); return 1; }
            pthread_join(t, NULL);
        }
    } else if (!strcmp(argv[1], "signals")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        for (long i = 0; i < n; i++) kill(getpid(), SIGUSR1);
        if (received != n) { fprintf(stderr, "received %d of %ld\n", (int)received, n); return 1; }
    } else if (!strcmp(argv[1], "idle") && argc == 4) {
        pthread_t *t = calloc(n, sizeof *t);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        for (long i = 0; i < n; i++)
            if (pthread_create(&t[i], &attr, sleeper, NULL) != 0) { perror("pthread_create"); return 1; }
        printf("READY\n");
        fflush(stdout);
        double seconds = atof(argv[3]);
        struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
        while (nanosleep(&ts, &ts) != 0) {}
        stop_idle = 1;
        for (long i = 0; i < n; i++) pthread_join(t[i], NULL);
    } else {
        fprintf(stderr, "unknown work %s\n", argv[1]);
        return 2;
    }
    printf("%.6f\n", now() - start);
    return 0;
}
