#include "process_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <unistd.h>

#include "session.hpp" // shell_status

namespace memscope {

namespace {

std::string comm_of(const ms_sys_proc& raw)
{
    return std::string(raw.comm, strnlen(raw.comm, sizeof raw.comm));
}

void growth(WatchedProcess& w, double t)
{
    MemoryFigures& m = *w.section.memory;
    const double dt = t - w.first_t;
    m.watched_s = std::max(0.0, dt);
    m.anon_growth_bytes_per_s = dt >= ProcessTable::kMinGrowthWindow
                                    ? (static_cast<double>(m.rss_anon_bytes) - static_cast<double>(w.first_anon)) / dt
                                    : 0;
}

} // namespace

MemoryFigures memory_figures(const ms_sys_proc& raw)
{
    MemoryFigures m;
    m.rss_anon_bytes = raw.rss[MS_RSS_ANON];
    m.rss_file_bytes = raw.rss[MS_RSS_FILE];
    m.rss_shmem_bytes = raw.rss[MS_RSS_SHMEM];
    m.swap_bytes = raw.rss[MS_RSS_SWAP];
    m.peak_rss_anon_bytes = raw.peak_rss_anon;
    m.peak_rss_bytes = raw.peak_rss;
    m.brk_bytes = raw.brk_bytes;
    m.peak_brk_bytes = raw.peak_brk_bytes;
    m.mmap_anon_bytes = raw.mmap_anon_bytes;
    m.munmap_bytes = raw.munmap_bytes;
    m.brk_calls = raw.brk_calls;
    m.mmap_anon_calls = raw.mmap_anon_calls;
    m.munmap_calls = raw.munmap_calls;
    return m;
}

void ProcessTable::list(const ProcessSection& s, double t, std::uint64_t start_ticks)
{
    WatchedProcess w;
    w.section = s;
    w.start_ticks = start_ticks;
    if (!w.section.memory)
        w.section.memory.emplace();
    w.first_t = w.recent_t = t;
    w.first_anon = w.recent_anon = w.section.memory->rss_anon_bytes;
    live_[s.target.pid] = std::move(w);
    ++counts_.processes_seen;
}

void ProcessTable::apply(WatchedProcess& w, const ms_sys_proc& raw, double t)
{
    ProcessSection& s = w.section;
    MemoryFigures before = s.memory.value_or(MemoryFigures{});
    MemoryFigures m = memory_figures(raw);
    // Peaks /proc saw before the first event stand.
    m.peak_rss_anon_bytes = std::max(m.peak_rss_anon_bytes, before.peak_rss_anon_bytes);
    m.peak_rss_bytes = std::max(m.peak_rss_bytes, before.peak_rss_bytes);
    s.memory = m;
    if (raw.comm[0])
        s.target.comm = comm_of(raw);
    if (raw.ppid)
        s.parent_pid = static_cast<int>(raw.ppid);
    if (raw.ns_pid) {
        s.ns_pid = static_cast<int>(raw.ns_pid);
        s.other_pid_namespace = raw.ns_level > 0;
    }
    s.born_while_traced = s.born_while_traced || (raw.flags & MS_SYS_SEEN_FORK);
    s.execs = raw.execs;
    s.forks = raw.forks;
    s.oom_killed = s.oom_killed || (raw.flags & MS_SYS_OOM_KILLED);
    if (raw.cgroup_id && raw.cgroup_id != w.cgroup_id) {
        w.cgroup_id = raw.cgroup_id;
        if (cgroup_name)
            s.cgroup = cgroup_name(raw.cgroup_id, s.exited ? 0 : s.target.pid);
    }
    if (w.first_t < 0 && raw.first_seen_ns) {
        // Since the kernel first saw it (a process born and gone between
        // two reads of the map has its whole life here).
        w.first_t = std::min(t, static_cast<double>(raw.first_seen_ns) / 1e9 - mono_start_s_);
        w.first_anon = raw.first_rss_anon;
        w.recent_t = t;
        w.recent_anon = m.rss_anon_bytes;
    } else if (w.first_t < 0) {
        w.first_t = w.recent_t = t;
        w.first_anon = w.recent_anon = m.rss_anon_bytes;
    }
    if (t > w.recent_t + 1e-6) {
        w.recent_rate = (static_cast<double>(m.rss_anon_bytes) - static_cast<double>(w.recent_anon)) / (t - w.recent_t);
        w.recent_t = t;
        w.recent_anon = m.rss_anon_bytes;
    }
    growth(w, t);
}

// A listed process and a kernel entry of its pid: the same process when
// their start times agree (to /proc's tick); without one, unless the entry
// was born while traced (then the listed one is gone).
bool ProcessTable::same_start(const WatchedProcess& w, const ms_sys_proc& raw)
{
    static const double tick_ns = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
    if (w.start_ticks && raw.start_boottime_ns) {
        const double ticks = static_cast<double>(raw.start_boottime_ns) / tick_ns;
        return std::abs(ticks - static_cast<double>(w.start_ticks)) <= 1.0;
    }
    return !(raw.flags & MS_SYS_SEEN_FORK);
}

WatchedProcess& ProcessTable::update(int pid, const ms_sys_proc& raw, double t)
{
    auto it = live_.find(pid);
    if (it != live_.end()) {
        WatchedProcess& w = it->second;
        const bool other = w.start_ns ? w.start_ns != raw.start_ns : !same_start(w, raw);
        if (other) {
            // The process we knew exited (its event still on the way); this is a new one.
            WatchedProcess gone = std::move(w);
            live_.erase(it);
            retire(pid, std::move(gone), std::nullopt);
            it = live_.end();
        }
    }
    if (it == live_.end()) {
        it = live_.emplace(pid, WatchedProcess{}).first;
        it->second.section.target.pid = pid;
        ++counts_.processes_seen;
        if (raw.flags & MS_SYS_SEEN_FORK)
            ++counts_.births;
    }
    it->second.start_ns = raw.start_ns;
    apply(it->second, raw, t);
    return it->second;
}

WatchedProcess* ProcessTable::exec(int pid, const ms_sys_proc& raw, double t)
{
    ++counts_.execs;
    WatchedProcess& w = update(pid, raw, t);
    // Growth is the new program's, from its exec on (the kernel's entry
    // starts afresh there too).
    w.first_t = -1;
    update(pid, raw, t);
    return &w;
}

void ProcessTable::exit(int pid, const ms_sys_proc* raw, int wait_status, double t)
{
    auto it = live_.find(pid);
    if (raw && it != live_.end() && it->second.start_ns && it->second.start_ns != raw->start_ns) {
        // An earlier process of this pid, retired already: its status.
        if (auto e = exited_at_.find({pid, raw->start_ns}); e != exited_at_.end())
            exited_[e->second].target.exit_code = shell_status(wait_status);
        ++counts_.exits;
        return;
    }
    if (raw)
        update(pid, *raw, t);
    it = live_.find(pid);
    if (it == live_.end())
        return; // a kernel thread, or a process never listed
    ++counts_.exits;
    WatchedProcess w = std::move(it->second);
    live_.erase(it);
    retire(pid, std::move(w), wait_status);
}

void ProcessTable::retire(int pid, WatchedProcess w, std::optional<int> wait_status)
{
    w.section.exited = true;
    if (wait_status)
        w.section.target.exit_code = shell_status(*wait_status);
    if (exited_.size() >= max_exited_) {
        ++counts_.not_listed;
        counts_.not_listed_peak_rss_anon_bytes =
            std::max(counts_.not_listed_peak_rss_anon_bytes, w.section.memory->peak_rss_anon_bytes);
        return;
    }
    exited_at_[{pid, w.start_ns}] = exited_.size();
    exited_.push_back(std::move(w.section));
}

void ProcessTable::oom(int pid, const ms_sys_proc& raw, double t)
{
    ++counts_.oom_kills;
    OomKill k;
    k.pid = pid;
    k.ns_pid = static_cast<int>(raw.ns_pid);
    k.comm = comm_of(raw);
    k.t_s = t;
    k.memory = memory_figures(raw);
    if (auto it = live_.find(pid); it != live_.end()) {
        it->second.section.oom_killed = true;
        k.cgroup = it->second.section.cgroup;
        if (k.comm.empty())
            k.comm = it->second.section.target.comm;
    }
    oom_kills_.push_back(std::move(k));
}

std::vector<ProcessSection> ProcessTable::sections() const
{
    std::vector<ProcessSection> out;
    out.reserve(live_.size() + exited_.size());
    for (const auto& [pid, w] : live_)
        out.push_back(w.section);
    out.insert(out.end(), exited_.begin(), exited_.end());
    std::stable_sort(out.begin(), out.end(),
                     [](const ProcessSection& a, const ProcessSection& b) { return a.target.pid < b.target.pid; });
    return out;
}

SystemSummary ProcessTable::summary() const
{
    return counts_;
}

} // namespace memscope
