// The JSON report, schema memscope-trace/2: sites and leaks name their
// stacks' frames by index into one "frames" table. Schema 1 (frames written
// out in every stack) is still read.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "json_bounded.hpp"
#include "model.hpp"

namespace memscope {

// The whole report as a document (tests; small reports).
nlohmann::json report_to_json(const Report& report);
// The same without the variables, one by one (what the HTML page and the
// folded stacks need).
nlohmann::json report_summary_json(const Report& report);

// A stack's entry as its frame: in schema 2 an index into the report's
// "frames" table (`frames`; null when the report has none), in schema 1 the
// frame itself. Null when an index names no frame.
inline const nlohmann::json* stack_frame(const nlohmann::json& entry, const nlohmann::json* frames)
{
    if (!entry.is_number_unsigned())
        return &entry;
    const auto i = entry.get<std::uint64_t>();
    return frames && frames->is_array() && i < frames->size() ? &(*frames)[i] : nullptr;
}

// Read a JSON report back; an error sentence when it is none of ours.
std::string read_report_json(const std::string& path, nlohmann::json& out);

// Serialise; strings from the target are escaped, and bytes that are not
// UTF-8 are replaced rather than trusted. Variables are streamed one per
// line, so memory stays flat however many there are.
bool write_report_json(const Report& report, std::FILE* out);
std::string report_to_json_text(const Report& report);

} // namespace memscope
