#include "uprobe_events.hpp"

#include <bpf/libbpf.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace memscope {

namespace {

constexpr const char* kGroupPrefix = "memscope_";

bool exists(const std::string& path)
{
    return access(path.c_str(), F_OK) == 0;
}

// Append one command to uprobe_events (O_APPEND: never O_TRUNC, which would
// remove every uprobe event on the machine, other tools' too).
bool write_command(const std::string& file, const std::string& command)
{
    int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = write(fd, command.data(), command.size());
    int saved = errno;
    close(fd);
    errno = saved;
    return n == static_cast<ssize_t>(command.size());
}

int perf_event_for(int id, int pid)
{
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.config = static_cast<__u64>(id);
    // Counting only: the program does the work, no samples are written.
    return static_cast<int>(syscall(__NR_perf_event_open, &attr, pid, -1, -1, PERF_FLAG_FD_CLOEXEC));
}

// tracefs takes a path up to the first blank; other bytes are its own.
bool plain_path(const std::string& path)
{
    for (unsigned char c : path)
        if (c <= ' ' || c == 0x7f || c == '(' || c == ')' || c == ':')
            return false;
    return !path.empty() && path[0] == '/';
}

} // namespace

UprobeEvents::~UprobeEvents()
{
    std::vector<std::string> names;
    for (auto& [key, e] : events_) {
        if (e.link)
            bpf_link__destroy(e.link);
        names.push_back(e.name);
    }
    if (!names.empty() && !handed_over_)
        remove_events(dir_ + "/uprobe_events", names);
    if (anchor_ > 0) {
        kill(anchor_, SIGKILL);
        waitpid(anchor_, nullptr, 0);
    }
}

bool UprobeEvents::open(std::string& why)
{
    for (const char* d : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"})
        if (exists(std::string(d) + "/uprobe_events")) {
            dir_ = d;
            break;
        }
    if (dir_.empty() && exists("/sys/kernel/tracing") &&
        mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0 &&
        exists("/sys/kernel/tracing/uprobe_events"))
        dir_ = "/sys/kernel/tracing";
    if (dir_.empty()) {
        why = "no tracefs with uprobe_events (mount -t tracefs nodev /sys/kernel/tracing)";
        return false;
    }
    group_ = kGroupPrefix + std::to_string(getpid());
    remove_stale();
    // The anchor: a process that only waits, the holder of the programs'
    // perf events. It dies with the tracer's thread that made it.
    const pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        why = std::string("cannot start the anchor process: ") + std::strerror(errno);
        return false;
    }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        prctl(PR_SET_NAME, "memscope-anchor");
        syscall(SYS_close_range, 3u, ~0u, 0u);
        for (;;)
            pause();
    }
    anchor_ = child;
    return true;
}

void UprobeEvents::remove_stale() const
{
    // Events of a tracer killed outright (its own exit removes them): no
    // process holds them, nothing fires; they are only names. A group whose
    // pid is alive belongs to a tracer still running.
    std::ifstream in(dir_ + "/uprobe_events");
    std::vector<std::string> stale;
    for (std::string line; std::getline(in, line);) {
        // "p:memscope_123/p4 /path:0x..."
        auto colon = line.find(':');
        auto slash = line.find('/');
        auto space = line.find(' ');
        if (colon == std::string::npos || slash == std::string::npos || space == std::string::npos ||
            !(colon < slash && slash < space))
            continue;
        std::string group = line.substr(colon + 1, slash - colon - 1);
        if (group.rfind(kGroupPrefix, 0) != 0)
            continue;
        const std::string digits = group.substr(std::strlen(kGroupPrefix));
        if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
            continue;
        if (exists("/proc/" + digits))
            continue;
        stale.push_back(line.substr(colon + 1, space - colon - 1));
    }
    if (!stale.empty())
        remove_events(dir_ + "/uprobe_events", stale);
}

void UprobeEvents::remove_events(const std::string& uprobe_events_file, const std::vector<std::string>& events)
{
    for (const auto& e : events)
        write_command(uprobe_events_file, "-:" + e + "\n");
}

UprobeEvents::Event* UprobeEvents::event_for(bpf_program* prog, const std::string& path, std::uint64_t offset,
                                             bool retprobe, std::uint64_t ref_ctr_offset, std::uint64_t cookie,
                                             std::string& error)
{
    struct stat st{};
    if (stat(path.c_str(), &st) != 0) {
        error = std::strerror(errno);
        return nullptr;
    }
    const Key key{st.st_dev, st.st_ino, offset, retprobe, ref_ctr_offset, cookie, prog};
    if (auto it = events_.find(key); it != events_.end())
        return &it->second;
    if (!plain_path(path)) {
        errno = EINVAL;
        error = "a path tracefs cannot take";
        return nullptr;
    }
    Event e;
    const std::string name = std::string(retprobe ? "r" : "p") + std::to_string(next_++);
    e.name = group_ + "/" + name;
    char where[64];
    std::snprintf(where, sizeof where, ":0x%llx", static_cast<unsigned long long>(offset));
    std::string command = (retprobe ? "r:" : "p:") + e.name + " " + path + where;
    if (ref_ctr_offset) {
        std::snprintf(where, sizeof where, "(0x%llx)", static_cast<unsigned long long>(ref_ctr_offset));
        command += where;
    }
    if (!write_command(dir_ + "/uprobe_events", command + "\n")) {
        error = std::string("cannot add a uprobe event: ") + std::strerror(errno);
        return nullptr;
    }
    std::ifstream id_file(dir_ + "/events/" + e.name + "/id");
    if (!(id_file >> e.id)) {
        remove_events(dir_ + "/uprobe_events", {e.name});
        errno = ENOENT;
        error = "the new uprobe event has no id";
        return nullptr;
    }
    // The program, once, on the anchor's perf event.
    int fd = perf_event_for(e.id, anchor_);
    if (fd < 0) {
        int saved = errno;
        remove_events(dir_ + "/uprobe_events", {e.name});
        errno = saved;
        error = std::strerror(errno);
        return nullptr;
    }
    bpf_perf_event_opts opts{};
    opts.sz = sizeof opts;
    opts.bpf_cookie = cookie;
    e.link = bpf_program__attach_perf_event_opts(prog, fd, &opts);
    if (!e.link) {
        int saved = errno;
        close(fd);
        remove_events(dir_ + "/uprobe_events", {e.name});
        errno = saved;
        error = std::strerror(errno);
        return nullptr;
    }
    return &events_.emplace(key, std::move(e)).first->second;
}

int UprobeEvents::open_for(bpf_program* prog, const std::string& path, std::uint64_t offset, bool retprobe,
                           std::uint64_t ref_ctr_offset, std::uint64_t cookie, int pid, std::string& error)
{
    Event* e = event_for(prog, path, offset, retprobe, ref_ctr_offset, cookie, error);
    if (!e)
        return -1;
    int fd = perf_event_for(e->id, pid);
    if (fd < 0)
        error = std::strerror(errno);
    return fd;
}

UprobeEvents::Handover UprobeEvents::hand_over()
{
    Handover h;
    handed_over_ = true;
    h.uprobe_events = dir_ + "/uprobe_events";
    for (auto& [key, e] : events_) {
        h.fds.push_back(bpf_link__fd(e.link));
        h.events.push_back(e.name);
    }
    return h;
}

} // namespace memscope
