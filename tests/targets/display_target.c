/* A target for the notebook display tests (tests/test_display.py): one thread per
 * name given on the command line, each named with pthread_setname_np (so a name may be
 * anything a dump can carry, markup included) and parked in pause() (called from
 * park()).
 *
 * With --mutex first: two more threads, "lock-holder" that locks a mutex and parks in
 * pause(), and "lock-waiter" that then blocks in pthread_mutex_lock on that mutex.
 *
 * Prints "READY pid=P t0=TID t1=TID ... [holder=TID waiter=TID mutex=ADDR]" once every
 * thread is named (and the waiter is on its way to block), then waits for EOF on stdin
 * and exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_THREADS 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t named = PTHREAD_COND_INITIALIZER;
static pid_t tids[MAX_THREADS];
static int ready;
static pthread_mutex_t shared = PTHREAD_MUTEX_INITIALIZER;
static volatile pid_t holder_tid, waiter_tid;

struct job { int index; const char *name; };

static void *park(void *arg) {
    struct job *job = arg;
    pthread_setname_np(pthread_self(), job->name);
    pthread_mutex_lock(&lock);
    tids[job->index] = (pid_t)syscall(SYS_gettid);
    ready++;
    pthread_cond_signal(&named);
    pthread_mutex_unlock(&lock);
    for (;;)
        pause();
    return NULL;
}

static void *hold(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "lock-holder");
    pthread_mutex_lock(&shared);
    holder_tid = (pid_t)syscall(SYS_gettid);
    for (;;)
        pause();
    return NULL;
}

static void *wait_for_lock(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "lock-waiter");
    waiter_tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&shared);  /* never returns: the holder keeps it */
    return NULL;
}

int main(int argc, char **argv) {
    int mutex = argc > 1 && strcmp(argv[1], "--mutex") == 0;
    char **names = argv + 1 + mutex;
    int given = argc - 1 - mutex;
    int count = given < MAX_THREADS ? given : MAX_THREADS;
    static struct job jobs[MAX_THREADS];
    if (mutex) {
        pthread_t holder, waiter;
        pthread_create(&holder, NULL, hold, NULL);
        while (!holder_tid)
            usleep(1000);
        pthread_create(&waiter, NULL, wait_for_lock, NULL);
        while (!waiter_tid)
            usleep(1000);
    }
    for (int i = 0; i < count; i++) {
        pthread_t thread;
        jobs[i] = (struct job){i, names[i]};
        if (pthread_create(&thread, NULL, park, &jobs[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    pthread_mutex_lock(&lock);
    while (ready < count)
        pthread_cond_wait(&named, &lock);
    pthread_mutex_unlock(&lock);
    printf("READY pid=%d", (int)getpid());
    for (int i = 0; i < count; i++)
        printf(" t%d=%d", i, (int)tids[i]);
    if (mutex)
        printf(" holder=%d waiter=%d mutex=%p", (int)holder_tid, (int)waiter_tid,
               (void *)&shared);
    printf("\n");
    fflush(stdout);
    char buffer[64];
    while (fread(buffer, 1, sizeof buffer, stdin) > 0) {
    }
    return 0;
}
