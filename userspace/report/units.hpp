// Byte counts as people read them: 812 B, 31.9 KiB, 2.0 MiB. Header-only:
// the text report, the HTML page's data and diff's tables all use it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace memscope {

inline std::string human_bytes(std::uint64_t bytes)
{
    static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024)
        return std::to_string(bytes) + " B";
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024 && u < 6) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
}

} // namespace memscope
