// -a: the machine's processes as /proc lists them (those running before
// the tracer, which no tracepoint has told of yet), and cgroup v2 ids as
// paths. Everything read here is a target's to shape (its name, its
// cgroup's name): it is read bounded and kept as data, never as a path to
// open beyond the cgroup tree itself.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace memscope {

struct ProcFacts {
    int pid = 0;
    int ppid = 0;
    int ns_pid = 0;                  // innermost NSpid (== pid in the host's namespace)
    bool other_pid_namespace = false;
    std::string comm;
    std::uint64_t rss_anon = 0, rss_file = 0, rss_shmem = 0, swap = 0; // bytes
    std::uint64_t start_ticks = 0; // /proc/PID/stat's starttime: clock ticks after boot
};

// Every process's pid, from /proc (threads not included).
std::vector<int> all_pids();

// CLOCK_MONOTONIC in seconds and in nanoseconds (the kernel's
// bpf_ktime_get_ns clock).
double monotonic_s();
std::uint64_t monotonic_ns();
// What /proc/PID/status says of `pid`; nullopt for a kernel thread (no
// memory of its own) or a process gone.
std::optional<ProcFacts> read_proc_facts(int pid);
// Parse a status file's text (unit tests feed their own).
std::optional<ProcFacts> parse_proc_status(int pid, const std::string& text);

// cgroup v2 ids (what bpf_get_current_cgroup_id gives: the cgroup
// directory's inode number) to paths under the cgroup2 mount.
class CgroupNames {
public:
    // `mount`: the cgroup2 mount point; empty: found in /proc/self/mountinfo.
    explicit CgroupNames(std::string mount = {});
    // "/a/b" for id (empty when unknown); `pid` (0: none) is a process in
    // it, whose /proc/PID/cgroup names it without a walk of the tree (id 0:
    // that process's cgroup, whatever its id).
    std::string path_of(std::uint64_t id, int pid = 0);
    // The ids of `prefix` and every cgroup below it (a --heap cgroup: selector).
    std::vector<std::uint64_t> ids_under(const std::string& prefix);
    const std::string& mount() const { return mount_; }

private:
    void walk();
    std::string mount_;
    std::map<std::uint64_t, std::string> names_;
    double last_walk_ = -1e9;
};

} // namespace memscope
