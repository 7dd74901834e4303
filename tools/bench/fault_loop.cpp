// A page-fault-heavy bystander for the -a benchmark: maps MIB of anonymous
// memory, touches every page, unmaps it, ROUNDS times. Prints its own CPU
// time (user + system): the figure compared, traced by -a or not.
#include <sys/mman.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv)
{
    const long rounds = argc > 1 ? std::atol(argv[1]) : 10;
    const std::size_t len = (argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64) << 20;
    for (long r = 0; r < rounds; ++r) {
        auto* m = static_cast<volatile char*>(
            mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        if (m == MAP_FAILED)
            return 1;
        for (std::size_t i = 0; i < len; i += 4096)
            m[i] = 1;
        munmap(const_cast<char*>(m), len);
    }
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    const double cpu = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
                       static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    const long faults = u.ru_minflt;
    std::printf("faults %ld cpu %.6f s, %.1f ns/fault\n", faults, cpu, faults ? cpu * 1e9 / faults : 0.0);
    return 0;
}
