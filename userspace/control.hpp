// The live control channel: a root-only unix socket per tracer, one line in
// ("mode fast", "status"), one line of JSON out.
#pragma once

#include <functional>
#include <string>

namespace memscope {

// Where tracer `pid` listens.
std::string control_socket_path(int tracer_pid);

class ControlServer {
public:
    ControlServer() = default;
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Listen at `path` (mode 0600, in a 0700 directory). Error sentence or empty.
    std::string listen(const std::string& path);
    int fd() const { return fd_; }
    // Serve one waiting client: read a line, answer handler(line) + "\n".
    // Clients that are not root are refused.
    void serve_one(const std::function<std::string(const std::string&)>& handler);

private:
    int fd_ = -1;
    std::string path_;
};

// Send one request and read the one-line reply. Error sentence or empty.
std::string control_request(const std::string& path, const std::string& request, std::string& reply);

} // namespace memscope
