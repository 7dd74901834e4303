// C++ operators in every form, in named threads "cxx-I", for exact counts
// whatever allocator defines them (libstdc++'s reach malloc; jemalloc's,
// tcmalloc's and mimalloc's have their own). usage: cxx_new_delete NTHREADS
// Each thread: 1000 `new Obj` (48 bytes), 200 `new int[25]` (100 bytes),
// 100 nothrow `new Obj`, 50 `new (align_val_t(64)) char[128]`; then deletes
// 500 of the first (sized delete) and all of the rest.
#include <cstdio>
#include <cstdlib>
#include <new>
#include <pthread.h>
#include <thread>
#include <vector>

namespace {

struct Obj {
    long v[6];
};
static_assert(sizeof(Obj) == 48);

void work(int i)
{
    char name[16] = "cxx-";
    name[4] = static_cast<char>('0' + i);
    name[5] = 0;
    pthread_setname_np(pthread_self(), name);
    static thread_local Obj* objs[1000];
    static thread_local int* arrays[200];
    static thread_local Obj* nothrows[100];
    static thread_local char* aligned[50];
    for (auto& p : objs)
        p = new Obj;
    for (auto& p : arrays)
        p = new int[25];
    for (auto& p : nothrows)
        p = new (std::nothrow) Obj;
    for (auto& p : aligned)
        p = new (std::align_val_t(64)) char[128];
    for (int j = 0; j < 500; ++j)
        delete objs[j];
    for (auto& p : arrays)
        delete[] p;
    for (auto& p : nothrows)
        delete p;
    for (auto& p : aligned)
        operator delete[](p, std::align_val_t(64));
}

} // namespace

int main(int argc, char** argv)
{
    const int n = argc > 1 ? std::atoi(argv[1]) : 2;
    std::vector<pthread_t> threads(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        pthread_create(&threads[static_cast<std::size_t>(i)], nullptr,
                       [](void* arg) -> void* {
                           work(static_cast<int>(reinterpret_cast<long>(arg)));
                           return nullptr;
                       },
                       reinterpret_cast<void*>(static_cast<long>(i)));
    for (auto& t : threads)
        pthread_join(t, nullptr);
    return 0;
}
