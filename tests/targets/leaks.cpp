// Three known leak sites at different depths, plus allocations that are
// freed. Built with frame pointers (target_leaks) and as a distribution
// would, -O2 without them (target_leaks_nofp). Each caller does something
// after its call (KEEP), so that no call is a sibling call even at -O2: a
// tail call leaves no frame, and the test wants every frame. No stdio: its buffer would be one more
// outstanding block (the runtime's, reported as expected).
#include <cstdlib>
#include <cstring>
#include <vector>

// After the call, before the return: the call cannot be a tail call.
#define KEEP(p) asm volatile("" : : "r"(p) : "memory")

struct Widget {
    char payload[64];
};

// Depth 1: main -> leak_shallow -> malloc
__attribute__((noinline)) void* leak_shallow(std::size_t n)
{
    void* p = std::malloc(n);
    std::memset(p, 1, n);
    return p;
}

// Depth 3: main -> build_scene -> add_widget -> make_widget -> operator new
__attribute__((noinline)) Widget* make_widget()
{
    Widget* w = new Widget;
    std::memset(w->payload, 2, sizeof w->payload);
    return w;
}
__attribute__((noinline)) Widget* add_widget()
{
    Widget* w = make_widget();
    KEEP(w);
    return w;
}
__attribute__((noinline)) void build_scene(std::vector<Widget*>& keep)
{
    for (int i = 0; i < 5; ++i)
        keep.push_back(add_widget());
}

// Depth 5: main -> a -> b -> c -> d -> leak_deep -> calloc
__attribute__((noinline)) void* leak_deep()
{
    void* p = std::calloc(4, 256);
    KEEP(p);
    return p;
}
__attribute__((noinline)) void* d() { void* p = leak_deep(); KEEP(p); return p; }
__attribute__((noinline)) void* c() { void* p = d(); KEEP(p); return p; }
__attribute__((noinline)) void* b() { void* p = c(); KEEP(p); return p; }
__attribute__((noinline)) void* a() { void* p = b(); KEEP(p); return p; }

// Freed: not a leak.
__attribute__((noinline)) void churn()
{
    for (int i = 0; i < 10; ++i) {
        std::vector<int> v(100 + i);
        char* s = static_cast<char*>(std::malloc(32));
        std::free(s);
    }
}

volatile void* sink[8];

int main()
{
    std::vector<Widget*> keep;
    keep.reserve(8);
    for (int i = 0; i < 3; ++i)
        sink[i] = leak_shallow(100);
    build_scene(keep);
    for (int i = 0; i < 2; ++i)
        sink[3 + i] = a();
    churn();
    // `keep` frees its own array; the widgets it points to stay.
    return 0;
}
