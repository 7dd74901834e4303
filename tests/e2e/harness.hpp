// Shared by the end-to-end test files: run the real memscope-trace binary
// and the target programs, read what they print and the JSON they write.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace e2e {

using nlohmann::json;
using namespace std::chrono_literals;

inline const std::string kBin = MEMSCOPE_BIN;
inline const std::string kTargets = TARGET_DIR;

inline std::string target(const std::string& name) { return kTargets + "/target_" + name; }

// tracefs's uprobe_events, where the tracer finds it too.
inline std::string uprobe_events_file()
{
    for (const char* f : {"/sys/kernel/tracing/uprobe_events", "/sys/kernel/debug/tracing/uprobe_events"})
        if (access(f, F_OK) == 0)
            return f;
    return "/sys/kernel/tracing/uprobe_events";
}

// A child process with its stdio on pipes.
struct Child {
    pid_t pid = -1;
    int in = -1, out = -1, err = -1;
    std::string out_text, err_text;

    explicit Child(const std::vector<std::string>& argv)
    {
        int pi[2], po[2], pe[2];
        if (pipe2(pi, O_CLOEXEC) || pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC))
            abort();
        pid = fork();
        if (pid == 0) {
            dup2(pi[0], 0);
            dup2(po[1], 1);
            dup2(pe[1], 2);
            std::vector<char*> args;
            for (auto& a : argv)
                args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            execv(args[0], args.data());
            _exit(127);
        }
        close(pi[0]);
        close(po[1]);
        close(pe[1]);
        in = pi[1];
        out = po[0];
        err = pe[0];
    }
    ~Child()
    {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        for (int fd : {in, out, err})
            if (fd >= 0)
                close(fd);
    }

    void write_stdin(const std::string& s)
    {
        ASSERT_EQ(write(in, s.data(), s.size()), static_cast<ssize_t>(s.size()));
    }
    void close_stdin()
    {
        close(in);
        in = -1;
    }

    // Read until `needle` shows up in stdout (or stderr), or the deadline.
    bool wait_for(const std::string& needle, bool on_stderr, std::chrono::milliseconds limit = 20s)
    {
        auto deadline = std::chrono::steady_clock::now() + limit;
        std::string& text = on_stderr ? err_text : out_text;
        while (text.find(needle) == std::string::npos) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || !pump(static_cast<int>(left.count())))
                return text.find(needle) != std::string::npos;
        }
        return true;
    }

    // One round of reading whatever is ready; false at EOF on both.
    bool pump(int timeout_ms)
    {
        pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
        int nfds = 0;
        for (auto& f : fds)
            nfds += f.fd >= 0;
        if (nfds == 0)
            return false;
        if (poll(fds, 2, timeout_ms) <= 0)
            return false;
        char buf[4096];
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                (i == 0 ? out_text : err_text).append(buf, static_cast<size_t>(n));
            } else {
                close(fds[i].fd);
                (i == 0 ? out : err) = -1;
            }
        }
        return true;
    }

    long max_rss_kb = 0; // after finish()

    // Drain output and wait; returns the exit status as a shell shows it.
    int finish(std::chrono::seconds limit = 120s)
    {
        if (in >= 0)
            close_stdin();
        auto deadline = std::chrono::steady_clock::now() + limit;
        while ((out >= 0 || err >= 0) && std::chrono::steady_clock::now() < deadline)
            pump(200);
        int status = 0;
        while (true) {
            rusage usage{};
            pid_t r = wait4(pid, &status, WNOHANG, &usage);
            max_rss_kb = usage.ru_maxrss; // its own high-water mark, or a waited child's if larger
            if (r == pid)
                break;
            if (std::chrono::steady_clock::now() > deadline) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            std::this_thread::sleep_for(10ms);
        }
        pid = -1;
        return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    }
};

struct Result {
    int status;
    std::string out, err;
    long max_rss_kb = 0; // the process's peak resident set (or a child's it waited for, if larger)
};

// A text's lines, without their newlines.
inline std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> out;
    std::stringstream in(text);
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

inline bool in_ci()
{
    const char* ci = std::getenv("CI");
    return ci && std::string(ci) == "true";
}

// An executable's absolute path from PATH (then the usual places), or empty.
inline std::string on_path(const std::string& name)
{
    const char* env = std::getenv("PATH");
    std::stringstream dirs(std::string(env ? env : "") + ":/usr/bin:/bin:/usr/sbin:/sbin");
    for (std::string dir; std::getline(dirs, dir, ':');)
        if (!dir.empty() && dir[0] == '/' && access((dir + "/" + name).c_str(), X_OK) == 0)
            return dir + "/" + name;
    return {};
}

// Under CI=true a missing tool fails the test; elsewhere it skips it.
#define REQUIRE_TOOL(var, name, package)                                                      \
    const std::string var = on_path(name);                                                    \
    if (var.empty()) {                                                                        \
        if (in_ci())                                                                          \
            FAIL() << name " not found (CI=true forbids skipping): apt-get install " package; \
        GTEST_SKIP() << name " not found: apt-get install " package;                          \
    }

inline Result run(const std::vector<std::string>& argv, const std::string& input = {})
{
    Child c(argv);
    if (!input.empty())
        c.write_stdin(input);
    int st = c.finish();
    return {st, c.out_text, c.err_text, c.max_rss_kb};
}

inline std::string temp_json(const std::string& name)
{
    return "/tmp/memscope-e2e-" + std::to_string(getpid()) + "-" + name + ".json";
}

inline std::string read_all(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A report's stacks name frames by index into its "frames" table; the tests
// read them as the frames themselves (each index checked).
inline void expand_stacks(json& report)
{
    if (!report.is_object() || !report.contains("frames"))
        return;
    const json& frames = report["frames"];
    for (const char* list : {"sites", "leaks"}) {
        if (!report.contains(list))
            continue;
        for (auto& entry : report[list]) {
            json stack = json::array();
            for (const auto& i : entry["stack"]) {
                EXPECT_TRUE(i.is_number_unsigned() && i.get<std::size_t>() < frames.size()) << i;
                stack.push_back(i.is_number_unsigned() && i.get<std::size_t>() < frames.size() ? frames[i.get<std::size_t>()]
                                                                                                : json());
            }
            entry["stack"] = std::move(stack);
        }
    }
}

inline json load(const std::string& path)
{
    std::ifstream in(path);
    EXPECT_TRUE(in.good()) << "no report at " << path;
    json j = json::parse(in, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << path << " is not valid JSON";
    std::remove(path.c_str());
    expand_stacks(j);
    return j;
}

inline const json* thread_named(const json& report, const std::string& name)
{
    for (const auto& t : report["threads"])
        if (t["name"] == name)
            return &t;
    return nullptr;
}

// BPF needs root; in CI a test that cannot trace must fail, not skip.
class E2E : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0) {
            const char* ci = std::getenv("CI");
            if (ci && std::string(ci) == "true")
                FAIL() << "end-to-end tests need root for BPF, and CI=true forbids skipping them";
            GTEST_SKIP() << "not root: BPF end-to-end tests skipped (they fail instead under CI=true)";
        }
    }

    json trace_run(const std::vector<std::string>& cmd, int expect_status = 0, const std::string& input = {})
    {
        std::string path = temp_json(::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::vector<std::string> argv{kBin, "run", "--json", path, "--"};
        argv.insert(argv.end(), cmd.begin(), cmd.end());
        Result r = run(argv, input);
        EXPECT_EQ(r.status, expect_status) << r.err;
        last_ = r;
        return load(path);
    }
    Result last_;
};

inline void expect_counters(const json& t, std::uint64_t alloc_count, std::uint64_t alloc_bytes,
                     std::uint64_t free_count, std::uint64_t free_bytes, std::uint64_t live_count,
                     std::uint64_t live_bytes, std::uint64_t peak)
{
    EXPECT_EQ(t["alloc_count"], alloc_count) << t.dump();
    EXPECT_EQ(t["alloc_bytes"], alloc_bytes) << t.dump();
    EXPECT_EQ(t["free_count"], free_count) << t.dump();
    EXPECT_EQ(t["free_bytes"], free_bytes) << t.dump();
    EXPECT_EQ(t["live_count"], live_count) << t.dump();
    EXPECT_EQ(t["live_bytes"], live_bytes) << t.dump();
    EXPECT_EQ(t["peak_live_bytes"], peak) << t.dump();
}

// threads_c's workers, producer and consumer, exactly (see
// tests/targets/threads_c.c).
inline void expect_threads_c(const json& r, int nthreads, int base, const std::string& how)
{
    for (int i = 0; i < nthreads; ++i) {
        SCOPED_TRACE(how + ", worker-" + std::to_string(i));
        const json* t = thread_named(r, "worker-" + std::to_string(i));
        ASSERT_NE(t, nullptr) << r["threads"].dump(1);
        std::uint64_t n = base + 100 * i, keep = i + 1, bytes = 0, kept = 0;
        for (std::uint64_t j = 0; j < n; ++j) {
            std::uint64_t s = 16 * (i + 1) + j % 7;
            bytes += s;
            if (j >= n - keep)
                kept += s;
        }
        expect_counters(*t, n, bytes, n - keep, bytes - kept, keep, kept, bytes);
        EXPECT_EQ((*t)["failed_alloc_count"], 0);
        EXPECT_EQ((*t)["unmatched_free_count"], 0);
    }
    const json* producer = thread_named(r, "producer");
    const json* consumer = thread_named(r, "consumer");
    ASSERT_TRUE(producer && consumer) << how;
    expect_counters(*producer, 500, 500 * 48, 0, 0, 0, 0, 500 * 48);
    expect_counters(*consumer, 0, 0, 500, 500 * 48, 0, 0, 0);
}

} // namespace e2e
