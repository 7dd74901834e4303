#include "report_json.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "memscope/probe_abi.h"

namespace memscope {

using nlohmann::json;

static json counters_json(const Counters& c)
{
    json out = json::object();
    for (const auto& f : kCounterFields)
        out[f.name] = c.*f.member;
    return out;
}

static const char* request_mode_name(std::uint32_t mode)
{
    switch (mode) {
    case MEMSCOPE_MODE_NORMAL: return "normal";
    case MEMSCOPE_MODE_FAST: return "fast";
    case MEMSCOPE_MODE_ASYNC: return "async";
    case MEMSCOPE_MODE_OFF: return "off";
    default: return "unknown";
    }
}

static json or_null(bool present, std::uint64_t v)
{
    return present ? json(v) : json(nullptr);
}

namespace {

// By (tid, start time), and by tid alone (start time 0: the record did not
// carry it) for the thread of that tid seen last.
using ThreadNames = std::map<std::pair<std::uint32_t, std::uint64_t>, const std::string*>;

json name_of(const Tracked& t, std::uint32_t i)
{
    const Descriptor* d = t.descriptor(i);
    return d ? json(d->name) : json(nullptr);
}

ThreadNames thread_names(const Report& r)
{
    ThreadNames names;
    for (const auto& th : r.threads) {
        names[{th.tid, th.start_ns}] = &th.name;
        auto& latest = names[{th.tid, 0}];
        if (!latest || th.start_ns > 0)
            latest = &th.name;
    }
    return names;
}

json variable_json(const Tracked& t, const ThreadNames& names, const Variable& v)
{
    const Descriptor* d = t.descriptor(v.desc);
    auto th = names.find({v.tid, v.thread_start_ns});
    return json{
        {"name", d ? d->name : "?"},
        {"type", d ? d->type : ""},
        {"pid", v.tgid},
        {"tid", v.tid},
        {"thread", th != names.end() ? json(*th->second) : json(nullptr)},
        {"addr", v.addr ? json(v.addr) : json(nullptr)},
        {"size", v.size},
        {"heap", v.heap},
        {"file", d ? d->file : ""},
        {"line", d ? d->line : 0},
        // A block allocated in fast mode has no allocation time.
        {"alloc_ns", or_null(v.heap && v.alloc_ns != 0, v.alloc_ns)},
        {"free_ns", or_null(v.free_ns != 0, v.free_ns)},
        {"lifetime_ns", or_null(v.heap && v.alloc_ns != 0 && v.free_ns != 0, v.free_ns - v.alloc_ns)},
        {"scope", name_of(t, v.scope)},
        {"task", or_null(v.task_desc != kNoDescriptor, v.task)},
        {"task_name", name_of(t, v.task_desc)},
    };
}

// Everything the tracker entry points said, but the variables themselves.
void add_tracked_json(const Tracked& t, json& out)
{
    json summary = json::array();
    for (const auto& s : t.summary) {
        const Descriptor* d = t.descriptor(s.desc);
        summary.push_back(json{{"name", d ? d->name : "?"},
                               {"type", d ? d->type : ""},
                               {"count", s.count},
                               {"bytes", s.bytes},
                               {"live_count", s.live_count},
                               {"live_bytes", s.live_bytes}});
    }
    json scopes = json::array();
    for (const auto& g : t.scopes) {
        const Descriptor* d = t.descriptor(g.desc);
        scopes.push_back(json{{"name", d ? d->name : "?"},
                              {"file", d ? d->file : ""},
                              {"line", d ? d->line : 0},
                              {"alloc_count", g.alloc_count},
                              {"alloc_bytes", g.alloc_bytes}});
    }
    json tasks = json::array();
    for (const auto& g : t.tasks)
        tasks.push_back(json{{"pid", g.pid},
                             {"id", g.id},
                             {"name", name_of(t, g.desc)},
                             {"alloc_count", g.alloc_count},
                             {"alloc_bytes", g.alloc_bytes}});
    json requests = json::array();
    for (const auto& m : t.mode_requests)
        requests.push_back(
            json{{"ts_ns", m.ts}, {"pid", m.tgid}, {"tid", m.tid}, {"mode", request_mode_name(m.mode)}});

    out["variable_summary"] = std::move(summary);
    out["scopes"] = std::move(scopes);
    out["tasks"] = std::move(tasks);
    out["mode_requests"] = std::move(requests);
    out["tracker"] = json{{"modules", t.modules},
                          {"unreadable_descriptors", t.unreadable_descriptors},
                          {"variables_counted_by_name", t.counted_by_name}};
}

std::string dump(const json& j, int indent)
{
    return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

json report_without_variables(const Report& r, bool lists = true);

} // namespace

json report_to_json(const Report& r)
{
    json out = report_without_variables(r);
    json vars = json::array();
    ThreadNames names = thread_names(r);
    for (const auto& v : r.tracked.variables)
        vars.push_back(variable_json(r.tracked, names, v));
    out["variables"] = std::move(vars);
    return out;
}

namespace {

json frame_json(const Frame& f)
{
    json j{{"addr", f.addr},
           {"symbol", f.symbol.empty() ? json(nullptr) : json(f.symbol)},
           {"module", f.module.empty() ? json(nullptr) : json(f.module)},
           {"offset", f.offset}};
    if (!f.file.empty()) {
        j["file"] = f.file;
        j["line"] = f.line;
    }
    if (f.inlined)
        j["inlined"] = true;
    return j;
}

// Each distinct frame once, in the report's "frames"; stacks name them by
// index (a compile's 850,000 frames are 7,600 distinct ones).
class FrameTable {
public:
    json stack(const std::vector<Frame>& stack)
    {
        json ids = json::array();
        for (const auto& f : stack) {
            auto [it, added] = index_.try_emplace(Key{f.addr, f.offset, f.line, f.inlined, f.symbol, f.module, f.file},
                                                  frames_.size());
            if (added)
                frames_.push_back(frame_json(f));
            ids.push_back(it->second);
        }
        return ids;
    }
    json take() { return std::move(frames_); }

private:
    // Names as interned in the frames: a key costs no string copies.
    using Key = std::tuple<std::uint64_t, std::uint64_t, std::uint32_t, bool, Interned, Interned, Interned>;
    std::map<Key, std::size_t> index_;
    json frames_ = json::array();
};

json function_json(const std::vector<Frame>& stack, const std::vector<std::string>& wrappers)
{
    const Frame* f = site_function(stack, wrappers);
    return f && !f->symbol.empty() ? json(f->symbol) : json(nullptr);
}

std::string hex_id(std::uint64_t id)
{
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
    return buf;
}

json sizes_json(const std::vector<SizeBucket>& buckets)
{
    json out = json::array();
    for (const SizeBucket& b : buckets)
        out.push_back(json{{"min", b.min}, {"max", b.max}, {"count", b.count}, {"bytes", b.bytes}});
    return out;
}

json peak_json(const Peak& p)
{
    json sites = json::array();
    for (const Peak::Site& s : p.sites)
        sites.push_back(json{{"id", hex_id(s.id)}, {"pid", s.pid}, {"live_count", s.live_count},
                             {"live_bytes", s.live_bytes}});
    json out{{"pid", p.pid}, {"t_s", p.t_s}, {"live_bytes", p.live_bytes}, {"exact", p.exact},
             {"sites", std::move(sites)}};
    if (!p.note.empty())
        out["note"] = p.note;
    return out;
}

// Sites, then leaks, one at a time, and the frame table their stacks
// index (complete once every site and leak was had): what the writer
// streams, so that a compile's 26,000 sites never sit in memory as JSON.
class SiteLists {
public:
    explicit SiteLists(const Report& r) : r_(r) {}

    json site(std::size_t i)
    {
        const Site& s = r_.sites[i];
        return json{{"pid", s.pid},
                    {"id", hex_id(s.id)},
                    {"function", function_json(s.stack, r_.alloc_functions)},
                    {"stack", table_.stack(s.stack)},
                    {"truncated", s.truncated},
                    {"end", s.end.empty() ? json(nullptr) : json(s.end)},
                    {"alloc_count", s.alloc_count},
                    {"alloc_bytes", s.alloc_bytes},
                    {"live_count", s.live_count},
                    {"live_bytes", s.live_bytes},
                    {"temporary_count", s.temporary_count},
                    {"size_histogram", sizes_json(s.size_histogram)}};
    }

    json leak(std::size_t i)
    {
        const Leak& l = r_.leaks[i];
        json threads = json::array();
        for (const auto& t : l.threads)
            threads.push_back(json{{"tid", t.tid}, {"name", t.name}, {"live_count", t.live_count},
                                   {"live_bytes", t.live_bytes}});
        json vars = json::array();
        for (const auto& v : l.variables) {
            const Descriptor* d = r_.tracked.descriptor(v.desc);
            vars.push_back(json{{"name", d ? json(d->name) : json(nullptr)},
                                {"type", d ? json(d->type) : json(nullptr)},
                                {"count", v.count},
                                {"bytes", v.bytes}});
        }
        return json{{"pid", l.pid},
                    {"id", hex_id(l.id)},
                    {"function", function_json(l.stack, r_.alloc_functions)},
                    {"stack", table_.stack(l.stack)},
                    {"truncated", l.truncated},
                    {"end", l.end.empty() ? json(nullptr) : json(l.end)},
                    {"live_count", l.live_count},
                    {"live_bytes", l.live_bytes},
                    {"young_count", l.young_count},
                    {"young_bytes", l.young_bytes},
                    {"oldest_age_s", l.oldest_age_s},
                    {"threads", std::move(threads)},
                    {"variables", std::move(vars)},
                    {"expected", l.expected.empty() ? json(nullptr) : json(l.expected)}};
    }

    json take_frames() { return table_.take(); }

private:
    const Report& r_;
    FrameTable table_;
};

// The report's stacks summary; with `lists`, its sites, leaks and frames too.
void add_sites_json(const Report& r, json& out, bool lists)
{
    json stacks{{"enabled", r.stacks.enabled},
                {"depth", r.stacks.depth},
                {"distinct", r.stacks.distinct},
                {"truncated_share", r.stacks.truncated_share},
                {"truncated_by", r.stacks.truncated_by},
                {"without_stack", r.stacks.without_stack},
                {"outstanding_without_stack", r.stacks.outstanding_without_stack},
                {"leak_min_age_s", r.stacks.leak_min_age_s}};
    if (!r.stacks.note.empty())
        stacks["note"] = r.stacks.note;
    if (!r.alloc_functions.empty())
        stacks["alloc_functions"] = r.alloc_functions;
    if (r.stacks.enabled)
        stacks["unwind"] = {{"files", r.stacks.unwind.files},
                            {"shared_files", r.stacks.unwind.shared_files},
                            {"rows", r.stacks.unwind.rows},
                            {"kernel_bytes", r.stacks.unwind.kernel_bytes},
                            {"eh_frame_bytes", r.stacks.unwind.eh_frame_bytes},
                            {"build_ms", r.stacks.unwind.build_ms},
                            {"skipped", r.stacks.unwind.skipped}};
    out["stacks"] = std::move(stacks);
    if (lists) {
        SiteLists each(r);
        json sites = json::array();
        for (std::size_t i = 0; i < r.sites.size(); ++i)
            sites.push_back(each.site(i));
        out["sites"] = std::move(sites);
        json leaks = json::array();
        for (std::size_t i = 0; i < r.leaks.size(); ++i)
            leaks.push_back(each.leak(i));
        out["leaks"] = std::move(leaks);
        out["frames"] = each.take_frames();
    }
    out["size_histogram"] = sizes_json(r.size_histogram);
    if (r.peak)
        out["peak"] = peak_json(*r.peak);
    json tl{{"interval_s", r.timeline.interval_s}, {"t_s", r.timeline.t_s},
            {"process_live_bytes", r.timeline.process_live_bytes}};
    json tthreads = json::array();
    for (const auto& t : r.timeline.threads)
        tthreads.push_back(json{{"tid", t.tid}, {"name", t.name}, {"live_bytes", t.live_bytes}});
    tl["threads"] = std::move(tthreads);
    out["timeline"] = std::move(tl);
}

bool system_scope(const Report& r)
{
    return r.mode_scope == "system";
}

// Every figure of kMemoryFields, then the growth rate and the time watched.
json memory_json(const MemoryFigures& m)
{
    json out = json::object();
    for (const auto& f : kMemoryFields)
        out[f.name] = m.*f.member;
    out["anon_growth_bytes_per_s"] = m.anon_growth_bytes_per_s;
    out["watched_s"] = m.watched_s;
    return out;
}

// What -a knows of a process besides its heap (mode_scope "system" only).
void add_system_process_json(const ProcessSection& p, json& out)
{
    out["memory"] = p.memory ? memory_json(*p.memory) : json(nullptr);
    out["cgroup"] = p.cgroup;
    out["heap_traced"] = p.heap_traced;
    out["mode"] = p.mode;
    out["ns_pid"] = p.ns_pid;
    out["other_pid_namespace"] = p.other_pid_namespace;
    out["born_while_traced"] = p.born_while_traced;
    out["exited"] = p.exited;
    out["oom_killed"] = p.oom_killed;
    out["execs"] = p.execs;
    out["forks"] = p.forks;
}

// The process tree: the root alone when no other process was traced. A
// system report lists the machine's processes, none when it saw none.
// (`root`: where the made-up root lives; the report's own list is not copied.)
const std::vector<ProcessSection>& listed_processes(const Report& r, std::vector<ProcessSection>& root)
{
    if (!r.processes.empty() || system_scope(r))
        return r.processes;
    root = {{r.target, 0, r.totals, r.peak_live_bytes_exact && r.live_bytes_exact, r.threads.size()}};
    return root;
}

json process_json(const ProcessSection& p, bool system)
{
    json totals = counters_json(p.totals);
    totals["peak_live_bytes_exact"] = p.peak_live_bytes_exact;
    json entry{{"pid", p.target.pid},
               {"parent_pid", p.parent_pid},
               {"exe", p.target.exe},
               {"comm", p.target.comm},
               {"exit_code", p.target.exit_code ? json(*p.target.exit_code) : json(nullptr)},
               {"threads", p.threads},
               {"totals", std::move(totals)}};
    if (system)
        add_system_process_json(p, entry);
    return entry;
}

json processes_json(const Report& r)
{
    json out = json::array();
    std::vector<ProcessSection> root;
    for (const auto& p : listed_processes(r, root))
        out.push_back(process_json(p, system_scope(r)));
    return out;
}

json oom_kills_json(const Report& r)
{
    json out = json::array();
    for (const auto& k : r.oom_kills)
        out.push_back(json{{"pid", k.pid},
                           {"ns_pid", k.ns_pid},
                           {"comm", k.comm},
                           {"cgroup", k.cgroup},
                           {"t_s", k.t_s},
                           {"memory", memory_json(k.memory)}});
    return out;
}

json system_json(const SystemSummary& s)
{
    return json{{"processes_seen", s.processes_seen},
                {"births", s.births},
                {"execs", s.execs},
                {"exits", s.exits},
                {"oom_kills", s.oom_kills},
                {"not_listed", s.not_listed},
                {"not_listed_peak_rss_anon_bytes", s.not_listed_peak_rss_anon_bytes},
                {"heap_selectors", s.heap_selectors}};
}

json report_without_variables(const Report& r, bool lists)
{
    json target{{"pid", r.target.pid}, {"comm", r.target.comm}, {"exe", r.target.exe}};
    target["exit_code"] = r.target.exit_code ? json(*r.target.exit_code) : json(nullptr);

    json totals = counters_json(r.totals);
    totals["peak_live_bytes_exact"] = r.peak_live_bytes_exact && r.live_bytes_exact;
    totals["live_bytes_exact"] = r.live_bytes_exact;
    totals["free_bytes_exact"] = r.free_bytes_exact;

    json changes = json::array();
    for (const auto& c : r.mode_changes)
        changes.push_back(json{{"t_s", c.t_s}, {"from", mode_name(c.from)}, {"to", mode_name(c.to)}, {"reason", c.reason}});

    json threads = json::array();
    for (const auto& t : r.threads) {
        json j{{"pid", t.pid}, {"tid", t.tid}, {"name", t.name}};
        j.update(counters_json(t.counters));
        threads.push_back(std::move(j));
    }

    json out{
        {"schema", kSchema},
        {"tool", {{"name", "memscope-trace"}, {"version", kToolVersion}}},
        {"invocation", {{"argv", r.invocation.argv}, {"outputs", r.invocation.outputs}}},
        {"target", std::move(target)},
        {"duration_s", r.duration_s},
        {"mode", r.mode},
        {"mode_source", r.mode_source},
        {"mode_changes", std::move(changes)},
        {"allocation_records", r.allocation_records},
        {"tracer",
         {{"cpu_user_s", r.tracer.cpu_user_s},
          {"cpu_sys_s", r.tracer.cpu_sys_s},
          {"startup_cpu_user_s", r.tracer.startup_cpu_user_s},
          {"startup_cpu_sys_s", r.tracer.startup_cpu_sys_s},
          {"tracing_cpu_user_s", r.tracer.tracing_cpu_user_s},
          {"tracing_cpu_sys_s", r.tracer.tracing_cpu_sys_s},
          {"max_rss_kb", r.tracer.max_rss_kb},
          {"bpf_map_bytes", r.tracer.bpf_map_bytes},
          {"attach", r.tracer.attach},
          {"export", r.tracer.exported},
          {"bpf_programs", [&] {
               json p = json::object();
               for (const auto& [name, v] : r.tracer.programs)
                   p[name] = {{"run_count", v.first}, {"run_time_ns", v.second}};
               return p;
           }()}}},
        {"totals", std::move(totals)},
        {"threads", std::move(threads)},
        {"dropped",
         {{"events", r.dropped.events},
          {"untracked_allocations", r.dropped.untracked_allocations},
          {"reasons", r.dropped.reasons}}},
        {"children",
         {{"forks", r.children.forks}, {"execs", r.children.execs}, {"pids", r.children.pids},
          {"traced", r.followed_children}}},
        {"mode_scope", r.mode_scope},
        {"oom_kills", oom_kills_json(r)},
        {"warnings", r.warnings},
        {"unprobed_allocators", [&] {
             json list = json::array();
             for (const auto& u : r.unprobed_allocators)
                 list.push_back({{"pid", u.pid}, {"file", u.file}, {"symbols", u.symbols}, {"reason", u.reason}});
             return list;
         }()},
    };
    if (system_scope(r))
        out["system"] = system_json(r.system);
    if (lists)
        out["processes"] = processes_json(r);
    add_tracked_json(r.tracked, out);
    add_sites_json(r, out, lists);
    return out;
}

} // namespace

json report_summary_json(const Report& r)
{
    return report_without_variables(r);
}

bool write_report_json(const Report& r, std::FILE* out)
{
    // The report but its variables, as one document; then the variables
    // streamed one per line, so 100,000 of them never sit in memory as JSON.
    std::string head = dump(report_without_variables(r, false), 2);
    head.pop_back(); // the closing brace
    while (!head.empty() && (head.back() == '\n' || head.back() == ' '))
        head.pop_back();
    std::fputs(head.c_str(), out);
    // Sites, leaks and their frames one per line too: a compile's tens of
    // thousands never sit in memory as one document.
    SiteLists each(r);
    auto stream = [out](const char* key, std::size_t n, const std::function<json(std::size_t)>& element) {
        std::fprintf(out, ",\n  \"%s\": [", key);
        for (std::size_t i = 0; i < n; ++i) {
            std::fputs(i ? ",\n    " : "\n    ", out);
            std::string line = dump(element(i), -1);
            std::fwrite(line.data(), 1, line.size(), out);
        }
        std::fputs(n ? "\n  ]" : "]", out);
    };
    // A machine's processes (-a: thousands) one per line too.
    std::vector<ProcessSection> root;
    const std::vector<ProcessSection>& processes = listed_processes(r, root);
    stream("processes", processes.size(), [&](std::size_t i) { return process_json(processes[i], system_scope(r)); });
    stream("sites", r.sites.size(), [&](std::size_t i) { return each.site(i); });
    stream("leaks", r.leaks.size(), [&](std::size_t i) { return each.leak(i); });
    json frames = each.take_frames();
    stream("frames", frames.size(), [&](std::size_t i) { return std::move(frames[i]); });
    std::fputs(",\n  \"variables\": [", out);
    ThreadNames names = thread_names(r);
    bool first = true;
    for (const auto& v : r.tracked.variables) {
        std::fputs(first ? "\n    " : ",\n    ", out);
        std::string line = dump(variable_json(r.tracked, names, v), -1);
        std::fwrite(line.data(), 1, line.size(), out);
        first = false;
    }
    std::fputs(first ? "]\n}\n" : "\n  ]\n}\n", out);
    return !std::ferror(out);
}

std::string report_to_json_text(const Report& report)
{
    char* buf = nullptr;
    size_t size = 0;
    std::FILE* mem = open_memstream(&buf, &size);
    if (!mem)
        return {};
    write_report_json(report, mem);
    std::fclose(mem);
    std::string text(buf, size);
    std::free(buf);
    return text;
}

} // namespace memscope
