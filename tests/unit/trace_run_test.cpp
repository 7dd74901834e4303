// The trace loop without root: a fake TraceSource (an eventfd for the event
// ring, scripted snapshots, a record of mode switches) and a real child as
// the target, so that the pidfd, the signalfd and the control socket are
// the loop's own. The end-to-end tests run the same loop over real BPF.
#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "../temp_dir.hpp"
#include "control.hpp"
#include "proc.hpp"
#include "session.hpp"
#include "signals.hpp"
#include "trace_run.hpp"
#include "trace_source.hpp"

using namespace memscope;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// Two threads whose counters grow with each snapshot: on the nth, 15n
// allocations of 960n bytes, 9n frees of 576n bytes, 6n blocks live.
Snapshot counting_snapshot(int pid, int n)
{
    const auto k = static_cast<std::uint64_t>(n);
    Snapshot s;
    ThreadStats a, b;
    a.pid = b.pid = static_cast<std::uint32_t>(pid);
    a.tid = static_cast<std::uint32_t>(pid);
    b.tid = static_cast<std::uint32_t>(pid) + 1;
    a.name = "main";
    b.name = "worker";
    a.counters = {10 * k, 640 * k, 7 * k, 448 * k, 3 * k, 192 * k, 192 * k};
    b.counters = {5 * k, 320 * k, 2 * k, 128 * k, 3 * k, 192 * k, 192 * k};
    s.threads = {a, b};
    s.live_bytes_sum = 384 * k;
    return s;
}

// Needs no root and no BPF: what the loop asks of it is scripted, what it
// tells it is recorded.
class FakeSource : public TraceSource {
public:
    FakeSource() : events_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
    ~FakeSource() override { close(events_); }

    // --- the script ---
    std::function<Snapshot(int pid, int n)> script = counting_snapshot; // the nth snapshot (from 1)
    std::function<void(Mode)> on_set_mode;
    double costs[3] = {900, 400, 150};

    // --- the record ---
    mutable int snapshots = 0; // taken so far
    std::vector<Mode> modes_set;
    std::map<int, Mode> process_modes;
    bool detached = false;
    int measured = 0;
    std::uint64_t events = 0;                  // eventfd counts drained
    std::optional<Clock::time_point> first_event; // when the first was drained

    // An "event" in the ring: the loop must wake and drain it.
    void post_event()
    {
        std::uint64_t one = 1;
        ASSERT_EQ(write(events_, &one, sizeof one), static_cast<ssize_t>(sizeof one));
    }

    bool add_target(int, std::string&) override { return true; }
    void remove_target(int) override {}
    bool hold_at_loader(int, int) override { return false; }
    bool take_hold_signal(int, int) override { return false; }
    void forget_image(int, std::uint32_t) override {}
    void forget_process(int) override {}
    void release_process(int, Release) override {}
    void thread_exiting(int, int, std::uint64_t) override {}
    void watch_threads(int) override {}
    std::uint64_t probe_lapses(int) const override { return 0; }

    int attach_allocator(int, const std::string&, const ElfScan&, std::string&) override { return 0; }
    bool attach_tracker(int, const std::string&, const TrackerNote&, std::uint32_t, std::string& error) override
    {
        error = "no tracker in the fake";
        return false;
    }
    void add_unwind_file(const MappedFile&) override {}
    std::string hold(const MappedFile& file) override { return file.host; }
    std::string shown(const std::string& host_path) const override { return host_path; }

    int events_fd() const override { return events_; }
    void drain_events() override
    {
        std::uint64_t n = 0;
        if (read(events_, &n, sizeof n) == static_cast<ssize_t>(sizeof n) && n > 0) {
            events += n;
            if (!first_event)
                first_event = Clock::now();
        }
    }
    Snapshot snapshot(int pid, std::uint32_t) const override { return script(pid, ++snapshots); }
    std::vector<RawRecord> records(int) const override { return {}; }
    std::vector<RawSite> sites(int) const override { return {}; }
    std::vector<std::uint64_t> stack(std::uint64_t) const override { return {}; }
    std::uint32_t stack_depth() const override { return 0; }

    void set_mode(Mode mode) override
    {
        mode_ = mode;
        modes_set.push_back(mode);
        if (on_set_mode)
            on_set_mode(mode);
    }
    void set_process_mode(int pid, Mode mode) override { process_modes[pid] = mode; }
    Mode mode() const override { return mode_; }
    void mark_gap() override {}
    void detach_probes() override { detached = true; }
    std::string reattach_probes() override
    {
        detached = false;
        return {};
    }
    bool probes_attached() const override { return !detached; }
    std::string measure_hit_costs(double (&cost_ns)[3]) override
    {
        ++measured;
        for (int i = 0; i < 3; ++i)
            cost_ns[i] = costs[i];
        return {};
    }

    std::uint64_t map_bytes() const override { return 4096; }
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> program_stats() const override
    {
        return {{"alloc_enter", {42, 4200}}};
    }
    const UnwindStats& unwind_stats() const override { return unwind_; }

private:
    int events_;
    Mode mode_ = Mode::normal;
    UnwindStats unwind_;
};

// Whether `pid`, our child, has exited (left a zombie: not reaped here), and how.
bool exited(int pid, int& wait_status)
{
    siginfo_t si{};
    if (waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid != pid)
        return false;
    wait_status = si.si_code == CLD_EXITED ? si.si_status << 8 : si.si_status;
    return true;
}

class TraceRunTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        // The loop blocks its signals and, once done, sets handlers for the
        // ending ones: the test program gets its own back afterwards.
        sigprocmask(SIG_SETMASK, nullptr, &mask_);
        for (int i = 0; i < 3; ++i)
            sigaction(kEnding[i], nullptr, &actions_[i]);
    }

    void TearDown() override
    {
        if (child_ > 0) {
            kill(child_, SIGKILL);
            waitpid(child_, nullptr, 0);
        }
        if (pidfd_ >= 0)
            close(pidfd_);
        for (int i = 0; i < 3; ++i)
            sigaction(kEnding[i], &actions_[i], nullptr);
        sigprocmask(SIG_SETMASK, &mask_, nullptr);
    }

    // The target: a child that waits to be killed, or exits with `code`
    // after `exit_after_ms`.
    void start_target(int exit_after_ms = -1, int code = 0)
    {
        child_ = fork();
        ASSERT_GE(child_, 0);
        if (child_ == 0) {
            if (exit_after_ms >= 0) {
                usleep(static_cast<useconds_t>(exit_after_ms) * 1000);
                _exit(code);
            }
            for (;;)
                pause();
        }
        pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, child_, 0));
        ASSERT_GE(pidfd_, 0);
    }

    bool target_alive() const
    {
        int ws = 0;
        return !exited(child_, ws);
    }

    // As the CLI does it (`-p`): a session, its start mode, the run; the
    // control socket in a directory of the test's own. `meanwhile` runs on
    // a thread of its own while the loop runs (the loop's signals blocked
    // there too).
    Report trace(RunSettings settings, const std::function<void()>& meanwhile = {},
                 const std::function<void(const Report&)>& on_snapshot = {}, const Calibration& calibration = {})
    {
        if (settings.control_path.empty()) {
            settings.control_path = dir_ / "ctl.sock";
            settings.control_uid = geteuid();
        }
        const int sigfd = trace_signal_fd();
        Session session(source_, child_, 1000);
        const std::string err = settings.auto_mode ? session.start_mode(Mode::normal, "--mode auto", true)
                                                   : session.start_mode(Mode::normal, "default", false);
        EXPECT_EQ(err, "");
        Traced traced;
        traced.pid = child_;
        traced.pidfd = pidfd_;
        traced.target.pid = child_;
        traced.target.exe = process_exe(child_);
        TraceRun run(source_, session, traced, settings, sigfd, calibration);
        run.on_snapshot = on_snapshot;
        main_ = pthread_self();
        std::thread helper;
        if (meanwhile)
            helper = std::thread(meanwhile);
        int status = -1;
        Report report = run.run(status);
        if (helper.joinable())
            helper.join();
        close(sigfd);
        return report;
    }

    // From `meanwhile`: a signal for the loop's thread (its signalfd).
    void signal_loop(int sig) const { pthread_kill(main_, sig); }

    static constexpr int kEnding[3] = {SIGINT, SIGTERM, SIGHUP};
    FakeSource source_;
    memscope_test::TempDir dir_;
    int child_ = -1, pidfd_ = -1;
    pthread_t main_{};
    sigset_t mask_{};
    struct sigaction actions_[3] {};
};

} // namespace

TEST_F(TraceRunTest, EndsWhenTheTargetExitsWithTheLastSnapshotsFigures)
{
    start_target(150, 3);
    // Like the BPF side, the fake says so once the target is gone.
    source_.script = [](int pid, int n) {
        Snapshot s = counting_snapshot(pid, n);
        s.exited = exited(pid, s.wait_status);
        return s;
    };
    RunSettings settings;
    settings.interval = 0.02;
    settings.duration = 5; // a bound, should the pidfd go unseen
    Report r = trace(settings);

    EXPECT_LT(r.duration_s, 4.0);
    EXPECT_FALSE(target_alive()); // not over before the target was
    ASSERT_GE(source_.snapshots, 3); // the loop ticked
    // The final report is the last snapshot, exactly.
    const auto n = static_cast<std::uint64_t>(source_.snapshots);
    EXPECT_EQ(r.totals.alloc_count, 15 * n);
    EXPECT_EQ(r.totals.alloc_bytes, 960 * n);
    EXPECT_EQ(r.totals.free_count, 9 * n);
    EXPECT_EQ(r.totals.free_bytes, 576 * n);
    EXPECT_EQ(r.totals.live_count, 6 * n);
    EXPECT_EQ(r.totals.live_bytes, 384 * n);
    ASSERT_EQ(r.threads.size(), 2u);
    ASSERT_TRUE(r.target.exit_code.has_value());
    EXPECT_EQ(*r.target.exit_code, 3);
    EXPECT_EQ(r.mode, "normal");
    EXPECT_TRUE(r.mode_changes.empty());
    EXPECT_TRUE(source_.modes_set.empty());
    // The tracer's own cost comes from the source.
    EXPECT_EQ(r.tracer.bpf_map_bytes, 4096u);
    EXPECT_EQ(r.tracer.programs.at("alloc_enter").first, 42u);
}

TEST_F(TraceRunTest, DurationEndsTheRun)
{
    start_target();
    RunSettings settings;
    settings.interval = 0.05;
    settings.duration = 0.3;
    Report r = trace(settings);

    EXPECT_GE(r.duration_s, 0.3);
    EXPECT_LT(r.duration_s, 2.0);
    EXPECT_TRUE(target_alive());
    EXPECT_FALSE(r.target.exit_code.has_value());
    EXPECT_EQ(r.totals.alloc_count, 15u * static_cast<std::uint64_t>(source_.snapshots));
}

TEST_F(TraceRunTest, SigtermAndSigintEndTheRun)
{
    start_target();
    for (int sig : {SIGTERM, SIGINT}) {
        RunSettings settings;
        settings.interval = 0.05;
        settings.duration = 5;
        Report r = trace(settings, [&] {
            std::this_thread::sleep_for(100ms);
            signal_loop(sig);
        });
        EXPECT_GE(r.duration_s, 0.1) << strsignal(sig);
        EXPECT_LT(r.duration_s, 4.0) << strsignal(sig);
        EXPECT_TRUE(target_alive()) << strsignal(sig); // `-p`: the target is not ours to stop
        EXPECT_EQ(ending_signal(), 0) << strsignal(sig); // read by the loop, not left for after it
    }
}

TEST_F(TraceRunTest, Sigusr1WritesASnapshotAndTracingGoesOn)
{
    start_target();
    std::vector<Report> snapshots;
    std::vector<int> taken_at; // the source's snapshot count when each was made
    RunSettings settings;
    settings.interval = 0.02;
    settings.duration = 5;
    Report r = trace(
        settings,
        [&] {
            std::this_thread::sleep_for(100ms);
            signal_loop(SIGUSR1);
            std::this_thread::sleep_for(200ms);
            signal_loop(SIGTERM);
        },
        [&](const Report& snap) {
            snapshots.push_back(snap);
            taken_at.push_back(source_.snapshots);
        });

    ASSERT_EQ(snapshots.size(), 1u);
    const auto at = static_cast<std::uint64_t>(taken_at[0]);
    EXPECT_EQ(snapshots[0].totals.alloc_count, 15 * at);
    EXPECT_EQ(snapshots[0].totals.free_bytes, 576 * at);
    EXPECT_LT(snapshots[0].duration_s, r.duration_s);
    // The run went on after it, and ended at SIGTERM.
    EXPECT_GT(source_.snapshots, taken_at[0] + 2);
    EXPECT_EQ(r.totals.alloc_count, 15u * static_cast<std::uint64_t>(source_.snapshots));
    EXPECT_GE(r.duration_s, 0.3);
    EXPECT_LT(r.duration_s, 4.0);
}

TEST_F(TraceRunTest, ControlRequestsSwitchTheMode)
{
    start_target();
    const std::string path = dir_ / "ctl.sock";
    std::string to_fast, status, to_off, bad;
    std::vector<std::string> errors;
    RunSettings settings;
    settings.interval = 0.05;
    settings.duration = 5;
    settings.control_path = path;
    settings.control_uid = geteuid();
    Report r = trace(settings, [&] {
        for (auto [request, reply] : {std::pair{"mode fast", &to_fast}, std::pair{"status", &status},
                                      std::pair{"mode off", &to_off}, std::pair{"mode loud", &bad}})
            if (auto e = control_request(path, request, *reply); !e.empty())
                errors.push_back(e);
        kill(child_, SIGKILL); // the run ends with its target
    });

    EXPECT_TRUE(errors.empty()) << errors.front();
    auto fast = nlohmann::json::parse(to_fast);
    EXPECT_EQ(fast["ok"], true);
    EXPECT_EQ(fast["mode"], "fast");
    auto st = nlohmann::json::parse(status);
    EXPECT_EQ(st["mode"], "fast");
    EXPECT_EQ(st["mode_changes"], 1);
    EXPECT_EQ(st["probes_attached"], true);
    EXPECT_EQ(st["auto"], false);
    EXPECT_EQ(st["cost_per_hit_ns"]["normal"], 900.0); // measured once, through the source
    EXPECT_EQ(source_.measured, 1);
    EXPECT_EQ(nlohmann::json::parse(to_off)["mode"], "off");
    EXPECT_TRUE(nlohmann::json::parse(bad).contains("error")) << bad;

    // fast: the BPF side's mode; off: the probes detached (the mode stays).
    EXPECT_EQ(source_.modes_set, std::vector<Mode>{Mode::fast});
    EXPECT_TRUE(source_.detached);
    EXPECT_EQ(r.mode, "off");
    ASSERT_EQ(r.mode_changes.size(), 2u);
    EXPECT_EQ(r.mode_changes[0].from, Mode::normal);
    EXPECT_EQ(r.mode_changes[0].to, Mode::fast);
    EXPECT_EQ(r.mode_changes[0].reason, "ctl");
    EXPECT_EQ(r.mode_changes[1].from, Mode::fast);
    EXPECT_EQ(r.mode_changes[1].to, Mode::off);
    EXPECT_LE(r.mode_changes[0].t_s, r.mode_changes[1].t_s);
    EXPECT_FALSE(r.live_bytes_exact); // a stint off: blocks came and went unseen
    EXPECT_LT(r.duration_s, 4.0);
}

TEST_F(TraceRunTest, AutoModeStepsDownWhenHitsCostTooMuch)
{
    start_target();
    // Ten million calls between snapshots at 900 ns a hit (the fake's
    // measured cost): far over a 5% budget of a sleeping target's CPU, in
    // any mode. Auto steps down once per half-second measurement.
    source_.script = [](int pid, int n) {
        Snapshot s = counting_snapshot(pid, n);
        s.threads[0].counters.alloc_count = 10'000'000ull * static_cast<std::uint64_t>(n);
        return s;
    };
    source_.costs[0] = source_.costs[1] = source_.costs[2] = 900;
    // Async is the bottom: the run ends there, not at a moment guessed.
    source_.on_set_mode = [this](Mode m) {
        if (m == Mode::async)
            kill(child_, SIGKILL);
    };
    RunSettings settings;
    settings.interval = 0.05;
    settings.duration = 5;
    settings.auto_mode = true;
    settings.overhead_budget = 5;
    Calibration calibration;
    calibration.done = true;
    for (int i = 0; i < 3; ++i)
        calibration.costs[i] = source_.costs[i];
    Report r = trace(settings, {}, {}, calibration);

    EXPECT_EQ(source_.modes_set, (std::vector<Mode>{Mode::fast, Mode::async}));
    EXPECT_EQ(r.mode, "async");
    EXPECT_EQ(r.mode_source, "--mode auto");
    ASSERT_EQ(r.mode_changes.size(), 2u);
    EXPECT_EQ(r.mode_changes[0].to, Mode::fast);
    EXPECT_EQ(r.mode_changes[1].to, Mode::async);
    for (const auto& c : r.mode_changes)
        EXPECT_EQ(c.reason.rfind("auto: estimated overhead", 0), 0u) << c.reason;
    EXPECT_GE(r.mode_changes[0].t_s, 0.5); // the first measurement spans half a second
    EXPECT_GE(r.mode_changes[1].t_s - r.mode_changes[0].t_s, 0.45);
    EXPECT_EQ(source_.measured, 0); // calibrated before the run
    EXPECT_LT(r.duration_s, 4.0);
}

TEST_F(TraceRunTest, AnEventWakesTheLoop)
{
    start_target();
    RunSettings settings;
    settings.interval = 2; // no tick in the meantime: only the event ring wakes it
    settings.duration = 5;
    Clock::time_point posted;
    Report r = trace(settings, [&] {
        std::this_thread::sleep_for(50ms);
        posted = Clock::now();
        source_.post_event();
        std::this_thread::sleep_for(600ms);
        kill(child_, SIGKILL);
    });

    EXPECT_EQ(source_.events, 1u);
    ASSERT_TRUE(source_.first_event.has_value());
    EXPECT_LT(*source_.first_event - posted, 400ms);
    EXPECT_LT(r.duration_s, 4.0);
}
