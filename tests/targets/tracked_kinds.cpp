// Each kind of owner MEMSCOPE_TRACK_VAR knows, once.
#include <memscope/track.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace app {
// A type of the program's own, with its block named through ADL.
struct Buffer {
    char* data;
    std::size_t size;
};
memscope::block memscope_heap_block(const Buffer& b)
{
    return {b.data, b.size};
}
} // namespace app

int main()
{
    std::vector<int> numbers(10);
    std::vector<int> empty;
    std::string small("hi");
    std::string large(100, 'x');
    auto boxed = std::make_unique<int>(7);
    auto shared = std::make_shared<std::array<char, 100>>();
    app::Buffer buffer{static_cast<char*>(std::malloc(333)), 333};
    double plain = 1.5;
    MEMSCOPE_TRACK_VAR(numbers);
    MEMSCOPE_TRACK_VAR(empty);
    MEMSCOPE_TRACK_VAR(small);
    MEMSCOPE_TRACK_VAR(large);
    MEMSCOPE_TRACK_VAR(boxed);
    MEMSCOPE_TRACK_VAR(shared);
    MEMSCOPE_TRACK_VAR(buffer);
    MEMSCOPE_TRACK_VAR(plain);
    std::free(buffer.data);
    std::printf("%d %zu %zu %d %d %g\n", numbers[0], empty.size(), small.size() + large.size(), *boxed,
                (*shared)[0], plain);
    return 0;
}
