#include "system_watch.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "bpf_stats.hpp"
#include "system.skel.h"

namespace memscope {

namespace {

const char* const kDropNames[] = {
#define MS_SYS_DROP_NAME(name) #name,
    MS_SYS_DROP_REASONS(MS_SYS_DROP_NAME)
#undef MS_SYS_DROP_NAME
};

// The syscall tracepoints need tracefs; without them -a goes on with
// resident memory, births, execs, exits and OOM kills.
bool needs_tracefs(const bpf_program* prog)
{
    return std::strncmp(bpf_program__section_name(prog), "tp/syscalls/", 12) == 0;
}

} // namespace

std::unique_ptr<SystemWatch> SystemWatch::open(const SystemWatchOptions& options, std::string& error)
{
    quiet_libbpf();
    std::unique_ptr<SystemWatch> w(new SystemWatch());
    w->skel_ = system_bpf__open();
    if (!w->skel_) {
        error = std::string("cannot open the system-wide BPF object: ") + std::strerror(errno);
        return nullptr;
    }
    bpf_map__set_max_entries(w->skel_->maps.procs, options.max_processes);
    w->skel_->rodata->event_wakeup_bytes = bpf_map__max_entries(w->skel_->maps.sys_events) / 8;
    if (int err = system_bpf__load(w->skel_)) {
        error = std::string("cannot load the system-wide BPF programs (") + std::strerror(-err) +
                "); this kernel may lack BTF-enabled tracepoints or task storage";
        return nullptr;
    }
    if (!w->attach(error))
        return nullptr;
    auto on_event = [](void* ctx, void* data, size_t size) -> int {
        auto* self = static_cast<SystemWatch*>(ctx);
        if (size < sizeof(ms_sys_event) || !self->handler_)
            return 0;
        ms_sys_event raw;
        std::memcpy(&raw, data, sizeof raw);
        SystemEvent e;
        e.kind = static_cast<ms_sys_event_kind>(raw.kind);
        e.pid = static_cast<int>(raw.pid);
        e.ts_ns = raw.ts;
        e.exit_code = raw.exit_code;
        e.proc = raw.proc;
        e.has_figures = raw.proc.start_ns != 0 || raw.proc.first_seen_ns != 0;
        (*self->handler_)(e);
        return 0;
    };
    w->ring_ = ring_buffer__new(bpf_map__fd(w->skel_->maps.sys_events), on_event, w.get(), nullptr);
    if (!w->ring_) {
        error = std::string("cannot open the system-wide event ring: ") + std::strerror(errno);
        return nullptr;
    }
    return w;
}

// Each program on its own: one the kernel has no tracepoint for is left
// out with a note. False with `error` set when one that must be is refused.
bool SystemWatch::attach(std::string& error)
{
    bpf_program* prog;
    bool syscalls_missing = false;
    bpf_object__for_each_program(prog, skel_->obj)
    {
        if (prog == skel_->progs.hold_at_loader)
            continue; // attached by hold_new_programs, to a file
        bpf_link* link = bpf_program__attach(prog);
        if (link) {
            links_.emplace_back(link);
            continue;
        }
        const int err = errno;
        if (needs_tracefs(prog)) {
            if (!syscalls_missing)
                notes_.push_back(std::string("no brk, mmap or munmap figures: the syscall tracepoints are not "
                                             "available (") + std::strerror(err) + "; is tracefs mounted?)");
            syscalls_missing = true;
            continue;
        }
        error = std::string("cannot attach ") + bpf_program__name(prog) + ": " + std::strerror(err);
        return false;
    }
    return true;
}

SystemWatch::~SystemWatch()
{
    links_.clear();
    if (ring_)
        ring_buffer__free(ring_);
    if (skel_)
        system_bpf__destroy(skel_);
}

int SystemWatch::events_fd() const
{
    return ring_buffer__epoll_fd(ring_);
}

void SystemWatch::drain(const std::function<void(const SystemEvent&)>& handler)
{
    handler_ = &handler;
    ring_buffer__consume(ring_);
    handler_ = nullptr;
}

std::vector<std::pair<int, ms_sys_proc>> SystemWatch::processes() const
{
    std::vector<std::pair<int, ms_sys_proc>> out;
    const int fd = bpf_map__fd(skel_->maps.procs);
    __u32 key = 0, next = 0;
    const __u32* prev = nullptr;
    // A key deleted under the walk restarts it from the first key: the
    // pids already read are skipped by the caller's map, not counted twice.
    std::map<int, bool> seen;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        key = next;
        prev = &key;
        ms_sys_proc p;
        if (bpf_map_lookup_elem(fd, &key, &p) == 0 && !seen[static_cast<int>(key)]) {
            seen[static_cast<int>(key)] = true;
            out.emplace_back(static_cast<int>(key), p);
        }
    }
    return out;
}

std::map<std::string, std::uint64_t> SystemWatch::drops() const
{
    std::map<std::string, std::uint64_t> out;
    const int fd = bpf_map__fd(skel_->maps.sys_drops);
    const int ncpu = libbpf_num_possible_cpus();
    std::vector<__u64> per_cpu(ncpu > 0 ? ncpu : 1);
    for (__u32 r = 0; r < MS_SYS_DROP_COUNT; ++r) {
        if (bpf_map_lookup_elem(fd, &r, per_cpu.data()) != 0)
            continue;
        std::uint64_t sum = 0;
        for (auto v : per_cpu)
            sum += v;
        if (sum)
            out[kDropNames[r]] = sum;
    }
    return out;
}

std::string SystemWatch::hold_new_programs(const std::vector<std::string>& comms,
                                           const std::vector<std::pair<std::uint64_t, std::uint32_t>>& inodes,
                                           const std::vector<std::uint64_t>& cgroups, const std::string& loader,
                                           std::uint64_t offset)
{
    const __u8 one = 1;
    for (const auto& c : comms) {
        ms_hold_comm key{};
        std::memcpy(key.comm, c.data(), std::min(c.size(), sizeof key.comm - 1));
        bpf_map_update_elem(bpf_map__fd(skel_->maps.hold_comms), &key, &one, BPF_ANY);
    }
    for (const auto& [ino, dev] : inodes) {
        ms_hold_inode key{ino, dev, 0};
        bpf_map_update_elem(bpf_map__fd(skel_->maps.hold_inodes), &key, &one, BPF_ANY);
    }
    for (std::uint64_t id : cgroups)
        bpf_map_update_elem(bpf_map__fd(skel_->maps.hold_cgroups), &id, &one, BPF_ANY);
    if (!hold_link_) {
        bpf_link* link = bpf_program__attach_uprobe(skel_->progs.hold_at_loader, false, -1, loader.c_str(), offset);
        if (!link)
            return "cannot hold new processes at " + loader + "'s _dl_debug_state: " + std::strerror(errno);
        hold_link_ = Link(link);
    }
    skel_->bss->hold_selectors = 1;
    return {};
}

void SystemWatch::release(int pid, std::uint32_t call)
{
    const int fd = bpf_map__fd(skel_->maps.holds);
    __u32 key = static_cast<__u32>(pid);
    ms_hold h{};
    // The process waits in the kernel meanwhile: nothing else writes its entry.
    if (bpf_map_lookup_elem(fd, &key, &h) != 0)
        return;
    h.released = std::max(h.released, call);
    bpf_map_update_elem(fd, &key, &h, BPF_EXIST);
}

void SystemWatch::end_hold(int pid)
{
    __u32 key = static_cast<__u32>(pid);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.holds), &key);
}

std::uint64_t SystemWatch::map_bytes() const
{
    return object_map_bytes(skel_->obj);
}

void SystemWatch::add_program_stats(std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& out) const
{
    memscope::add_program_stats(skel_->obj, out);
}

} // namespace memscope
