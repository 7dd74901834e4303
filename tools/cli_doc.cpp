// The man page and the shell completions, from the CLI11 definitions: the
// command tree is read once into CommandDoc (names, types, checks, choices,
// descriptions, what is required), and each document is a rendering of it.
#include "cli_doc.hpp"

#include <cctype>
#include <cstdio>
#include <utility>
#include <vector>

namespace memscope {
namespace {

// What an option's value is, as far as completing it goes.
enum class ValueKind { flag, file, pid, command, choice, other };

struct OptionDoc {
    std::vector<std::string> names; // "-p", "--pid"; empty for a positional
    std::string positional;         // a positional's name
    std::string type;               // as --help names it: TEXT, UINT, FLOAT, INT
    std::string check;              // what its validators accept, as --help says it
    std::vector<std::string> choices;
    ValueKind kind = ValueKind::flag;
    std::string description;
    bool required = false;
    bool repeatable = false;
    bool inherited = false; // the same option as the parent command's: documented there
};

struct CommandDoc {
    std::string name; // the program's, or the subcommand's
    std::string path; // subcommands from the top, '/'-separated ("" at the top)
    std::string description;
    std::vector<OptionDoc> options;
    std::vector<OptionDoc> positionals;
    std::vector<CommandDoc> commands;
};

bool mentions(const std::string& text, const char* word) { return text.find(word) != std::string::npos; }

std::string join(const std::vector<std::string>& items, const std::string& sep)
{
    std::string out;
    for (const auto& i : items)
        out += (out.empty() ? "" : sep) + i;
    return out;
}

// The kind of a value, read off its definition: a CLI::IsMember's choices,
// the PID check, a text said to be the command to run (CMD), a FILE or a
// report (reports are files).
ValueKind kind_of(const OptionDoc& o)
{
    if (!o.choices.empty())
        return ValueKind::choice;
    if (o.check == "PID")
        return ValueKind::pid;
    if (o.type == "TEXT" && mentions(o.description, "CMD"))
        return ValueKind::command;
    if (o.type == "TEXT" && (mentions(o.description, "FILE") || mentions(o.description, "report")))
        return ValueKind::file;
    return ValueKind::other;
}

OptionDoc describe(const CLI::Option& opt)
{
    OptionDoc o;
    for (const auto& s : opt.get_snames())
        o.names.push_back("-" + s);
    for (const auto& l : opt.get_lnames())
        o.names.push_back("--" + l);
    if (opt.get_positional())
        o.positional = opt.get_name(true);
    o.description = opt.get_description();
    o.required = opt.get_required();
    o.repeatable = opt.get_expected_max() > 1 || opt.get_multi_option_policy() == CLI::MultiOptionPolicy::TakeAll;
    if (opt.get_type_size() == 0 || opt.get_expected_max() == 0)
        return o; // a flag, as --help tells them
    // --help's "TYPE:CHECK", e.g. UINT:UINT in [1 - 64], TEXT:{grouped,all}, INT:PID.
    const std::string t = opt.get_type_name();
    const auto colon = t.find(':');
    o.type = t.substr(0, colon);
    if (colon != std::string::npos)
        o.check = t.substr(colon + 1);
    if (o.check.size() > 2 && o.check.front() == '{' && o.check.back() == '}') {
        std::string item;
        for (char c : o.check.substr(1, o.check.size() - 2) + ",") {
            if (c != ',') {
                item += c;
            } else if (!item.empty()) {
                o.choices.push_back(item);
                item.clear();
            }
        }
    }
    o.kind = kind_of(o);
    return o;
}

// The tree of commands, hidden options and subcommands (group "") left out.
CommandDoc describe(const CLI::App& app, const CommandDoc* parent)
{
    CommandDoc c;
    c.name = app.get_name();
    if (!parent) // the program: its name as run, without the directory
        c.name = c.name.substr(c.name.rfind('/') + 1);
    c.path = !parent ? "" : parent->path.empty() ? c.name : parent->path + "/" + c.name;
    c.description = app.get_description();
    for (const CLI::Option* opt : app.get_options()) {
        if (opt->get_group().empty())
            continue;
        OptionDoc o = describe(*opt);
        if (parent)
            for (const auto& p : parent->options)
                o.inherited |= p.names == o.names && p.description == o.description;
        (o.positional.empty() ? c.options : c.positionals).push_back(std::move(o));
    }
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        if (!sub->get_group().empty())
            c.commands.push_back(describe(*sub, &c));
    return c;
}

CommandDoc describe_program(const CLI::App& app) { return describe(app, nullptr); }

// --- man(7) ------------------------------------------------------------------

// Text for roff: a backslash is \e, every hyphen \- (a minus sign: what a
// shell takes when it is copied from the page), `code` bold, and a line
// that would begin with a control character ('.' or '\'') starts with \&.
std::string roff(const std::string& text)
{
    std::string out;
    bool code = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (out.empty() || out.back() == '\n')
            if (c == '.' || c == '\'')
                out += "\\&";
        if (c == '\\')
            out += "\\e";
        else if (c == '-')
            out += "\\-";
        else if (c == '`' && (code || text.find('`', i + 1) != std::string::npos))
            out += (code = !code) ? "\\fB" : "\\fR";
        else if (c == '`')
            out += "\\(ga";
        else if (c == '"')
            out += "\\(dq"; // so that it may stand in a macro's quoted argument too
        else
            out += c;
    }
    return out + (code ? "\\fR" : "");
}

std::string bold(const std::string& s) { return "\\fB" + roff(s) + "\\fR"; }
std::string italic(const std::string& s) { return "\\fI" + roff(s) + "\\fR"; }

// What stands for the value in the synopsis and the option's tag.
std::string man_value(const OptionDoc& o)
{
    std::string v;
    if (!o.positional.empty())
        return italic(o.positional) + (o.repeatable ? " ..." : "");
    switch (o.kind) {
    case ValueKind::flag: return {};
    case ValueKind::choice:
        for (const auto& c : o.choices)
            v += (v.empty() ? "" : "|") + italic(c);
        break;
    case ValueKind::file: v = italic("FILE"); break;
    case ValueKind::pid: v = italic("PID"); break;
    default: v = italic(o.type); break;
    }
    return v + (o.repeatable ? " ..." : "");
}

std::string man_tag(const OptionDoc& o)
{
    if (!o.positional.empty())
        return man_value(o);
    std::vector<std::string> names;
    for (const auto& n : o.names)
        names.push_back(bold(n));
    const std::string v = man_value(o);
    return join(names, ", ") + (v.empty() ? "" : " " + v);
}

// A check as a reader says it: "UINT in [1 - 64]" is "from 1 to 64".
std::string check_text(const std::string& check)
{
    const auto in = check.find(" in [");
    const auto dash = check.find(" - ", in);
    if (in != std::string::npos && dash != std::string::npos && check.back() == ']')
        return "from " + check.substr(in + 5, dash - in - 5) + " to " +
               check.substr(dash + 3, check.size() - dash - 4);
    if (check == "POSITIVE")
        return "positive";
    if (check == "NONNEGATIVE")
        return "zero or more";
    return check;
}

void man_entry(std::string& out, const OptionDoc& o)
{
    out += ".TP\n" + man_tag(o) + "\n";
    std::string text = o.description;
    if (!o.check.empty() && o.kind != ValueKind::choice && o.kind != ValueKind::pid)
        text += " (" + check_text(o.check) + ")";
    if (o.required && o.positional.empty())
        text += " (required)";
    out += roff(text) + "\n";
}

// A command's synopsis: its required options, then [OPTIONS], then its positionals.
std::string man_synopsis(const CommandDoc& c, const std::string& program)
{
    std::string words = program + (c.path.empty() ? "" : "/" + c.path);
    for (auto& ch : words)
        ch = ch == '/' ? ' ' : ch;
    std::string s = ".B " + roff(words) + "\n";
    std::string line;
    for (const auto& o : c.options)
        if (o.required)
            line += man_tag(o) + " ";
    line += "[\\fIOPTIONS\\fR]";
    for (const auto& p : c.positionals)
        line += " " + (p.required ? man_value(p) : "[" + man_value(p) + "]");
    return s + line + "\n";
}

void man_command(std::string& out, const CommandDoc& c, const std::string& program)
{
    std::string path = c.path;
    for (auto& ch : path)
        ch = ch == '/' ? ' ' : ch;
    out += ".SS \"" + roff(path) + "\"\n" + roff(c.description) + "\n.PP\n" + man_synopsis(c, program);
    std::vector<std::string> inherited;
    for (const auto& p : c.positionals)
        man_entry(out, p);
    for (const auto& o : c.options) {
        if (o.inherited)
            inherited.push_back(bold(o.names.back()));
        else
            man_entry(out, o);
    }
    if (!inherited.empty())
        out += ".PP\nAlso, as above: " + join(inherited, ", ") + ".\n";
    for (const auto& sub : c.commands)
        man_command(out, sub, program);
}

} // namespace

std::string man_page(const CLI::App& app, const std::string& version)
{
    const CommandDoc top = describe_program(app);
    const std::string& name = top.name;
    // "memscope-trace: what it does" names the program once.
    std::string summary = top.description;
    if (summary.rfind(name + ": ", 0) == 0)
        summary = summary.substr(name.size() + 2);
    std::string upper = name;
    for (auto& ch : upper)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));

    std::string out = ".\\\" Generated by `" + roff(name) + " --generate man` from its command line: do not edit.\n";
    out += ".TH \"" + roff(upper) + "\" 1 \"\" \"" + roff(name + " " + version) + "\" \"User Commands\"\n";
    out += ".nh\n.ad l\n"; // no hyphenation (option names stay whole), ragged right
    out += ".SH NAME\n" + roff(name) + " \\- " + roff(summary) + "\n";
    out += ".SH SYNOPSIS\n" + man_synopsis(top, name);
    std::vector<std::string> command_names;
    for (const auto& c : top.commands) {
        out += ".br\n" + man_synopsis(c, name);
        command_names.push_back(bold(c.name));
    }
    out += ".SH DESCRIPTION\n" + bold(name) + " \\- " + roff(summary) + ".\n";
    if (!command_names.empty())
        out += ".PP\nIts commands, under COMMANDS below: " + join(command_names, ", ") + ".\n";
    out += ".SH OPTIONS\n";
    for (const auto& p : top.positionals)
        man_entry(out, p);
    for (const auto& o : top.options)
        man_entry(out, o);
    if (!top.commands.empty()) {
        out += ".SH COMMANDS\n";
        for (const auto& c : top.commands)
            man_command(out, c, name);
    }
    out += ".SH SEE ALSO\n" + bold(name + " --help") + "; README.md, installed with its documentation (share/doc/" +
           roff(name) + ").\n";
    return out;
}

// --- bash ----------------------------------------------------------------------

namespace {

// A word for bash, single-quoted.
std::string sh_quote(const std::string& s)
{
    std::string out = "'";
    for (char c : s)
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

void flatten(const CommandDoc& c, std::vector<const CommandDoc*>& out)
{
    out.push_back(&c);
    for (const auto& sub : c.commands)
        flatten(sub, out);
}

// `"path:word"|...`: a case pattern for words of these commands.
std::string bash_patterns(const std::vector<std::pair<std::string, std::string>>& keys)
{
    std::vector<std::string> quoted;
    for (const auto& [path, word] : keys)
        quoted.push_back(sh_quote(path + ":" + word));
    return join(quoted, "|");
}

// The case arms completing the value of the option before the cursor.
std::string bash_values(const std::vector<const CommandDoc*>& commands)
{
    std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> arms; // action, keys
    auto arm = [&](const std::string& action) -> auto& {
        for (auto& a : arms)
            if (a.first == action)
                return a.second;
        arms.push_back({action, {}});
        return arms.back().second;
    };
    for (const CommandDoc* c : commands)
        for (const auto& o : c->options) {
            std::string action;
            switch (o.kind) {
            case ValueKind::flag: continue;
            case ValueKind::file: action = "_memscope_trace_files"; break;
            case ValueKind::pid: action = "_memscope_trace_words \"$(_memscope_trace_pids)\""; break;
            case ValueKind::command: action = "_memscope_trace_commands"; break;
            case ValueKind::choice: action = "_memscope_trace_words " + sh_quote(join(o.choices, " ")); break;
            case ValueKind::other: action = ":"; break; // a value of its own: nothing to offer
            }
            for (const auto& n : o.names)
                arm(action).push_back({c->path, n});
        }
    std::string out;
    for (const auto& [action, keys] : arms)
        out += "        " + bash_patterns(keys) + ")\n            " + action + "\n            return 0 ;;\n";
    return out;
}

// The scan of the words before the cursor: which command they are in, the
// words options take, where a command to run (or what follows --) begins.
std::string bash_scan(const std::vector<const CommandDoc*>& commands)
{
    std::string out;
    for (const CommandDoc* c : commands)
        for (const auto& sub : c->commands)
            out += "            " + sh_quote(c->path + ":" + sub.name) + ") cmd=" + sh_quote(sub.path) + " ;;\n";
    std::vector<std::pair<std::string, std::string>> takes_value;
    for (const CommandDoc* c : commands)
        for (const auto& o : c->options)
            if (o.kind != ValueKind::flag)
                for (const auto& n : o.names)
                    takes_value.push_back({c->path, n});
    if (!takes_value.empty())
        out += "            " + bash_patterns(takes_value) + ") skip=1 ;;\n";
    for (const CommandDoc* c : commands)
        for (const auto& p : c->positionals)
            if (p.kind == ValueKind::command)
                out += "            " + sh_quote(c->path + ":") + "[!-]*) start=$i; break ;;\n";
    return out;
}

// The case arms for a word of the command itself: options, or positionals.
std::string bash_words(const std::vector<const CommandDoc*>& commands, bool options, const std::string& indent)
{
    std::string out;
    for (const CommandDoc* c : commands) {
        std::string action;
        if (options) {
            std::vector<std::string> names;
            for (const auto& o : c->options)
                names.insert(names.end(), o.names.begin(), o.names.end());
            action = "_memscope_trace_words " + sh_quote(join(names, " "));
        } else if (!c->commands.empty()) {
            std::vector<std::string> names;
            for (const auto& sub : c->commands)
                names.push_back(sub.name);
            action = "_memscope_trace_words " + sh_quote(join(names, " "));
        } else if (!c->positionals.empty()) {
            switch (c->positionals.front().kind) {
            case ValueKind::command:
                action = "if [[ -z $start || $COMP_CWORD -eq $start ]]; then _memscope_trace_commands; "
                         "else _memscope_trace_files; fi";
                break;
            case ValueKind::file: action = "_memscope_trace_files"; break;
            case ValueKind::pid: action = "_memscope_trace_words \"$(_memscope_trace_pids)\""; break;
            case ValueKind::choice:
                action = "_memscope_trace_words " + sh_quote(join(c->positionals.front().choices, " "));
                break;
            default: continue;
            }
        } else {
            continue;
        }
        out += indent + sh_quote(c->path) + ") " + action + " ;;\n";
    }
    return out;
}

} // namespace

std::string bash_completion(const CLI::App& app)
{
    const CommandDoc top = describe_program(app);
    std::vector<const CommandDoc*> commands;
    flatten(top, commands);
    std::string out = "# bash completion for " + top.name + ". Generated by `" + top.name +
                      " --generate bash` from its command line: do not edit.\n\n";
    out += R"(_memscope_trace_words()
{
    local IFS=$' \t\n'
    COMPREPLY=($(compgen -W "$1" -- "$cur"))
}

_memscope_trace_files()
{
    local IFS=$'\n'
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
}

_memscope_trace_commands()
{
    local IFS=$'\n'
    COMPREPLY=($(compgen -c -- "$cur"))
}

_memscope_trace_pids()
{
    local p
    for p in /proc/[0-9]*; do
        printf '%s\n' "${p#/proc/}"
    done
}

_memscope_trace()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev= cmd= word= skip= start= i
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    # bash splits --option=value at the '='.
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ -n $skip ]]; then
            skip=
            [[ $word == = ]] && skip=1
            continue
        fi
        if [[ $word == -- ]]; then
            start=$((i + 1))
            break
        fi
        case "$cmd:$word" in
)";
    out += bash_scan(commands);
    out += R"(        esac
    done
    if [[ -z $start ]]; then
        case "$cmd:$prev" in
)";
    out += bash_values(commands);
    out += R"(        esac
        if [[ $cur == -* ]]; then
            case $cmd in
)";
    out += bash_words(commands, true, "            ");
    out += R"(            esac
            return 0
        fi
    fi
    case $cmd in
)";
    out += bash_words(commands, false, "        ");
    out += "    esac\n    return 0\n}\n\ncomplete -F _memscope_trace " + top.name + "\n";
    return out;
}

// --- zsh -----------------------------------------------------------------------

namespace {

// An _arguments spec: single-quoted for the shell; in its [explanation]
// brackets and backslashes are escaped, in its message colons.
std::string zsh_explanation(const std::string& s)
{
    std::string out;
    for (char c : s) {
        if (c == '\\' || c == '[' || c == ']')
            out += '\\';
        out += c;
    }
    return out;
}

std::string zsh_message(const std::string& s)
{
    std::string out;
    for (char c : s) {
        if (c == '\\' || c == ':')
            out += '\\';
        out += c;
    }
    return out;
}

// ":message:action" for a value.
std::string zsh_value(const OptionDoc& o, const std::string& message)
{
    std::string action;
    switch (o.kind) {
    case ValueKind::flag: return {};
    case ValueKind::file: action = "_files"; break;
    case ValueKind::pid: action = "_pids"; break;
    case ValueKind::command: action = "_command_names -e"; break;
    case ValueKind::choice: action = "(" + join(o.choices, " ") + ")"; break;
    case ValueKind::other: action = "( )"; break; // a value of its own: nothing to offer
    }
    return ":" + zsh_message(message) + ":" + action;
}

// One spec per name: -p+ and --pid= take the value in the same word or the
// next; names of one option exclude each other unless it repeats.
std::vector<std::string> zsh_option_specs(const OptionDoc& o)
{
    std::vector<std::string> specs;
    std::string message = o.kind == ValueKind::choice ? o.names.back().substr(o.names.back().find_first_not_of('-'))
                          : o.kind == ValueKind::file ? "FILE"
                          : o.kind == ValueKind::pid  ? "PID"
                                                      : o.type;
    for (const auto& n : o.names) {
        std::string spec = o.repeatable ? "*" : o.names.size() > 1 ? "(" + join(o.names, " ") + ")" : "";
        spec += n;
        if (o.kind != ValueKind::flag)
            spec += n.size() == 2 ? "+" : "=";
        spec += "[" + zsh_explanation(o.description) + "]" + zsh_value(o, message);
        specs.push_back(sh_quote(spec));
    }
    return specs;
}

// Positionals: N:message:action, a repeated last one *:message:action; a
// command to run completes as a command line of its own.
std::vector<std::string> zsh_positional_specs(const CommandDoc& c)
{
    std::vector<std::string> specs;
    int n = 0;
    for (const auto& p : c.positionals) {
        ++n;
        if (p.kind == ValueKind::command) {
            specs.push_back(sh_quote("(-)" + std::to_string(n) + zsh_value(p, p.positional)));
            specs.push_back(sh_quote("*::arguments:_normal"));
            break;
        }
        const std::string place = p.repeatable ? "*" : std::to_string(n) + (p.required ? "" : ":");
        specs.push_back(sh_quote(place + zsh_value(p, p.positional)));
    }
    return specs;
}

std::string zsh_function_name(const CommandDoc& c, const std::string& program)
{
    std::string name = "_" + program + (c.path.empty() ? "" : "_" + c.path);
    for (auto& ch : name)
        ch = ch == '/' ? '_' : ch;
    return name;
}

void zsh_function(std::string& out, const CommandDoc& c, const std::string& program)
{
    for (const auto& sub : c.commands)
        zsh_function(out, sub, program);
    std::vector<std::string> specs;
    for (const auto& o : c.options)
        for (auto& s : zsh_option_specs(o))
            specs.push_back(std::move(s));
    for (auto& s : zsh_positional_specs(c))
        specs.push_back(std::move(s));
    const std::string fn = zsh_function_name(c, program);
    out += fn + "()\n{\n";
    if (c.commands.empty()) {
        out += "    _arguments -s -S :";
        for (const auto& s : specs)
            out += " \\\n        " + s;
        out += "\n}\n\n";
        return;
    }
    out += "    local curcontext=$curcontext state state_descr line ret=1\n    typeset -A opt_args\n";
    out += "    _arguments -C -s -S :";
    for (const auto& s : specs)
        out += " \\\n        " + s;
    out += " \\\n        '1: :->command' \\\n        '*:: :->argument' && ret=0\n";
    out += "    case $state in\n    (command)\n        local -a commands=(\n";
    for (const auto& sub : c.commands)
        out += "            " + sh_quote(zsh_message(sub.name) + ":" + sub.description) + "\n";
    out += "        )\n        _describe -t commands " + sh_quote(program + " command") +
           " commands && ret=0\n        ;;\n";
    out += "    (argument)\n        curcontext=${curcontext%:*:*}:" + zsh_function_name(c, program).substr(1) +
           "-$words[1]:\n        case $words[1] in\n";
    for (const auto& sub : c.commands)
        out += "        (" + sub.name + ") " + zsh_function_name(sub, program) + " && ret=0 ;;\n";
    out += "        esac\n        ;;\n    esac\n    return ret\n}\n\n";
}

} // namespace

std::string zsh_completion(const CLI::App& app)
{
    const CommandDoc top = describe_program(app);
    std::string out = "#compdef " + top.name + "\n# Generated by `" + top.name +
                      " --generate zsh` from its command line: do not edit.\n\n";
    zsh_function(out, top, top.name);
    return out + zsh_function_name(top, top.name) + " \"$@\"\n";
}

void add_doc_generator(CLI::App& app, std::string version)
{
    app.add_option_function<std::string>(
           "--generate",
           [&app, version](const std::string& what) {
               const std::string text = what == "man"    ? man_page(app, version)
                                        : what == "bash" ? bash_completion(app)
                                                         : zsh_completion(app);
               if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
                   throw CLI::RuntimeError("cannot write the " + what + " document", 1);
               throw CLI::Success();
           },
           "print the man page or a completion script (man, bash, zsh) and exit")
        ->check(CLI::IsMember({"man", "bash", "zsh"}))
        ->group(""); // the build's, not the user's: hidden from --help
}

} // namespace memscope
