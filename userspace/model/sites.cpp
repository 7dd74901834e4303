#include "sites.hpp"
#include "paths.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

namespace memscope {

namespace {


bool starts_with(const std::string& s, const char* prefix)
{
    return s.rfind(prefix, 0) == 0;
}

// The C and C++ runtime's own files.
bool runtime_module(const std::string& path)
{
    std::string b = base_name(path);
    return starts_with(b, "libc.so") || starts_with(b, "libstdc++.so") || starts_with(b, "libgcc_s.so") ||
           starts_with(b, "ld-linux") || starts_with(b, "libm.so");
}

} // namespace

const Frame* site_function(const std::vector<Frame>& stack, const std::vector<std::string>& wrappers)
{
    auto wrapper = [&](const Frame& f) {
        if (starts_with(f.symbol, "operator new") || starts_with(f.symbol, "operator delete"))
            return true;
        // libstdc++'s and libc++'s headers (/usr/include/c++/12/bits/...,
        // .../include/c++/v1/...) and the libraries themselves.
        if (f.file.find("/include/c++/") != std::string::npos)
            return true;
        const std::string m = base_name(f.module.str());
        if (starts_with(m, "libstdc++.so") || starts_with(m, "libc++.so"))
            return true;
        for (const auto& w : wrappers)
            if (f.symbol == w || (f.symbol.size() > w.size() && starts_with(f.symbol, w.c_str()) &&
                                  (f.symbol[w.size()] == '(' || f.symbol[w.size()] == '<')))
                return true;
        return false;
    };
    for (const auto& f : stack)
        if (!wrapper(f))
            return &f;
    return stack.empty() ? nullptr : &stack.front();
}

std::string expected_reason(const std::vector<Frame>& stack, bool truncated)
{
    if (stack.empty())
        return {};
    for (const auto& f : stack)
        if (f.symbol == "_IO_file_doallocate")
            return "stdio buffer, kept until exit";
    if (starts_with(base_name(stack.front().module.str()), "ld-linux"))
        return "dynamic loader";
    // Made inside the C++ runtime with no frame of the program on the way
    // (libstdc++'s emergency exception pool, made before main). A stack that
    // starts in libc is not taken: strdup & co called from code without
    // frame pointers look the same.
    if (starts_with(base_name(stack.front().module.str()), "libc.so"))
        return {};
    for (const auto& f : stack)
        if (!runtime_module(f.module))
            return {};
    // The loader running the runtime's own initializers (before main).
    for (const auto& f : stack)
        if (f.symbol == "_dl_init" || f.symbol == "call_init")
            return "made inside the C++ runtime, no program frame on its stack";
    // A walk that stopped early may have stopped inside the runtime on its
    // way back to the program (std::string's _M_create called from code
    // without frame pointers): taken only when no frame past the allocator
    // is a function a program calls (those have symbols; the runtime's
    // start-up code seen here has none).
    if (truncated)
        for (const auto& f : stack)
            if (!f.symbol.empty() && !starts_with(f.symbol, "operator new") && !starts_with(f.symbol, "malloc"))
                return {};
    return "made inside the C++ runtime, no program frame on its stack";
}

SizeBucket size_bucket(std::uint32_t k)
{
    SizeBucket b;
    b.min = k == 0 ? 0 : 1ull << k;
    b.max = k >= 63 ? UINT64_MAX : (2ull << k) - 1;
    return b;
}

namespace {

using Buckets = std::map<std::uint32_t, SizeBucket>;

void add_to(Buckets& buckets, const RawSize& s)
{
    SizeBucket& b = buckets.try_emplace(s.bucket, size_bucket(s.bucket)).first->second;
    b.count += s.count;
    b.bytes += s.bytes;
}

std::vector<SizeBucket> listed(const Buckets& buckets)
{
    std::vector<SizeBucket> out;
    for (const auto& [k, b] : buckets)
        out.push_back(b);
    return out;
}

} // namespace

void add_sizes(Report& r, const std::vector<RawSize>& sizes)
{
    Buckets total;
    std::unordered_map<std::uint64_t, Buckets> by_site;
    for (const RawSize& s : sizes) {
        if (s.bucket >= 64 || s.count == 0)
            continue;
        add_to(total, s);
        add_to(by_site[s.stack], s); // stack 0: the "(no stack recorded)" row's
    }
    r.size_histogram = listed(total);
    for (Site& site : r.sites)
        if (auto it = by_site.find(site.id); it != by_site.end())
            site.size_histogram = listed(it->second);
}

void add_peak(Report& r, std::uint32_t pid, const RawPeak& raw, std::uint64_t start_ns)
{
    Peak p;
    p.pid = pid;
    p.t_s = raw.ns > start_ns ? static_cast<double>(raw.ns - start_ns) / 1e9 : 0;
    p.live_bytes = raw.live_bytes;
    // A stint without records (async, off) or allocations that found no
    // room for one leave the sum short: then a lower bound.
    p.exact = r.live_bytes_exact && r.dropped.untracked_allocations == 0;
    std::uint64_t listed_bytes = 0;
    for (const RawPeak::Site& s : raw.sites) {
        if (s.live_bytes <= 0)
            continue;
        p.sites.push_back({s.stack, pid, static_cast<std::uint64_t>(std::max<std::int64_t>(s.live_count, 0)),
                           static_cast<std::uint64_t>(s.live_bytes)});
        listed_bytes += static_cast<std::uint64_t>(s.live_bytes);
    }
    std::sort(p.sites.begin(), p.sites.end(), [](const Peak::Site& a, const Peak::Site& b) {
        return a.live_bytes != b.live_bytes ? a.live_bytes > b.live_bytes : a.id < b.id;
    });
    std::vector<std::string> notes;
    if (raw.moved)
        notes.push_back("the process ran on while its sites were read: they are of a peak a little before this one");
    if (p.live_bytes > listed_bytes && r.stacks.enabled && !p.sites.empty())
        notes.push_back(std::to_string(p.live_bytes - listed_bytes) +
                        " bytes of the peak were allocated with no stack recorded (fast mode, or tables full)");
    if (!r.stacks.enabled || (p.sites.empty() && p.live_bytes > 0))
        notes.push_back("no sites: stacks are taken in normal mode only");
    // The threads' own peaks and the samples can only be lower; should one
    // be higher (the sum restarted with an exec), it is the figure.
    if (r.totals.peak_live_bytes > p.live_bytes) {
        p.live_bytes = r.totals.peak_live_bytes;
        p.exact = false;
        notes.push_back("the process's live sum was restarted (an exec): the peak is the largest sample");
    }
    for (const auto& n : notes)
        p.note += (p.note.empty() ? "" : "; ") + n;
    r.totals.peak_live_bytes = p.live_bytes;
    r.peak_live_bytes_exact = p.exact;
    r.peak = std::move(p);
}

void add_sites(Report& r, std::vector<SiteInput> inputs, const std::vector<OutstandingBlock>& blocks,
               std::uint64_t now_ns, std::uint32_t depth, double min_age_s)
{
    r.stacks.enabled = depth > 0;
    r.stacks.depth = depth;
    r.stacks.leak_min_age_s = min_age_s;
    const auto min_age_ns = static_cast<std::uint64_t>(std::max(min_age_s, 0.0) * 1e9);
    std::unordered_map<std::uint64_t, std::size_t> index;
    r.sites.clear();
    r.stacks.truncated_by.clear();
    r.sites.reserve(inputs.size());
    std::uint64_t with_stack = 0, truncated = 0;
    for (auto& in : inputs) {
        index[in.id] = r.sites.size();
        Site s;
        s.id = in.id;
        s.stack = std::move(in.stack);
        s.truncated = in.truncated;
        s.end = in.truncated ? in.end : std::string();
        if (s.truncated)
            r.stacks.truncated_by[s.end.empty() ? "ended early" : s.end] += in.alloc_count;
        s.alloc_count = in.alloc_count;
        s.alloc_bytes = in.alloc_bytes;
        s.temporary_count = in.temporary_count;
        with_stack += s.alloc_count;
        truncated += s.truncated ? s.alloc_count : 0;
        r.sites.push_back(std::move(s));
    }
    r.stacks.distinct = r.sites.size();
    r.stacks.truncated_share = with_stack ? static_cast<double>(truncated) / static_cast<double>(with_stack) : 0;
    r.stacks.without_stack = r.totals.alloc_count > with_stack ? r.totals.alloc_count - with_stack : 0;
    // Allocations counted with no site (the site table full, a stack
    // skipped): a labelled row of their own, so the sites add up to the
    // totals.
    if (r.stacks.enabled && r.stacks.without_stack > 0) {
        std::uint64_t bytes = 0;
        for (const auto& s : r.sites)
            bytes += s.alloc_bytes;
        const bool full = r.dropped.reasons.count("site_table_full") > 0;
        Site s;
        s.id = 0;
        Frame label;
        label.symbol = full ? "(stack table full)" : "(no stack recorded)";
        s.stack.push_back(label);
        s.truncated = true;
        s.end = full ? "the site table was full (--max-stacks)" : "no stack was taken for these allocations";
        s.alloc_count = r.stacks.without_stack;
        s.alloc_bytes = r.totals.alloc_bytes > bytes ? r.totals.alloc_bytes - bytes : 0;
        r.stacks.truncated_by[s.end] += s.alloc_count;
        index[0] = r.sites.size();
        r.sites.push_back(std::move(s));
    }

    // Outstanding blocks, by stack: the sites' live figures and the leaks.
    std::map<std::pair<std::uint32_t, std::uint64_t>, std::string> names;
    for (const auto& t : r.threads)
        names[{t.tid, t.start_ns}] = t.name;
    struct Group {
        Leak leak;
        std::uint64_t oldest_ns = UINT64_MAX;
        std::map<std::pair<std::uint32_t, std::uint64_t>, LeakThread> threads;
        std::map<std::uint32_t, LeakVariable> variables;
    };
    std::unordered_map<std::uint64_t, Group> groups;
    for (const auto& b : blocks) {
        if (b.stack == 0)
            ++r.stacks.outstanding_without_stack; // on the "(no stack recorded)" row, if there is one
        if (!index.count(b.stack)) {
            r.stacks.outstanding_without_stack += b.stack != 0;
            continue;
        }
        Site& site = r.sites[index[b.stack]];
        ++site.live_count;
        site.live_bytes += b.size;
        Group& g = groups[b.stack];
        g.leak.id = b.stack;
        ++g.leak.live_count;
        g.leak.live_bytes += b.size;
        // Fast mode keeps no time: such a block's age is unknown, not young.
        if (b.alloc_ns && now_ns > b.alloc_ns && now_ns - b.alloc_ns < min_age_ns) {
            ++g.leak.young_count;
            g.leak.young_bytes += b.size;
        }
        if (b.alloc_ns)
            g.oldest_ns = std::min(g.oldest_ns, b.alloc_ns);
        LeakThread& t = g.threads[{b.tid, b.thread_start_ns}];
        t.tid = b.tid;
        ++t.live_count;
        t.live_bytes += b.size;
        for (std::uint32_t d : b.variables) {
            LeakVariable& v = g.variables[d];
            v.desc = d;
            ++v.count;
            v.bytes += b.size;
        }
    }
    r.leaks.clear();
    for (auto& [id, g] : groups) {
        Leak leak = std::move(g.leak);
        if (g.oldest_ns != UINT64_MAX && now_ns > g.oldest_ns)
            leak.oldest_age_s = static_cast<double>(now_ns - g.oldest_ns) / 1e9;
        for (auto& [key, t] : g.threads) {
            auto n = names.find(key);
            if (n != names.end())
                t.name = n->second;
            leak.threads.push_back(std::move(t));
        }
        std::sort(leak.threads.begin(), leak.threads.end(),
                  [](const LeakThread& a, const LeakThread& b) { return a.live_bytes > b.live_bytes || (a.live_bytes == b.live_bytes && a.tid < b.tid); });
        for (auto& [d, v] : g.variables)
            leak.variables.push_back(v);
        const Site& site = r.sites[index[id]];
        leak.stack = site.stack;
        leak.truncated = site.truncated;
        leak.end = site.end;
        leak.expected = expected_reason(site.stack, site.truncated);
        r.leaks.push_back(std::move(leak));
    }
    auto by_bytes = [](const auto& a, const auto& b) {
        return a.alloc_bytes != b.alloc_bytes ? a.alloc_bytes > b.alloc_bytes : a.id < b.id;
    };
    std::sort(r.sites.begin(), r.sites.end(), by_bytes);
    std::sort(r.leaks.begin(), r.leaks.end(), [](const Leak& a, const Leak& b) {
        return a.live_bytes != b.live_bytes ? a.live_bytes > b.live_bytes : a.id < b.id;
    });
}

void TimelineRecorder::sample(double t_s, const std::vector<ThreadStats>& threads)
{
    if (t_.size() >= max_) {
        // Halve the resolution: keep every other sample.
        auto thin = [](auto& v) {
            std::size_t j = 0;
            for (std::size_t i = 0; i < v.size(); i += 2)
                v[j++] = v[i];
            v.resize(j);
        };
        thin(t_);
        thin(process_);
        for (auto& [k, th] : threads_)
            thin(th.live_bytes);
        interval_ *= 2;
    }
    std::int64_t total = 0;
    for (const auto& th : threads) {
        auto& rec = threads_[{th.tid, th.start_ns}];
        if (rec.tid == 0) {
            rec.tid = th.tid;
            rec.start_ns = th.start_ns;
        }
        rec.name = th.name;
        rec.live_bytes.resize(t_.size(), 0);
        rec.live_bytes.push_back(static_cast<std::int64_t>(th.counters.live_bytes));
        total += static_cast<std::int64_t>(th.counters.live_bytes);
    }
    t_.push_back(t_s);
    process_.push_back(total);
}

Timeline TimelineRecorder::timeline() const
{
    Timeline tl;
    tl.interval_s = interval_;
    tl.t_s = t_;
    tl.process_live_bytes = process_;
    for (const auto& [k, th] : threads_) {
        Timeline::Thread copy = th;
        copy.live_bytes.resize(t_.size(), copy.live_bytes.empty() ? 0 : copy.live_bytes.back());
        tl.threads.push_back(std::move(copy));
    }
    return tl;
}

} // namespace memscope
