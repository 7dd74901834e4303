// Allocation sites and leaks from what the maps hold: counts per stack,
// outstanding records grouped by stack; and live bytes sampled over time.
// Pure: unit tests drive it without root.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model.hpp"

namespace memscope {

// A site's counts with its symbolized stack.
struct SiteInput {
    std::uint64_t id = 0;
    std::vector<Frame> stack;
    bool truncated = false;
    std::uint64_t alloc_count = 0, alloc_bytes = 0;
    std::string end; // why a truncated stack ended early
    std::uint64_t temporary_count = 0;
};

// An outstanding allocation, with the variables naming it.
struct OutstandingBlock {
    std::uint64_t stack = 0; // 0: recorded without a stack
    std::uint64_t size = 0, alloc_ns = 0;
    std::uint32_t tid = 0;
    std::uint64_t thread_start_ns = 0;
    std::vector<std::uint32_t> variables; // descriptor indices
};

// Why an outstanding allocation is the runtime's, kept for the process's
// lifetime by design (libstdc++'s exception pool, a stdio buffer, the
// dynamic loader's): empty when it is the program's. `truncated`: the walk
// ended before main or a thread's start.
std::string expected_reason(const std::vector<Frame>& stack, bool truncated = false);

// Fill report.sites, report.leaks and report.stacks from the sites and the
// outstanding blocks; `now_ns` (CLOCK_MONOTONIC) dates the leaks' ages,
// and blocks younger than `min_age_s` are counted young (Leak).
// Thread names come from report.threads.
void add_sites(Report& report, std::vector<SiteInput> sites, const std::vector<OutstandingBlock>& blocks,
               std::uint64_t now_ns, std::uint32_t depth, double min_age_s = 0);

// Allocations of one power-of-two size bucket, at one site (stack 0: none).
struct RawSize {
    std::uint64_t stack = 0;
    std::uint32_t bucket = 0;
    std::uint64_t count = 0, bytes = 0;
};

// A process's exact peak and what each site held then (ms_proc_live).
struct RawPeak {
    std::uint64_t live_bytes = 0; // at the peak
    std::uint64_t ns = 0;         // CLOCK_MONOTONIC
    // The peak moved while the sites were read (the process runs on): their
    // figures are of a peak a little before this one.
    bool moved = false;
    struct Site {
        std::uint64_t stack = 0;
        std::int64_t live_count = 0, live_bytes = 0;
    };
    std::vector<Site> sites;
};

// The sizes (by site and bucket) into the report's and its sites'
// histograms; after add_sites.
void add_sizes(Report& report, const std::vector<RawSize>& sizes);

// Process `pid`'s exact peak (reached at `peak.ns`; tracing began at
// `start_ns`) and its sites into report.peak, and the peak figure of the
// totals with it; after add_sites, with the report's threads in.
void add_peak(Report& report, std::uint32_t pid, const RawPeak& peak, std::uint64_t start_ns);

// Samples of process and per-thread live bytes, bounded: past `max_samples`
// every other sample goes and the interval doubles.
class TimelineRecorder {
public:
    explicit TimelineRecorder(double interval_s, std::size_t max_samples = 4096)
        : interval_(interval_s), max_(max_samples < 4 ? 4 : max_samples)
    {
    }
    // Whether a sample is due at `t_s`.
    bool due(double t_s) const { return t_.empty() || t_s - t_.back() >= interval_ * 0.999; }
    void sample(double t_s, const std::vector<ThreadStats>& threads);
    Timeline timeline() const;

private:
    double interval_;
    std::size_t max_;
    std::vector<double> t_;
    std::vector<std::int64_t> process_;
    std::map<std::pair<std::uint32_t, std::uint64_t>, Timeline::Thread> threads_;
};

} // namespace memscope
