// What a probe hit costs on this machine, trap included: measured, not
// assumed, so that auto mode's overhead estimate means something.
#pragma once

#include <string>

#include "tracer.hpp"

namespace memscope {

// Runs malloc(64)+free pairs in a helper process, untraced and then under
// this tracer's own probes in normal, fast and async modes (the helper's
// own: the target's mode is untouched, so this may run while tracing);
// cost_ns[m] is the extra time per probe hit (a pair is two hits). Returns
// an error sentence, empty on success.
std::string calibrate_hit_costs(Tracer& tracer, double (&cost_ns)[3]);

} // namespace memscope
