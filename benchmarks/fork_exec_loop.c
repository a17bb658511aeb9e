/* Benchmark-only helper for benchmarks/bench_follow.py: runs /bin/true N times, each by
 * fork() + execv() + waitpid(), then exits 0 (1 if a run failed).
 *
 *   fork_exec_loop N
 */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    char *true_argv[] = {"true", NULL};
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execv("/bin/true", true_argv);
            _exit(127);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            return 1;
    }
    return 0;
}
