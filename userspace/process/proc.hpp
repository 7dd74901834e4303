// What /proc and /sys say about a process and this machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/sysmacros.h>
#include <sys/types.h>

namespace memscope {

// Host-side path of a file as process `pid` sees it (works across mount
// namespaces: containers).
std::string path_in_process(int pid, const std::string& path);
// The reverse: the path as the process names it (path_in_process's prefix gone).
std::string shown_path(int pid, const std::string& host_path);

// A file a process maps, opened once: every later look at it (the ELF
// scan, the unwind tables, the symbolizer, the kernel's uprobe path walk)
// goes through `host`, "/proc/self/fd/N", which reopens that very inode
// while `held` lives, so a path swapped meanwhile in a directory the target
// controls changes nothing. `path` is the file as the process names it;
// `named` is that name from here (/proc/PID/root/...), beside which its
// debug files are looked for. The inode is the one the maps line names:
// reached through the process's root, else (deleted, replaced by a package
// upgrade, an overlay's copy) through /proc/PID/map_files. `host` is empty
// when neither reaches it, and `why` says why; `refused`: the kernel
// refused map_files to this tracer (its capabilities), so what the file
// holds is unknown. `dev` and `ino` name it as maps (and the BPF side) do:
// the keys of its unwind tables and symbols. `file_dev` and `file_ino` are
// what fstat says of the open file: its identity (on btrfs the device is
// the subvolume's, and maps' device and inode name files of two subvolumes
// alike).
struct MappedFile {
    std::string path;
    std::string host;
    std::string named;
    std::shared_ptr<const int> held;
    std::string why;
    bool deleted = false;
    bool refused = false;
    dev_t dev = 0;
    ino_t ino = 0;
    dev_t file_dev = 0;
    ino_t file_ino = 0;
};
// A device as the kernel encodes it in an inode's superblock (and /proc/PID/maps
// prints it): major << 20 | minor. The BPF side's frames carry this.
inline std::uint32_t kernel_dev(dev_t dev)
{
    return static_cast<std::uint32_t>((major(dev) << 20) | minor(dev));
}
// `path` (opened as open_untrusted does) held as such a file, named `shown`.
MappedFile hold_file(const std::string& path, std::string shown);
// A thread of process `pid` that lives on: the leader when it is not a
// zombie, else another thread; never one of `except` (a thread on its way
// out, those bound already), a zombie, or one with SIGKILL pending (the
// whole group is ending). 0: none.
int live_task(int pid, const std::vector<int>& except = {});
// Thread `tid` of process `pid` is there and no zombie.
bool thread_lives(int pid, int tid);

// A maps line's path as the process names the file: " (deleted)" cut off
// (and said in `deleted`).
std::string named_path(std::string path, bool* deleted = nullptr);

// One line of /proc/PID/maps (its range, device, inode and path fields) as such a file.
MappedFile mapped_file(int pid, const std::string& range, const std::string& dev, unsigned long inode,
                       std::string path);
// Distinct files mapped executable by `pid`, in the order first mapped.
std::vector<MappedFile> executable_mappings(int pid);
// Why a process's executable mappings cannot be had: it exited, the kernel
// refuses its maps to us (ptrace access: not dumpable, another user's, no
// CAP_SYS_PTRACE), it is a kernel thread, or it maps no executable file.
std::string mappings_unavailable(int pid);

// In a child just forked: close every fd from 3 up but those in `keep`
// (sorted, n of them). Allocates nothing; close_range where the kernel (or a
// seccomp profile) allows, else one close at a time.
void close_fds_except(const int* keep, std::size_t n);
// Standard input, output and error onto /dev/null (a helper that outlives
// the tracer must not hold its caller's pipe open: a shell pipeline, or
// subprocess's stderr=PIPE, would wait for it). Allocates nothing.
void std_streams_to_null();

std::optional<std::string> read_first_line(const std::string& path);
std::string thread_comm(int pid, int tid);
std::string process_exe(int pid);
bool process_exists(int pid);
// CPU seconds the process used so far (user + system, all threads), or -1.
double process_cpu_seconds(int pid);
// Field `n` of /proc/PID/stat as proc(5) numbers them (22: start time in
// clock ticks after boot); empty when the process or the field is gone.
std::string stat_field(int pid, int n);
// Its environment as exec gave it (NUL-separated), empty if unreadable.
std::string process_environ(int pid);

// Empty when this process may load BPF and attach uprobes, else a sentence
// a user understands.
std::string check_privileges();
std::string check_kernel_features();

} // namespace memscope
