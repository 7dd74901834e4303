// Glue between the tracer's maps and the model: attach a process's
// allocator, turn a snapshot into a report.
#pragma once

#include <string>
#include <vector>

#include "model.hpp"
#include "tracer.hpp"

namespace memscope {

// Attach to every file in `objects` (host paths) that defines allocator
// functions. Returns an error sentence, empty on success; `probed` counts
// the functions probed.
std::string attach_allocators(Tracer& tracer, int pid, const std::vector<std::string>& objects,
                              int& probed);

// Exit status as a shell reports it: the code, or 128 + signal.
int shell_status(int wait_status);

Report make_report(const Snapshot& snap, const Target& target, double duration_s,
                   std::uint64_t sampled_process_peak);

} // namespace memscope
