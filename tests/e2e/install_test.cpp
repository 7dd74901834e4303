// memscope-trace installed as a tool: `cmake --install` stages exactly the
// binary, the tracker headers, the man page, the bash and zsh completions
// and the docs, and the staged binary runs; the man page (generated from
// the binary's command line) renders without a warning and names every
// command; the bash completion completes subcommands, options and their
// values; `cpack -G DEB` makes a .deb whose Depends dpkg-shlibdeps wrote,
// and dpkg installs it into an empty root whose database holds just those
// dependencies (and refuses it into one that holds none). Every child runs
// under a time limit; under CI=true a missing tool fails the test.
#include "harness.hpp"

#include "../temp_dir.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

namespace e2e {
namespace {

using memscope_test::TempDir;
namespace fs = std::filesystem;

const std::string kBuildDir = TARGET_DIR;
const std::string kCmake = CMAKE_BIN;
const std::string kCpack = CPACK_BIN;
const std::string kVersion = MEMSCOPE_VERSION;

// Every file an install puts under its prefix, and nothing else.
const std::set<std::string> kInstalled{
    "bin/memscope-trace",
    "include/memscope/probe_abi.h",
    "include/memscope/track.h",
    "share/bash-completion/completions/memscope-trace",
    "share/doc/memscope-trace/LICENSE",
    "share/doc/memscope-trace/README.md",
    "share/doc/memscope-trace/copyright",
    "share/man/man1/memscope-trace.1.gz",
    "share/zsh/vendor-completions/_memscope-trace",
};
const std::vector<std::string> kSubcommands{"run", "diff", "report", "ctl"};


// A child killed past `limit`.
Result run_for(const std::vector<std::string>& argv, std::chrono::seconds limit)
{
    Child c(argv);
    const int status = c.finish(limit);
    return {status, c.out_text, c.err_text};
}


// The files (and links) under `root`, relative to it.
std::set<std::string> files_under(const std::string& root)
{
    std::set<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        if (!it->is_directory())
            out.insert(fs::relative(it->path(), root).string());
    return out;
}

std::string describe(const std::set<std::string>& files)
{
    std::string out;
    for (const auto& f : files)
        out += "\n  " + f;
    return out;
}

mode_t mode_of(const std::string& path)
{
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

// `cmake --install` of the build into a fresh prefix.
class Install : public E2E {
protected:
    void SetUp() override
    {
        E2E::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        Result r = run_for({kCmake, "--install", kBuildDir, "--prefix", prefix.path}, 120s);
        ASSERT_EQ(r.status, 0) << "cmake --install " << kBuildDir << "\n" << r.out << r.err;
    }
    std::string staged(const std::string& rel) const { return prefix / rel; }
    TempDir prefix;
};

TEST_F(Install, StagesExactlyTheToolItsHeadersPageCompletionsAndDocs)
{
    const std::set<std::string> files = files_under(prefix.path);
    EXPECT_EQ(files, kInstalled) << "installed:" << describe(files) << "\nexpected:" << describe(kInstalled);
    EXPECT_EQ(mode_of(staged("bin/memscope-trace")), 0755u);
    for (const auto& f : kInstalled)
        if (f != "bin/memscope-trace")
            EXPECT_EQ(mode_of(staged(f)), 0644u) << f;

    // The staged binary runs: its version, and the same man page and
    // completions as those installed beside it (they are its own).
    Result v = run_for({staged("bin/memscope-trace"), "--version"}, 30s);
    ASSERT_EQ(v.status, 0) << v.err;
    EXPECT_EQ(v.out.rfind("memscope-trace " + kVersion + " (commit ", 0), 0u) << v.out;
    REQUIRE_TOOL(gzip, "gzip", "gzip");
    Result page = run_for({gzip, "-dc", staged("share/man/man1/memscope-trace.1.gz")}, 30s);
    ASSERT_EQ(page.status, 0) << page.err;
    for (const auto& [what, installed] :
         std::vector<std::pair<std::string, std::string>>{{"man", page.out},
                                                          {"bash", read_all(staged("share/bash-completion/completions/memscope-trace"))},
                                                          {"zsh", read_all(staged("share/zsh/vendor-completions/_memscope-trace"))}}) {
        Result g = run_for({staged("bin/memscope-trace"), "--generate", what}, 30s);
        ASSERT_EQ(g.status, 0) << what << ": " << g.err;
        EXPECT_FALSE(g.out.empty()) << what;
        EXPECT_TRUE(g.out == installed) << what << ": the installed one (" << installed.size()
                                        << " bytes) is not what the binary generates (" << g.out.size() << ")";
    }
    // The option that makes them is the build's, not the user's.
    Result help = run_for({staged("bin/memscope-trace"), "--help"}, 30s);
    EXPECT_EQ(help.status, 0);
    EXPECT_EQ(help.out.find("--generate"), std::string::npos) << help.out;

    // The headers are the ones targets build against.
    for (const char* h : {"track.h", "probe_abi.h"})
        EXPECT_EQ(read_all(staged(std::string("include/memscope/") + h)),
                  read_all(std::string(SOURCE_DIR) + "/probes/include/memscope/" + h))
            << h;
    EXPECT_EQ(read_all(staged("share/doc/memscope-trace/LICENSE")), read_all(std::string(SOURCE_DIR) + "/LICENSE"));
}

TEST_F(Install, ManPageRendersWithoutWarningsAndNamesEveryCommand)
{
    REQUIRE_TOOL(man, "man", "man-db");
    REQUIRE_TOOL(env, "env", "coreutils");
    // C locale: plain ASCII, hyphens as typed.
    Result r = run_for({env, "LC_ALL=C", "MANWIDTH=80", man, "--warnings", "-l",
                        staged("share/man/man1/memscope-trace.1.gz")},
                       60s);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "") << "man warned";
    ASSERT_GT(r.out.size(), 2000u) << r.out;
    EXPECT_EQ(r.out.rfind("MEMSCOPE-TRACE(1)", 0), 0u) << r.out.substr(0, 200);
    for (const char* section : {"\nNAME\n", "\nSYNOPSIS\n", "\nDESCRIPTION\n", "\nOPTIONS\n", "\nCOMMANDS\n"})
        EXPECT_NE(r.out.find(section), std::string::npos) << section;
    for (const auto& sub : kSubcommands) {
        EXPECT_NE(r.out.find("\n       memscope-trace " + sub + " "), std::string::npos) << sub << " in SYNOPSIS";
        EXPECT_NE(r.out.find("\n   " + sub + "\n"), std::string::npos) << sub << " under COMMANDS";
    }
    for (const char* option : {"--json FILE", "-p, --pid PID", "--mode normal|fast|async|off|auto", "--no-follow",
                               "--max-increase", "--format text|markdown|json|junit", "--heap-top UINT"})
        EXPECT_NE(r.out.find(option), std::string::npos) << option;
    // Escaped for roff, and taken as roff: no escape is left in the text.
    for (const char* escape : {"\\-", "\\e", "\\f", "\\&", "\\("})
        EXPECT_EQ(r.out.find(escape), std::string::npos) << escape << " left in:\n" << r.out;
}

// The completion function, driven as bash drives it: COMP_WORDS and
// COMP_CWORD set, the function that `complete -p` names called, COMPREPLY
// printed (one case per line, words separated by spaces).
TEST_F(Install, BashCompletesSubcommandsOptionsAndValues)
{
    REQUIRE_TOOL(bash, "bash", "bash");
    const std::string script = staged("share/bash-completion/completions/memscope-trace");
    Result syntax = run_for({bash, "-n", script}, 30s);
    ASSERT_EQ(syntax.status, 0) << syntax.err;

    const std::string doc = staged("share/doc/memscope-trace");
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{"memscope-trace", "r"}, "report run"},
        {{"memscope-trace", ""}, "ctl diff report run"},
        {{"memscope-trace", "--mo"}, "--mode"},
        {{"memscope-trace", "--mode", ""}, "async auto fast normal off"},
        {{"memscope-trace", "run", "--format", "j"}, "json junit"},
        {{"memscope-trace", "diff", "--fail"}, "--fail-on-new-leaks"},
        {{"memscope-trace", "ctl", "--p"}, "--pid"},
        {{"memscope-trace", "--json", "run", "r"}, "report run"}, // "run" was --json's file
        {{"memscope-trace", "--json", doc + "/RE"}, doc + "/README.md"},
        {{"memscope-trace", "report", doc + "/co"}, doc + "/copyright"},
        {{"memscope-trace", "-p", "1"}, "1"}, // pids (1 and any other starting with 1)
    };
    std::string program = "set -u\nsource '" + script + "'\n"
                          "fn=$(complete -p memscope-trace | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p')\n"
                          "[ -n \"$fn\" ] || { echo 'no complete -F for memscope-trace' >&2; exit 3; }\n"
                          "t() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); \"$fn\";"
                          " printf '%s\\n' \"${COMPREPLY[@]}\" | sort -u | tr '\\n' ' '; echo; }\n";
    for (const auto& [words, expected] : cases) {
        program += "t";
        for (const auto& w : words)
            program += " '" + w + "'";
        program += "\n";
    }
    Result r = run_for({bash, "--norc", "--noprofile", "-c", program}, 60s);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    const std::vector<std::string> got = lines_of(r.out);
    ASSERT_EQ(got.size(), cases.size()) << r.out;
    for (std::size_t i = 0; i < cases.size(); ++i) {
        std::string line = got[i];
        if (!line.empty() && line.back() == ' ')
            line.pop_back();
        std::string typed;
        for (const auto& w : cases[i].first)
            typed += w + " ";
        if (i + 1 == cases.size()) { // pids: 1 is one of them, and every one is a live pid
            EXPECT_NE((" " + line + " ").find(" 1 "), std::string::npos) << typed << "-> " << line;
            std::stringstream pids(line);
            for (std::string pid; pids >> pid;)
                EXPECT_TRUE(pid[0] == '1' && pid.find_first_not_of("0123456789") == std::string::npos) << pid;
            continue;
        }
        EXPECT_EQ(line, cases[i].second) << typed << "<TAB>";
    }
}

// zsh is optional (not a Debian default): its completion is checked where
// zsh is installed (tools/setup.sh --tests installs it; CI requires it).
TEST_F(Install, ZshCompletionIsACompdefFunction)
{
    REQUIRE_TOOL(zsh, "zsh", "zsh");
    const std::string script = staged("share/zsh/vendor-completions/_memscope-trace");
    const std::string text = read_all(script);
    EXPECT_EQ(text.rfind("#compdef memscope-trace\n", 0), 0u) << text.substr(0, 100);
    Result syntax = run_for({zsh, "-n", script}, 30s);
    EXPECT_EQ(syntax.status, 0) << syntax.err;
    EXPECT_EQ(syntax.err, "");
    for (const auto& sub : kSubcommands) {
        EXPECT_NE(text.find("_memscope-trace_" + sub + "()"), std::string::npos) << sub;
        EXPECT_NE(text.find("'" + sub + ":"), std::string::npos) << sub << " offered as a command";
    }
    EXPECT_NE(text.find(":mode:(normal fast async off auto)'"), std::string::npos);
    EXPECT_NE(text.find(")-p+["), std::string::npos) << "-p takes its pid in the same word or the next";
    EXPECT_NE(text.find(":PID:_pids'"), std::string::npos) << "pids offered for -p";
    // Loaded the way compinit loads it: the function is defined, and its
    // _arguments specs parse (a spec error is said on stderr).
    const std::string load = "fpath=('" + fs::path(script).parent_path().string() +
                             "' $fpath); autoload -Uz compinit; compinit -u -D; "
                             "autoload -Uz _memscope-trace; whence -w _memscope-trace; "
                             "[[ ${_comps[memscope-trace]} == _memscope-trace ]] && echo registered";
    Result r = run_for({zsh, "-f", "-c", load}, 60s);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("_memscope-trace: function"), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.out.find("registered"), std::string::npos) << r.out << r.err;
}

// "a (>= 1), b | c" -> {a, b | c}'s first alternative the host has.
std::vector<std::string> depends_names(const std::string& depends, const std::string& dpkg_query)
{
    std::vector<std::string> names;
    std::stringstream clauses(depends);
    for (std::string clause; std::getline(clauses, clause, ',');) {
        std::stringstream alts(clause);
        std::string chosen;
        for (std::string alt; std::getline(alts, alt, '|');) {
            std::stringstream words(alt);
            std::string name;
            words >> name;
            if (chosen.empty() && !name.empty() && run_for({dpkg_query, "-W", name}, 30s).status == 0)
                chosen = name;
        }
        EXPECT_FALSE(chosen.empty()) << "the host has no package for: " << clause;
        if (!chosen.empty())
            names.push_back(chosen);
    }
    return names;
}

// An empty root's package database (dpkg's admin dir) holding, as installed,
// the host's own versions of `packages`, each with an empty file list.
void make_root(const std::string& root, const std::vector<std::string>& packages, const std::string& dpkg_query)
{
    const std::string admin = root + "/var/lib/dpkg";
    fs::create_directories(admin + "/info");
    fs::create_directories(admin + "/updates");
    std::string status;
    for (const auto& p : packages) {
        Result q = run_for({dpkg_query, "-W",
                            "-f=Package: ${Package}\nStatus: install ok installed\nPriority: ${Priority}\n"
                            "Architecture: ${Architecture}\nMulti-Arch: ${Multi-Arch}\nVersion: ${Version}\n"
                            "Maintainer: ${Maintainer}\nDescription: ${binary:Summary}\n\n",
                            p},
                           30s);
        ASSERT_EQ(q.status, 0) << p << ": " << q.err;
        std::string arch, multi;
        for (const auto& line : lines_of(q.out)) {
            if (line.size() > 0 && line.back() == ' ')
                continue; // a field the package does not have
            if (line.rfind("Architecture: ", 0) == 0)
                arch = line.substr(14);
            if (line.rfind("Multi-Arch: ", 0) == 0)
                multi = line.substr(12);
            status += line + "\n";
            if (line.empty()) {
                std::ofstream(admin + "/info/" + p + (multi == "same" ? ":" + arch : "") + ".list");
                arch.clear();
                multi.clear();
            }
        }
    }
    std::ofstream(admin + "/status") << status;
}

TEST_F(Install, DebBuildsWithShlibsDependsAndInstallsIntoACleanRoot)
{
    REQUIRE_TOOL(dpkg, "dpkg", "dpkg");
    REQUIRE_TOOL(dpkg_deb, "dpkg-deb", "dpkg");
    REQUIRE_TOOL(dpkg_query, "dpkg-query", "dpkg");
    REQUIRE_TOOL(shlibdeps, "dpkg-shlibdeps", "dpkg-dev");

    TempDir out;
    Result pack = run_for({kCpack, "--config", kBuildDir + "/CPackConfig.cmake", "-G", "DEB", "-B", out.path}, 300s);
    ASSERT_EQ(pack.status, 0) << pack.out << pack.err;
    std::vector<std::string> debs;
    for (const auto& e : out.entries())
        if (e.size() > 4 && e.substr(e.size() - 4) == ".deb")
            debs.push_back(out / e);
    ASSERT_EQ(debs.size(), 1u) << pack.out;
    const std::string deb = debs[0];
    EXPECT_EQ(fs::path(deb).filename().string().rfind("memscope-trace_" + kVersion + "_", 0), 0u) << deb;

    auto field = [&](const std::string& name) {
        Result f = run_for({dpkg_deb, "-f", deb, name}, 30s);
        EXPECT_EQ(f.status, 0) << name << ": " << f.err;
        std::string v = f.out;
        while (!v.empty() && v.back() == '\n')
            v.pop_back();
        return v;
    };
    Result info = run_for({dpkg_deb, "-I", deb}, 30s);
    ASSERT_EQ(info.status, 0) << info.err;
    EXPECT_EQ(field("Package"), "memscope-trace");
    EXPECT_EQ(field("Version"), kVersion);
    EXPECT_EQ(field("Section"), "utils");
    EXPECT_FALSE(field("Maintainer").empty());
    EXPECT_FALSE(field("Description").empty());
    // dpkg-shlibdeps's: the libraries the binary links, with the versions their symbols need.
    const std::string depends = field("Depends");
    for (const char* lib : {"libbpf1 (>= ", "libc6 (>= ", "libelf1 (>= ", "libdw1 (>= ", "libstdc++6 (>= "})
        EXPECT_NE(depends.find(lib), std::string::npos) << lib << " in Depends: " << depends << "\n" << info.out;
    const std::vector<std::string> needed = depends_names(depends, dpkg_query);
    ASSERT_FALSE(needed.empty());

    // Dependency checking runs: a root with an empty database refuses it.
    TempDir bare;
    make_root(bare.path, {}, dpkg_query);
    Result refused = run_for({dpkg, "--root=" + bare.path, "--admindir=" + bare.path + "/var/lib/dpkg",
                              "--log=/dev/null", "-i", deb},
                             120s);
    EXPECT_NE(refused.status, 0) << refused.out << refused.err;
    EXPECT_NE(refused.err.find("dependency problems"), std::string::npos) << refused.err;

    // A root whose database has exactly the Depends, at the host's versions.
    TempDir root;
    make_root(root.path, needed, dpkg_query);
    const std::string admin = "--admindir=" + root.path + "/var/lib/dpkg";
    Result installed = run_for({dpkg, "--root=" + root.path, admin, "--log=/dev/null", "-i", deb}, 120s);
    ASSERT_EQ(installed.status, 0) << installed.out << installed.err;
    EXPECT_EQ(installed.err, "");
    Result s = run_for({dpkg_query, "--root=" + root.path, admin, "-W", "-f=${Status} ${Version}", "memscope-trace"}, 30s);
    EXPECT_EQ(s.out, "install ok installed " + kVersion) << s.err;

    // It runs from there, on the host's libraries.
    Result v = run_for({root / "usr/bin/memscope-trace", "--version"}, 30s);
    ASSERT_EQ(v.status, 0) << v.err;
    EXPECT_EQ(v.out.rfind("memscope-trace " + kVersion + " (commit ", 0), 0u) << v.out;

    // dpkg lists exactly what an install to /usr puts there.
    Result listed = run_for({dpkg, "--root=" + root.path, admin, "-L", "memscope-trace"}, 30s);
    ASSERT_EQ(listed.status, 0) << listed.err;
    std::set<std::string> files;
    for (const auto& line : lines_of(listed.out))
        if (!line.empty() && !fs::is_directory(root / line.substr(1)))
            files.insert(line.substr(std::string("/usr/").size()));
    EXPECT_EQ(files, kInstalled) << "dpkg -L:" << describe(files) << "\nexpected:" << describe(kInstalled);
    EXPECT_EQ(files_under(root / "usr"), kInstalled);
}

} // namespace
} // namespace e2e
