#include "report_collapsed.hpp"
#include "paths.hpp"

#include <cinttypes>
#include <vector>

namespace memscope {

namespace {

using Weight = std::uint64_t Site::*;

Weight weight_field(const std::string& weight)
{
    if (weight == "bytes")
        return &Site::alloc_bytes;
    if (weight == "count")
        return &Site::alloc_count;
    if (weight == "live_bytes")
        return &Site::live_bytes;
    if (weight == "live_count")
        return &Site::live_count;
    return nullptr;
}

// One frame's name: its symbol, else module+offset, else its address.
std::string frame_name(const Frame& f)
{
    std::string name;
    char buf[64];
    if (!f.symbol.empty()) {
        name = f.symbol;
    } else if (!f.module.empty()) {
        std::snprintf(buf, sizeof buf, "+0x%" PRIx64, f.offset);
        name = base_name(f.module.str()) + buf;
    } else {
        std::snprintf(buf, sizeof buf, "0x%" PRIx64, f.addr);
        name = buf;
    }
    // The format's separators: ';' between frames, a line per stack.
    for (char& c : name)
        if (c == ';' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            c = c == ';' ? ':' : '?';
    return name.empty() ? "?" : name;
}

} // namespace

bool valid_weight(const std::string& weight)
{
    return weight_field(weight) != nullptr;
}

bool write_collapsed(const Report& report, const std::string& weight, std::FILE* out)
{
    const Weight field = weight_field(weight);
    if (!field)
        return false;
    for (const Site& site : report.sites) {
        const std::uint64_t value = site.*field;
        if (value == 0)
            continue;
        std::string line = site.truncated ? "[truncated]" : "";
        for (auto it = site.stack.rbegin(); it != site.stack.rend(); ++it) {
            if (!line.empty())
                line += ';';
            line += frame_name(*it);
        }
        if (site.stack.empty())
            line += line.empty() ? "[no stack]" : ";[no stack]";
        std::fprintf(out, "%s %" PRIu64 "\n", line.c_str(), value);
    }
    return !std::ferror(out);
}

} // namespace memscope
