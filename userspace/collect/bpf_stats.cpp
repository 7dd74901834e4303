#include "bpf_stats.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace memscope {

namespace {

int silent_libbpf(enum libbpf_print_level level, const char* fmt, va_list args)
{
    if (level == LIBBPF_WARN && getenv("MEMSCOPE_DEBUG_LIBBPF"))
        return vfprintf(stderr, fmt, args);
    return 0;
}

} // namespace

void quiet_libbpf()
{
    libbpf_set_print(silent_libbpf);
}

std::uint64_t object_map_bytes(const bpf_object* obj)
{
    std::uint64_t total = 0;
    bpf_map* map;
    bpf_object__for_each_map(map, obj)
    {
        std::ifstream info("/proc/self/fdinfo/" + std::to_string(bpf_map__fd(map)));
        for (std::string line; std::getline(info, line);)
            if (line.rfind("memlock:", 0) == 0)
                total += std::strtoull(line.c_str() + 8, nullptr, 10);
    }
    return total;
}

void add_program_stats(const bpf_object* obj, std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& out)
{
    bpf_program* prog;
    bpf_object__for_each_program(prog, obj)
    {
        bpf_prog_info info{};
        __u32 len = sizeof info;
        const int fd = bpf_program__fd(prog);
        if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || !info.run_cnt)
            continue;
        auto& v = out[bpf_program__name(prog)];
        v.first += info.run_cnt;
        v.second += info.run_time_ns;
    }
}

} // namespace memscope
