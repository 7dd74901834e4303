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

// The one reader: a report document back into the model, every field the
// writer writes (schema 2, and schema 1's frames written out in each
// stack). Fields an older report lacks keep their defaults (the counters it
// lacks are listed in absent_counters); a wrong one is an error sentence
// naming it ("threads[3].alloc_count is negative, ..."), and `out` is then
// partly read. Strings are taken as they are: a parsed document's are UTF-8.
std::string report_from_json(const nlohmann::json& doc, Report& out);

// Parse a report file's text, nesting bounded; without `with_variables` the
// parts no comparison reads (variables, timeline, mode requests) are left
// out. An error sentence without a subject ("is not valid JSON (...)").
std::string parse_report_text(const std::string& text, nlohmann::json& doc, bool with_variables = true);

// Read a report file into the model; an error sentence naming the file.
std::string read_report_json(const std::string& path, Report& out, bool with_variables = true);

// What a JSON value is, for an error sentence: "an array", "null", ...
std::string json_kind(const nlohmann::json& v);

// Serialise; strings from the target are escaped, and bytes that are not
// UTF-8 are replaced rather than trusted. Variables are streamed one per
// line, so memory stays flat however many there are.
bool write_report_json(const Report& report, std::FILE* out);
std::string report_to_json_text(const Report& report);

} // namespace memscope
