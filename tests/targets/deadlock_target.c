/* Threads that wait for each other, one situation per run, for the wait-for graph tests.
 *
 *   deadlock_target SCENARIO RECORD
 *
 * Every lock taken and every wait begun is written to the file RECORD, as it happens
 * and before the call that blocks (one write(2) per line, O_APPEND):
 *   role NAME TID          a thread and its kernel id
 *   hold TID KIND ADDR N   TID holds the lock at ADDR (N times: a recursive mutex)
 *   wait TID KIND WHAT     TID is about to wait: for the lock at ADDR, read on fd N,
 *                          pthread_join of thread TID
 * then, once every other thread has recorded its wait, READY with every role's TID is
 * printed on stdout and main blocks in its last call.
 *
 * SCENARIO:
 *   abba      t1 holds A, waits for B; t2 holds B, waits for A; main joins t1
 *   cycle3    t1 A -> B, t2 B -> C, t3 C -> A; main reads stdin
 *   self      t1 locks a normal mutex twice; main reads stdin
 *   chain     main holds M and reads stdin (a pipe); t2 holds N, waits for M; t3 waits for N
 *   cond      t1 in pthread_cond_wait; main reads stdin
 *   sem       t1 in sem_wait; main reads stdin
 *   join      t1 reads an empty pipe; main joins t1
 *   rwlock    main holds rw for writing and reads stdin; t1 waits to read, t2 to write
 *   mutexes   main holds a recursive mutex twice, an error-checking, a robust and a PI
 *             mutex, and reads stdin; t_rec, t_err, t_robust, t_pi wait for them
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int record_fd;
static pthread_mutex_t A = PTHREAD_MUTEX_INITIALIZER, B = PTHREAD_MUTEX_INITIALIZER,
                       C = PTHREAD_MUTEX_INITIALIZER, M = PTHREAD_MUTEX_INITIALIZER,
                       N = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t rec, err, robust, pi;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static sem_t sem;
static int pipefd[2];
static volatile int held_count;  /* threads that took their first lock */
static volatile int waiting;     /* threads that recorded their wait (and then block) */
static volatile int tids[8];
static const char *names[8];
static int nroles;

static int gettid_(void) { return (int)syscall(SYS_gettid); }

static void record(const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (write(record_fd, line, (size_t)n) != n) abort();
    if (!strncmp(line, "wait ", 5)) __sync_fetch_and_add(&waiting, 1);
}

static void role(int slot, const char *name) {
    names[slot] = name;
    record("role %s %d\n", name, gettid_());
    tids[slot] = gettid_();
}

static void hold(const char *kind, void *lock, int times) {
    record("hold %d %s %p %d\n", gettid_(), kind, lock, times);
}

static void lock_mutex(const char *kind, pthread_mutex_t *m) {
    record("wait %d %s %p\n", gettid_(), kind, (void *)m);
    pthread_mutex_lock(m);
}

static void take(const char *kind, pthread_mutex_t *m) {
    pthread_mutex_lock(m);
    hold(kind, m, 1);
}

static void until_held(int n) { while (held_count < n) usleep(1000); }

/* abba and cycle3: each thread takes its first lock, waits until all have, takes the next */
struct pair { int slot; const char *name; pthread_mutex_t *first, *second; int all; };

static void *locker(void *arg) {
    struct pair *p = arg;
    role(p->slot, p->name);
    take("mutex", p->first);
    __sync_fetch_and_add(&held_count, 1);
    until_held(p->all);
    lock_mutex("mutex", p->second);
    return NULL;
}

static void *self_locker(void *arg) {
    role(1, "t1");
    take("mutex", &A);
    lock_mutex("mutex", &A);
    return arg;
}

static void *chain_t2(void *arg) {
    role(1, "t2");
    take("mutex", &N);
    __sync_fetch_and_add(&held_count, 1);
    lock_mutex("mutex", &M);
    return arg;
}

static void *chain_t3(void *arg) {
    role(2, "t3");
    until_held(1);
    lock_mutex("mutex", &N);
    return arg;
}

static void *cond_waiter(void *arg) {
    role(1, "t1");
    pthread_mutex_lock(&cm);
    record("wait %d condvar %p\n", gettid_(), (void *)&cond);
    for (;;) pthread_cond_wait(&cond, &cm);
    return arg;
}

static void *sem_waiter(void *arg) {
    role(1, "t1");
    record("wait %d semaphore %p\n", gettid_(), (void *)&sem);
    for (;;) sem_wait(&sem);
    return arg;
}

static void *pipe_reader(void *arg) {
    char c;
    role(1, "t1");
    record("wait %d read %d\n", gettid_(), pipefd[0]);
    while (read(pipefd[0], &c, 1) != 0) {}
    return arg;
}

static void *rw_reader(void *arg) {
    role(1, "t1");
    record("wait %d rwlock %p\n", gettid_(), (void *)&rw);
    pthread_rwlock_rdlock(&rw);
    return arg;
}

static void *rw_writer(void *arg) {
    role(2, "t2");
    record("wait %d rwlock %p\n", gettid_(), (void *)&rw);
    pthread_rwlock_wrlock(&rw);
    return arg;
}

struct waiter { int slot; const char *name; const char *kind; pthread_mutex_t *m; };

static void *mutex_waiter(void *arg) {
    struct waiter *w = arg;
    role(w->slot, w->name);
    lock_mutex(w->kind, w->m);
    return NULL;
}

static pthread_t start(void *(*fn)(void *), void *arg) {
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0) abort();
    return t;
}

static void wait_roles(int n) {
    for (int i = 1; i <= n; i++)
        while (!tids[i]) usleep(1000);
    nroles = n;
}

static void ready(void) {
    /* every other thread has recorded its wait: from here each is asleep in it or on
       its way, running, so a test waiting for every thread to sleep sees them blocked */
    while (waiting < nroles) usleep(1000);
    printf("READY main=%d", gettid_());
    for (int i = 1; i <= nroles; i++) printf(" %s=%d", names[i], tids[i]);
    printf("\n");
    fflush(stdout);
}

static void read_stdin(void) {
    char buf[64];
    record("wait %d read 0\n", gettid_());
    while (read(0, buf, sizeof buf) > 0) {}
}

static void init_mutex(pthread_mutex_t *m, int type, int robust_, int protocol) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, type);
    if (robust_) pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_setprotocol(&attr, protocol);
    pthread_mutex_init(m, &attr);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: deadlock_target SCENARIO RECORD\n");
        return 2;
    }
    const char *s = argv[1];
    record_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
    if (record_fd < 0) return 1;
    names[0] = "main";
    tids[0] = gettid_();
    record("role main %d\n", gettid_());
    if (!strcmp(s, "abba")) {
        static struct pair p1 = {1, "t1", &A, &B, 2}, p2 = {2, "t2", &B, &A, 2};
        pthread_t t1 = start(locker, &p1);
        start(locker, &p2);
        wait_roles(2);
        ready();
        record("wait %d join %d\n", gettid_(), tids[1]);
        pthread_join(t1, NULL);
    } else if (!strcmp(s, "cycle3")) {
        static struct pair p1 = {1, "t1", &A, &B, 3}, p2 = {2, "t2", &B, &C, 3},
                           p3 = {3, "t3", &C, &A, 3};
        start(locker, &p1);
        start(locker, &p2);
        start(locker, &p3);
        wait_roles(3);
        ready();
        read_stdin();
    } else if (!strcmp(s, "self")) {
        start(self_locker, NULL);
        wait_roles(1);
        ready();
        read_stdin();
    } else if (!strcmp(s, "chain")) {
        take("mutex", &M);
        start(chain_t2, NULL);
        start(chain_t3, NULL);
        wait_roles(2);
        ready();
        read_stdin();
    } else if (!strcmp(s, "cond")) {
        start(cond_waiter, NULL);
        wait_roles(1);
        ready();
        read_stdin();
    } else if (!strcmp(s, "sem")) {
        sem_init(&sem, 0, 0);
        start(sem_waiter, NULL);
        wait_roles(1);
        ready();
        read_stdin();
    } else if (!strcmp(s, "join")) {
        if (pipe(pipefd) != 0) return 1;
        pthread_t t1 = start(pipe_reader, NULL);
        wait_roles(1);
        ready();
        record("wait %d join %d\n", gettid_(), tids[1]);
        pthread_join(t1, NULL);
    } else if (!strcmp(s, "rwlock")) {
        pthread_rwlock_wrlock(&rw);
        hold("rwlock", &rw, 1);
        start(rw_reader, NULL);
        while (!tids[1]) usleep(1000);
        usleep(50000);  /* the reader queues first, then the writer */
        start(rw_writer, NULL);
        wait_roles(2);
        ready();
        read_stdin();
    } else if (!strcmp(s, "mutexes")) {
        init_mutex(&rec, PTHREAD_MUTEX_RECURSIVE, 0, PTHREAD_PRIO_NONE);
        init_mutex(&err, PTHREAD_MUTEX_ERRORCHECK, 0, PTHREAD_PRIO_NONE);
        init_mutex(&robust, PTHREAD_MUTEX_DEFAULT, 1, PTHREAD_PRIO_NONE);
        init_mutex(&pi, PTHREAD_MUTEX_DEFAULT, 0, PTHREAD_PRIO_INHERIT);
        pthread_mutex_lock(&rec);
        pthread_mutex_lock(&rec);
        hold("mutex", &rec, 2);
        take("mutex", &err);
        take("robust_mutex", &robust);
        take("pi_mutex", &pi);
        static struct waiter w[] = {{1, "t_rec", "mutex", &rec}, {2, "t_err", "mutex", &err},
                                    {3, "t_robust", "robust_mutex", &robust},
                                    {4, "t_pi", "pi_mutex", &pi}};
        for (int i = 0; i < 4; i++) start(mutex_waiter, &w[i]);
        wait_roles(4);
        ready();
        read_stdin();
    } else {
        fprintf(stderr, "unknown scenario %s\n", s);
        return 2;
    }
    return 0;
}
