// The loader: owns the BPF object and every attached probe (RAII: links are
// fd-owned, so a tracer that dies leaves nothing behind in the target).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <condition_variable>
#include <mutex>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "attached.hpp"
#include "elf_symbols.hpp"
#include "events.hpp"
#include "model.hpp"
#include "modes.hpp"
#include "proc.hpp"
#include "trace_source.hpp"
#include "uprobe_multi.hpp"

struct memscope_bpf;
struct bpf_program;
struct ring_buffer;

namespace memscope {

struct TracerOptions {
    std::uint32_t max_threads = MS_DEFAULT_MAX_THREADS;
    std::uint32_t max_allocations = MS_DEFAULT_MAX_ALLOCATIONS;
    // Benchmarks only: empty programs on the same sites (the floor), and
    // the tracker's probe on its `ret` instead of its 5-byte NOP.
    bool empty_programs = false;
    bool tracker_site_on_ret = false;
    // How probes reach a process. uprobe_multi: session links filtered by
    // pid (uprobe_multi.hpp), one per file and process, released at once;
    // shared_sites: a tracefs uprobe event per site, bound to each process's
    // threads (uprobe_events.hpp); uprobe_links: a uprobe PMU link per probe
    // and process (what a machine without tracefs gets). automatic: the
    // first of these the machine offers.
    enum class Attach { automatic, uprobe_multi, shared_sites, uprobe_links };
    Attach attach = Attach::automatic;
    // Release the probes from a detached helper at exit (see ~Tracer).
    bool detach_in_background = true;
    // Frames kept per allocation stack in normal mode (0: no stacks), and
    // how many distinct stacks (and sites) the tables hold.
    std::uint32_t stack_depth = MS_DEFAULT_STACK_DEPTH;
    std::uint32_t max_stacks = MS_DEFAULT_MAX_STACKS;
    // Unwind rules the kernel holds for the walk without frame pointers
    // (8 bytes each), over every file of the run.
    std::uint32_t max_unwind_rows = MS_DEFAULT_MAX_UNWIND_ROWS;
    // Benchmarks only: false walks every frame by its epilogue and frame
    // pointer (the walker before unwind tables).
    bool unwind_tables = true;
};

class MapReader;
class UprobeEvents;

struct AttachedSite {
    std::string path;
    std::string symbol;
    std::uint64_t file_offset = 0; // where the probe is: entry + site offset
    bool return_probe = false;
    std::uint64_t site_offset = 0; // from the function's entry
    std::string instruction;       // at the site
    std::string cost;              // how the kernel handles a hit there
    std::string reason;
};

class Tracer final : public TraceSource {
public:
    // Load the BPF programs; on failure returns null and sets `error`.
    static std::unique_ptr<Tracer> open(const TracerOptions& options, std::string& error);
    ~Tracer() override;
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;

    // Register a process so fork/exec/exit of it are recorded.
    bool add_target(int pid, std::string& error) override;
    // Stop counting its forks, execs and exit (it exited; its pid may come again).
    void remove_target(int pid) override;

    // Each time ld.so of process `pid` has mapped or unmapped files, the
    // thread that called it gets signal `sig`, which a ptrace tracer sees
    // before the program does (and must not pass on): the process waits
    // there while its new files are probed. 0: no more holds.
    bool hold_at_loader(int pid, int sig) override;
    // Whether thread `tid`'s signal `sig` is the hold's (then taken back:
    // the caller does not deliver it), not one from elsewhere.
    bool take_hold_signal(int tid, int sig) override;

    // Attach the allocator probes found in `path` (as the host sees it) to
    // process `pid` only. Returns the number of functions probed (0: the
    // file defines no allocator), or -1 with `error` set.
    // Functions that only jump on to another allocator function are not
    // probed (see without_forwarders).
    int attach_allocator(int pid, const std::string& path, const ElfScan& scan, std::string& error) override;

    // Attach to a module's tracker entry point (one site), for process
    // `pid` only; `module` comes back in each event as the uprobe cookie.
    bool attach_tracker(int pid, const std::string& path, const TrackerNote& note, std::uint32_t module,
                        std::string& error) override;

    const std::vector<AttachedSite>& probe_sites() const { return probe_sites_; }

    // Kernel memory of the BPF maps (memlock, as the kernel counts it).
    std::uint64_t map_bytes() const override;

    // Give the stack walker `host_path`'s unwind rules (built from its
    // .eh_frame once per file, shared by every process that maps it).
    // Without them (no CFI, the rows full) its frames are walked by their
    // epilogue and frame pointer, as before.
    void add_unwind_file(const MappedFile& file) override;
    // Keep `file` (held open) as long as this tracer lives: probes of it
    // are attached again by path (off, then on). Returns the path every
    // probe of that inode uses.
    std::string hold(const MappedFile& file) override;
    // A held file's path as its process names it (for messages).
    std::string shown(const std::string& host_path) const override;
    void add_site(AttachedSite site);
    const UnwindStats& unwind_stats() const override { return unwind_stats_; }
    // Each program's runs and kernel time so far (counted only while
    // kernel.bpf_stats_enabled is 1): name -> (runs, ns).
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> program_stats() const override;

    // Events from the BPF side go to `handler`, on the calling thread, in
    // drain_events(). events_fd() polls readable when events wait.
    void set_event_handler(std::function<void(const DecodedEvent&)> handler) { handler_ = std::move(handler); }
    int events_fd() const override;
    void drain_events() override;

    // `end_slot`: only the thread slots handed out before it (a program
    // that exec'd: its slots, not the new one's).
    Snapshot snapshot(int pid, std::uint32_t end_slot = UINT32_MAX) const override;
    // Process `pid` exec'd (-p: told by the BPF side, after the fact): drop
    // the old program's thread slots (those before `exec_slot`), its records
    // (those its threads made) and its sites.
    void forget_image(int pid, std::uint32_t exec_slot) override;

    // Outstanding-allocation records the table holds for `pid` (a walk of
    // the table: for reports, not for every sample).
    std::vector<RawRecord> records(int pid) const override;
    // Allocation sites of `pid` (normal mode), and a stack's frames by hash
    // (empty when the table did not keep it).
    std::vector<RawSite> sites(int pid) const override;
    std::vector<RawSize> sizes(int pid) const override;
    std::optional<RawPeak> peak(int pid) const override;
    std::vector<std::uint64_t> stack(std::uint64_t hash) const override;
    std::uint32_t stack_depth() const override { return options_.stack_depth; }

    // Probes for a measurement, not for tracing: attached to `pid` like
    // attach_allocator's, owned by the caller (detached as they go, and
    // waited for), never part of off/on. Returns an error sentence, empty
    // on success.
    std::string attach_allocator_temporary(int pid, const std::string& path,
                                           const std::vector<AllocatorSymbol>& symbols,
                                           std::vector<Probe>& probes);
    // Drop what the maps hold about process `pid` (a calibration helper;
    // a program that exec'd another).
    void forget_process(int pid) override;
    // Process `pid`'s probes go (see TraceSource::Release; a uprobe PMU
    // link is always released in the background: the kernel takes ~0.1 s
    // each, and closing the perf events of shared sites is immediate), and
    // are not attached again after off.
    void release_process(int pid, Release how) override;
    // Process `pid`'s probes are bound to one or two of its threads: the
    // kernel lets a probe fire in the process while a thread its perf events
    // were opened on has the process's memory. The leader at first; should
    // it leave while the others go on (pthread_exit), or be a zombie already,
    // the probes must move to a thread that lives on before the last bound
    // one is gone. Under ptrace, call thread_exiting() at each exit stop (the
    // thread still has its memory): one bound thread is enough.
    // Without ptrace, watch_threads(): the probes are bound to two threads
    // (the second at the first thread start, if it has one only) and the
    // BPF side tells the tracer as soon as one exits; it is moved while the
    // other still holds the probes.
    // `exit_ns` (CLOCK_MONOTONIC): when the BPF side saw it go (0: at a stop).
    void thread_exiting(int pid, int tid, std::uint64_t exit_ns = 0) override;
    void watch_threads(int pid) override;
    // Times the probes of `pid` may have lapsed: a bound thread went while
    // the other one was gone too or not yet bound, and other threads ran on.
    std::uint64_t probe_lapses(int pid) const override
    {
        auto it = lapses_.find(pid);
        return it == lapses_.end() ? 0 : it->second;
    }
    // Bind to `task` instead of the leader from the start (a zombie leader).
    void bind_first(int pid, int task);
    std::vector<int> bound_threads(int pid) const { return tasks_of(pid); }

    // The BPF side's mode (normal, fast, async; off keeps probes attached
    // but idle), in force for calls that enter from now on.
    void set_mode(Mode mode) override;
    void set_process_mode(int pid, Mode mode) override;
    Mode mode() const override { return mode_; }
    // A stint without records began (async, off): frees of unknown blocks
    // are counted as untracked from now on.
    void mark_gap() override;
    // Calibration: process `pid` runs in `mode`, whatever the others do
    // (pid 0 ends it).
    void set_calibration_mode(int pid, Mode mode);
    // Off: every probe detached (the target runs at full speed); on: the
    // same probes attached again. Returns an error sentence, empty on success.
    void detach_probes() override;
    std::string reattach_probes() override;
    bool probes_attached() const override { return !off_; }
    // "uprobe_multi", "shared_sites" or "uprobe_links".
    std::string attach_method() const override;
    // calibrate_hit_costs (calibrate.hpp) with this tracer.
    std::string measure_hit_costs(double (&cost_ns)[3]) override;

private:
    struct AttachSpec {
        bpf_program* prog;
        int pid;
        std::string path;
        std::uint64_t offset;
        bool retprobe;
        std::uint64_t ref_ctr_offset;
        std::uint64_t cookie;
        // uprobe_multi: every site of the link (offset, ref_ctr_offset and
        // cookie above unused); empty: the one site above.
        std::vector<MultiSite> sites = {};
        std::string name = {}; // for messages: "a uprobe to malloc"
    };
    // The allocator sites of `symbols` in `path` for process `pid`: one
    // session link's spec under uprobe_multi, else an entry (and a return)
    // probe's per function. Listed in the report's probe sites when `list`.
    std::vector<AttachSpec> allocator_specs(int pid, const std::string& path,
                                            const std::vector<AllocatorSymbol>& symbols, bool list);
    Probe attach(const AttachSpec& spec);
    std::vector<int> tasks_of(int pid) const
    {
        auto it = bound_.find(pid);
        return it == bound_.end() ? std::vector<int>{pid} : it->second;
    }
    Binding open_probe(const AttachSpec& spec, int task);
    // Move binding `slot` of `pid` to `task` (0: drop it, when there is another).
    void rebind(int pid, std::size_t slot, int task);
    void add_binding(int pid, int task);
    void publish_bindings(int pid, const std::vector<int>& before);
    void release_slots(std::uint32_t tgid, std::uint32_t end_slot);
    // Sites, sizes and the live sum of process `tgid` (gone, or a new program).
    void forget_sites(std::uint32_t tgid);
    std::map<int, std::vector<int>> bound_; // pid -> the threads its probes are bound to, if not {pid}
    std::set<int> watched_;                 // pids whose bound threads' exits the BPF side reports
    std::map<int, std::uint64_t> bound_since_; // tid -> when its probes were opened (CLOCK_MONOTONIC ns)
    std::map<int, std::uint64_t> lapses_;
    // Bound threads' exits and new threads the ring told of, for after its drain.
    struct BindingWork {
        bool exit;
        int pid, tid;
        std::uint64_t ns;
    };
    std::vector<BindingWork> binding_work_;
    int rebind_depth_ = 0;
    // Links that go without the caller waiting: the releaser destroys them.
    void release_links(std::vector<Link> links);
    bpf_program* program(bpf_program* real, bool retprobe) const;

    Tracer();
    TracerOptions options_;
    memscope_bpf* skel_ = nullptr;
    std::unique_ptr<MapReader> maps_; // reads skel_'s maps
    std::unique_ptr<UprobeEvents> shared_; // null: uprobe_multi, or uprobe PMU links per process
    bool multi_ = false;                   // uprobe_multi session links
    std::set<int> unreachable_;            // uprobe_multi: processes whose leader had exited at attach
    // One probe site of one process: how it is attached, and its probe
    // (none while probes are off).
    struct Attachment {
        AttachSpec spec;
        Probe probe;
    };
    std::vector<Attachment> attached_;
    std::vector<AttachedSite> probe_sites_;
    bool off_ = false;
    Mode mode_ = Mode::normal;
    ring_buffer* events_ = nullptr;
    // Probes of processes gone, released one by one off the tracing thread.
    std::thread releaser_;
    std::mutex release_mutex_;
    std::condition_variable release_cv_;
    std::vector<Link> releasing_;
    bool stop_releasing_ = false;
    std::function<void(const DecodedEvent&)> handler_;
    // The unwind_rows array's size, its next free row; files done.
    std::uint32_t unwind_capacity_ = 0;
    std::uint32_t unwind_next_ = 0;
    std::map<std::pair<dev_t, ino_t>, MappedFile> held_; // every file probed, held open
    std::set<std::pair<std::uint32_t, std::uint64_t>> unwind_known_;  // (dev, inode) of files with rows
    std::map<std::string, ms_unwind_file> unwind_by_build_id_;        // their rows, by build-id
    UnwindStats unwind_stats_;
};

} // namespace memscope
