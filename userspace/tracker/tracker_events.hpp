// The tracker entry points' side of a trace: the modules that carry them,
// their descriptors (read once from the files, never from the process), and
// the events the BPF side sends, turned into variables, scopes and tasks.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "elf_symbols.hpp"
#include "events.hpp"
#include "memscope.h"
#include "variables.hpp"

namespace memscope {

struct TrackerModule {
    std::string path; // as the host sees it
    int fd = -1;      // kept open: descriptors stay readable after the target exits
    dev_t dev = 0;
    ino_t ino = 0;
    TrackerNote note;
    std::vector<LoadSegment> loads;
};

class TrackerModules {
public:
    TrackerModules() = default;
    ~TrackerModules();
    TrackerModules(const TrackerModules&) = delete;
    TrackerModules& operator=(const TrackerModules&) = delete;

    // Register a module; the same file twice gets the same index. The index
    // is the uprobe cookie, so an event names its module.
    // `path` opens it; `shown` names it in reports.
    std::optional<std::uint32_t> add(const std::string& path, const std::string& shown, const ElfScan& scan,
                                     std::string& error);
    std::size_t size() const { return modules_.size(); }
    const TrackerModule& at(std::uint32_t index) const { return modules_[index]; }

    // Read `len` bytes at runtime address `addr` of the process in which
    // module `index`'s probe site runs at `site`, from the module's file.
    bool read(std::uint32_t index, std::uint64_t site, std::uint64_t addr, void* out, std::size_t len) const;
    // A descriptor (header and strings), validated and bounded.
    Descriptor read_descriptor(std::uint32_t index, std::uint64_t site, std::uint64_t addr) const;
    // Load biases of the modules process `pid` maps now, by module index.
    std::map<std::uint32_t, std::uint64_t> biases_from_maps(int pid) const;

private:
    std::vector<TrackerModule> modules_;
};

class TrackerEvents {
public:
    TrackerEvents(const TrackerModules& modules, std::size_t max_variables)
        : modules_(modules), table_(max_variables) {}

    void handle(const DecodedEvent& ev);

    // The table that events feed, and that the report reads (and, at the
    // end, takes the variables from).
    const VariableTable& table() const { return table_; }
    VariableTable& mutable_table() { return table_; }
    const std::vector<ModeRequest>& mode_requests() const { return mode_requests_; }
    // Processes whose libraries changed since the last call (dlopen, dlclose).
    std::set<std::uint32_t> take_loader_changes() { return std::exchange(loader_changed_, {}); }
    std::uint64_t unreadable_descriptors() const { return unreadable_; }

    // A descriptor by its runtime address in process `tgid`, passed at a
    // probe site of `module`; kNoDescriptor for 0, "?" when unreadable.
    std::uint32_t descriptor(std::uint32_t tgid, std::uint64_t module, std::uint64_t site, std::uint64_t addr);
    // The same, with module and site packed as the BPF side does (MS_SITE_MODULE_SHIFT).
    std::uint32_t descriptor(std::uint32_t tgid, std::uint64_t packed_site, std::uint64_t addr);

    // Descriptor addresses come from the target: past this many, new ones
    // are not read (and count as unreadable).
    static constexpr std::size_t kMaxCachedDescriptors = 65536;

private:
    std::uint32_t unreadable();
    // `desc` with the event's run-time type name in place of its own.
    std::uint32_t with_runtime_type(std::uint32_t desc, const DecodedEvent& ev);

    const TrackerModules& modules_;
    std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> biases_; // (tgid, module) -> bias
    std::set<std::uint32_t> maps_read_;
    VariableTable table_;
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint32_t> by_address_; // (module, link-time addr)
    std::map<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t, std::uint64_t>, std::uint32_t> typed_;
    std::vector<ModeRequest> mode_requests_;
    std::set<std::uint32_t> loader_changed_;
    std::uint64_t unreadable_ = 0;
};

} // namespace memscope
