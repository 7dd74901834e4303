// C++ containers in a thread named "cxx" (a pthread, so that no
// std::thread state object crosses threads).
#include <pthread.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

static void* cxx(void*)
{
    pthread_setname_np(pthread_self(), "cxx");
    {
        std::vector<std::uint64_t> big(1000);          // 8000
        std::string text(100, 'x');                     // 101
        auto box = std::make_unique<std::array<char, 64>>(); // 64
        std::vector<int> grown;                         // 4, 8, 16, 32, 64, 128: doubling
        for (int i = 0; i < 17; ++i)
            grown.push_back(i);
        std::vector<std::string> words;
        words.reserve(10);                              // 10 * sizeof(std::string)
        for (int i = 0; i < 10; ++i)
            words.emplace_back(30, 's');                // 31 each
        asm volatile("" : : "r"(big.data()), "r"(text.data()), "r"(box.get()) : "memory");
    }
    return nullptr;
}

int main()
{
    pthread_t t;
    pthread_create(&t, nullptr, cxx, nullptr);
    pthread_join(t, nullptr);
    return 0;
}
