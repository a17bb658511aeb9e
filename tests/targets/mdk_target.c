/* A dump target with known contents, for tests/test_linux_*.py.
 *
 * Threads (each named with pthread_setname_np and parked in its own call chain):
 *   main         command_loop_level2 <- command_loop_level1 <- main: read() on stdin
 *   mdk-reader   reader_level3 <- reader_level2 <- reader_level1: read() on a pipe
 *   mdk-sleeper  sleeper_level3 <- sleeper_level2 <- sleeper_level1: nanosleep()
 *   mdk-regs     regs_level3 <- regs_level2 <- regs_level1: raw pause() syscall with
 *                known values in rbx, r12-r15 and a known pattern on its stack
 *   mdk-futex    futex_level3 <- futex_level2 <- futex_level1: pthread_cond_wait()
 *   mdk-counter  counter_level3 <- ...: increments a counter every 1 ms and records the
 *                largest gap between increments (CLOCK_MONOTONIC)
 * Open descriptors: the file named by argv[1], a pipe, a socketpair, a TCP listener on
 * 127.0.0.1, an eventfd.
 *
 * Commands on stdin (one per line), answers on stdout:
 *   status   -> "STATUS counter=N checksum_ok=0|1 reader_got=N reader_eintr=N
 *               sleeper_eintr=N maxgap_us=N usr1=N" (usr1: SIGUSR1s handled by main)
 *   feed     -> writes 8 bytes into the reader's pipe; "FED"
 *   resetgap -> "GAPRESET" (the counter's max gap is reset)
 *   quit     -> exits 0
 * On start it prints one READY line with the tids, the pattern's address and more.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define CHECK_AREA 65536

static int reader_pipe[2];
static pthread_mutex_t futex_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t futex_cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t ready_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready_count;

static volatile pid_t tid_reader, tid_sleeper, tid_regs, tid_futex, tid_counter;
static volatile unsigned long long counter;
static volatile long long max_gap_ns;
static volatile int reader_got, reader_eintr, sleeper_eintr;
static volatile sig_atomic_t usr1_count;
static volatile uintptr_t pattern_address;
static unsigned char check_area[CHECK_AREA];
static uint64_t check_sum_initial;

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static void thread_ready(volatile pid_t *slot, const char *name) {
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&ready_mutex);
    *slot = gettid_();
    ready_count++;
    pthread_cond_broadcast(&ready_cond);
    pthread_mutex_unlock(&ready_mutex);
}

static uint64_t checksum(void) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < CHECK_AREA; i++) h = (h ^ check_area[i]) * 1099511628211ULL;
    return h;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- mdk-reader ------------------------------------------------------------------ */
NOINLINE static void reader_level3(void) {
    char buf[8];
    for (;;) {
        ssize_t n = read(reader_pipe[0], buf, sizeof buf);
        if (n > 0) reader_got += (int)n;
        else if (n < 0 && errno == EINTR) reader_eintr++;
    }
}
NOINLINE static void reader_level2(void) { reader_level3(); }
NOINLINE static void reader_level1(void) { reader_level2(); }
static void *reader_main(void *arg) {
    (void)arg;
    thread_ready(&tid_reader, "mdk-reader");
    reader_level1();
    return NULL;
}

/* --- mdk-sleeper ----------------------------------------------------------------- */
NOINLINE static void sleeper_level3(void) {
    for (;;) {
        struct timespec ts = {3600, 0};
        if (nanosleep(&ts, &ts) < 0 && errno == EINTR) sleeper_eintr++;
    }
}
NOINLINE static void sleeper_level2(void) { sleeper_level3(); }
NOINLINE static void sleeper_level1(void) { sleeper_level2(); }
static void *sleeper_main(void *arg) {
    (void)arg;
    thread_ready(&tid_sleeper, "mdk-sleeper");
    sleeper_level1();
    return NULL;
}

/* --- mdk-regs -------------------------------------------------------------------- */
NOINLINE static void regs_level3(void) {
    volatile unsigned char pattern[256];
    for (int i = 0; i < 256; i++) pattern[i] = (unsigned char)(0xA5 ^ i);
    memcpy((void *)pattern, "MDK-STACK-PATTERN", 17);
    pattern_address = (uintptr_t)pattern;
    thread_ready(&tid_regs, "mdk-regs");
    /* Park in pause() with known callee-saved registers; never returns. */
    __asm__ volatile(
        "movabs $0x0b0b0b0b0b0b0b0b, %%rbx\n\t"
        "movabs $0x1212121212121212, %%r12\n\t"
        "movabs $0x1313131313131313, %%r13\n\t"
        "movabs $0x1414141414141414, %%r14\n\t"
        "movabs $0x1515151515151515, %%r15\n\t"
        "1:\n\t"
        "mov $34, %%eax\n\t" /* SYS_pause */
        "syscall\n\t"
        "jmp 1b\n\t"
        :
        :
        : "rax", "rbx", "rcx", "r11", "r12", "r13", "r14", "r15", "memory");
}
NOINLINE static void regs_level2(void) { regs_level3(); }
NOINLINE static void regs_level1(void) { regs_level2(); }
static void *regs_main(void *arg) {
    (void)arg;
    regs_level1();
    return NULL;
}

/* --- mdk-futex ------------------------------------------------------------------- */
NOINLINE static void futex_level3(void) {
    pthread_mutex_lock(&futex_mutex);
    for (;;) pthread_cond_wait(&futex_cond, &futex_mutex);
}
NOINLINE static void futex_level2(void) { futex_level3(); }
NOINLINE static void futex_level1(void) { futex_level2(); }
static void *futex_main(void *arg) {
    (void)arg;
    thread_ready(&tid_futex, "mdk-futex");
    futex_level1();
    return NULL;
}

/* --- mdk-counter ----------------------------------------------------------------- */
NOINLINE static void counter_level3(void) {
    long long last = now_ns();
    for (;;) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        long long t = now_ns();
        if (t - last > max_gap_ns) max_gap_ns = t - last;
        last = t;
        counter++;
    }
}
NOINLINE static void counter_level2(void) { counter_level3(); }
NOINLINE static void counter_level1(void) { counter_level2(); }
static void *counter_main(void *arg) {
    (void)arg;
    thread_ready(&tid_counter, "mdk-counter");
    counter_level1();
    return NULL;
}

/* --- main ------------------------------------------------------------------------ */
static void on_usr1(int sig) {
    (void)sig;
    usr1_count++;
}

NOINLINE static int command_loop_level2(void) {
    char line[64];
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t n = read(0, &c, 1);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (c != '\n') {
            if (len < sizeof line - 1) line[len++] = c;
            continue;
        }
        line[len] = 0;
        len = 0;
        if (!strcmp(line, "status")) {
            printf("STATUS counter=%llu checksum_ok=%d reader_got=%d reader_eintr=%d "
                   "sleeper_eintr=%d maxgap_us=%lld usr1=%d\n",
                   counter, checksum() == check_sum_initial, reader_got, reader_eintr,
                   sleeper_eintr, max_gap_ns / 1000, (int)usr1_count);
        } else if (!strcmp(line, "feed")) {
            if (write(reader_pipe[1], "FEEDDATA", 8) != 8) return 1;
            printf("FED\n");
        } else if (!strcmp(line, "resetgap")) {
            max_gap_ns = 0;
            printf("GAPRESET\n");
        } else if (!strcmp(line, "quit")) {
            return 0;
        } else {
            printf("UNKNOWN %s\n", line);
        }
        fflush(stdout);
    }
}
NOINLINE static int command_loop_level1(void) { return command_loop_level2(); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < CHECK_AREA; i++) check_area[i] = (unsigned char)(i * 7 + 3);
    check_sum_initial = checksum();

    int file_fd = open(argv[1], O_RDWR | O_CREAT, 0600);
    int sv[2];
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    int efd = eventfd(0, 0);
    if (file_fd < 0 || pipe(reader_pipe) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
        listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) ||
        listen(listener, 1) || getsockname(listener, (struct sockaddr *)&addr, &alen) ||
        efd < 0) {
        perror("setup");
        return 1;
    }

    /* SIGUSR1 (counted, SA_RESTART) is handled by the main thread only, so the other
       threads' syscalls never see it and any EINTR they count comes from elsewhere. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);

    pthread_t t;
    void *(*mains[])(void *) = {reader_main, sleeper_main, regs_main, futex_main, counter_main};
    for (int i = 0; i < 5; i++)
        if (pthread_create(&t, NULL, mains[i], NULL)) return 1;
    pthread_mutex_lock(&ready_mutex);
    while (ready_count < 5) pthread_cond_wait(&ready_cond, &ready_mutex);
    pthread_mutex_unlock(&ready_mutex);
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);

    printf("READY pid=%d main=%d reader=%d sleeper=%d regs=%d futex=%d counter=%d "
           "pattern=0x%lx file_fd=%d pipe_r=%d pipe_w=%d sock0=%d sock1=%d listener=%d "
           "port=%d eventfd=%d\n",
           getpid(), gettid_(), tid_reader, tid_sleeper, tid_regs, tid_futex, tid_counter,
           (unsigned long)pattern_address, file_fd, reader_pipe[0], reader_pipe[1], sv[0],
           sv[1], listener, ntohs(addr.sin_port), efd);
    fflush(stdout);
    return command_loop_level1();
}
