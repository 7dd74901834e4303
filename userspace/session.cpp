#include "session.hpp"

#include <sys/stat.h>
#include <sys/wait.h>

#include "proc.hpp"

namespace memscope {

Session::Session(Tracer& tracer, std::size_t max_variables)
    : tracer_(tracer), events_(modules_, max_variables)
{
    tracer_.set_event_handler([this](const ms_event& ev) { events_.handle(ev); });
}

bool Session::seen(const std::string& path)
{
    struct stat st{};
    if (stat(path.c_str(), &st) != 0)
        return false;
    return !seen_.insert({st.st_dev, st.st_ino}).second;
}

std::string Session::attach_tracker(int pid, const std::string& path, const ElfScan& scan)
{
    std::string err;
    auto module = modules_.add(path, scan, err);
    if (!module)
        return err;
    if (!tracer_.attach_tracker(pid, path, *scan.tracker, *module, err))
        return err;
    return {};
}

std::string Session::attach(int pid, const std::vector<std::string>& objects, int& probed)
{
    probed = 0;
    // Allocators first: the entry points' semaphores rise as soon as they
    // are attached, and a target waiting on them must find its heap watched.
    std::vector<std::pair<std::string, ElfScan>> trackers;
    for (const auto& path : objects) {
        if (seen(path))
            continue;
        ElfScan scan = scan_elf(path);
        if (!scan.error.empty())
            continue;
        if (!scan.tracker_error.empty())
            notes_.push_back(path + ": " + scan.tracker_error);
        if (!scan.symbols.empty()) {
            std::string err;
            int n = tracer_.attach_allocator(pid, path, scan.symbols, err);
            if (n < 0)
                return err;
            probed += n;
        }
        if (scan.tracker)
            trackers.emplace_back(path, std::move(scan));
    }
    if (probed == 0)
        return "no allocator functions (malloc, free, ...) found in the files process " +
               std::to_string(pid) + " maps";
    for (const auto& [path, scan] : trackers)
        if (auto err = attach_tracker(pid, path, scan); !err.empty())
            return err;
    return {};
}

void Session::drain(int pid)
{
    tracer_.drain_events();
    if (events_.take_loader_changes().count(static_cast<std::uint32_t>(pid)) == 0)
        return;
    // A library came: attach to its entry points (its calls before this are not seen).
    for (const auto& mapped : executable_mappings(pid)) {
        std::string path = path_in_process(pid, mapped);
        if (seen(path))
            continue;
        ElfScan scan = scan_elf(path);
        if (!scan.error.empty() || !scan.tracker)
            continue;
        if (auto err = attach_tracker(pid, path, scan); !err.empty())
            notes_.push_back(err);
    }
}

Tracked Session::tracked(const Snapshot& snap)
{
    tracer_.drain_events();
    Tracked t;
    for (std::uint32_t i = 0; i < modules_.size(); ++i)
        t.modules.push_back(modules_.at(i).path);
    for (const auto& g : snap.groups) {
        GroupTotals out{events_.descriptor(g.site, g.desc), g.id, g.alloc_count, g.alloc_bytes};
        (g.kind == MS_GROUP_SCOPE ? t.scopes : t.tasks).push_back(out);
    }
    auto by_bytes = [](const GroupTotals& a, const GroupTotals& b) {
        return a.alloc_bytes != b.alloc_bytes ? a.alloc_bytes > b.alloc_bytes : a.id < b.id;
    };
    std::sort(t.scopes.begin(), t.scopes.end(), by_bytes);
    std::sort(t.tasks.begin(), t.tasks.end(), by_bytes);
    VariableTable& table = events_.mutable_table();
    t.descriptors = table.descriptors();
    t.summary = table.summary();
    t.variables = table.take_variables();
    t.mode_requests = events_.mode_requests();
    t.unreadable_descriptors = events_.unreadable_descriptors();
    t.dropped_variables = table.dropped();
    return t;
}

int shell_status(int wait_status)
{
    if (WIFSIGNALED(wait_status))
        return 128 + WTERMSIG(wait_status);
    return WEXITSTATUS(wait_status);
}

Report make_report(const Snapshot& snap, const Target& target, double duration_s,
                   std::uint64_t sampled_process_peak)
{
    Report r;
    r.target = target;
    r.duration_s = duration_s;
    r.threads = snap.threads;
    r.children = snap.children;
    r.dropped.events = snap.dropped.events;
    r.dropped.reasons = snap.dropped.reasons;
    sort_threads(r);
    compute_totals(r, sampled_process_peak);
    if (r.totals.alloc_count == 0 && r.totals.free_count == 0 && r.totals.unmatched_free_count == 0)
        r.warnings.push_back("no allocator call was seen: the target may not use the probed allocator, "
                             "or did no allocation while traced");
    if (r.children.forks > 0 || r.children.execs > 0)
        r.warnings.push_back("the target started other processes (" + std::to_string(r.children.forks) +
                             " forked, " + std::to_string(r.children.execs) +
                             " exec'd); they were seen, not traced");
    if (r.dropped.events > 0 || r.dropped.untracked_allocations > 0)
        r.warnings.push_back("figures are incomplete: see dropped");
    return r;
}

} // namespace memscope
