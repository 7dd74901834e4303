#include "uprobe_events.hpp"

#include "proc.hpp"

#include <bpf/libbpf.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>

#include <fcntl.h>
#include <poll.h>
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

#ifndef P_PIDFD
constexpr idtype_t P_PIDFD = static_cast<idtype_t>(3);
#endif

bool exists(const std::string& path)
{
    return access(path.c_str(), F_OK) == 0;
}

// Append one command to uprobe_events (O_APPEND: never O_TRUNC, which would
// remove every uprobe event on the machine, other tools' too). One write: the
// kernel parses each write as whole commands.
bool write_raw(const char* file, const char* command, std::size_t size)
{
    int fd = ::open(file, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = write(fd, command, size);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == static_cast<ssize_t>(size);
}

bool write_command(const std::string& file, const std::string& command)
{
    return write_raw(file.c_str(), command.data(), command.size());
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

// A process's start time: with its pid, a name no other process now or
// later has. Empty when gone.
std::string start_time(const std::string& pid)
{
    const long long n = std::strtoll(pid.c_str(), nullptr, 10);
    return n > 0 && n <= INT_MAX ? stat_field(static_cast<int>(n), 22) : std::string();
}

bool digits_only(const std::string& s)
{
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

std::atomic<unsigned> groups_made{0};

} // namespace

UprobeEvents::~UprobeEvents()
{
    std::vector<std::string> names;
    for (auto& [key, e] : events_) {
        e.link.reset(); // an event in use cannot be removed
        names.push_back(e.name);
    }
    if (!names.empty() && !handed_over_)
        remove_events(dir_ + "/uprobe_events", names);
    stop_anchor();
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
    if (access((dir_ + "/uprobe_events").c_str(), W_OK) != 0) {
        why = dir_ + "/uprobe_events: " + std::strerror(errno);
        return false;
    }
    const std::string self = std::to_string(getpid());
    const std::string started = start_time(self);
    if (started.empty()) {
        why = "cannot read this process's start time";
        return false;
    }
    group_ = kGroupPrefix + self + "_" + started + "_" + std::to_string(groups_made++);
    remove_stale();
    if (exists(dir_ + "/events/" + group_)) {
        why = "tracefs already has a group " + group_;
        return false;
    }
    return start_anchor(why);
}

bool UprobeEvents::start_anchor(std::string& why)
{
    stop_anchor();
    // The anchor: a process that only waits, the holder of the programs'
    // perf events. It dies with the tracer's thread that made it, and with
    // nothing else: no signal reaches it (not the terminal's ^C either: it
    // has a session of its own), only SIGKILL.
    const pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        why = std::string("cannot start the anchor process: ") + std::strerror(errno);
        return false;
    }
    if (child == 0) {
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, nullptr);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        setsid();
        prctl(PR_SET_NAME, "memscope-anchor");
        close_fds_except(nullptr, 0);
        std_streams_to_null();
        for (;;)
            pause();
    }
    anchor_ = child;
    anchor_fd_ = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
    if (anchor_fd_ < 0) {
        why = std::string("pidfd_open: ") + std::strerror(errno);
        kill(child, SIGKILL);
        waitpid(child, nullptr, 0);
        anchor_ = -1;
        return false;
    }
    return true;
}

void UprobeEvents::stop_anchor()
{
    if (anchor_fd_ >= 0) {
        // Through its pidfd: if it died and was reaped already (the family's
        // waitpid(-1) takes any child), its pid may be another process's now.
        bool sent = syscall(SYS_pidfd_send_signal, anchor_fd_, SIGKILL, nullptr, 0) == 0;
        if (!sent && errno != ESRCH && !anchor_exited())
            sent = kill(anchor_, SIGKILL) == 0; // pidfd_send_signal refused (seccomp)
        siginfo_t info{};
        // Never blocks on an anchor no signal reached.
        waitid(P_PIDFD, static_cast<id_t>(anchor_fd_), &info, WEXITED | (sent ? 0 : WNOHANG));
        close(anchor_fd_);
    }
    anchor_fd_ = -1;
    anchor_ = -1;
}

bool UprobeEvents::anchor_exited() const
{
    // A pidfd reads ready once its process has exited (reaped or not).
    pollfd p{anchor_fd_, POLLIN, 0};
    return anchor_fd_ < 0 || poll(&p, 1, 0) != 0;
}

void UprobeEvents::remove_stale() const
{
    // Events of a tracer killed outright (its own exit removes them): no
    // process holds them, nothing fires; they are only names. A group is
    // stale when its process is gone: no process of that pid, or one that
    // started at another time (the pid was reused). Groups of this process
    // (another tracer in it) and of live tracers stay.
    std::ifstream in(dir_ + "/uprobe_events");
    std::vector<std::string> stale;
    for (std::string line; std::getline(in, line);) {
        // "p:memscope_123_4567_0/p4 /path:0x..."
        auto colon = line.find(':');
        auto slash = line.find('/');
        auto space = line.find(' ');
        if (colon == std::string::npos || slash == std::string::npos || space == std::string::npos ||
            !(colon < slash && slash < space))
            continue;
        std::string group = line.substr(colon + 1, slash - colon - 1);
        if (group.rfind(kGroupPrefix, 0) != 0)
            continue;
        // pid, start time, number; or pid alone (groups of earlier versions).
        std::vector<std::string> parts;
        std::string rest = group.substr(std::strlen(kGroupPrefix));
        for (std::size_t pos = 0;;) {
            auto us = rest.find('_', pos);
            parts.push_back(rest.substr(pos, us == std::string::npos ? std::string::npos : us - pos));
            if (us == std::string::npos)
                break;
            pos = us + 1;
        }
        if (!std::all_of(parts.begin(), parts.end(), digits_only) || (parts.size() != 1 && parts.size() != 3))
            continue;
        const std::string started = start_time(parts[0]);
        const bool alive = parts.size() == 1 ? !started.empty() : started == parts[1];
        if (alive)
            continue;
        stale.push_back(line.substr(colon + 1, space - colon - 1));
    }
    // Once each: one still in use is someone's (a helper releasing it, a
    // tracer in another pid namespace): not stale after all, and not worth
    // waiting for.
    if (!stale.empty())
        remove_events(dir_ + "/uprobe_events", stale, false);
}

void UprobeEvents::remove_events(const std::string& uprobe_events_file, const std::vector<std::string>& events,
                                 bool wait_busy)
{
    for (const auto& e : events) {
        char command[256];
        if (e.size() + 4 > sizeof command)
            continue; // never made: names are short
        command[0] = '-';
        command[1] = ':';
        std::memcpy(command + 2, e.data(), e.size());
        command[e.size() + 2] = '\n';
        // A perf event being released may hold the event a moment longer.
        for (int tries = 0; tries < (wait_busy ? 20 : 1); ++tries) {
            if (write_raw(uprobe_events_file.c_str(), command, e.size() + 3) || errno != EBUSY)
                break;
            struct timespec pause_for{0, 50 * 1000 * 1000};
            nanosleep(&pause_for, nullptr);
        }
    }
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
    // The program, once, on the anchor's perf event; a new anchor if the
    // old one was killed (asked of its pidfd, not its pid: once reaped, its
    // pid may be another process's, which must not get the probe).
    std::string why;
    if (anchor_exited() && !start_anchor(why)) {
        remove_events(dir_ + "/uprobe_events", {e.name});
        errno = ESRCH;
        error = why;
        return nullptr;
    }
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
    e.link = Link(bpf_program__attach_perf_event_opts(prog, fd, &opts));
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
                           std::uint64_t ref_ctr_offset, std::uint64_t cookie, int pid, bool& unshared,
                           std::string& error)
{
    Event* e = event_for(prog, path, offset, retprobe, ref_ctr_offset, cookie, error);
    unshared = e == nullptr;
    if (!e)
        return -1;
    int fd = perf_event_for(e->id, pid);
    if (fd < 0)
        error = std::strerror(errno);
    return fd;
}

UprobeEvents::Handover UprobeEvents::hand_over() const
{
    Handover h;
    h.uprobe_events = dir_ + "/uprobe_events";
    for (auto& [key, e] : events_) {
        h.fds.push_back(e.link.fd());
        h.events.push_back(e.name);
    }
    return h;
}

} // namespace memscope
