#include "proc.hpp"

#include "safe_files.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>

namespace memscope {

namespace {

void close_range_of(unsigned first, unsigned last)
{
    if (first > last)
        return;
    if (syscall(SYS_close_range, first, last, 0u) == 0)
        return;
    rlimit lim{};
    unsigned end = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < (1u << 20)
                       ? static_cast<unsigned>(lim.rlim_cur)
                       : (1u << 20);
    for (unsigned fd = first; fd <= last && fd < end; ++fd)
        close(static_cast<int>(fd));
}

} // namespace

void close_fds_except(const int* keep, std::size_t n)
{
    unsigned from = 3;
    for (std::size_t i = 0; i < n; ++i) {
        const auto fd = static_cast<unsigned>(keep[i]);
        if (fd > from)
            close_range_of(from, fd - 1);
        if (fd + 1 > from)
            from = fd + 1;
    }
    close_range_of(from, ~0u);
}

void std_streams_to_null()
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return;
    for (int fd = 0; fd < 3; ++fd)
        dup2(null, fd); // dup2 clears O_CLOEXEC on the copy
    if (null > 2)
        close(null);
}

std::string path_in_process(int pid, const std::string& path)
{
    return "/proc/" + std::to_string(pid) + "/root" + path;
}

std::string shown_path(int pid, const std::string& host_path)
{
    const std::string prefix = "/proc/" + std::to_string(pid) + "/root";
    if (host_path.rfind(prefix, 0) == 0 && host_path.size() > prefix.size() && host_path[prefix.size()] == '/')
        return host_path.substr(prefix.size());
    return host_path;
}

namespace {
// State and pending SIGKILL of thread `tid` of `pid`; false when gone.
bool task_state(int pid, int tid, bool& alive, bool& killed)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
    alive = killed = false;
    if (!in)
        return false;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("State:", 0) == 0)
            alive = line.find_first_of("ZX", 6) == std::string::npos;
        else if (line.rfind("SigPnd:", 0) == 0)
            killed = (std::strtoull(line.c_str() + 7, nullptr, 16) >> (SIGKILL - 1)) & 1;
    }
    return true;
}
} // namespace

bool thread_lives(int pid, int tid)
{
    bool alive = false, killed = false;
    return task_state(pid, tid, alive, killed) && alive;
}

int live_task(int pid, const std::vector<int>& except)
{
    auto lives = [&](int tid) {
        if (std::find(except.begin(), except.end(), tid) != except.end())
            return false;
        bool alive = false, killed = false;
        return task_state(pid, tid, alive, killed) && alive && !killed;
    };
    if (lives(pid))
        return pid;
    DIR* d = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
    int found = 0;
    while (dirent* e = d ? readdir(d) : nullptr) {
        const int tid = std::atoi(e->d_name);
        if (tid > 0 && tid != pid && lives(tid)) {
            found = tid;
            break;
        }
    }
    if (d)
        closedir(d);
    return found;
}

std::string named_path(std::string path, bool* deleted)
{
    static const std::string kDeleted = " (deleted)";
    const bool gone =
        path.size() > kDeleted.size() && path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
    if (gone)
        path.resize(path.size() - kDeleted.size());
    if (deleted)
        *deleted = gone;
    return path;
}

namespace {

// `fd`, whose fstat is `st`, held as the file `f` names: its device and
// inode are what fstat says unless `f` has them already (from a maps line:
// as the kernel and the BPF side name the file).
void hold(MappedFile& f, int fd, const struct stat& st)
{
    f.file_dev = st.st_dev;
    f.file_ino = st.st_ino;
    if (!f.ino) {
        f.dev = st.st_dev;
        f.ino = st.st_ino;
    }
    f.held = std::shared_ptr<const int>(new int(fd), [](const int* p) {
        close(*p);
        delete p;
    });
    f.host = "/proc/self/fd/" + std::to_string(fd);
}

} // namespace

MappedFile hold_file(const std::string& path, std::string shown)
{
    MappedFile f;
    f.path = std::move(shown);
    f.named = path;
    const int fd = open_untrusted(path, {.max_bytes = kMaxElfBytes}, f.why);
    struct stat st{};
    if (fd >= 0 && fstat(fd, &st) == 0)
        hold(f, fd, st);
    else if (fd >= 0)
        close(fd);
    return f;
}

MappedFile mapped_file(int pid, const std::string& range, const std::string& dev, unsigned long inode,
                       std::string path)
{
    MappedFile f;
    f.path = named_path(std::move(path), &f.deleted);
    f.named = path_in_process(pid, f.path);
    unsigned major_no = 0, minor_no = 0;
    if (std::sscanf(dev.c_str(), "%x:%x", &major_no, &minor_no) == 2) {
        f.dev = makedev(major_no, minor_no);
        f.ino = inode;
    }
    // The mapping's own file: no name to race. Its inode must be the one
    // maps named (not a mapping made there since); its device may be a
    // btrfs subvolume's or an overlay's backing one. The kernel opens these
    // links only for CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE.
    std::string why;
    int fd = open_untrusted("/proc/" + std::to_string(pid) + "/map_files/" + range, {.max_bytes = kMaxElfBytes},
                            why);
    const int err = errno;
    struct stat st{};
    if (fd >= 0 && f.ino && fstat(fd, &st) == 0 && st.st_ino == f.ino) {
        hold(f, fd, st);
        return f;
    }
    const bool remapped = fd >= 0;
    if (fd >= 0)
        close(fd);
    // Without them: by its name, the very inode on the very device (on
    // btrfs no device matches: subvolumes stat with their own).
    if (!f.deleted && !remapped) {
        std::string by_name;
        fd = open_untrusted(f.named, {.max_bytes = kMaxElfBytes}, by_name);
        if (fd >= 0 && f.ino && fstat(fd, &st) == 0 && st.st_ino == f.ino && st.st_dev == f.dev) {
            hold(f, fd, st);
            return f;
        }
        if (fd >= 0)
            close(fd);
    }
    f.refused = !remapped && (err == EPERM || err == EACCES);
    f.why = f.refused ? std::string(f.deleted ? "deleted" : "its name leads to another file (replaced, or on btrfs)") +
                            ", and its /proc/PID/map_files entry opens only with CAP_SYS_ADMIN or "
                            "CAP_CHECKPOINT_RESTORE, which this tracer lacks"
            : remapped ? std::string("its mapping changed while it was opened")
                       : "cannot be opened: " + why;
    return f;
}

std::vector<MappedFile> executable_mappings(int pid)
{
    std::vector<MappedFile> out;
    // A zombie leader maps nothing; its threads map the process's files.
    const int task = live_task(pid);
    std::ifstream in("/proc/" + std::to_string(task ? task : pid) + "/maps");
    std::string line;
    while (std::getline(in, line)) {
        // start-end perms offset major:minor inode path
        std::istringstream ls(line);
        std::string range, perms, offset, dev, path;
        unsigned long inode = 0;
        if (!(ls >> range >> perms >> offset >> dev >> inode))
            continue;
        std::getline(ls >> std::ws, path);
        if (perms.size() < 3 || perms[2] != 'x' || path.empty() || path[0] != '/')
            continue;
        const std::string name = named_path(path);
        if (std::none_of(out.begin(), out.end(), [&](const MappedFile& o) { return o.path == name; }))
            out.push_back(mapped_file(task ? task : pid, range, dev, inode, path));
    }
    return out;
}

std::string mappings_unavailable(int pid)
{
    const std::string maps = "/proc/" + std::to_string(pid) + "/maps";
    int fd = open(maps.c_str(), O_RDONLY | O_CLOEXEC);
    char byte;
    ssize_t got = fd >= 0 ? read(fd, &byte, 1) : -1;
    const int err = errno;
    if (fd >= 0)
        close(fd);
    if (got > 0)
        return "it maps no executable file";
    if (got == 0)
        return "it is a kernel thread (no user memory)";
    if (err == EACCES || err == EPERM)
        return "the kernel refuses its memory map to this tracer (" + maps +
               ": permission denied; a process that is not dumpable, or another user's, needs CAP_SYS_PTRACE, "
               "and one in an outer namespace cannot be traced from here)";
    if (err == ENOENT || err == ESRCH)
        return "it exited";
    return maps + ": " + std::strerror(err);
}

std::optional<std::string> read_first_line(const std::string& path)
{
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line))
        return std::nullopt;
    return line;
}

std::string thread_comm(int pid, int tid)
{
    return read_first_line("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm")
        .value_or("");
}

std::string process_exe(int pid)
{
    char buf[4096];
    const int task = live_task(pid); // a zombie leader's link is gone; its threads' are not
    std::string link = "/proc/" + std::to_string(task ? task : pid) + "/exe";
    ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
    if (n <= 0)
        return "";
    return std::string(buf, static_cast<size_t>(n));
}

bool process_exists(int pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

std::string check_privileges()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    unsigned long long eff = 0;
    while (std::getline(in, line))
        if (line.rfind("CapEff:", 0) == 0)
            eff = std::stoull(line.substr(7), nullptr, 16);
    const unsigned long long sys_admin = 1ULL << 21, perfmon = 1ULL << 38, bpf = 1ULL << 39;
    if ((eff & sys_admin) || ((eff & perfmon) && (eff & bpf)))
        return {};
    return "root (or CAP_BPF and CAP_PERFMON) is needed to load BPF programs: run with sudo";
}

std::string check_kernel_features()
{
    struct stat st;
    if (stat("/sys/kernel/btf/vmlinux", &st) != 0)
        return "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); memscope-trace needs CONFIG_DEBUG_INFO_BTF=y";
    if (stat("/sys/bus/event_source/devices/uprobe/type", &st) != 0)
        return "this kernel has no uprobe support (CONFIG_UPROBE_EVENTS); memscope-trace cannot probe the allocator";
    return {};
}

namespace {

// A /proc file read whole with read(2), up to `limit` bytes. A process that
// exits meanwhile makes read fail (ESRCH): what was read stays, and nothing
// throws (a stream's buffer iterator throws std::ios_failure there).
std::string read_proc_text(const std::string& path, std::size_t limit)
{
    std::string out;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return out;
    char buf[4096];
    while (out.size() < limit) {
        const ssize_t n = read(fd, buf, std::min(sizeof buf, limit - out.size()));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);
    return out;
}

} // namespace

std::string stat_field(int pid, int n)
{
    const std::string text = read_proc_text("/proc/" + std::to_string(pid) + "/stat", 64 << 10);
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    auto close = text.rfind(')');
    if (close == std::string::npos || n < 3)
        return {};
    std::istringstream fields(text.substr(close + 1));
    std::string f;
    for (int i = 3; i <= n; ++i)
        if (!(fields >> f))
            return {};
    return f;
}

double process_cpu_seconds(int pid)
{
    const std::string utime = stat_field(pid, 14), stime = stat_field(pid, 15);
    if (utime.empty() || stime.empty())
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? static_cast<double>(std::strtoull(utime.c_str(), nullptr, 10) +
                                        std::strtoull(stime.c_str(), nullptr, 10)) /
                        static_cast<double>(hz)
                  : -1;
}

std::string process_environ(int pid)
{
    return read_proc_text("/proc/" + std::to_string(pid) + "/environ", 16 << 20);
}

} // namespace memscope
