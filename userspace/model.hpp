// The pure model of a trace: what the BPF maps said, shaped for reports.
// No kernel objects here: unit tests drive it without root.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "modes.hpp"
#include "variables.hpp"

namespace memscope {

inline constexpr const char* kSchema = "memscope-trace/1";
inline constexpr const char* kToolVersion = "0.1.0";

struct Counters {
    std::uint64_t alloc_count = 0;
    std::uint64_t alloc_bytes = 0;
    std::uint64_t free_count = 0;
    std::uint64_t free_bytes = 0;
    std::uint64_t live_count = 0;
    std::uint64_t live_bytes = 0;
    std::uint64_t peak_live_bytes = 0;
    std::uint64_t failed_alloc_count = 0;
    std::uint64_t unmatched_free_count = 0;
    // Unknown blocks freed on a thread's exit path: the allocator releasing
    // its per-thread cache. Kept apart so unmatched_free_count means the program.
    std::uint64_t exit_unmatched_free_count = 0;
    std::uint64_t track_count = 0; // tracker entry point calls naming a variable
    // Frees of unknown blocks after a stint without records (async, off):
    // blocks allocated then, mostly.
    std::uint64_t untracked_free_count = 0;
};

struct ThreadStats {
    std::uint32_t tid = 0;
    std::uint64_t start_ns = 0; // kernel start time: tid plus this names a thread
    std::string name;
    Counters counters;
    std::uint64_t untracked_alloc_count = 0;
};

struct Target {
    int pid = 0;
    std::string comm;
    std::string exe;
    std::optional<int> exit_code; // exit status, or 128+signal
};

struct Children {
    std::uint64_t forks = 0;
    std::uint64_t execs = 0;
    std::vector<int> pids; // first ones seen
};

struct Dropped {
    std::uint64_t events = 0;
    std::uint64_t untracked_allocations = 0;
    std::map<std::string, std::uint64_t> reasons; // nonzero BPF drop counters by name
};

// Allocations made inside one scope or task.
struct GroupTotals {
    std::uint32_t desc = kNoDescriptor;
    std::uint64_t id = 0; // task id; 0 for scopes
    std::uint64_t alloc_count = 0;
    std::uint64_t alloc_bytes = 0;
};

// What the tracker entry points said (variables, scopes, tasks).
struct Tracked {
    std::vector<std::string> modules; // files carrying entry points
    std::vector<Descriptor> descriptors;
    Variables variables;
    std::vector<VariableSummary> summary;
    std::vector<GroupTotals> scopes;
    std::vector<GroupTotals> tasks;
    std::vector<ModeRequest> mode_requests;
    std::uint64_t unreadable_descriptors = 0;
    std::uint64_t dropped_variables = 0; // over --max-variables
    std::uint64_t counted_by_name = 0;   // variables counted in fast mode, not listed one by one

    // A descriptor by index; null for kNoDescriptor or out of range.
    const Descriptor* descriptor(std::uint32_t i) const
    {
        return i < descriptors.size() ? &descriptors[i] : nullptr;
    }
};

struct Report {
    Target target;
    double duration_s = 0;
    std::string mode = "normal";
    std::string mode_source = "default";
    std::vector<ModeChange> mode_changes;
    bool live_bytes_exact = true; // false after a stint in async or off
    bool free_bytes_exact = true; // false after a stint in async
    std::uint64_t allocation_records = 0; // outstanding records left in the table at the end
    // The tracer's own cost (RUSAGE_SELF) and kernel memory.
    struct TracerCost {
        double cpu_user_s = 0, cpu_sys_s = 0;
        std::uint64_t max_rss_kb = 0, bpf_map_bytes = 0;
    } tracer;
    Counters totals;
    bool peak_live_bytes_exact = true;
    std::vector<ThreadStats> threads;
    Dropped dropped;
    Children children;
    std::vector<std::string> warnings;
    Tracked tracked;
};

// One CPU's slice of a thread's counters, as the per-CPU map holds it.
struct CpuCounters {
    std::uint64_t alloc_count = 0, alloc_bytes = 0, free_count = 0, free_bytes = 0,
                  failed_alloc_count = 0, unmatched_free_count = 0, untracked_alloc_count = 0,
                  exit_unmatched_free_count = 0, track_count = 0, untracked_free_count = 0;
};

struct LiveFigures {
    std::int64_t live_bytes = 0;
    std::int64_t live_count = 0;
    std::uint64_t peak_live_bytes = 0;
};

// Fold per-CPU slices and the live figures into a thread's counters.
Counters sum_counters(const std::vector<CpuCounters>& per_cpu, const LiveFigures& live,
                      std::uint64_t* untracked = nullptr);

// Totals over threads. The process peak is the largest of the sampled
// process-wide live sums and every thread's exact peak; it is exact only
// when a single thread ever held memory.
void compute_totals(Report& report, std::uint64_t sampled_process_peak);

// Order threads for display and output: by tid, then start time.
void sort_threads(Report& report);

// Put the tracker's findings in the report; variables that did not fit count as dropped.
void add_tracked(Report& report, Tracked tracked);

} // namespace memscope
