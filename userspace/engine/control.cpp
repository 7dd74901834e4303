#include "control.hpp"

#include "selectors.hpp"
#include "paths.hpp"

#include "proc.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>

namespace memscope {

namespace {

const char* kDir = "/run/memscope-trace";

bool fill_address(const std::string& path, sockaddr_un& addr)
{
    if (path.size() >= sizeof addr.sun_path)
        return false;
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return true;
}

// Read up to a newline (bounded), or until the deadline (for the whole line).
bool read_line(int fd, std::string& line, int timeout_ms)
{
    char buf[256];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (line.find('\n') == std::string::npos && line.size() < 4096) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{fd, POLLIN, 0};
        if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0)
            return !line.empty();
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return !line.empty();
        line.append(buf, static_cast<size_t>(n));
    }
    line = line.substr(0, line.find('\n'));
    return true;
}

void write_all(int fd, const std::string& s)
{
    const char* p = s.data();
    size_t left = s.size();
    while (left > 0) {
        // A client gone before the reply must not kill us with SIGPIPE.
        ssize_t n = send(fd, p, left, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        left -= static_cast<size_t>(n);
    }
}

// Sockets of tracers that were killed (kill -9 leaves them): their pid is
// gone, or is now some other program's.
void remove_stale_sockets(const std::string& dir)
{
    DIR* d = opendir(dir.c_str());
    if (!d)
        return;
    const std::string ours = base_name(process_exe(getpid()));
    while (dirent* e = readdir(d)) {
        const std::string name = e->d_name;
        const auto dot = name.find(".sock");
        if (dot == std::string::npos || dot + 5 != name.size() || dot == 0 ||
            name.find_first_not_of("0123456789") != dot)
            continue;
        const int pid = std::atoi(name.c_str());
        if (pid == getpid())
            continue;
        std::string exe = process_exe(pid);
        if (exe.size() > 10 && exe.compare(exe.size() - 10, 10, " (deleted)") == 0)
            exe.resize(exe.size() - 10);
        if (!process_exists(pid) || (!exe.empty() && base_name(exe) != ours))
            unlinkat(dirfd(d), name.c_str(), 0);
    }
    closedir(d);
}

} // namespace

std::optional<ControlRequest> parse_control_request(const std::vector<std::string>& words, std::string& error)
{
    error.clear();
    if (words.empty()) {
        error = "a request is `mode normal|fast|async|off` or `status`";
        return std::nullopt;
    }
    if (words[0] == "mode") {
        std::optional<Mode> m = words.size() == 2 ? parse_mode(words[1]) : std::nullopt;
        if (!m) {
            error = "mode takes one of normal, fast, async, off";
            return std::nullopt;
        }
        return ControlRequest{ControlRequest::Kind::mode, *m, {}};
    }
    if (words[0] == "status" && words.size() == 1)
        return ControlRequest{ControlRequest::Kind::status, Mode::normal, {}};
    if (words[0] == "heap") {
        if (words.size() != 3 || (words[1] != "add" && words[1] != "drop")) {
            error = "heap takes `add SELECTOR` or `drop SELECTOR`";
            return std::nullopt;
        }
        if (!parse_heap_selector(words[2], error))
            return std::nullopt;
        return ControlRequest{words[1] == "add" ? ControlRequest::Kind::heap_add : ControlRequest::Kind::heap_drop,
                              Mode::normal, words[2]};
    }
    error = "unknown request: use `mode NAME`, `status`, or (-a) `heap add|drop SELECTOR`";
    return std::nullopt;
}

std::optional<ControlRequest> parse_control_line(const std::string& line, std::string& error)
{
    std::vector<std::string> words;
    std::size_t start = 0;
    while (start <= line.size()) {
        const std::size_t space = line.find(' ', start);
        words.push_back(line.substr(start, space == std::string::npos ? std::string::npos : space - start));
        if (space == std::string::npos)
            break;
        start = space + 1;
    }
    return parse_control_request(words, error);
}

std::string control_socket_path(int tracer_pid)
{
    return std::string(kDir) + "/" + std::to_string(tracer_pid) + ".sock";
}

ControlServer::~ControlServer()
{
    for (auto& [fd, c] : clients_)
        close(fd);
    if (epoll_fd_ >= 0)
        close(epoll_fd_);
    if (fd_ >= 0) {
        close(fd_);
        unlink(path_.c_str());
    }
}

std::string ControlServer::listen(const std::string& path, uid_t client_uid)
{
    sockaddr_un addr;
    if (!fill_address(path, addr))
        return "control socket path too long: " + path;
    const std::string dir = path.substr(0, path.rfind('/'));
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        return "cannot create " + dir + ": " + std::strerror(errno);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return std::string("cannot create the control socket: ") + std::strerror(errno);
    unlink(path.c_str()); // a stale socket of a dead tracer with our pid
    remove_stale_sockets(dir);
    mode_t old = umask(0177);
    int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    umask(old);
    if (rc != 0 || chmod(path.c_str(), 0600) != 0 || ::listen(fd, 64) != 0) {
        std::string err = "cannot listen on " + path + ": " + std::strerror(errno);
        close(fd);
        return err;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        std::string err = std::string("cannot watch the control socket: ") + std::strerror(errno);
        if (ep >= 0)
            close(ep);
        close(fd);
        unlink(path.c_str());
        return err;
    }
    fd_ = fd;
    epoll_fd_ = ep;
    path_ = path;
    client_uid_ = client_uid;
    return {};
}

void ControlServer::drop(int fd)
{
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    clients_.erase(fd);
    if (paused_) { // a descriptor is free again: listen again
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd_;
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd_, &ev);
        paused_ = false;
    }
}

bool ControlServer::flush(int fd, Client& c)
{
    while (!c.out.empty()) {
        // A client gone before the reply must not kill us with SIGPIPE.
        ssize_t n = send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return false;
        if (n <= 0)
            return true; // gone: nothing more to say
        c.out.erase(0, static_cast<std::size_t>(n));
    }
    return true;
}

void ControlServer::accept_all()
{
    for (;;) {
        int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors: stop listening until a client goes,
                // rather than wake the trace loop at every turn.
                epoll_event ev{};
                ev.data.fd = fd_;
                epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd_, &ev);
                paused_ = true;
            }
            return;
        }
        ucred cred{};
        socklen_t len = sizeof cred;
        const char* refusal = nullptr;
        if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != 0 && cred.uid != client_uid_))
            refusal = "{\"error\":\"memscope-trace is controlled by root only\"}\n";
        else if (clients_.size() >= kMaxClients)
            refusal = "{\"error\":\"too many control clients at once; try again\"}\n";
        if (refusal) {
            send(c, refusal, std::strlen(refusal), MSG_NOSIGNAL | MSG_DONTWAIT);
            close(c);
            continue;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = c;
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c, &ev) != 0) {
            close(c);
            continue;
        }
        clients_[c] = {{}, {}, std::chrono::steady_clock::now() + kClientDeadline};
    }
}

void ControlServer::serve(const std::function<std::string(const std::string&)>& handler)
{
    if (epoll_fd_ < 0)
        return;
    epoll_event events[32];
    int n = epoll_wait(epoll_fd_, events, 32, 0);
    for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == fd_) {
            accept_all();
            continue;
        }
        auto it = clients_.find(fd);
        if (it == clients_.end())
            continue;
        Client& c = it->second;
        if (!c.out.empty()) { // its reply, waiting for room
            if (flush(fd, c))
                drop(fd);
            continue;
        }
        char buf[512];
        ssize_t got = -1;
        errno = EAGAIN;
        while (c.in.size() < 4096 && (got = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
            c.in.append(buf, static_cast<std::size_t>(got));
        const auto nl = c.in.find('\n');
        const bool ended = got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR);
        if (nl == std::string::npos && !ended && c.in.size() < 4096)
            continue; // the rest of the line later, before its deadline
        if (c.in.empty()) {
            drop(fd);
            continue;
        }
        c.out = handler(c.in.substr(0, nl)) + "\n";
        if (flush(fd, c)) {
            drop(fd);
            continue;
        }
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.fd = fd;
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    }
    // Idle or slow clients hold nothing for long.
    const auto now = std::chrono::steady_clock::now();
    for (auto it = clients_.begin(); it != clients_.end();) {
        const int fd = it->first;
        const bool late = it->second.deadline <= now;
        ++it; // drop() erases fd's entry, not the next one
        if (late)
            drop(fd);
    }
}

std::string control_request(const std::string& path, const std::string& request, std::string& reply)
{
    sockaddr_un addr;
    if (!fill_address(path, addr))
        return "control socket path too long: " + path;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return std::string("cannot create a socket: ") + std::strerror(errno);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::string err = "no memscope-trace listening at " + path + ": " + std::strerror(errno);
        close(fd);
        return err;
    }
    write_all(fd, request + "\n");
    reply.clear();
    bool ok = read_line(fd, reply, 30000);
    close(fd);
    if (!ok)
        return "no reply from " + path;
    return {};
}

} // namespace memscope
