/* A target for snapshot tests: related values that keep changing together.
 *
 * Memory (addresses printed on the READY line):
 *   priv   NPAGES private anonymous pages; the writer thread stores the generation g
 *          in word 0 of page 0, 1, ... NPAGES-1 in turn, then sets `done = g`;
 *          `cursor` (private .bss) is the index of the next page it will store to.
 *   shared one MAP_SHARED anonymous page: word 0 = g, stored after every pass
 *   dfork  one private page with MADV_DONTFORK: word 0 = g, stored after every pass
 *   state  the private .bss words gen (g of the current pass), cursor, done
 * So in a point-in-time image: priv[i] == gen for i < cursor, gen - 1 for i > cursor
 * (page `cursor` may hold either: the writer may be stopped between the two stores),
 * and shared/dfork hold done or done + 1 ... exactly: they are stored after the pass,
 * right before `done`, so shared, dfork ∈ {done, gen} with gen == done + 1 only when
 * stopped in between.
 *
 * Threads: writer (above, also re-checks each page it wrote: selfcheck_errors),
 * heartbeat (nanosleep 1 ms; largest gap), reader (read() on a pipe; EINTR count),
 * sleeper (nanosleep 300 ms; EINTR count), epoller (epoll_wait(-1) on a pipe; EINTR
 * count), main (commands on stdin).
 *
 * Commands: status, feed (8 bytes into the reader's pipe), resetgap, quit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"

#define NPAGES 1024
#define PAGE 4096

static volatile uint64_t *priv, *shared, *dfork;
static volatile uint64_t gen, cursor, done;
static volatile long selfcheck_errors;
static volatile long reader_got, reader_eintr, reader_seq_errors, sleeper_eintr, epoll_eintr;
static int reader_pipe[2], epoll_pipe[2];

static void *writer(void *arg) {
    (void)arg;
    for (;;) {
        uint64_t g = gen + 1;
        gen = g;
        for (uint64_t i = 0; i < NPAGES; i++) {
            cursor = i;
            priv[i * (PAGE / 8)] = g;
        }
        cursor = NPAGES;
        shared[0] = g;
        dfork[0] = g;
        done = g;
        for (uint64_t i = 0; i < NPAGES; i += 97)
            if (priv[i * (PAGE / 8)] != g) selfcheck_errors++;
        if (shared[0] != g || dfork[0] != g) selfcheck_errors++;
    }
    return NULL;
}

static void *heartbeat(void *arg) {
    (void)arg;
    heartbeat_loop();
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    uint64_t expect = 1;
    for (;;) {
        uint64_t v;
        ssize_t n = read(reader_pipe[0], &v, sizeof v);
        if (n < 0 && errno == EINTR) { reader_eintr++; continue; }
        if (n != sizeof v) continue;
        if (v != expect) reader_seq_errors++;
        expect = v + 1;
        reader_got += n;
    }
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 300000000};
        if (nanosleep(&ts, NULL) != 0 && errno == EINTR) sleeper_eintr++;
    }
    return NULL;
}

static void *epoller(void *arg) {
    (void)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, epoll_pipe[0], &ev);
    for (;;) {
        struct epoll_event out;
        if (epoll_wait(ep, &out, 1, -1) < 0 && errno == EINTR) epoll_eintr++;
    }
    return NULL;
}

static void spawn(void *(*fn)(void *), const char *name) {
    pthread_t t;
    pthread_create(&t, NULL, fn, NULL);
    pthread_setname_np(t, name);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    priv = mmap(NULL, (size_t)NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    dfork = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (priv == MAP_FAILED || shared == MAP_FAILED || dfork == MAP_FAILED) return 2;
    if (madvise((void *)dfork, PAGE, MADV_DONTFORK) != 0) return 3;
    memset((void *)priv, 0, (size_t)NPAGES * PAGE);
    dfork[0] = 0;
    if (pipe(reader_pipe) || pipe(epoll_pipe)) return 4;
    spawn(heartbeat, "snap-heartbeat");
    spawn(reader, "snap-reader");
    spawn(sleeper, "snap-sleeper");
    spawn(epoller, "snap-epoller");
    spawn(writer, "snap-writer");
    while (done < 2) usleep(100);
    printf("READY priv=0x%lx npages=%d shared=0x%lx dfork=0x%lx gen=0x%lx cursor=0x%lx done=0x%lx\n",
           (unsigned long)priv, NPAGES, (unsigned long)shared, (unsigned long)dfork,
           (unsigned long)&gen, (unsigned long)&cursor, (unsigned long)&done);
    char line[64];
    uint64_t seq = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "status", 6)) {
            printf("STATUS done=%llu selfcheck_errors=%ld maxgap_us=%lld reader_got=%ld "
                   "reader_eintr=%ld reader_seq_errors=%ld sleeper_eintr=%ld epoll_eintr=%ld\n",
                   (unsigned long long)done, selfcheck_errors, max_gap_ns / 1000, reader_got,
                   reader_eintr, reader_seq_errors, sleeper_eintr, epoll_eintr);
        } else if (!strncmp(line, "feed", 4)) {
            seq++;
            if (write(reader_pipe[1], &seq, sizeof seq) != sizeof seq) return 5;
            printf("FED\n");
        } else if (!strncmp(line, "resetgap", 8)) {
            max_gap_ns = 0;
            printf("GAPRESET\n");
        } else if (!strncmp(line, "quit", 4)) {
            return 0;
        }
    }
    return 0;
}
