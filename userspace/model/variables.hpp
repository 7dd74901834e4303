// Tracked variables, scopes and tasks: what the tracker entry points said,
// joined to the allocations they name. Pure: unit tests drive it directly.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <tuple>
#include <utility>
#include <string>
#include <unordered_map>
#include <vector>

namespace memscope {

// A static descriptor the target passed (name, type, file:line), as read
// from its module's file. Strings are untrusted: bounded, escaped on output.
struct Descriptor {
    std::string name;
    std::string type;
    std::string file;
    std::uint32_t line = 0;
    std::uint16_t kind = 0; // MEMSCOPE_DESC_*
    bool valid = false;     // false: unreadable, shown as "?"
};

inline constexpr std::uint32_t kNoDescriptor = UINT32_MAX;

// One MEMSCOPE_TRACK_* call (72 bytes: a million of them is 72 MB).
struct Variable {
    std::uint64_t thread_start_ns = 0;
    std::uint64_t addr = 0;     // the block (0: none given)
    std::uint64_t size = 0;     // the block's allocated size, else what the target passed
    std::uint64_t alloc_ns = 0; // heap only
    std::uint64_t free_ns = 0;  // 0: still live
    std::uint64_t task = 0;
    std::uint32_t desc = kNoDescriptor; // index into VariableTable::descriptors()
    std::uint32_t tgid = 0;
    std::uint32_t tid = 0;
    std::uint32_t scope = kNoDescriptor;
    std::uint32_t task_desc = kNoDescriptor;
    bool heap = false; // addr starts a block the tracer saw allocated
};

// Grows in chunks: no doubling, no copy of what is already there.
using Variables = std::deque<Variable>;

// The target asked for a mode (memscope_request_mode).
struct ModeRequest {
    std::uint64_t ts = 0;
    std::uint32_t tgid = 0, tid = 0;
    std::uint32_t mode = 0;
};

struct VariableSummary {
    std::uint32_t desc = kNoDescriptor; // name and type come from here
    std::uint64_t count = 0, bytes = 0, live_count = 0, live_bytes = 0;
};

class VariableTable {
public:
    explicit VariableTable(std::size_t max_variables) : max_(max_variables) {}

    // Intern a descriptor; equal descriptors share one index.
    std::uint32_t intern(const Descriptor& d);
    const std::vector<Descriptor>& descriptors() const { return descriptors_; }

    // A MEMSCOPE_TRACK_* call, as the event described it (not yet freed).
    void on_track(Variable v);
    // A tracked block was freed, or moved by realloc.
    void on_free(std::uint32_t tgid, std::uint64_t addr, std::uint64_t ts);
    void on_move(std::uint32_t tgid, std::uint64_t old_addr, std::uint64_t new_addr, std::uint64_t size);

    const Variables& variables() const { return variables_; }
    // Hand the records over (the final report); the table is empty after.
    Variables take_variables()
    {
        live_.clear();
        return std::move(variables_);
    }
    std::uint64_t dropped() const { return dropped_; }
    // Descriptors of the live variables naming the block at `addr`.
    std::vector<std::uint32_t> descriptors_at(std::uint32_t tgid, std::uint64_t addr) const;

    // Grouped by name and type, largest bytes first. `counted_by_name`:
    // variables known only by their counts (fast mode), merged in the same
    // groups, with no live figures.
    std::vector<VariableSummary> summary(const std::vector<VariableSummary>& counted_by_name = {}) const;

private:
    struct Key {
        std::uint32_t tgid;
        std::uint64_t addr;
        bool operator==(const Key& o) const { return tgid == o.tgid && addr == o.addr; }
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const { return std::hash<std::uint64_t>()(k.addr ^ (std::uint64_t(k.tgid) << 48)); }
    };
    std::size_t max_;
    std::uint64_t dropped_ = 0;
    std::vector<Descriptor> descriptors_;
    std::map<std::tuple<std::string, std::string, std::string, std::uint32_t, std::uint16_t, bool>, std::uint32_t>
        descriptor_index_;
    Variables variables_;
    // Live tracked blocks -> the variables naming them.
    std::unordered_map<Key, std::vector<std::uint32_t>, KeyHash> live_;
};

} // namespace memscope
