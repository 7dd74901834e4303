#include "exporter.hpp"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

namespace memscope {

namespace {

bool numeric_port(const std::string& s, int& port)
{
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
        return false;
    port = std::stoi(s);
    return port <= 65535;
}

std::string percent_encoded(const std::string& s)
{
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

double wall_s()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

} // namespace

std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string& why)
{
    ListenAddress a;
    std::string port;
    if (text.find(':') == std::string::npos) {
        a.host = "127.0.0.1"; // loopback unless an address is given
        port = text;
    } else if (text.front() == '[') {
        auto close = text.find("]:");
        if (close == std::string::npos) {
            why = "--listen " + text + ": expected [IPV6]:PORT";
            return std::nullopt;
        }
        a.host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        a.host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (a.host.find(':') != std::string::npos) {
            why = "--listen " + text + ": an IPv6 address goes in brackets, [ADDR]:PORT";
            return std::nullopt;
        }
    }
    unsigned char buf[sizeof(in6_addr)];
    const bool v4 = inet_pton(AF_INET, a.host.c_str(), buf) == 1, v6 = inet_pton(AF_INET6, a.host.c_str(), buf) == 1;
    if (!v4 && !v6) {
        why = "--listen " + text + ": expected a numeric address (127.0.0.1, 0.0.0.0, [::1]) and a port";
        return std::nullopt;
    }
    if (!numeric_port(port, a.port)) {
        why = "--listen " + text + ": the port must be a number from 0 to 65535";
        return std::nullopt;
    }
    return a;
}

std::optional<PushTarget> parse_push_url(const std::string& text, std::string& why)
{
    PushTarget t;
    auto scheme_end = text.find("://");
    const std::string scheme = scheme_end == std::string::npos ? "" : text.substr(0, scheme_end);
    if (scheme != "http" && scheme != "https") {
        why = "--push " + text + ": expected an http:// or https:// URL";
        return std::nullopt;
    }
    auto path_start = text.find('/', scheme_end + 3);
    std::string authority = text.substr(scheme_end + 3, path_start == std::string::npos ? std::string::npos
                                                                                        : path_start - scheme_end - 3);
    if (authority.empty() || authority.find_first_of(" @?#") != std::string::npos) {
        why = "--push " + text + ": expected http(s)://HOST[:PORT][/PATH]";
        return std::nullopt;
    }
    if (auto colon = authority.rfind(':'); colon != std::string::npos && authority.back() != ']') {
        int port = 0;
        if (!numeric_port(authority.substr(colon + 1), port) || port == 0) {
            why = "--push " + text + ": the port must be a number from 1 to 65535";
            return std::nullopt;
        }
    }
    t.scheme_host_port = scheme + "://" + authority;
    t.path = path_start == std::string::npos ? "" : text.substr(path_start);
    if (t.path.find_first_of("?# ") != std::string::npos) {
        why = "--push " + text + ": the URL may not carry a query";
        return std::nullopt;
    }
    if (t.path.empty() || t.path == "/")
        t.path = "/ingest"; // Pyroscope's
    return t;
}

Exporter::Exporter(ExportSettings settings, std::function<void(const std::string&)> say)
    : settings_(std::move(settings)), say_(std::move(say))
{
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    // The server's and the pusher's threads never take SIGPIPE (a client
    // gone mid-answer): blocked in them, a write there fails with EPIPE.
    sigset_t pipe_only, before;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &before);
    if (settings_.listen) {
        server_ = std::make_unique<httplib::Server>();
        // A client that sends nothing, or reads nothing, holds a worker this long at most.
        server_->set_read_timeout(2, 0);
        server_->set_write_timeout(5, 0);
        server_->set_keep_alive_timeout(5);
        server_->set_payload_max_length(64 * 1024); // GETs carry no body
        server_->new_task_queue = [] { return new httplib::ThreadPool(8); };
        server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            auto p = wait_for(want_metrics);
            if (!p) {
                res.status = 503;
                res.set_content("the tracer made no snapshot in time\n", "text/plain");
                return;
            }
            res.set_content(p->metrics, "text/plain; version=0.0.4; charset=utf-8");
        });
        server_->Get("/debug/pprof/heap", [this](const httplib::Request&, httplib::Response& res) {
            auto p = wait_for(want_profile);
            if (!p || p->profile.empty()) {
                res.status = 503;
                res.set_content("the tracer made no profile in time\n", "text/plain");
                return;
            }
            res.set_header("Content-Disposition", "attachment; filename=\"heap.pb.gz\"");
            res.set_content(p->profile, "application/octet-stream");
        });
        server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("ok\n", "text/plain");
        });
        const std::string where = (settings_.listen->host.find(':') != std::string::npos
                                       ? "[" + settings_.listen->host + "]"
                                       : settings_.listen->host) +
                                  ":" + std::to_string(settings_.listen->port);
        errno = 0;
        if (settings_.listen->port == 0) {
            bound_port_ = server_->bind_to_any_port(settings_.listen->host);
            listening_ = bound_port_ > 0;
        } else {
            listening_ = server_->bind_to_port(settings_.listen->host, settings_.listen->port);
            bound_port_ = settings_.listen->port;
        }
        if (!listening_) {
            const int err = errno;
            say_("cannot listen on " + where + (err ? std::string(": ") + std::strerror(err) : std::string()) +
                 "; tracing goes on without the endpoint");
            server_.reset();
            bound_port_ = 0;
        } else {
            server_thread_ = std::thread([this] { server_->listen_after_bind(); });
        }
    }
    if (settings_.push)
        push_thread_ = std::thread([this] { push_loop(); });
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

Exporter::~Exporter()
{
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
        queue_.clear();
        if (client_)
            client_->stop();
    }
    published_cv_.notify_all();
    push_cv_.notify_all();
    if (server_)
        server_->stop();
    if (server_thread_.joinable())
        server_thread_.join();
    if (push_thread_.joinable())
        push_thread_.join();
    if (wake_fd_ >= 0)
        close(wake_fd_);
}

std::shared_ptr<const Exporter::Published> Exporter::wait_for(unsigned what)
{
    std::unique_lock lk(mu_);
    ++figures_.scrapes;
    if (stopping_)
        return last_ && (what != want_profile || !last_->profile.empty()) ? last_ : nullptr;
    wanted_ |= what;
    const std::uint64_t need = asked_seq_ + 1; // a snapshot made after this request
    std::uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof one) < 0) {
        // The counter is full: the loop is woken already.
    }
    published_cv_.wait_for(lk, std::chrono::duration<double>(settings_.scrape_timeout),
                           [&] { return stopping_ || (last_ && last_->seq >= need); });
    if (last_ && last_->seq >= need)
        return last_;
    return nullptr;
}

bool Exporter::due(double now_s)
{
    std::uint64_t n;
    while (read(wake_fd_, &n, sizeof n) == sizeof n) {
    }
    if (settings_.push && next_push_s_ == 0) {
        next_push_s_ = now_s + settings_.push_interval;
        last_push_wall_s_ = static_cast<std::int64_t>(wall_s());
    }
    std::lock_guard lk(mu_);
    return wanted_ != 0 || (settings_.push && now_s >= next_push_s_);
}

void Exporter::publish(const Report& snapshot, double now_s)
{
    const auto t0 = std::chrono::steady_clock::now();
    unsigned what;
    std::uint64_t seq;
    {
        std::lock_guard lk(mu_);
        what = std::exchange(wanted_, 0u);
        seq = what ? ++asked_seq_ : 0;
    }
    if (settings_.push && !finishing_ && now_s >= next_push_s_) {
        queue_push(snapshot);
        next_push_s_ = now_s + settings_.push_interval;
    }
    if (!what)
        return;
    auto p = std::make_shared<Published>();
    p->seq = seq;
    if (what & want_profile)
        p->profile = heap_profile(snapshot, times_of(snapshot));
    if (what & want_metrics) {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        TracerFigures f = figures();
        f.cpu_user_s = static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6;
        f.cpu_sys_s = static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6;
        f.max_rss_bytes = static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;
        p->metrics = prometheus_metrics(snapshot, f, settings_.cgroup_of);
    }
    std::lock_guard lk(mu_);
    figures_.snapshot_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_ = std::move(p);
    published_cv_.notify_all();
}

void Exporter::queue_push(const Report& r)
{
    const std::int64_t until = static_cast<std::int64_t>(wall_s());
    Push push;
    push.from_s = last_push_wall_s_;
    push.until_s = std::max(until, push.from_s + 1);
    push.body = heap_profile(r, {push.from_s * 1000000000, (push.until_s - push.from_s) * 1000000000}, &baseline_);
    last_push_wall_s_ = push.until_s;
    std::lock_guard lk(mu_);
    if (queue_.size() >= settings_.push_queue) {
        ++figures_.push_dropped;
        if (!push_said_) {
            push_said_ = true;
            say_("the push server is not keeping up: profiles are dropped (memscope_tracer_push_dropped_total)");
        }
        return;
    }
    queue_.push_back(std::move(push));
    push_cv_.notify_one();
}

void Exporter::push_loop()
{
    httplib::Client client(settings_.push->scheme_host_port);
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(5, 0);
    client.set_write_timeout(5, 0);
    {
        std::lock_guard lk(mu_);
        client_ = &client;
    }
    std::string name = settings_.service_name.empty() ? "memscope-trace" : settings_.service_name;
    if (!settings_.labels.empty()) {
        name += '{';
        for (std::size_t i = 0; i < settings_.labels.size(); ++i)
            name += (i ? "," : "") + settings_.labels[i].first + "=" + settings_.labels[i].second;
        name += '}';
    }
    for (;;) {
        Push push;
        {
            std::unique_lock lk(mu_);
            push_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty() || stopping_) {
                client_ = nullptr;
                return;
            }
            push = std::move(queue_.front());
            queue_.pop_front();
            pushing_ = true;
        }
        const std::string path = settings_.push->path + "?name=" + percent_encoded(name) +
                                 "&from=" + std::to_string(push.from_s) + "&until=" + std::to_string(push.until_s) +
                                 "&format=pprof&spyName=memscope-trace&units=bytes&aggregationType=sum";
        auto res = client.Post(path, push.body, "application/octet-stream");
        std::string failure;
        if (!res)
            failure = httplib::to_string(res.error());
        else if (res->status / 100 != 2)
            failure = "HTTP " + std::to_string(res->status);
        std::lock_guard lk(mu_);
        pushing_ = false;
        if (failure.empty()) {
            ++figures_.pushes;
        } else if (stopping_) {
            ++figures_.push_dropped; // given up at the end: the server did not answer in time
        } else {
            ++figures_.push_failures;
            if (!push_said_) {
                push_said_ = true;
                say_("push to " + settings_.push->scheme_host_port + " failed (" + failure +
                     "); tracing goes on, failures are counted (memscope_tracer_push_failures_total)");
            }
        }
        push_cv_.notify_all();
    }
}

void Exporter::finish(const Report& final_report, double now_s, double wait_s)
{
    // Scrapes still waiting get the final figures, not a refusal.
    {
        std::lock_guard lk(mu_);
        wanted_ |= want_metrics;
    }
    const bool push = settings_.push.has_value();
    finishing_ = true; // publish() queues no push of its own now
    publish(final_report, now_s);
    if (push) {
        // The last interval's, up to the end.
        if (next_push_s_ == 0)
            last_push_wall_s_ = static_cast<std::int64_t>(wall_s() - final_report.duration_s);
        queue_push(final_report);
        std::unique_lock lk(mu_);
        push_cv_.wait_for(lk, std::chrono::duration<double>(wait_s), [&] { return queue_.empty() && !pushing_; });
    }
    std::unique_lock lk(mu_);
    stopping_ = true;
    if (client_)
        client_->stop(); // a push in flight to a server that stalls ends now
    lk.unlock();
    published_cv_.notify_all();
    push_cv_.notify_all();
    if (push_thread_.joinable())
        push_thread_.join(); // at once: its request, if any, was just cut short
    if (server_)
        server_->stop();
}

TracerFigures Exporter::figures() const
{
    std::lock_guard lk(mu_);
    return figures_;
}

} // namespace memscope
