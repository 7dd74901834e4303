#include "session.hpp"
#include "paths.hpp"

#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "proc.hpp"
#include "system_procs.hpp"
#include "sites.hpp"

namespace memscope {

Session::Session(TraceSource& tracer, int pid, std::size_t max_variables)
    : tracer_(tracer), pid_(pid), start_ns_(monotonic_ns()), events_(modules_, max_variables)
{
}

void Session::follow(Mode mode)
{
    mode_ = mode;
    mode_source_ = "the traced command's";
    locked_ = true;
}

void Session::on_exec(bool probes_gone)
{
    if (probes_gone) { // every file is probed again, libc too
        seen_.clear();
        named_.clear();
    }
    pending_.clear(); // the old program's, reported with it
    stacks_.clear();
    events_.mutable_table().take_variables();
    rescan_ = false;
}

void Session::on_event(const DecodedEvent& ev)
{
    if (ev.type == MS_EV_NEW_STACK) {
        if (ev.tgid != static_cast<std::uint32_t>(pid_) || stacks_.count(ev.addr))
            return;
        // Code with no file behind it (JIT) is named by the process's maps
        // and perf map, which go with it: now. The rest can wait.
        const bool anonymous = std::any_of(ev.frames.begin(), ev.frames.end(), [](const RawFrame& f) { return !f.ino; });
        if (anonymous)
            symbolize(ev.addr, &ev.frames, ev.flags);
        else
            pending_.try_emplace(ev.addr, PendingStack{ev.frames, ev.flags});
        return;
    }
    if (ev.type == MS_EV_LOADER_CHANGED && ev.tgid == static_cast<std::uint32_t>(pid_))
        symbolizer_.refresh(pid_); // now, while the libraries are there
    if (ev.type == MS_EV_EXEC && ev.tgid == static_cast<std::uint32_t>(pid_)) {
        execs_.push_back({static_cast<std::uint32_t>(ev.addr), ev.ts, static_cast<int>(ev.size)});
        return;
    }
    events_.handle(ev);
}


void Session::symbolize_pending(double budget_ms)
{
    const auto start = std::chrono::steady_clock::now();
    while (!pending_.empty()) {
        if (budget_ms >= 0 &&
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() > budget_ms)
            return;
        symbolize(pending_.begin()->first); // takes it from pending_
    }
}

const SymbolizedStack& Session::symbolize(std::uint64_t hash, const std::vector<RawFrame>* frames, std::uint32_t end)
{
    auto it = stacks_.find(hash);
    if (it != stacks_.end())
        return it->second;
    PendingStack waiting;
    if (!frames) {
        if (auto p = pending_.find(hash); p != pending_.end()) {
            waiting = std::move(p->second);
            pending_.erase(p);
            frames = &waiting.frames;
            end = waiting.end;
        }
    }
    SymbolizedStack s;
    std::vector<RawFrame> raw;
    if (frames) {
        raw = *frames;
    } else {
        for (std::uint64_t ip : tracer_.stack(hash))
            raw.push_back({ip, 0, 0, 0});
    }
    // The walker marks a signal frame in its ip; the next one is the
    // interrupted code's.
    for (std::size_t i = 0; i < raw.size(); ++i)
        if (raw[i].ip & MS_IP_SIGNAL_FRAME) {
            raw[i].ip &= ~MS_IP_SIGNAL_FRAME;
            raw[i].at = RawFrame::At::signal_trampoline;
            if (i + 1 < raw.size())
                raw[i + 1].at = RawFrame::At::interrupted;
        }
    std::string cut;
    if (!raw.empty()) {
        s.frames = symbolizer_.resolve(pid_, raw, s.truncated, &cut);
        s.frames.shrink_to_fit(); // kept for the run: no slack from inline frames
    }
    else
        s.truncated = true; // its frames did not fit the table
    // A walk that reached an undefined return address reached the real
    // root, whatever its name (a runtime's own thread start).
    if (s.truncated && cut.empty() && end == MS_STACK_END_ROOT + 1 && !s.frames.empty())
        s.truncated = false;
    if (s.truncated) {
        const std::string last = s.frames.empty() || s.frames.back().module.empty()
                                     ? std::string("anonymous code")
                                     : base_name(s.frames.back().module.str());
        if (raw.empty())
            s.end = "stack table full";
        else if (!cut.empty())
            s.end = "no return address after " + last;
        else if (end == MS_STACK_END_DEPTH + 1 || s.frames.size() >= tracer_.stack_depth())
            s.end = "depth limit (--stack-depth " + std::to_string(tracer_.stack_depth()) + ")";
        else if (end == MS_STACK_END_NO_RULE + 1)
            s.end = "no unwind rule in " + last;
        else if (end == MS_STACK_END_BAD_FRAME + 1)
            s.end = "unreadable stack after " + last;
        else
            s.end = "ended in " + last;
    }
    return stacks_.emplace(hash, std::move(s)).first->second;
}

void Session::add_sites(Report& report)
{
    tracer_.drain_events();
    std::vector<SiteInput> inputs;
    std::vector<RawSize> sizes = tracer_.sizes(pid_);
    for (const RawSite& raw : tracer_.sites(pid_)) {
        sizes.insert(sizes.end(), raw.first_sizes.begin(), raw.first_sizes.end());
        const SymbolizedStack& s = symbolize(raw.stack);
        inputs.push_back({raw.stack, s.frames, s.truncated, raw.alloc_count, raw.alloc_bytes, s.end,
                          raw.temporary_count});
    }
    std::vector<OutstandingBlock> blocks;
    const VariableTable& table = events_.table();
    for (const RawRecord& rec : tracer_.records(pid_))
        blocks.push_back({rec.stack, rec.size, rec.alloc_ns, rec.tid, rec.thread_start_ns,
                          table.descriptors_at(static_cast<std::uint32_t>(pid_), rec.addr)});
    report.allocation_records = blocks.size();
    memscope::add_sites(report, std::move(inputs), blocks, monotonic_ns(), tracer_.stack_depth(), leak_min_age_s_);
    for (auto& site : report.sites)
        site.pid = static_cast<std::uint32_t>(pid_);
    for (auto& leak : report.leaks)
        leak.pid = static_cast<std::uint32_t>(pid_);
    add_sizes(report, sizes);
    if (auto peak = tracer_.peak(pid_))
        add_peak(report, static_cast<std::uint32_t>(pid_), *peak, start_ns_);
    if (report.stacks.enabled && report.stacks.truncated_share > 0.5)
        report.stacks.note = "most stacks end early: the program (or the libraries it allocates from) was "
                             "likely built without frame pointers; rebuild with -fno-omit-frame-pointer "
                             "for whole stacks";
    // Files the target named that were not read (every process's: the
    // list is shared like the symbol files).
    for (const auto& s : symbolizer_.skipped())
        if (std::find(report.warnings.begin(), report.warnings.end(), s) == report.warnings.end())
            report.warnings.push_back(s);
}

void Session::add_unprobed(UnprobedAllocator u)
{
    if (std::none_of(unprobed_.begin(), unprobed_.end(),
                     [&](const UnprobedAllocator& o) { return o.pid == u.pid && o.file == u.file; }))
        unprobed_.push_back(std::move(u));
}

void Session::unreachable(int pid, const MappedFile& file)
{
    // Refused to this tracer: what it defines is unknown, and counting
    // zero would be a guess. Anything else (gone meanwhile, no regular
    // file, a JIT's memfd too large to be ELF) is a note.
    if (file.refused) {
        add_unprobed({static_cast<std::uint32_t>(pid), file.path, {}, "unreadable: " + file.why});
        return;
    }
    std::string note = "process " + std::to_string(pid) + ": " + file.path + " not probed: " + file.why;
    if (std::find(notes_.begin(), notes_.end(), note) == notes_.end())
        notes_.push_back(std::move(note));
}

std::string Session::attach_tracker(int pid, const std::string& path, const ElfScan& scan)
{
    std::string err;
    auto module = modules_.add(path, tracer_.shown(path), scan, err);
    if (!module)
        return err;
    if (!tracer_.attach_tracker(pid, path, *scan.tracker, *module, err))
        return err;
    return {};
}

std::string Session::no_allocator(int pid) const
{
    std::string out = "no allocator functions (malloc, free, ...) found in the files process " +
                      std::to_string(pid) + " maps";
    for (const auto& u : unprobed_)
        if (u.pid == static_cast<std::uint32_t>(pid) && !u.reason.empty())
            out += "; " + u.file + ": " + u.reason;
    return out;
}

std::string Session::attach(int pid, const std::vector<MappedFile>& objects, int& probed, bool running)
{
    probed = 0;
    std::vector<const MappedFile*> fresh;
    for (const auto& file : objects) {
        if (file.host.empty()) {
            // Probed already (it does not open now: its probes hold), else said.
            if (!(file.ino && named_.count({file.dev, file.ino})))
                unreachable(pid, file);
            continue;
        }
        named_.insert({file.dev, file.ino});
        if (seen_.insert({file.file_dev, file.file_ino}).second) {
            fresh.push_back(&file);
        } else {
            // Seen under other names first (a path before its exec, on
            // btrfs): its rows and symbols under the kernel's names too.
            symbolizer_.know_file(file);
            tracer_.add_unwind_file(file);
        }
    }
    if (fresh.empty())
        return allocator_functions_ == 0 && running ? no_allocator(pid) : std::string();
    // Nothing is recorded until every probe is in place: a call that meets
    // half of its probes would leave state behind.
    const Mode before = tracer_.mode();
    if (running)
        tracer_.set_mode(Mode::off);
    // Allocators first: the entry points' semaphores rise as soon as they
    // are attached, and a target waiting on them must find its heap watched.
    std::vector<std::pair<std::string, ElfScan>> trackers;
    for (const MappedFile* f : fresh) {
        const MappedFile& file = *f;
        ElfScan scan = scan_elf(file.host); // "/proc/self/fd/N": that inode, for every look
        if (!scan.error.empty())
            continue;
        // Probes are attached again by path (off, then on): a file probed is
        // held as long as the tracer; others (a JIT's memfd) go with `objects`.
        const std::string host = !scan.symbols.empty() || scan.tracker ? tracer_.hold(file) : file.host;
        if (!scan.tracker_error.empty())
            notes_.push_back(file.path + ": " + scan.tracker_error);
        if (!scan.unprobed_allocator.empty())
            add_unprobed({static_cast<std::uint32_t>(pid), file.path, scan.unprobed_allocator});
        if (!scan.nameless_allocator.empty())
            add_unprobed({static_cast<std::uint32_t>(pid), file.path, {},
                          scan.nameless_allocator + " built in, and no symbol names its entry points (a "
                                                    "stripped static program)"});
        if (!scan.symbols.empty()) {
            std::string err;
            int n = tracer_.attach_allocator(pid, host, scan, err);
            if (n < 0) {
                if (running)
                    tracer_.set_mode(before);
                return err;
            }
            probed += n;
        }
        if (scan.tracker)
            trackers.emplace_back(host, std::move(scan));
        symbolizer_.know_file(file);
        tracer_.add_unwind_file(file);
    }
    allocator_functions_ += probed;
    if (allocator_functions_ == 0 && running)
        return no_allocator(pid);
    for (const auto& [path, scan] : trackers)
        if (auto err = attach_tracker(pid, path, scan); !err.empty()) {
            if (running)
                tracer_.set_mode(before);
            return err;
        }
    if (running)
        tracer_.set_mode(before);
    return {};
}

std::string Session::attach_new_files(bool running)
{
    int probed = 0;
    return attach(pid_, executable_mappings(pid_), probed, running);
}

std::string Session::start_mode(Mode mode, const std::string& source, bool locked)
{
    mode_source_ = source;
    locked_ = locked;
    if (mode == Mode::normal)
        return {};
    // Not a change: the mode tracing starts in.
    Mode before = mode_;
    std::string err = switch_mode(mode, source, 0);
    if (!changes_.empty() && changes_.back().from == before)
        changes_.pop_back();
    return err;
}

std::string Session::switch_mode(Mode to, const std::string& reason, double t_s)
{
    if (to == mode_)
        return {};
    if (to == Mode::async)
        tracer_.mark_gap();
    if (own_mode_) {
        tracer_.set_process_mode(pid_, to);
    } else if (mode_ == Mode::off) {
        // Probes first (they come back idle), then the mode they run in.
        if (auto err = tracer_.reattach_probes(); !err.empty())
            return err;
        tracer_.set_mode(to);
        rescan_ = true; // libraries loaded while off
    } else if (to == Mode::off) {
        tracer_.detach_probes();
    } else {
        tracer_.set_mode(to);
    }
    had_async_ |= to == Mode::async;
    had_off_ |= to == Mode::off;
    changes_.push_back({t_s, mode_, to, reason});
    mode_ = to;
    return {};
}

void Session::drain(double t_s)
{
    const int pid = pid_;
    tracer_.drain_events();
    symbolize_pending(5);
    // The target's own requests (memscope_request_mode): honoured unless an
    // explicit --mode said otherwise.
    const auto& requests = events_.mode_requests();
    for (; requests_seen_ < requests.size(); ++requests_seen_) {
        const ModeRequest& r = requests[requests_seen_];
        auto m = mode_from_request(r.mode);
        if (!m || locked_ || r.tgid != static_cast<std::uint32_t>(pid))
            continue;
        std::string err = switch_mode(*m, "target request (memscope_request_mode, tid " +
                                              std::to_string(r.tid) + ")", t_s);
        if (!err.empty())
            notes_.push_back(err);
    }
    if (events_.take_loader_changes().count(static_cast<std::uint32_t>(pid)) == 0 && !rescan_)
        return;
    rescan_ = false;
    // A library came: attach to its allocators and entry points (a process
    // held at its loader had them attached before it went on; here, its
    // calls before this are not seen).
    // Not held there (-p, a process that blocks the hold's signals): it runs
    // meanwhile, so nothing is recorded until every probe is in place.
    if (auto err = attach_new_files(!held_at_loader_); !err.empty())
        notes_.push_back(err);
}

void Session::describe_modes(Report& r) const
{
    r.mode = mode_name(mode_);
    r.mode_source = mode_source_;
    r.mode_changes = changes_;
    // Without records (async) or probes (off), blocks come and go unseen.
    r.live_bytes_exact = !had_async_ && !had_off_;
    r.free_bytes_exact = !had_async_;
    if (!r.live_bytes_exact)
        r.warnings.push_back(std::string("live bytes are not exact: the trace had a stint in ") +
                             (had_async_ && had_off_ ? "async and off" : had_async_ ? "async" : "off") +
                             " (untracked_free_count counts frees of blocks allocated then)");
    r.unprobed_allocators = unprobed_;
    if (std::uint64_t n = tracer_.probe_lapses(pid_)) {
        // Calls in those moments went unseen; how many, nobody knows.
        r.live_bytes_exact = r.free_bytes_exact = false;
        r.dropped.reasons["probes_lapsed"] += n;
        r.warnings.push_back("counts may be incomplete: the probes lapsed " + std::to_string(n) +
                             (n == 1 ? " time" : " times") +
                             " when the threads they were bound to exited together while others ran on "
                             "(run it under `memscope-trace run` for exact figures)");
    }
}

Tracked Session::tracked(const Snapshot& snap, bool final)
{
    tracer_.drain_events();
    Tracked t;
    for (std::uint32_t i = 0; i < modules_.size(); ++i)
        t.modules.push_back(modules_.at(i).path);
    for (const auto& g : snap.groups) {
        GroupTotals out{events_.descriptor(static_cast<std::uint32_t>(pid_), g.site, g.desc), g.id, g.alloc_count,
                        g.alloc_bytes, static_cast<std::uint32_t>(pid_)};
        (g.kind == MS_GROUP_SCOPE ? t.scopes : t.tasks).push_back(out);
    }
    auto by_bytes = [](const GroupTotals& a, const GroupTotals& b) {
        return a.alloc_bytes != b.alloc_bytes ? a.alloc_bytes > b.alloc_bytes : a.id < b.id;
    };
    std::sort(t.scopes.begin(), t.scopes.end(), by_bytes);
    std::sort(t.tasks.begin(), t.tasks.end(), by_bytes);
    VariableTable& table = events_.mutable_table();
    // Variables counted by name in fast mode join the summary (no live figures).
    std::vector<VariableSummary> counted;
    for (const auto& v : snap.variable_totals) {
        std::uint32_t d = events_.descriptor(static_cast<std::uint32_t>(pid_), v.site, v.desc);
        if (d == kNoDescriptor)
            continue;
        counted.push_back({d, v.count, v.bytes, 0, 0});
        t.counted_by_name += v.count;
    }
    t.summary = table.summary(counted);
    t.descriptors = table.descriptors(); // after every lookup above
    t.variables = final ? table.take_variables() : table.variables();
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
    return r;
}

} // namespace memscope
