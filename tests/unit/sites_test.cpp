// Allocation sites and leaks from raw counts and records, the folded-stack
// writer, demangling and the return-address check: no BPF needed.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <map>
#include <cstdlib>
#include <string>

#include "probe_sites.hpp"
#include "report_collapsed.hpp"
#include "report_json.hpp"
#include "report_text.hpp"
#include "sites.hpp"
#include "symbolizer.hpp"
#include "frames.hpp"

using namespace memscope;
using memscope_test::frame;

namespace {

Report report_with_threads()
{
    Report r;
    ThreadStats a;
    a.tid = 10;
    a.start_ns = 1;
    a.name = "main";
    ThreadStats b;
    b.tid = 11;
    b.start_ns = 2;
    b.name = "worker";
    r.threads = {a, b};
    r.totals.alloc_count = 7;
    return r;
}

std::string collapsed(const Report& doc, const std::string& weight)
{
    char* buf = nullptr;
    size_t size = 0;
    std::FILE* f = open_memstream(&buf, &size);
    EXPECT_TRUE(write_collapsed(doc, weight, f));
    std::fclose(f);
    std::string out(buf, size);
    std::free(buf);
    return out;
}

} // namespace

TEST(Sites, LiveFiguresAndLeaksComeFromTheOutstandingRecords)
{
    Report r = report_with_threads();
    std::vector<SiteInput> sites = {
        {1, {frame("operator new(unsigned long)", "/usr/lib/libstdc++.so.6"), frame("make_widget()"), frame("main")},
         false, 5, 320},
        {2, {frame("leak_shallow(unsigned long)"), frame("main")}, false, 2, 200},
        {3, {frame("churn()")}, true, 10, 4000},
    };
    std::vector<OutstandingBlock> blocks = {
        {1, 64, 1'000'000'000, 10, 1, {}}, {1, 64, 2'000'000'000, 11, 2, {4}}, {1, 64, 3'000'000'000, 11, 2, {4}},
        {2, 100, 2'500'000'000, 10, 1, {}},
        {0, 8, 0, 10, 1, {}}, // made in fast mode: no stack
    };
    add_sites(r, sites, blocks, 5'000'000'000, 32);

    ASSERT_EQ(r.sites.size(), 3u);
    EXPECT_EQ(r.sites[0].id, 3u); // largest alloc_bytes first
    EXPECT_EQ(r.sites[1].id, 1u);
    EXPECT_EQ(r.sites[1].live_count, 3u);
    EXPECT_EQ(r.sites[1].live_bytes, 192u);
    EXPECT_EQ(r.sites[0].live_count, 0u);
    EXPECT_EQ(r.stacks.distinct, 3u);
    EXPECT_DOUBLE_EQ(r.stacks.truncated_share, 10.0 / 17.0);
    EXPECT_EQ(r.stacks.outstanding_without_stack, 1u);

    ASSERT_EQ(r.leaks.size(), 2u);
    const Leak& w = r.leaks[0];
    EXPECT_EQ(w.id, 1u);
    EXPECT_EQ(w.live_count, 3u);
    EXPECT_EQ(w.live_bytes, 192u);
    EXPECT_DOUBLE_EQ(w.oldest_age_s, 4.0);
    ASSERT_EQ(w.threads.size(), 2u);
    EXPECT_EQ(w.threads[0].name, "worker"); // more bytes first
    EXPECT_EQ(w.threads[0].live_count, 2u);
    EXPECT_EQ(w.threads[1].name, "main");
    ASSERT_EQ(w.variables.size(), 1u);
    EXPECT_EQ(w.variables[0].desc, 4u);
    EXPECT_EQ(w.variables[0].count, 2u);
    EXPECT_EQ(w.variables[0].bytes, 128u);
    EXPECT_TRUE(w.expected.empty());
    EXPECT_EQ(r.leaks[1].live_bytes, 100u);

    // The site is named after the first frame past operator new.
    ASSERT_NE(site_function(r.sites[1].stack), nullptr);
    EXPECT_EQ(site_function(r.sites[1].stack)->symbol, "make_widget()");
}

TEST(Sites, RuntimeLifetimeAllocationsAreExpectedNotProgramLeaks)
{
    EXPECT_EQ(expected_reason({frame("_IO_file_doallocate", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
                               frame("puts", "/usr/lib/x86_64-linux-gnu/libc.so.6"), frame("main")}),
              "stdio buffer, kept until exit");
    EXPECT_FALSE(expected_reason({frame("", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30")}).empty());
    EXPECT_FALSE(expected_reason({frame("_dl_new_object", "/usr/lib64/ld-linux-x86-64.so.2")}).empty());
    // A program frame, or a stack that starts in libc (strdup from code
    // without frame pointers), is the program's.
    EXPECT_TRUE(expected_reason({frame("operator new(unsigned long)", "/usr/lib/libstdc++.so.6"),
                                 frame("make_widget()")})
                    .empty());
    EXPECT_TRUE(expected_reason({frame("strdup", "/usr/lib/x86_64-linux-gnu/libc.so.6")}).empty());
    EXPECT_TRUE(expected_reason({}).empty());
    // A short walk: the runtime's start-up code (no symbols) is expected; a
    // walk that stopped in a function programs call is the program's.
    EXPECT_FALSE(expected_reason({frame("", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30")}, true).empty());
    EXPECT_TRUE(expected_reason({frame("operator new(unsigned long)", "/usr/lib/libstdc++.so.6"),
                                 frame("std::__cxx11::basic_string<char>::_M_create(unsigned long&, unsigned long)",
                                       "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30")},
                                true)
                    .empty());
    EXPECT_FALSE(expected_reason({frame("operator new(unsigned long)", "/usr/lib/libstdc++.so.6"),
                                  frame("", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30")},
                                 true)
                     .empty());
}

TEST(Sites, JsonAndTextCarrySitesAndLeaks)
{
    Report r = report_with_threads();
    add_sites(r, {{7, {frame("leak_deep()"), frame("a()"), frame("main")}, false, 2, 2048}},
              {{7, 1024, 1, 10, 1, {}}, {7, 1024, 1, 10, 1, {}}}, 1'000'000'001, 32);
    nlohmann::json j = report_to_json(r);
    // 7 allocations counted, 2 with a stack: the other 5 on a labelled row,
    // so the sites add up to the totals.
    ASSERT_EQ(j["sites"].size(), 2u);
    EXPECT_EQ(j["sites"][1]["function"], "(no stack recorded)");
    EXPECT_EQ(j["sites"][1]["alloc_count"], 5);
    EXPECT_EQ(j["sites"][1]["end"], "no stack was taken for these allocations");
    EXPECT_EQ(j["sites"][0]["id"], "0000000000000007");
    EXPECT_EQ(j["sites"][0]["function"], "leak_deep()");
    // Stacks name frames by index into one table, each distinct frame once.
    ASSERT_EQ(j["frames"].size(), 4u) << j["frames"].dump(); // and the labelled row's
    EXPECT_EQ(j["sites"][0]["stack"], nlohmann::json::array({0, 1, 2}));
    EXPECT_EQ(j["leaks"][0]["stack"], j["sites"][0]["stack"]);
    EXPECT_EQ(j["frames"][0]["symbol"], "leak_deep()");
    EXPECT_EQ(j["frames"][0]["module"], "/usr/bin/app");
    EXPECT_EQ(j["frames"][0]["offset"], 0x1000);
    EXPECT_EQ(j["frames"][2]["symbol"], "main");
    EXPECT_EQ(j["sites"][0]["live_bytes"], 2048);
    ASSERT_EQ(j["leaks"].size(), 1u);
    EXPECT_EQ(j["leaks"][0]["function"], "leak_deep()");
    EXPECT_EQ(j["leaks"][0]["live_count"], 2);
    EXPECT_EQ(j["leaks"][0]["threads"][0]["name"], "main");
    EXPECT_TRUE(j["leaks"][0]["expected"].is_null());
    EXPECT_EQ(j["stacks"]["depth"], 32);
    std::string text = format_sites(r);
    EXPECT_NE(text.find("leaks: 1 stacks"), std::string::npos) << text;
    EXPECT_NE(text.find("leak_deep() <- a() <- main"), std::string::npos) << text;
}

TEST(Collapsed, FoldedStacksRootFirstWithSafeNames)
{
    Report doc;
    Site a;
    a.alloc_bytes = 300;
    a.alloc_count = 3;
    a.stack = {frame("leaf;x\n", "/a", 1, 1), frame("", "/usr/lib/libfoo.so", 0x2a, 2), frame("main", "/a", 3, 3)};
    Site b;
    b.alloc_bytes = 5;
    b.alloc_count = 1;
    b.truncated = true;
    b.stack = {frame("f", "", 0, 0)};
    doc.sites = {a, b};
    EXPECT_EQ(collapsed(doc, "bytes"), "main;libfoo.so+0x2a;leaf:x? 300\n[truncated];f 5\n");
    EXPECT_EQ(collapsed(doc, "count"), "main;libfoo.so+0x2a;leaf:x? 3\n[truncated];f 1\n");
    EXPECT_EQ(collapsed(doc, "live_bytes"), ""); // zero weights are left out
    EXPECT_FALSE(valid_weight("size"));
}

TEST(Symbols, CxxAndRustNamesAreDemangled)
{
    EXPECT_EQ(demangle("_Z11make_widgetv"), "make_widget()");
    EXPECT_EQ(demangle("_ZN4core3fmt5write17h0123456789abcdefE"), "core::fmt::write");
    EXPECT_EQ(demangle("_RNvNtCsjrHSEGnQ3l9_3std2rt19lang_start_internal"), "std::rt::lang_start_internal");
    EXPECT_EQ(demangle("malloc"), "malloc");
    EXPECT_EQ(demangle("_Znot valid"), "_Znot valid");
    EXPECT_TRUE(is_root_symbol("main"));
    EXPECT_TRUE(is_root_symbol("start_thread"));
    EXPECT_FALSE(is_root_symbol("mainly"));
}

TEST(Symbols, ReturnAddressesFollowACall)
{
    const std::uint8_t call_rel32[] = {0x90, 0x90, 0x90, 0x90, 0xe8, 0x10, 0x20, 0x30, 0x40};
    const std::uint8_t call_reg[] = {0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0xd0};   // call rax
    const std::uint8_t call_mem[] = {0x90, 0x90, 0x90, 0xff, 0x15, 0x00, 0x10, 0x00, 0x00}; // call [rip+x]
    const std::uint8_t not_call[] = {0x48, 0x89, 0xc7, 0x48, 0x89, 0xc7, 0x48, 0x89, 0xc7}; // mov rdi, rax
    EXPECT_TRUE(ends_with_call(call_rel32, sizeof call_rel32));
    EXPECT_TRUE(ends_with_call(call_reg, sizeof call_reg));
    EXPECT_TRUE(ends_with_call(call_mem, sizeof call_mem));
    EXPECT_FALSE(ends_with_call(not_call, sizeof not_call));
}

TEST(Timeline, BoundedSamplesHalveTheirResolution)
{
    TimelineRecorder t(0.1, 8);
    ThreadStats a;
    a.tid = 1;
    a.start_ns = 1;
    a.name = "a";
    for (int i = 0; i < 8; ++i) {
        a.counters.live_bytes = static_cast<std::uint64_t>(i);
        t.sample(0.1 * i, {a});
    }
    ThreadStats b = a;
    b.tid = 2;
    b.counters.live_bytes = 100;
    t.sample(0.8, {a, b}); // the ninth: every other sample goes first
    Timeline tl = t.timeline();
    EXPECT_DOUBLE_EQ(tl.interval_s, 0.2);
    ASSERT_EQ(tl.t_s.size(), 5u);
    EXPECT_EQ(tl.process_live_bytes, (std::vector<std::int64_t>{0, 2, 4, 6, 107}));
    ASSERT_EQ(tl.threads.size(), 2u);
    EXPECT_EQ(tl.threads[1].live_bytes, (std::vector<std::int64_t>{0, 0, 0, 0, 100}));
}

TEST(Sites, NamedByTheFirstFrameOutsideTheAllocatorTheStandardLibraryAndWrappers)
{
    auto frame = [](std::string symbol, std::string file, std::string module, bool inlined = false) {
        Frame f;
        f.symbol = std::move(symbol);
        f.file = std::move(file);
        f.module = std::move(module);
        f.inlined = inlined;
        return f;
    };
    std::vector<Frame> stack{
        frame("operator new(unsigned long)", "", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
        frame("std::__new_allocator<int>::allocate(unsigned long, void const*)",
              "/usr/include/c++/12/bits/new_allocator.h", "/app/prog", true),
        frame("std::vector<int, std::allocator<int> >::vector(unsigned long)", "/usr/include/c++/12/bits/stl_vector.h",
              "/app/prog", true),
        frame("my_pool_alloc(unsigned long)", "/home/me/c++/pool.cpp", "/app/prog"),
        frame("worker(int)", "/app/main.cpp", "/app/prog"),
        frame("std::string::_M_create(unsigned long&, unsigned long)", "", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
        frame("main", "/app/main.cpp", "/app/prog"),
    };
    ASSERT_NE(site_function(stack), nullptr);
    EXPECT_EQ(site_function(stack)->symbol, "my_pool_alloc(unsigned long)");
    EXPECT_EQ(site_function(stack, {"my_pool_alloc"})->symbol, "worker(int)");
    EXPECT_EQ(site_function(stack, {"my_pool"})->symbol, "my_pool_alloc(unsigned long)") << "whole names only";
    // All of it the allocator's: the allocator's caller, as before.
    std::vector<Frame> only_std(stack.begin(), stack.begin() + 3);
    EXPECT_EQ(site_function(only_std)->symbol, "operator new(unsigned long)");
}

TEST(Sites, AFullSiteTableLandsOnALabelledRowAndTheSumsHold)
{
    Report r = report_with_threads();
    r.totals.alloc_count = 10;
    r.totals.alloc_bytes = 1000;
    r.dropped.reasons["site_table_full"] = 4;
    add_sites(r, {{7, {frame("f()"), frame("main")}, false, 6, 600}}, {{0, 100, 1, 10, 1, {}}}, 1, 32);
    ASSERT_EQ(r.sites.size(), 2u);
    const Site& full = r.sites[1];
    EXPECT_EQ(site_function(full.stack)->symbol, "(stack table full)");
    EXPECT_EQ(full.alloc_count, 4u);
    EXPECT_EQ(full.alloc_bytes, 400u);
    EXPECT_EQ(full.live_count, 1u) << "a block recorded without a stack lives there";
    EXPECT_EQ(r.stacks.truncated_by["the site table was full (--max-stacks)"], 4u);
    std::uint64_t count = 0, bytes = 0;
    for (const auto& s : r.sites) {
        count += s.alloc_count;
        bytes += s.alloc_bytes;
    }
    EXPECT_EQ(count, r.totals.alloc_count);
    EXPECT_EQ(bytes, r.totals.alloc_bytes);
}

TEST(Sizes, BucketsArePowersOfTwoPerSiteAndForTheProcess)
{
    EXPECT_EQ(size_bucket(0).min, 0u);
    EXPECT_EQ(size_bucket(0).max, 1u);
    EXPECT_EQ(size_bucket(5).min, 32u);
    EXPECT_EQ(size_bucket(5).max, 63u);
    EXPECT_EQ(size_bucket(63).min, 1ull << 63);
    EXPECT_EQ(size_bucket(63).max, UINT64_MAX);

    Report r = report_with_threads();
    r.totals.alloc_count = 12;
    add_sites(r, {{1, {frame("a")}, false, 5, 500}, {2, {frame("b")}, false, 4, 70}}, {}, 0, 32);
    // Stack 0: counted with no site (fast mode): the process's only, and the labelled row's.
    add_sizes(r, {{1, 6, 3, 300}, {1, 5, 2, 200}, {2, 4, 4, 70}, {0, 4, 3, 60}, {9, 70, 1, 1}, {1, 7, 0, 0}});
    auto bounds = [](const std::vector<SizeBucket>& list) {
        std::vector<std::array<std::uint64_t, 4>> out;
        for (const auto& b : list)
            out.push_back({b.min, b.max, b.count, b.bytes});
        return out;
    };
    using B = std::vector<std::array<std::uint64_t, 4>>;
    // A bucket past 63 and an empty one are dropped; a stack with no site counts for the process.
    EXPECT_EQ(bounds(r.size_histogram), (B{{16, 31, 7, 130}, {32, 63, 2, 200}, {64, 127, 3, 300}}));
    ASSERT_EQ(r.sites.size(), 3u); // a, b, and the "(no stack recorded)" row
    for (const auto& s : r.sites) {
        if (s.id == 1)
            EXPECT_EQ(bounds(s.size_histogram), (B{{32, 63, 2, 200}, {64, 127, 3, 300}}));
        else if (s.id == 2)
            EXPECT_EQ(bounds(s.size_histogram), (B{{16, 31, 4, 70}}));
        else
            EXPECT_EQ(bounds(s.size_histogram), (B{{16, 31, 3, 60}}));
    }
}

TEST(Peak, TheExactPeakIsTheOneFigureAndItsSitesLargestFirst)
{
    Report r = report_with_threads();
    r.threads[0].counters.peak_live_bytes = 300;
    r.threads[1].counters.peak_live_bytes = 200;
    compute_totals(r, 400);
    EXPECT_FALSE(r.peak_live_bytes_exact); // two threads held memory: sampled
    add_sites(r, {{1, {frame("a")}, false, 5, 500}, {2, {frame("b")}, false, 4, 70}}, {}, 0, 32);
    RawPeak raw{450, 3'500'000'000, false, {{2, 1, 50}, {1, 4, 400}, {3, -1, -8}, {4, 0, 0}}};
    add_peak(r, 7, raw, 1'000'000'000);
    ASSERT_TRUE(r.peak);
    EXPECT_EQ(r.peak->pid, 7u);
    EXPECT_DOUBLE_EQ(r.peak->t_s, 2.5);
    EXPECT_EQ(r.peak->live_bytes, 450u);
    EXPECT_TRUE(r.peak->exact);
    EXPECT_EQ(r.totals.peak_live_bytes, 450u);
    EXPECT_TRUE(r.peak_live_bytes_exact);
    ASSERT_EQ(r.peak->sites.size(), 2u); // a share that is no holding is left out
    EXPECT_EQ(r.peak->sites[0].id, 1u);
    EXPECT_EQ(r.peak->sites[0].live_count, 4u);
    EXPECT_EQ(r.peak->sites[1].live_bytes, 50u);
    EXPECT_EQ(r.peak->note, "");

    // Records missed (async): a lower bound; the peak moved while read: said.
    Report again = report_with_threads();
    again.live_bytes_exact = false;
    add_sites(again, {{1, {frame("a")}, false, 5, 500}}, {}, 0, 32);
    add_peak(again, 7, {100, 0, true, {{1, 1, 60}}}, 1'000'000'000);
    EXPECT_FALSE(again.peak->exact);
    EXPECT_DOUBLE_EQ(again.peak->t_s, 0); // before the start: clamped
    EXPECT_NE(again.peak->note.find("ran on while its sites were read"), std::string::npos) << again.peak->note;
    EXPECT_NE(again.peak->note.find("40 bytes of the peak were allocated with no stack"), std::string::npos);

    // A sample above the live sum (restarted by an exec) is the figure, not exact.
    Report high = report_with_threads();
    high.threads[0].counters.peak_live_bytes = 900;
    compute_totals(high, 0);
    add_peak(high, 7, {100, 0, false, {}}, 0);
    EXPECT_EQ(high.peak->live_bytes, 900u);
    EXPECT_EQ(high.totals.peak_live_bytes, 900u);
    EXPECT_FALSE(high.peak->exact);
}

TEST(Peak, OneProcessHoldingMemoryKeepsItsPeakSeveralMakeItSampled)
{
    auto section = [](std::uint32_t pid, std::uint64_t peak) {
        Report s;
        s.target.pid = static_cast<int>(pid);
        ThreadStats t;
        t.pid = pid;
        t.tid = pid;
        t.counters.alloc_count = peak ? 1 : 0;
        t.counters.peak_live_bytes = peak;
        s.threads = {t};
        compute_totals(s, 0);
        add_sizes(s, {{0, 4, 1, 16}});
        if (peak)
            add_peak(s, pid, {peak, 0, false, {{pid, 1, static_cast<std::int64_t>(peak)}}}, 0);
        return s;
    };
    Report root = section(1, 1000);
    std::vector<Report> one;
    one.push_back(section(2, 0));
    merge_processes(root, one, 0);
    ASSERT_TRUE(root.peak);
    EXPECT_EQ(root.peak->pid, 1u);
    EXPECT_EQ(root.totals.peak_live_bytes, 1000u);
    EXPECT_TRUE(root.peak_live_bytes_exact);
    ASSERT_EQ(root.size_histogram.size(), 1u);
    EXPECT_EQ(root.size_histogram[0].count, 2u); // both processes' allocations

    Report two = section(1, 1000);
    std::vector<Report> more;
    more.push_back(section(3, 3000));
    merge_processes(two, more, 3500);
    ASSERT_TRUE(two.peak);
    EXPECT_EQ(two.peak->pid, 3u); // the largest process's own peak, by site
    EXPECT_EQ(two.peak->live_bytes, 3000u);
    EXPECT_EQ(two.totals.peak_live_bytes, 3500u); // the command's: sampled
    EXPECT_FALSE(two.peak_live_bytes_exact);
    EXPECT_NE(two.peak->note.find("process 3's own peak; the command's over its 2 processes is sampled"),
              std::string::npos) << two.peak->note;
}

TEST(Sites, BlocksYoungerThanTheMinimumAgeAreTheWorkingSetNotLeaks)
{
    Report r = report_with_threads();
    std::vector<OutstandingBlock> blocks = {
        {1, 64, 1'000'000'000, 10, 1, {}}, // 4 s old at the end
        {1, 32, 4'500'000'000, 10, 1, {}}, // 0.5 s
        {2, 16, 4'800'000'000, 10, 1, {}}, // 0.2 s: its stack all young
        {2, 8, 0, 10, 1, {}},              // fast mode: no time, age unknown, listed
        {3, 4, 4'900'000'000, 11, 2, {}},
    };
    add_sites(r, {{1, {frame("a")}, false, 2, 96}, {2, {frame("b")}, false, 2, 24}, {3, {frame("c")}, false, 1, 4}},
              blocks, 5'000'000'000, 32, 1.0);
    EXPECT_DOUBLE_EQ(r.stacks.leak_min_age_s, 1.0);
    std::map<std::uint64_t, const Leak*> by_id;
    for (const auto& l : r.leaks)
        by_id[l.id] = &l;
    ASSERT_EQ(by_id.size(), 3u);
    EXPECT_EQ(by_id[1]->young_count, 1u);
    EXPECT_EQ(by_id[1]->young_bytes, 32u);
    EXPECT_TRUE(listed_leak(*by_id[1]));
    EXPECT_EQ(by_id[2]->young_count, 1u); // the untimed block is not young
    EXPECT_TRUE(listed_leak(*by_id[2]));
    EXPECT_EQ(by_id[3]->young_count, 1u);
    EXPECT_FALSE(listed_leak(*by_id[3]));
    // The sites' live figures keep every block.
    for (const auto& s : r.sites)
        if (s.id == 3)
            EXPECT_EQ(s.live_count, 1u);
    const std::string text = format_sites(r);
    EXPECT_NE(text.find("leaks: 2 stacks with blocks outstanding at the end for 1.00 s or more (--min-age)"),
              std::string::npos) << text;
    EXPECT_NE(text.find("+ 3 blocks (52 B) younger than 1.00 s, not listed: the working set"), std::string::npos)
        << text;
    EXPECT_NE(text.find("        64 B         1 blocks  oldest 4.00 s  a"), std::string::npos) << text;
}
