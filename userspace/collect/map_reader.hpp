// Reading the BPF maps: hash maps walked by key, every per-CPU value summed
// once (PerCpu), and what a report is made of read from them (a process's
// threads, records, sites, stacks, drops, groups, children).
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "trace_source.hpp"

struct memscope_bpf;

namespace memscope {

// Walk a hash map's keys. The callback must not delete entries.
template <typename Key, typename Fn>
void for_each_key(int fd, Fn&& fn)
{
    Key key{}, next{};
    Key* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        fn(next);
        key = next;
        prev = &key;
    }
}

// The keys of a hash map that belong to process `tgid` (keys with a tgid field).
template <typename Key>
std::vector<Key> keys_of_process(int fd, __u32 tgid)
{
    std::vector<Key> out;
    for_each_key<Key>(fd, [&](const Key& k) {
        if (k.tgid == tgid)
            out.push_back(k);
    });
    return out;
}

// A per-CPU map's counters: their sum over the CPUs, field by field.
template <typename Value>
class PerCpu {
    static_assert(std::is_trivially_copyable_v<Value> && sizeof(Value) % sizeof(__u64) == 0,
                  "a value of __u64 counters");

public:
    explicit PerCpu(int fd) : fd_(fd), slices_(static_cast<std::size_t>(libbpf_num_possible_cpus())) {}
    // Each CPU's value at `key`; null when the map has no such key.
    template <typename Key>
    const std::vector<Value>* slices(const Key& key)
    {
        return bpf_map_lookup_elem(fd_, &key, slices_.data()) == 0 ? &slices_ : nullptr;
    }
    // The value at `key`, summed; nothing when the map has no such key.
    template <typename Key>
    std::optional<Value> sum(const Key& key)
    {
        if (!slices(key))
            return std::nullopt;
        __u64 total[sizeof(Value) / sizeof(__u64)] = {};
        for (const Value& v : slices_) {
            __u64 fields[sizeof(Value) / sizeof(__u64)];
            std::memcpy(fields, &v, sizeof v);
            for (std::size_t i = 0; i < std::size(total); ++i)
                total[i] += fields[i];
        }
        Value out;
        std::memcpy(&out, total, sizeof out);
        return out;
    }

private:
    int fd_;
    std::vector<Value> slices_;
};

class MapReader {
public:
    MapReader(const memscope_bpf& skel, std::uint32_t stack_depth) : skel_(skel), stack_depth_(stack_depth) {}

    // Outstanding-allocation records of `pid` (a walk of the table).
    std::vector<RawRecord> records(int pid) const;
    // Allocation sites of `pid`, and a stack's frames by hash (empty when
    // the table did not keep it).
    std::vector<RawSite> sites(int pid) const;
    std::vector<RawSize> sizes(int pid) const;
    std::optional<RawPeak> peak(int pid) const;
    std::vector<std::uint64_t> stack(std::uint64_t hash) const;
    // The figures of `pid`'s threads in slots below `end_slot`, the drops,
    // scope/task and variable totals, its children.
    Snapshot snapshot(int pid, std::uint32_t end_slot) const;

private:
    const memscope_bpf& skel_;
    std::uint32_t stack_depth_;
};

} // namespace memscope
