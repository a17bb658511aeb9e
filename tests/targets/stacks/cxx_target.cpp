// A C++ dump target for tests/test_stackwalk.py: mangled names (a namespace, a class
// template, an overloaded operator, a lambda) on a thread blocked in read(), and the
// main thread in std::condition_variable-free stdin reading.
// Prints "READY worker=TID" when the worker is on its way to block; "quit" exits.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <atomic>

#define NOINLINE __attribute__((noinline))

namespace shapes {

static int block_pipe[2];
std::atomic<long> worker_tid{0};

template <typename T>
struct Holder {
    T value;
    NOINLINE long wait_in_read(int fd) {
        char byte;
        worker_tid = syscall(SYS_gettid);
        long got = read(fd, &byte, 1);
        return got + static_cast<long>(value);
    }
    NOINLINE long operator()(int fd) { return wait_in_read(fd) + 1; }
};

NOINLINE long run_worker(int fd) {
    Holder<int> h{3};
    auto call = [&h](int f) __attribute__((noinline)) { return h(f) * 2; };
    return call(fd);
}

}  // namespace shapes

int main() {
    if (pipe(shapes::block_pipe) != 0) return 2;
    std::thread worker([] { shapes::run_worker(shapes::block_pipe[0]); });
    while (shapes::worker_tid.load() == 0) usleep(1000);
    std::printf("READY worker=%ld\n", shapes::worker_tid.load());
    std::fflush(stdout);
    char line[64];
    while (std::fgets(line, sizeof line, stdin) != nullptr)
        if (std::strncmp(line, "quit", 4) == 0) break;
    worker.detach();
    return 0;
}
