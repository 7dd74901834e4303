// The pure model of a trace: what the BPF maps said, shaped for reports.
// No kernel objects here: unit tests drive it without root.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "interned.hpp"
#include "modes.hpp"
#include "variables.hpp"

namespace memscope {

// 2: a stack is a list of indices into the report's "frames" table; 1 (still
// read): a list of frame objects.
inline constexpr const char* kSchema = "memscope-trace/2";
inline constexpr const char* kSchemaV1 = "memscope-trace/1";
inline constexpr const char* kToolVersion = "0.1.0";
inline constexpr const char* kIncompleteWarning = "figures are incomplete: see dropped";
inline constexpr const char* kNoAllocatorCallWarning = "no allocator call was seen";
inline constexpr const char* kUnrecordedWarning = "live and peak figures are lower bounds";
inline constexpr const char* kUnprobedWarning = "allocators not probed";

// A thread's, a process's and the whole command's counters, each named
// once here: the struct, the JSON writer and reader, the sums and diff's
// metrics all walk this list. The first seven are in every report ever
// written; the rest came later and are compared only when both reports
// have them.
#define MEMSCOPE_COUNTERS(X)                                                                         \
    X(alloc_count)                                                                                   \
    X(alloc_bytes)                                                                                   \
    X(free_count)                                                                                    \
    X(free_bytes)                                                                                    \
    X(live_count)                                                                                    \
    X(live_bytes)                                                                                    \
    X(peak_live_bytes)                                                                               \
    X(failed_alloc_count)                                                                            \
    X(unmatched_free_count)                                                                          \
    /* unknown blocks freed on a thread's exit path: the allocator releasing its per-thread cache */ \
    X(exit_unmatched_free_count)                                                                     \
    X(track_count) /* tracker entry point calls naming a variable */                                 \
    /* frees of unknown blocks after a stint without records (async, off): blocks allocated then */  \
    X(untracked_free_count)                                                                          \
    /* blocks freed by the thread that allocated them, no allocation of its between (heaptrack's) */ \
    X(temporary_count)

struct Counters {
#define MEMSCOPE_COUNTER_FIELD(name) std::uint64_t name = 0;
    MEMSCOPE_COUNTERS(MEMSCOPE_COUNTER_FIELD)
#undef MEMSCOPE_COUNTER_FIELD
};

struct CounterField {
    const char* name;
    std::uint64_t Counters::*member;
};
// The counters in the order above.
inline constexpr CounterField kCounterFields[] = {
#define MEMSCOPE_COUNTER_ENTRY(name) {#name, &Counters::name},
    MEMSCOPE_COUNTERS(MEMSCOPE_COUNTER_ENTRY)
#undef MEMSCOPE_COUNTER_ENTRY
};
// Those every report has (schema 1 on).
inline constexpr std::size_t kRequiredCounters = 7;

struct ThreadStats {
    std::uint32_t pid = 0; // its process
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
    std::uint32_t pid = 0; // a task's process (task ids are a process's own)
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

// One frame of an allocation's stack: a return address, innermost first.
// Its names are interned: a stack's frames are mostly the same few thousand.
struct Frame {
    std::uint64_t addr = 0;   // in the process
    Interned symbol;          // demangled; empty when unknown
    Interned module;          // the file, as the process maps it; empty when unknown
    std::uint64_t offset = 0; // link-time address in `module` (what addr2line takes)
    Interned file;            // source position, when the module has line tables
    std::uint32_t line = 0;
    bool inlined = false;     // a function inlined into the next frame (same addr)
};

// Allocations whose requested size lay in [min, max]: powers of two, the
// first bucket 0 and 1 bytes (normal and fast mode's allocations).
struct SizeBucket {
    std::uint64_t min = 0, max = 0, count = 0, bytes = 0;
};
// Bucket k's bounds (k < 64).
SizeBucket size_bucket(std::uint32_t k);

// An allocation site: one distinct stack (normal mode).
struct Site {
    std::uint32_t pid = 0;
    std::uint64_t id = 0; // the stack's hash
    std::vector<Frame> stack;
    bool truncated = false; // the walk ended before main or a thread's start
    std::string end;        // why, when it did
    std::uint64_t alloc_count = 0, alloc_bytes = 0, live_count = 0, live_bytes = 0;
    std::uint64_t temporary_count = 0; // of its allocations, freed as temporaries
    std::vector<SizeBucket> size_histogram; // non-empty buckets, smallest first
};

// What a process held at its peak, by site. The peak is exact (one live
// sum changed atomically by every thread) unless `exact` says otherwise:
// then it is the largest of the samples and of the threads' own peaks,
// and no site is listed.
struct Peak {
    std::uint32_t pid = 0;
    double t_s = 0; // since tracing began
    std::uint64_t live_bytes = 0;
    bool exact = false;
    struct Site {
        std::uint64_t id = 0; // a site's (0: allocations with no stack)
        std::uint32_t pid = 0;
        std::uint64_t live_count = 0, live_bytes = 0;
    };
    std::vector<Site> sites; // largest live_bytes first
    std::string note;
};

// The first frame outside the allocator and its wrappers: operator new and
// delete, the C++ standard library (its headers' inlined code, its own
// file), and the functions named in `wrappers` (--alloc-fn): the function
// a site is named after. The whole stack stays in the site.
const Frame* site_function(const std::vector<Frame>& stack, const std::vector<std::string>& wrappers = {});

struct LeakThread {
    std::uint32_t tid = 0;
    std::string name;
    std::uint64_t live_count = 0, live_bytes = 0;
};

struct LeakVariable {
    std::uint32_t desc = kNoDescriptor; // into Tracked::descriptors
    std::uint64_t count = 0, bytes = 0;
};

// Allocations outstanding when tracing ended, grouped by stack.
struct Leak {
    std::uint32_t pid = 0;
    std::uint64_t id = 0; // the stack's hash: the site of that id
    std::vector<Frame> stack; // the site's, kept here too: a leak reads alone
    bool truncated = false;
    std::string end;
    std::uint64_t live_count = 0, live_bytes = 0;
    // Of those, blocks younger than the report's leak_min_age_s at the end:
    // the working set of a process that runs on, not listed as leaking.
    std::uint64_t young_count = 0, young_bytes = 0;
    double oldest_age_s = 0;
    std::vector<LeakThread> threads;
    std::vector<LeakVariable> variables;
    // Kept by the language runtime for the process's lifetime by design
    // (libstdc++'s exception pool, stdio buffers): why, or empty.
    std::string expected;
};

// Whether it is listed as leaking: some of its blocks are old enough.
inline bool listed_leak(const Leak& leak)
{
    return leak.live_count > leak.young_count;
}

struct StackSummary {
    bool enabled = false;
    std::uint32_t depth = 0;
    std::uint64_t distinct = 0;        // sites (distinct stacks) seen
    double truncated_share = 0;        // of allocations with a stack, those whose stack is truncated
    std::map<std::string, std::uint64_t> truncated_by; // those allocations, by why their stack ended early
    std::uint64_t without_stack = 0;   // allocations counted with no site (fast mode, tables full)
    std::uint64_t outstanding_without_stack = 0;
    double leak_min_age_s = 0; // --min-age: younger blocks are not listed as leaks
    std::string note;
    // The unwind tables the walk used (files' .eh_frame rules in the kernel).
    struct Unwind {
        std::uint64_t files = 0, rows = 0, kernel_bytes = 0, eh_frame_bytes = 0, build_ms = 0;
        std::vector<std::string> skipped; // "FILE: why": walked by epilogue and frame pointer
        std::uint64_t shared_files = 0;   // copies of a file read already (same build-id): its rows serve
    } unwind;
};

// Live bytes sampled over time (--interval).
struct Timeline {
    double interval_s = 0;
    std::vector<double> t_s;
    std::vector<std::int64_t> process_live_bytes;
    struct Thread {
        std::uint32_t tid = 0;
        std::uint64_t start_ns = 0;
        std::string name;
        std::vector<std::int64_t> live_bytes; // one per sample (0 before the thread's first)
    };
    std::vector<Thread> threads;
};

// -a, tier 0: one process's memory as the kernel's tracepoints told it
// (rss_stat, brk, mmap, munmap), no uprobe. Each figure is named once here:
// the struct, the JSON writer and reader walk this list.
#define MEMSCOPE_MEMORY_FIGURES(X)                                                            \
    X(rss_anon_bytes)      /* resident now (at exit: when it exited) */                      \
    X(rss_file_bytes)                                                                         \
    X(rss_shmem_bytes)                                                                        \
    X(swap_bytes)                                                                             \
    X(peak_rss_anon_bytes) /* the most seen while traced */                                  \
    X(peak_rss_bytes)      /* anon + file + shmem */                                         \
    X(brk_bytes)           /* the heap's size (brk - start_brk) */                           \
    X(peak_brk_bytes)                                                                         \
    X(mmap_anon_bytes)     /* anonymous private mappings made while traced (cumulative) */   \
    X(munmap_bytes)        /* unmapped while traced, any kind (cumulative) */                \
    X(brk_calls)                                                                              \
    X(mmap_anon_calls)                                                                        \
    X(munmap_calls)

struct MemoryFigures {
#define MEMSCOPE_MEMORY_FIELD(name) std::uint64_t name = 0;
    MEMSCOPE_MEMORY_FIGURES(MEMSCOPE_MEMORY_FIELD)
#undef MEMSCOPE_MEMORY_FIELD
    // Anonymous resident memory's change per second over the time it was
    // watched (negative: it shrank), and that time.
    double anon_growth_bytes_per_s = 0;
    double watched_s = 0;
};
struct MemoryField {
    const char* name;
    std::uint64_t MemoryFigures::*member;
};
inline constexpr MemoryField kMemoryFields[] = {
#define MEMSCOPE_MEMORY_ENTRY(name) {#name, &MemoryFigures::name},
    MEMSCOPE_MEMORY_FIGURES(MEMSCOPE_MEMORY_ENTRY)
#undef MEMSCOPE_MEMORY_ENTRY
};

// One process of a traced command (the root, and each it started, one
// section per program it ran: an exec closes a section); with -a, one
// process of the machine.
struct ProcessSection {
    Target target;
    int parent_pid = 0;
    Counters totals;
    bool peak_live_bytes_exact = true;
    std::size_t threads = 0;
    // -a only (mode_scope "system"):
    std::optional<MemoryFigures> memory;
    std::string cgroup;          // its cgroup v2 path ("/" the root; empty: unknown)
    bool heap_traced = false;    // chosen: its allocator probed (totals, threads, sites)
    std::string mode;            // heap-traced: its mode at the end (its own budget's), or "released"
    int ns_pid = 0;              // its pid in its own pid namespace (0: unknown)
    bool other_pid_namespace = false;
    bool born_while_traced = false;
    bool exited = false;
    bool oom_killed = false;
    std::uint64_t execs = 0, forks = 0;
};

// -a: a process the OOM killer chose, with its figures then.
struct OomKill {
    int pid = 0;
    int ns_pid = 0;
    std::string comm;
    std::string cgroup;
    double t_s = 0; // since tracing began
    MemoryFigures memory;
};

// -a: the whole machine's counts, and how heap tracing was chosen.
struct SystemSummary {
    std::uint64_t processes_seen = 0; // listed, plus those folded into not_listed
    std::uint64_t births = 0, execs = 0, exits = 0, oom_kills = 0;
    // Exited processes past --max-exited: counted here, not listed one by one.
    std::uint64_t not_listed = 0;
    std::uint64_t not_listed_peak_rss_anon_bytes = 0; // the largest among them
    std::vector<std::string> heap_selectors;          // --heap, --heap-top, as given
};

// A file a process maps whose allocator calls go uncounted: it defines a
// known allocator's entry points under names not probed (a prefixed build,
// `symbols`), or it could not be looked at (`reason`).
struct UnprobedAllocator {
    std::uint32_t pid = 0;
    std::string file;
    std::vector<std::string> symbols;
    std::string reason;
};

// How the report came to be: the tracer's command line and the files it
// wrote (kind -> path: json, html, collapsed, pprof).
struct Invocation {
    std::vector<std::string> argv;
    std::map<std::string, std::string> outputs;
};

struct Report {
    Target target;
    Invocation invocation;
    double duration_s = 0;
    std::string mode = "normal";
    std::string mode_source = "default";
    std::vector<ModeChange> mode_changes;
    bool live_bytes_exact = true; // false after a stint in async or off
    bool free_bytes_exact = true; // false after a stint in async
    std::uint64_t allocation_records = 0; // outstanding records left in the table at the end
    // The tracer's own cost (RUSAGE_SELF) and kernel memory.
    struct TracerCost {
        double cpu_user_s = 0, cpu_sys_s = 0;                 // the whole run, start included
        double startup_cpu_user_s = 0, startup_cpu_sys_s = 0; // until the target ran traced
        double tracing_cpu_user_s = 0, tracing_cpu_sys_s = 0; // from then until tracing ended
        std::uint64_t max_rss_kb = 0, bpf_map_bytes = 0;
        std::string attach; // how probes reached the processes (uprobe_multi, shared_sites, uprobe_links)
        // Per BPF program: runs and kernel time (kernel.bpf_stats_enabled=1; else empty).
        std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> programs;
        // --listen, --push: scrapes served, pushes made, failed, dropped (empty: no export).
        std::map<std::string, std::uint64_t> exported;
    } tracer;
    Counters totals;
    // Read from a report written before these counters existed: they are
    // not compared (kCounterFields' names).
    std::set<std::string> absent_counters;
    bool peak_live_bytes_exact = true;
    std::vector<ThreadStats> threads;
    Dropped dropped;
    Children children;
    std::vector<std::string> warnings;
    std::vector<UnprobedAllocator> unprobed_allocators; // non-empty: a gate refuses the report
    std::vector<std::string> alloc_functions; // --alloc-fn: wrappers a site is not named after
    Tracked tracked;
    StackSummary stacks;
    std::vector<Site> sites; // largest alloc_bytes first
    std::vector<SizeBucket> size_histogram; // every process's allocations
    std::optional<Peak> peak;
    std::vector<Leak> leaks; // largest live_bytes first
    Timeline timeline;
    // Every process traced (the root first); empty when only the root was.
    std::vector<ProcessSection> processes;
    bool followed_children = false;
    // "process" (-p, run: one process and those it started) or "system" (-a).
    std::string mode_scope = "process";
    SystemSummary system;    // mode_scope "system" only
    std::vector<OomKill> oom_kills;
};

// A thread's counters as the BPF side keeps them, already summed over the
// CPUs (the per-CPU map's one reader sums them).
struct RawCounters {
    std::uint64_t alloc_count = 0, alloc_bytes = 0, free_count = 0, free_bytes = 0,
                  failed_alloc_count = 0, unmatched_free_count = 0, untracked_alloc_count = 0,
                  exit_unmatched_free_count = 0, track_count = 0, untracked_free_count = 0, temporary_count = 0;
};

struct LiveFigures {
    std::int64_t live_bytes = 0;
    std::int64_t live_count = 0;
    std::uint64_t peak_live_bytes = 0;
};

// A thread's counters from the BPF side's sums and its live figures; the
// allocations left without a record go to `untracked` (reported with the
// drops, not in the counters).
Counters counters_of(const RawCounters& sums, const LiveFigures& live, std::uint64_t* untracked = nullptr);

// Totals over threads. The process peak is the largest of the sampled
// process-wide live sums and every thread's exact peak; it is exact only
// when a single thread ever held memory.
void compute_totals(Report& report, std::uint64_t sampled_process_peak);

// Order threads for display and output: by tid, then start time.
void sort_threads(Report& report);

// Fold the sections of the other processes a command ran (each a report
// with its process in processes[0]) into the root's: every process listed
// in `processes` with its own totals, all threads, sites and leaks in one
// list, totals over the whole command.
void merge_processes(Report& root, std::vector<Report> sections, std::uint64_t sampled_peak);

// Put the tracker's findings in the report; variables that did not fit count as dropped.
void add_tracked(Report& report, Tracked tracked);

// What the figures mean, said once the report is whole (after its
// processes are merged): that no allocator call was seen, that children
// were seen but not traced, that figures are incomplete (dropped), that
// allocations were counted but not recorded (live and peak then inexact),
// which allocators went unprobed, what the tracker could not read. Warnings
// made from figures are made only here, never while a report is assembled,
// so that merging never takes one back. Saying them again adds nothing.
void derive_warnings(Report& report);

// Two of them alone: allocations counted but not recorded (the allocation
// table was full) mark live and peak inexact and say the shortfall; the
// warning for report.unprobed_allocators names each file.
void note_unrecorded(Report& report);
void note_unprobed(Report& report);

} // namespace memscope
