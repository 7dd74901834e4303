// -a, tier 0: every process's memory from kernel tracepoints (system.bpf.c).
// No uprobe: no process's code is patched, and a process pays one short
// BPF program per page-fault counter update, brk, anonymous mmap and munmap.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attached.hpp"
#include "memscope.h"

struct system_bpf;
struct ring_buffer;

namespace memscope {

struct SystemWatchOptions {
    std::uint32_t max_processes = MS_DEFAULT_MAX_SYS_PROCS;
};

// A fork, exec, exit or OOM kill, as the BPF side told it.
struct SystemEvent {
    ms_sys_event_kind kind{};
    int pid = 0;
    std::uint64_t ts_ns = 0; // CLOCK_MONOTONIC
    int exit_code = 0;       // MS_SYS_EV_EXIT: as wait(2) encodes it
    bool has_figures = false; // false: the process had no entry (proc is zero)
    ms_sys_proc proc{};
};

class SystemWatch {
public:
    // Load and attach the tracepoint programs; null with `error` set when
    // the kernel refuses. A program the kernel lacks a tracepoint for (no
    // tracefs: the syscall tracepoints) is left out and named in notes().
    static std::unique_ptr<SystemWatch> open(const SystemWatchOptions& options, std::string& error);
    ~SystemWatch();
    SystemWatch(const SystemWatch&) = delete;
    SystemWatch& operator=(const SystemWatch&) = delete;

    // Readable when events wait; drain() hands each to `handler`.
    int events_fd() const;
    void drain(const std::function<void(const SystemEvent&)>& handler);
    // Every live process's entry now (pid -> figures).
    std::vector<std::pair<int, ms_sys_proc>> processes() const;
    // Nonzero drop counters by name (sys_table_full, sys_ring_full).
    std::map<std::string, std::uint64_t> drops() const;
    std::uint64_t map_bytes() const;
    void add_program_stats(std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& out) const;
    // --heap: new programs that match these (by comm, by file, by cgroup v2
    // id or an ancestor's) wait at `loader`'s _dl_debug_state (at
    // `offset` in it) until release()d, for every process that maps it.
    // Returns an error sentence, empty on success.
    std::string hold_new_programs(const std::vector<std::string>& comms,
                                  const std::vector<std::pair<std::uint64_t, std::uint32_t>>& inodes,
                                  const std::vector<std::uint64_t>& cgroups, const std::string& loader,
                                  std::uint64_t offset);
    // Let call `call` of a held process go on; end_hold: hold it no more.
    void release(int pid, std::uint32_t call);
    void end_hold(int pid);

    // What could not be watched, once each (no tracefs: no brk/mmap figures).
    const std::vector<std::string>& notes() const { return notes_; }

private:
    SystemWatch() = default;
    bool attach(std::string& error);
    system_bpf* skel_ = nullptr;
    ring_buffer* ring_ = nullptr;
    std::vector<Link> links_;
    Link hold_link_;
    std::vector<std::string> notes_;
    const std::function<void(const SystemEvent&)>* handler_ = nullptr;
};

} // namespace memscope
