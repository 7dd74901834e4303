#include "map_reader.hpp"

#include <algorithm>
#include <map>

#include "memscope.skel.h"
#include "proc.hpp"

namespace memscope {

namespace {

const char* drop_reason_name(ms_drop_reason r)
{
#define MS_DROP_NAME(e, name) #name,
    static constexpr const char* kNames[] = {MS_DROP_REASONS(MS_DROP_NAME)};
#undef MS_DROP_NAME
    static_assert(std::size(kNames) == MS_DROP__COUNT);
    return r < MS_DROP__COUNT ? kNames[r] : "unknown";
}

} // namespace

std::vector<RawRecord> MapReader::records(int pid) const
{
    std::vector<RawRecord> out;
    const int fd = bpf_map__fd(skel_.maps.allocs);
    const int slots_fd = bpf_map__fd(skel_.maps.thread_slots);
    std::map<__u32, ms_thread_key> owners;
    for_each_key<ms_alloc_key>(fd, [&](const ms_alloc_key& k) {
        ms_alloc_rec rec{};
        if (k.tgid != static_cast<__u32>(pid) || bpf_map_lookup_elem(fd, &k, &rec) != 0)
            return;
        auto it = owners.find(rec.owner_slot);
        if (it == owners.end()) {
            ms_thread_key owner{};
            bpf_map_lookup_elem(slots_fd, &rec.owner_slot, &owner);
            it = owners.emplace(rec.owner_slot, owner).first;
        }
        out.push_back({k.addr, rec.size, rec.alloc_ns, rec.stack, it->second.tid, it->second.start_ns});
    });
    return out;
}

std::vector<RawSite> MapReader::sites(int pid) const
{
    std::vector<RawSite> out;
    const int fd = bpf_map__fd(skel_.maps.sites);
    PerCpu<ms_site_totals> totals(fd);
    for_each_key<ms_site_key>(fd, [&](const ms_site_key& k) {
        if (k.tgid != static_cast<__u32>(pid))
            return;
        const auto* slices = totals.slices(k);
        if (!slices)
            return;
        RawSite site{k.stack};
        for (const ms_site_totals& v : *slices) {
            site.alloc_count += v.alloc_count;
            site.alloc_bytes += v.alloc_bytes;
            site.temporary_count += v.temporary_count;
            // Each CPU's first size bucket, kept in the site's own entry.
            if (v.size_bucket && v.size_count)
                site.first_sizes.push_back(
                    {k.stack, static_cast<std::uint32_t>(v.size_bucket - 1), v.size_count, v.size_bytes});
        }
        out.push_back(std::move(site));
    });
    return out;
}

std::vector<RawSize> MapReader::sizes(int pid) const
{
    std::vector<RawSize> out;
    const int fd = bpf_map__fd(skel_.maps.sizes);
    PerCpu<ms_size_totals> totals(fd);
    for_each_key<ms_size_key>(fd, [&](const ms_size_key& k) {
        if (k.tgid != static_cast<__u32>(pid))
            return;
        if (auto v = totals.sum(k))
            out.push_back({k.stack, k.bucket, v->count, v->bytes});
    });
    return out;
}

std::optional<RawPeak> MapReader::peak(int pid) const
{
    const int procs_fd = bpf_map__fd(skel_.maps.proc_live);
    const int sites_fd = bpf_map__fd(skel_.maps.sites);
    const __u32 tgid = static_cast<__u32>(pid);
    PerCpu<ms_site_totals> per_cpu(sites_fd);
    // A site's share on a CPU that changed it since the peak was taken
    // then; one that did not is still what it was. Read again should the
    // peak move meanwhile (the process runs on), a few times at most.
    for (int attempt = 0;; ++attempt) {
        ms_proc_live before{}, after{};
        if (bpf_map_lookup_elem(procs_fd, &tgid, &before) != 0)
            return std::nullopt;
        RawPeak p{before.peak_live_bytes, before.peak_ns, false, {}};
        for_each_key<ms_site_key>(sites_fd, [&](const ms_site_key& k) {
            if (k.tgid != tgid)
                return;
            const auto* slices = per_cpu.slices(k);
            if (!slices)
                return;
            RawPeak::Site site{k.stack, 0, 0};
            for (const ms_site_totals& v : *slices) {
                const bool changed = v.peak_epoch == before.epoch;
                site.live_count += changed ? v.peak_live_count : v.live_count;
                site.live_bytes += changed ? v.peak_live_bytes : v.live_bytes;
            }
            if (site.live_bytes > 0 || site.live_count > 0)
                p.sites.push_back(site);
        });
        if (bpf_map_lookup_elem(procs_fd, &tgid, &after) != 0)
            return std::nullopt;
        if (after.epoch == before.epoch || attempt == 2) {
            p.moved = after.epoch != before.epoch;
            return p;
        }
    }
}

std::vector<std::uint64_t> MapReader::stack(std::uint64_t hash) const
{
    std::vector<__u64> value(1 + std::max<std::uint32_t>(stack_depth_, 1));
    if (bpf_map_lookup_elem(bpf_map__fd(skel_.maps.stacks), &hash, value.data()) != 0)
        return {};
    const std::size_t nr = std::min<std::size_t>(value[0], value.size() - 1);
    return {value.begin() + 1, value.begin() + 1 + static_cast<std::ptrdiff_t>(nr)};
}

Snapshot MapReader::snapshot(int pid, std::uint32_t end_slot) const
{
    Snapshot s;
    const __u32 tgid = static_cast<__u32>(pid);

    int counters_fd = bpf_map__fd(skel_.maps.thread_counters);
    int live_fd = bpf_map__fd(skel_.maps.thread_live);
    int slots_fd = bpf_map__fd(skel_.maps.thread_slots);
    int names_fd = bpf_map__fd(skel_.maps.thread_names);

    std::map<std::pair<__u32, __u64>, ThreadStats> threads;
    PerCpu<ms_thread_counters> counters(counters_fd);
    // Slots handed out so far; one whose owner is not written yet reads as tgid 0.
    const __u32 used = std::min({__atomic_load_n(&skel_.bss->next_slot, __ATOMIC_ACQUIRE),
                                 bpf_map__max_entries(skel_.maps.thread_slots), end_slot});
    for (__u32 slot = 0; slot < used; ++slot) {
        ms_thread_key k{};
        // An owner still being written (a thread at its first event) reads
        // with a zero tid or start time: it shows at the next snapshot.
        if (bpf_map_lookup_elem(slots_fd, &slot, &k) != 0 || k.tgid != tgid || k.tid == 0 || k.start_ns == 0)
            continue;
        const std::optional<ms_thread_counters> c = counters.sum(slot);
        if (!c)
            continue;
        const RawCounters sums{c->alloc_count, c->alloc_bytes, c->free_count, c->free_bytes,
                               c->failed_alloc_count, c->unmatched_free_count, c->untracked_alloc_count,
                               c->exit_unmatched_free_count, c->track_count, c->untracked_free_count,
                               c->temporary_count};
        ms_thread_live live{};
        bpf_map_lookup_elem(live_fd, &slot, &live);
        ThreadStats& t = threads[{k.tid, k.start_ns}];
        t.pid = tgid;
        t.tid = k.tid;
        t.start_ns = k.start_ns;
        t.counters = counters_of(sums, {live.live_bytes, live.live_count, live.peak_live_bytes},
                                 &t.untracked_alloc_count);
    }

    for (auto& [key, t] : threads) {
        ms_thread_key k{tgid, t.tid, t.start_ns};
        ms_thread_name name{};
        if (bpf_map_lookup_elem(names_fd, &k, &name) == 0)
            t.name.assign(name.comm, strnlen(name.comm, sizeof name.comm));
        else
            t.name = thread_comm(pid, static_cast<int>(t.tid));
        s.live_bytes_sum += t.counters.live_bytes;
        s.threads.push_back(std::move(t));
    }

    PerCpu<__u64> drops(bpf_map__fd(skel_.maps.drops));
    for (__u32 reason = 0; reason < MS_DROP__COUNT; ++reason) {
        const std::uint64_t n = drops.sum(reason).value_or(0);
        if (n == 0)
            continue;
        s.dropped.reasons[drop_reason_name(static_cast<ms_drop_reason>(reason))] = n;
        // Records that did not fit are counted per thread as untracked.
        if (reason != MS_DROP_ALLOC_TABLE_FULL)
            s.dropped.events += n;
    }

    int groups_fd = bpf_map__fd(skel_.maps.group_totals);
    PerCpu<ms_group_totals> groups(groups_fd);
    for_each_key<ms_group_key>(groups_fd, [&](const ms_group_key& k) {
        if (k.tgid != tgid)
            return;
        if (auto g = groups.sum(k))
            s.groups.push_back({k.kind, k.id, k.desc, k.site, g->alloc_count, g->alloc_bytes});
    });

    int vars_fd = bpf_map__fd(skel_.maps.var_totals);
    PerCpu<ms_var_totals> vars(vars_fd);
    for_each_key<ms_var_key>(vars_fd, [&](const ms_var_key& k) {
        if (k.tgid != tgid)
            return;
        if (auto v = vars.sum(k))
            s.variable_totals.push_back({k.desc, k.site, 0, 0, v->count, v->bytes});
    });

    ms_target target{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_.maps.targets), &tgid, &target) == 0) {
        s.children.forks = target.forks;
        s.children.execs = target.execs;
        s.exited = target.exited != 0;
        s.wait_status = target.exit_code;
    }
    int children_fd = bpf_map__fd(skel_.maps.children);
    for_each_key<__u32>(children_fd, [&](const __u32& child) {
        __u32 parent = 0;
        if (bpf_map_lookup_elem(children_fd, &child, &parent) == 0 && parent == tgid)
            s.children.pids.push_back(static_cast<int>(child));
    });
    return s;
}

} // namespace memscope
