#include "model.hpp"

#include <algorithm>

namespace memscope {

Counters counters_of(const RawCounters& s, const LiveFigures& live, std::uint64_t* untracked)
{
    Counters c;
    c.alloc_count = s.alloc_count;
    c.alloc_bytes = s.alloc_bytes;
    c.free_count = s.free_count;
    c.free_bytes = s.free_bytes;
    c.failed_alloc_count = s.failed_alloc_count;
    c.unmatched_free_count = s.unmatched_free_count;
    c.exit_unmatched_free_count = s.exit_unmatched_free_count;
    c.track_count = s.track_count;
    c.untracked_free_count = s.untracked_free_count;
    c.temporary_count = s.temporary_count;
    // A sample taken while another thread frees can read a transient
    // negative; live figures never go below zero.
    c.live_bytes = live.live_bytes > 0 ? static_cast<std::uint64_t>(live.live_bytes) : 0;
    c.live_count = live.live_count > 0 ? static_cast<std::uint64_t>(live.live_count) : 0;
    c.peak_live_bytes = live.peak_live_bytes;
    if (untracked)
        *untracked = s.untracked_alloc_count;
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
        for (const auto& f : kCounterFields)
            if (f.member != &Counters::peak_live_bytes) // a peak is no sum: below
                t.*f.member += c.*f.member;
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

namespace {

void warn(Report& report, std::string w);

constexpr const char* kUnreadableWarning = " tracker descriptors could not be read from the target's files";
constexpr const char* kRingWarning =
    "the event ring overflowed: some tracked variables are missing, and some freed ones may show as live";

void tracked_warnings(Report& report)
{
    const Tracked& t = report.tracked;
    if (report.dropped.reasons.count("event_ring_full") && !t.variables.empty())
        warn(report, kRingWarning);
    if (t.unreadable_descriptors > 0)
        warn(report, std::to_string(t.unreadable_descriptors) + kUnreadableWarning + " (shown as \"?\")");
}

// Add `row` to the one of `rows` it is the same as, else append it.
template <typename Row, typename Same, typename Add>
void fold_into(std::vector<Row>& rows, const Row& row, Same same, Add add)
{
    auto it = std::find_if(rows.begin(), rows.end(), same);
    if (it == rows.end())
        rows.push_back(row);
    else
        add(*it, row);
}

// Fold a process's tracker records into the root's; `moved` shifts a
// descriptor index of the process's table to where it lands in the root's.
template <typename Moved>
void merge_tracked(Tracked& root, Tracked s, Moved moved)
{
    for (auto& m : s.modules)
        if (std::find(root.modules.begin(), root.modules.end(), m) == root.modules.end())
            root.modules.push_back(std::move(m));
    for (auto& v : s.variables) {
        moved(v.desc);
        moved(v.scope);
        moved(v.task_desc);
        root.variables.push_back(v);
    }
    root.descriptors.insert(root.descriptors.end(), std::make_move_iterator(s.descriptors.begin()),
                            std::make_move_iterator(s.descriptors.end()));
    auto key = [&](std::uint32_t desc) {
        const Descriptor* d = root.descriptor(desc);
        return std::make_pair(d ? d->name : std::string("?"), d ? d->type : std::string());
    };
    auto place = [&](std::uint32_t desc) {
        const Descriptor* d = root.descriptor(desc);
        return std::make_tuple(d ? d->name : std::string("?"), d ? d->file : std::string(), d ? d->line : 0u);
    };
    auto by_bytes = [](const auto& a, const auto& b) { return a.alloc_bytes > b.alloc_bytes; };
    // Summaries by name and type, as within a process; scopes by their
    // descriptor (name, file, line), one row each over the command. Tasks
    // stay apart: their ids are a process's.
    for (auto& g : s.summary) {
        moved(g.desc);
        fold_into(root.summary, g, [&](const auto& r) { return key(r.desc) == key(g.desc); },
                  [](auto& r, const auto& add) {
                      r.count += add.count;
                      r.bytes += add.bytes;
                      r.live_count += add.live_count;
                      r.live_bytes += add.live_bytes;
                  });
    }
    std::stable_sort(root.summary.begin(), root.summary.end(),
                     [](const VariableSummary& a, const VariableSummary& b) { return a.bytes > b.bytes; });
    for (auto& g : s.scopes) {
        moved(g.desc);
        fold_into(root.scopes, g, [&](const auto& r) { return place(r.desc) == place(g.desc); },
                  [](auto& r, const auto& add) {
                      r.alloc_count += add.alloc_count;
                      r.alloc_bytes += add.alloc_bytes;
                  });
    }
    for (auto& g : s.tasks) {
        moved(g.desc);
        root.tasks.push_back(g);
    }
    std::stable_sort(root.scopes.begin(), root.scopes.end(), by_bytes);
    std::stable_sort(root.tasks.begin(), root.tasks.end(), by_bytes);
    root.mode_requests.insert(root.mode_requests.end(), s.mode_requests.begin(), s.mode_requests.end());
    root.unreadable_descriptors += s.unreadable_descriptors;
    root.dropped_variables += s.dropped_variables;
    root.counted_by_name += s.counted_by_name;
}

} // namespace

void merge_processes(Report& root, std::vector<Report> sections, std::uint64_t sampled_peak)
{
    root.followed_children = true;
    root.processes.clear();
    root.processes.push_back({root.target, 0, root.totals, root.peak_live_bytes_exact, root.threads.size()});
    std::uint64_t with_stack = 0, truncated = 0;
    std::vector<Peak> peaks; // each process's own, exact or not
    std::uint64_t holders = root.totals.peak_live_bytes > 0;
    if (root.peak)
        peaks.push_back(*root.peak);
    std::map<std::uint64_t, SizeBucket> sizes; // by min
    auto add_sizes_of = [&](const Report& r) {
        for (const SizeBucket& b : r.size_histogram) {
            auto [it, fresh] = sizes.try_emplace(b.min, b);
            if (!fresh) {
                it->second.count += b.count;
                it->second.bytes += b.bytes;
            }
        }
    };
    add_sizes_of(root);
    auto weigh = [&](const Report& r) {
        std::uint64_t n = 0;
        for (const auto& s : r.sites)
            n += s.alloc_count;
        with_stack += n;
        truncated += static_cast<std::uint64_t>(r.stacks.truncated_share * static_cast<double>(n) + 0.5);
    };
    weigh(root);
    for (auto& s : sections) {
        ProcessSection p{s.target, 0, s.totals, s.peak_live_bytes_exact, s.threads.size()};
        if (!s.processes.empty()) {
            p.target = s.processes[0].target;
            p.parent_pid = s.processes[0].parent_pid;
        }
        if (s.totals.alloc_count == 0 && s.totals.free_count == 0 && s.threads.empty() &&
            s.unprobed_allocators.empty())
            continue; // a fork that exec'd before allocating anything (not one whose allocator went unprobed)
        root.processes.push_back(p);
        weigh(s);
        add_sizes_of(s);
        holders += s.totals.peak_live_bytes > 0;
        if (s.peak)
            peaks.push_back(std::move(*s.peak));
        for (const auto& [why, n] : s.stacks.truncated_by)
            root.stacks.truncated_by[why] += n;
        root.threads.insert(root.threads.end(), s.threads.begin(), s.threads.end());
        root.sites.insert(root.sites.end(), s.sites.begin(), s.sites.end());
        // Its leaks and variables name descriptors by index into its own
        // table: those go after the root's, the indices with them.
        const auto offset = static_cast<std::uint32_t>(root.tracked.descriptors.size());
        auto moved = [offset](std::uint32_t& desc) {
            if (desc != kNoDescriptor)
                desc += offset;
        };
        for (auto& l : s.leaks)
            for (auto& v : l.variables)
                moved(v.desc);
        root.leaks.insert(root.leaks.end(), s.leaks.begin(), s.leaks.end());
        // The BPF side's drops are the run's, in the root's already; the
        // variable table is each process's own.
        if (const auto over = s.tracked.dropped_variables) {
            root.dropped.events += over;
            root.dropped.reasons["variable_table_full"] += over;
        }
        merge_tracked(root.tracked, std::move(s.tracked), moved);
        root.stacks.distinct += s.stacks.distinct;
        root.stacks.outstanding_without_stack += s.stacks.outstanding_without_stack;
        root.allocation_records += s.allocation_records;
        for (auto& u : s.unprobed_allocators) // once per process and file (an exec maps it again)
            if (std::none_of(root.unprobed_allocators.begin(), root.unprobed_allocators.end(),
                             [&](const UnprobedAllocator& o) { return o.pid == u.pid && o.file == u.file; }))
                root.unprobed_allocators.push_back(std::move(u));
    }
    root.stacks.truncated_share = with_stack ? static_cast<double>(truncated) / static_cast<double>(with_stack) : 0;
    sort_threads(root);
    compute_totals(root, sampled_peak);
    root.size_histogram.clear();
    for (const auto& [min, b] : sizes)
        root.size_histogram.push_back(b);
    // One process held memory: its peak is the command's. Several: each
    // has its own exact peak (in processes), the command's over them all
    // is sampled, and the largest process's is the one shown by site.
    root.peak.reset();
    std::sort(peaks.begin(), peaks.end(), [](const Peak& a, const Peak& b) { return a.live_bytes > b.live_bytes; });
    if (!peaks.empty()) {
        root.peak = std::move(peaks.front());
        root.totals.peak_live_bytes = std::max(root.totals.peak_live_bytes, root.peak->live_bytes);
        if (holders <= 1) {
            root.peak->live_bytes = root.totals.peak_live_bytes;
            root.peak_live_bytes_exact = root.peak->exact;
        } else {
            root.peak_live_bytes_exact = false;
            root.peak->note += std::string(root.peak->note.empty() ? "" : "; ") + "process " +
                               std::to_string(root.peak->pid) + "'s own peak; the command's over its " +
                               std::to_string(holders) + " processes is sampled";
        }
    }
    root.stacks.without_stack = root.totals.alloc_count > with_stack ? root.totals.alloc_count - with_stack : 0;
    std::sort(root.sites.begin(), root.sites.end(), [](const Site& a, const Site& b) {
        return a.alloc_bytes != b.alloc_bytes ? a.alloc_bytes > b.alloc_bytes : a.id < b.id;
    });
    std::sort(root.leaks.begin(), root.leaks.end(), [](const Leak& a, const Leak& b) {
        return a.live_bytes != b.live_bytes ? a.live_bytes > b.live_bytes : a.id < b.id;
    });
}

namespace {

// Once each, however often the figures are said.
void warn(Report& report, std::string w)
{
    if (std::find(report.warnings.begin(), report.warnings.end(), w) == report.warnings.end())
        report.warnings.push_back(std::move(w));
}

} // namespace

void note_unrecorded(Report& report)
{
    const std::uint64_t n = report.dropped.untracked_allocations;
    if (n == 0)
        return;
    report.live_bytes_exact = false;
    report.peak_live_bytes_exact = false;
    warn(report, std::string(kUnrecordedWarning) + ": the allocation table was full, so " + std::to_string(n) +
                     " allocation" + (n == 1 ? " was" : "s were") +
                     " counted but not recorded; live and peak bytes leave them out (raise --max-allocations)");
}

void note_unprobed(Report& report)
{
    if (report.unprobed_allocators.empty())
        return;
    std::string files;
    for (const auto& u : report.unprobed_allocators) {
        std::string what = u.reason;
        if (what.empty()) {
            for (const auto& s : u.symbols)
                what += (what.empty() ? "" : ", ") + s;
            what += ": a known allocator's entry points under other names (a prefixed jemalloc, tcmalloc or "
                    "mimalloc?)";
        }
        files += (files.empty() ? "" : "; ") + u.file + " (pid " + std::to_string(u.pid) + ": " + what + ")";
    }
    warn(report, std::string(kUnprobedWarning) + ": " + files +
                     "; their calls are not counted, and the gate refuses this report");
}

void derive_warnings(Report& r)
{
    const Counters& t = r.totals;
    // -a: no allocator is probed unless a process was chosen for its heap.
    const bool heap_traced = r.mode_scope != "system" ||
                             std::any_of(r.processes.begin(), r.processes.end(),
                                         [](const ProcessSection& p) { return p.heap_traced; });
    if (heap_traced && t.alloc_count == 0 && t.free_count == 0 && t.unmatched_free_count == 0)
        warn(r, std::string(kNoAllocatorCallWarning) +
                    ": the target may not use the probed allocator, or did no allocation while traced");
    if (!r.followed_children && (r.children.forks > 0 || r.children.execs > 0))
        warn(r, "the target started other processes (" + std::to_string(r.children.forks) + " forked, " +
                    std::to_string(r.children.execs) + " exec'd); they were seen, not traced" +
                    (r.tracer.attach == "uprobe_multi" && r.children.forks > 0
                         ? " (a child that did not exec kept the probes' breakpoints, a cost uncounted, "
                           "until it exec'd; --attach shared_sites takes them out at its first hit)"
                         : ""));
    note_unrecorded(r);
    note_unprobed(r);
    tracked_warnings(r);
    if (r.dropped.events > 0 || r.dropped.untracked_allocations > 0 || r.dropped.reasons.count("probes_lapsed") ||
        r.dropped.reasons.count("sys_table_full") || r.dropped.reasons.count("sys_ring_full"))
        warn(r, kIncompleteWarning);
}

void add_tracked(Report& report, Tracked tracked)
{
    if (tracked.dropped_variables > 0) {
        report.dropped.events += tracked.dropped_variables;
        report.dropped.reasons["variable_table_full"] += tracked.dropped_variables;
    }
    report.tracked = std::move(tracked);
}

} // namespace memscope
