/* Targets for `minidumpkit run` / Watcher tests: one behaviour per argv[1].
 *
 *   segv          crash_here() writes to BAD_ADDRESS (SIGSEGV, SEGV_MAPERR)
 *   segv-on-input the same once a line is read from stdin
 *   abort         abort_here() calls abort() (SIGABRT)
 *   thread-segv   a second thread named "crasher" runs thread_crash_here(), which
 *                 writes to BAD_ADDRESS; the main thread waits in pthread_join
 *   handled       a SIGSEGV handler survives the fault (siglongjmp), exit code 7
 *   reraise       a SIGSEGV handler that resets SIGSEGV to SIG_DFL and re-raises
 *                 (what faulthandler does), then the fault is fatal
 *   deadlock      two threads take two mutexes in opposite orders and deadlock
 *   deadlock-with-worker
 *                 the same ABBA deadlock (threads "lockerA" and "lockerB"), while the
 *                 main thread keeps running (a 50 ms sleep loop)
 *   blocked-no-cycle
 *                 "holder" takes two mutexes and sleeps; "waiter1" and "waiter2" each
 *                 wait for one of them (no cycle); prints "BLOCKED w1=TID w2=TID"; the
 *                 main thread runs a 50 ms sleep loop until SIGTERM, then exits 0
 *   idle SECONDS  an epoll_wait loop woken every 100 ms, for SECONDS, exit 0
 *   usr1 [h]      waits for SIGUSR1 ("h": with a handler, counting them) and prints
 *                 "usr1 N" on each; exits 0 on SIGTERM
 *   sleep SECONDS sleep, then exit 3
 *   spin SECONDS  burn CPU for SECONDS, then exit 0
 *   grow MB       touch MB more megabytes, 10 a second, then sleep 2 and exit 0
 * It prints "READY pid=PID" once set up.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define BAD_ADDRESS 0xdead0000UL

static void ready(void) {
    printf("READY pid=%d\n", getpid());
    fflush(stdout);
}

__attribute__((noinline)) void crash_here(void) {
    *(volatile int *)BAD_ADDRESS = 42;
}

__attribute__((noinline)) void abort_here(void) {
    abort();
}

__attribute__((noinline)) void thread_crash_here(void) {
    *(volatile int *)BAD_ADDRESS = 43;
}

static void *crasher(void *arg) {
    (void)arg;
    prctl(PR_SET_NAME, "crasher");
    usleep(200 * 1000);
    thread_crash_here();
    return NULL;
}

static sigjmp_buf recover;
static void on_segv_recover(int sig) { (void)sig; siglongjmp(recover, 1); }

static void on_segv_reraise(int sig) {
    signal(sig, SIG_DFL);
    raise(sig);
}

static pthread_mutex_t first = PTHREAD_MUTEX_INITIALIZER, second = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_locked;

static void *lock_second_then_first(void *arg) {
    (void)arg;
    prctl(PR_SET_NAME, "locker");
    pthread_mutex_lock(&second);
    pthread_barrier_wait(&both_locked);
    pthread_mutex_lock(&first);
    return NULL;
}

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER, lock_b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t abba;

static void *abba_thread(void *arg) {
    int a_first = arg != NULL;
    prctl(PR_SET_NAME, a_first ? "lockerA" : "lockerB");
    pthread_mutex_lock(a_first ? &lock_a : &lock_b);
    pthread_barrier_wait(&abba);
    pthread_mutex_lock(a_first ? &lock_b : &lock_a);
    return NULL;
}

static pid_t waiter_tid[2];

static void *holder(void *arg) {
    (void)arg;
    prctl(PR_SET_NAME, "holder");
    pthread_mutex_lock(&lock_a);
    pthread_mutex_lock(&lock_b);
    pthread_barrier_wait(&abba);
    for (;;)
        sleep(1000);
    return NULL;
}

static void *waiter(void *arg) {
    int which = arg != NULL;
    prctl(PR_SET_NAME, which ? "waiter2" : "waiter1");
    waiter_tid[which] = gettid();
    pthread_barrier_wait(&abba);
    pthread_mutex_lock(which ? &lock_b : &lock_a);
    return NULL;
}

static volatile sig_atomic_t usr1_count, term;
static void on_usr1(int sig) { (void)sig; usr1_count++; }
static void on_term(int sig) { (void)sig; term = 1; }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "segv")) {
        ready();
        usleep(100 * 1000);
        crash_here();
    } else if (!strcmp(mode, "segv-on-input")) {
        char line[16];
        ready();
        if (fgets(line, sizeof line, stdin))
            crash_here();
        return 0;
    } else if (!strcmp(mode, "abort")) {
        ready();
        abort_here();
    } else if (!strcmp(mode, "thread-segv")) {
        pthread_t t;
        ready();
        pthread_create(&t, NULL, crasher, NULL);
        pthread_join(t, NULL);
    } else if (!strcmp(mode, "handled") || !strcmp(mode, "reraise")) {
        signal(SIGSEGV, !strcmp(mode, "handled") ? on_segv_recover : on_segv_reraise);
        ready();
        if (sigsetjmp(recover, 1) == 0)
            crash_here();
        printf("survived\n");
        return 7;
    } else if (!strcmp(mode, "deadlock")) {
        pthread_t t;
        pthread_barrier_init(&both_locked, NULL, 2);
        pthread_create(&t, NULL, lock_second_then_first, NULL);
        pthread_mutex_lock(&first);
        pthread_barrier_wait(&both_locked);
        ready();
        printf("DEADLOCKED\n");
        fflush(stdout);
        pthread_mutex_lock(&second);
        pthread_join(t, NULL);
    } else if (!strcmp(mode, "deadlock-with-worker")) {
        pthread_t a, b;
        pthread_barrier_init(&abba, NULL, 3);
        pthread_create(&a, NULL, abba_thread, (void *)1);
        pthread_create(&b, NULL, abba_thread, NULL);
        pthread_barrier_wait(&abba);
        ready();
        printf("DEADLOCKED\n");
        fflush(stdout);
        for (;;)
            usleep(50 * 1000);
    } else if (!strcmp(mode, "blocked-no-cycle")) {
        pthread_t h, w1, w2;
        signal(SIGTERM, on_term);
        pthread_barrier_init(&abba, NULL, 4);
        pthread_create(&h, NULL, holder, NULL);
        pthread_create(&w1, NULL, waiter, NULL);
        pthread_create(&w2, NULL, waiter, (void *)1);
        pthread_barrier_wait(&abba);
        ready();
        printf("BLOCKED w1=%d w2=%d\n", waiter_tid[0], waiter_tid[1]);
        fflush(stdout);
        while (!term)
            usleep(50 * 1000);
        return 0;
    } else if (!strcmp(mode, "idle")) {
        int ep = epoll_create1(0);
        struct epoll_event ev;
        time_t end = time(NULL) + (argc > 2 ? atoi(argv[2]) : 5);
        ready();
        while (time(NULL) < end)
            epoll_wait(ep, &ev, 1, 100);
        return 0;
    } else if (!strcmp(mode, "usr1")) {
        if (argc > 2 && !strcmp(argv[2], "h"))
            signal(SIGUSR1, on_usr1);
        signal(SIGTERM, on_term);
        ready();
        int seen = 0;
        while (!term) {
            pause();
            if (usr1_count != seen) {
                seen = usr1_count;
                printf("usr1 %d\n", seen);
                fflush(stdout);
            }
        }
        return 0;
    } else if (!strcmp(mode, "spin")) {
        time_t end = time(NULL) + (argc > 2 ? atoi(argv[2]) : 4);
        volatile unsigned long n = 0;
        ready();
        while (time(NULL) < end)
            n++;
        return 0;
    } else if (!strcmp(mode, "grow")) {
        int mb = argc > 2 ? atoi(argv[2]) : 100;
        ready();
        for (int i = 0; i < mb; i++) {
            memset(malloc(1 << 20), 1, 1 << 20);
            usleep(100 * 1000);
        }
        sleep(2);
        return 0;
    } else if (!strcmp(mode, "sleep")) {
        ready();
        sleep(argc > 2 ? atoi(argv[2]) : 5);
        return 3;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
