// The case that breaks in-process trackers: THREADS threads x ITERS
// iterations, each tracking a vector of 25 ints and a heap string
// ("thread_{id}_{i}" padded past the small-string buffer). Each thread runs
// as task id+1 and each iteration in scope "iteration"; each thread keeps
// its first vector alive until the process exits.
// Usage: tracked_threads [THREADS] [ITERS]
#include <memscope/track.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv)
{
    int threads = argc > 1 ? std::atoi(argv[1]) : 50;
    int iters = argc > 2 ? std::atoi(argv[2]) : 1000;
    // Never freed: what the workers keep is live at exit.
    auto* kept = new std::vector<std::vector<int>>(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads));
    for (int id = 0; id < threads; ++id) {
        pool.emplace_back([id, iters, kept] {
            MEMSCOPE_TASK_ID("worker", static_cast<uint64_t>(id) + 1);
            for (int i = 0; i < iters; ++i) {
                MEMSCOPE_SCOPE("iteration");
                std::vector<int> data(25, i);   // one block of 100 bytes
                std::string text(40, '.');      // one block of 41 bytes
                int n = std::snprintf(text.data(), text.size(), "thread_%d_%d", id, i);
                text[static_cast<size_t>(n)] = '.';
                MEMSCOPE_TRACK_VAR(data);
                MEMSCOPE_TRACK_VAR(text);
                if (i == 0)
                    (*kept)[static_cast<size_t>(id)] = std::move(data);
            }
        });
    }
    for (auto& t : pool)
        t.join();
    std::printf("done %d threads x %d iterations\n", threads, iters);
    return 0;
}
