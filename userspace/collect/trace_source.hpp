// What the engine sees of the kernel side: an event ring to drain, maps to
// snapshot, the BPF side's mode, and the probes of each traced process.
// Tracer (tracer.hpp) is the real one and needs root; the engine takes this
// interface so that its loop can be driven by a fake in unit tests.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "elf_symbols.hpp"
#include "events.hpp"
#include "model.hpp"
#include "modes.hpp"
#include "proc.hpp"
#include "sites.hpp"

namespace memscope {

// What the unwind tables hold, for the report.
struct UnwindStats {
    std::uint64_t files = 0;          // files with a table
    std::uint64_t shared_files = 0;   // other copies of those files (same build-id), sharing their rows
    std::uint64_t rows = 0;           // rows in the kernel
    std::uint64_t eh_frame_bytes = 0; // of those files' CFI sections
    std::uint64_t build_ms = 0;       // userspace time building them
    std::vector<std::string> skipped; // "PATH: why", files walked by frame pointers instead
};

// Variables counted by name in fast mode (descriptor unresolved).
struct RawVariableTotals {
    std::uint64_t desc = 0, site = 0, type_addr = 0, type_len = 0;
    std::uint64_t count = 0, bytes = 0;
};

// A scope's or task's totals as the map holds them (descriptor unresolved).
struct RawGroup {
    std::uint32_t kind = 0; // ms_group_kind
    std::uint64_t id = 0, desc = 0, site = 0;
    std::uint64_t alloc_count = 0, alloc_bytes = 0;
};

// An allocation site as the map holds it: counts by stack hash.
struct RawSite {
    std::uint64_t stack = 0, alloc_count = 0, alloc_bytes = 0, temporary_count = 0;
    // Its allocations in each CPU's first size bucket, kept in the site's
    // own entry (the rest are sizes()').
    std::vector<RawSize> first_sizes = {};
};

// An outstanding allocation's record.
struct RawRecord {
    std::uint64_t addr = 0, size = 0, alloc_ns = 0, stack = 0;
    std::uint32_t tid = 0; // the allocating thread (0: unknown)
    std::uint64_t thread_start_ns = 0;
};

// What the maps say about one traced process at this moment.
struct Snapshot {
    std::vector<RawGroup> groups;
    std::vector<RawVariableTotals> variable_totals;
    std::vector<ThreadStats> threads;
    Dropped dropped;
    Children children;
    bool exited = false;
    int wait_status = 0; // kernel exit code, as wait(2) encodes it
    std::uint64_t live_bytes_sum = 0;
};

// Exactly what the engine (Session, Family, TraceRun) calls; Tracer
// documents each method.
class TraceSource {
public:
    virtual ~TraceSource() = default;

    // --- the processes followed ---
    virtual bool add_target(int pid, std::string& error) = 0;
    virtual void remove_target(int pid) = 0;
    virtual bool hold_at_loader(int pid, int sig) = 0;
    virtual bool take_hold_signal(int tid, int sig) = 0;
    virtual void forget_image(int pid, std::uint32_t exec_slot) = 0;
    virtual void forget_process(int pid) = 0;
    // `now`: the process runs on (a thread other than the leader exec'd,
    // it was dropped or released): its probes are out before this returns,
    // or the program would still fire beside the probes that replace them.
    // `background`: it is gone or going; the release waits for no one.
    enum class Release { background, now };
    virtual void release_process(int pid, Release how) = 0;
    virtual void thread_exiting(int pid, int tid, std::uint64_t exit_ns = 0) = 0;
    virtual void watch_threads(int pid) = 0;
    virtual std::uint64_t probe_lapses(int pid) const = 0;

    // --- probes and the files they are in ---
    virtual int attach_allocator(int pid, const std::string& path, const ElfScan& scan, std::string& error) = 0;
    virtual bool attach_tracker(int pid, const std::string& path, const TrackerNote& note, std::uint32_t module,
                                std::string& error) = 0;
    virtual void add_unwind_file(const MappedFile& file) = 0;
    virtual std::string hold(const MappedFile& file) = 0;
    virtual std::string shown(const std::string& host_path) const = 0;

    // --- events and maps ---
    // Readable when events wait; drain_events() hands them to the handler.
    virtual int events_fd() const = 0;
    virtual void drain_events() = 0;
    virtual Snapshot snapshot(int pid, std::uint32_t end_slot = UINT32_MAX) const = 0;
    virtual std::vector<RawRecord> records(int pid) const = 0;
    virtual std::vector<RawSite> sites(int pid) const = 0;
    // Allocation sizes by site and bucket but those in the sites' own
    // entries (RawSite::first_sizes); the exact peak and its sites
    // (nothing: the process's live sum was not kept).
    virtual std::vector<RawSize> sizes(int /*pid*/) const { return {}; }
    virtual std::optional<RawPeak> peak(int /*pid*/) const { return std::nullopt; }
    virtual std::vector<std::uint64_t> stack(std::uint64_t hash) const = 0;
    virtual std::uint32_t stack_depth() const = 0;

    // --- modes ---
    virtual void set_mode(Mode mode) = 0;
    // -a: process `pid` runs in `mode` whatever the others do.
    virtual void set_process_mode(int pid, Mode mode) = 0;
    virtual Mode mode() const = 0;
    virtual void mark_gap() = 0;
    virtual void detach_probes() = 0;
    virtual std::string reattach_probes() = 0;
    virtual bool probes_attached() const = 0;
    // How the probes are attached (the report's tracer.attach); empty: not said.
    virtual std::string attach_method() const { return {}; }
    // What one probe hit costs in normal, fast and async (calibrate.hpp's
    // calibrate_hit_costs for the real tracer). Error sentence or empty.
    virtual std::string measure_hit_costs(double (&cost_ns)[3]) = 0;

    // --- the tracer's own cost, for the report ---
    virtual std::uint64_t map_bytes() const = 0;
    virtual std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> program_stats() const = 0;
    virtual const UnwindStats& unwind_stats() const = 0;
};

} // namespace memscope
