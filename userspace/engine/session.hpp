// Glue between the tracer's maps and the model: attach a process's
// allocator and tracker entry points, follow its libraries, turn a snapshot
// into a report.
#pragma once

#include <optional>
#include <set>
#include <unordered_map>
#include <string>
#include <utility>
#include <vector>

#include "model.hpp"
#include "proc.hpp"
#include "symbolizer.hpp"
#include "modes.hpp"
#include "trace_source.hpp"
#include "tracker_events.hpp"

namespace memscope {

inline constexpr std::size_t kDefaultMaxVariables = 4'000'000;

struct SymbolizedStack {
    std::vector<Frame> frames;
    bool truncated = false;
    std::string end; // why a truncated stack ended early
};

class Session {
public:
    Session(TraceSource& tracer, int pid, std::size_t max_variables);

    // When tracing began (CLOCK_MONOTONIC ns; by default, when this was
    // made): the peak's time is said from then.
    void set_start_ns(std::uint64_t ns) { start_ns_ = ns; }
    std::uint64_t start_ns() const { return start_ns_; }
    // --min-age: blocks younger than this at the end are not listed as leaks.
    void set_leak_min_age(double s) { leak_min_age_s_ = s; }
    double leak_min_age() const { return leak_min_age_s_; }

    // Attach to every file in `objects` (host paths) that defines allocator
    // functions or carries tracker entry points, and is not attached for
    // this process yet. Returns an error sentence, empty on success; `probed`
    // counts the allocator functions probed. `running`: the process may run
    // meanwhile, so nothing is recorded anywhere until every probe is in
    // place; a process held stopped (a child at its first stop) needs not.
    std::string attach(int pid, const std::vector<MappedFile>& objects, int& probed, bool running = true);
    // Attach to the files the process maps now that are not attached yet
    // (the process is held, or what it ran before is not seen). Returns an
    // error sentence, empty on success.
    std::string attach_new_files(bool running = false);
    // Family: the process is held at its loader until its new files are
    // probed (attach_new_files() there); others are probed while they run.
    void held_at_loader(bool held) { held_at_loader_ = held; }
    // -a: this process's mode is its own (a budget per process), not the
    // tracer's; off leaves its probes attached, idle.
    void own_mode(bool own) { own_mode_ = own; }

    // Events from the BPF side for this process (the caller dispatches by tgid).
    void on_event(const DecodedEvent& ev);
    int pid() const { return pid_; }
    // A process started by the traced command: it runs in the mode the
    // tracer is in, and its own mode requests do not switch it.
    void follow(Mode mode);
    // The process exec'd another program: what is known of the old one
    // (variables, stacks) was reported. Its attached files stay attached
    // unless `probes_gone` (a thread other than the leader exec'd, and the
    // probes died with the old leader): then every file is attached anew.
    void on_exec(bool probes_gone = false);
    // The process is about to exit: its mappings, read now, name its stacks,
    // every one still waiting included.
    void before_exit()
    {
        symbolizer_.refresh(pid_);
        symbolize_pending(-1);
    }
    // Symbolize through `other`'s files: each library is read once per run.
    void share_symbols(const Session& other) { symbolizer_.share_modules(other.symbolizer_); }

    // The process exec'd (-p: no ptrace stop; the BPF side says so after
    // the fact): the first thread slot of the new program and when.
    struct ExecMark {
        std::uint32_t first_slot = 0;
        std::uint64_t ns = 0;
        int former_tid = 0; // the exec'ing thread's tid before (another than the pid: not the leader)
    };
    std::optional<ExecMark> take_exec()
    {
        if (execs_.empty())
            return std::nullopt;
        ExecMark e = execs_.front();
        execs_.erase(execs_.begin());
        return e;
    }

    // Read pending events; after a dlopen, attach to the new libraries'
    // entry points; act on the target's mode requests. Call it often: the
    // event ring is bounded.
    void drain(double t_s);

    // --- modes ---
    // The mode at start and where it came from ("--mode", "environment
    // MEMSCOPE_TEST_MODE=1", "default"). `locked`: an explicit --mode, which
    // the target's own requests do not override.
    std::string start_mode(Mode mode, const std::string& source, bool locked);
    // Switch now; every switch is kept with its time and reason. Returns an
    // error sentence, empty on success.
    std::string switch_mode(Mode to, const std::string& reason, double t_s);
    Mode mode() const { return mode_; }
    const std::string& mode_source() const { return mode_source_; }
    const std::vector<ModeChange>& mode_changes() const { return changes_; }

    std::size_t tracker_modules() const { return modules_.size(); }
    // Allocator functions probed in this process so far (0: its allocator's file is not mapped yet).
    int allocator_functions() const { return allocator_functions_; }
    const std::vector<std::string>& notes() const { return notes_; }

    // The tracked variables, scopes and tasks. `final`: the variables are
    // handed over (no copy); otherwise copied, and tracing goes on.
    Tracked tracked(const Snapshot& snap, bool final);

    // Mode, its history, and what they leave inexact, into the report.
    void describe_modes(Report& report) const;

    // Allocation sites, outstanding allocations grouped by stack (leaks)
    // and the stack summary, into the report. Call before tracked(final).
    void add_sites(Report& report);

private:
    // Once per process and file.
    void add_unprobed(UnprobedAllocator u);
    // A mapped file no way opens: said (see MappedFile::refused).
    void unreachable(int pid, const MappedFile& file);
    // The error of a process in which no allocator could be probed, with why.
    std::string no_allocator(int pid) const;
    std::string attach_tracker(int pid, const std::string& path, const ElfScan& scan);
    // A stack's frames, symbolized once: from the event's mappings when it
    // came with them, else from the table and the process's maps.
    // `end`: why the BPF walk ended (ms_stack_end + 1; 0: not said).
    const SymbolizedStack& symbolize(std::uint64_t hash, const std::vector<RawFrame>* frames = nullptr,
                                     std::uint32_t end = 0);

    TraceSource& tracer_;
    int pid_;
    Mode mode_ = Mode::normal;
    std::string mode_source_ = "default";
    bool locked_ = false;
    bool had_async_ = false, had_off_ = false; // stints without records (async) or probes (off)
    std::vector<ModeChange> changes_;
    std::size_t requests_seen_ = 0;
    bool rescan_ = false; // look for new libraries at the next drain
    int allocator_functions_ = 0; // probed in every file attached so far
    std::vector<UnprobedAllocator> unprobed_;
    std::vector<ExecMark> execs_;
    bool held_at_loader_ = false;
    bool own_mode_ = false;
    std::uint64_t start_ns_;
    double leak_min_age_s_ = 0;
    TrackerModules modules_;
    TrackerEvents events_;
    std::set<std::pair<dev_t, ino_t>> seen_;  // files attached: fstat's device and inode
    std::set<std::pair<dev_t, ino_t>> named_; // the same as maps names them
    std::vector<std::string> notes_; // things worth a line with --verbose
    // Stacks are symbolized when first seen, while their libraries are mapped.
    Symbolizer symbolizer_;
    std::unordered_map<std::uint64_t, SymbolizedStack> stacks_;
    // New stacks as the BPF side sent them, symbolized a few milliseconds'
    // worth per drain (a burst of new stacks must not hold the drain while
    // the event ring fills), the rest when they are asked for.
    struct PendingStack {
        std::vector<RawFrame> frames;
        std::uint32_t end = 0;
    };
    std::unordered_map<std::uint64_t, PendingStack> pending_;
    // Symbolize waiting stacks for up to `budget_ms` (-1: all of them).
    void symbolize_pending(double budget_ms);
};

// Exit status as a shell reports it: the code, or 128 + signal.
int shell_status(int wait_status);

Report make_report(const Snapshot& snap, const Target& target, double duration_s,
                   std::uint64_t sampled_process_peak);

} // namespace memscope
