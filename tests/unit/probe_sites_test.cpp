#include <gtest/gtest.h>

#include <vector>

#include "probe_sites.hpp"

using namespace memscope;

namespace {

ProbeSite choose(ms_alloc_kind kind, std::vector<std::uint8_t> code, std::uint64_t vaddr = 0x1000)
{
    return choose_probe_site(kind, code.data(), code.size(), vaddr);
}

// glibc 2.36's free: test rdi,rdi; je +0xbf; push rbp; lea rsi,[rdi-0x10]; push rbx; ...; ret
std::vector<std::uint8_t> glibc_free()
{
    std::vector<std::uint8_t> c = {0x48, 0x85, 0xff, 0x0f, 0x84, 0x10, 0x00, 0x00, 0x00, 0x55,
                                   0x48, 0x8d, 0x77, 0xf0, 0x53, 0x5b, 0x5d, 0xc3};
    c.resize(9 + 6 + 0x10 - 6 + 1, 0x90); // room for the je's target
    c.back() = 0xc3;
    return c;
}

} // namespace

TEST(ProbeSites, ClassesOfSites)
{
    const std::uint8_t nop5[] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
    EXPECT_EQ(classify_site(nop5, 5, 0x1000), SiteCost::nop5_rewritten);
    EXPECT_NE(classify_site(nop5, 5, 0x1ffc), SiteCost::nop5_rewritten); // crosses a page
    const std::uint8_t push_r12[] = {0x41, 0x54};
    EXPECT_EQ(classify_site(push_r12, 2, 0), SiteCost::emulated);
    const std::uint8_t test_rdi[] = {0x48, 0x85, 0xff};
    EXPECT_EQ(classify_site(test_rdi, 3, 0), SiteCost::single_stepped);
    const std::uint8_t jmp_rel[] = {0xe9, 0, 0, 0, 0};
    EXPECT_EQ(classify_site(jmp_rel, 5, 0), SiteCost::emulated);
    const std::uint8_t jmp_indirect[] = {0xff, 0xe0}; // jmp rax
    EXPECT_EQ(classify_site(jmp_indirect, 2, 0), SiteCost::single_stepped);
    const std::uint8_t garbage[] = {0x0f, 0xff};
    EXPECT_EQ(classify_site(garbage, 1, 0), SiteCost::undecodable);
}

TEST(ProbeSites, FreeGoesPastItsNullTest)
{
    ProbeSite s = choose(MS_KIND_FREE, glibc_free());
    EXPECT_EQ(s.offset, 9u);
    EXPECT_EQ(s.cost, SiteCost::emulated);
    EXPECT_EQ(s.instruction, "push");
}

TEST(ProbeSites, NullTestSkippedOnlyForFree)
{
    // For malloc the branch itself is the site (emulated, on every path):
    // never past it, where a path would be missed.
    ProbeSite s = choose(MS_KIND_MALLOC, glibc_free());
    EXPECT_EQ(s.offset, 3u);
    EXPECT_EQ(s.instruction, "jz");
}

TEST(ProbeSites, BranchBackIntoSkippedCodeKeepsTheEntry)
{
    auto c = glibc_free();
    // Last instructions: jmp back to +9 (the would-be site): it would pass twice.
    c.back() = 0x90;
    std::int8_t back = static_cast<std::int8_t>(9 - static_cast<int>(c.size() + 2));
    c.push_back(0xeb);
    c.push_back(static_cast<std::uint8_t>(back));
    EXPECT_EQ(choose(MS_KIND_FREE, c).offset, 0u);
}

TEST(ProbeSites, EntryProbeSkipsHarmlessInstructions)
{
    // mov rax,[rip+0]; push rbx; ret: for malloc (reads rdi) the push is the site.
    std::vector<std::uint8_t> c = {0x48, 0x8b, 0x05, 0, 0, 0, 0, 0x53, 0x5b, 0xc3};
    ProbeSite s = choose(MS_KIND_MALLOC, c);
    EXPECT_EQ(s.offset, 7u);
    EXPECT_EQ(s.cost, SiteCost::emulated);
}

TEST(ProbeSites, ArgumentWritesAndStackChangesStop)
{
    // mov rdi,rax (writes malloc's argument); push rbx
    EXPECT_EQ(choose(MS_KIND_MALLOC, {0x48, 0x89, 0xc7, 0x53, 0xc3}).offset, 0u);
    // The same write is harmless for a function without arguments we read.
    EXPECT_EQ(choose(MS_KIND_THREAD_EXIT, {0x48, 0x89, 0xc7, 0x53, 0xc3}).offset, 3u);
    // sub rsp,8: a return probe past it would not find the return address.
    EXPECT_EQ(choose(MS_KIND_MALLOC, {0x48, 0x83, 0xec, 0x08, 0x53, 0xc3}).offset, 0u);
    // mov rsi,rax: calloc reads rsi.
    EXPECT_EQ(choose(MS_KIND_CALLOC, {0x48, 0x89, 0xc6, 0x53, 0xc3}).offset, 0u);
}

TEST(ProbeSites, CheapEntriesStay)
{
    EXPECT_EQ(choose(MS_KIND_MALLOC, {0x41, 0x54, 0x55, 0xc3}).offset, 0u);       // push r12
    EXPECT_EQ(choose(MS_KIND_FREE, {0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3}).cost, SiteCost::nop5_rewritten);
    // Undecodable bytes: the entry, never a guess.
    EXPECT_EQ(choose(MS_KIND_FREE, {0x48, 0x85, 0xff, 0x0f}).offset, 0u);
}

// A file's bytes by link-time address, for without_forwarders.
TEST(ProbeSites, ForwardersToAnotherAllocatorFunctionAreNotProbed)
{
    std::map<std::uint64_t, std::vector<std::uint8_t>> code = {
        // operator delete[] at 0x2000: jmp free@plt (0x1000): e9 rel32
        {0x2000, {0xe9, 0xfb, 0xef, 0xff, 0xff}},
        // free@plt at 0x1000: endbr64; bnd jmp [rip+0x3000] -> slot 0x100b + 0x3000
        {0x1000, {0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0x00, 0x30, 0x00, 0x00}},
        // operator delete at 0x2010: endbr64; jmp 0x2040 (another allocator function here)
        {0x2010, {0xf3, 0x0f, 0x1e, 0xfa, 0xe9, 0x27, 0x00, 0x00, 0x00}},
        // operator new at 0x2020: jmp to an unknown PLT stub (0x1010): kept
        {0x2020, {0xe9, 0xeb, 0xef, 0xff, 0xff}},
        {0x1010, {0xff, 0x25, 0x00, 0x40, 0x00, 0x00}},
        // free at 0x2040: a real body
        {0x2040, {0x48, 0x85, 0xff, 0x74, 0x01, 0xc3, 0xc3}},
    };
    auto read = [&](std::uint64_t vaddr, std::size_t n) {
        auto it = code.find(vaddr);
        std::vector<std::uint8_t> out = it == code.end() ? std::vector<std::uint8_t>{} : it->second;
        if (out.size() > n)
            out.resize(n);
        return out;
    };
    std::vector<AllocatorSymbol> symbols = {{"_ZdaPv", MS_KIND_FREE, 0x2000, 0, 5},
                                            {"_ZdlPv", MS_KIND_FREE, 0x2010, 0, 9},
                                            {"_Znwm", MS_KIND_MALLOC, 0x2020, 0, 5},
                                            {"free", MS_KIND_FREE, 0x2040, 0, 7}};
    const std::map<std::uint64_t, std::string> slots = {{0x100b + 0x3000, "free"}};
    std::vector<std::string> kept;
    for (const auto& s : without_forwarders(symbols, slots, read))
        kept.push_back(s.name);
    EXPECT_EQ(kept, (std::vector<std::string>{"_Znwm", "free"}));
}
