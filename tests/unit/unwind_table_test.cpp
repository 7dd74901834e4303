// Unwind tables against an independent reading of the same CFI: binutils'
// `readelf --debug-dump=frames-interp`, row by row, on real files.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <gelf.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "unwind_table.hpp"

using namespace memscope;

namespace {

std::string command_output(const std::string& cmd)
{
    std::string out;
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    char buf[65536];
    for (std::size_t n; p && (n = std::fread(buf, 1, sizeof buf, p.get())) > 0;)
        out.append(buf, n);
    return out;
}

struct Expected {
    std::uint64_t vaddr;
    std::string cfa, rbp, ra;
};

// readelf's interpreted .eh_frame: each FDE's range and its rows.
void read_readelf(const std::string& path, std::vector<Expected>& rows, std::vector<std::pair<std::uint64_t, std::uint64_t>>& fdes)
{
    std::istringstream in(command_output("readelf -wF '" + path + "' 2>/dev/null"));
    std::vector<std::string> columns;
    bool in_eh = false, in_fde = false;
    std::string cie_initial_cfa;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("Contents of the ", 0) == 0) {
            in_eh = line.find(".eh_frame") != std::string::npos;
            continue;
        }
        if (!in_eh)
            continue;
        if (line.find(" FDE ") != std::string::npos) {
            auto pc = line.find("pc=");
            auto dots = line.find("..", pc);
            fdes.push_back({std::stoull(line.substr(pc + 3, dots - pc - 3), nullptr, 16),
                            std::stoull(line.substr(dots + 2), nullptr, 16)});
            in_fde = true;
            columns.clear();
            continue;
        }
        if (line.find(" CIE ") != std::string::npos) {
            in_fde = false;
            continue;
        }
        std::istringstream ls(line);
        std::vector<std::string> words;
        for (std::string w; ls >> w;)
            words.push_back(w);
        if (words.empty())
            continue;
        if (words[0] == "LOC") {
            columns = words;
            continue;
        }
        if (!in_fde || columns.empty() || words.size() != columns.size())
            continue;
        Expected e{std::stoull(words[0], nullptr, 16), words[1], "", ""};
        for (std::size_t i = 2; i < columns.size(); ++i) {
            if (columns[i] == "rbp")
                e.rbp = words[i];
            if (columns[i] == "ra")
                e.ra = words[i];
        }
        rows.push_back(e);
    }
}

// Link-time address to file offset, through the executable segments.
struct Segments {
    std::vector<GElf_Phdr> exec;
    explicit Segments(const std::string& path)
    {
        elf_version(EV_CURRENT);
        int fd = open(path.c_str(), O_RDONLY);
        Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
        std::size_t n = 0;
        elf_getphdrnum(elf, &n);
        for (std::size_t i = 0; i < n; ++i) {
            GElf_Phdr ph;
            if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
                exec.push_back(ph);
        }
        elf_end(elf);
        close(fd);
    }
    std::optional<std::uint64_t> offset(std::uint64_t vaddr) const
    {
        for (const auto& ph : exec)
            if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz)
                return vaddr - ph.p_vaddr + ph.p_offset;
        return std::nullopt;
    }
};

void check_against_readelf(const std::string& path)
{
    UnwindTable t;
    std::string why;
    ASSERT_TRUE(build_unwind_table(path, t, why)) << path << ": " << why;
    EXPECT_EQ(t.source, ".eh_frame");
    std::vector<Expected> expected;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> fdes;
    read_readelf(path, expected, fdes);
    ASSERT_GT(expected.size(), 10u) << "readelf gave nothing for " << path;
    EXPECT_EQ(t.functions, fdes.size());
    Segments seg(path);
    std::size_t checked = 0;
    for (const Expected& e : expected) {
        auto off = seg.offset(e.vaddr);
        if (!off)
            continue;
        const ms_unwind_row* r = find_unwind_row(t.rows, *off);
        ASSERT_NE(r, nullptr) << std::hex << e.vaddr;
        SCOPED_TRACE(path + " at 0x" + [&] { std::ostringstream s; s << std::hex << e.vaddr; return s.str(); }());
        if (e.ra == "u") {
            EXPECT_EQ(r->kind, MS_UNWIND_STOP);
            ++checked;
            continue;
        }
        if (e.cfa == "exp") { // the PLT's expression, a signal frame's, or one we do not run
            EXPECT_TRUE(r->kind == MS_UNWIND_PLT || r->kind == MS_UNWIND_SIGNAL || r->kind == MS_UNWIND_INVALID)
                << int(r->kind);
            continue;
        }
        const bool rsp = e.cfa.rfind("rsp+", 0) == 0, rbp = e.cfa.rfind("rbp+", 0) == 0;
        if (!rsp && !rbp) {
            EXPECT_EQ(r->kind, MS_UNWIND_INVALID) << e.cfa;
            continue;
        }
        EXPECT_EQ(r->kind, rsp ? MS_UNWIND_CFA_RSP : MS_UNWIND_CFA_RBP) << e.cfa;
        EXPECT_EQ(r->cfa_off, std::stoi(e.cfa.substr(4))) << e.cfa;
        if (e.rbp.empty() || e.rbp == "u")
            EXPECT_TRUE(r->rbp_off == 0 || r->rbp_off == MS_UNWIND_RBP_UNKNOWN) << int(r->rbp_off);
        else if (e.rbp.rfind("c-", 0) == 0 || e.rbp.rfind("c+", 0) == 0)
            EXPECT_EQ(r->rbp_off * 8, std::stoi(e.rbp.substr(1))) << e.rbp;
        ++checked;
    }
    EXPECT_GT(checked, expected.size() / 2);
    // Past a function's end, where no other begins: no rule (the stack ends).
    std::set<std::uint64_t> starts;
    for (const auto& f : fdes)
        starts.insert(f.first);
    for (const auto& f : fdes) {
        auto off = seg.offset(f.second);
        if (starts.count(f.second) || !off)
            continue;
        bool inside_other = false; // FDEs may overlap or nest (rare)
        for (const auto& g : fdes)
            inside_other |= f.second >= g.first && f.second < g.second;
        if (inside_other)
            continue;
        const ms_unwind_row* r = find_unwind_row(t.rows, *off);
        ASSERT_NE(r, nullptr);
        EXPECT_EQ(r->kind, MS_UNWIND_INVALID) << std::hex << f.second;
    }
    // Sorted, strictly, with no two equal neighbours.
    for (std::size_t i = 1; i < t.rows.size(); ++i) {
        EXPECT_LT(t.rows[i - 1].pc, t.rows[i].pc);
        EXPECT_FALSE(t.rows[i - 1].kind == t.rows[i].kind && t.rows[i - 1].cfa_off == t.rows[i].cfa_off &&
                     t.rows[i - 1].rbp_off == t.rows[i].rbp_off);
    }
}

} // namespace

TEST(UnwindTable, LibcMatchesReadelfRowByRow)
{
    check_against_readelf("/lib/x86_64-linux-gnu/libc.so.6");
}

TEST(UnwindTable, LibstdcxxMatchesReadelfRowByRow)
{
    check_against_readelf("/lib/x86_64-linux-gnu/libstdc++.so.6");
}

TEST(UnwindTable, OwnProgramWithoutFramePointersMatchesReadelf)
{
    check_against_readelf(TARGET_DIR "/target_leaks_nofp");
}

TEST(UnwindTable, RootsEndTheStackAndPltIsRecognised)
{
    UnwindTable t;
    std::string why;
    ASSERT_TRUE(build_unwind_table(TARGET_DIR "/target_leaks_nofp", t, why)) << why;
    std::size_t stops = 0, plt = 0;
    for (const auto& r : t.rows) {
        stops += r.kind == MS_UNWIND_STOP;
        plt += r.kind == MS_UNWIND_PLT;
    }
    EXPECT_GE(stops, 1u) << "_start's return address is undefined";
    EXPECT_GE(plt, 1u) << "the PLT's CFA expression";
}

TEST(UnwindTable, BadInputSaysWhy)
{
    UnwindTable t;
    std::string why;
    EXPECT_FALSE(build_unwind_table("/etc/hostname", t, why));
    EXPECT_EQ(why, "not an ELF file");
    EXPECT_FALSE(build_unwind_table("/dev/zero", t, why));
    EXPECT_NE(why.find("not a regular file"), std::string::npos) << why;
    EXPECT_FALSE(build_unwind_table("/nonexistent/file", t, why));
    EXPECT_FALSE(why.empty());
}
