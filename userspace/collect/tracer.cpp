#include "tracer.hpp"

#include "bpf_stats.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <unistd.h>
#include <cstring>
#include <map>
#include <mutex>
#include <iterator>
#include <optional>
#include <type_traits>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/types.h>

#include <fstream>

#include "memscope.skel.h"
#include "calibrate.hpp"
#include "map_reader.hpp"
#include "probe_sites.hpp"
#include "safe_files.hpp"
#include "proc.hpp"
#include "system_procs.hpp"
#include "unwind_table.hpp"
#include "uprobe_events.hpp"

namespace memscope {

namespace {

bpf_program* entry_program(memscope_bpf* skel, ms_alloc_kind kind)
{
    switch (kind) {
    case MS_KIND_MALLOC: return skel->progs.malloc_entry;
    case MS_KIND_CALLOC: return skel->progs.calloc_entry;
    case MS_KIND_REALLOC: return skel->progs.realloc_entry;
    case MS_KIND_REALLOCARRAY: return skel->progs.reallocarray_entry;
    case MS_KIND_MEMALIGN: return skel->progs.memalign_entry;
    case MS_KIND_POSIX_MEMALIGN: return skel->progs.posix_memalign_entry;
    case MS_KIND_FREE: return skel->progs.free_entry;
    case MS_KIND_THREAD_EXIT: return skel->progs.thread_exit_entry;
    case MS_KIND_LOADER_CHANGED: return skel->progs.loader_changed;
    default: return nullptr;
    }
}

__u32 bpf_mode(Mode mode)
{
    switch (mode) {
    case Mode::fast: return MS_MODE_FAST;
    case Mode::async: return MS_MODE_ASYNC;
    case Mode::off: return MS_MODE_OFF;
    default: return MS_MODE_NORMAL;
    }
}

} // namespace

Tracer::Tracer() = default;

std::unique_ptr<Tracer> Tracer::open(const TracerOptions& options, std::string& error)
{
    quiet_libbpf();
    std::unique_ptr<Tracer> t(new Tracer());
    t->options_ = options;
    t->skel_ = memscope_bpf__open();
    if (!t->skel_) {
        error = std::string("cannot open the BPF object: ") + std::strerror(errno);
        return nullptr;
    }
    auto* maps = &t->skel_->maps;
    bpf_map__set_max_entries(maps->thread_counters, options.max_threads);
    bpf_map__set_max_entries(maps->thread_live, options.max_threads);
    bpf_map__set_max_entries(maps->thread_slots, options.max_threads);
    t->skel_->rodata->max_slots = options.max_threads;
    bpf_map__set_max_entries(maps->thread_names, options.max_threads);
    bpf_map__set_max_entries(maps->allocs, options.max_allocations);
    t->skel_->rodata->event_wakeup_bytes = bpf_map__max_entries(maps->events) / 16;
    const std::uint32_t depth = std::min<std::uint32_t>(options.stack_depth, MS_MAX_STACK_DEPTH);
    t->skel_->rodata->stack_depth = depth;
    bpf_map__set_value_size(maps->stacks, static_cast<__u32>(sizeof(__u64) * (1 + std::max<std::uint32_t>(depth, 1))));
    bpf_map__set_max_entries(maps->stacks, depth ? options.max_stacks : 1);
    bpf_map__set_max_entries(maps->sites, depth ? options.max_stacks : 1);
    // Sizes by site and bucket: a site allocates a few sizes as a rule.
    bpf_map__set_max_entries(maps->sizes, depth ? 2 * options.max_stacks : MS_DEFAULT_MAX_TARGETS * 8);
    bpf_map__set_max_entries(maps->unwind_rows, depth ? std::max<std::uint32_t>(options.max_unwind_rows, 1) : 1);
    using Attach = TracerOptions::Attach;
    if (options.attach == Attach::automatic || options.attach == Attach::uprobe_multi) {
        std::string why;
        t->multi_ = uprobe_sessions_supported(why);
        // Tests: the fallback a kernel without them gets.
        if (t->multi_ && getenv("MEMSCOPE_ASSUME_NO_UPROBE_MULTI")) {
            t->multi_ = false;
            why = "MEMSCOPE_ASSUME_NO_UPROBE_MULTI is set";
        }
        if (!t->multi_ && options.attach == Attach::uprobe_multi) {
            error = "--attach uprobe_multi: this kernel makes no uprobe_multi session links (" + why + ")";
            return nullptr;
        }
        static std::once_flag said;
        if (!t->multi_)
            std::call_once(said, [&] {
                std::fprintf(stderr,
                             "memscope-trace: no uprobe_multi links (%s): probes go on shared sites, each "
                             "async malloc pays its return probe\n",
                             why.c_str());
            });
    }
    // Only the programs this way of attaching uses are loaded (verifying
    // them is most of the start's time).
    auto* progs = &t->skel_->progs;
    for (bpf_program* classic : {progs->malloc_entry, progs->calloc_entry, progs->realloc_entry,
                                 progs->reallocarray_entry, progs->memalign_entry, progs->posix_memalign_entry,
                                 progs->free_entry, progs->alloc_return, progs->thread_exit_entry,
                                 progs->loader_changed})
        bpf_program__set_autoload(classic, !t->multi_);
    bpf_program__set_autoload(progs->empty_entry, options.empty_programs && !t->multi_);
    bpf_program__set_autoload(progs->empty_return, options.empty_programs && !t->multi_);
    bpf_program__set_autoload(progs->alloc_session, t->multi_);
    bpf_program__set_autoload(progs->empty_session, options.empty_programs && t->multi_);
    if (t->multi_) {
        for (bpf_program* session : {progs->alloc_session, progs->empty_session})
            bpf_program__set_expected_attach_type(session, static_cast<bpf_attach_type>(MS_ATTACH_UPROBE_SESSION));
        bpf_program__set_expected_attach_type(progs->tracker_entry,
                                              static_cast<bpf_attach_type>(MS_ATTACH_UPROBE_MULTI));
    }
    if (int err = memscope_bpf__load(t->skel_)) {
        error = std::string("cannot load the BPF programs (") + std::strerror(-err) +
                "); this kernel may lack task storage or BTF-enabled tracepoints";
        return nullptr;
    }
    // Process-level tracepoints: one hash lookup on fork/exec/exit, nothing in the hot path.
    if (int err = memscope_bpf__attach(t->skel_)) {
        error = std::string("cannot attach the process tracepoints: ") + std::strerror(-err);
        return nullptr;
    }
    auto on_event = [](void* ctx, void* data, size_t size) -> int {
        auto* self = static_cast<Tracer*>(ctx);
        ms_block_event b;
        if (size >= sizeof b) {
            std::memcpy(&b, data, sizeof b);
            // A bound thread gone, a second one to bind to: the tracer's
            // own, done once the ring is drained (opening perf events for
            // every probe here would hold the drain while the ring fills).
            if (b.h.type == MS_EV_BOUND_EXIT || b.h.type == MS_EV_NEW_THREAD) {
                self->binding_work_.push_back({b.h.type == MS_EV_BOUND_EXIT, static_cast<int>(b.h.tgid),
                                               static_cast<int>(b.addr), b.ts});
                return 0;
            }
        }
        if (!self->handler_)
            return 0;
        if (auto ev = decode_event(data, size))
            self->handler_(*ev);
        return 0;
    };
    // Without uprobe_multi: sites shared by the run's processes where
    // tracefs allows; else each process gets uprobe PMU links of its own
    // (their release is slow).
    auto shared = std::make_unique<UprobeEvents>();
    std::string why;
    const bool wants_shared = !t->multi_ && options.attach != Attach::uprobe_links;
    if (wants_shared && shared->open(why))
        t->shared_ = std::move(shared);
    else if (wants_shared && getenv("MEMSCOPE_DEBUG_LIBBPF"))
        std::fprintf(stderr, "memscope-trace: per-process uprobes: %s\n", why.c_str());
    // Rows go in with batched updates: mapping the array instead would put
    // all of it (16 MiB) in the tracer's RSS at once.
    t->unwind_capacity_ = depth ? bpf_map__max_entries(maps->unwind_rows) : 0;
    t->maps_ = std::make_unique<MapReader>(*t->skel_, t->options_.stack_depth);
    t->events_ = ring_buffer__new(bpf_map__fd(maps->events), on_event, t.get(), nullptr);
    if (!t->events_) {
        error = std::string("cannot open the event ring buffer: ") + std::strerror(errno);
        return nullptr;
    }
    return t;
}

int Tracer::events_fd() const
{
    return ring_buffer__epoll_fd(events_);
}

void Tracer::drain_events()
{
    ring_buffer__consume(events_);
    // In the order the BPF side saw them. A thread chosen now is alive now:
    // the exits of threads never bound that follow are nothing to do.
    std::vector<BindingWork> work = std::exchange(binding_work_, {});
    for (const BindingWork& w : work) {
        if (w.exit) {
            thread_exiting(w.pid, w.tid, w.ns);
            continue;
        }
        if (!watched_.count(w.pid))
            continue;
        const std::vector<int> before = tasks_of(w.pid);
        add_binding(w.pid, w.tid);
        publish_bindings(w.pid, before);
        // Gone before its exit could be reported: not bound after all.
        if (tasks_of(w.pid).size() > 1 && !thread_lives(w.pid, w.tid))
            thread_exiting(w.pid, w.tid);
    }
}

bool Tracer::attach_tracker(int pid, const std::string& path, const TrackerNote& note, std::uint32_t module,
                            std::string& error)
{
    // The kernel raises the module's semaphore while this probe is attached.
    const std::uint64_t at = note.site_offset + (options_.tracker_site_on_ret ? 5 : 0);
    AttachSpec spec{skel_->progs.tracker_entry, pid, path, at, false, note.semaphore_offset, module};
    if (multi_)
        spec.sites = {MultiSite{at, note.semaphore_offset, module}};
    Probe probe = off_ ? Probe{} : attach(spec); // while off: attached with the others when probes are back
    if (!probe && !off_) {
        error = "cannot attach to the tracker entry point in " + shown(path) + ": " + std::strerror(errno);
        return false;
    }
    attached_.push_back({spec, std::move(probe)});
    add_site({shown(path), "__memscope_probe_v1", note.site_offset, false, 0, "nop",
                      site_cost_name(SiteCost::nop5_rewritten), "tracker entry point"});
    return true;
}

Tracer::~Tracer()
{
    if (releaser_.joinable()) {
        {
            std::lock_guard<std::mutex> lock(release_mutex_);
            stop_releasing_ = true;
        }
        release_cv_.notify_one();
        releaser_.join(); // what it had not released yet goes with the rest
    }
    if (skel_) {
        set_mode(Mode::off);
        // No process waits at its loader for a tracer that is going away.
        int holds_fd = bpf_map__fd(skel_->maps.loader_holds);
        std::vector<__u32> held;
        for_each_key<__u32>(holds_fd, [&](const __u32& k) { held.push_back(k); });
        for (const auto& k : held)
            bpf_map_delete_elem(holds_fd, &k);
    }
    // The processes' own perf events close now, at no cost: the targets run
    // free of probes from here on. A second binding's link is one more.
    std::vector<Link> links = std::exchange(releasing_, {});
    for (auto& a : attached_)
        for (Binding* b : {&a.probe.first, &a.probe.second})
            if (b->link)
                links.push_back(std::move(b->link));
    attached_.clear();
    // What is left waits out a grace period under a kernel-wide lock per
    // probe (~0.1 s here): the programs' links on the shared sites, and
    // uprobe PMU links where tracefs was missing. The report is out by now;
    // a detached helper holding the last references pays that, and then
    // removes the shared sites' events, so the tracer's exit does not wait.
    std::vector<int> keep;
    for (const Link& l : links)
        keep.push_back(l.fd());
    UprobeEvents::Handover handover;
    if (shared_ && options_.detach_in_background) {
        handover = shared_->hand_over();
        keep.insert(keep.end(), handover.fds.begin(), handover.fds.end());
    }
    // The helper closes its copies once this process has closed its own (the
    // end of this pipe, closed last): whoever closes last pays the release.
    int done[2] = {-1, -1};
    if (!keep.empty() && options_.detach_in_background && pipe2(done, O_CLOEXEC) == 0) {
        keep.push_back(done[0]);
        std::sort(keep.begin(), keep.end());
        keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
        pid_t middle = fork();
        if (middle == 0) {
            // Twice forked: the helper belongs to init, which reaps it. From
            // a threaded process: nothing here allocates.
            if (pid_t helper = fork(); helper != 0)
                _exit(helper > 0 ? 0 : 1);
            setsid();
            prctl(PR_SET_NAME, "memscope-detach");
            // Nothing of the tracer's but the links: no pipe held open, no
            // pidfd, ring or map kept alive longer than the links need.
            close(done[1]); // first: EOF must come however the rest goes
            close_fds_except(keep.data(), keep.size());
            std_streams_to_null(); // the caller's pipe closes with the tracer, not with the releases
            pollfd wait_for{done[0], POLLIN, 0};
            poll(&wait_for, 1, 30 * 1000); // the tracer's end closes: EOF
            for (int fd : keep)
                close(fd); // the last references: the kernel releases the probes here
            UprobeEvents::remove_events(handover.uprobe_events, handover.events);
            _exit(0);
        }
        close(done[0]);
        // Handed over unless the middle said it could not fork the helper
        // (a failed wait, EINTR say, leaves the helper in charge: removing
        // its events here would wait for the release it is about to do).
        int status = 0;
        pid_t waited = -1;
        if (middle > 0)
            while ((waited = waitpid(middle, &status, 0)) < 0 && errno == EINTR) {
            }
        const bool no_helper = middle < 0 || (waited == middle && WIFEXITED(status) && WEXITSTATUS(status) != 0);
        if (!no_helper && shared_)
            shared_->handed_over(); // else the events are removed here
    }
    links.clear();
    shared_.reset(); // its links; its events too unless the helper has them
    if (events_)
        ring_buffer__free(events_);
    if (skel_)
        memscope_bpf__destroy(skel_);
    if (done[1] >= 0)
        close(done[1]);
}

bool Tracer::add_target(int pid, std::string& error)
{
    __u32 key = static_cast<__u32>(pid);
    ms_target zero{};
    if (bpf_map__update_elem(skel_->maps.targets, &key, sizeof key, &zero, sizeof zero, BPF_ANY)) {
        error = std::string("cannot register pid ") + std::to_string(pid) + ": " + std::strerror(errno);
        return false;
    }
    return true;
}

void Tracer::remove_target(int pid)
{
    __u32 key = static_cast<__u32>(pid);
    bpf_map__delete_elem(skel_->maps.targets, &key, sizeof key, 0);
    bpf_map__delete_elem(skel_->maps.process_modes, &key, sizeof key, 0);
}

bool Tracer::take_hold_signal(int tid, int sig)
{
    __u32 key = static_cast<__u32>(tid), sent = 0;
    if (bpf_map__lookup_elem(skel_->maps.holds_sent, &key, sizeof key, &sent, sizeof sent, 0) != 0 ||
        sent != static_cast<__u32>(sig))
        return false;
    return bpf_map__delete_elem(skel_->maps.holds_sent, &key, sizeof key, 0) == 0;
}

bool Tracer::hold_at_loader(int pid, int sig)
{
    __u32 key = static_cast<__u32>(pid), value = static_cast<__u32>(sig);
    if (sig == 0)
        return bpf_map__delete_elem(skel_->maps.loader_holds, &key, sizeof key, 0) == 0;
    return bpf_map__update_elem(skel_->maps.loader_holds, &key, sizeof key, &value, sizeof value, BPF_ANY) == 0;
}

bpf_program* Tracer::program(bpf_program* real, bool retprobe) const
{
    // The loader's and a thread's end keep their real program: the tracer
    // must still learn of libraries to probe.
    if (!options_.empty_programs || real == skel_->progs.loader_changed || real == skel_->progs.thread_exit_entry)
        return real;
    return retprobe ? skel_->progs.empty_return : skel_->progs.empty_entry;
}

std::string Tracer::hold(const MappedFile& file)
{
    return held_.try_emplace({file.file_dev, file.file_ino}, file).first->second.host;
}

void Tracer::add_site(AttachedSite site)
{
    // Each process's probes of a file are at the same sites: listed once.
    if (std::none_of(probe_sites_.begin(), probe_sites_.end(), [&](const AttachedSite& o) {
            return o.path == site.path && o.symbol == site.symbol && o.file_offset == site.file_offset &&
                   o.return_probe == site.return_probe;
        }))
        probe_sites_.push_back(std::move(site));
}

std::string Tracer::shown(const std::string& host_path) const
{
    for (const auto& [key, file] : held_)
        if (file.host == host_path)
            return file.path;
    return host_path;
}

void Tracer::add_unwind_file(const MappedFile& mapped)
{
    if (!unwind_capacity_ || !options_.unwind_tables || mapped.host.empty())
        return;
    const std::string& host_path = mapped.host;
    // The file as the kernel names a mapping's (as maps does): its inode,
    // and its device as major << 20 | minor.
    const std::uint32_t dev = kernel_dev(mapped.dev);
    if (!unwind_known_.insert({dev, mapped.ino}).second)
        return;
    ms_unwind_file_key key{};
    key.ino = mapped.ino;
    key.dev = dev;
    // Another copy of a file already read (same build-id): its rows serve.
    const UnwindFile file(host_path);
    const std::string build_id = file.build_id();
    if (auto same = unwind_by_build_id_.find(build_id); !build_id.empty() && same != unwind_by_build_id_.end()) {
        if (bpf_map__update_elem(skel_->maps.unwind_files, &key, sizeof key, &same->second, sizeof same->second,
                                 BPF_ANY) != 0)
            unwind_stats_.skipped.push_back(mapped.path + ": " + std::strerror(errno));
        else
            unwind_stats_.shared_files += 1;
        return;
    }
    const auto start = std::chrono::steady_clock::now();
    UnwindTable table;
    std::string why;
    bool built = file.build(table, why);
    unwind_stats_.build_ms += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count());
    if (built && unwind_next_ + table.rows.size() > unwind_capacity_) {
        built = false;
        why = "the unwind rows are full (" + std::to_string(unwind_capacity_) + ")";
    }
    if (!built) {
        unwind_stats_.skipped.push_back(mapped.path + ": " + why);
        return;
    }
    std::vector<__u32> keys(table.rows.size());
    for (std::size_t i = 0; i < keys.size(); ++i)
        keys[i] = unwind_next_ + static_cast<__u32>(i);
    __u32 count = static_cast<__u32>(keys.size());
    if (bpf_map_update_batch(bpf_map__fd(skel_->maps.unwind_rows), keys.data(), table.rows.data(), &count, nullptr) !=
            0 ||
        count != keys.size()) {
        unwind_stats_.skipped.push_back(mapped.path + ": cannot load its rows: " + std::strerror(errno));
        return;
    }
    ms_unwind_file value{unwind_next_, static_cast<std::uint32_t>(table.rows.size())};
    // The rows are in place before the kernel can find them.
    if (bpf_map__update_elem(skel_->maps.unwind_files, &key, sizeof key, &value, sizeof value, BPF_ANY) != 0) {
        unwind_stats_.skipped.push_back(mapped.path + ": " + std::strerror(errno));
        return;
    }
    unwind_next_ += static_cast<std::uint32_t>(table.rows.size());
    if (!build_id.empty())
        unwind_by_build_id_.emplace(build_id, value);
    __atomic_add_fetch(&skel_->bss->unwind_generation, 1, __ATOMIC_SEQ_CST); // cached guesses are stale
    unwind_stats_.files += 1;
    unwind_stats_.rows += table.rows.size();
    unwind_stats_.eh_frame_bytes += table.section_bytes;
}

std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> Tracer::program_stats() const
{
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> out;
    add_program_stats(skel_->obj, out);
    return out;
}

std::uint64_t Tracer::map_bytes() const
{
    return object_map_bytes(skel_->obj);
}

std::string Tracer::attach_method() const
{
    return multi_ ? "uprobe_multi" : shared_ ? "shared_sites" : "uprobe_links";
}

Probe Tracer::attach(const AttachSpec& spec)
{
    if (multi_) {
        // One link for the whole process: the kernel checks the process,
        // not a thread, at each hit.
        bpf_program* prog = spec.prog;
        std::vector<MultiSite> sites = spec.sites;
        if (options_.empty_programs) {
            // The floor: the empty session program on the same sites, with
            // no return probe where the real one asks for none.
            if (prog == skel_->progs.tracker_entry)
                for (MultiSite& site : sites)
                    site.cookie = static_cast<std::uint64_t>(MS_KIND_FREE) << MS_COOKIE_KIND_SHIFT;
            prog = skel_->progs.empty_session;
        }
        const bool session = prog == skel_->progs.alloc_session || prog == skel_->progs.empty_session;
        int fd = uprobe_multi_link(bpf_program__fd(prog), session, spec.path, sites, spec.pid);
        Probe p;
        if (fd >= 0)
            p.first.link = Link::from_fd(fd);
        return p;
    }
    const std::vector<int> tasks = tasks_of(spec.pid);
    Probe p;
    p.first = open_probe(spec, tasks[0]);
    if (p && tasks.size() > 1)
        p.second = open_probe(spec, tasks[1]); // without it, the first still fires
    return p;
}

Binding Tracer::open_probe(const AttachSpec& spec, int task)
{
    bpf_program* prog = program(spec.prog, spec.retprobe);
    if (shared_) {
        std::string err;
        bool unshared = false;
        int fd = shared_->open_for(prog, spec.path, spec.offset, spec.retprobe, spec.ref_ctr_offset, spec.cookie,
                                   task, unshared, err);
        if (fd >= 0 || !unshared)
            return {Link(), UniqueFd(fd)};
        // A site tracefs would not take (a path with blanks, say): this
        // probe gets a link of its own.
        if (getenv("MEMSCOPE_DEBUG_LIBBPF"))
            std::fprintf(stderr, "memscope-trace: %s:0x%llx not shared: %s\n", spec.path.c_str(),
                         static_cast<unsigned long long>(spec.offset), err.c_str());
    }
    bpf_uprobe_opts opts{};
    opts.sz = sizeof opts;
    opts.retprobe = spec.retprobe;
    opts.ref_ctr_offset = spec.ref_ctr_offset;
    opts.bpf_cookie = spec.cookie;
    return {Link(bpf_program__attach_uprobe_opts(prog, task, spec.path.c_str(), spec.offset, &opts)), UniqueFd()};
}

// The cheapest correct site of a function, from its own bytes in the file.
static ProbeSite site_of(const std::string& path, const AllocatorSymbol& sym)
{
    std::vector<std::uint8_t> code(std::min<std::uint64_t>(sym.size ? sym.size : 16, 1 << 16));
    std::string why;
    int fd = open_untrusted(path, {}, why);
    ssize_t n = fd >= 0 ? pread(fd, code.data(), code.size(), static_cast<off_t>(sym.file_offset)) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return {};
    code.resize(static_cast<size_t>(n));
    // Without a size only the entry instruction is known: it stays the site.
    if (!sym.size)
        code.resize(std::min<size_t>(code.size(), 15));
    ProbeSite site = choose_probe_site(sym.kind, code.data(), code.size(), sym.vaddr);
    if (!sym.size)
        site.offset = 0;
    return site;
}

// glibc's malloc and calloc call no other probed function (its realloc,
// memalign and valloc do: malloc, free): async mode counts them at entry.
// glibc: the file has __call_tls_dtors, and no other allocator's functions.
static bool glibc_allocator(const std::vector<AllocatorSymbol>& symbols)
{
    const bool glibc = std::any_of(symbols.begin(), symbols.end(),
                                   [](const AllocatorSymbol& s) { return s.kind == MS_KIND_THREAD_EXIT; });
    const bool other = std::any_of(symbols.begin(), symbols.end(), [](const AllocatorSymbol& s) {
        return std::find(kOperatorAllocatorMarkers.begin(), kOperatorAllocatorMarkers.end(), s.name) !=
               kOperatorAllocatorMarkers.end();
    });
    return glibc && !other;
}

std::vector<Tracer::AttachSpec> Tracer::allocator_specs(int pid, const std::string& path,
                                                        const std::vector<AllocatorSymbol>& symbols, bool list)
{
    std::vector<AttachSpec> specs;
    const bool glibc = multi_ && glibc_allocator(symbols);
    AttachSpec multi{skel_->progs.alloc_session, pid, path, 0, false, 0, 0};
    multi.name = "its allocator functions";
    for (const auto& sym : unique_by_address(symbols)) {
        ProbeSite site = site_of(path, sym);
        const std::uint64_t at = sym.file_offset + site.offset;
        // The return probe first: a call entered between the two would
        // otherwise leave an entry whose return is never seen. (A session
        // has both at once.)
        if (needs_return_probe(sym.kind)) {
            // The site never moves past a change of rsp: [rsp] is still the return address.
            if (!multi_)
                specs.push_back({skel_->progs.alloc_return, pid, path, at, true, 0, 0, {}, "a return probe to " + sym.name});
            if (list)
                add_site({shown(path), sym.name, at, true, site.offset, site.instruction, site_cost_name(site.cost),
                          site.reason});
        }
        if (multi_) {
            std::uint64_t cookie = static_cast<std::uint64_t>(sym.kind) << MS_COOKIE_KIND_SHIFT;
            if (glibc && (sym.name == "malloc" || sym.name == "calloc"))
                cookie |= MS_COOKIE_LEAF;
            multi.sites.push_back({at, 0, cookie});
        } else {
            specs.push_back({entry_program(skel_, sym.kind), pid, path, at, false, 0, 0, {}, "a uprobe to " + sym.name});
        }
        if (list)
            add_site({shown(path), sym.name, at, false, site.offset, site.instruction, site_cost_name(site.cost),
                      site.reason});
    }
    if (!multi.sites.empty())
        specs.push_back(std::move(multi));
    return specs;
}

int Tracer::attach_allocator(int pid, const std::string& path, const ElfScan& scan, std::string& error)
{
    if (unreachable_.count(pid)) {
        error = "its main thread has exited, and uprobe_multi links reach a process through it "
                "(--attach shared_sites does not need it)";
        return -1;
    }
    std::string why;
    int fd = open_untrusted(path, {}, why);
    auto read = [&](std::uint64_t vaddr, std::size_t n) {
        std::vector<std::uint8_t> code(n);
        auto offset = vaddr_to_offset(scan.loads, vaddr);
        ssize_t got = fd >= 0 && offset ? pread(fd, code.data(), n, static_cast<off_t>(*offset)) : -1;
        code.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
        return code;
    };
    const std::vector<AllocatorSymbol> symbols = without_forwarders(scan.symbols, scan.allocator_slots, read);
    if (fd >= 0)
        close(fd);
    for (AttachSpec& spec : allocator_specs(pid, path, symbols, true)) {
        // While off, only kept: attached with the others when probes come back.
        Probe probe = off_ ? Probe{} : attach(spec);
        if (!probe && !off_) {
            error = "cannot attach " + spec.name + " in " + shown(path) + ": " + std::strerror(errno);
            return -1;
        }
        attached_.push_back({std::move(spec), std::move(probe)});
    }
    const auto unique = unique_by_address(symbols);
    return static_cast<int>(std::count_if(unique.begin(), unique.end(),
                                          [](const AllocatorSymbol& s) { return is_allocator(s.kind); }));
}

std::string Tracer::attach_allocator_temporary(int pid, const std::string& path,
                                               const std::vector<AllocatorSymbol>& symbols,
                                               std::vector<Probe>& links)
{
    for (const AttachSpec& spec : allocator_specs(pid, path, symbols, false)) {
        Probe l = attach(spec);
        if (!l)
            return "cannot attach " + spec.name + " in " + shown(path) + ": " + std::strerror(errno);
        links.push_back(std::move(l));
    }
    return {};
}

void Tracer::release_slots(std::uint32_t tgid, std::uint32_t end_slot)
{
    // Its thread slots read as no one's from now on (the slots themselves
    // are not handed out again).
    int slots_fd = bpf_map__fd(skel_->maps.thread_slots);
    const __u32 used = std::min({__atomic_load_n(&skel_->bss->next_slot, __ATOMIC_ACQUIRE),
                                 bpf_map__max_entries(skel_->maps.thread_slots), end_slot});
    for (__u32 slot = 0; slot < used; ++slot) {
        ms_thread_key k{};
        if (bpf_map_lookup_elem(slots_fd, &slot, &k) == 0 && k.tgid == tgid) {
            ms_thread_key none{};
            bpf_map_update_elem(slots_fd, &slot, &none, BPF_ANY);
        }
    }
}

void Tracer::forget_process(int pid)
{
    const __u32 tgid = static_cast<__u32>(pid);
    bpf_map__delete_elem(skel_->maps.loader_holds, &tgid, sizeof tgid, 0);
    release_slots(tgid, UINT32_MAX);
    int names_fd = bpf_map__fd(skel_->maps.thread_names);
    for (const auto& k : keys_of_process<ms_thread_key>(names_fd, tgid))
        bpf_map_delete_elem(names_fd, &k);
    int allocs_fd = bpf_map__fd(skel_->maps.allocs);
    for (const auto& k : keys_of_process<ms_alloc_key>(allocs_fd, tgid))
        bpf_map_delete_elem(allocs_fd, &k);
    forget_sites(tgid);
    for (int fd : {bpf_map__fd(skel_->maps.group_totals)})
        for (const auto& k : keys_of_process<ms_group_key>(fd, tgid))
            bpf_map_delete_elem(fd, &k);
    int vars_fd = bpf_map__fd(skel_->maps.var_totals);
    for (const auto& k : keys_of_process<ms_var_key>(vars_fd, tgid))
        bpf_map_delete_elem(vars_fd, &k);
}

void Tracer::forget_image(int pid, std::uint32_t exec_slot)
{
    const __u32 tgid = static_cast<__u32>(pid);
    release_slots(tgid, exec_slot);
    int allocs_fd = bpf_map__fd(skel_->maps.allocs);
    for (const auto& k : keys_of_process<ms_alloc_key>(allocs_fd, tgid)) {
        ms_alloc_rec rec{};
        if (bpf_map_lookup_elem(allocs_fd, &k, &rec) == 0 && rec.owner_slot < exec_slot)
            bpf_map_delete_elem(allocs_fd, &k);
    }
    forget_sites(tgid);
}

void Tracer::forget_sites(std::uint32_t tgid)
{
    int sites_fd = bpf_map__fd(skel_->maps.sites);
    for (const auto& k : keys_of_process<ms_site_key>(sites_fd, tgid))
        bpf_map_delete_elem(sites_fd, &k);
    int sizes_fd = bpf_map__fd(skel_->maps.sizes);
    for (const auto& k : keys_of_process<ms_size_key>(sizes_fd, tgid))
        bpf_map_delete_elem(sizes_fd, &k);
    bpf_map__delete_elem(skel_->maps.proc_live, &tgid, sizeof tgid, 0);
}

void Tracer::release_process(int pid, Release how)
{
    // A shared site's event closes with its Attachment, at no cost; a link
    // of its own goes to the releaser. A uprobe_multi link of a process
    // that lives on (a thread other than the leader exec'd; dropped from
    // the choice) goes now: its program would still run for the process's
    // threads beside the links that replace it.
    const bool now = multi_ && how == Release::now;
    unreachable_.erase(pid);
    std::vector<Link> gone;
    std::erase_if(attached_, [&](Attachment& a) {
        if (a.spec.pid != pid)
            return false;
        for (Binding* b : {&a.probe.first, &a.probe.second})
            if (b->link)
                gone.push_back(std::move(b->link));
        return true;
    });
    const std::vector<int> bound = tasks_of(pid);
    watched_.erase(pid);
    publish_bindings(pid, bound);
    bound_.erase(pid);
    for (int t : bound)
        bound_since_.erase(t);
    if (now)
        gone.clear();
    release_links(std::move(gone));
}

void Tracer::publish_bindings(int pid, const std::vector<int>& before)
{
    // The BPF side's view: the bound threads of a watched process (their
    // exits reported), and whether it waits for a second one.
    const bool watched = watched_.count(pid) > 0;
    const std::vector<int> now = watched ? tasks_of(pid) : std::vector<int>{};
    int tasks_fd = bpf_map__fd(skel_->maps.bound_tasks), lone_fd = bpf_map__fd(skel_->maps.lone_bindings);
    for (int t : before) {
        __u32 key = static_cast<__u32>(t);
        if (std::find(now.begin(), now.end(), t) == now.end())
            bpf_map_delete_elem(tasks_fd, &key);
    }
    __u32 tgid = static_cast<__u32>(pid);
    for (int t : now) {
        __u32 key = static_cast<__u32>(t);
        bpf_map_update_elem(tasks_fd, &key, &tgid, BPF_ANY);
    }
    if (watched && now.size() == 1)
        bpf_map_update_elem(lone_fd, &tgid, &tgid, BPF_ANY);
    else
        bpf_map_delete_elem(lone_fd, &tgid);
}

void Tracer::watch_threads(int pid)
{
    if (multi_)
        return; // a uprobe_multi link is the whole process's
    watched_.insert(pid);
    const std::vector<int> before = tasks_of(pid);
    std::vector<int> bound = before;
    int other = bound.size() < 2 ? live_task(pid, bound) : 0;
    if (other)
        add_binding(pid, other);
    publish_bindings(pid, before);
    if (other && !thread_lives(pid, other))
        thread_exiting(pid, other, monotonic_ns());
}

void Tracer::bind_first(int pid, int task)
{
    if (multi_) {
        // Its leader has exited: the kernel places a uprobe_multi link's
        // sites through the leader's memory, which it no longer has.
        unreachable_.insert(pid);
        return;
    }
    if (tasks_of(pid)[0] != task)
        rebind(pid, 0, task);
}

void Tracer::thread_exiting(int pid, int tid, std::uint64_t exit_ns)
{
    if (multi_)
        return; // a uprobe_multi link is the whole process's
    const std::vector<int> before = tasks_of(pid);
    auto at = std::find(before.begin(), before.end(), tid);
    if (at == before.end())
        return;
    if (exit_ns) {
        // Told after the fact: the probes held only if another bound thread
        // had them before this one went, and has them still.
        const bool held = std::any_of(before.begin(), before.end(), [&](int t) {
            auto since = bound_since_.find(t);
            return t != tid && (since == bound_since_.end() || since->second <= exit_ns) && thread_lives(pid, t);
        });
        if (!held && live_task(pid, {tid}))
            ++lapses_[pid];
    }
    bound_since_.erase(tid);
    // Another thread that lives on, not one bound already; none: the slot
    // goes (the other holds the probes), or, the last one, stays as it is:
    // the process is ending.
    std::vector<int> except = before;
    int next = live_task(pid, except);
    if (next || before.size() > 1)
        rebind(pid, static_cast<std::size_t>(at - before.begin()), next);
    publish_bindings(pid, before);
    // Gone before the BPF side knew to report it: moved again (bounded).
    if (next && exit_ns && !thread_lives(pid, next) && ++rebind_depth_ < 8)
        thread_exiting(pid, next, monotonic_ns());
    rebind_depth_ = 0;
}

void Tracer::add_binding(int pid, int task)
{
    std::vector<int> tasks = tasks_of(pid);
    if (tasks.size() >= 2 || std::find(tasks.begin(), tasks.end(), task) != tasks.end())
        return;
    tasks.push_back(task);
    bound_[pid] = tasks;
    bound_since_[task] = monotonic_ns();
    if (off_)
        return; // opened on both when the probes come back
    for (Attachment& a : attached_) {
        if (a.spec.pid != pid || !a.probe || a.probe.second)
            continue;
        a.probe.second = open_probe(a.spec, task);
    }
}

void Tracer::rebind(int pid, std::size_t slot, int task)
{
    std::vector<int> tasks = tasks_of(pid);
    if (slot >= tasks.size())
        return;
    if (task == 0)
        tasks.erase(tasks.begin() + static_cast<std::ptrdiff_t>(slot));
    else
        tasks[slot] = task;
    if (tasks.empty())
        return;
    if (tasks == std::vector<int>{pid})
        bound_.erase(pid);
    else
        bound_[pid] = tasks;
    if (task)
        bound_since_[task] = monotonic_ns();
    std::vector<Link> gone;
    for (Attachment& a : attached_) {
        const AttachSpec& spec = a.spec;
        Probe& p = a.probe;
        if (spec.pid != pid || !p)
            continue; // while off, opened on the new threads when they come back
        Binding& binding = slot == 0 ? p.first : p.second;
        // The new one before the old one goes: the process is never without.
        Binding fresh = task ? open_probe(spec, task) : Binding{};
        if (task && !fresh)
            continue; // the old one stays: it fires while its thread lives
        if (binding.link)
            gone.push_back(std::move(binding.link));
        binding = std::move(fresh); // the old event closes here
        if (slot == 0 && !task) { // the second becomes the first
            p.first = std::move(p.second);
            p.second = {};
            if (!p) // it never opened there: now, on the thread that stays
                p.first = open_probe(spec, tasks[0]);
        }
    }
    release_links(std::move(gone));
}

void Tracer::release_links(std::vector<Link> gone)
{
    if (gone.empty())
        return;
    {
        std::lock_guard<std::mutex> lock(release_mutex_);
        std::move(gone.begin(), gone.end(), std::back_inserter(releasing_));
    }
    release_cv_.notify_one();
    if (!releaser_.joinable())
        releaser_ = std::thread([this] {
            std::unique_lock<std::mutex> lock(release_mutex_);
            for (;;) {
                release_cv_.wait(lock, [this] { return stop_releasing_ || !releasing_.empty(); });
                if (stop_releasing_)
                    return;
                Link l = std::move(releasing_.front());
                releasing_.erase(releasing_.begin());
                lock.unlock();
                l.reset();
                lock.lock();
            }
        });
}

void Tracer::set_mode(Mode mode)
{
    mode_ = mode;
    __atomic_store_n(&skel_->bss->mode, bpf_mode(mode), __ATOMIC_SEQ_CST);
}

void Tracer::set_process_mode(int pid, Mode mode)
{
    const __u32 key = static_cast<__u32>(pid), value = bpf_mode(mode);
    bpf_map__update_elem(skel_->maps.process_modes, &key, sizeof key, &value, sizeof value, BPF_ANY);
    __atomic_store_n(&skel_->bss->per_process_modes, 1u, __ATOMIC_SEQ_CST);
}

void Tracer::set_calibration_mode(int pid, Mode mode)
{
    __atomic_store_n(&skel_->bss->calib_mode, bpf_mode(mode), __ATOMIC_SEQ_CST);
    __atomic_store_n(&skel_->bss->calib_tgid, static_cast<__u32>(pid), __ATOMIC_SEQ_CST);
}

void Tracer::mark_gap()
{
    __atomic_store_n(&skel_->bss->gap_seen, 1u, __ATOMIC_SEQ_CST);
}

void Tracer::detach_probes()
{
    mark_gap();
    off_ = true;
    // New calls go unseen from now; calls in flight (entered in the previous
    // mode) finish through their return probes before those go.
    set_mode(Mode::off);
    usleep(20 * 1000);
    for (Attachment& a : attached_)
        a.probe = {};
}

std::string Tracer::reattach_probes()
{
    if (!off_)
        return {};
    off_ = false;
    // The BPF mode is still off: every probe goes back before any records a
    // call, return probes first, and calls left in flight when the probes
    // went off are recognised as stale by the new epoch.
    __atomic_add_fetch(&skel_->bss->epoch, 1u, __ATOMIC_SEQ_CST);
    for (bool returns : {true, false}) {
        for (Attachment& a : attached_) {
            if (a.spec.retprobe != returns)
                continue;
            a.probe = attach(a.spec);
            const int err = errno;
            // Its process is gone (exited, not reaped yet): nothing of it
            // runs any more; the rest come back.
            if (a.probe || live_task(a.spec.pid) == 0)
                continue;
            detach_probes();
            return "cannot attach the probes again in " + shown(a.spec.path) + ": " + std::strerror(err);
        }
    }
    return {};
}

std::string Tracer::measure_hit_costs(double (&cost_ns)[3])
{
    return calibrate_hit_costs(*this, cost_ns);
}

std::vector<RawRecord> Tracer::records(int pid) const
{
    return maps_->records(pid);
}

std::vector<RawSite> Tracer::sites(int pid) const
{
    return maps_->sites(pid);
}

std::vector<RawSize> Tracer::sizes(int pid) const
{
    return maps_->sizes(pid);
}

std::optional<RawPeak> Tracer::peak(int pid) const
{
    return maps_->peak(pid);
}

std::vector<std::uint64_t> Tracer::stack(std::uint64_t hash) const
{
    return maps_->stack(hash);
}

Snapshot Tracer::snapshot(int pid, std::uint32_t end_slot) const
{
    return maps_->snapshot(pid, end_slot);
}

} // namespace memscope
