// The tracker entry points as this very test binary carries them: its note,
// and descriptors read back from the file at their runtime addresses.
#include <gtest/gtest.h>

#include <memscope/track.h>

#include <cstring>
#include <fstream>
#include <map>
#include <vector>

#include "elf_symbols.hpp"
#include "tracker_events.hpp"

using namespace memscope;

namespace {

std::uint64_t site() { return reinterpret_cast<std::uint64_t>(&__memscope_probe_v1); }

const void* a_variable_descriptor()
{
    std::vector<int> numbers(3);
    MEMSCOPE__CXX_DESC(d, MEMSCOPE_DESC_VARIABLE, decltype(numbers), "numbers");
    return &d;
}

const void* a_scope_descriptor()
{
    MEMSCOPE__CXX_DESC(d, MEMSCOPE_DESC_SCOPE, ::memscope::detail::no_type, "the \"scope\"");
    return &d;
}

struct Module {
    ElfScan scan = scan_elf("/proc/self/exe");
    TrackerModules modules;
    std::uint32_t index = 0;
    Module()
    {
        std::string err;
        auto i = modules.add("/proc/self/exe", "/proc/self/exe", scan, err);
        EXPECT_TRUE(i) << err;
        index = i.value_or(0);
    }
};

} // namespace

TEST(Tracker, NoteNamesTheProbeSiteAndSemaphore)
{
    ElfScan scan = scan_elf("/proc/self/exe");
    ASSERT_TRUE(scan.error.empty()) << scan.error;
    ASSERT_TRUE(scan.tracker) << scan.tracker_error;
    // The site is a 5-byte NOP then ret, 16-byte aligned.
    const auto* code = reinterpret_cast<const unsigned char*>(site());
    EXPECT_EQ(std::memcmp(code, "\x0f\x1f\x44\x00\x00\xc3", 6), 0);
    EXPECT_EQ(scan.tracker->site_vaddr % 16, 0u);
    EXPECT_EQ(scan.tracker->semaphore_vaddr % 4096, 0u);
    // Link-time and runtime addresses differ by one bias for site and semaphore.
    std::uint64_t bias = site() - scan.tracker->site_vaddr;
    EXPECT_EQ(scan.tracker->semaphore_vaddr + bias,
              reinterpret_cast<std::uint64_t>(&__memscope_semaphore_v1));
    EXPECT_FALSE(memscope_traced());
    // The file offset holds the same bytes.
    std::ifstream f("/proc/self/exe", std::ios::binary);
    f.seekg(static_cast<std::streamoff>(scan.tracker->site_offset));
    char bytes[5];
    f.read(bytes, 5);
    EXPECT_EQ(std::memcmp(bytes, "\x0f\x1f\x44\x00\x00", 5), 0);
}

TEST(Tracker, DescriptorsReadFromTheFile)
{
    Module m;
    Descriptor d = m.modules.read_descriptor(m.index, site(), reinterpret_cast<std::uint64_t>(a_variable_descriptor()));
    ASSERT_TRUE(d.valid);
    EXPECT_EQ(d.name, "numbers");
    EXPECT_EQ(d.type, "std::vector<int>");
    EXPECT_NE(d.file.find("tracker_test.cpp"), std::string::npos) << d.file;
    EXPECT_GT(d.line, 0u);
    EXPECT_EQ(d.kind, MEMSCOPE_DESC_VARIABLE);

    Descriptor s = m.modules.read_descriptor(m.index, site(), reinterpret_cast<std::uint64_t>(a_scope_descriptor()));
    ASSERT_TRUE(s.valid);
    EXPECT_EQ(s.name, "the \"scope\"");
    EXPECT_EQ(s.type, "");
    EXPECT_EQ(s.kind, MEMSCOPE_DESC_SCOPE);
}

TEST(Tracker, BadDescriptorAddressesAreRefused)
{
    Module m;
    // Not a descriptor (the probe site itself): wrong magic.
    EXPECT_FALSE(m.modules.read_descriptor(m.index, site(), site()).valid);
    // Outside the module: a stack address.
    int local = 0;
    EXPECT_FALSE(m.modules.read_descriptor(m.index, site(), reinterpret_cast<std::uint64_t>(&local)).valid);
    // No such module.
    EXPECT_FALSE(m.modules.read_descriptor(7, site(), site()).valid);
    // A descriptor's strings running past the end of its segment.
    EXPECT_FALSE(m.modules.read_descriptor(m.index, 0, ~0ull - 8).valid);
}

TEST(Tracker, EventsBecomeVariablesWithTheirDescriptors)
{
    Module m;
    TrackerEvents events(m.modules, 100);
    DecodedEvent ev{};
    ev.type = MS_EV_VARIABLE;
    ev.tgid = 1;
    ev.tid = 2;
    ev.addr = 0x1000;
    ev.size = 12;
    ev.flags = MS_EV_HEAP;
    ev.desc = reinterpret_cast<std::uint64_t>(a_variable_descriptor());
    ev.site = site();
    ev.module = m.index;
    ev.scope = reinterpret_cast<std::uint64_t>(a_scope_descriptor());
    ev.scope_site = site() | (std::uint64_t(m.index) << MS_SITE_MODULE_SHIFT);
    events.handle(ev);
    events.handle(ev); // a second call reads nothing new
    DecodedEvent bad = ev;
    bad.desc = site(); // garbage descriptor: kept, shown as "?"
    events.handle(bad);
    DecodedEvent freed{};
    freed.type = MS_EV_VARIABLE_FREE;
    freed.tgid = 1;
    freed.addr = 0x1000;
    freed.ts = 55;
    events.handle(freed);

    const auto& vars = events.table().variables();
    ASSERT_EQ(vars.size(), 3u);
    const auto& descs = events.table().descriptors();
    EXPECT_EQ(descs[vars[0].desc].name, "numbers");
    EXPECT_EQ(descs[vars[0].scope].name, "the \"scope\"");
    EXPECT_EQ(vars[0].desc, vars[1].desc);
    EXPECT_EQ(descs[vars[2].desc].name, "?");
    EXPECT_EQ(events.unreadable_descriptors(), 1u);
    EXPECT_EQ(vars[0].free_ns, 55u);
    EXPECT_EQ(vars[1].free_ns, 55u);
}

TEST(Tracker, TypeNamesStayWhole)
{
    using memscope::detail::type_name;
    EXPECT_EQ(type_name<char[64]>(), "char [64]");
    EXPECT_EQ(type_name<std::vector<int>>(), "std::vector<int>");
    EXPECT_EQ(type_name<std::string>(), "std::string");
    EXPECT_EQ((type_name<std::map<int, std::vector<char>>>()), "std::map<int, std::vector<char> >");
    EXPECT_EQ(type_name<int (*)(int)>(), "int (*)(int)");
    EXPECT_EQ(type_name<memscope::detail::no_type>(), "");
}
