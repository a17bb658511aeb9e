/* A target that keeps changing under a dump, for tests/stress/test_churn.py.
 *
 *   churn_target threads   a thread creates short-lived threads without pause
 *   churn_target fork      a thread forks children that exit at once, and reaps them
 *   churn_target exec      a thread re-executes the program every 2-5 ms (same pid;
 *                          the new image skips READY and serves the same stdin)
 *   churn_target exit MS   exits (status 0) MS milliseconds after READY
 *   churn_target nodump    prctl(PR_SET_DUMPABLE, 0) first, then nothing special
 *   churn_target plain     nothing special
 *
 * Every mode runs a checker thread: every 1 ms it increments `ticks` and verifies a
 * checksummed array (selfcheck_errors). Commands on stdin, answers on stdout:
 *   status -> "STATUS ticks=N selfcheck_errors=N spawned=N execs=N"
 *   exit MS -> "EXITING", then exits (status 0) MS milliseconds later
 *   quit   -> exits 0
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AREA 4096

static volatile unsigned long long ticks, spawned;
static volatile int selfcheck_errors;
static unsigned char area[AREA];
static uint64_t area_sum;
static int execs;
static char self_path[4096];

static uint64_t checksum(void) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < AREA; i++) h = (h ^ area[i]) * 1099511628211ULL;
    return h;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {}
}

static void *checker(void *arg) {
    (void)arg;
    for (;;) {
        sleep_us(1000);
        if (checksum() != area_sum) selfcheck_errors++;
        ticks++;
    }
    return NULL;
}

static void *short_lived(void *arg) {
    (void)arg;
    volatile int x = 0;
    for (int i = 0; i < 1000; i++) x += i;
    return NULL;
}

static void *thread_churner(void *arg) {
    (void)arg;
    for (;;) {
        pthread_t t[4];
        int n = 0;
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[n], NULL, short_lived, NULL) == 0) n++;
        for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
        spawned += n;
    }
    return NULL;
}

static void *fork_churner(void *arg) {
    (void)arg;
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid > 0) {
            waitpid(pid, NULL, 0);
            spawned++;
        }
        sleep_us(200);
    }
    return NULL;
}

static void *exec_churner(void *arg) {
    (void)arg;
    sleep_us(2000 + rand() % 3000);
    char count[32];
    snprintf(count, sizeof count, "%d", execs + 1);
    char *argv[] = {self_path, "exec", "again", count, NULL};
    execv(self_path, argv);
    perror("execv");
    exit(3);
}

static void *exiter(void *arg) {
    sleep_us((long)(intptr_t)arg * 1000);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s threads|fork|exec|exit MS|nodump|plain\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int again = argc >= 4 && !strcmp(argv[2], "again");
    if (again) execs = atoi(argv[3]);
    if (readlink("/proc/self/exe", self_path, sizeof self_path - 1) < 0) return 3;
    srand((unsigned)getpid() ^ (unsigned)execs);
    if (!strcmp(mode, "nodump") && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return 4;
    for (int i = 0; i < AREA; i++) area[i] = (unsigned char)(i * 7 + 3);
    area_sum = checksum();
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t t;
    pthread_create(&t, NULL, checker, NULL);
    if (!strcmp(mode, "threads")) pthread_create(&t, NULL, thread_churner, NULL);
    else if (!strcmp(mode, "fork")) pthread_create(&t, NULL, fork_churner, NULL);
    else if (!strcmp(mode, "exec")) pthread_create(&t, NULL, exec_churner, NULL);
    else if (!strcmp(mode, "exit"))
        pthread_create(&t, NULL, exiter, (void *)(intptr_t)(argc > 2 ? atoi(argv[2]) : 10));
    if (!again) printf("READY pid=%d mode=%s\n", getpid(), mode);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "status", 6))
            printf("STATUS ticks=%llu selfcheck_errors=%d spawned=%llu execs=%d\n", ticks,
                   selfcheck_errors, spawned, execs);
        else if (!strncmp(line, "exit ", 5)) {
            pthread_create(&t, NULL, exiter, (void *)(intptr_t)atoi(line + 5));
            printf("EXITING\n");
        } else if (!strncmp(line, "quit", 4))
            return 0;
    }
    return 0;
}
