/* Threads parked in the blocking situations the thread-state tests check.
 *
 * The main thread locks a normal mutex, a PI mutex and a robust mutex, starts one
 * thread per situation, prints READY with every thread id and object address, then
 * blocks in read() on stdin (a pipe): a mutex holder blocked in read(). The threads:
 *   mutex_waiter   pthread_mutex_lock(&normal)      futex WAIT_PRIVATE on &normal
 *   pi_waiter      pthread_mutex_lock(&pi)          futex LOCK_PI_PRIVATE on &pi
 *   robust_waiter  pthread_mutex_lock(&robust)      futex WAIT (shared) on &robust
 *   cond_waiter    pthread_cond_wait(&cond, &cm)    futex WAIT_BITSET on cond+40
 *   sem_waiter     sem_wait(&sem)                   futex WAIT_BITSET on &sem
 *   sleeper        nanosleep(1000 s), in a loop     clock_nanosleep
 *   epoller        epoll_wait(-1) on an empty pipe, again after EINTR (a ptrace stop
 *                  makes epoll_wait return EINTR once)
 *   joiner         pthread_join(sleeper)            futex WAIT_BITSET on sleeper's TID word
 *   raw_sleeper    syscall(SYS_clock_nanosleep, ...) through glibc's generic syscall():
 *                  the number comes from a register, so once restarted (restart_syscall)
 *                  its call site does not tell which call it was
 *   rw_reader      pthread_rwlock_rdlock(&rw), main holds it for writing
 *   rw_writer      pthread_rwlock_wrlock(&rw)
 *   rec_waiter     pthread_mutex_lock(&rec), a recursive mutex main holds twice
 *   err_waiter     pthread_mutex_lock(&err), an error-checking mutex main holds
 *   poller         poll(-1) on the empty pipe
 *   reaper         waitpid(child): wait4 on a child that sleeps (and dies with us)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t normal = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pi, robust;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static sem_t sem;
static int epfd, epipe[2];
static pthread_t sleeper_thread;
static pthread_mutex_t rec, err;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pid_t child;
#define NTHREADS 15
static volatile int tids[NTHREADS];

enum { MUTEX_WAITER, PI_WAITER, ROBUST_WAITER, COND_WAITER, SEM_WAITER, SLEEPER, EPOLLER,
       JOINER, RAW_SLEEPER, RW_READER, RW_WRITER, REC_WAITER, ERR_WAITER, POLLER, REAPER };

static void publish(int slot) { tids[slot] = (int)syscall(SYS_gettid); }

static void *mutex_waiter(void *arg) { publish(MUTEX_WAITER); pthread_mutex_lock(&normal); return arg; }
static void *pi_waiter(void *arg) { publish(PI_WAITER); pthread_mutex_lock(&pi); return arg; }
static void *robust_waiter(void *arg) { publish(ROBUST_WAITER); pthread_mutex_lock(&robust); return arg; }

static void *cond_waiter(void *arg) {
    pthread_mutex_lock(&cm);
    publish(COND_WAITER);
    for (;;) pthread_cond_wait(&cond, &cm);
    return arg;
}

static void *sem_waiter(void *arg) { publish(SEM_WAITER); for (;;) sem_wait(&sem); return arg; }

static void *sleeper(void *arg) {
    struct timespec req = {1000, 0};
    publish(SLEEPER);
    for (;;) nanosleep(&req, NULL);
    return arg;
}

static void *epoller(void *arg) {
    struct epoll_event ev;
    publish(EPOLLER);
    for (;;) {
        int n = epoll_wait(epfd, &ev, 1, -1);
        if (n < 0 && errno != EINTR) abort();
    }
    return arg;
}

static void *raw_sleeper(void *arg) {
    struct timespec req = {1000, 0};
    publish(RAW_SLEEPER);
    for (;;) syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &req, NULL);
    return arg;
}

static void *rw_reader(void *arg) { publish(RW_READER); pthread_rwlock_rdlock(&rw); return arg; }
static void *rw_writer(void *arg) { publish(RW_WRITER); pthread_rwlock_wrlock(&rw); return arg; }
static void *rec_waiter(void *arg) { publish(REC_WAITER); pthread_mutex_lock(&rec); return arg; }
static void *err_waiter(void *arg) { publish(ERR_WAITER); pthread_mutex_lock(&err); return arg; }

static void *poller(void *arg) {
    struct pollfd pfd = {.fd = epipe[0], .events = POLLIN};
    publish(POLLER);
    for (;;) poll(&pfd, 1, -1);
    return arg;
}

static void *reaper(void *arg) {
    publish(REAPER);
    for (;;) waitpid(child, NULL, 0);
    return arg;
}

static void *joiner(void *arg) { publish(JOINER); pthread_join(sleeper_thread, NULL); return arg; }

int main(void) {
    pthread_mutexattr_t attr;
    pthread_t t;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&pi, &attr);
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &attr);
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec, &attr);
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&err, &attr);
    sem_init(&sem, 0, 0);
    child = fork();
    if (child == 0) {  /* dies with its parent: never left behind */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
    if (pipe(epipe) != 0) return 1;
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = epipe[0]};
    epoll_ctl(epfd, EPOLL_CTL_ADD, epipe[0], &ev);

    pthread_mutex_lock(&normal);
    pthread_mutex_lock(&pi);
    pthread_mutex_lock(&robust);
    pthread_mutex_lock(&rec);
    pthread_mutex_lock(&rec);
    pthread_mutex_lock(&err);
    pthread_rwlock_wrlock(&rw);
    pthread_create(&t, NULL, mutex_waiter, NULL);
    pthread_create(&t, NULL, pi_waiter, NULL);
    pthread_create(&t, NULL, robust_waiter, NULL);
    pthread_create(&t, NULL, cond_waiter, NULL);
    pthread_create(&t, NULL, sem_waiter, NULL);
    pthread_create(&sleeper_thread, NULL, sleeper, NULL);
    pthread_create(&t, NULL, epoller, NULL);
    pthread_create(&t, NULL, joiner, NULL);
    pthread_create(&t, NULL, raw_sleeper, NULL);
    pthread_create(&t, NULL, rw_reader, NULL);
    while (!tids[RW_READER]) usleep(1000);
    usleep(20000);  /* the reader queues first, then the writer */
    pthread_create(&t, NULL, rw_writer, NULL);
    pthread_create(&t, NULL, rec_waiter, NULL);
    pthread_create(&t, NULL, err_waiter, NULL);
    pthread_create(&t, NULL, poller, NULL);
    pthread_create(&t, NULL, reaper, NULL);
    for (int i = 0; i < NTHREADS; i++)
        while (!tids[i]) usleep(1000);
    printf("READY main=%d mutex_waiter=%d pi_waiter=%d robust_waiter=%d cond_waiter=%d "
           "sem_waiter=%d sleeper=%d epoller=%d joiner=%d raw_sleeper=%d rw_reader=%d rw_writer=%d rec_waiter=%d err_waiter=%d "
           "poller=%d reaper=%d child=%d rw=%p rec=%p err=%p pipe=%d normal=%p pi=%p robust=%p cond=%p "
           "sem=%p epfd=%d sleeper_pthread=0x%lx\n",
           (int)getpid(), tids[0], tids[1], tids[2], tids[3], tids[4], tids[5], tids[6], tids[7],
           tids[8], tids[9], tids[10], tids[11], tids[12], tids[13], tids[14], (int)child,
           (void *)&rw, (void *)&rec, (void *)&err, epipe[0],           (void *)&normal, (void *)&pi, (void *)&robust, (void *)&cond, (void *)&sem, epfd,
           (unsigned long)sleeper_thread);
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}  /* the mutex holder, blocked in read() */
    return 0;
}
