#include "heap_set.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "elf_symbols.hpp"
#include "proc.hpp"

namespace memscope {

namespace {

constexpr const char* kTopWhy = "--heap-top";
// What --heap-top calls growing: anonymous memory up by 1 MiB/s or more
// between two samples. Below it, any process that touched a page (a shell,
// a logger) would take a slot for good before the one that grows came.
constexpr double kTopMinBytesPerS = 1 << 20;

// The loader every dynamic program of this machine's root runs under.
std::string host_loader()
{
    char real[PATH_MAX];
    for (const char* p : {"/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"})
        if (realpath(p, real))
            return real;
    return {};
}

} // namespace

HeapSet::HeapSet(SystemWatch& watch, CgroupNames& cgroups, HeapSettings settings)
    : watch_(watch), cgroups_(cgroups), settings_(std::move(settings))
{
}

HeapSet::~HeapSet() = default;

int HeapSet::events_fd() const
{
    return tracer_ ? tracer_->events_fd() : -1;
}

// A static program, or one with a loader of its own (a container's), never
// reaches the hold at the host's loader.
bool HeapSet::maps_host_loader(int pid)
{
    static const std::string loader = host_loader();
    if (loader.empty())
        return false;
    for (const auto& f : executable_mappings(pid))
        if (f.path == loader || named_path(f.path) == loader)
            return true;
    return false;
}

ProcessIdentity HeapSet::identity(int pid)
{
    ProcessIdentity id;
    id.pid = pid;
    id.comm = read_first_line("/proc/" + std::to_string(pid) + "/comm").value_or("");
    id.exe = process_exe(pid);
    id.cgroup = cgroups_.path_of(0, pid);
    return id;
}

bool HeapSet::matches(int pid, std::string& why)
{
    if (settings_.selectors.empty())
        return false;
    const HeapSelector* s = first_match(settings_.selectors, identity(pid));
    if (s)
        why = s->text;
    return s != nullptr;
}

// Programs started from now on that match by name, file or cgroup wait at
// the host's loader until probed. Returns an error sentence, empty on success.
std::string HeapSet::hold_new_programs()
{
    std::vector<std::string> comms;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> inodes;
    std::vector<std::uint64_t> cgroups;
    for (const auto& s : settings_.selectors) {
        struct stat st{};
        if (s.kind == HeapSelector::Kind::comm)
            comms.push_back(s.value);
        else if (s.kind == HeapSelector::Kind::exe && stat(s.value.c_str(), &st) == 0)
            inodes.emplace_back(static_cast<std::uint64_t>(st.st_ino), kernel_dev(st.st_dev));
        else if (s.kind == HeapSelector::Kind::cgroup)
            for (auto id : cgroups_.ids_under(s.value))
                cgroups.push_back(id);
    }
    if (comms.empty() && inodes.empty() && cgroups.empty())
        return {};
    const std::string loader = host_loader();
    ElfScan scan = loader.empty() ? ElfScan{} : scan_elf(loader);
    auto it = std::find_if(scan.symbols.begin(), scan.symbols.end(),
                           [](const AllocatorSymbol& a) { return a.name == "_dl_debug_state"; });
    if (it == scan.symbols.end()) {
        notes_.push_back("new processes that match are probed once seen, not held: no _dl_debug_state in the "
                         "host's loader");
        return {};
    }
    return watch_.hold_new_programs(comms, inodes, cgroups, loader, it->file_offset);
}

std::string HeapSet::start(std::vector<std::string>& notes)
{
    if (settings_.selectors.empty() && settings_.top == 0)
        return {};
    std::string err;
    tracer_ = Tracer::open(settings_.tracer, err);
    if (!tracer_)
        return err;
    tracer_->set_event_handler([this](const DecodedEvent& ev) {
        if (auto it = chosen_.find(static_cast<int>(ev.tgid)); it != chosen_.end())
            it->second.session->on_event(ev);
    });
    if (settings_.budget_pct > 0) {
        // Before any target's probes exist: calibration switches the BPF side's mode.
        if (auto e = tracer_->measure_hit_costs(costs_); !e.empty())
            notes.push_back(e + "; no budget per process: its cost per hit could not be measured");
        else
            calibrated_ = true;
    }
    if (auto e = hold_new_programs(); !e.empty())
        return e;
    std::map<std::string, int> hits;
    for (int pid : all_pids()) {
        std::string why;
        if (pid != getpid() && matches(pid, why)) {
            ++hits[why];
            choose(pid, why, false, 0);
        }
    }
    for (const auto& s : settings_.selectors)
        if (!hits.count(s.text))
            notes.push_back("--heap " + s.text + " matches no running process" +
                            (s.kind == HeapSelector::Kind::pid ? "" : "; new ones that match will be traced"));
    return {};
}

void HeapSet::choose(int pid, const std::string& why, bool held, double t)
{
    std::string err;
    if (!tracer_->add_target(pid, err)) {
        notes_.push_back("pid " + std::to_string(pid) + " (" + why + "): " + err);
        return;
    }
    if (int task = live_task(pid); task > 0 && task != pid)
        tracer_->bind_first(pid, task);
    Chosen c;
    c.session = std::make_unique<Session>(*tracer_, pid, settings_.max_variables);
    if (start_ns_)
        c.session->set_start_ns(start_ns_);
    c.session->set_leak_min_age(settings_.leak_min_age_s);
    // Its later libraries are attached with the mode left as it is: the
    // BPF side's mode is every chosen process's, not this one's alone.
    c.session->held_at_loader(true);
    c.session->own_mode(true);
    c.why = why;
    c.target.pid = pid;
    c.target.exe = process_exe(pid);
    c.target.comm = read_first_line("/proc/" + std::to_string(pid) + "/comm").value_or("");
    int probed = 0;
    // A process that runs meanwhile: the others' calls go on being counted
    // (the mode stays), so this one's first calls may meet half its probes.
    err = c.session->attach(pid, executable_mappings(pid), probed, !held && chosen_.empty());
    if (!err.empty() && !held) {
        notes_.push_back("pid " + std::to_string(pid) + " (" + why + ") not heap-traced: " + err);
        tracer_->release_process(pid, TraceSource::Release::now);
        tracer_->remove_target(pid);
        return;
    }
    c.session->start_mode(Mode::normal, held ? why + ", held at its loader" : why, false);
    tracer_->watch_threads(pid);
    (void)t;
    chosen_[pid] = std::move(c);
}

void HeapSet::on_exec(int pid, bool held, double t)
{
    if (!tracer_)
        return;
    if (auto it = chosen_.find(pid); it != chosen_.end()) {
        // A chosen process ran another program: the old one's report is
        // done; the new one is chosen again if it matches.
        keep(section(it->second, t, true));
        tracer_->release_process(pid, TraceSource::Release::now);
        tracer_->forget_process(pid);
        chosen_.erase(it);
    }
    std::string why;
    if (held && !maps_host_loader(pid)) {
        // Matched in the kernel, but it never passes the host's loader.
        watch_.end_hold(pid);
        held = false;
    }
    if (matches(pid, why) || held) {
        choose(pid, why.empty() ? "--heap" : why, held, t);
        if (!held && chosen_.count(pid))
            warnings_.push_back("pid " + std::to_string(pid) + " (" + chosen_[pid].target.comm +
                                ") was chosen at its exec but not held at its loader (a static program, or one "
                                "with a loader of its own): its calls before its probes were in place are not "
                                "counted");
    }
    if (held && !chosen_.count(pid))
        watch_.end_hold(pid);
}

void HeapSet::on_held(int pid, std::uint32_t call, double t)
{
    (void)t;
    auto it = chosen_.find(pid);
    if (it == chosen_.end()) {
        watch_.end_hold(pid);
        return;
    }
    Session& s = *it->second.session;
    if (auto err = s.attach_new_files(false); !err.empty())
        notes_.push_back("pid " + std::to_string(pid) + ": " + err);
    // Its allocator is probed: later libraries are probed as -p does.
    if (s.allocator_functions() > 0)
        watch_.end_hold(pid);
    else
        watch_.release(pid, call);
}

void HeapSet::on_exit(int pid, double t)
{
    auto it = chosen_.find(pid);
    if (it == chosen_.end())
        return;
    keep(section(it->second, t, true));
    tracer_->release_process(pid, TraceSource::Release::background);
    tracer_->remove_target(pid);
    tracer_->forget_process(pid); // its thread slots and records, for those chosen next
    chosen_.erase(it);
}

// A chosen process's final report, kept for the end; past kMaxKept (a
// selector that matches every short-lived shell, say) counted, not kept.
void HeapSet::keep(Report r)
{
    if (done_.size() < kMaxKept) {
        done_.push_back(std::move(r));
        return;
    }
    if (++not_kept_ == 1)
        notes_.push_back("more than " + std::to_string(kMaxKept) +
                         " chosen processes ended: the heap reports of those after are not kept");
}

void HeapSet::drain(double t)
{
    if (!tracer_)
        return;
    tracer_->drain_events();
    for (auto& [pid, c] : chosen_)
        c.session->drain(t);
}

void HeapSet::tick(double t)
{
    if (!tracer_)
        return;
    for (auto& [pid, c] : chosen_) {
        if (c.released)
            continue;
        c.rates.sample(tracer_->snapshot(pid), pid, t);
        if (calibrated_ && c.rates.take_fresh())
            step(c, t);
    }
}

// Its budget's step: down when over, up with room to spare; past async,
// its probes go (the process runs untraced from then on).
void HeapSet::step(Chosen& c, double t)
{
    const AutoPolicy policy(settings_.budget_pct, costs_);
    const Mode now = c.session->mode();
    const double hits = c.rates.hits_per_s(), cpu = c.rates.cpu_per_s();
    std::string why;
    if (auto s = policy.decide(now, hits, cpu)) {
        c.session->switch_mode(s->first, s->second, t);
        why = std::string("mode ") + mode_name(s->first) + " (" + s->second + ")";
    } else if (now == Mode::async && policy.estimate_pct(now, hits, cpu) > settings_.budget_pct) {
        char text[160];
        std::snprintf(text, sizeof text, "auto: estimated overhead in async %.1f%% > budget %.1f%% (%.0f hits/s)",
                      policy.estimate_pct(now, hits, cpu), settings_.budget_pct, hits);
        c.session->switch_mode(Mode::off, text, t);
        tracer_->release_process(c.target.pid, TraceSource::Release::now);
        c.released = true;
        why = std::string("released, its probes detached (") + text + ")";
    }
    if (!why.empty())
        notes_.push_back("pid " + std::to_string(c.target.pid) + " (" + c.target.comm + "): " + why);
}

nlohmann::json HeapSet::status() const
{
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [pid, c] : chosen_) {
        const Mode m = c.session->mode();
        nlohmann::json p{{"pid", pid},
                         {"comm", c.target.comm},
                         {"chosen_by", c.why},
                         {"mode", c.released ? "released" : mode_name(m)},
                         {"event_rate", c.rates.hits_per_s()},
                         {"target_cpu", c.rates.cpu_per_s()}};
        if (calibrated_ && !c.released)
            p["estimated_overhead_pct"] =
                m == Mode::off ? 0.0
                               : AutoPolicy(settings_.budget_pct, costs_)
                                     .estimate_pct(m, c.rates.hits_per_s(), c.rates.cpu_per_s());
        list.push_back(std::move(p));
    }
    return list;
}

std::string HeapSet::add_selector(const HeapSelector& s, double t)
{
    if (!tracer_)
        return "heap tracing is not set up: start -a with --heap or --heap-top";
    settings_.selectors.push_back(s);
    if (auto e = hold_new_programs(); !e.empty())
        return e;
    for (int pid : all_pids())
        if (pid != getpid() && !chosen_.count(pid) && selector_matches(s, identity(pid)))
            choose(pid, s.text, false, t);
    return {};
}

std::string HeapSet::drop_selector(const std::string& text, double t)
{
    auto it = std::find_if(settings_.selectors.begin(), settings_.selectors.end(),
                           [&](const HeapSelector& s) { return s.text == text; });
    if (it == settings_.selectors.end())
        return "no --heap " + text + " in force";
    settings_.selectors.erase(it);
    for (auto c = chosen_.begin(); c != chosen_.end();) {
        if (c->second.why != text) {
            ++c;
            continue;
        }
        keep(section(c->second, t, true));
        tracer_->release_process(c->first, TraceSource::Release::now);
        tracer_->remove_target(c->first);
        tracer_->forget_process(c->first);
        c = chosen_.erase(c);
    }
    // New programs are still held by what the kernel matches: only if no
    // selector of that kind is left does it forget (it keeps the others').
    return {};
}

void HeapSet::consider_growth(const std::vector<std::pair<int, double>>& fastest, double t)
{
    if (!tracer_ || settings_.top == 0)
        return;
    std::size_t topped = static_cast<std::size_t>(
        std::count_if(chosen_.begin(), chosen_.end(), [](const auto& c) { return c.second.why == kTopWhy; }));
    for (const auto& [pid, rate] : fastest) {
        if (topped >= settings_.top || rate < kTopMinBytesPerS)
            break;
        if (chosen_.count(pid) || pid == getpid())
            continue;
        choose(pid, kTopWhy, false, t);
        topped += chosen_.count(pid);
    }
}

Report HeapSet::section(Chosen& c, double t, bool final)
{
    const int pid = c.target.pid;
    if (final)
        c.session->before_exit();
    Snapshot snap = tracer_->snapshot(pid);
    Report r = make_report(snap, c.target, t, snap.live_bytes_sum);
    if (snap.exited)
        r.target.exit_code = shell_status(snap.wait_status);
    c.session->describe_modes(r);
    if (c.released)
        r.mode = "released";
    c.session->add_sites(r);
    add_tracked(r, c.session->tracked(snap, final));
    return r;
}

std::vector<Report> HeapSet::sections(double t, bool final)
{
    std::vector<Report> out = done_;
    for (auto& [pid, c] : chosen_)
        out.push_back(section(c, t, final));
    return out;
}

void fold_heap_sections(Report& system, std::vector<Report> sections)
{
    if (sections.empty())
        return;
    std::vector<ProcessSection> own;
    for (const auto& s : sections) {
        own.push_back({s.target, 0, s.totals, s.peak_live_bytes_exact, s.threads.size()});
        own.back().mode = s.mode;
    }
    Report heap = std::move(sections.front());
    sections.erase(sections.begin());
    merge_processes(heap, std::move(sections), 0);
    system.totals = heap.totals;
    system.peak_live_bytes_exact = heap.peak_live_bytes_exact;
    system.live_bytes_exact = heap.live_bytes_exact;
    system.free_bytes_exact = heap.free_bytes_exact;
    system.threads = std::move(heap.threads);
    system.sites = std::move(heap.sites);
    system.leaks = std::move(heap.leaks);
    system.tracked = std::move(heap.tracked);
    system.stacks = std::move(heap.stacks);
    system.allocation_records = heap.allocation_records;
    system.unprobed_allocators = std::move(heap.unprobed_allocators);
    system.mode_changes = std::move(heap.mode_changes);
    for (const auto& [why, n] : heap.dropped.reasons)
        system.dropped.reasons[why] += n;
    system.dropped.events += heap.dropped.events;
    system.dropped.untracked_allocations += heap.dropped.untracked_allocations;
    // Each to its entry: the process of that pid that ended as it did (a
    // pid reused meanwhile names two).
    for (const auto& o : own) {
        ProcessSection* best = nullptr;
        for (auto& p : system.processes)
            if (p.target.pid == o.target.pid && !p.heap_traced &&
                (!best || p.exited == o.target.exit_code.has_value()))
                best = &p;
        if (!best)
            continue;
        best->heap_traced = true;
        best->totals = o.totals;
        best->peak_live_bytes_exact = o.peak_live_bytes_exact;
        best->threads = o.threads;
        best->mode = o.mode;
    }
}

std::string HeapSet::attach_method() const
{
    return tracer_ ? tracer_->attach_method() : std::string();
}

std::uint64_t HeapSet::map_bytes() const
{
    return tracer_ ? tracer_->map_bytes() : 0;
}

void HeapSet::add_program_stats(std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& out) const
{
    if (!tracer_)
        return;
    for (const auto& [name, v] : tracer_->program_stats()) {
        auto& [runs, ns] = out[name];
        runs += v.first;
        ns += v.second;
    }
}

} // namespace memscope
