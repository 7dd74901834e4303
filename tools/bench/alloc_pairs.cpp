// Allocation-heavy target for measuring tracer overhead: THREADS threads
// each do OPS malloc(SIZE)+free pairs, DEPTH calls down (built with frame
// pointers: the stack a normal-mode trace walks is that deep). Prints ns per pair (wall time of the
// loop, per thread) so traced and untraced runs compare as a ratio, and the
// process's CPU time per pair (all threads, user + system: a uprobe's trap
// is the target's system time), which stays comparable past the core count.
#include <pthread.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

// The loop, `depth` frames below the thread's own.
__attribute__((noinline)) void pairs(long ops, long size, int depth)
{
    if (depth > 0) {
        pairs(ops, size, depth - 1);
        asm volatile("" ::: "memory"); // no tail call: every level keeps its frame
        return;
    }
    for (long i = 0; i < ops; ++i) {
        void* volatile p = std::malloc(static_cast<size_t>(size));
        std::free(p);
    }
}

int main(int argc, char** argv)
{
    int threads = argc > 1 ? std::atoi(argv[1]) : 1;
    long ops = argc > 2 ? std::atol(argv[2]) : 100000;
    long size = argc > 3 ? std::atol(argv[3]) : 64;
    int depth = argc > 4 ? std::atoi(argv[4]) : 0;
    if (threads < 1 || ops < 1 || size < 1 || depth < 0 || depth > 1000) {
        std::fprintf(stderr, "usage: alloc_pairs [THREADS] [OPS] [SIZE] [DEPTH]\n");
        return 2;
    }
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([=] { pairs(ops, size, depth); });
    for (auto& t : pool)
        t.join();
    double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    double cpu_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
    std::printf("%.1f ns/pair (%d threads x %ld ops, %ld bytes) cpu %.1f ns/pair\n", ns / static_cast<double>(ops),
                threads, ops, size, cpu_ns / (static_cast<double>(ops) * threads));
    return 0;
}
