// Folded stacks ("root;...;leaf value" per line) from a report's sites, for
// flamegraph.pl, inferno and speedscope.
#pragma once

#include <cstdio>
#include <string>

#include "model.hpp"

namespace memscope {

// Weights a folded line may carry: a site's alloc_bytes ("bytes"),
// alloc_count ("count"), live_bytes or live_count.
bool valid_weight(const std::string& weight);

// Writes one line per site with a nonzero weight, frames root first; a
// truncated stack starts at "[truncated]". Names are made safe for the
// format (no ';', no control characters).
bool write_collapsed(const Report& report, const std::string& weight, std::FILE* out);

} // namespace memscope
