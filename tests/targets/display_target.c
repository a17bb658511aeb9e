/* A target for the notebook display tests (tests/test_display.py): one thread per
 * name given on the command line, each named with pthread_setname_np (so a name may be
 * anything a dump can carry, markup included) and parked in pause().
 *
 * Prints "READY pid=P t0=TID t1=TID ..." once every thread is named, then waits for
 * EOF on stdin and exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_THREADS 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t named = PTHREAD_COND_INITIALIZER;
static pid_t tids[MAX_THREADS];
static int ready;

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

int main(int argc, char **argv) {
    int count = argc - 1 < MAX_THREADS ? argc - 1 : MAX_THREADS;
    static struct job jobs[MAX_THREADS];
    for (int i = 0; i < count; i++) {
        pthread_t thread;
        jobs[i] = (struct job){i, argv[i + 1]};
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
    printf("\n");
    fflush(stdout);
    char buffer[64];
    while (fread(buffer, 1, sizeof buffer, stdin) > 0) {
    }
    return 0;
}
