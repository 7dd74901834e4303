#include "metrics.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <tuple>

#include "utf8.hpp"

namespace memscope {

namespace {

// comm, exe, cgroup: a process group's labels.
using GroupKey = std::tuple<std::string, std::string, std::string>;

struct ThreadFigures {
    std::uint64_t alloc_bytes = 0, allocs = 0, frees = 0;
    std::int64_t live_bytes = 0;
};

struct Group {
    std::vector<std::string> names; // thread names, first seen first (bounded)
    std::map<std::string, ThreadFigures> threads;
    std::uint64_t peak_live_bytes = 0;
    bool heap = false;
    std::uint64_t rss_anon_bytes = 0;
    bool rss = false;
};

class Writer {
public:
    void family(const char* name, const char* type, const char* help)
    {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    void sample(const char* name, const std::vector<std::pair<const char*, std::string>>& labels, double value)
    {
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            bool first = true;
            for (const auto& [k, v] : labels) {
                if (!first)
                    out_ += ',';
                first = false;
                out_ += k;
                out_ += "=\"";
                out_ += prometheus_label_value(v);
                out_ += '"';
            }
            out_ += '}';
        }
        char buf[64];
        if (value == static_cast<double>(static_cast<std::int64_t>(value)))
            std::snprintf(buf, sizeof buf, " %" PRId64 "\n", static_cast<std::int64_t>(value));
        else
            std::snprintf(buf, sizeof buf, " %.9g\n", value);
        out_ += buf;
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

std::vector<std::pair<const char*, std::string>> group_labels(const GroupKey& k)
{
    return {{"comm", std::get<0>(k)}, {"exe", std::get<1>(k)}, {"cgroup", std::get<2>(k)}};
}

} // namespace

std::string prometheus_label_value(const std::string& s)
{
    std::string out;
    for (char c : utf8_replaced(s)) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string prometheus_metrics(const Report& report, const TracerFigures& tracer,
                               const std::function<std::string(int pid)>& cgroup_of)
{
    // Each process's labels; the root's when the report lists no process.
    std::map<int, GroupKey> keys;
    std::map<GroupKey, Group> groups;
    auto key_of = [&](const Target& t, const std::string& cgroup) {
        GroupKey k{t.comm, t.exe, cgroup.empty() && cgroup_of ? cgroup_of(t.pid) : cgroup};
        keys.emplace(t.pid, k);
        return k;
    };
    if (report.processes.empty()) {
        Group& g = groups[key_of(report.target, {})];
        g.heap = true;
        g.peak_live_bytes = report.totals.peak_live_bytes;
    }
    for (const ProcessSection& s : report.processes) {
        GroupKey k = keys.count(s.target.pid) ? keys[s.target.pid] : key_of(s.target, s.cgroup);
        Group& g = groups[k];
        const bool heap = report.mode_scope != "system" || s.heap_traced;
        if (heap) {
            g.heap = true;
            g.peak_live_bytes = std::max(g.peak_live_bytes, s.totals.peak_live_bytes);
        }
        if (s.memory && !s.exited) {
            g.rss = true;
            g.rss_anon_bytes += s.memory->rss_anon_bytes;
        }
    }
    for (const ThreadStats& t : report.threads) {
        auto it = keys.find(static_cast<int>(t.pid));
        if (it == keys.end())
            it = keys.find(report.target.pid); // a report of one process: its threads
        if (it == keys.end())
            continue;
        Group& g = groups[it->second];
        g.heap = true;
        std::string name = t.name;
        if (std::find(g.names.begin(), g.names.end(), name) == g.names.end()) {
            if (g.names.size() < kMaxThreadNames)
                g.names.push_back(name);
            else
                name = "[other]";
        }
        ThreadFigures& f = g.threads[name];
        f.alloc_bytes += t.counters.alloc_bytes;
        f.allocs += t.counters.alloc_count;
        f.frees += t.counters.free_count;
        f.live_bytes += static_cast<std::int64_t>(t.counters.live_bytes);
    }

    Writer w;
    struct Heap {
        const char* name;
        const char* type;
        const char* help;
        double (*value)(const ThreadFigures&);
    };
    static const Heap heap[] = {
        {"memscope_heap_alloc_bytes_total", "counter", "Bytes allocated (malloc, calloc, realloc, new, ...).",
         [](const ThreadFigures& f) { return static_cast<double>(f.alloc_bytes); }},
        {"memscope_heap_allocs_total", "counter", "Allocator calls that returned memory.",
         [](const ThreadFigures& f) { return static_cast<double>(f.allocs); }},
        {"memscope_heap_frees_total", "counter", "Blocks freed.",
         [](const ThreadFigures& f) { return static_cast<double>(f.frees); }},
        {"memscope_heap_live_bytes", "gauge", "Bytes allocated and not freed yet.",
         [](const ThreadFigures& f) { return static_cast<double>(f.live_bytes); }},
    };
    for (const Heap& h : heap) {
        w.family(h.name, h.type, h.help);
        for (const auto& [k, g] : groups)
            for (const auto& [thread, f] : g.threads) {
                auto labels = group_labels(k);
                labels.emplace_back("thread", thread);
                w.sample(h.name, labels, h.value(f));
            }
    }
    w.family("memscope_heap_peak_live_bytes", "gauge",
             "The most bytes live at once in one process of the group since tracing began.");
    for (const auto& [k, g] : groups)
        if (g.heap)
            w.sample("memscope_heap_peak_live_bytes", group_labels(k), static_cast<double>(g.peak_live_bytes));
    if (report.mode_scope == "system") {
        w.family("memscope_rss_anon_bytes", "gauge", "Anonymous resident memory of the group's running processes.");
        for (const auto& [k, g] : groups)
            if (g.rss)
                w.sample("memscope_rss_anon_bytes", group_labels(k), static_cast<double>(g.rss_anon_bytes));
        w.family("memscope_processes", "gauge", "Processes seen since tracing began.");
        w.sample("memscope_processes", {}, static_cast<double>(report.system.processes_seen));
    }
    w.family("memscope_dropped_events_total", "counter", "Events the tracer lost (figures are then incomplete).");
    w.sample("memscope_dropped_events_total", {}, static_cast<double>(report.dropped.events));
    w.family("memscope_dropped_total", "counter", "What the BPF side could not record, by reason.");
    for (const auto& [reason, n] : report.dropped.reasons)
        w.sample("memscope_dropped_total", {{"reason", reason}}, static_cast<double>(n));

    w.family("memscope_tracer_cpu_seconds_total", "counter", "The tracer's own CPU time.");
    w.sample("memscope_tracer_cpu_seconds_total", {{"mode", "user"}}, tracer.cpu_user_s);
    w.sample("memscope_tracer_cpu_seconds_total", {{"mode", "system"}}, tracer.cpu_sys_s);
    w.family("memscope_tracer_max_rss_bytes", "gauge", "The tracer's largest resident set.");
    w.sample("memscope_tracer_max_rss_bytes", {}, static_cast<double>(tracer.max_rss_bytes));
    w.family("memscope_tracer_bpf_map_bytes", "gauge", "Kernel memory of the tracer's BPF maps.");
    w.sample("memscope_tracer_bpf_map_bytes", {}, static_cast<double>(report.tracer.bpf_map_bytes));
    w.family("memscope_tracer_scrapes_total", "counter", "Snapshots made for /metrics and /debug/pprof/heap.");
    w.sample("memscope_tracer_scrapes_total", {}, static_cast<double>(tracer.scrapes));
    w.family("memscope_tracer_snapshot_seconds_total", "counter", "The tracer's time spent making snapshots.");
    w.sample("memscope_tracer_snapshot_seconds_total", {}, tracer.snapshot_s);
    w.family("memscope_tracer_pushes_total", "counter", "Profiles pushed (--push).");
    w.sample("memscope_tracer_pushes_total", {}, static_cast<double>(tracer.pushes));
    w.family("memscope_tracer_push_failures_total", "counter", "Pushes the server refused or did not answer.");
    w.sample("memscope_tracer_push_failures_total", {}, static_cast<double>(tracer.push_failures));
    w.family("memscope_tracer_push_dropped_total", "counter", "Profiles dropped: the push queue was full.");
    w.sample("memscope_tracer_push_dropped_total", {}, static_cast<double>(tracer.push_dropped));
    return w.take();
}

} // namespace memscope
