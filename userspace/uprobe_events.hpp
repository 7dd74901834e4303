// Probes shared by every process of one run. A uprobe opened through the
// kernel's uprobe PMU is a trace event of its own per process, and releasing
// it waits out a grace period under a kernel-wide lock (~0.1 s): a command
// that starts hundreds of processes would leave minutes of releases behind,
// stalling every other uprobe user meanwhile. Here each probe site is one
// tracefs uprobe event (group memscope_<tracer pid>); its program is attached
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

struct bpf_link;
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
    // use. -1 with `error` set on failure (errno kept).
    int open_for(bpf_program* prog, const std::string& path, std::uint64_t offset, bool retprobe,
                 std::uint64_t ref_ctr_offset, std::uint64_t cookie, int pid, std::string& error);

    // Hand the programs' links to a helper at exit: their fds, and the
    // events to remove once they are closed. Afterwards this object owns nothing.
    struct Handover {
        std::vector<int> fds;
        std::string uprobe_events; // the tracefs file
        std::vector<std::string> events; // "group/name"
    };
    Handover hand_over();

    // Remove events (each "group/name") through `uprobe_events_file`; those
    // still in use stay. Safe in a forked child (no allocation after the
    // strings are built: the caller builds them).
    static void remove_events(const std::string& uprobe_events_file, const std::vector<std::string>& events);

private:
    struct Event {
        std::string name; // "group/name"
        bpf_link* link = nullptr; // the program, on the anchor's perf event
        int id = 0;
    };
    // Site: device, inode, offset, return probe, ref_ctr offset, cookie, program.
    using Key = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, bool, std::uint64_t, std::uint64_t,
                           const bpf_program*>;
    Event* event_for(bpf_program* prog, const std::string& path, std::uint64_t offset, bool retprobe,
                     std::uint64_t ref_ctr_offset, std::uint64_t cookie, std::string& error);
    void remove_stale() const;

    std::string dir_;   // tracefs
    std::string group_; // memscope_<pid>
    int anchor_ = -1;
    bool handed_over_ = false; // the events are the helper's to remove
    unsigned next_ = 0;
    std::map<Key, Event> events_;
};

} // namespace memscope
