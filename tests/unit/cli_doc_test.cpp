// The man page and completions generated from a CLI11 App: text that roff,
// bash or zsh would take as their own syntax is escaped, values are told
// apart (flags, files, pids, choices, the command to run), and hidden
// options stay hidden. The real binary's are checked end to end
// (tests/e2e/install_test.cpp: man renders it, bash completes with it).
#include "cli_doc.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace memscope {
namespace {

struct Values {
    std::string file, mode, tricky, listen;
    int pid = 0;
    bool flag = false, hidden = false;
    std::vector<std::string> command, inputs;
};

// A small command line with the shapes the real one has, and descriptions
// that start with roff's control characters or hold its escape character.
void define(CLI::App& app, Values& v)
{
    app.description("prog: do things, in two-word summary");
    const CLI::Validator pid([](std::string&) { return std::string(); }, "PID");
    app.add_option("-p,--pid", v.pid, "attach to a process")->check(pid);
    app.add_option("--json", v.file, "write the report to FILE");
    app.add_option("--mode", v.mode, "normal or fast")->check(CLI::IsMember({"normal", "fast"}));
    app.add_option("--tricky", v.tricky, ".starts like a request; back\\slash [brackets]: colon 'quoted' `code`");
    app.add_option("--listen", v.listen, "'starts like a request too");
    app.add_flag("-v,--verbose", v.flag, "say more");
    app.add_flag("--secret", v.hidden, "for the build only")->group("");
    CLI::App* run = app.add_subcommand("run", "run a command");
    run->add_option("--json", v.file, "write the report to FILE");
    run->add_option("command", v.command, "CMD [ARGS...]")->required();
    CLI::App* show = app.add_subcommand("show", "show reports");
    show->add_option("inputs", v.inputs, "the report files");
}

std::vector<std::string> lines(const std::string& text)
{
    std::vector<std::string> out;
    std::stringstream in(text);
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

class CliDoc : public ::testing::Test {
protected:
    CliDoc() { define(app, values); }
    CLI::App app{"", "prog"};
    Values values;
};

TEST_F(CliDoc, ManPageEscapesRoff)
{
    const std::string page = man_page(app, "1.2.3");
    // Every line that begins with a control character is one of the page's own requests.
    for (const auto& line : lines(page)) {
        if (line.empty() || (line[0] != '.' && line[0] != '\''))
            continue;
        const std::string request = line.substr(0, line.find(' '));
        EXPECT_TRUE(request == ".\\\"" || request == ".TH" || request == ".SH" || request == ".SS" ||
                    request == ".TP" || request == ".PP" || request == ".B" || request == ".br" ||
                    request == ".nh" || request == ".ad")
            << line;
    }
    EXPECT_NE(page.find("\n\\&.starts like a request; back\\eslash [brackets]: colon 'quoted' \\fBcode\\fR\n"),
              std::string::npos)
        << page;
    EXPECT_NE(page.find("\n\\&'starts like a request too\n"), std::string::npos) << page;
    EXPECT_NE(page.find(".TH \"PROG\" 1 \"\" \"prog 1.2.3\" \"User Commands\"\n"), std::string::npos) << page;
    EXPECT_NE(page.find(".SH NAME\nprog \\- do things, in two\\-word summary\n"), std::string::npos) << page;
    // Options: hyphens are minus signs; values named by kind; flags bare.
    EXPECT_NE(page.find("\\fB\\-p\\fR, \\fB\\-\\-pid\\fR \\fIPID\\fR\n"), std::string::npos) << page;
    EXPECT_NE(page.find("\\fB\\-\\-json\\fR \\fIFILE\\fR\n"), std::string::npos) << page;
    EXPECT_NE(page.find("\\fB\\-\\-mode\\fR \\fInormal\\fR|\\fIfast\\fR\n"), std::string::npos) << page;
    EXPECT_NE(page.find("\\fB\\-v\\fR, \\fB\\-\\-verbose\\fR\nsay more\n"), std::string::npos) << page;
    // Subcommands: a synopsis each, positionals by name, the parent's options named once.
    EXPECT_NE(page.find(".B prog run\n[\\fIOPTIONS\\fR] \\fIcommand\\fR ...\n"), std::string::npos) << page;
    EXPECT_NE(page.find(".B prog show\n[\\fIOPTIONS\\fR] [\\fIinputs\\fR ...]\n"), std::string::npos) << page;
    EXPECT_NE(page.find("Also, as above: \\fB\\-\\-help\\fR, \\fB\\-\\-json\\fR.\n"), std::string::npos) << page;
    EXPECT_EQ(page.find("secret"), std::string::npos) << "a hidden option is documented";
}

TEST_F(CliDoc, BashCompletionOffersWhatEachWordTakes)
{
    const std::string script = bash_completion(app);
    EXPECT_NE(script.find("\ncomplete -F _memscope_trace prog\n"), std::string::npos) << script;
    EXPECT_NE(script.find("':run') cmd='run' ;;"), std::string::npos) << script;
    EXPECT_NE(script.find("'run:'[!-]*) start=$i; break ;;"), std::string::npos) << "run's command ends our options";
    EXPECT_NE(script.find("':-p'|':--pid')\n            _memscope_trace_words \"$(_memscope_trace_pids)\""),
              std::string::npos)
        << script;
    EXPECT_NE(script.find("':--json'|'run:--json')\n            _memscope_trace_files"), std::string::npos) << script;
    EXPECT_NE(script.find("':--mode')\n            _memscope_trace_words 'normal fast'"), std::string::npos) << script;
    EXPECT_NE(script.find("'') _memscope_trace_words 'run show' ;;"), std::string::npos) << script;
    EXPECT_NE(script.find("'show') _memscope_trace_files ;;"), std::string::npos) << script;
    // Flags take no value: the word after one is not skipped.
    EXPECT_EQ(script.find("':--verbose')"), std::string::npos) << script;
    EXPECT_EQ(script.find("':-v'|"), std::string::npos) << script;
    EXPECT_EQ(script.find("secret"), std::string::npos);
}

TEST_F(CliDoc, ZshSpecsAreQuotedAndEscaped)
{
    const std::string script = zsh_completion(app);
    EXPECT_EQ(script.rfind("#compdef prog\n", 0), 0u) << script;
    // Single quotes closed and reopened, brackets escaped inside the explanation.
    EXPECT_NE(script.find("'--tricky=[.starts like a request; back\\\\slash \\[brackets\\]: colon '\\''quoted'\\'' "
                          "`code`]:TEXT:( )'"),
              std::string::npos)
        << script;
    EXPECT_NE(script.find("'(-p --pid)-p+[attach to a process]:PID:_pids'"), std::string::npos) << script;
    EXPECT_NE(script.find("'(-v --verbose)--verbose[say more]'"), std::string::npos) << script;
    EXPECT_NE(script.find("'--mode=[normal or fast]:mode:(normal fast)'"), std::string::npos) << script;
    EXPECT_NE(script.find("'(-)1:command:_command_names -e'"), std::string::npos) << script;
    EXPECT_NE(script.find("'*::arguments:_normal'"), std::string::npos) << script;
    EXPECT_NE(script.find("'*:inputs:_files'"), std::string::npos) << script;
    EXPECT_NE(script.find("(run) _prog_run && ret=0 ;;"), std::string::npos) << script;
    EXPECT_NE(script.find("\n_prog \"$@\"\n"), std::string::npos) << script;
    EXPECT_EQ(script.find("secret"), std::string::npos);
}

} // namespace
} // namespace memscope
