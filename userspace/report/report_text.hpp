// The text report people read on stderr, and the live per-thread table.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "model.hpp"
#include "units.hpp" // human_bytes: 1536 -> "1.5 KiB"; below 1 KiB, plain bytes

namespace memscope {

// Make an untrusted string safe for a terminal: control bytes, DEL and
// bytes outside printable ASCII become \xNN; backslash becomes \\.
std::string escape_for_terminal(std::string_view s);

// `all_threads`: a row per thread; else threads of one name share a row.
std::string format_report(const Report& report, bool all_threads = false);

// The tracked variables (top `top` by bytes, and those live at the end),
// scopes and tasks; empty when the target named none.
std::string format_tracked(const Report& report, std::size_t top = 10);

// Top allocation sites by bytes and by count, and the leak report: blocks
// outstanding at the end, grouped by stack, with threads and variables;
// empty without stacks.
std::string format_sites(const Report& report, std::size_t top = 10);
// Allocation sizes by power of two; what was live at the peak, by site.
std::string format_sizes(const Report& report);
std::string format_peak(const Report& report, std::size_t top = 10);

// One frame of the --live table. `previous` holds each thread's
// alloc_count at the last frame, keyed by tid, to give allocations per second.
std::string format_live_table(const Report& snapshot,
                              const std::map<std::uint32_t, std::uint64_t>& previous,
                              double seconds_since_previous);

} // namespace memscope
