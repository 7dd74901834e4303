#include "report_text.hpp"
#include "paths.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace memscope {


std::string escape_for_terminal(std::string_view s)
{
    std::string out;
    out.reserve(s.size());
    for (unsigned char ch : s) {
        if (ch == '\\') {
            out += "\\\\";
        } else if (ch < 0x20 || ch >= 0x7f) {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", ch);
            out += buf;
        } else {
            out += static_cast<char>(ch);
        }
    }
    return out;
}

static std::string row(const char* fmt, auto... args)
{
    char buf[512];
    std::snprintf(buf, sizeof buf, fmt, args...);
    return buf;
}

static std::string clip(std::string_view s, std::size_t n)
{
    std::string e = escape_for_terminal(s);
    if (e.size() > n)
        e = e.substr(0, n - 1) + "~";
    return e;
}

std::string format_tracked(const Report& r, std::size_t top)
{
    const Tracked& t = r.tracked;
    std::string out;
    if (t.variables.empty() && t.summary.empty() && t.scopes.empty() && t.tasks.empty())
        return out;
    std::uint64_t live = 0, live_bytes = 0;
    for (const auto& s : t.summary) {
        live += s.live_count;
        live_bytes += s.live_bytes;
    }
    out += row("  tracked variables %zu (%zu names), live at end %llu (%s)\n", t.variables.size(),
               t.summary.size(), (unsigned long long)live, human_bytes(live_bytes).c_str());
    if (!t.summary.empty()) {
        out += row("    %-20s %-28s %9s %12s %9s %12s\n", "variable", "type", "count", "bytes", "live",
                   "live bytes");
        for (std::size_t i = 0; i < t.summary.size() && i < top; ++i) {
            const auto& s = t.summary[i];
            const Descriptor* d = t.descriptor(s.desc);
            out += row("    %-20s %-28s %9llu %12s %9llu %12s\n", clip(d ? d->name : "?", 20).c_str(),
                       clip(d ? d->type : "", 28).c_str(), (unsigned long long)s.count,
                       human_bytes(s.bytes).c_str(), (unsigned long long)s.live_count,
                       human_bytes(s.live_bytes).c_str());
        }
    }
    // Still live at the end, largest first.
    std::vector<const Variable*> alive;
    for (const auto& v : t.variables)
        if (v.heap && v.free_ns == 0)
            alive.push_back(&v);
    std::stable_sort(alive.begin(), alive.end(),
                     [](const Variable* a, const Variable* b) { return a->size > b->size; });
    if (!alive.empty()) {
        out += row("    live at end (%zu, largest first):\n", alive.size());
        for (std::size_t i = 0; i < alive.size() && i < top; ++i) {
            const Descriptor* d = t.descriptor(alive[i]->desc);
            std::string where = d ? escape_for_terminal(d->file) + ":" + std::to_string(d->line) : "?";
            out += row("      %-20s %12s  tid %-8u %s\n", clip(d ? d->name : "?", 20).c_str(),
                       human_bytes(alive[i]->size).c_str(), alive[i]->tid, clip(where, 60).c_str());
        }
    }
    auto groups = [&](const char* what, const std::vector<GroupTotals>& list) {
        if (list.empty())
            return;
        out += row("  %s (%zu):\n", what, list.size());
        for (std::size_t i = 0; i < list.size() && i < top; ++i) {
            const Descriptor* d = t.descriptor(list[i].desc);
            std::string name = d ? d->name : "?";
            if (list[i].id)
                name += " #" + std::to_string(list[i].id);
            out += row("    %-30s %10llu allocations %12s\n", clip(name, 30).c_str(),
                       (unsigned long long)list[i].alloc_count, human_bytes(list[i].alloc_bytes).c_str());
        }
    };
    groups("scopes", t.scopes);
    groups("tasks", t.tasks);
    return out;
}

namespace {

std::string mode_change_lines(const Report& r)
{
    std::string out;
    for (const auto& c : r.mode_changes)
        out += row("  mode %s -> %s at %.3f s: %s\n", mode_name(c.from), mode_name(c.to), c.t_s,
                   escape_for_terminal(c.reason).c_str());
    return out;
}

// The allocator's figures: totals and the per-thread table.
std::string heap_lines(const Report& r, bool all_threads)
{
    std::string out;
    const Counters& t = r.totals;
    out += row("  allocations %llu (%s), frees %llu (%s), failed %llu, unmatched frees %llu\n",
               (unsigned long long)t.alloc_count, human_bytes(t.alloc_bytes).c_str(),
               (unsigned long long)t.free_count, human_bytes(t.free_bytes).c_str(),
               (unsigned long long)t.failed_alloc_count,
               (unsigned long long)t.unmatched_free_count);
    if (t.temporary_count && t.alloc_count)
        out += row("  temporary %llu (%.1f%% of allocations: freed by their thread before it allocated again)\n",
                   (unsigned long long)t.temporary_count, 100.0 * (double)t.temporary_count / (double)t.alloc_count);
    std::string when;
    if (r.peak && r.peak->live_bytes == t.peak_live_bytes)
        when = row(" at %.3f s", r.peak->t_s);
    out += row("  live at end %llu blocks (%s%s), peak %s%s (%s)\n", (unsigned long long)t.live_count,
               human_bytes(t.live_bytes).c_str(), r.live_bytes_exact ? "" : ", not exact",
               human_bytes(t.peak_live_bytes).c_str(), when.c_str(),
               !r.live_bytes_exact ? "a lower bound: not every allocation was recorded"
               : r.peak_live_bytes_exact ? "exact"
                                         : "the largest sample; not exact");
    out += row("  %-8s %-16s %10s %12s %10s %12s %12s %12s\n", "tid", "name", "allocs", "bytes",
               "frees", "freed", "live", "peak");
    // Threads of one name are one row (a pool of 94 workers is one line,
    // "x94", its peak the largest of theirs) unless all are asked for.
    struct Row {
        std::string tid;
        const std::string* name;
        Counters c;
        std::size_t n = 0;
    };
    std::vector<Row> rows;
    std::map<std::string, std::size_t> by_name;
    for (const auto& th : r.threads) {
        auto [it, fresh] = by_name.try_emplace(th.name, rows.size());
        if (fresh || all_threads) {
            rows.push_back({std::to_string(th.tid), &th.name, th.counters, 1});
            continue;
        }
        Row& g = rows[it->second];
        for (const auto& f : kCounterFields)
            if (f.member != &Counters::peak_live_bytes)
                g.c.*f.member += th.counters.*f.member;
        g.c.peak_live_bytes = std::max(g.c.peak_live_bytes, th.counters.peak_live_bytes);
        g.tid = "x" + std::to_string(++g.n);
    }
    for (const auto& g : rows)
        out += row("  %-8s %-16s %10llu %12s %10llu %12s %12s %12s\n", g.tid.c_str(),
                   escape_for_terminal(*g.name).c_str(), (unsigned long long)g.c.alloc_count,
                   human_bytes(g.c.alloc_bytes).c_str(), (unsigned long long)g.c.free_count,
                   human_bytes(g.c.free_bytes).c_str(), human_bytes(g.c.live_bytes).c_str(),
                   human_bytes(g.c.peak_live_bytes).c_str());
    return out;
}

std::string drop_and_warning_lines(const Report& r)
{
    std::string out;
    if (r.dropped.events || r.dropped.untracked_allocations)
        out += row("  DROPPED: %llu events, %llu allocations untracked\n",
                   (unsigned long long)r.dropped.events,
                   (unsigned long long)r.dropped.untracked_allocations);
    for (const auto& w : r.warnings)
        out += "  WARNING: " + escape_for_terminal(w) + "\n";
    return out;
}

std::string format_system_report(const Report& r, bool all_threads);

} // namespace

// The command line that made the report and the files it wrote.
std::string invocation_lines(const Report& r)
{
    std::string out;
    if (!r.invocation.argv.empty()) {
        std::string line;
        for (const auto& a : r.invocation.argv) {
            const bool quote = a.empty() || a.find_first_of(" \t'\"\\$") != std::string::npos;
            line += (line.empty() ? "" : " ") + (quote ? "'" + a + "'" : a);
        }
        out += "  command: " + escape_for_terminal(line) + "\n";
    }
    std::string files;
    for (const auto& [kind, path] : r.invocation.outputs)
        files += (files.empty() ? "" : ", ") + kind + " " + escape_for_terminal(path);
    if (!files.empty())
        out += "  written: " + files + "\n";
    return out;
}

std::string format_report(const Report& r, bool all_threads)
{
    if (r.mode_scope == "system") {
        std::string out = format_system_report(r, all_threads);
        const auto first = out.find('\n');
        return first == std::string::npos ? out + invocation_lines(r)
                                          : out.insert(first + 1, invocation_lines(r));
    }
    std::string out;
    out += row("memscope-trace: pid %d (%s) %s, traced %.3f s, mode %s\n", r.target.pid,
               escape_for_terminal(r.target.comm).c_str(),
               escape_for_terminal(r.target.exe).c_str(), r.duration_s, escape_for_terminal(r.mode).c_str());
    out += invocation_lines(r);
    if (r.target.exit_code)
        out += row("  exit status %d\n", *r.target.exit_code);
    out += mode_change_lines(r);
    out += heap_lines(r, all_threads);
    out += format_tracked(r);
    out += format_sizes(r);
    out += format_peak(r);
    out += format_sites(r);
    if (r.followed_children && r.processes.size() > 1) {
        out += row("  processes: %zu traced (the command and those it started)\n", r.processes.size());
        for (const auto& p : r.processes)
            out += row("    pid %-7d %-16s %9llu allocs %12s  exit %s\n", p.target.pid,
                       clip(p.target.comm, 16).c_str(), (unsigned long long)p.totals.alloc_count,
                       human_bytes(p.totals.alloc_bytes).c_str(),
                       p.target.exit_code ? std::to_string(*p.target.exit_code).c_str() : "-");
    } else if (!r.followed_children && (r.children.forks || r.children.execs)) {
        out += row("  children: %llu forked, %llu exec'd (seen, not traced)\n",
                   (unsigned long long)r.children.forks, (unsigned long long)r.children.execs);
    }
    out += drop_and_warning_lines(r);
    return out;
}

namespace {

// "function (file:line) <- caller <- caller": the site's function and a few callers.
std::string describe_stack(const std::vector<Frame>& stack, std::size_t callers,
                           const std::vector<std::string>& wrappers)
{
    const Frame* f = site_function(stack, wrappers);
    if (!f)
        return "[no stack]";
    auto name = [](const Frame& fr) {
        if (!fr.symbol.empty())
            return fr.symbol.size() > 96 ? fr.symbol.substr(0, 95) + "~" : fr.symbol.str();
        char buf[40];
        std::snprintf(buf, sizeof buf, "+0x%llx", (unsigned long long)fr.offset);
        return (fr.module.empty() ? std::string("?") : base_name(fr.module.str())) + buf;
    };
    std::string out = name(*f);
    if (!f->file.empty()) {
        out += " (" + base_name(f->file.str()) + ":" + std::to_string(f->line) + ")";
    }
    std::size_t i = static_cast<std::size_t>(f - stack.data()) + 1;
    for (std::size_t n = 0; i < stack.size() && n < callers; ++i, ++n)
        out += " <- " + name(stack[i]);
    if (i < stack.size())
        out += " <- ...";
    return escape_for_terminal(out);
}

} // namespace

std::string format_sizes(const Report& r)
{
    std::string out;
    if (r.size_histogram.empty())
        return out;
    std::uint64_t most = 0, count = 0;
    for (const auto& b : r.size_histogram) {
        most = std::max(most, b.count);
        count += b.count;
    }
    out += row("  allocation sizes (%llu allocations):\n", (unsigned long long)count);
    for (const auto& b : r.size_histogram) {
        const std::string range = b.max == UINT64_MAX ? human_bytes(b.min) + " and up"
                                                      : human_bytes(b.min) + " - " + human_bytes(b.max);
        const auto bar = static_cast<std::size_t>(most ? (b.count * 30 + most - 1) / most : 0);
        out += row("    %-24s %10llu allocs %12s  ", range.c_str(), (unsigned long long)b.count,
                   human_bytes(b.bytes).c_str()) +
               std::string(bar, '#') + "\n";
    }
    return out;
}

std::string format_peak(const Report& r, std::size_t top)
{
    std::string out;
    if (!r.peak)
        return out;
    const Peak& p = *r.peak;
    out += row("  live at the peak: %s at %.3f s in pid %u (%s), by site:\n", human_bytes(p.live_bytes).c_str(), p.t_s,
               p.pid, p.exact ? "exact" : "a lower bound");
    std::map<std::pair<std::uint32_t, std::uint64_t>, const Site*> sites;
    for (const auto& s : r.sites)
        sites[{s.pid, s.id}] = &s;
    for (std::size_t i = 0; i < p.sites.size() && i < top; ++i) {
        const auto it = sites.find({p.sites[i].pid, p.sites[i].id});
        out += row("    %10s %9llu blocks  ", human_bytes(p.sites[i].live_bytes).c_str(),
                   (unsigned long long)p.sites[i].live_count) +
               (it != sites.end() ? describe_stack(it->second->stack, 3, r.alloc_functions)
                                  : "(a site not in the report)") +
               "\n";
    }
    if (p.sites.size() > top)
        out += row("    ... %zu more in the JSON report\n", p.sites.size() - top);
    if (!p.note.empty())
        out += "    (" + escape_for_terminal(p.note) + ")\n";
    return out;
}

std::string format_sites(const Report& r, std::size_t top)
{
    std::string out;
    if (!r.stacks.enabled || r.sites.empty())
        return out;
    out += row("  allocation sites: %llu distinct stacks, %.1f%% of allocations with a truncated stack\n",
               (unsigned long long)r.stacks.distinct, r.stacks.truncated_share * 100);
    for (const auto& [why, n] : r.stacks.truncated_by)
        out += row("    ended early: %llu allocations, %s\n", (unsigned long long)n, escape_for_terminal(why).c_str());
    if (!r.stacks.note.empty())
        out += "    (" + escape_for_terminal(r.stacks.note) + ")\n";
    std::vector<const Site*> sites;
    for (const auto& s : r.sites)
        sites.push_back(&s);
    auto list = [&](const char* title, auto better) {
        std::sort(sites.begin(), sites.end(), better);
        out += row("  top sites by %s:\n", title);
        for (std::size_t i = 0; i < sites.size() && i < top; ++i)
            out += row("    %10s %9llu allocs  ", human_bytes(sites[i]->alloc_bytes).c_str(),
                       (unsigned long long)sites[i]->alloc_count) +
                   describe_stack(sites[i]->stack, 3, r.alloc_functions) + "\n";
    };
    list("bytes", [](const Site* a, const Site* b) { return a->alloc_bytes != b->alloc_bytes ? a->alloc_bytes > b->alloc_bytes : a->id < b->id; });
    list("count", [](const Site* a, const Site* b) { return a->alloc_count != b->alloc_count ? a->alloc_count > b->alloc_count : a->id < b->id; });
    // Temporaries: allocations freed at once, each a malloc and free the program could spare.
    std::sort(sites.begin(), sites.end(), [](const Site* a, const Site* b) {
        return a->temporary_count != b->temporary_count ? a->temporary_count > b->temporary_count : a->id < b->id;
    });
    if (!sites.empty() && sites[0]->temporary_count) {
        out += row("  top sites by temporaries:\n");
        for (std::size_t i = 0; i < sites.size() && i < top && sites[i]->temporary_count; ++i)
            out += row("    %9llu of %9llu allocs temporary  ", (unsigned long long)sites[i]->temporary_count,
                       (unsigned long long)sites[i]->alloc_count) +
                   describe_stack(sites[i]->stack, 3, r.alloc_functions) + "\n";
    }

    std::uint64_t expected_count = 0, expected_bytes = 0, young_count = 0, young_bytes = 0;
    std::size_t shown = 0, program = 0;
    std::string leaks;
    for (const auto& l : r.leaks) {
        if (!l.expected.empty()) {
            expected_count += l.live_count;
            expected_bytes += l.live_bytes;
            continue;
        }
        young_count += l.young_count;
        young_bytes += l.young_bytes;
        if (!listed_leak(l))
            continue;
        ++program;
        if (shown++ >= top)
            continue;
        leaks += row("    %10s %9llu blocks  oldest %.2f s  ", human_bytes(l.live_bytes - l.young_bytes).c_str(),
                     (unsigned long long)(l.live_count - l.young_count), l.oldest_age_s) +
                 describe_stack(l.stack, 5, r.alloc_functions) + "\n";
        std::string who;
        for (std::size_t i = 0; i < l.threads.size() && i < 4; ++i)
            who += (i ? ", " : "") + clip(l.threads[i].name, 16) + " (" + std::to_string(l.threads[i].tid) + ")";
        if (l.threads.size() > 4)
            who += ", ...";
        std::string vars;
        for (std::size_t i = 0; i < l.variables.size() && i < 4; ++i) {
            const Descriptor* d = r.tracked.descriptor(l.variables[i].desc);
            vars += (i ? ", " : "") + (d ? clip(d->name, 32) : std::string("?"));
        }
        leaks += "        threads: " + who + (vars.empty() ? "" : "; variables: " + vars) + "\n";
    }
    out += row("  leaks: %zu stacks with blocks outstanding at the end", program);
    if (r.stacks.leak_min_age_s > 0)
        out += row(" for %.2f s or more (--min-age)", r.stacks.leak_min_age_s);
    out += "\n" + leaks;
    if (program > top)
        out += row("    ... %zu more in the JSON report\n", program - top);
    if (young_count)
        out += row("    + %llu blocks (%s) younger than %.2f s, not listed: the working set\n",
                   (unsigned long long)young_count, human_bytes(young_bytes).c_str(), r.stacks.leak_min_age_s);
    if (expected_count)
        out += row("    + %llu blocks (%s) the C/C++ runtime keeps for the process's lifetime\n",
                   (unsigned long long)expected_count, human_bytes(expected_bytes).c_str());
    return out;
}

namespace {

constexpr std::size_t kSystemTop = 20; // processes in the text report's table

// A cgroup path says most at its end: "~" and its last n-1 characters
// ("-": unknown).
std::string clip_tail(std::string_view s, std::size_t n)
{
    std::string e = escape_for_terminal(s);
    if (e.size() > n)
        e = "~" + e.substr(e.size() - (n - 1));
    return e.empty() ? "-" : e;
}

std::string signed_rate(double bytes_per_s)
{
    const double a = std::fabs(bytes_per_s);
    if (!(a < 1.8e19)) // NaN, or beyond 64 bits
        return "?";
    return (bytes_per_s < 0 ? "-" : "+") + human_bytes(static_cast<std::uint64_t>(a)) + "/s";
}

std::string pid_text(int pid, int ns_pid, bool other_namespace)
{
    return std::to_string(pid) + (other_namespace ? "/" + std::to_string(ns_pid) : "");
}

std::string flags_text(const ProcessSection& p)
{
    std::string f;
    for (auto [on, word] : {std::pair{p.heap_traced, "heap-traced"}, {p.exited, "exited"}, {p.oom_killed, "OOM"}})
        if (on)
            f += (f.empty() ? "" : ",") + std::string(word);
    if (p.heap_traced && !p.mode.empty() && p.mode != "normal")
        f += "(" + p.mode + ")";
    return f.empty() ? "-" : f;
}

constexpr const char* kProcessRow = "    %-15s %-16s %-24s %10s %10s %10s %10s %10s %10s %12s %s\n";

std::string process_row(const ProcessSection& p)
{
    std::string fig[7] = {"-", "-", "-", "-", "-", "-", "-"};
    if (const auto& m = p.memory) {
        std::uint64_t v[] = {m->rss_anon_bytes,  m->peak_rss_anon_bytes, m->rss_file_bytes,
                             m->rss_shmem_bytes, m->brk_bytes,           m->mmap_anon_bytes};
        for (std::size_t i = 0; i < std::size(v); ++i)
            fig[i] = human_bytes(v[i]);
        fig[6] = signed_rate(m->anon_growth_bytes_per_s);
    }
    return row(kProcessRow, pid_text(p.target.pid, p.ns_pid, p.other_pid_namespace).c_str(),
               clip(p.target.comm, 16).c_str(), clip_tail(p.cgroup, 24).c_str(), fig[0].c_str(), fig[1].c_str(),
               fig[2].c_str(), fig[3].c_str(), fig[4].c_str(), fig[5].c_str(), fig[6].c_str(),
               flags_text(p).c_str());
}

// The largest by anonymous peak; those without figures last.
std::string process_table(const Report& r, std::size_t top)
{
    std::vector<const ProcessSection*> list;
    for (const auto& p : r.processes)
        list.push_back(&p);
    auto peak = [](const ProcessSection* p) { return p->memory ? p->memory->peak_rss_anon_bytes + 1 : 0; };
    std::stable_sort(list.begin(), list.end(), [&](const ProcessSection* a, const ProcessSection* b) {
        return peak(a) != peak(b) ? peak(a) > peak(b) : a->target.pid < b->target.pid;
    });
    std::string out = row("  processes by peak anonymous memory (%zu listed; pid/its pid in its namespace):\n",
                          list.size());
    out += row(kProcessRow, "pid", "comm", "cgroup", "anon now", "anon peak", "file", "shmem", "brk", "mmap anon",
               "growth/s", "flags");
    for (std::size_t i = 0; i < list.size() && i < top; ++i)
        out += process_row(*list[i]);
    if (list.size() > top)
        out += row("    ... %zu more in the JSON report\n", list.size() - top);
    return out;
}

std::string system_counts(const SystemSummary& s)
{
    std::string out = row("  processes seen %llu: %llu born, %llu exec'd, %llu exited, %llu not listed",
                          (unsigned long long)s.processes_seen, (unsigned long long)s.births,
                          (unsigned long long)s.execs, (unsigned long long)s.exits, (unsigned long long)s.not_listed);
    if (s.not_listed)
        out += " (the largest anonymous peak among them " + human_bytes(s.not_listed_peak_rss_anon_bytes) + ")";
    out += "\n";
    if (!s.heap_selectors.empty()) {
        out += "  heap traced by:";
        for (const auto& h : s.heap_selectors)
            out += " " + escape_for_terminal(h);
        out += "\n";
    }
    return out;
}

std::string oom_kill_lines(const Report& r)
{
    if (r.oom_kills.empty())
        return row("  OOM kills: %llu\n", (unsigned long long)r.system.oom_kills);
    std::string out = row("  OOM kills: %zu\n", r.oom_kills.size());
    for (const auto& k : r.oom_kills)
        out += row("    at %.3f s  pid %-15s %-16s %-24s anon %s, file %s, shmem %s, swap %s\n", k.t_s,
                   pid_text(k.pid, k.ns_pid, k.ns_pid != 0 && k.ns_pid != k.pid).c_str(), clip(k.comm, 16).c_str(),
                   clip_tail(k.cgroup, 24).c_str(), human_bytes(k.memory.rss_anon_bytes).c_str(),
                   human_bytes(k.memory.rss_file_bytes).c_str(), human_bytes(k.memory.rss_shmem_bytes).c_str(),
                   human_bytes(k.memory.swap_bytes).c_str());
    return out;
}

// -a: the machine's processes; the allocator's figures only when some
// process's heap was traced.
std::string format_system_report(const Report& r, bool all_threads)
{
    std::string out = row("memscope-trace: system-wide, traced %.3f s, mode %s\n", r.duration_s,
                          escape_for_terminal(r.mode).c_str());
    out += mode_change_lines(r);
    bool heap = !r.threads.empty() || r.totals.alloc_count != 0;
    for (const auto& p : r.processes)
        heap = heap || p.heap_traced;
    if (heap) {
        out += "  heap-traced processes together:\n";
        out += heap_lines(r, all_threads) + format_tracked(r) + format_sizes(r) + format_peak(r) + format_sites(r);
    }
    out += process_table(r, kSystemTop);
    out += system_counts(r.system);
    out += oom_kill_lines(r);
    out += drop_and_warning_lines(r);
    return out;
}

} // namespace

std::string format_live_table(const Report& snap,
                              const std::map<std::uint32_t, std::uint64_t>& previous,
                              double dt)
{
    std::string out;
    out += row("memscope-trace: pid %d  %.1f s  allocs %llu  live %s  peak %s\n", snap.target.pid,
               snap.duration_s, (unsigned long long)snap.totals.alloc_count,
               human_bytes(snap.totals.live_bytes).c_str(),
               human_bytes(snap.totals.peak_live_bytes).c_str());
    out += row("%-8s %-16s %12s %12s %12s\n", "tid", "name", "allocs/s", "live", "peak");
    for (const auto& th : snap.threads) {
        auto it = previous.find(th.tid);
        std::uint64_t before = it == previous.end() ? 0 : it->second;
        std::uint64_t delta = th.counters.alloc_count >= before ? th.counters.alloc_count - before : 0;
        double rate = dt > 0 ? static_cast<double>(delta) / dt : 0;
        out += row("%-8u %-16s %12.0f %12s %12s\n", th.tid, escape_for_terminal(th.name).c_str(),
                   rate, human_bytes(th.counters.live_bytes).c_str(),
                   human_bytes(th.counters.peak_live_bytes).c_str());
    }
    return out;
}

} // namespace memscope
