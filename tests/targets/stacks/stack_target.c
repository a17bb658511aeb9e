/* A dump target with known call chains, for tests/test_stackwalk.py.
 *
 * Built by the test in two translation units: this file at -O0 with frame pointers,
 * leaf.c at -O2 -fomit-frame-pointer (so only CFI walks out of it).
 *
 * Threads, each parked in a known chain (innermost first):
 *   main        read() <- command_loop <- main                      (stdin protocol)
 *   stk-static  read() <- static_wait <- static_level1 <- start_thread <- clone3
 *               (static_wait is a file-local function: only .symtab names it)
 *   stk-signal  read() <- on_signal <- __restore_rt <- (pthread_kill internals)
 *               <- raise_level2 <- raise_level1: blocked inside a SIGUSR2 handler
 *   stk-leaf    leaf_wait (raw syscall, no calls) <- leaf_level2 <- leaf_level1
 *               (all three from leaf.c: -O2 -fomit-frame-pointer)
 * Prints "READY static=TID signal=TID leaf=TID" once all are parked on their way in;
 * "quit" on stdin exits.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

long leaf_level1(int fd);  /* leaf.c */

static int block_pipe[2];  /* nobody writes: every reader blocks until exit */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int started;
static volatile pid_t tid_static, tid_signal, tid_leaf;

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static void announce(volatile pid_t *slot, const char *name) {
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&lock);
    *slot = gettid_();
    started++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static NOINLINE long static_wait(int fd) {
    char byte;
    long got = read(fd, &byte, 1);
    return got + 1;
}

static NOINLINE void *static_level1(void *arg) {
    (void)arg;
    announce(&tid_static, "stk-static");
    return (void *)static_wait(block_pipe[0]);
}

NOINLINE void on_signal(int sig) {
    char byte;
    (void)sig;
    announce(&tid_signal, "stk-signal");
    if (read(block_pipe[0], &byte, 1) < 0)
        _exit(3);
}

NOINLINE int raise_level2(void) {
    int rc = pthread_kill(pthread_self(), SIGUSR2);
    return rc + 1;
}

NOINLINE void *raise_level1(void *arg) {
    (void)arg;
    return (void *)(long)raise_level2();
}

NOINLINE void *leaf_thread(void *arg) {
    (void)arg;
    announce(&tid_leaf, "stk-leaf");
    return (void *)leaf_level1(block_pipe[0]);
}

NOINLINE int command_loop(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "quit", 4) == 0)
            return 0;
        printf("UNKNOWN\n");
        fflush(stdout);
    }
    return 1;
}

int main(void) {
    pthread_t t;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR2, &sa, NULL);
    if (pipe(block_pipe) != 0)
        return 2;
    pthread_create(&t, NULL, static_level1, NULL);
    pthread_create(&t, NULL, raise_level1, NULL);
    pthread_create(&t, NULL, leaf_thread, NULL);
    pthread_mutex_lock(&lock);
    while (started < 3)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    printf("READY static=%d signal=%d leaf=%d\n", tid_static, tid_signal, tid_leaf);
    fflush(stdout);
    return command_loop();
}
