// The one reader of a report document: every field the writer
// (report_json.cpp) writes goes back into the model. `report`, `diff`,
// `run --baseline` and the renderings read reports only through here.
#include "report_json.hpp"

#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "memscope/probe_abi.h"

namespace memscope {

using nlohmann::json;

std::string json_kind(const json& v)
{
    if (v.is_null())
        return "null";
    if (v.is_boolean())
        return "a boolean";
    return (v.is_object() || v.is_array() ? "an " : "a ") + std::string(v.type_name());
}

namespace {

std::string at(const std::string& where, const std::string& key)
{
    return where.empty() ? key : where + "." + key;
}

std::string item(const std::string& where, std::size_t i)
{
    return where + "[" + std::to_string(i) + "]";
}

bool is_int64(const json& v)
{
    return v.is_number_integer() && !(v.is_number_unsigned() && v.get<std::uint64_t>() > INT64_MAX);
}

std::string not_a_count(const json& v)
{
    if (v.is_number_float())
        return "is not an unsigned 64-bit integer (a fraction, or beyond 18446744073709551615)";
    if (v.is_number_integer())
        return "is negative, expected an unsigned 64-bit integer";
    return "is " + json_kind(v) + ", expected an unsigned 64-bit integer";
}

// Field by field, the first wrong one said with its place in the document
// ("threads[3].alloc_count is negative, ..."). A field an older report
// lacks keeps its default unless it is one every report has.
class In {
public:
    std::string error;

    bool fail(const std::string& sentence)
    {
        if (error.empty())
            error = sentence;
        return false;
    }

    // A non-negative integer: parsed (unsigned) or made in memory (signed).
    bool count(const json& v, const std::string& where, std::uint64_t& out)
    {
        if (v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
            out = v.get<std::uint64_t>();
            return true;
        }
        return fail(where + " " + not_a_count(v));
    }

    template <typename T>
    bool u(const json& obj, const std::string& where, const char* key, T& out, bool required = false)
    {
        auto it = obj.find(key);
        if (it == obj.end())
            return !required || fail(at(where, key) + " is missing");
        std::uint64_t v = 0;
        if (!count(*it, at(where, key), v))
            return false;
        if (v > std::numeric_limits<T>::max())
            return fail(at(where, key) + " is " + std::to_string(v) + ", beyond " +
                        std::to_string(std::numeric_limits<T>::max()));
        out = static_cast<T>(v);
        return true;
    }

    // A count written as null when there is none: 0 then.
    bool u_or_null(const json& obj, const std::string& where, const char* key, std::uint64_t& out)
    {
        auto it = obj.find(key);
        return it == obj.end() || it->is_null() || count(*it, at(where, key), out);
    }

    // A field of one JSON kind (`is` says whether a value is one), read as T.
    template <typename T, typename Is>
    bool scalar(const json& obj, const std::string& where, const char* key, T& out, Is is, const char* expected)
    {
        auto it = obj.find(key);
        if (it == obj.end())
            return true;
        if (!is(*it))
            return fail(at(where, key) + " is " + json_kind(*it) + ", expected " + expected);
        out = it->get<T>();
        return true;
    }

    bool i(const json& obj, const std::string& where, const char* key, std::int64_t& out)
    {
        return scalar(obj, where, key, out, is_int64, "a 64-bit integer");
    }

    bool real(const json& obj, const std::string& where, const char* key, double& out)
    {
        return scalar(obj, where, key, out, [](const json& v) { return v.is_number(); }, "a number");
    }

    bool boolean(const json& obj, const std::string& where, const char* key, bool& out)
    {
        return scalar(obj, where, key, out, [](const json& v) { return v.is_boolean(); }, "true or false");
    }

    // Null reads as empty: the writer writes null for a name it lacks.
    template <typename S>
    bool str(const json& obj, const std::string& where, const char* key, S& out, bool required = false)
    {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null())
            return !required ||
                   fail(at(where, key) + (it == obj.end() ? " is missing" : " is null, expected a string"));
        if (!it->is_string())
            return fail(at(where, key) + " is " + json_kind(*it) + ", expected a string");
        out = S(it->get_ref<const std::string&>());
        return true;
    }

    // The object at `key`; null when absent (or wrong: then error says so).
    const json* object(const json& obj, const std::string& where, const char* key, bool required = false)
    {
        auto it = obj.find(key);
        if (it == obj.end()) {
            if (required)
                fail(at(where, key) + " is missing");
            return nullptr;
        }
        if (!it->is_object()) {
            fail(at(where, key) + " is " + json_kind(*it) + ", expected an object");
            return nullptr;
        }
        return &*it;
    }

    // Each element of the array at `key` (absent: none), with its place.
    template <typename F>
    bool each(const json& obj, const std::string& where, const char* key, F&& read)
    {
        auto it = obj.find(key);
        if (it == obj.end())
            return true;
        if (!it->is_array())
            return fail(at(where, key) + " is " + json_kind(*it) + ", expected an array");
        for (std::size_t n = 0; n < it->size(); ++n)
            if (!read((*it)[n], item(at(where, key), n)))
                return false;
        return true;
    }

    // Each element that must be an object.
    template <typename F>
    bool objects(const json& obj, const std::string& where, const char* key, F&& read)
    {
        return each(obj, where, key, [&](const json& e, const std::string& w) {
            if (!e.is_object())
                return fail(w + " is " + json_kind(e) + ", expected an object");
            return read(e, w);
        });
    }

    template <typename T>
    bool counts(const json& obj, const std::string& where, const char* key, std::map<std::string, T>& out)
    {
        const json* m = object(obj, where, key);
        if (!m)
            return error.empty();
        for (const auto& [name, v] : m->items())
            if (!count(v, at(at(where, key), name), out[name]))
                return false;
        return true;
    }

    // The counters: those every report has must be there; the others,
    // when absent, are said in `absent` (an older report).
    bool counters(const json& obj, const std::string& where, Counters& c, std::set<std::string>* absent = nullptr)
    {
        for (std::size_t n = 0; n < std::size(kCounterFields); ++n) {
            const auto& f = kCounterFields[n];
            if (absent && !obj.contains(f.name) && n >= kRequiredCounters)
                absent->insert(f.name);
            if (!u(obj, where, f.name, c.*f.member, n < kRequiredCounters))
                return false;
        }
        return true;
    }
};

class ReportReader {
public:
    explicit ReportReader(Report& r) : r_(r) {}

    std::string read(const json& doc)
    {
        if (schema(doc) && head(doc) && tracer(doc) && threads(doc) && processes(doc) && system(doc) &&
            oom_kills(doc) && tracked(doc) && stacks(doc) && resolve_stacks() && sites(doc) && leaks(doc) && timeline(doc) &&
            sizes(doc, "", r_.size_histogram) && peak(doc) && variables(doc))
            return {};
        return in_.error;
    }

private:
    bool schema(const json& doc);
    bool head(const json& doc);
    bool tracer(const json& doc);
    bool threads(const json& doc);
    bool processes(const json& doc);
    bool process_system(const json& p, const std::string& where, ProcessSection& s);
    bool system(const json& doc);
    bool oom_kills(const json& doc);
    bool memory(const json& m, const std::string& where, MemoryFigures& out);
    bool pid(const json& obj, const std::string& where, const char* key, int& out);
    bool tracked(const json& doc);
    bool stacks(const json& doc);
    bool sites(const json& doc);
    bool leaks(const json& doc);
    bool timeline(const json& doc);
    bool sizes(const json& obj, const std::string& where, std::vector<SizeBucket>& out);
    bool peak(const json& doc);
    bool variables(const json& doc);
public:
    // One of "variables", "sites" or "leaks", read as the parser meets it
    // (the long lists: they never sit in memory as JSON); a streamed one's
    // stack is read once the frames are had (read()).
    bool variable(const json& v, const std::string& where);
    bool site(const json& s, const std::string& where, bool streamed);
    bool leak(const json& l, const std::string& where, bool streamed);
    // The error an element met, taken (the reader goes on).
    std::string take_error() { return std::exchange(in_.error, std::string()); }
    // The document's schema alone: the error, or empty.
    std::string schema_error(const json& doc) { return schema(doc) ? std::string() : take_error(); }
private:
    bool defer_stack(const json& obj, const std::string& where, bool leak);
    bool resolve_stacks();
    struct PendingStack {
        bool leak;
        std::size_t index;
        std::string where;
        json holder; // {"stack": [...]}
    };
    std::vector<PendingStack> pending_;
    bool target(const json& obj, const std::string& where, Target& t, bool exe_required);
    bool stack(const json& obj, const std::string& where, std::vector<Frame>& out);
    bool frame(const json& f, const std::string& where, Frame& out);
    bool hex_id(const json& obj, const std::string& where, std::uint64_t& out);
    // A descriptor by what the report says of it, each distinct one once.
    std::uint32_t descriptor(const std::string& name, const std::string& type, const std::string& file = {},
                             std::uint32_t line = 0);
    // A name the report wrote as null (none) or a string.
    bool named(const json& obj, const std::string& where, const char* key, std::uint32_t& desc);

    Report& r_;
    In in_;
    const json* frames_ = nullptr; // schema 2: the table stacks index
    std::map<std::tuple<std::string, std::string, std::string, std::uint32_t>, std::uint32_t> descriptors_;
};

bool ReportReader::schema(const json& doc)
{
    if (!doc.is_object())
        return in_.fail("is not a memscope-trace report (" + json_kind(doc) + ", not an object)");
    auto schema = doc.find("schema");
    if (schema == doc.end())
        return in_.fail("is not a memscope-trace report (no \"schema\")");
    if (!schema->is_string())
        return in_.fail("is not a memscope-trace report (\"schema\" is " + json_kind(*schema) + ")");
    if (*schema != kSchema && *schema != kSchemaV1) {
        std::string shown;
        for (unsigned char c : schema->get_ref<const std::string&>().substr(0, 60))
            shown += c >= 0x20 && c < 0x7f && c != '\'' ? static_cast<char>(c) : '?';
        return in_.fail("is not a memscope-trace report: it has schema '" + shown + "', expected '" + kSchema + "'");
    }
    if (*schema == kSchema) {
        auto frames = doc.find("frames");
        if (frames != doc.end() && !frames->is_array())
            return in_.fail("frames is " + json_kind(*frames) + ", expected an array");
        frames_ = frames != doc.end() ? &*frames : nullptr;
    }
    return true;
}

bool ReportReader::target(const json& obj, const std::string& where, Target& t, bool exe_required)
{
    std::int64_t pid = 0;
    if (!in_.i(obj, where, "pid", pid) || !in_.str(obj, where, "comm", t.comm) ||
        !in_.str(obj, where, "exe", t.exe, exe_required))
        return false;
    t.pid = static_cast<int>(pid);
    auto code = obj.find("exit_code");
    if (code == obj.end() || code->is_null())
        return true;
    std::int64_t c = 0;
    if (!in_.i(obj, where, "exit_code", c))
        return false;
    t.exit_code = static_cast<int>(c);
    return true;
}

bool ReportReader::head(const json& doc)
{
    // How it came to be (since issue 18: older reports have none).
    if (const json* inv = in_.object(doc, "", "invocation")) {
        if (!in_.each(*inv, "invocation", "argv", [&](const json& a, const std::string& where) {
                return a.is_string() ? (r_.invocation.argv.push_back(a), true)
                                     : in_.fail(where + " is " + json_kind(a) + ", expected a string");
            }))
            return false;
        if (const json* out = in_.object(*inv, "invocation", "outputs")) {
            for (const auto& [kind, path] : out->items())
                if (!in_.str(*out, at("invocation", "outputs"), kind.c_str(), r_.invocation.outputs[kind]))
                    return false;
        } else if (!in_.error.empty()) {
            return false;
        }
    } else if (!in_.error.empty()) {
        return false;
    }
    const json* totals = in_.object(doc, "", "totals", true);
    if (!totals || !in_.counters(*totals, "totals", r_.totals, &r_.absent_counters) ||
        !in_.boolean(*totals, "totals", "peak_live_bytes_exact", r_.peak_live_bytes_exact) ||
        !in_.boolean(*totals, "totals", "live_bytes_exact", r_.live_bytes_exact) ||
        !in_.boolean(*totals, "totals", "free_bytes_exact", r_.free_bytes_exact))
        return false;
    // No process list: the report is one process, its figures the totals.
    auto list = doc.find("processes");
    bool one = list == doc.end() || (list->is_array() && list->empty());
    const json* t = in_.object(doc, "", "target", one);
    if (!in_.error.empty() || (t && !target(*t, "target", r_.target, one)))
        return false;
    if (!in_.real(doc, "", "duration_s", r_.duration_s) || !in_.str(doc, "", "mode", r_.mode) ||
        !in_.str(doc, "", "mode_source", r_.mode_source) ||
        !in_.u(doc, "", "allocation_records", r_.allocation_records) ||
        !in_.each(doc, "", "warnings", [&](const json& w, const std::string& where) {
            return w.is_string() ? (r_.warnings.push_back(w), true)
                                 : in_.fail(where + " is " + json_kind(w) + ", expected a string");
        }))
        return false;
    if (!in_.objects(doc, "", "mode_changes", [&](const json& c, const std::string& where) {
            ModeChange m;
            std::string from, to;
            if (!in_.real(c, where, "t_s", m.t_s) || !in_.str(c, where, "from", from) ||
                !in_.str(c, where, "to", to) || !in_.str(c, where, "reason", m.reason))
                return false;
            m.from = parse_mode(from).value_or(Mode::normal);
            m.to = parse_mode(to).value_or(Mode::normal);
            r_.mode_changes.push_back(std::move(m));
            return true;
        }))
        return false;
    if (const json* d = in_.object(doc, "", "dropped")) {
        if (!in_.u(*d, "dropped", "events", r_.dropped.events) ||
            !in_.u(*d, "dropped", "untracked_allocations", r_.dropped.untracked_allocations) ||
            !in_.counts(*d, "dropped", "reasons", r_.dropped.reasons))
            return false;
    }
    if (const json* c = in_.object(doc, "", "children")) {
        if (!in_.u(*c, "children", "forks", r_.children.forks) || !in_.u(*c, "children", "execs", r_.children.execs) ||
            !in_.boolean(*c, "children", "traced", r_.followed_children) ||
            !in_.each(*c, "children", "pids", [&](const json& p, const std::string& where) {
                std::uint64_t pid = 0;
                return in_.count(p, where, pid) && (r_.children.pids.push_back(static_cast<int>(pid)), true);
            }))
            return false;
    }
    return in_.error.empty() &&
           in_.objects(doc, "", "unprobed_allocators", [&](const json& u, const std::string& where) {
               UnprobedAllocator a;
               if (!in_.u(u, where, "pid", a.pid) || !in_.str(u, where, "file", a.file) ||
                   !in_.str(u, where, "reason", a.reason) ||
                   !in_.each(u, where, "symbols", [&](const json& s, const std::string& w) {
                       return s.is_string() ? (a.symbols.push_back(s), true)
                                            : in_.fail(w + " is " + json_kind(s) + ", expected a string");
                   }))
                   return false;
               r_.unprobed_allocators.push_back(std::move(a));
               return true;
           });
}

bool ReportReader::tracer(const json& doc)
{
    const json* t = in_.object(doc, "", "tracer");
    if (!t)
        return in_.error.empty();
    auto& c = r_.tracer;
    const std::string w = "tracer";
    if (!in_.real(*t, w, "cpu_user_s", c.cpu_user_s) || !in_.real(*t, w, "cpu_sys_s", c.cpu_sys_s) ||
        !in_.real(*t, w, "startup_cpu_user_s", c.startup_cpu_user_s) ||
        !in_.real(*t, w, "startup_cpu_sys_s", c.startup_cpu_sys_s) ||
        !in_.real(*t, w, "tracing_cpu_user_s", c.tracing_cpu_user_s) ||
        !in_.real(*t, w, "tracing_cpu_sys_s", c.tracing_cpu_sys_s) || !in_.u(*t, w, "max_rss_kb", c.max_rss_kb) ||
        !in_.u(*t, w, "bpf_map_bytes", c.bpf_map_bytes) || !in_.str(*t, w, "attach", c.attach))
        return false;
    if (const json* e = in_.object(*t, w, "export")) {
        for (const auto& [name, v] : e->items())
            if (!in_.u(*e, at(w, "export"), name.c_str(), c.exported[name]))
                return false;
    } else if (!in_.error.empty()) {
        return false;
    }
    const json* programs = in_.object(*t, w, "bpf_programs");
    if (!programs)
        return in_.error.empty();
    for (const auto& [name, p] : programs->items()) {
        const std::string where = at(at(w, "bpf_programs"), name);
        if (!p.is_object())
            return in_.fail(where + " is " + json_kind(p) + ", expected an object");
        auto& [runs, ns] = c.programs[name];
        if (!in_.u(p, where, "run_count", runs) || !in_.u(p, where, "run_time_ns", ns))
            return false;
    }
    return true;
}

bool ReportReader::threads(const json& doc)
{
    return in_.objects(doc, "", "threads", [&](const json& t, const std::string& where) {
        ThreadStats th;
        if (!in_.u(t, where, "pid", th.pid) || !in_.u(t, where, "tid", th.tid) ||
            !in_.str(t, where, "name", th.name, true) || !in_.counters(t, where, th.counters))
            return false;
        r_.threads.push_back(std::move(th));
        return true;
    });
}

// One section per process. Older reports listed a section's threads in it
// (tids, or whole thread objects): those objects are then the report's
// threads, in place of its own list.
bool ReportReader::processes(const json& doc)
{
    std::vector<ThreadStats> own;
    bool read = in_.objects(doc, "", "processes", [&](const json& p, const std::string& where) {
        ProcessSection s;
        std::int64_t parent = 0;
        if (!target(p, where, s.target, true) || !in_.i(p, where, "parent_pid", parent))
            return false;
        s.parent_pid = static_cast<int>(parent);
        const json* totals = in_.object(p, where, "totals", true);
        if (!totals || !in_.counters(*totals, at(where, "totals"), s.totals) ||
            !in_.boolean(*totals, at(where, "totals"), "peak_live_bytes_exact", s.peak_live_bytes_exact))
            return false;
        auto threads = p.find("threads");
        if (threads != p.end() && !threads->is_null() && !threads->is_array()) {
            std::uint64_t n = 0;
            if (!threads->is_number_integer())
                return in_.fail(at(where, "threads") + " is " + json_kind(*threads) + ", expected an array or a count");
            if (!in_.count(*threads, at(where, "threads"), n))
                return false;
            s.threads = n;
        }
        if (threads != p.end() && threads->is_array()) {
            for (std::size_t k = 0; k < threads->size(); ++k) {
                const json& t = (*threads)[k];
                if (t.is_number_unsigned())
                    continue; // a tid: the report's own list has the thread
                ThreadStats th;
                const std::string tw = item(at(where, "threads"), k);
                if (!t.is_object())
                    return in_.fail(tw + " is " + json_kind(t) + ", expected an object");
                th.pid = static_cast<std::uint32_t>(s.target.pid);
                if (!in_.str(t, tw, "name", th.name, true) || !in_.u(t, tw, "tid", th.tid) ||
                    !in_.counters(t, tw, th.counters))
                    return false;
                own.push_back(std::move(th));
            }
            s.threads = threads->size();
        }
        if (!process_system(p, where, s))
            return false;
        r_.processes.push_back(std::move(s));
        return true;
    });
    if (read && !own.empty())
        r_.threads = std::move(own);
    return read;
}

bool ReportReader::pid(const json& obj, const std::string& where, const char* key, int& out)
{
    std::int64_t v = out;
    if (!in_.i(obj, where, key, v))
        return false;
    out = static_cast<int>(v);
    return true;
}

// A memory object: each figure of kMemoryFields (absent: 0), the growth
// rate and the time watched.
bool ReportReader::memory(const json& m, const std::string& where, MemoryFigures& out)
{
    if (!m.is_object())
        return in_.fail(where + " is " + json_kind(m) + ", expected an object");
    for (const auto& f : kMemoryFields)
        if (!in_.u(m, where, f.name, out.*f.member))
            return false;
    return in_.real(m, where, "anon_growth_bytes_per_s", out.anon_growth_bytes_per_s) &&
           in_.real(m, where, "watched_s", out.watched_s);
}

// What -a knows of a process besides its heap; absent in other reports.
bool ReportReader::process_system(const json& p, const std::string& where, ProcessSection& s)
{
    auto m = p.find("memory");
    if (m != p.end() && !m->is_null()) {
        if (!m->is_object())
            return in_.fail(at(where, "memory") + " is " + json_kind(*m) + ", expected an object or null");
        if (!memory(*m, at(where, "memory"), s.memory.emplace()))
            return false;
    }
    return in_.str(p, where, "cgroup", s.cgroup) && in_.boolean(p, where, "heap_traced", s.heap_traced) &&
           in_.str(p, where, "mode", s.mode) && pid(p, where, "ns_pid", s.ns_pid) &&
           in_.boolean(p, where, "other_pid_namespace", s.other_pid_namespace) &&
           in_.boolean(p, where, "born_while_traced", s.born_while_traced) &&
           in_.boolean(p, where, "exited", s.exited) && in_.boolean(p, where, "oom_killed", s.oom_killed) &&
           in_.u(p, where, "execs", s.execs) && in_.u(p, where, "forks", s.forks);
}

// The scope ("process" when an older report does not say) and, with -a,
// the machine's counts.
bool ReportReader::system(const json& doc)
{
    if (!in_.str(doc, "", "mode_scope", r_.mode_scope))
        return false;
    if (r_.mode_scope != "process" && r_.mode_scope != "system")
        return in_.fail("mode_scope is not \"process\" or \"system\"");
    const json* s = in_.object(doc, "", "system");
    if (!s)
        return in_.error.empty();
    SystemSummary& y = r_.system;
    const std::string w = "system";
    return in_.u(*s, w, "processes_seen", y.processes_seen) && in_.u(*s, w, "births", y.births) &&
           in_.u(*s, w, "execs", y.execs) && in_.u(*s, w, "exits", y.exits) &&
           in_.u(*s, w, "oom_kills", y.oom_kills) && in_.u(*s, w, "not_listed", y.not_listed) &&
           in_.u(*s, w, "not_listed_peak_rss_anon_bytes", y.not_listed_peak_rss_anon_bytes) &&
           in_.each(*s, w, "heap_selectors", [&](const json& h, const std::string& where) {
               return h.is_string() ? (y.heap_selectors.push_back(h), true)
                                    : in_.fail(where + " is " + json_kind(h) + ", expected a string");
           });
}

bool ReportReader::oom_kills(const json& doc)
{
    return in_.objects(doc, "", "oom_kills", [&](const json& k, const std::string& where) {
        OomKill kill;
        if (!pid(k, where, "pid", kill.pid) || !pid(k, where, "ns_pid", kill.ns_pid) ||
            !in_.str(k, where, "comm", kill.comm) || !in_.str(k, where, "cgroup", kill.cgroup) ||
            !in_.real(k, where, "t_s", kill.t_s))
            return false;
        const json* m = in_.object(k, where, "memory");
        if (!in_.error.empty() || (m && !memory(*m, at(where, "memory"), kill.memory)))
            return false;
        r_.oom_kills.push_back(std::move(kill));
        return true;
    });
}

std::uint32_t ReportReader::descriptor(const std::string& name, const std::string& type, const std::string& file,
                                       std::uint32_t line)
{
    auto [it, added] = descriptors_.try_emplace({name, type, file, line},
                                                static_cast<std::uint32_t>(r_.tracked.descriptors.size()));
    if (added) {
        Descriptor d;
        d.name = name;
        d.type = type;
        d.file = file;
        d.line = line;
        d.valid = name != "?";
        r_.tracked.descriptors.push_back(std::move(d));
    }
    return it->second;
}

bool ReportReader::named(const json& obj, const std::string& where, const char* key, std::uint32_t& desc)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return true;
    std::string name;
    if (!in_.str(obj, where, key, name))
        return false;
    desc = descriptor(name, "");
    return true;
}

bool ReportReader::tracked(const json& doc)
{
    Tracked& t = r_.tracked;
    if (const json* tr = in_.object(doc, "", "tracker")) {
        if (!in_.u(*tr, "tracker", "unreadable_descriptors", t.unreadable_descriptors) ||
            !in_.u(*tr, "tracker", "variables_counted_by_name", t.counted_by_name) ||
            !in_.each(*tr, "tracker", "modules", [&](const json& m, const std::string& where) {
                return m.is_string() ? (t.modules.push_back(m), true)
                                     : in_.fail(where + " is " + json_kind(m) + ", expected a string");
            }))
            return false;
    }
    return in_.error.empty() &&
           in_.objects(doc, "", "variable_summary", [&](const json& v, const std::string& where) {
               VariableSummary s;
               std::string name = "?", type;
               if (!in_.str(v, where, "name", name) || !in_.str(v, where, "type", type) ||
                   !in_.u(v, where, "count", s.count, true) || !in_.u(v, where, "bytes", s.bytes, true) ||
                   !in_.u(v, where, "live_count", s.live_count, true) ||
                   !in_.u(v, where, "live_bytes", s.live_bytes, true))
                   return false;
               s.desc = descriptor(name, type);
               t.summary.push_back(s);
               return true;
           }) &&
           in_.objects(doc, "", "scopes", [&](const json& g, const std::string& where) {
               GroupTotals s;
               std::string name = "?", file;
               std::uint32_t line = 0;
               if (!in_.str(g, where, "name", name) || !in_.str(g, where, "file", file) ||
                   !in_.u(g, where, "line", line) || !in_.u(g, where, "alloc_count", s.alloc_count) ||
                   !in_.u(g, where, "alloc_bytes", s.alloc_bytes))
                   return false;
               s.desc = descriptor(name, "", file, line);
               t.scopes.push_back(s);
               return true;
           }) &&
           in_.objects(doc, "", "tasks", [&](const json& g, const std::string& where) {
               GroupTotals s;
               if (!in_.u(g, where, "pid", s.pid) || !in_.u(g, where, "id", s.id) || !named(g, where, "name", s.desc) ||
                   !in_.u(g, where, "alloc_count", s.alloc_count) || !in_.u(g, where, "alloc_bytes", s.alloc_bytes))
                   return false;
               t.tasks.push_back(s);
               return true;
           }) &&
           in_.objects(doc, "", "mode_requests", [&](const json& m, const std::string& where) {
               ModeRequest q;
               std::string mode;
               if (!in_.u(m, where, "ts_ns", q.ts) || !in_.u(m, where, "pid", q.tgid) || !in_.u(m, where, "tid", q.tid) ||
                   !in_.str(m, where, "mode", mode))
                   return false;
               q.mode = mode == "fast" ? MEMSCOPE_MODE_FAST
                        : mode == "async" ? MEMSCOPE_MODE_ASYNC
                        : mode == "off"   ? MEMSCOPE_MODE_OFF
                        : mode == "normal" ? MEMSCOPE_MODE_NORMAL
                                           : UINT32_MAX;
               t.mode_requests.push_back(q);
               return true;
           });
}

bool ReportReader::stacks(const json& doc)
{
    const json* s = in_.object(doc, "", "stacks");
    if (!s) { // an early report: sites and leaks mean stacks were on
        r_.stacks.enabled = doc.contains("sites") || doc.contains("leaks");
        return in_.error.empty();
    }
    StackSummary& st = r_.stacks;
    const std::string w = "stacks";
    // Without the flag (an early report), sites mean stacks were on.
    st.enabled = true;
    if (!in_.boolean(*s, w, "enabled", st.enabled) || !in_.u(*s, w, "depth", st.depth) ||
        !in_.u(*s, w, "distinct", st.distinct) || !in_.real(*s, w, "truncated_share", st.truncated_share) ||
        !in_.counts(*s, w, "truncated_by", st.truncated_by) || !in_.u(*s, w, "without_stack", st.without_stack) ||
        !in_.u(*s, w, "outstanding_without_stack", st.outstanding_without_stack) || !in_.str(*s, w, "note", st.note) ||
        !in_.real(*s, w, "leak_min_age_s", st.leak_min_age_s) ||
        !in_.each(*s, w, "alloc_functions", [&](const json& f, const std::string& where) {
            return f.is_string() ? (r_.alloc_functions.push_back(f), true)
                                 : in_.fail(where + " is " + json_kind(f) + ", expected a string");
        }))
        return false;
    const json* u = in_.object(*s, w, "unwind");
    if (!u)
        return in_.error.empty();
    auto& uw = st.unwind;
    const std::string uw_at = "stacks.unwind";
    return in_.u(*u, uw_at, "files", uw.files) && in_.u(*u, uw_at, "shared_files", uw.shared_files) &&
           in_.u(*u, uw_at, "rows", uw.rows) && in_.u(*u, uw_at, "kernel_bytes", uw.kernel_bytes) &&
           in_.u(*u, uw_at, "eh_frame_bytes", uw.eh_frame_bytes) && in_.u(*u, uw_at, "build_ms", uw.build_ms) &&
           in_.each(*u, uw_at, "skipped", [&](const json& f, const std::string& where) {
               return f.is_string() ? (uw.skipped.push_back(f), true)
                                    : in_.fail(where + " is " + json_kind(f) + ", expected a string");
           });
}

bool ReportReader::frame(const json& f, const std::string& where, Frame& out)
{
    if (!f.is_object())
        return in_.fail(where + " is " + json_kind(f) + ", expected an object");
    return in_.u(f, where, "addr", out.addr) && in_.str(f, where, "symbol", out.symbol) &&
           in_.str(f, where, "module", out.module) && in_.u(f, where, "offset", out.offset) &&
           in_.str(f, where, "file", out.file) && in_.u(f, where, "line", out.line) &&
           in_.boolean(f, where, "inlined", out.inlined);
}

// A stack: schema 2 names frames by index into "frames", schema 1 writes them out.
bool ReportReader::stack(const json& obj, const std::string& where, std::vector<Frame>& out)
{
    auto it = obj.find("stack");
    if (it == obj.end())
        return in_.fail(at(where, "stack") + " is missing");
    if (!it->is_array())
        return in_.fail(at(where, "stack") + " is " + json_kind(*it) + ", expected an array");
    out.reserve(it->size());
    for (std::size_t n = 0; n < it->size(); ++n) {
        const json& entry = (*it)[n];
        std::string fw = item(at(where, "stack"), n);
        const json* f = &entry;
        if (frames_ && entry.is_number_unsigned()) {
            const auto index = entry.get<std::uint64_t>();
            f = stack_frame(entry, frames_);
            if (!f)
                return in_.fail(fw + " is " + std::to_string(index) + ", which names no entry of \"frames\"");
            fw = item("frames", index);
        }
        if (!frame(*f, fw, out.emplace_back()))
            return false;
    }
    return true;
}

bool ReportReader::hex_id(const json& obj, const std::string& where, std::uint64_t& out)
{
    std::string id;
    if (!in_.str(obj, where, "id", id))
        return false;
    char* end = nullptr;
    out = std::strtoull(id.c_str(), &end, 16);
    return id.empty() || (id.size() <= 16 && *end == '\0') ||
           in_.fail(at(where, "id") + " is not a stack's hash (16 hex digits)");
}

bool ReportReader::sites(const json& doc)
{
    return in_.objects(doc, "", "sites", [&](const json& s, const std::string& where) { return site(s, where, false); });
}

// A stack read later, once the "frames" table it indexes is had (a file's
// frames follow its sites and leaks).
bool ReportReader::defer_stack(const json& obj, const std::string& where, bool leak)
{
    auto it = obj.find("stack");
    if (it == obj.end())
        return in_.fail(at(where, "stack") + " is missing");
    pending_.push_back({leak, leak ? r_.leaks.size() : r_.sites.size(), where, json{{"stack", *it}}});
    return true;
}

bool ReportReader::resolve_stacks()
{
    for (const auto& p : pending_) {
        auto& out = p.leak ? r_.leaks.at(p.index).stack : r_.sites.at(p.index).stack;
        if (!stack(p.holder, p.where, out))
            return false;
    }
    pending_.clear();
    return true;
}

bool ReportReader::site(const json& s, const std::string& where, bool streamed)
{
    if (!s.is_object())
        return in_.fail(where + " is " + json_kind(s) + ", expected an object");
    {
        Site site;
        if (!in_.u(s, where, "pid", site.pid) || !hex_id(s, where, site.id) ||
            !(streamed ? defer_stack(s, where, false) : stack(s, where, site.stack)) ||
            !in_.boolean(s, where, "truncated", site.truncated) || !in_.str(s, where, "end", site.end) ||
            !in_.u(s, where, "alloc_count", site.alloc_count, true) ||
            !in_.u(s, where, "alloc_bytes", site.alloc_bytes, true) ||
            !in_.u(s, where, "live_count", site.live_count, true) ||
            !in_.u(s, where, "live_bytes", site.live_bytes, true) ||
            !in_.u(s, where, "temporary_count", site.temporary_count) || // since issue 18
            !sizes(s, where, site.size_histogram)) {
            if (streamed && !pending_.empty() && !pending_.back().leak && pending_.back().index == r_.sites.size())
                pending_.pop_back();
            return false;
        }
        r_.sites.push_back(std::move(site));
        return true;
    }
}

bool ReportReader::leaks(const json& doc)
{
    return in_.objects(doc, "", "leaks", [&](const json& l, const std::string& where) { return leak(l, where, false); });
}

bool ReportReader::leak(const json& l, const std::string& where, bool streamed)
{
    if (!l.is_object())
        return in_.fail(where + " is " + json_kind(l) + ", expected an object");
    const std::size_t pending = pending_.size();
    const bool ok = [&] {
        Leak leak;
        if (!in_.u(l, where, "pid", leak.pid) || !hex_id(l, where, leak.id) ||
            !(streamed ? defer_stack(l, where, true) : stack(l, where, leak.stack)) ||
            !in_.boolean(l, where, "truncated", leak.truncated) || !in_.str(l, where, "end", leak.end) ||
            !in_.str(l, where, "expected", leak.expected) ||
            !in_.u(l, where, "live_count", leak.live_count, true) ||
            !in_.u(l, where, "live_bytes", leak.live_bytes, true) ||
            !in_.u(l, where, "young_count", leak.young_count) || !in_.u(l, where, "young_bytes", leak.young_bytes) ||
            !in_.real(l, where, "oldest_age_s", leak.oldest_age_s))
            return false;
        if (leak.young_count > leak.live_count || leak.young_bytes > leak.live_bytes)
            return in_.fail(where + " has more young blocks than live ones");
        return in_.objects(l, where, "threads", [&](const json& t, const std::string& tw) {
                   LeakThread th;
                   if (!in_.u(t, tw, "tid", th.tid) || !in_.str(t, tw, "name", th.name) ||
                       !in_.u(t, tw, "live_count", th.live_count) || !in_.u(t, tw, "live_bytes", th.live_bytes))
                       return false;
                   leak.threads.push_back(std::move(th));
                   return true;
               }) &&
               in_.objects(l, where, "variables", [&](const json& v, const std::string& vw) {
                   LeakVariable lv;
                   std::string name = "?", type;
                   if (!in_.str(v, vw, "name", name) || !in_.str(v, vw, "type", type) ||
                       !in_.u(v, vw, "count", lv.count) || !in_.u(v, vw, "bytes", lv.bytes))
                       return false;
                   lv.desc = descriptor(name, type);
                   leak.variables.push_back(lv);
                   return true;
               }) &&
               (r_.leaks.push_back(std::move(leak)), true);
    }();
    if (!ok)
        pending_.resize(pending);
    return ok;
}

bool ReportReader::timeline(const json& doc)
{
    const json* t = in_.object(doc, "", "timeline");
    if (!t)
        return in_.error.empty();
    Timeline& tl = r_.timeline;
    auto real = [&](const json& v, const std::string& where, double& out) {
        return v.is_number() ? (out = v.get<double>(), true)
                             : in_.fail(where + " is " + json_kind(v) + ", expected a number");
    };
    auto integer = [&](const json& v, const std::string& where, std::int64_t& out) {
        if (is_int64(v))
            return out = v.get<std::int64_t>(), true;
        return in_.fail(where + " is " + json_kind(v) + ", expected a 64-bit integer");
    };
    return in_.real(*t, "timeline", "interval_s", tl.interval_s) &&
           in_.each(*t, "timeline", "t_s", [&](const json& v, const std::string& w) {
               return real(v, w, tl.t_s.emplace_back());
           }) &&
           in_.each(*t, "timeline", "process_live_bytes", [&](const json& v, const std::string& w) {
               return integer(v, w, tl.process_live_bytes.emplace_back());
           }) &&
           in_.objects(*t, "timeline", "threads", [&](const json& th, const std::string& where) {
               Timeline::Thread out;
               if (!in_.u(th, where, "tid", out.tid) || !in_.str(th, where, "name", out.name) ||
                   !in_.each(th, where, "live_bytes", [&](const json& v, const std::string& w) {
                       return integer(v, w, out.live_bytes.emplace_back());
                   }))
                   return false;
               tl.threads.push_back(std::move(out));
               return true;
           });
}

// Size buckets (since issue 18: absent in older reports).
bool ReportReader::sizes(const json& obj, const std::string& where, std::vector<SizeBucket>& out)
{
    return in_.objects(obj, where, "size_histogram", [&](const json& b, const std::string& w) {
        SizeBucket bucket;
        if (!in_.u(b, w, "min", bucket.min, true) || !in_.u(b, w, "max", bucket.max, true) ||
            !in_.u(b, w, "count", bucket.count, true) || !in_.u(b, w, "bytes", bucket.bytes, true))
            return false;
        if (bucket.max < bucket.min)
            return in_.fail(w + " ends (max " + std::to_string(bucket.max) + ") before it begins (min " +
                            std::to_string(bucket.min) + ")");
        out.push_back(bucket);
        return true;
    });
}

// What was live at the peak (since issue 18).
bool ReportReader::peak(const json& doc)
{
    const json* p = in_.object(doc, "", "peak");
    if (!p)
        return in_.error.empty();
    Peak peak;
    const std::string w = "peak";
    if (!in_.u(*p, w, "pid", peak.pid) || !in_.real(*p, w, "t_s", peak.t_s) ||
        !in_.u(*p, w, "live_bytes", peak.live_bytes, true) || !in_.boolean(*p, w, "exact", peak.exact) ||
        !in_.str(*p, w, "note", peak.note) ||
        !in_.objects(*p, w, "sites", [&](const json& s, const std::string& where) {
            Peak::Site site;
            if (!hex_id(s, where, site.id) || !in_.u(s, where, "pid", site.pid) ||
                !in_.u(s, where, "live_count", site.live_count, true) ||
                !in_.u(s, where, "live_bytes", site.live_bytes, true))
                return false;
            peak.sites.push_back(site);
            return true;
        }))
        return false;
    r_.peak = std::move(peak);
    return true;
}

bool ReportReader::variables(const json& doc)
{
    return in_.objects(doc, "", "variables", [&](const json& v, const std::string& where) { return variable(v, where); });
}

bool ReportReader::variable(const json& v, const std::string& where)
{
    if (!v.is_object())
        return in_.fail(where + " is " + json_kind(v) + ", expected an object");
    {
        Variable var;
        std::string name = "?", type, file;
        std::uint32_t line = 0;
        std::uint64_t task = 0;
        bool has_task = v.contains("task") && !v["task"].is_null();
        if (!in_.str(v, where, "name", name) || !in_.str(v, where, "type", type) || !in_.str(v, where, "file", file) ||
            !in_.u(v, where, "line", line) || !in_.u(v, where, "pid", var.tgid) || !in_.u(v, where, "tid", var.tid) ||
            !in_.u_or_null(v, where, "addr", var.addr) || !in_.u(v, where, "size", var.size) ||
            !in_.boolean(v, where, "heap", var.heap) || !in_.u_or_null(v, where, "alloc_ns", var.alloc_ns) ||
            !in_.u_or_null(v, where, "free_ns", var.free_ns) || !named(v, where, "scope", var.scope) ||
            !in_.u_or_null(v, where, "task", task) || !named(v, where, "task_name", var.task_desc))
            return false;
        var.desc = descriptor(name, type, file, line);
        var.task = task;
        if (has_task && var.task_desc == kNoDescriptor)
            var.task_desc = descriptor("?", "");
        r_.tracked.variables.push_back(var);
        return true;
    }
}

} // namespace

std::string report_from_json(const json& doc, Report& out)
{
    out = Report{};
    return ReportReader(out).read(doc);
}

namespace {

// What a report holds but a comparison never reads: the variables (a line
// each, possibly millions), the timeline, the mode requests.
bool skipped_when_comparing(const std::string& key)
{
    return key == "variables" || key == "timeline" || key == "mode_requests";
}

std::string parse_error_text(const json::parse_error& e, std::size_t size)
{
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos)
        what.erase(0, p + 2);
    std::string shown;
    for (unsigned char c : what.substr(0, 200))
        shown += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
    return "is not valid JSON (" + shown + ")" + (e.byte >= size ? ": truncated?" : "");
}

} // namespace

// Parsed straight from the file (no copy of its text), the variables read
// one by one as the parser meets them and dropped: a report's size in
// memory is its model's, not its JSON's.
std::string read_report_json(const std::string& path, Report& out, bool with_variables)
{
    // Opened without waiting (a FIFO would hold the open until a writer
    // came), and read only if it is a regular file: a FIFO, a device or a
    // directory is said as such, never waited on or read without end.
    const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return "cannot read " + path + ": " + std::strerror(errno);
    struct stat st {};
    std::string refused;
    if (fstat(fd, &st) != 0)
        refused = std::strerror(errno);
    else if (S_ISDIR(st.st_mode))
        refused = "a directory";
    else if (!S_ISREG(st.st_mode))
        refused = "not a regular file";
    if (!refused.empty()) {
        close(fd);
        return "cannot read " + path + ": " + refused;
    }
    std::FILE* f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return "cannot read " + path + ": " + std::strerror(errno);
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    out = Report{};
    ReportReader reader(out);
    struct Stop {};
    std::string key;       // the top-level key being parsed
    bool streaming = false; // in the array of one of the long lists
    std::size_t index = 0;
    std::string element_error; // the first element's that failed: the rest are dropped unread
    json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= kMaxJsonDepth)
            throw Stop{};
        if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
            key = parsed.get<std::string>();
            return with_variables || !skipped_when_comparing(key);
        }
        if (depth == 1 && (key == "variables" || key == "sites" || key == "leaks")) {
            streaming = event == json::parse_event_t::array_start;
            index = 0;
        }
        if (streaming && depth == 2 &&
            (event == json::parse_event_t::object_end || event == json::parse_event_t::value ||
             event == json::parse_event_t::array_end)) {
            const std::string where = key + "[" + std::to_string(index++) + "]";
            const bool ok = !element_error.empty() ? true
                            : key == "sites"      ? reader.site(parsed, where, true)
                            : key == "leaks"      ? reader.leak(parsed, where, true)
                            : with_variables      ? reader.variable(parsed, where)
                                                  : true;
            if (!ok)
                element_error = reader.take_error();
            return false; // read (or not wanted): not kept as JSON
        }
        return true;
    };
    json doc;
    std::string error;
    try {
        doc = json::parse(f, cb);
    } catch (const Stop&) {
        error = path + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels: no report does";
    } catch (const json::parse_error& e) {
        error = path + " " + (size == 0 && e.byte <= 1 ? std::string("is empty") : parse_error_text(e, size));
    } catch (const json::exception&) {
        error = path + " is not valid JSON";
    }
    const bool failed = std::ferror(f);
    std::fclose(f);
    if (error.empty() && failed)
        error = "cannot read " + path + ": " + std::strerror(EIO);
    if (!error.empty()) {
        out = Report{};
        return error;
    }
    // A document that is no report at all says so first.
    if (!element_error.empty()) {
        const std::string e = reader.schema_error(doc);
        out = Report{};
        return path + ": " + (e.empty() ? element_error : e);
    }
    if (std::string e = reader.read(doc); !e.empty()) {
        out = Report{};
        return path + ": " + e;
    }
    return {};
}

std::string parse_report_text(const std::string& text, json& doc, bool with_variables)
{
    if (text.empty())
        return "is empty";
    // What a comparison never reads: the variables (a line each, possibly
    // millions), the timeline, the mode requests.
    json::parser_callback_t skip = [](int depth, json::parse_event_t event, json& parsed) {
        if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
            const auto& k = parsed.get_ref<const std::string&>();
            return k != "variables" && k != "timeline" && k != "mode_requests";
        }
        return true;
    };
    try {
        if (!parse_json_bounded(text, doc, with_variables ? nullptr : skip))
            return "nests deeper than " + std::to_string(kMaxJsonDepth) + " levels: no report does";
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        if (auto p = what.find("] "); p != std::string::npos)
            what.erase(0, p + 2);
        std::string shown;
        for (unsigned char c : what.substr(0, 200))
            shown += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
        return "is not valid JSON (" + shown + ")" + (e.byte >= text.size() ? ": truncated?" : "");
    } catch (const json::exception&) {
        return "is not valid JSON";
    }
    return {};
}

} // namespace memscope
