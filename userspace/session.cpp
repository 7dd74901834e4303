#include "session.hpp"

#include <sys/wait.h>

namespace memscope {

std::string attach_allocators(Tracer& tracer, int pid, const std::vector<std::string>& objects,
                              int& probed)
{
    probed = 0;
    for (const auto& path : objects) {
        ElfScan scan = scan_elf(path);
        if (!scan.error.empty() || scan.symbols.empty())
            continue;
        std::string err;
        int n = tracer.attach_allocator(pid, path, scan.symbols, err);
        if (n < 0)
            return err;
        probed += n;
    }
    if (probed == 0)
        return "no allocator functions (malloc, free, ...) found in the files process " +
               std::to_string(pid) + " maps";
    return {};
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
