// Fleet export (issue 16) against the real consumers: Go's pprof reads
// every profile written, served and pushed; a real Prometheus server
// scrapes --listen; a receiver on loopback takes the pushes. Bad clients,
// busy ports and dead servers must not cost the trace anything.
#include "harness.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "temp_dir.hpp"

namespace e2e {
namespace {

using memscope_test::TempDir;

const std::string kGo = "/usr/bin/go"; // Debian's golang-go

// A report read as load() reads it, its file left in place.
json load_keep(const std::string& path)
{
    const std::string copy = path + ".read";
    std::filesystem::copy_file(path, copy, std::filesystem::copy_options::overwrite_existing);
    return load(copy);
}

using Sums = std::array<std::int64_t, 4>; // alloc_objects, alloc_space, inuse_objects, inuse_space

// Go's own reader: `go tool pprof -raw`, its samples summed per type.
Sums go_pprof_sums(const std::string& path, std::string* raw_out = nullptr)
{
    Result r = run({kGo, "tool", "pprof", "-raw", path});
    EXPECT_EQ(r.status, 0) << r.err;
    if (raw_out)
        *raw_out = r.out;
    Sums s{};
    std::istringstream in(r.out);
    std::string line;
    bool samples = false;
    while (std::getline(in, line)) {
        if (line.rfind("Samples:", 0) == 0) {
            samples = true;
            std::getline(in, line); // the types
            EXPECT_NE(line.find("alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes"),
                      std::string::npos)
                << line;
            continue;
        }
        if (line.rfind("Locations", 0) == 0)
            break;
        if (!samples || line.find(':') == std::string::npos || line.find('[') != std::string::npos)
            continue;
        std::istringstream v(line.substr(0, line.find(':')));
        Sums one{};
        for (auto& x : one)
            v >> x;
        if (v.fail())
            continue;
        for (std::size_t i = 0; i < 4; ++i)
            s[i] += one[i];
    }
    EXPECT_TRUE(samples) << r.out.substr(0, 2000);
    return s;
}

// The JSON report's totals in the same order (-a: its heap-traced processes').
Sums json_sums(const json& r)
{
    auto of = [](const json& t) {
        return Sums{t["alloc_count"].get<std::int64_t>(), t["alloc_bytes"].get<std::int64_t>(),
                    t["live_count"].get<std::int64_t>(), t["live_bytes"].get<std::int64_t>()};
    };
    if (r["mode_scope"] != "system")
        return of(r["totals"]);
    Sums s{};
    for (const auto& p : r["processes"])
        if (p.value("heap_traced", false)) {
            Sums one = of(p["totals"]);
            for (std::size_t i = 0; i < 4; ++i)
                s[i] += one[i];
        }
    return s;
}

int free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

// The port the tracer says it serves on (--listen 127.0.0.1:0).
int served_port(Child& tracer)
{
    const std::string needle = "/healthz on port ";
    if (!tracer.wait_for(needle, true, 30s))
        return 0;
    return std::atoi(tracer.err_text.c_str() + tracer.err_text.find(needle) + needle.size());
}

std::size_t occurrences(const std::string& text, const std::string& needle)
{
    std::size_t n = 0;
    for (std::size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at += needle.size())
        ++n;
    return n;
}

std::string write_file(const std::string& path, const std::string& body)
{
    std::ofstream(path, std::ios::binary) << body;
    return path;
}

// A metric's value for one label set in /metrics text; -1 when absent.
double metric_value(const std::string& text, const std::string& series)
{
    auto at = text.find("\n" + series + " ");
    if (at == std::string::npos)
        return -1;
    return std::atof(text.c_str() + at + 1 + series.size() + 1);
}

} // namespace

TEST_F(E2E, PprofFilesAreReadByGoPprofAndSumToTheJsonTotals)
{
    TempDir dir;
    const std::string json_path = dir / "r.json", pprof = dir / "r.pb.gz", again = dir / "again.pb.gz";
    Result r = run({kBin, "run", "--json", json_path, "--pprof", pprof, "--", target("leaks")});
    ASSERT_EQ(r.status, 0) << r.err;
    json report = load_keep(json_path);
    const Sums want = json_sums(report);
    EXPECT_GT(want[0], 0);
    EXPECT_EQ(go_pprof_sums(pprof), want);

    // The leak sites by name, as Go's pprof names them.
    Result top = run({kGo, "tool", "pprof", "-top", "-nodefraction=0", "-sample_index=inuse_space", pprof});
    ASSERT_EQ(top.status, 0) << top.err;
    for (const char* leak : {"leak_shallow", "make_widget", "leak_deep"})
        EXPECT_NE(top.out.find(leak), std::string::npos) << leak << " not in\n" << top.out;
    // File and line, and labels for the pid and the thread.
    Result lines = run({kGo, "tool", "pprof", "-traces", pprof});
    EXPECT_NE(lines.out.find("pid:"), std::string::npos) << lines.out.substr(0, 2000);
    EXPECT_NE(lines.out.find("thread:"), std::string::npos) << lines.out.substr(0, 2000);
    Result list = run({kGo, "tool", "pprof", "-lines", "-top", pprof});
    EXPECT_NE(list.out.find("leaks.cpp:"), std::string::npos) << list.out.substr(0, 2000);

    // The same from the JSON report, later.
    Result rr = run({kBin, "report", json_path, "--pprof", again});
    ASSERT_EQ(rr.status, 0) << rr.err;
    EXPECT_EQ(go_pprof_sums(again), want);
}

TEST_F(E2E, PprofOfAnAttachedProcessAndOfSystemWideHeapTracing)
{
    TempDir dir;
    // -p on a process that keeps blocks: what it holds is in use.
    Child target_proc({target("phases"), "2"});
    ASSERT_TRUE(target_proc.wait_for("ready\n", false, 20s));
    const std::string pj = dir / "p.json", pp = dir / "p.pb.gz";
    Child tracer({kBin, "-p", std::to_string(target_proc.pid), "--json", pj, "--pprof", pp});
    ASSERT_TRUE(tracer.wait_for("attached to pid", true, 30s)) << tracer.err_text;
    target_proc.write_stdin("keep 500\n");
    ASSERT_TRUE(target_proc.wait_for("kept 500", false));
    target_proc.write_stdin("phase 1\n");
    ASSERT_TRUE(target_proc.wait_for("done 1 ", false));
    kill(tracer.pid, SIGINT);
    EXPECT_EQ(tracer.finish(), 0) << tracer.err_text;
    target_proc.write_stdin("exit\n");
    EXPECT_EQ(target_proc.finish(), 0);
    json pr = load_keep(pj);
    const Sums pw = json_sums(pr);
    EXPECT_GE(pw[3], 500 * 100);
    EXPECT_EQ(go_pprof_sums(pp), pw);

    // -a with one process chosen for heap tracing.
    const std::string aj = dir / "a.json", ap = dir / "a.pb.gz";
    Child system({kBin, "-a", "--heap", "comm:target_threads_", "--json", aj, "--pprof", ap});
    ASSERT_TRUE(system.wait_for("watching every process", true, 60s)) << system.err_text;
    Result threads = run({target("threads_c"), "4", "300"});
    ASSERT_EQ(threads.status, 0);
    std::this_thread::sleep_for(1200ms);
    kill(system.pid, SIGINT);
    system.finish();
    json ar = load_keep(aj);
    expect_threads_c(ar, 4, 300, "-a --pprof");
    const Sums aw = json_sums(ar);
    EXPECT_GT(aw[0], 0);
    EXPECT_EQ(go_pprof_sums(ap), aw);
}

TEST_F(E2E, PrometheusScrapesLiveBytesEqualToTheReport)
{
    if (access("/usr/bin/prometheus", X_OK) != 0)
        FAIL() << "prometheus is not installed (tools/setup.sh installs it)";
    TempDir dir;
    const std::string json_path = dir / "snap.json";
    Child tracer({kBin, "run", "--listen", "127.0.0.1:0", "--json", json_path, "--", target("phases"), "2"});
    const int port = served_port(tracer);
    ASSERT_GT(port, 0) << tracer.err_text;
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    tracer.write_stdin("keep 1000\n");
    ASSERT_TRUE(tracer.wait_for("kept 1000", false));

    const int prom_port = free_port();
    write_file(dir / "prometheus.yml", "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                                       "scrape_configs:\n  - job_name: memscope\n    static_configs:\n"
                                       "      - targets: ['127.0.0.1:" +
                                           std::to_string(port) + "']\n");
    Child prom({"/usr/bin/prometheus", "--config.file=" + dir / "prometheus.yml",
                "--storage.tsdb.path=" + dir / "data",
                "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)});
    httplib::Client api("127.0.0.1", prom_port);
    api.set_read_timeout(5, 0);
    // The traced process's live bytes as Prometheus stored them.
    auto query = [&]() -> double {
        auto res = api.Get("/api/v1/query?query=sum(memscope_heap_live_bytes%7Bcomm%3D%22target_phases%22%7D)");
        if (!res || res->status != 200)
            return -1;
        json j = json::parse(res->body, nullptr, false);
        if (j.is_discarded() || j["data"]["result"].empty())
            return -1;
        return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
    };
    // Two scrapes after the blocks were kept: the figure is steady.
    double seen = -1;
    auto deadline = std::chrono::steady_clock::now() + 40s;
    while (std::chrono::steady_clock::now() < deadline) {
        prom.pump(0);
        tracer.pump(0);
        seen = query();
        if (seen >= 1000 * 100)
            break;
        std::this_thread::sleep_for(300ms);
    }
    std::this_thread::sleep_for(2500ms);
    seen = query();
    // The JSON report at that moment: a snapshot (SIGUSR1), tracing goes on.
    kill(tracer.pid, SIGUSR1);
    for (int i = 0; i < 100 && !std::filesystem::exists(json_path); ++i)
        std::this_thread::sleep_for(50ms);
    std::this_thread::sleep_for(300ms);
    json snap = load_keep(json_path);
    EXPECT_EQ(seen, snap["totals"]["live_bytes"].get<double>()) << prom.err_text.substr(0, 3000);
    EXPECT_GE(seen, 1000 * 100);
    // Up, with the tracer's own figures.
    auto up = api.Get("/api/v1/query?query=memscope_tracer_scrapes_total");
    ASSERT_TRUE(up && up->status == 200);
    EXPECT_NE(up->body.find("memscope_tracer_scrapes_total"), std::string::npos) << up->body;

    kill(prom.pid, SIGTERM);
    prom.finish();
    tracer.write_stdin("release\nexit\n");
    EXPECT_EQ(tracer.finish(), 0) << tracer.err_text;
}

TEST_F(E2E, EndpointServesManyScrapersAndBadClientsWithoutLosingTheTrace)
{
    TempDir dir;
    const std::string json_path = dir / "r.json";
    Child tracer({kBin, "run", "--listen", "127.0.0.1:0", "--json", json_path, "--", target("threads_c"), "4",
                  "90000"});
    const int port = served_port(tracer);
    ASSERT_GT(port, 0) << tracer.err_text;

    // A client that connects and says nothing, held while the others scrape.
    int slow = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(slow, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);

    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    auto health = c.Get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    auto missing = c.Get("/no/such/path");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);
    // Once the workers allocate (a scrape before that has no thread to name).
    for (int i = 0; i < 200; ++i) {
        auto m = c.Get("/metrics");
        if (m && m->body.find("thread=\"worker-0\"") != std::string::npos)
            break;
        std::this_thread::sleep_for(20ms);
    }
    auto heap = c.Get("/debug/pprof/heap");
    ASSERT_TRUE(heap);
    ASSERT_EQ(heap->status, 200);
    Sums served = go_pprof_sums(write_file(dir / "served.pb.gz", heap->body));
    EXPECT_GT(served[0], 0);

    // 100 scrapers at once.
    std::atomic<int> ok{0}, done{0};
    std::mutex failures_mu;
    std::vector<std::string> failures;
    std::vector<std::thread> scrapers;
    for (int i = 0; i < 100; ++i)
        scrapers.emplace_back([&] {
            httplib::Client one("127.0.0.1", port);
            one.set_read_timeout(20, 0);
            auto res = one.Get("/metrics");
            if (res && res->status == 200 && res->body.find("thread=\"worker-0\"") != std::string::npos) {
                ++ok;
            } else {
                std::lock_guard lk(failures_mu);
                failures.push_back(res ? "HTTP " + std::to_string(res->status) + " " + res->body
                                       : httplib::to_string(res.error()));
            }
            ++done;
        });
    for (auto& t : scrapers)
        t.join();
    EXPECT_EQ(ok.load(), 100) << (failures.empty() ? "" : failures[0]);
    close(slow);
    EXPECT_EQ(tracer.finish(), 0) << tracer.err_text;

    // Nothing of the trace was lost.
    json r = load_keep(json_path);
    expect_threads_c(r, 4, 90000, "scraped 100 times at once");
    EXPECT_EQ(r["dropped"]["events"], 0);
    EXPECT_GE(r["tracer"]["export"]["scrapes"].get<int>(), 102); // /healthz is not a scrape
}

TEST_F(E2E, BusyPortAndUnreachableAddressAreSaidOnceAndTracingGoesOn)
{
    // A port someone else listens on.
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(busy, 4), 0);
    socklen_t len = sizeof a;
    getsockname(busy, reinterpret_cast<sockaddr*>(&a), &len);
    const std::string port = std::to_string(ntohs(a.sin_port));
    // An address of no interface here (TEST-NET-1), and a push server nobody runs.
    for (const std::string& listen : {"127.0.0.1:" + port, std::string("192.0.2.1:9877")}) {
        SCOPED_TRACE(listen);
        const std::string path = temp_json("busy_port");
        Result r = run({kBin, "run", "--listen", listen, "--push", "http://127.0.0.1:" + std::to_string(free_port()),
                        "--push-interval", "0.2", "--json", path, "--", target("threads_c"), "4", "300"});
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(occurrences(r.err, "cannot listen on"), 1u) << r.err;
        EXPECT_EQ(occurrences(r.err, "push to "), 1u) << r.err;
        json report = load(path);
        expect_threads_c(report, 4, 300, "no endpoint, no push server");
        EXPECT_GE(report["tracer"]["export"]["push_failures"].get<int>(), 1);
    }
    close(busy);

    // Malformed: one line, exit 2, before anything is traced.
    for (const std::vector<std::string>& bad :
         {std::vector<std::string>{"--listen", "nope:1"}, {"--listen", "127.0.0.1:70000"}, {"--push", "ftp://x"},
          {"--push", "127.0.0.1:4040"}}) {
        std::vector<std::string> argv{kBin, "run"};
        argv.insert(argv.end(), bad.begin(), bad.end());
        argv.insert(argv.end(), {"--", "/bin/true"});
        Result r = run(argv);
        EXPECT_EQ(r.status, 2) << bad[1] << ": " << r.err;
        EXPECT_EQ(occurrences(r.err, "\n"), 1u) << r.err;
    }
}

// A receiver on loopback, as Pyroscope's /ingest takes profiles.
class Receiver {
public:
    explicit Receiver(bool stall = false) : stall_(stall)
    {
        server_.Post("/ingest", [this](const httplib::Request& req, httplib::Response& res) {
            std::unique_lock lk(mu_);
            if (stall_) {
                ++stalled_;
                cv_.wait(lk, [&] { return released_; });
                return;
            }
            pushes_.push_back({req.get_param_value("name"), std::stoll(req.get_param_value("from")),
                               std::stoll(req.get_param_value("until")), req.get_param_value("format"), req.body});
            res.set_content("", "text/plain");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
    }
    ~Receiver()
    {
        {
            std::lock_guard lk(mu_);
            released_ = true;
        }
        cv_.notify_all();
        server_.stop();
        thread_.join();
    }
    int port() const { return port_; }
    struct Push {
        std::string name;
        long long from, until;
        std::string format, body;
    };
    std::vector<Push> pushes()
    {
        std::lock_guard lk(mu_);
        return pushes_;
    }
    int stalled()
    {
        std::lock_guard lk(mu_);
        return stalled_;
    }

private:
    httplib::Server server_;
    std::thread thread_;
    int port_ = 0;
    bool stall_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool released_ = false;
    int stalled_ = 0;
    std::vector<Push> pushes_;
};

TEST_F(E2E, PushesOneProfilePerIntervalWhoseDeltasAddUpToTheTotals)
{
    Receiver receiver;
    TempDir dir;
    const std::string json_path = dir / "r.json";
    const auto start = std::chrono::steady_clock::now();
    Result r = run({kBin, "run", "--push", "http://127.0.0.1:" + std::to_string(receiver.port()), "--push-interval",
                    "0.5", "--service-name", "phases-svc", "--push-label", "env=test", "--json", json_path, "--",
                    target("phases"), "2"},
                   "load 3\nkeep 200\nexit\n");
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(r.status, 0) << r.err;
    json report = load_keep(json_path);
    const auto pushes = receiver.pushes();
    // One per half second, and the last interval's at the end.
    EXPECT_GE(pushes.size(), static_cast<std::size_t>(took / 0.5) - 2) << took;
    EXPECT_LE(pushes.size(), static_cast<std::size_t>(took / 0.5) + 2) << took;
    Sums total{};
    Sums last{};
    for (std::size_t i = 0; i < pushes.size(); ++i) {
        EXPECT_EQ(pushes[i].name, "phases-svc{env=test}");
        EXPECT_EQ(pushes[i].format, "pprof");
        EXPECT_LT(pushes[i].from, pushes[i].until);
        if (i > 0)
            EXPECT_EQ(pushes[i].from, pushes[i - 1].until) << i;
        last = go_pprof_sums(write_file(dir / ("p" + std::to_string(i) + ".pb.gz"), pushes[i].body));
        total[0] += last[0];
        total[1] += last[1];
    }
    const Sums want = json_sums(report);
    EXPECT_EQ(total[0], want[0]);
    EXPECT_EQ(total[1], want[1]);
    // In use: the last profile's is the report's.
    EXPECT_EQ(last[2], want[2]);
    EXPECT_EQ(last[3], want[3]);
    EXPECT_EQ(report["tracer"]["export"]["pushes"].get<std::size_t>(), pushes.size());
}

TEST_F(E2E, AStalledPushServerCostsDroppedProfilesNotTheTrace)
{
    Receiver receiver(/*stall=*/true);
    const std::string path = temp_json("push_stalled");
    const auto start = std::chrono::steady_clock::now();
    Result r = run({kBin, "run", "--push", "http://127.0.0.1:" + std::to_string(receiver.port()), "--push-interval",
                    "0.1", "--json", path, "--", target("threads_c"), "4", "60000"});
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_GE(receiver.stalled(), 1);
    json report = load(path);
    expect_threads_c(report, 4, 60000, "pushing to a server that never answers");
    EXPECT_GT(report["tracer"]["export"]["push_dropped"].get<int>(), 0) << report["tracer"].dump();
    EXPECT_EQ(occurrences(r.err, "not keeping up"), 1u) << r.err;
    // The end waits for the queue two seconds at most, then gives up on it.
    EXPECT_LT(took - report["duration_s"].get<double>(), 5.0) << took;
}

TEST_F(E2E, SystemWideMetricsNameEachProcessGroup)
{
    Child hog({target("mem_hog"), "8"});
    ASSERT_TRUE(hog.wait_for("ready ", false, 30s));
    const std::string path = temp_json("system_metrics");
    Child tracer({kBin, "-a", "--listen", "127.0.0.1:0", "--json", path});
    const int port = served_port(tracer);
    ASSERT_GT(port, 0) << tracer.err_text;
    ASSERT_TRUE(tracer.wait_for("watching every process", true, 60s));
    std::this_thread::sleep_for(1500ms);
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    ASSERT_EQ(m->status, 200);
    const std::string series = "memscope_rss_anon_bytes{comm=\"target_mem_hog\",exe=\"" + target("mem_hog") + "\",cgroup=\"";
    EXPECT_NE(m->body.find(series), std::string::npos) << m->body.substr(0, 3000);
    EXPECT_GE(metric_value(m->body, "memscope_processes"), 3); // this test, the hog, the tracer at least
    EXPECT_EQ(m->body.find("pid="), std::string::npos);
    hog.close_stdin();
    hog.finish();
    kill(tracer.pid, SIGINT);
    tracer.finish();
    load(path);
}

} // namespace e2e
