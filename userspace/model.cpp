#include "model.hpp"

#include <algorithm>

namespace memscope {

Counters sum_counters(const std::vector<CpuCounters>& per_cpu, const LiveFigures& live,
                      std::uint64_t* untracked)
{
    Counters c;
    std::uint64_t untracked_sum = 0;
    for (const auto& s : per_cpu) {
        c.alloc_count += s.alloc_count;
        c.alloc_bytes += s.alloc_bytes;
        c.free_count += s.free_count;
        c.free_bytes += s.free_bytes;
        c.failed_alloc_count += s.failed_alloc_count;
        c.unmatched_free_count += s.unmatched_free_count;
        c.exit_unmatched_free_count += s.exit_unmatched_free_count;
        c.track_count += s.track_count;
        c.untracked_free_count += s.untracked_free_count;
        untracked_sum += s.untracked_alloc_count;
    }
    // A sample taken while another thread frees can read a transient
    // negative; live figures never go below zero.
    c.live_bytes = live.live_bytes > 0 ? static_cast<std::uint64_t>(live.live_bytes) : 0;
    c.live_count = live.live_count > 0 ? static_cast<std::uint64_t>(live.live_count) : 0;
    c.peak_live_bytes = live.peak_live_bytes;
    if (untracked)
        *untracked = untracked_sum;
    return c;
}

void compute_totals(Report& report, std::uint64_t sampled_process_peak)
{
    Counters t;
    std::uint64_t max_thread_peak = 0;
    int holders = 0;
    report.dropped.untracked_allocations = 0;
    for (const auto& th : report.threads) {
        const Counters& c = th.counters;
        t.alloc_count += c.alloc_count;
        t.alloc_bytes += c.alloc_bytes;
        t.free_count += c.free_count;
        t.free_bytes += c.free_bytes;
        t.live_count += c.live_count;
        t.live_bytes += c.live_bytes;
        t.failed_alloc_count += c.failed_alloc_count;
        t.unmatched_free_count += c.unmatched_free_count;
        t.exit_unmatched_free_count += c.exit_unmatched_free_count;
        t.track_count += c.track_count;
        t.untracked_free_count += c.untracked_free_count;
        max_thread_peak = std::max(max_thread_peak, c.peak_live_bytes);
        if (c.peak_live_bytes > 0)
            ++holders;
        report.dropped.untracked_allocations += th.untracked_alloc_count;
    }
    t.peak_live_bytes = std::max({sampled_process_peak, max_thread_peak, t.live_bytes});
    report.peak_live_bytes_exact = holders <= 1;
    report.totals = t;
}

void sort_threads(Report& report)
{
    std::sort(report.threads.begin(), report.threads.end(), [](const auto& a, const auto& b) {
        return a.tid != b.tid ? a.tid < b.tid : a.start_ns < b.start_ns;
    });
}

void add_tracked(Report& report, Tracked tracked)
{
    if (tracked.dropped_variables > 0) {
        report.dropped.events += tracked.dropped_variables;
        report.dropped.reasons["variable_table_full"] += tracked.dropped_variables;
        report.warnings.push_back("figures are incomplete: see dropped");
    }
    if (report.dropped.reasons.count("event_ring_full") && !tracked.variables.empty())
        report.warnings.push_back("the event ring overflowed: some tracked variables are missing, and "
                                  "some freed ones may show as live");
    if (tracked.unreadable_descriptors > 0)
        report.warnings.push_back(std::to_string(tracked.unreadable_descriptors) +
                                  " tracker descriptors could not be read from the target's files "
                                  "(shown as \"?\")");
    report.tracked = std::move(tracked);
}

} // namespace memscope
