#include "pprof.hpp"

#include <zlib.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <unordered_map>
#include <vector>

#include "profile.pb.h"
#include "utf8.hpp"

namespace memscope {

namespace {

namespace pb = perftools::profiles;

constexpr const char* kNoStack = "[no stack recorded]";

// The string table, function, mapping and location tables, each entry once.
class ProfileBuilder {
public:
    explicit ProfileBuilder(pb::Profile& p) : p_(p) { str(""); }

    std::int64_t str(const std::string& s)
    {
        auto [it, fresh] = strings_.try_emplace(s, static_cast<std::int64_t>(strings_.size()));
        if (fresh)
            p_.add_string_table(utf8_replaced(s));
        return it->second;
    }

    std::uint64_t function(const std::string& name, const std::string& file)
    {
        auto [it, fresh] = functions_.try_emplace({name, file}, functions_.size() + 1);
        if (fresh) {
            pb::Function* f = p_.add_function();
            f->set_id(it->second);
            f->set_name(str(name));
            f->set_system_name(str(name));
            f->set_filename(str(file));
        }
        return it->second;
    }

    // A process's file: its mapping, spanning every address seen in it.
    // `synthetic`: a location of no address (what no site holds), kept off the file's span.
    std::uint64_t mapping(std::uint32_t pid, const std::string& file, std::uint64_t addr, bool synthetic = false)
    {
        auto [it, fresh] =
            mappings_.try_emplace({pid, synthetic ? '\0' + file : file}, static_cast<int>(mappings_.size()));
        pb::Mapping* m = fresh ? p_.add_mapping() : p_.mutable_mapping(it->second);
        if (fresh) {
            m->set_id(static_cast<std::uint64_t>(it->second) + 1);
            m->set_filename(str(file));
            m->set_memory_start(addr);
            m->set_memory_limit(addr + 1);
            // Symbolized already: pprof is not to look for the file.
            m->set_has_functions(true);
            m->set_has_filenames(true);
            m->set_has_line_numbers(true);
            m->set_has_inline_frames(true);
        } else {
            if (addr < m->memory_start())
                m->set_memory_start(addr);
            if (addr + 1 > m->memory_limit())
                m->set_memory_limit(addr + 1);
        }
        return m->id();
    }

    // The frames of a stack, innermost first, as locations: a run of
    // inlined frames and the frame they were inlined into share an address,
    // and are the lines of one location.
    std::vector<std::uint64_t> locations(std::uint32_t pid, const std::vector<Frame>& stack,
                                         const std::string& exe)
    {
        std::vector<std::uint64_t> ids;
        for (std::size_t i = 0; i < stack.size();) {
            std::size_t j = i;
            while (j + 1 < stack.size() && stack[j].inlined)
                ++j;
            ids.push_back(location(pid, stack, i, j + 1, exe));
            i = j + 1;
        }
        if (ids.empty())
            ids.push_back(no_stack(pid, exe));
        return ids;
    }

    // A process's allocations that no site holds.
    std::uint64_t no_stack(std::uint32_t pid, const std::string& exe)
    {
        auto [it, fresh] = no_stack_.try_emplace(pid, 0);
        if (fresh) {
            pb::Location* l = p_.add_location();
            l->set_id(static_cast<std::uint64_t>(p_.location_size()));
            l->set_mapping_id(mapping(pid, exe.empty() ? "[unknown]" : exe, 0, true));
            l->add_line()->set_function_id(function(kNoStack, ""));
            it->second = l->id();
        }
        return it->second;
    }

private:
    std::uint64_t location(std::uint32_t pid, const std::vector<Frame>& stack, std::size_t from, std::size_t to,
                           const std::string& exe)
    {
        const Frame& outer = stack[to - 1];
        // A location is one address of one process, however many stacks pass through it.
        std::string key = std::to_string(pid) + ':' + std::to_string(outer.addr) + ':' + std::to_string(to - from);
        for (std::size_t k = from; k < to; ++k)
            key += stack[k].symbol.str() + '\0';
        auto [it, fresh] = locations_.try_emplace(std::move(key), 0);
        if (!fresh)
            return it->second;
        pb::Location* l = p_.add_location();
        l->set_id(static_cast<std::uint64_t>(p_.location_size()));
        l->set_address(outer.addr);
        const std::string file = outer.module.empty() ? (outer.addr ? "[anonymous]" : exe) : outer.module.str();
        l->set_mapping_id(mapping(pid, file.empty() ? "[unknown]" : file, outer.addr));
        // pprof's order: the innermost (inlined) function first.
        for (std::size_t k = from; k < to; ++k) {
            const Frame& f = stack[k];
            if (f.symbol.empty())
                continue; // no name: pprof shows the address
            pb::Line* line = l->add_line();
            line->set_function_id(function(f.symbol.str(), f.file.str()));
            line->set_line(f.line);
        }
        it->second = l->id();
        return l->id();
    }

    pb::Profile& p_;
    std::unordered_map<std::string, std::int64_t> strings_;
    std::map<std::pair<std::string, std::string>, std::uint64_t> functions_;
    std::map<std::pair<std::uint32_t, std::string>, int> mappings_;
    std::unordered_map<std::string, std::uint64_t> locations_;
    std::map<std::uint32_t, std::uint64_t> no_stack_;
};

struct ProcessFigures {
    std::string exe;
    Counters totals;
    std::int64_t site_count = 0, site_bytes = 0, leak_count = 0, leak_bytes = 0;
};

std::string gzip(const std::string& raw)
{
    z_stream z{};
    // 31: a gzip header, as pprof files have.
    if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return {};
    std::string out(deflateBound(&z, raw.size()) + 32, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
    z.avail_in = static_cast<uInt>(raw.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    return rc == Z_STREAM_END ? out : std::string();
}

std::int64_t as_i64(std::uint64_t v)
{
    return static_cast<std::int64_t>(v);
}

} // namespace

ProfileTimes times_of(const Report& report)
{
    const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const auto duration = static_cast<std::int64_t>(report.duration_s * 1e9);
    return {now - duration, duration};
}

std::string heap_profile(const Report& report, const ProfileTimes& times, AllocBaseline* delta)
{
    pb::Profile p;
    ProfileBuilder b(p);
    for (auto [type, unit] : {std::pair{"alloc_objects", "count"}, {"alloc_space", "bytes"},
                              {"inuse_objects", "count"}, {"inuse_space", "bytes"}}) {
        pb::ValueType* v = p.add_sample_type();
        v->set_type(b.str(type));
        v->set_unit(b.str(unit));
    }
    p.mutable_period_type()->set_type(b.str("space"));
    p.mutable_period_type()->set_unit(b.str("bytes"));
    p.set_period(1);
    p.set_default_sample_type(b.str("inuse_space"));
    p.set_time_nanos(times.time_ns);
    p.set_duration_nanos(times.duration_ns);
    p.add_comment(b.str("memscope-trace " + std::string(kToolVersion) + ": every allocation, none sampled"));

    // Each process's totals: its sites and outstanding blocks, and what they do not hold.
    std::map<std::uint32_t, ProcessFigures> procs;
    if (report.processes.empty()) {
        auto& f = procs[static_cast<std::uint32_t>(report.target.pid)];
        f.exe = report.target.exe;
        f.totals = report.totals;
    }
    for (const auto& s : report.processes) {
        auto& f = procs[static_cast<std::uint32_t>(s.target.pid)];
        if (f.exe.empty())
            f.exe = s.target.exe;
        for (const auto& field : kCounterFields)
            f.totals.*field.member += s.totals.*field.member;
    }
    const std::int64_t pid_key = b.str("pid"), thread_key = b.str("thread");
    AllocBaseline now;
    auto add_sample = [&](std::uint32_t pid, const std::vector<std::uint64_t>& locs, std::int64_t ac,
                          std::int64_t ab, std::int64_t lc, std::int64_t lb, const std::string* thread) {
        if (ac == 0 && ab == 0 && lc == 0 && lb == 0)
            return;
        pb::Sample* s = p.add_sample();
        for (auto id : locs)
            s->add_location_id(id);
        for (auto v : {ac, ab, lc, lb})
            s->add_value(v);
        pb::Label* l = s->add_label();
        l->set_key(pid_key);
        l->set_str(b.str(std::to_string(pid)));
        if (thread) {
            l = s->add_label();
            l->set_key(thread_key);
            l->set_str(b.str(*thread));
        }
    };
    auto minus_base = [&](const std::array<std::int64_t, 2>& v, const std::array<std::int64_t, 2>* base) {
        if (!base)
            return v;
        return std::array<std::int64_t, 2>{v[0] - (*base)[0], v[1] - (*base)[1]};
    };
    for (const Site& site : report.sites) {
        auto& f = procs[site.pid];
        f.site_count += as_i64(site.alloc_count);
        f.site_bytes += as_i64(site.alloc_bytes);
        std::array<std::int64_t, 2> v{as_i64(site.alloc_count), as_i64(site.alloc_bytes)};
        now.sites[{site.pid, site.id}] = v;
        const std::array<std::int64_t, 2>* base = nullptr;
        if (delta)
            if (auto it = delta->sites.find({site.pid, site.id}); it != delta->sites.end())
                base = &it->second;
        v = minus_base(v, base);
        add_sample(site.pid, b.locations(site.pid, site.stack, f.exe), v[0], v[1], 0, 0, nullptr);
    }
    for (const Leak& leak : report.leaks) {
        auto& f = procs[leak.pid];
        f.leak_count += as_i64(leak.live_count);
        f.leak_bytes += as_i64(leak.live_bytes);
        const auto locs = b.locations(leak.pid, leak.stack, f.exe);
        std::uint64_t count = 0, bytes = 0;
        for (const LeakThread& t : leak.threads) {
            add_sample(leak.pid, locs, 0, 0, as_i64(t.live_count), as_i64(t.live_bytes), &t.name);
            count += t.live_count;
            bytes += t.live_bytes;
        }
        if (count < leak.live_count || bytes < leak.live_bytes)
            add_sample(leak.pid, locs, 0, 0, as_i64(leak.live_count - std::min(count, leak.live_count)),
                       as_i64(leak.live_bytes - std::min(bytes, leak.live_bytes)), nullptr);
    }
    // What no site holds: fast mode, a full table, stacks off, a capped list.
    for (const auto& [pid, f] : procs) {
        std::array<std::int64_t, 2> rest{as_i64(f.totals.alloc_count) - f.site_count,
                                         as_i64(f.totals.alloc_bytes) - f.site_bytes};
        now.rest[pid] = rest;
        const std::array<std::int64_t, 2>* base = nullptr;
        if (delta)
            if (auto it = delta->rest.find(pid); it != delta->rest.end())
                base = &it->second;
        rest = minus_base(rest, base);
        const std::int64_t live_count = std::max<std::int64_t>(0, as_i64(f.totals.live_count) - f.leak_count);
        const std::int64_t live_bytes = std::max<std::int64_t>(0, as_i64(f.totals.live_bytes) - f.leak_bytes);
        if (rest[0] != 0 || rest[1] != 0 || live_count || live_bytes)
            add_sample(pid, {b.no_stack(pid, f.exe)}, rest[0], rest[1], live_count, live_bytes, nullptr);
    }
    if (delta)
        *delta = std::move(now);
    std::string raw;
    if (!p.SerializeToString(&raw))
        return {};
    return gzip(raw);
}

} // namespace memscope
