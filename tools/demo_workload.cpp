// The bundled demo: a small multi-threaded C++ service-like workload.
// Each named worker builds and drops containers; one keeps a cache alive
// (live at exit), and a hand-off thread frees what another allocated.
// It names some of its variables, a scope and a task with the tracker
// header: the report shows them (untraced, each costs a load and a branch).
#include <memscope/track.h>
#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

void worker(int id, int rounds)
{
    pthread_setname_np(pthread_self(), ("worker-" + std::to_string(id)).c_str());
    MEMSCOPE_TASK_ID("worker", static_cast<uint64_t>(id) + 1);
    std::map<int, std::string> table;
    for (int i = 0; i < rounds; ++i) {
        MEMSCOPE_SCOPE("round");
        std::vector<int> v(64 + i % 64, i);
        table[i % 32] = std::string(40 + i % 20, 'a' + id % 26);
        auto blob = std::make_unique<char[]>(256);
        blob[0] = static_cast<char>(v[0]);
        if (i % 100 == 0) {
            MEMSCOPE_TRACK_VAR(v);
            MEMSCOPE_TRACK_VAR(blob);
        }
    }
}

} // namespace

int main(int argc, char** argv)
{
    int threads = argc > 1 ? std::atoi(argv[1]) : 4;
    int rounds = argc > 2 ? std::atoi(argv[2]) : 20000;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back(worker, t, rounds);

    // A producer hands blocks to a consumer that frees them.
    std::vector<void*> handoff;
    std::thread producer([&] {
        pthread_setname_np(pthread_self(), "producer");
        for (int i = 0; i < 1000; ++i)
            handoff.push_back(std::malloc(128));
    });
    producer.join();
    std::thread consumer([&] {
        pthread_setname_np(pthread_self(), "consumer");
        for (void* p : handoff)
            std::free(p);
    });
    consumer.join();
    for (auto& t : pool)
        t.join();

    static std::vector<std::string>* cache = new std::vector<std::string>(100, std::string(100, 'c'));
    MEMSCOPE_TRACK_VAR(*cache);
    std::printf("demo done: %d workers x %d rounds, cache of %zu strings kept\n", threads, rounds,
                cache->size());
    return 0;
}
