#include "control.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
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

} // namespace

std::string control_socket_path(int tracer_pid)
{
    return std::string(kDir) + "/" + std::to_string(tracer_pid) + ".sock";
}

ControlServer::~ControlServer()
{
    if (fd_ >= 0) {
        close(fd_);
        unlink(path_.c_str());
    }
}

std::string ControlServer::listen(const std::string& path)
{
    sockaddr_un addr;
    if (!fill_address(path, addr))
        return "control socket path too long: " + path;
    if (mkdir(kDir, 0700) != 0 && errno != EEXIST)
        return std::string("cannot create ") + kDir + ": " + std::strerror(errno);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return std::string("cannot create the control socket: ") + std::strerror(errno);
    unlink(path.c_str()); // a stale socket of a dead tracer with our pid
    mode_t old = umask(0177);
    int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    umask(old);
    if (rc != 0 || chmod(path.c_str(), 0600) != 0 || ::listen(fd, 8) != 0) {
        std::string err = "cannot listen on " + path + ": " + std::strerror(errno);
        close(fd);
        return err;
    }
    fd_ = fd;
    path_ = path;
    return {};
}

void ControlServer::serve_one(const std::function<std::string(const std::string&)>& handler)
{
    int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0)
        return;
    ucred cred{};
    socklen_t len = sizeof cred;
    std::string line;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0)
        write_all(c, "{\"error\":\"memscope-trace is controlled by root only\"}\n");
    else if (read_line(c, line, 1000))
        write_all(c, handler(line) + "\n");
    close(c);
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
