// Cost of one tracker entry point call (MEMSCOPE_TRACK_PTR on a block that
// is not heap-tracked, so only the entry point is measured): CALLS calls,
// prints ns per call. Untraced it is a load and a branch; traced (under
// memscope-trace, after waiting for the semaphore) it is one uprobe hit on
// the module's 5-byte NOP site.
// Usage: track_cost [CALLS] [wait]   ("wait": first wait until traced)
#include <memscope/track.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

int main(int argc, char** argv)
{
    long calls = argc > 1 ? std::atol(argv[1]) : 10'000'000;
    bool wait = argc > 2 && std::strcmp(argv[2], "wait") == 0;
    if (calls < 1) {
        std::fprintf(stderr, "usage: track_cost [CALLS] [wait]\n");
        return 2;
    }
    for (int i = 0; wait && !memscope_traced() && i < 20000; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (wait && !memscope_traced()) {
        std::fprintf(stderr, "track_cost: never traced\n");
        return 3;
    }
    static char block[64];
    auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < calls; ++i) {
        MEMSCOPE_TRACK_PTR(block, sizeof block, "block");
        asm volatile("" ::: "memory");
    }
    double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    std::printf("%.2f ns/call (%ld calls, %s)\n", ns / static_cast<double>(calls), calls,
                memscope_traced() ? "traced" : "untraced");
    return 0;
}
