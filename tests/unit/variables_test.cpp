#include <gtest/gtest.h>

#include "variables.hpp"

using namespace memscope;

static Variable call(std::uint32_t desc, std::uint64_t addr, std::uint64_t size, bool heap = true)
{
    Variable c;
    c.tgid = 10;
    c.tid = 11;
    c.addr = addr;
    c.size = size;
    c.heap = heap;
    c.alloc_ns = 90;
    c.desc = desc;
    return c;
}

TEST(Variables, InternSharesEqualDescriptors)
{
    VariableTable t(10);
    Descriptor a{"v", "int", "f.c", 3, 1, true};
    Descriptor b{"v", "int", "f.c", 4, 1, true};
    EXPECT_EQ(t.intern(a), 0u);
    EXPECT_EQ(t.intern(b), 1u);
    EXPECT_EQ(t.intern(a), 0u);
    EXPECT_EQ(t.descriptors().size(), 2u);
}

TEST(Variables, FreeAndMoveFollowTheBlock)
{
    VariableTable t(10);
    auto d = t.intern({"buf", "", "f.c", 1, 1, true});
    t.on_track(call(d, 0x1000, 64));
    t.on_track(call(d, 0x2000, 32));
    t.on_track(call(d, 0, 8, false)); // no block
    t.on_move(10, 0x1000, 0x5000, 4096);
    t.on_free(10, 0x5000, 500);
    t.on_free(10, 0x2000 + 1, 600); // not a tracked block: nothing
    t.on_free(99, 0x2000, 600);     // another process: nothing
    const auto& v = t.variables();
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[0].addr, 0x5000u);
    EXPECT_EQ(v[0].size, 4096u);
    EXPECT_EQ(v[0].free_ns, 500u);
    EXPECT_EQ(v[1].free_ns, 0u);
    EXPECT_EQ(v[2].free_ns, 0u);

    auto s = t.summary();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].count, 3u);
    EXPECT_EQ(s[0].bytes, 4096u + 32 + 8);
    EXPECT_EQ(s[0].live_count, 1u); // only heap blocks count as live
    EXPECT_EQ(s[0].live_bytes, 32u);
}

TEST(Variables, TwoVariablesOnOneBlockBothEnd)
{
    VariableTable t(10);
    auto a = t.intern({"a", "", "f.c", 1, 1, true});
    auto b = t.intern({"b", "", "f.c", 2, 1, true});
    t.on_track(call(a, 0x1000, 64));
    t.on_track(call(b, 0x1000, 64));
    t.on_free(10, 0x1000, 700);
    EXPECT_EQ(t.variables()[0].free_ns, 700u);
    EXPECT_EQ(t.variables()[1].free_ns, 700u);
}

TEST(Variables, BoundedAndCounted)
{
    VariableTable t(2);
    auto d = t.intern({"x", "", "f.c", 1, 1, true});
    for (int i = 0; i < 5; ++i)
        t.on_track(call(d, 0x1000 + 16 * i, 16));
    EXPECT_EQ(t.variables().size(), 2u);
    EXPECT_EQ(t.dropped(), 3u);
}

TEST(Variables, SummaryLargestFirst)
{
    VariableTable t(10);
    auto small = t.intern({"small", "", "f.c", 1, 1, true});
    auto big = t.intern({"big", "", "f.c", 2, 1, true});
    t.on_track(call(small, 0x1000, 10));
    t.on_track(call(big, 0x2000, 1000));
    auto s = t.summary();
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(t.descriptors()[s[0].desc].name, "big");
}

TEST(Variables, CountedByNameJoinTheirGroup)
{
    VariableTable t(10);
    auto listed = t.intern({"buf", "T", "f.c", 1, 1, true});
    auto same_name_other_line = t.intern({"buf", "T", "f.c", 9, 1, true});
    auto other = t.intern({"other", "", "f.c", 2, 1, true});
    t.on_track(call(listed, 0x1000, 10));
    auto s = t.summary({{same_name_other_line, 5, 500, 0, 0}, {other, 2, 2000, 0, 0}});
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(t.descriptors()[s[0].desc].name, "other"); // largest bytes first
    EXPECT_EQ(s[0].count, 2u);
    EXPECT_EQ(s[0].live_count, 0u);
    EXPECT_EQ(s[1].count, 6u);
    EXPECT_EQ(s[1].bytes, 510u);
    EXPECT_EQ(s[1].live_count, 1u); // only the listed one is known to be live
}
