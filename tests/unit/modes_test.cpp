#include <gtest/gtest.h>

#include <string>

#include "control.hpp"
#include "modes.hpp"

using namespace memscope;
using namespace std::string_literals;

TEST(Modes, Names)
{
    for (Mode m : {Mode::normal, Mode::fast, Mode::async, Mode::off})
        EXPECT_EQ(parse_mode(mode_name(m)), m);
    EXPECT_FALSE(parse_mode("turbo"));
    EXPECT_FALSE(parse_mode(""));
    EXPECT_EQ(mode_from_request(1), Mode::fast);
    EXPECT_FALSE(mode_from_request(7));
}

TEST(Modes, EnvironmentAsProcShowsIt)
{
    EXPECT_FALSE(mode_from_environment(""));
    EXPECT_FALSE(mode_from_environment("PATH=/bin\0MEMSCOPE_TEST_MODE=0\0"s));
    auto fast = mode_from_environment("A=1\0MEMSCOPE_TEST_MODE=1\0B=2"s);
    ASSERT_TRUE(fast);
    EXPECT_EQ(fast->mode, Mode::fast);
    EXPECT_EQ(fast->source, "environment MEMSCOPE_TEST_MODE=1");
    // The lightest asked for wins.
    auto both = mode_from_environment("MEMSCOPE_TEST_MODE=1\0MEMSCOPE_DISABLE_GLOBAL=1\0"s);
    ASSERT_TRUE(both);
    EXPECT_EQ(both->mode, Mode::async);
    EXPECT_EQ(both->source, "environment MEMSCOPE_DISABLE_GLOBAL=1");
    // A name that only starts the same is not the variable.
    EXPECT_FALSE(mode_from_environment("XMEMSCOPE_ASYNC_MODE=1\0"s));
}

TEST(Modes, AutoStepsDownOverBudgetNeverOff)
{
    const double cost[3] = {900, 800, 700}; // ns a hit
    AutoPolicy p(5.0, cost);
    // 1M hits/s at 0.9 us is 0.9 s of a 1 s CPU second: far over 5%.
    auto d = p.decide(Mode::normal, 1e6, 1.0);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->first, Mode::fast);
    d = p.decide(Mode::fast, 1e6, 1.0);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->first, Mode::async);
    EXPECT_FALSE(p.decide(Mode::async, 1e6, 1.0)); // the lightest it goes
    EXPECT_FALSE(p.decide(Mode::off, 1e6, 1.0));
}

TEST(Modes, AutoStepsUpWithRoomOnlyAndIgnoresNoise)
{
    const double cost[3] = {1000, 1000, 1000};
    AutoPolicy p(5.0, cost);
    // Idle: back up one step at a time.
    auto d = p.decide(Mode::async, 0, 0);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->first, Mode::fast);
    EXPECT_EQ(p.decide(Mode::fast, 0, 0)->first, Mode::normal);
    EXPECT_FALSE(p.decide(Mode::normal, 0, 0));
    // 3% in the mode up is under the budget but not under half of it: stay.
    EXPECT_FALSE(p.decide(Mode::async, 30000, 1.0));
    // A few hundred hits a second on a target whose CPU reads zero: noise, not 100%.
    EXPECT_EQ(p.estimate_pct(Mode::normal, 500, 0), 0);
    EXPECT_FALSE(p.decide(Mode::normal, 500, 0));
    // A sleeping target whose CPU is all probes: 100, not 100.00000000000001.
    for (double hits : {3000.0, 7777.0, 123457.0})
        EXPECT_LE(p.estimate_pct(Mode::normal, hits, 0), 100.0) << hits;
}

TEST(Control, OneParserForBothSidesOfTheProtocol)
{
    std::string why;
    auto m = memscope::parse_control_line("mode async", why);
    ASSERT_TRUE(m.has_value()) << why;
    EXPECT_EQ(m->kind, memscope::ControlRequest::Kind::mode);
    EXPECT_EQ(m->mode, memscope::Mode::async);
    auto s = memscope::parse_control_request({"status"}, why);
    ASSERT_TRUE(s.has_value()) << why;
    EXPECT_EQ(s->kind, memscope::ControlRequest::Kind::status);
    for (const std::string bad : {"", "mode", "mode turbo", "mode fast extra", "status now", "mode  fast", "stop"}) {
        EXPECT_FALSE(memscope::parse_control_line(bad, why).has_value()) << bad;
        EXPECT_FALSE(why.empty()) << bad;
        EXPECT_EQ(why.find('\n'), std::string::npos);
    }
    EXPECT_FALSE(memscope::parse_control_request({}, why).has_value());
}
