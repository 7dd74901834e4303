// The live control channel: a root-only unix socket per tracer, one line in
// ("mode fast", "status"), one line of JSON out.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "modes.hpp"

namespace memscope {

// Where tracer `pid` listens.
std::string control_socket_path(int tracer_pid);

// The protocol's requests, one line each: `mode NAME` (normal, fast, async,
// off) and `status`. Parsed here for both sides: `ctl` checks what it sends,
// the tracer what it gets.
// -a adds `heap add SELECTOR` and `heap drop SELECTOR` (selectors.hpp).
struct ControlRequest {
    enum class Kind { mode, status, heap_add, heap_drop } kind = Kind::status;
    Mode mode = Mode::normal; // with Kind::mode
    std::string selector;     // with heap_add, heap_drop
};
// The request in `words`; empty `error` when it is one, else why not.
std::optional<ControlRequest> parse_control_request(const std::vector<std::string>& words, std::string& error);
// The same from a line as it arrives (words split on single spaces).
std::optional<ControlRequest> parse_control_line(const std::string& line, std::string& error);

class ControlServer {
public:
    ControlServer() = default;
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Listen at `path` (mode 0600, in a 0700 directory). Requests are taken
    // from root and from `client_uid` (root too, unless a test that runs
    // unprivileged says its own). Error sentence or empty.
    std::string listen(const std::string& path, uid_t client_uid = 0);
    // Readable when a client connects, sends or can take its reply (-1: not
    // listening). Poll it beside the trace's own descriptors.
    int fd() const { return epoll_fd_; }
    // Whatever is ready, without waiting: accept, read, answer each whole
    // line with handler(line) + "\n", then close. Clients other than root (and
    // `client_uid`) are refused; past kMaxClients at once a newcomer is told so and
    // closed; one that has not sent its line (or taken its reply) within
    // kClientDeadline is dropped. Call it on every turn of the trace loop.
    void serve(const std::function<std::string(const std::string&)>& handler);

    static constexpr std::size_t kMaxClients = 16;
    static constexpr std::chrono::milliseconds kClientDeadline{2000};

private:
    struct Client {
        std::string in, out;
        std::chrono::steady_clock::time_point deadline;
    };
    void accept_all();
    void drop(int fd);
    // Send what is left of the reply; true once it is all gone.
    bool flush(int fd, Client& c);

    int fd_ = -1, epoll_fd_ = -1;
    bool paused_ = false; // out of descriptors: not accepting until a client goes
    std::string path_;
    uid_t client_uid_ = 0;
    std::map<int, Client> clients_;
};

// Send one request and read the one-line reply. Error sentence or empty.
std::string control_request(const std::string& path, const std::string& request, std::string& reply);

} // namespace memscope
