#include "launcher.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <signal.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "elf_symbols.hpp"
#include "safe_files.hpp"

namespace memscope {

static bool is_executable_file(const std::string& p)
{
    struct stat st;
    // access(X_OK) alone says yes to root for any file with one x bit or none on some mounts.
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) &&
           access(p.c_str(), X_OK) == 0;
}

std::string resolve_command(const std::string& name)
{
    if (name.empty())
        return {};
    if (name.find('/') != std::string::npos)
        return is_executable_file(name) ? name : std::string();
    const char* env = getenv("PATH");
    std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        std::string cand = (dir.empty() ? "." : dir) + "/" + name;
        if (is_executable_file(cand))
            return cand;
    }
    return {};
}

std::vector<std::string> parse_loader_list(const std::string& text)
{
    // Lines look like "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
    // or "\t/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso lines have no path.
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::string path;
        auto arrow = line.find("=> ");
        size_t start = arrow != std::string::npos ? arrow + 3 : line.find_first_not_of(" \t");
        if (start == std::string::npos || start >= line.size() || line[start] != '/')
            continue;
        auto end = line.rfind(" (0x");
        path = line.substr(start, end != std::string::npos && end > start ? end - start : std::string::npos);
        if (std::find(out.begin(), out.end(), path) == out.end())
            out.push_back(path);
    }
    return out;
}

static std::string run_loader_list(const std::string& interp, const std::string& exe)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return {};
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        execl(interp.c_str(), interp.c_str(), "--list", exe.c_str(), (char*)nullptr);
        _exit(127);
    }
    close(fds[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            out.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    if (pid > 0)
        waitpid(pid, nullptr, 0);
    return out;
}

namespace {
// Owned by root and writable by no one else (the file, or a directory).
bool root_owned(const std::string& path)
{
    struct stat st{};
    return stat(path.empty() ? "/" : path.c_str(), &st) == 0 && st.st_uid == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH));
}
} // namespace

std::vector<std::string> command_objects(const std::string& exe, std::string& error, bool predict_libraries)
{
    std::string program = exe;
    {
        // The program is the target's: read as untrusted (no FIFO), its
        // first line only.
        std::string why, first;
        int fd = open_untrusted(exe, {}, why);
        if (fd >= 0) {
            char buf[256];
            ssize_t n = read(fd, buf, sizeof buf);
            close(fd);
            if (n > 0)
                first.assign(buf, static_cast<std::size_t>(n));
            first = first.substr(0, first.find('\n'));
        }
        if (first.rfind("#!", 0) == 0) {
            std::istringstream ss(first.substr(2));
            ss >> program;
            if (program.empty() || !is_executable_file(program)) {
                error = exe + ": bad interpreter line";
                return {};
            }
        }
    }
    ElfScan scan = scan_elf(program);
    if (!scan.error.empty()) {
        error = scan.error;
        return {};
    }
    std::vector<std::string> objects{program};
    if (scan.interpreter.empty())
        return objects; // static: the program is the allocator
    if (!predict_libraries) {
        objects.push_back(scan.interpreter);
        return objects;
    }
    // The loader is run (as root) to list the libraries: only one that
    // root owns and nobody else may change, never one a program names in
    // a user's directory.
    if (!root_owned(scan.interpreter) || !root_owned(scan.interpreter.substr(0, scan.interpreter.rfind('/') + 1))) {
        error = program + ": its loader " + scan.interpreter + " is not root's; not run as root";
        return {};
    }
    for (auto& lib : parse_loader_list(run_loader_list(scan.interpreter, program)))
        if (std::find(objects.begin(), objects.end(), lib) == objects.end())
            objects.push_back(lib);
    if (std::find(objects.begin(), objects.end(), scan.interpreter) == objects.end())
        objects.push_back(scan.interpreter);
    return objects;
}

HeldChild::HeldChild(const std::string& exe, const std::vector<std::string>& argv)
{
    int go[2], exec_status[2];
    if (pipe2(go, O_CLOEXEC) != 0) {
        error_ = std::string("pipe: ") + std::strerror(errno);
        return;
    }
    if (pipe2(exec_status, O_CLOEXEC) != 0) {
        error_ = std::string("pipe: ") + std::strerror(errno);
        close(go[0]);
        close(go[1]);
        return;
    }
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    pid_t pid = fork();
    if (pid < 0) {
        error_ = std::string("fork: ") + std::strerror(errno);
        return;
    }
    if (pid == 0) {
        // Only async-signal-safe calls from here to exec.
        close(go[1]);
        close(exec_status[0]);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        char c;
        ssize_t n;
        do
            n = read(go[0], &c, 1);
        while (n < 0 && errno == EINTR);
        if (n == 1) // the tracer gave up: do not run untraced
            _exit(126);
        execv(exe.c_str(), args.data());
        int e = errno;
        ssize_t w = write(exec_status[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(go[0]);
    close(exec_status[1]);
    pid_ = pid;
    go_fd_ = go[1];
    exec_fd_ = exec_status[0];
}

HeldChild::~HeldChild()
{
    if (go_fd_ >= 0)
        abandon();
    if (exec_fd_ >= 0)
        close(exec_fd_);
}

std::string HeldChild::release()
{
    close(go_fd_);
    go_fd_ = -1;
    int e = 0;
    ssize_t n;
    do
        n = read(exec_fd_, &e, sizeof e);
    while (n < 0 && errno == EINTR);
    close(exec_fd_);
    exec_fd_ = -1;
    if (n == sizeof e)
        return std::string("cannot execute: ") + std::strerror(e);
    return {};
}

void HeldChild::abandon()
{
    if (go_fd_ < 0)
        return;
    char c = 'x';
    ssize_t w = write(go_fd_, &c, 1);
    (void)w;
    close(go_fd_);
    go_fd_ = -1;
    if (pid_ > 0)
        waitpid(pid_, nullptr, 0);
}

} // namespace memscope
