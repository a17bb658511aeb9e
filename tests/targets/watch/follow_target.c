/* Process trees for `minidumpkit run --follow-children` tests: one behaviour per argv[1].
 *
 *   tree      prints "READY pid=P"; forks a child that prints "CHILD pid=C" and forks a
 *             grandchild; the grandchild starts a second thread (sleeping), prints
 *             "GRANDCHILD pid=G", reads a line from stdin and runs
 *             grandchild_crash_here(), which writes to BAD_ADDRESS (SIGSEGV,
 *             SEGV_MAPERR). The child exits with the grandchild's signal number (11).
 *             The first process also forks a child that it kills (SIGKILL), then waits
 *             for the first child and exits with its exit code + 30 (41).
 *   execloop N
 *             runs /bin/true N times, by fork+exec and by posix_spawn (vfork) in turn,
 *             then forks a child that execs this program with "segv"; exits 5 if that
 *             child died of SIGSEGV (90/91 otherwise).
 *   segv      exec_crash_here() writes to BAD_ADDRESS.
 *   orphan    forks a child, prints "CHILD pid=C" and exits 6 at once; the child waits
 *             until its parent is gone, then runs orphan_crash_here() (BAD_ADDRESS).
 *   clone     clone(2) with no CLONE_THREAD and no exit signal (not a fork to ptrace:
 *             PTRACE_EVENT_CLONE) of a process that runs clone_crash_here()
 *             (BAD_ADDRESS); exits 7 if it died of SIGSEGV.
 *   spawn PROG ARGS...
 *             fork + exec PROG ARGS, wait for it in waitpid; exits with its exit code,
 *             or 128 + its signal.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BAD_ADDRESS 0xdead0000UL

extern char **environ;

static void say(const char *what) {
    printf("%s pid=%d\n", what, getpid());
    fflush(stdout);
}

__attribute__((noinline)) void grandchild_crash_here(void) {
    *(volatile int *)BAD_ADDRESS = 44;
}

__attribute__((noinline)) void exec_crash_here(void) {
    *(volatile int *)BAD_ADDRESS = 45;
}

__attribute__((noinline)) void orphan_crash_here(void) {
    *(volatile int *)BAD_ADDRESS = 46;
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static int tree(void) {
    say("READY");
    pid_t child = fork();
    if (child == 0) {
        say("CHILD");
        pid_t grandchild = fork();
        if (grandchild == 0) {
            pthread_t t;
            pthread_create(&t, NULL, sleeper, NULL);
            say("GRANDCHILD");
            char line[16];
            if (fgets(line, sizeof line, stdin) == NULL)
                _exit(80);
            grandchild_crash_here();
            _exit(81);
        }
        int status;
        if (waitpid(grandchild, &status, 0) != grandchild)
            _exit(82);
        _exit(WIFSIGNALED(status) ? WTERMSIG(status) : 83);
    }
    pid_t victim = fork();
    if (victim == 0) {
        for (;;)
            pause();
    }
    kill(victim, SIGKILL);
    int status;
    if (waitpid(victim, &status, 0) != victim || !WIFSIGNALED(status))
        return 84;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
        return 85;
    return WEXITSTATUS(status) + 30;
}

static int execloop(int n, const char *self) {
    char *true_argv[] = {"true", NULL};
    for (int i = 0; i < n; i++) {
        pid_t pid;
        if (i % 2) {
            if (posix_spawn(&pid, "/bin/true", NULL, NULL, true_argv, environ) != 0)
                return 90;
        } else {
            pid = fork();
            if (pid == 0) {
                execv("/bin/true", true_argv);
                _exit(127);
            }
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
            return 90;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "segv", (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return 91;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV ? 5 : 91;
}

static int orphan(void) {
    pid_t parent = getpid();
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 10000 && getppid() == parent; i++)
            usleep(1000);
        orphan_crash_here();
        _exit(81);
    }
    printf("CHILD pid=%d\n", child);
    fflush(stdout);
    return 6;
}

__attribute__((noinline)) void clone_crash_here(void) {
    *(volatile int *)BAD_ADDRESS = 47;
}

static int clone_body(void *arg) {
    (void)arg;
    clone_crash_here();
    return 81;
}

static int clone_process(void) {
    static char stack[256 * 1024] __attribute__((aligned(16)));
    fflush(stdout);
    pid_t pid = clone(clone_body, stack + sizeof stack, 0, NULL);
    if (pid < 0)
        return 93;
    int status;
    if (waitpid(pid, &status, __WALL) != pid)
        return 94;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV ? 7 : 95;
}

static int spawn(char **argv) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return 92;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "clone") == 0)
        return clone_process();
    if (argc >= 3 && strcmp(argv[1], "spawn") == 0)
        return spawn(argv + 2);
    if (argc >= 2 && strcmp(argv[1], "tree") == 0)
        return tree();
    if (argc >= 3 && strcmp(argv[1], "execloop") == 0)
        return execloop(atoi(argv[2]), argv[0]);
    if (argc >= 2 && strcmp(argv[1], "segv") == 0) {
        exec_crash_here();
        return 81;
    }
    if (argc >= 2 && strcmp(argv[1], "orphan") == 0)
        return orphan();
    fprintf(stderr, "usage: follow_target tree | execloop N | segv | orphan | clone | spawn PROG...\n");
    return 2;
}
