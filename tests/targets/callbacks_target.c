/* A dump target for tests/test_callbacks.py: known threads, known memory, a hole.
 *
 * Threads, each named with pthread_setname_np and parked in pause() with a marker
 * on its own stack ("CB-MARK-<name>" followed by 48 bytes (i * 11 + name[3]) & 0xff):
 *   cb-keep, cb-drop, cb-nostack
 * Memory (anonymous private mmaps made after the threads, so no thread stack or
 * malloc arena lands in the hole):
 *   buffer  BUFFER_PAGES pages, byte i = ((i * 151 + 29) ^ (i >> 8)) & 0xff
 *   holey   3 pages, byte i = (0x5a ^ (i * 7)) & 0xff, then its middle page unmapped
 * Commands on stdin: "ping" -> "PONG", "quit" -> exit 0.
 * On start it prints one READY line with the tids, addresses and the page size.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define BUFFER_PAGES 4

struct parked {
    const char *name;
    volatile pid_t tid;
    volatile uintptr_t marker;
};

static struct parked threads[] = {{"cb-keep", 0, 0}, {"cb-drop", 0, 0}, {"cb-nostack", 0, 0}};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ready;

NOINLINE static void park(struct parked *self) {
    volatile unsigned char marker[64];
    size_t n = strlen("CB-MARK-") + strlen(self->name);
    memcpy((void *)marker, "CB-MARK-", 8);
    memcpy((void *)(marker + 8), self->name, strlen(self->name));
    for (size_t i = n; i < sizeof marker; i++) marker[i] = (unsigned char)(i * 11 + self->name[3]);
    pthread_mutex_lock(&lock);
    self->tid = (pid_t)syscall(SYS_gettid);
    self->marker = (uintptr_t)marker;
    ready++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (;;) pause();
}

static void *thread_main(void *arg) {
    struct parked *self = arg;
    pthread_setname_np(pthread_self(), self->name);
    park(self);
    return NULL;
}

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    pthread_t t;
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t, NULL, thread_main, &threads[i])) return 1;
    pthread_mutex_lock(&lock);
    while (ready < 3) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);

    unsigned char *buffer = mmap(NULL, BUFFER_PAGES * page, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *holey = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffer == MAP_FAILED || holey == MAP_FAILED) return 1;
    for (long i = 0; i < BUFFER_PAGES * page; i++)
        buffer[i] = (unsigned char)((i * 151 + 29) ^ (i >> 8));
    for (long i = 0; i < 3 * page; i++) holey[i] = (unsigned char)(0x5a ^ (i * 7));
    if (munmap(holey + page, page)) return 1;

    printf("READY pid=%d keep=%d drop=%d nostack=%d keep_marker=0x%lx drop_marker=0x%lx "
           "nostack_marker=0x%lx buffer=0x%lx buffer_size=%ld holey=0x%lx page=%ld\n",
           getpid(), threads[0].tid, threads[1].tid, threads[2].tid,
           (unsigned long)threads[0].marker, (unsigned long)threads[1].marker,
           (unsigned long)threads[2].marker, (unsigned long)buffer, BUFFER_PAGES * page,
           (unsigned long)holey, page);
    fflush(stdout);

    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strcmp(line, "ping\n")) {
            printf("PONG\n");
            fflush(stdout);
        } else if (!strcmp(line, "quit\n")) {
            return 0;
        }
    }
    return 0;
}
