#include "report_collapsed.hpp"
#include "paths.hpp"
#include "report_json.hpp"

#include <cinttypes>
#include <vector>

namespace memscope {

namespace {

const char* weight_field(const std::string& weight)
{
    if (weight == "bytes")
        return "alloc_bytes";
    if (weight == "count")
        return "alloc_count";
    if (weight == "live_bytes" || weight == "live_count")
        return weight.c_str();
    return nullptr;
}

// One frame's name: its symbol, else module+offset, else its address.
std::string frame_name(const nlohmann::json& f)
{
    std::string name;
    char buf[64];
    if (f.contains("symbol") && f["symbol"].is_string()) {
        name = f["symbol"].get<std::string>();
    } else if (f.contains("module") && f["module"].is_string()) {
        std::string m = f["module"].get<std::string>();
        std::snprintf(buf, sizeof buf, "+0x%" PRIx64, f.value("offset", std::uint64_t{0}));
        name = base_name(m) + buf;
    } else {
        std::snprintf(buf, sizeof buf, "0x%" PRIx64, f.value("addr", std::uint64_t{0}));
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

bool write_collapsed(const nlohmann::json& report, const std::string& weight, std::FILE* out)
{
    const char* field = weight_field(weight);
    if (!field || !report.contains("sites") || !report["sites"].is_array())
        return false;
    const nlohmann::json* table =
        report.contains("frames") && report["frames"].is_array() ? &report["frames"] : nullptr;
    for (const auto& site : report["sites"]) {
        std::uint64_t value = site.value(field, std::uint64_t{0});
        if (value == 0)
            continue;
        std::string line = site.value("truncated", false) ? "[truncated]" : "";
        std::vector<std::string> frames;
        if (site.contains("stack") && site["stack"].is_array())
            for (const auto& f : site["stack"]) {
                const nlohmann::json* frame = stack_frame(f, table);
                frames.push_back(frame ? frame_name(*frame) : "?");
            }
        if (frames.empty())
            frames.push_back("[no stack]");
        for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
            if (!line.empty())
                line += ';';
            line += *it;
        }
        std::fprintf(out, "%s %" PRIu64 "\n", line.c_str(), value);
    }
    return !std::ferror(out);
}

} // namespace memscope
