// -a: every process the machine ran while traced, from tier 0's map
// snapshots and events. Pure: unit tests feed it figures by hand.
//
// A pid names one process at a time: the kernel's start time of its leader
// tells a reused pid apart, so two processes never mix. An entry listed
// from /proc before any event has no start time yet; it takes the first
// one the BPF side gives, unless that entry was born while traced (then the
// listed process is gone and this is another).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "memscope.h"
#include "model.hpp"

namespace memscope {

struct WatchedProcess {
    ProcessSection section; // memory always set
    std::uint64_t start_ns = 0; // 0: listed from /proc, no event yet
    std::uint64_t start_ticks = 0; // listed: /proc's start time (clock ticks after boot), 0 unknown
    std::uint64_t cgroup_id = 0;
    double first_t = -1;          // when first seen, and its anon RSS then
    std::uint64_t first_anon = 0;
    double recent_t = -1;         // the last sample, for the live rate
    std::uint64_t recent_anon = 0;
    double recent_rate = 0;       // anon bytes per second between the last two samples
};

class ProcessTable {
public:
    // `mono_start_s`: CLOCK_MONOTONIC seconds when tracing began (the BPF
    // side's times are that clock's; the table's t are since then).
    explicit ProcessTable(std::size_t max_exited, double mono_start_s = 0)
        : max_exited_(max_exited), mono_start_s_(mono_start_s)
    {
    }
    // Growth is said of a process watched this long at least (a shorter
    // life's rate is mostly its start).
    static constexpr double kMinGrowthWindow = 1.0;

    // A process /proc listed at start (figures as /proc said them;
    // `start_ticks`: its start time as /proc/PID/stat says it).
    void list(const ProcessSection& s, double t, std::uint64_t start_ticks = 0);
    // A map snapshot's entry (t: seconds since tracing began).
    WatchedProcess& update(int pid, const ms_sys_proc& raw, double t);
    // Events. exec: the new program's name; exit: its last figures (when
    // it had an entry) and wait(2) status; OOM: a kill, recorded.
    WatchedProcess* exec(int pid, const ms_sys_proc& raw, double t);
    void exit(int pid, const ms_sys_proc* raw, int wait_status, double t);
    void oom(int pid, const ms_sys_proc& raw, double t);

    const std::map<int, WatchedProcess>& live() const { return live_; }
    std::map<int, WatchedProcess>& live() { return live_; }
    // Every process, live then exited, in pid order; the counts; the kills.
    std::vector<ProcessSection> sections() const;
    SystemSummary summary() const;
    const std::vector<OomKill>& oom_kills() const { return oom_kills_; }
    double mono_start_s() const { return mono_start_s_; }
    // The cgroup path of an id (set by the caller, which reads /proc).
    std::function<std::string(std::uint64_t id, int pid)> cgroup_name;

private:
    void retire(int pid, WatchedProcess w, std::optional<int> wait_status);
    void apply(WatchedProcess& w, const ms_sys_proc& raw, double t);
    static bool same_start(const WatchedProcess& w, const ms_sys_proc& raw);
    std::size_t max_exited_;
    double mono_start_s_;
    std::map<int, WatchedProcess> live_;
    std::vector<ProcessSection> exited_;
    std::map<std::pair<int, std::uint64_t>, std::size_t> exited_at_; // (pid, start_ns) -> exited_ index
    std::vector<OomKill> oom_kills_;
    SystemSummary counts_;
};

// Figures of a map entry as the report names them.
MemoryFigures memory_figures(const ms_sys_proc& raw);

} // namespace memscope
