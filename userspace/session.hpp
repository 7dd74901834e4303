// Glue between the tracer's maps and the model: attach a process's
// allocator and tracker entry points, follow its libraries, turn a snapshot
// into a report.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model.hpp"
#include "tracer.hpp"
#include "tracker_events.hpp"

namespace memscope {

inline constexpr std::size_t kDefaultMaxVariables = 4'000'000;

class Session {
public:
    Session(Tracer& tracer, std::size_t max_variables);

    // Attach to every file in `objects` (host paths) that defines allocator
    // functions or carries tracker entry points. Returns an error sentence,
    // empty on success; `probed` counts the allocator functions probed.
    std::string attach(int pid, const std::vector<std::string>& objects, int& probed);

    // Read pending events; after a dlopen, attach to the new libraries'
    // entry points. Call it often: the event ring is bounded.
    void drain(int pid);

    std::size_t tracker_modules() const { return modules_.size(); }
    const std::vector<std::string>& notes() const { return notes_; }

    // The tracked variables, scopes and tasks, for the final report.
    Tracked tracked(const Snapshot& snap);

private:
    bool seen(const std::string& path);
    std::string attach_tracker(int pid, const std::string& path, const ElfScan& scan);

    Tracer& tracer_;
    TrackerModules modules_;
    TrackerEvents events_;
    std::set<std::pair<dev_t, ino_t>> seen_;
    std::vector<std::string> notes_; // things worth a line with --verbose
};

// Exit status as a shell reports it: the code, or 128 + signal.
int shell_status(int wait_status);

Report make_report(const Snapshot& snap, const Target& target, double duration_s,
                   std::uint64_t sampled_process_peak);

} // namespace memscope
