// Probes shared by every process of one run. A uprobe opened through the
// kernel's uprobe PMU is a trace event of its own per process, and releasing
// it waits out a grace period under a kernel-wide lock (~0.1 s): a command
// that starts hundreds of processes would leave minutes of releases behind,
// stalling every other uprobe user meanwhile. Here each probe site is one
// tracefs uprobe event (group memscope_<tracer pid>_<its start time>_<n>, a
// name no other tracer, now or later, can hold); its program is attached
// once, through a perf event of an idle anchor process that never runs the
// probed code; each traced process gets a plain perf event on it, which only
// lets the event fire in that process (the kernel filters uprobe hits by the
// perf events' processes). Closing such an event is cheap: no grace period.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "attached.hpp"

struct bpf_program;

namespace memscope {

class UprobeEvents {
public:
    UprobeEvents() = default;
    ~UprobeEvents();
    UprobeEvents(const UprobeEvents&) = delete;
    UprobeEvents& operator=(const UprobeEvents&) = delete;

    // Find tracefs (mounting it when absent) and start the anchor. False,
    // with a reason, when this kernel or machine offers no uprobe_events:
    // the caller then attaches with the uprobe PMU, process by process.
    bool open(std::string& why);

    // A perf event that lets the site's event fire in process `pid` (its fd,
    // owned by the caller), the event made and the program attached on first
    // use. -1 on failure, errno kept and `error` set; `unshared` is then true
    // when the site could not be made a shared event at all (tracefs refused
    // it, or the program would not attach): the caller gives that probe a
    // link of its own. False means the process itself could not be given the
    // event (it is gone, say).
    int open_for(bpf_program* prog, const std::string& path, std::uint64_t offset, bool retprobe,
                 std::uint64_t ref_ctr_offset, std::uint64_t cookie, int pid, bool& unshared,
                 std::string& error);

    // What a helper needs to release the programs' links at exit: their fds,
    // and the events to remove once they are closed. The caller passes it on
    // and, once the helper exists, calls handed_over(): from then on this
    // object leaves the events alone (until then it removes them itself).
    struct Handover {
        std::vector<int> fds;
        std::string uprobe_events; // the tracefs file
        std::vector<std::string> events; // "group/name"
    };
    Handover hand_over() const;
    void handed_over() { handed_over_ = true; }

    // Remove events (each "group/name") through `uprobe_events_file`; with
    // `wait_busy`, retrying a moment while one is still in use (a release
    // under way). Allocates nothing: safe in a child forked from a threaded
    // process.
    static void remove_events(const std::string& uprobe_events_file, const std::vector<std::string>& events,
                              bool wait_busy = true);

private:
    struct Event {
        std::string name; // "group/name"
        Link link; // the program, on the anchor's perf event
        int id = 0;
    };
    // Site: device, inode, offset, return probe, ref_ctr offset, cookie, program.
    using Key = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, bool, std::uint64_t, std::uint64_t,
                           const bpf_program*>;
    Event* event_for(bpf_program* prog, const std::string& path, std::uint64_t offset, bool retprobe,
                     std::uint64_t ref_ctr_offset, std::uint64_t cookie, std::string& error);
    void remove_stale() const;
    bool start_anchor(std::string& why);
    void stop_anchor();
    bool anchor_exited() const;

    std::string dir_;   // tracefs
    std::string group_; // memscope_<pid>_<start time>_<n>
    int anchor_ = -1;   // its pid
    int anchor_fd_ = -1; // its pidfd: signalled and waited for without pid reuse races
    bool handed_over_ = false; // the events are the helper's to remove
    unsigned next_ = 0;
    std::map<Key, Event> events_;
};

} // namespace memscope
