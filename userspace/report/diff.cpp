// Comparing two reports, read by the report reader (report_read.cpp: every
// field checked, bad input is a sentence and exit 2, never a crash): a model
// keyed by what stays stable across runs (executables, thread names, symbolized stacks, variable
// names), the changes worst first, and the thresholds. Four outputs from the
// same outcome: text, markdown, json, junit.
#include "diff.hpp"
#include "utf8.hpp"
#include "json_bounded.hpp"
#include "paths.hpp"
#include "report_json.hpp"
#include "units.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <utility>

namespace memscope {

using nlohmann::json;

namespace {

__extension__ typedef unsigned __int128 u128;

constexpr const char* kDiffSchema = "memscope-trace-diff/1";
constexpr const char* kPrefix = "memscope-trace diff: ";
constexpr std::uint64_t kMaxPercent = 1000000000; // 10^9 %: beyond that a limit means nothing
constexpr std::size_t kTextRows = 50;
constexpr std::size_t kMarkdownRows = 30;

// The counters of totals, processes and threads (model.hpp's list).
const std::vector<std::string> kMetrics = [] {
    std::vector<std::string> names;
    for (const auto& f : kCounterFields)
        names.emplace_back(f.name);
    return names;
}();
const std::vector<std::string> kSiteMetrics = {"alloc_count", "alloc_bytes", "live_count", "live_bytes"};
const std::vector<std::string> kVariableMetrics = {"count", "bytes", "live_count", "live_bytes"};
const std::vector<std::string> kLeakMetrics = {"live_count", "live_bytes"};

bool is_byte_metric(const std::string& metric)
{
    return metric.size() > 6 && metric.compare(metric.size() - 6, 6, "_bytes") == 0;
}

// --- UTF-8 and escaping ---------------------------------------------------------

void append_hex_bytes(std::string& out, std::string_view bytes)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned char c : bytes) {
        out += "\\x";
        out += digits[c >> 4];
        out += digits[c & 15];
    }
}

// Terminal text: control characters (C0, DEL, C1) and bytes that are not
// UTF-8 as \xNN, the backslash doubled, so a name cannot move the cursor.
std::string escape_text(std::string_view s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t start = i;
        long cp = decode_utf8(s, i);
        std::string_view bytes = s.substr(start, i - start);
        if (cp < 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
            append_hex_bytes(out, bytes);
        else if (cp == '\\')
            out += "\\\\";
        else
            out += bytes;
    }
    return out;
}

// GitHub-flavoured markdown, inside a table cell or a line of prose: the
// characters that start markup are escaped, HTML is entities, an '@' cannot
// mention anyone, and control bytes are \xNN as text.
std::string escape_markdown(std::string_view s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t start = i;
        long cp = decode_utf8(s, i);
        std::string_view bytes = s.substr(start, i - start);
        if (cp < 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            out += '\\'; // a backslash before '\' shows one backslash: "\\x0a"
            append_hex_bytes(out, bytes);
            continue;
        }
        switch (cp) {
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '&': out += "&amp;"; break;
        case '@': out += "@&#8203;"; break; // a zero-width space: no mention
        case '|': case '`': case '\\': case '*': case '_': case '[': case ']': case '~': case '#':
        case '!': case '$':
            out += '\\';
            out += static_cast<char>(cp);
            break;
        default: out += bytes;
        }
    }
    return out;
}

// XML 1.0: markup characters as entities; what XML 1.0 forbids (C0 controls
// but tab, newline, return; U+FFFE, U+FFFF; bytes that are not UTF-8) dropped.
std::string escape_xml(std::string_view s, bool attribute)
{
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t start = i;
        long cp = decode_utf8(s, i);
        if (cp < 0 || (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0xFFFE || cp == 0xFFFF)
            continue;
        switch (cp) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += attribute ? "&quot;" : "\""; break;
        case '\'': out += attribute ? "&apos;" : "'"; break;
        case '\t': out += attribute ? "&#9;" : "\t"; break;
        case '\n': out += attribute ? "&#10;" : "\n"; break;
        case '\r': out += "&#13;"; break;
        default: out.append(s.substr(start, i - start));
        }
    }
    return out;
}

// At most `max` bytes of already-escaped text, cut on a character boundary.
std::string clip(std::string s, std::size_t max)
{
    if (s.size() <= max)
        return s;
    std::size_t n = max;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
        --n;
    s.resize(n);
    return s + "...";
}


std::string hex(std::uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
    return buf;
}

// --- the model of one report ----------------------------------------------------

enum Kind : int { kTotal, kProcess, kThread, kSite, kVariable, kLeak };

const char* kind_name(int kind)
{
    switch (kind) {
    case kTotal: return "total";
    case kProcess: return "process";
    case kThread: return "thread";
    case kSite: return "site";
    case kVariable: return "variable";
    default: return "leak";
    }
}

// total: {}; process: {exe}; thread: {exe, name}; site, leak: frame keys;
// variable: {name, type}.
using Key = std::pair<int, std::vector<std::string>>;

struct Entity {
    std::uint64_t members = 0; // processes, threads, sites merged into it
    std::map<std::string, std::uint64_t> values;
};

struct Model {
    std::map<Key, Entity> entities; // totals, processes, threads, sites, variables
    std::map<Key, Entity> leaks;    // leaks the runtime did not explain, by stack
    std::set<std::vector<std::string>> leak_stacks; // every leak's stack, expected ones too
    bool peak_exact = true;
    bool has_sites = false, has_variables = false, has_leaks = false;
    std::set<std::string> exes;

    const Entity& totals() const { return entities.at(Key{kTotal, {}}); }
};

// A string as the report writer would write it: bytes that are not UTF-8
// replaced as it replaces them, so that the tracer's own report in memory
// (run --baseline) matches the same report read from its file.
std::string as_written(const std::string& s)
{
    if (valid_utf8(s))
        return s;
    return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

// The comparison's view of a report: what it holds, by kind and name, each
// metric summed over the entries of one name.
class ModelBuilder {
public:
    explicit ModelBuilder(const Report& r) : r_(r) {}

    // An error sentence, or empty.
    std::string build(Model& m)
    {
        m.peak_exact = r_.peak_live_bytes_exact && r_.live_bytes_exact;
        Entity& t = m.entities[Key{kTotal, {}}];
        t.members = 1;
        if (!counters(r_.totals, "totals", t) || !processes(m) || !sites(m) || !leaks(m) || !variables(m))
            return error_;
        return {};
    }

private:
    bool fail(const std::string& sentence)
    {
        if (error_.empty())
            error_ = sentence;
        return false;
    }

    bool add(Entity& e, const std::string& metric, std::uint64_t v, const std::string& where)
    {
        std::uint64_t& sum = e.values[metric];
        if (__builtin_add_overflow(sum, v, &sum))
            return fail("the sum of " + where + "." + metric + " over entries of one name overflows 64 bits");
        return true;
    }

    // The counters the report has (an older one lacks the later ones).
    bool counters(const Counters& c, const std::string& where, Entity& into)
    {
        for (const auto& f : kCounterFields)
            if (!r_.absent_counters.count(f.name) && !add(into, f.name, c.*f.member, where))
                return false;
        return true;
    }

    // Processes by executable (several with one executable summed); threads
    // by their process's executable and their name.
    bool processes(Model& m)
    {
        std::map<std::uint32_t, std::string> exe_of_pid;
        std::string root_exe = as_written(r_.target.exe);
        for (std::size_t i = 0; i < r_.processes.size(); ++i) {
            const ProcessSection& p = r_.processes[i];
            const std::string exe = as_written(p.target.exe);
            Entity& e = m.entities[Key{kProcess, {exe}}];
            ++e.members;
            if (!counters(p.totals, "processes[" + std::to_string(i) + "].totals", e))
                return false;
            if (i == 0)
                root_exe = exe;
            exe_of_pid[static_cast<std::uint32_t>(p.target.pid)] = exe; // after an exec, the program it became
        }
        if (auto root = exe_of_pid.find(static_cast<std::uint32_t>(r_.target.pid)); root != exe_of_pid.end())
            root_exe = root->second;
        if (r_.processes.empty()) { // one process: its figures are the totals
            Entity& e = m.entities[Key{kProcess, {root_exe}}];
            e.members = 1;
            if (!counters(r_.totals, "totals", e))
                return false;
        }
        for (std::size_t i = 0; i < r_.threads.size(); ++i) {
            const ThreadStats& t = r_.threads[i];
            auto found = exe_of_pid.find(t.pid);
            Entity& e = m.entities[Key{kThread, {found != exe_of_pid.end() ? found->second : root_exe,
                                                 as_written(t.name)}}];
            ++e.members;
            if (!counters(t.counters, "threads[" + std::to_string(i) + "]", e))
                return false;
        }
        for (const auto& [key, e] : m.entities)
            if (key.first == kProcess)
                m.exes.insert(key.second[0]);
        return true;
    }

    // Frames keyed without addresses (ASLR): the symbol, else the module's
    // basename and the offset in it.
    static std::vector<std::string> stack_key(const std::vector<Frame>& stack)
    {
        std::vector<std::string> key;
        key.reserve(stack.size());
        for (const Frame& f : stack)
            key.push_back(!f.symbol.empty() ? as_written(f.symbol)
                                            : (f.module.empty() ? std::string("?") : as_written(base_name(f.module.str()))) +
                                                  "+0x" + hex(f.offset));
        return key;
    }

    bool sites(Model& m)
    {
        m.has_sites = r_.stacks.enabled;
        for (std::size_t i = 0; i < r_.sites.size(); ++i) {
            const Site& s = r_.sites[i];
            const std::string where = "sites[" + std::to_string(i) + "]";
            Entity& e = m.entities[Key{kSite, stack_key(s.stack)}];
            ++e.members;
            if (!add(e, "alloc_count", s.alloc_count, where) || !add(e, "alloc_bytes", s.alloc_bytes, where) ||
                !add(e, "live_count", s.live_count, where) || !add(e, "live_bytes", s.live_bytes, where))
                return false;
        }
        return true;
    }

    bool leaks(Model& m)
    {
        m.has_leaks = r_.stacks.enabled;
        for (std::size_t i = 0; i < r_.leaks.size(); ++i) {
            const Leak& l = r_.leaks[i];
            Key key{kLeak, stack_key(l.stack)};
            m.leak_stacks.insert(key.second);
            if (!l.expected.empty() || !listed_leak(l))
                continue; // the runtime's own, explained; or all of it too young to tell
            Entity& e = m.leaks[key];
            ++e.members;
            const std::string where = "leaks[" + std::to_string(i) + "]";
            if (!add(e, "live_count", l.live_count - l.young_count, where) ||
                !add(e, "live_bytes", l.live_bytes - std::min(l.young_bytes, l.live_bytes), where))
                return false;
        }
        return true;
    }

    bool variables(Model& m)
    {
        m.has_variables = true;
        for (std::size_t i = 0; i < r_.tracked.summary.size(); ++i) {
            const VariableSummary& v = r_.tracked.summary[i];
            const Descriptor* d = r_.tracked.descriptor(v.desc);
            Entity& e = m.entities[Key{kVariable, {d ? as_written(d->name) : "?", d ? as_written(d->type) : ""}}];
            ++e.members;
            const std::string where = "variable_summary[" + std::to_string(i) + "]";
            if (!add(e, "count", v.count, where) || !add(e, "bytes", v.bytes, where) ||
                !add(e, "live_count", v.live_count, where) || !add(e, "live_bytes", v.live_bytes, where))
                return false;
        }
        return true;
    }

    const Report& r_;
    std::string error_;
};

// --- comparing ------------------------------------------------------------------

struct Change {
    const Key* key = nullptr;
    std::string metric;
    std::size_t metric_rank = 0;
    std::optional<std::uint64_t> base, current; // absent: the thing is not in that report
    std::uint64_t base_members = 0, current_members = 0;
    bool decrease = false;
    std::uint64_t magnitude = 0;
    long double relative = 0; // +inf from zero
};

std::size_t metric_rank(int kind, const std::string& metric)
{
    const std::vector<std::string>& list =
        kind == kSite ? kSiteMetrics : kind == kVariable ? kVariableMetrics : kind == kLeak ? kLeakMetrics : kMetrics;
    auto it = std::find(list.begin(), list.end(), metric);
    return it == list.end() ? list.size() : static_cast<std::size_t>(it - list.begin()); // member counts last
}

Change make_change(const Key& key, const std::string& metric, std::optional<std::uint64_t> base,
                   std::optional<std::uint64_t> current)
{
    Change c;
    c.key = &key;
    c.metric = metric;
    c.metric_rank = metric_rank(key.first, metric);
    c.base = base;
    c.current = current;
    std::uint64_t b = base.value_or(0), n = current.value_or(0);
    c.decrease = n < b;
    c.magnitude = c.decrease ? b - n : n - b;
    if (b == 0)
        c.relative = std::numeric_limits<long double>::infinity();
    else
        c.relative = (c.decrease ? -1.0L : 1.0L) * static_cast<long double>(c.magnitude) / static_cast<long double>(b);
    return c;
}

// Worst first: the largest relative increase, then the largest absolute one;
// decreases last; ties in a fixed order of kind, key, metric.
bool worse(const Change& a, const Change& b)
{
    if (a.relative != b.relative)
        return a.relative > b.relative;
    if (a.decrease != b.decrease)
        return !a.decrease;
    if (a.magnitude != b.magnitude)
        return a.decrease ? a.magnitude < b.magnitude : a.magnitude > b.magnitude;
    if (*a.key != *b.key)
        return *a.key < *b.key;
    return a.metric_rank < b.metric_rank;
}

const char* members_metric(int kind)
{
    return kind == kProcess ? "processes" : kind == kThread ? "threads" : nullptr;
}

void compare_entities(const std::map<Key, Entity>& base, const std::map<Key, Entity>& current,
                      const std::function<bool(const Key&)>& wanted, std::vector<Change>& out)
{
    static const Entity kNone;
    std::set<Key> keys;
    for (const auto& [k, e] : base)
        keys.insert(k);
    for (const auto& [k, e] : current)
        keys.insert(k);
    for (const Key& key : keys) {
        if (!wanted(key))
            continue;
        auto bi = base.find(key), ci = current.find(key);
        bool in_base = bi != base.end(), in_current = ci != current.end();
        const Key& stable = in_base ? bi->first : ci->first; // outlives the comparison
        const Entity& b = in_base ? bi->second : kNone;
        const Entity& n = in_current ? ci->second : kNone;
        std::set<std::string> metrics;
        for (const auto& [metric, v] : b.values)
            if (!in_current || n.values.count(metric))
                metrics.insert(metric);
        for (const auto& [metric, v] : n.values)
            if (!in_base || b.values.count(metric))
                metrics.insert(metric);
        auto side = [](bool present, const Entity& e, const std::string& metric) -> std::optional<std::uint64_t> {
            if (!present)
                return std::nullopt;
            return e.values.at(metric);
        };
        for (const auto& metric : metrics) {
            Change c = make_change(stable, metric, side(in_base, b, metric), side(in_current, n, metric));
            c.base_members = b.members;
            c.current_members = n.members;
            if (c.magnitude != 0)
                out.push_back(std::move(c));
        }
        if (const char* mm = members_metric(key.first); mm && b.members != n.members) {
            Change c = make_change(stable, mm, in_base ? std::optional<std::uint64_t>(b.members) : std::nullopt,
                                   in_current ? std::optional<std::uint64_t>(n.members) : std::nullopt);
            c.base_members = b.members;
            c.current_members = n.members;
            out.push_back(std::move(c));
        }
    }
}

struct Check {
    std::string name;    // the threshold as given, or "new leak"
    std::string subject; // target-made text (a leak's stack), escaped per format
    std::string detail;  // our text: metric names and numbers
    bool breached = false;
    bool inexact_peak = false;
    const DiffThreshold* threshold = nullptr;
    std::uint64_t base = 0, current = 0;
    const Key* leak = nullptr;
};

struct Outcome {
    std::string base_label, current_label; // as given (paths), escaped by each format
    std::string base_name, current_name;   // "the base report PATH", escaped, for errors
    std::string peak_note;
    bool base_has_sites = false, current_has_sites = false;
    std::vector<Change> changes;
    std::vector<Check> checks;
    std::vector<std::pair<const Key*, const Entity*>> new_leaks;
    std::vector<std::string> notes;
    bool compared_sites = false, compared_variables = false, compared_leaks = false;
    bool show_exe = false;
    bool leaks_gated = false; // --fail-on-new-leaks: each new leak is a check
    int exit_code = kDiffPass;
    std::size_t breaches() const
    {
        return static_cast<std::size_t>(
            std::count_if(checks.begin(), checks.end(), [](const Check& c) { return c.breached; }));
    }
};

std::string percent_text(long double ratio)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%+.2f%%", static_cast<double>(ratio * 100));
    return buf;
}

std::string signed_text(bool decrease, std::uint64_t magnitude)
{
    return (decrease ? "-" : "+") + std::to_string(magnitude);
}

// A byte figure as a reader takes it in: 812 B, 31.9 KiB, 2.0 MiB (the
// tables for people; JSON and JUnit keep every byte).
bool bytes_shown_human(const std::string& metric)
{
    return is_byte_metric(metric) || metric == "bytes";
}

// "+300 (+3.00%)", "+10.6 KiB (+32.92%)", "+300 (from 0)", "new", "gone".
std::string change_text(const Change& c)
{
    std::string s = bytes_shown_human(c.metric) ? (c.decrease ? "-" : "+") + human_bytes(c.magnitude)
                                                : signed_text(c.decrease, c.magnitude);
    if (!c.base)
        return s + " (new)";
    if (!c.current)
        return s + " (gone)";
    if (*c.base == 0)
        return s + " (from 0)";
    return s + " (" + percent_text(c.relative) + ")";
}

std::string value_text(const std::optional<std::uint64_t>& v, const std::string& metric)
{
    return !v ? "-" : bytes_shown_human(metric) ? human_bytes(*v) : std::to_string(*v);
}

std::string members_suffix(std::uint64_t base, std::uint64_t current)
{
    if (base <= 1 && current <= 1)
        return "";
    if (base == current || base == 0 || current == 0)
        return " x" + std::to_string(std::max(base, current));
    return " x" + std::to_string(base) + "->" + std::to_string(current);
}

std::string stack_label(const std::vector<std::string>& frames)
{
    if (frames.empty())
        return "(no stack)";
    std::string s;
    std::size_t shown = std::min<std::size_t>(frames.size(), 4);
    for (std::size_t i = 0; i < shown; ++i)
        s += (i ? " < " : "") + frames[i];
    if (frames.size() > shown)
        s += " < ... (" + std::to_string(frames.size() - shown) + " more)";
    return s;
}

// What a row is about, unescaped (target-made text: escape per format).
std::string what_label(const Key& key, std::uint64_t base_members, std::uint64_t current_members, bool show_exe)
{
    const auto& p = key.second;
    switch (key.first) {
    case kTotal: return "all processes";
    case kProcess: return p[0] + members_suffix(base_members, current_members);
    case kThread:
        return p[1] + members_suffix(base_members, current_members) + (show_exe ? " in " + base_name(p[0]) : "");
    case kVariable: return p[1].empty() ? p[0] : p[0] + " (" + p[1] + ")";
    default: return stack_label(p);
    }
}

std::string what_label(const Change& c, bool show_exe)
{
    return what_label(*c.key, c.base_members, c.current_members, show_exe);
}

std::string allowed_text(const DiffThreshold& t)
{
    std::string value = t.spec.substr(t.spec.find('=') + 1);
    if (t.percent)
        return "+" + value;
    std::string s = "+" + value;
    if (value != std::to_string(t.limit))
        s += " (" + std::to_string(t.limit) + ")";
    return s;
}

bool exceeds(const DiffThreshold& t, std::uint64_t base, std::uint64_t current)
{
    if (current <= base)
        return false;
    std::uint64_t increase = current - base;
    if (!t.percent)
        return increase > t.limit;
    // increase / base > pct / 100, exactly: pct is in millionths of a percent.
    return static_cast<u128>(increase) * 100000000u > static_cast<u128>(base) * t.percent_micro;
}

// A one-line error, and exit 2.
int bad_input(std::FILE* err, const std::string& sentence)
{
    std::string line = kPrefix + sentence;
    std::replace(line.begin(), line.end(), '\n', ' ');
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), err);
    std::fflush(err);
    return kDiffBadInput;
}

bool compare(const Model& base, const Model& current, const std::vector<DiffThreshold>& thresholds,
             const DiffOptions& options, Outcome& o, std::string& error)
{
    o.compared_sites = base.has_sites && current.has_sites;
    o.base_has_sites = base.has_sites;
    o.current_has_sites = current.has_sites;
    o.compared_variables = base.has_variables && current.has_variables;
    o.compared_leaks = base.has_leaks && current.has_leaks;
    std::set<std::string> exes = base.exes;
    exes.insert(current.exes.begin(), current.exes.end());
    // One program in both: its process row would repeat the totals.
    bool processes = exes.size() > 1;
    o.show_exe = processes;
    compare_entities(base.entities, current.entities, [&](const Key& k) {
        switch (k.first) {
        case kProcess: return processes;
        case kSite: return o.compared_sites;
        case kVariable: return o.compared_variables;
        default: return true;
        }
    }, o.changes);
    std::sort(o.changes.begin(), o.changes.end(), worse);

    const Entity& bt = base.totals();
    const Entity& ct = current.totals();
    bool peak_compared = false;
    for (const auto& t : thresholds) {
        auto b = bt.values.find(t.metric), c = ct.values.find(t.metric);
        if (b == bt.values.end() || c == ct.values.end()) {
            error = (b == bt.values.end() ? o.base_name : o.current_name) + " has no totals." + t.metric +
                    " to compare (" + t.spec + ")";
            return false;
        }
        Check check;
        check.name = t.spec;
        check.threshold = &t;
        check.base = b->second;
        check.current = c->second;
        check.breached = exceeds(t, b->second, c->second);
        static const Key total_key{kTotal, {}};
        Change ch = make_change(total_key, t.metric, b->second, c->second); // for the text only
        check.detail = t.metric + ": " + std::to_string(b->second) + " -> " + std::to_string(c->second) + " (" +
                       (ch.magnitude == 0 ? std::string("no change")
                                          : signed_text(ch.decrease, ch.magnitude) + ", " +
                                                (b->second == 0 ? std::string("from 0") : percent_text(ch.relative))) +
                       "), allowed " + allowed_text(t);
        if (t.metric == "peak_live_bytes") {
            peak_compared = true;
            check.inexact_peak = base.peak_exact == false || current.peak_exact == false;
        }
        o.checks.push_back(std::move(check));
    }
    for (const auto& c : o.changes)
        if (c.key->first == kTotal && c.metric == "peak_live_bytes")
            peak_compared = true;
    if (peak_compared && (base.peak_exact == false || current.peak_exact == false)) {
        std::string which = base.peak_exact == false && current.peak_exact == false ? "either report"
                            : base.peak_exact == false                              ? "the base report"
                                                                                    : "the new report";
        o.peak_note = "peak_live_bytes is not exact in " + which +
                      " (several threads held memory: the process peak is the largest of 100 ms samples and "
                      "the threads' own peaks, so it depends on scheduling); it is compared all the same";
        o.notes.push_back(o.peak_note);
    }
    if (bt.values.at("alloc_count") == 0 && bt.values.at("free_count") == 0)
        o.notes.push_back("the base report saw no allocator call at all: any allocation is an increase from 0");

    if (options.fail_on_new_leaks && !o.compared_leaks) {
        error = "--fail-on-new-leaks needs the leaks of both reports, and " +
                (base.has_leaks ? o.current_name : o.base_name) + " has none (recorded without stacks?)";
        return false;
    }
    if (o.compared_leaks) {
        for (const auto& [key, e] : current.leaks)
            if (!base.leak_stacks.count(key.second))
                o.new_leaks.emplace_back(&key, &e);
        // The largest first.
        std::stable_sort(o.new_leaks.begin(), o.new_leaks.end(), [](const auto& a, const auto& b) {
            return a.second->values.at("live_bytes") > b.second->values.at("live_bytes");
        });
    }
    if (options.fail_on_new_leaks) {
        o.leaks_gated = true;
        for (const auto& [key, e] : o.new_leaks) {
            Check check;
            check.name = "new leak";
            check.leak = key;
            check.subject = stack_label(key->second);
            std::uint64_t n = e->values.at("live_count");
            check.detail = ": " + std::to_string(e->values.at("live_bytes")) + " bytes in " + std::to_string(n) +
                           (n == 1 ? " block" : " blocks") + " live at exit";
            check.current = e->values.at("live_bytes");
            check.breached = true;
            o.checks.push_back(std::move(check));
        }
        if (o.new_leaks.empty()) {
            Check check;
            check.name = "no new leaks";
            check.detail = "no new leaks";
            o.checks.push_back(std::move(check));
        }
    }
    o.exit_code = o.breaches() ? kDiffRegression : kDiffPass;
    return true;
}

// --- outputs --------------------------------------------------------------------

std::string result_sentence(const Outcome& o)
{
    std::size_t n = o.breaches();
    if (n)
        return "regression (" + std::to_string(n) + (n == 1 ? " breach)" : " breaches)");
    if (o.checks.empty())
        return "no threshold given, nothing gated";
    return "pass (" + std::to_string(o.checks.size()) + (o.checks.size() == 1 ? " check" : " checks") +
           " within limits)";
}

std::string as_is(std::string_view s)
{
    return std::string(s);
}

std::string check_line(const Check& c, std::string (*escape)(std::string_view))
{
    return c.leak ? "new leak at " + escape(c.subject) + c.detail : c.detail;
}

std::string format_text(const Outcome& o)
{
    std::string s = "memscope-trace diff: " + escape_text(o.base_label) + " -> " + escape_text(o.current_label) + "\n";
    if (o.changes.empty()) {
        s += "no change in any figure compared\n";
    } else {
        s += "changes, worst first (" + std::to_string(o.changes.size()) + "):\n";
        std::vector<std::array<std::string, 6>> rows{{"kind", "what", "metric", "base", "new", "change"}};
        for (std::size_t i = 0; i < o.changes.size() && i < kTextRows; ++i) {
            const Change& c = o.changes[i];
            rows.push_back({kind_name(c.key->first), clip(escape_text(what_label(c, o.show_exe)), 72), c.metric,
                            value_text(c.base, c.metric), value_text(c.current, c.metric), change_text(c)});
        }
        std::array<std::size_t, 6> width{};
        for (const auto& r : rows)
            for (std::size_t k = 0; k < 6; ++k)
                width[k] = std::max(width[k], r[k].size());
        for (const auto& r : rows) {
            std::string line = " ";
            for (std::size_t k = 0; k < 6; ++k) {
                bool right = k == 3 || k == 4;
                std::string pad(width[k] - r[k].size(), ' ');
                line += " " + (right ? pad + r[k] : k == 5 ? r[k] : r[k] + pad);
            }
            s += line + "\n";
        }
        if (o.changes.size() > kTextRows)
            s += "  ... " + std::to_string(o.changes.size() - kTextRows) +
                 " more changes (--format json lists every one)\n";
    }
    if (o.base_has_sites != o.current_has_sites)
        s += std::string("sites not compared: the ") + (o.base_has_sites ? "new" : "base") +
             " report has none (recorded without stacks?)\n";
    if (!o.leaks_gated) // else each is a check below
        for (const auto& [key, e] : o.new_leaks)
            s += "new leak at " + escape_text(stack_label(key->second)) + ": " +
                 human_bytes(e->values.at("live_bytes")) + " live at exit\n";
    for (const auto& n : o.notes)
        s += "note: " + n + "\n";
    for (const auto& c : o.checks)
        s += std::string(c.breached ? "REGRESSION " : "ok ") + check_line(c, escape_text) + "\n";
    s += "result: " + result_sentence(o) + "\n";
    return s;
}

std::string format_markdown(const Outcome& o)
{
    std::size_t n = o.breaches();
    std::string s = n ? "### :x: memscope-trace: memory regression\n\n"
                      : "### :white_check_mark: memscope-trace: no memory regression\n\n";
    s += "**Result:** " + escape_markdown(result_sentence(o)) + "; base " + escape_markdown(o.base_label) +
         ", new " + escape_markdown(o.current_label) + ".\n\n";
    if (!o.checks.empty()) {
        s += "| check | base | new | allowed | result |\n|---|---:|---:|---:|:---:|\n";
        std::size_t leak_rows = 0, leaks_left = 0;
        for (const auto& c : o.checks) {
            if (c.leak && ++leak_rows > kMarkdownRows) { // a comment has a size limit
                ++leaks_left;
                continue;
            }
            std::string what = c.leak ? "new leak at " + escape_markdown(c.subject) : escape_markdown(c.name);
            std::string base = c.threshold ? std::to_string(c.base) : c.leak ? "-" : "";
            std::string current = c.threshold || c.leak ? std::to_string(c.current) + (c.leak ? " B live" : "") : "";
            std::string allowed = c.threshold ? escape_markdown(allowed_text(*c.threshold)) : c.leak ? "none" : "";
            s += "| " + what + " | " + base + " | " + current + " | " + allowed + " | " +
                 (c.breached ? ":x: **regression**" : ":white_check_mark: ok") + " |\n";
        }
        if (leaks_left)
            s += "\n" + std::to_string(leaks_left) + " more new leaks: `--format json` lists every one.\n";
        s += "\n";
    }
    if (!o.new_leaks.empty() && !o.leaks_gated) {
        s += "New leaks (not gated):\n\n";
        std::size_t shown = 0;
        for (const auto& [key, e] : o.new_leaks)
            if (++shown <= kMarkdownRows)
                s += "- " + escape_markdown(stack_label(key->second)) + ": " +
                     std::to_string(e->values.at("live_bytes")) + " bytes\n";
        if (shown > kMarkdownRows)
            s += "- and " + std::to_string(shown - kMarkdownRows) + " more: `--format json` lists every one\n";
        s += "\n";
    }
    for (const auto& note : o.notes)
        s += "> **Note:** " + escape_markdown(note) + "\n\n";
    if (o.changes.empty()) {
        s += "No change in any figure compared.\n";
        return s;
    }
    s += "<details><summary>Changes, worst first (" + std::to_string(o.changes.size()) + ")</summary>\n\n";
    s += "| kind | what | metric | base | new | change |\n|---|---|---|---:|---:|---:|\n";
    for (std::size_t i = 0; i < o.changes.size() && i < kMarkdownRows; ++i) {
        const Change& c = o.changes[i];
        s += std::string("| ") + kind_name(c.key->first) + " | " + escape_markdown(what_label(c, o.show_exe)) + " | " +
             escape_markdown(c.metric) + " | " + value_text(c.base, c.metric) + " | " +
             value_text(c.current, c.metric) + " | " +
             escape_markdown(change_text(c)) + " |\n";
    }
    if (o.changes.size() > kMarkdownRows)
        s += "\n" + std::to_string(o.changes.size() - kMarkdownRows) + " more changes: `--format json` lists every one.\n";
    s += "\n</details>\n";
    return s;
}

json change_json(const Change& c, bool show_exe)
{
    const auto& p = c.key->second;
    json j{{"kind", kind_name(c.key->first)}, {"what", what_label(c, show_exe)}, {"metric", c.metric}};
    switch (c.key->first) {
    case kProcess: j["exe"] = p[0]; break;
    case kThread:
        j["exe"] = p[0];
        j["name"] = p[1];
        break;
    case kVariable:
        j["name"] = p[0];
        j["type"] = p[1];
        break;
    case kSite: j["stack"] = p; break;
    default: break;
    }
    if (c.key->first == kProcess || c.key->first == kThread) {
        j["base_members"] = c.base_members;
        j["new_members"] = c.current_members;
    }
    j["base"] = c.base ? json(*c.base) : json(nullptr);
    j["new"] = c.current ? json(*c.current) : json(nullptr);
    j["status"] = !c.base ? "new" : !c.current ? "gone" : "changed";
    if (!c.decrease)
        j["delta"] = c.magnitude;
    else if (c.magnitude <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        j["delta"] = -static_cast<std::int64_t>(c.magnitude);
    else
        j["delta"] = -static_cast<double>(c.magnitude);
    j["relative"] = std::isinf(c.relative) ? json(nullptr) : json(static_cast<double>(c.relative));
    return j;
}

std::string format_json(const Outcome& o)
{
    json checks = json::array(), breaches = json::array(), leaks = json::array(), changes = json::array();
    for (const auto& c : o.checks) {
        json j{{"name", c.name}, {"breached", c.breached}, {"message", check_line(c, as_is)}};
        if (c.threshold) {
            j["metric"] = c.threshold->metric;
            j["allowed"] = allowed_text(*c.threshold);
            if (c.threshold->percent)
                j["allowed_percent"] = static_cast<double>(c.threshold->percent_micro) / 1e6;
            else
                j["allowed_increase"] = c.threshold->limit;
            j["base"] = c.base;
            j["new"] = c.current;
            if (c.threshold->metric == "peak_live_bytes")
                j["exact"] = !c.inexact_peak;
        }
        if (c.leak)
            j["stack"] = c.leak->second;
        if (c.breached)
            breaches.push_back(j["message"]);
        checks.push_back(std::move(j));
    }
    for (const auto& [key, e] : o.new_leaks)
        leaks.push_back(json{{"stack", key->second}, {"what", stack_label(key->second)},
                             {"live_count", e->values.at("live_count")}, {"live_bytes", e->values.at("live_bytes")}});
    for (const auto& c : o.changes)
        changes.push_back(change_json(c, o.show_exe));
    json doc{{"schema", kDiffSchema},
             {"base", o.base_label},
             {"new", o.current_label},
             {"result", o.breaches() ? "regression" : "pass"},
             {"exit_code", o.exit_code},
             {"checks", std::move(checks)},
             {"breaches", std::move(breaches)},
             {"new_leaks", std::move(leaks)},
             {"notes", o.notes},
             {"compared", {{"sites", o.compared_sites}, {"variables", o.compared_variables}, {"leaks", o.compared_leaks}}},
             {"changes", std::move(changes)}};
    return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string format_junit(const Outcome& o)
{
    std::size_t tests = std::max<std::size_t>(o.checks.size(), 1), failures = o.breaches();
    std::string counts =
        " tests=\"" + std::to_string(tests) + "\" failures=\"" + std::to_string(failures) + "\" errors=\"0\"";
    std::string s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    s += "<testsuites name=\"memscope-trace diff\"" + counts + ">\n";
    s += "  <testsuite name=\"memscope-trace diff\"" + counts + " skipped=\"0\">\n";
    if (o.checks.empty())
        s += "    <testcase classname=\"memscope-trace.diff\" name=\"comparison\"/>\n";
    for (const auto& c : o.checks) {
        std::string line = check_line(c, as_is);
        std::string name = c.leak ? "new leak at " + c.subject : c.name;
        s += "    <testcase classname=\"memscope-trace.diff\" name=\"" + escape_xml(name, true) + "\"";
        if (!c.breached && !c.inexact_peak) {
            s += "/>\n";
            continue;
        }
        s += ">\n";
        if (c.breached)
            s += "      <failure type=\"regression\" message=\"" + escape_xml(line, true) + "\">" +
                 escape_xml(line, false) + "</failure>\n";
        if (c.inexact_peak)
            s += "      <system-out>" + escape_xml(o.peak_note, false) + "</system-out>\n";
        s += "    </testcase>\n";
    }
    s += "    <system-out>" + escape_xml(format_text(o), false) + "</system-out>\n";
    s += "  </testsuite>\n</testsuites>\n";
    return s;
}

// "the base report PATH", escaped, for errors.
std::string report_name(const char* side, const std::string& label)
{
    return std::string("the ") + side + " report" + (label.empty() ? "" : " " + escape_text(label));
}

int compare_reports(const Report& base, const Report& current, const std::string& base_label,
                    const std::string& current_label, const DiffOptions& options, std::FILE* out, std::FILE* err)
{
    if (std::string e = check_diff_options(options); !e.empty())
        return bad_input(err, e);
    std::vector<DiffThreshold> thresholds;
    for (const auto& spec : options.max_increase) {
        std::string e;
        thresholds.push_back(*parse_threshold(spec, e)); // checked above
    }
    const std::string base_name = report_name("base", base_label);
    const std::string current_name = report_name("new", current_label);
    // Calls of an allocator the tracer could not probe are missing from its
    // figures: nothing sound to gate on.
    for (const auto& [r, name] : {std::pair{&base, &base_name}, std::pair{&current, &current_name}}) {
        if (r->unprobed_allocators.empty())
            continue;
        const std::string& file = r->unprobed_allocators.front().file;
        return bad_input(err, *name + " names allocators that were not probed (" +
                                  clip(escape_text(file.empty() ? "a file" : file), 200) +
                                  (r->unprobed_allocators.size() > 1 ? " and others" : "") +
                                  "): their calls are not counted, so there is nothing sound to gate on");
    }
    // A system-wide report's figures are the kernel's per process (-a), not
    // one command's allocator calls: not what this comparison gates on.
    for (const auto& [r, name] : {std::pair{&base, &base_name}, std::pair{&current, &current_name}})
        if (r->mode_scope == "system")
            return bad_input(err, *name + " is a system-wide report (memscope-trace -a): diff compares the "
                                          "allocator figures of one traced command, not a machine's processes");
    Model base_model, current_model;
    if (std::string e = ModelBuilder(base).build(base_model); !e.empty())
        return bad_input(err, base_name + ": " + e);
    if (std::string e = ModelBuilder(current).build(current_model); !e.empty())
        return bad_input(err, current_name + ": " + e);
    if (current.totals.alloc_count == 0 && current.totals.free_count == 0)
        return bad_input(err, "the new report saw no allocator call at all (alloc_count and free_count are 0): the "
                              "probes caught nothing, so there is nothing to gate on");

    Outcome o;
    o.base_label = base_label.empty() ? "base" : base_label;
    o.current_label = current_label.empty() ? "new" : current_label;
    o.base_name = base_name;
    o.current_name = current_name;
    std::string error;
    if (!compare(base_model, current_model, thresholds, options, o, error))
        return bad_input(err, error);
    std::string text = options.format == "markdown" ? format_markdown(o)
                       : options.format == "json"   ? format_json(o)
                       : options.format == "junit"  ? format_junit(o)
                                                    : format_text(o);
    if (std::fwrite(text.data(), 1, text.size(), out) != text.size() || std::fflush(out) != 0)
        return bad_input(err, std::string("cannot write the comparison: ") + std::strerror(errno));
    return o.exit_code;
}

// Read a parsed document into the model; an error sentence naming it.
std::string read_document(const json& doc, const std::string& name, Report& out)
{
    std::string e = report_from_json(doc, out);
    return e.empty() ? e : name + ": " + escape_text(e);
}

int compare_documents(const json& base_doc, const json& current_doc, const std::string& base_label,
                      const std::string& current_label, const DiffOptions& options, std::FILE* out, std::FILE* err)
{
    Report base, current;
    const std::string base_name = report_name("base", base_label);
    const std::string current_name = report_name("new", current_label);
    if (std::string e = read_document(base_doc, base_name, base); !e.empty())
        return bad_input(err, e);
    if (std::string e = read_document(current_doc, current_name, current); !e.empty())
        return bad_input(err, e);
    return compare_reports(base, current, base_label, current_label, options, out, err);
}

} // namespace

const std::vector<std::string>& diff_metrics()
{
    return kMetrics;
}

std::optional<DiffThreshold> parse_threshold(const std::string& spec, std::string& error)
{
    auto bad = [&](const std::string& why) -> std::optional<DiffThreshold> {
        error = "--max-increase '" + clip(escape_text(spec), 80) + "': " + why;
        return std::nullopt;
    };
    std::size_t eq = spec.find('=');
    if (eq == std::string::npos)
        return bad("expected METRIC=PCT% or METRIC=ABS, e.g. alloc_count=2% or peak_live_bytes=1MiB");
    DiffThreshold t;
    t.spec = spec;
    t.metric = spec.substr(0, eq);
    std::string value = spec.substr(eq + 1);
    if (std::find(kMetrics.begin(), kMetrics.end(), t.metric) == kMetrics.end()) {
        std::string known;
        for (const auto& m : kMetrics)
            known += (known.empty() ? "" : ", ") + m;
        return bad("unknown metric '" + clip(escape_text(t.metric), 40) + "' (a metric of totals: " + known + ")");
    }
    if (value.empty())
        return bad("no limit after '='");
    if (value[0] == '-')
        return bad("a limit cannot be negative (0 forbids any increase)");
    t.percent = value.back() == '%';
    if (t.percent)
        value.pop_back();
    std::size_t i = 0;
    std::string whole, fraction;
    while (i < value.size() && value[i] >= '0' && value[i] <= '9')
        whole += value[i++];
    if (i < value.size() && value[i] == '.') {
        ++i;
        while (i < value.size() && value[i] >= '0' && value[i] <= '9')
            fraction += value[i++];
        if (fraction.empty())
            return bad("'" + clip(escape_text(value), 40) + "' is not a number");
    }
    std::string unit = value.substr(i);
    if (whole.empty())
        return bad("'" + clip(escape_text(value), 40) +
                   "' is not a limit: a percentage (2%, 0.5%) or an absolute increase (0, 300, 10KiB, 1.5MiB)");
    whole.erase(0, std::min(whole.find_first_not_of('0'), whole.size() - 1));
    if (whole.size() > 20 || fraction.size() > 9)
        return bad("the number is too long");
    u128 w = 0, f = 0, scale = 1;
    for (char c : whole)
        w = w * 10 + static_cast<unsigned>(c - '0');
    for (char c : fraction) {
        f = f * 10 + static_cast<unsigned>(c - '0');
        scale *= 10;
    }
    if (t.percent) {
        if (!unit.empty() || value.find('%') != std::string::npos)
            return bad("'" + clip(escape_text(spec.substr(eq + 1)), 40) + "' is not a percentage (2%, 0.5%)");
        if (fraction.size() > 6)
            return bad("a percentage takes at most six decimals");
        if (w > kMaxPercent)
            return bad("a percentage above 1000000000% limits nothing");
        t.percent_micro = static_cast<std::uint64_t>(w * 1000000 + f * 1000000 / scale);
        return t;
    }
    u128 multiplier = 1;
    if (unit == "KiB")
        multiplier = 1ULL << 10;
    else if (unit == "MiB")
        multiplier = 1ULL << 20;
    else if (unit == "GiB")
        multiplier = 1ULL << 30;
    else if (!unit.empty())
        return bad("unknown unit '" + clip(escape_text(unit), 20) + "' (KiB, MiB, GiB; or a percentage: 2%)");
    if (!unit.empty() && !is_byte_metric(t.metric))
        return bad(t.metric + " is a count: a size unit only fits a byte metric");
    if (!fraction.empty() && unit.empty())
        return bad(is_byte_metric(t.metric) ? "a number of bytes is whole (or give a unit: 1.5MiB)"
                                            : t.metric + " is a count: give a whole number");
    u128 limit = w * multiplier + f * multiplier / scale; // a fraction of a byte rounds down
    if (limit > std::numeric_limits<std::uint64_t>::max())
        return bad("the limit is beyond 64 bits");
    t.limit = static_cast<std::uint64_t>(limit);
    return t;
}

std::string check_diff_options(const DiffOptions& options)
{
    if (options.format != "text" && options.format != "markdown" && options.format != "json" &&
        options.format != "junit")
        return "unknown format '" + clip(escape_text(options.format), 40) + "' (text, markdown, json, junit)";
    for (const auto& spec : options.max_increase) {
        std::string error;
        if (!parse_threshold(spec, error))
            return error;
    }
    return {};
}

int diff_reports(const Report& base, const Report& current, const DiffOptions& options, std::FILE* out,
                 std::FILE* err, const std::string& base_label, const std::string& current_label)
{
    return compare_reports(base, current, base_label, current_label, options, out, err);
}

int diff_reports(const json& base, const json& current, const DiffOptions& options, std::FILE* out, std::FILE* err,
                 const std::string& base_label, const std::string& current_label)
{
    if (base.is_discarded() || current.is_discarded())
        return bad_input(err, std::string(base.is_discarded() ? "the base report" : "the new report") +
                                  " is not valid JSON");
    // A document made in memory is read as its file would be: written as
    // the report writer writes it, bytes that are not UTF-8 replaced, then
    // parsed back. Names then match those of a report read from disk.
    json base_doc, current_doc;
    try {
        base_doc = json::parse(base.dump(-1, ' ', false, json::error_handler_t::replace));
        current_doc = json::parse(current.dump(-1, ' ', false, json::error_handler_t::replace));
    } catch (const json::exception& e) {
        return bad_input(err, "a report cannot be read back (" + clip(escape_text(e.what()), 200) + ")");
    }
    return compare_documents(base_doc, current_doc, base_label, current_label, options, out, err);
}

int diff_texts(const std::string& base_text, const std::string& current_text, const DiffOptions& options,
               std::FILE* out, std::FILE* err)
{
    if (std::string e = check_diff_options(options); !e.empty())
        return bad_input(err, e);
    json base, current;
    if (std::string e = parse_report_text(base_text, base, false); !e.empty())
        return bad_input(err, "the base report " + e);
    if (std::string e = parse_report_text(current_text, current, false); !e.empty())
        return bad_input(err, "the new report " + e);
    return compare_documents(base, current, "", "", options, out, err);
}

int diff_files(const std::string& base_path, const std::string& current_path, const DiffOptions& options,
               std::FILE* out, std::FILE* err)
{
    if (std::string e = check_diff_options(options); !e.empty())
        return bad_input(err, e);
    // Each read from its file as it is parsed, variables skipped: the
    // reports' sizes in memory are their models'.
    Report base, current;
    for (auto [path, report, name] : {std::tuple{&base_path, &base, "the base report "},
                                      std::tuple{&current_path, &current, "the new report "}}) {
        if (std::string e = read_report_json(*path, *report, false); !e.empty())
            return bad_input(err, (e.rfind("cannot read ", 0) == 0 ? std::string() : std::string(name)) +
                                      escape_text(e));
    }
    return compare_reports(base, current, base_path, current_path, options, out, err);
}

} // namespace memscope
