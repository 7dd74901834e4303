// Live export while tracing: an HTTP endpoint (--listen: /metrics,
// /debug/pprof/heap, /healthz) on cpp-httplib, and pushes of heap profiles
// to a Pyroscope ingest API (--push).
//
// The trace loop owns every figure; the server's threads never touch it. A
// scrape asks the loop for a snapshot (an eventfd wakes it) and waits for
// the next one published; scrapes that wait together share it. Pushes go
// through a bounded queue to a thread of their own: a slow or dead server
// costs dropped profiles (counted), never the loop's time.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "metrics.hpp"
#include "model.hpp"
#include "pprof.hpp"

namespace httplib {
class Server;
class Client;
} // namespace httplib

namespace memscope {

struct ListenAddress {
    std::string host; // numeric IPv4 or IPv6 (no brackets)
    int port = 0;
};
// "PORT" (loopback), "HOST:PORT", "[V6]:PORT"; nullopt and `why` when malformed.
std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string& why);

struct PushTarget {
    std::string scheme_host_port; // "http://host:port"
    std::string path;             // the ingest path: the URL's, else /ingest
};
// An http(s) URL; nullopt and `why` when malformed.
std::optional<PushTarget> parse_push_url(const std::string& text, std::string& why);

struct ExportSettings {
    std::optional<ListenAddress> listen;
    std::optional<PushTarget> push;
    double push_interval = 10;
    std::string service_name;                                // --push: the profiles' application
    std::vector<std::pair<std::string, std::string>> labels; // --push: added to each profile's name
    std::function<std::string(int pid)> cgroup_of;           // -p, run: the target's cgroup
    double scrape_timeout = 5;                               // a scrape waits this long for the loop
    std::size_t push_queue = 4;                              // profiles waiting to be pushed
};

class Exporter {
public:
    // Starts what is asked for. A port that cannot be bound or a push server
    // out of reach is said once (`say`) and tracing goes on without it.
    Exporter(ExportSettings settings, std::function<void(const std::string&)> say);
    ~Exporter();
    Exporter(const Exporter&) = delete;
    Exporter& operator=(const Exporter&) = delete;

    // Readable when a scrape waits for a snapshot: the loop polls it.
    int wake_fd() const { return wake_fd_; }
    // Whether the loop should make a snapshot now (`now_s`: the loop's
    // clock): a scrape waits, or a push is due.
    bool due(double now_s);
    // A snapshot: serves the scrapes waiting, queues a push when one is due.
    void publish(const Report& snapshot, double now_s);
    // Tracing is over: the last interval is pushed (waiting `wait_s` at
    // most for the queue), the server stops.
    void finish(const Report& final_report, double now_s, double wait_s = 2);

    bool listening() const { return listening_; }
    int port() const { return bound_port_; }
    TracerFigures figures() const;

private:
    struct Published {
        std::uint64_t seq = 0;
        std::string metrics, profile;
    };
    enum Want : unsigned { want_metrics = 1, want_profile = 2 };
    std::shared_ptr<const Published> wait_for(unsigned what);
    void serve();
    void push_loop();
    void queue_push(const Report& r);

    ExportSettings settings_;
    std::function<void(const std::string&)> say_;
    int wake_fd_ = -1;
    std::unique_ptr<httplib::Server> server_;
    std::thread server_thread_, push_thread_;
    bool listening_ = false;
    int bound_port_ = 0;

    mutable std::mutex mu_;
    std::condition_variable published_cv_, push_cv_;
    unsigned wanted_ = 0;
    std::uint64_t asked_seq_ = 0; // the snapshot the waiting scrapes need
    std::shared_ptr<const Published> last_;
    bool stopping_ = false;
    TracerFigures figures_;

    // --push
    struct Push {
        std::string body;
        std::int64_t from_s = 0, until_s = 0;
    };
    std::deque<Push> queue_;
    bool pushing_ = false;
    bool finishing_ = false; // the loop's: finish() has begun
    httplib::Client* client_ = nullptr; // the push thread's, while it runs
    bool push_said_ = false;
    double next_push_s_ = 0, last_push_s_ = 0;
    std::int64_t last_push_wall_s_ = 0;
    AllocBaseline baseline_;
};

} // namespace memscope
