// JSON from files we did not write (reports handed to `report`, `diff`,
// `run --baseline`): parsed with a bound on nesting, so that no reader,
// renderer or destructor that walks a document recursively can be driven
// off the end of its stack.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace memscope {

// No report nests deeper than this.
inline constexpr int kMaxJsonDepth = 64;

// Parse `text` like nlohmann::json::parse(text, keep) (keep may be empty;
// the parser itself is iterative), but refuse a document nested deeper
// than kMaxJsonDepth: false, with `out` discarded. Throws what parse
// throws on invalid JSON.
inline bool parse_json_bounded(const std::string& text, nlohmann::json& out,
                               const nlohmann::json::parser_callback_t& keep = nullptr)
{
    using json = nlohmann::json;
    struct TooDeep {};
    json::parser_callback_t bounded = [&keep](int depth, json::parse_event_t event, json& parsed) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= kMaxJsonDepth)
            throw TooDeep{};
        return keep ? keep(depth, event, parsed) : true;
    };
    try {
        out = json::parse(text, bounded);
    } catch (const TooDeep&) {
        out = json(json::value_t::discarded);
        return false;
    }
    return true;
}

} // namespace memscope
