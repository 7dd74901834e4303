// A report as a pprof heap profile: gzipped profile.proto (Google's, as Go
// writes it), encoded with libprotobuf from the real .proto.
//
// Sample types as Go's heap profile: alloc_objects/count,
// alloc_space/bytes, inuse_objects/count, inuse_space/bytes; period type
// space/bytes, period 1 (every allocation is counted, none sampled). Every
// location has a mapping (its file; Pyroscope refuses locations without
// one); functions carry file:line, inlined functions are lines of their
// caller's location. Labels: "pid" on every sample, "thread" (its name) on
// in-use samples, which come per thread from the outstanding blocks; the
// allocation counts are kept per site, not per thread. What no site holds
// (fast mode, full tables, stacks off) is one "[no stack recorded]" sample
// per process, so that each type's sum is the report's total exactly.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "model.hpp"

namespace memscope {

// The allocation figures a profile was made from, to make the next one's
// alloc_* a delta (--push: alloc_* per interval, inuse_* as they are).
struct AllocBaseline {
    std::map<std::pair<std::uint32_t, std::uint64_t>, std::array<std::int64_t, 2>> sites; // (pid, site id)
    std::map<std::uint32_t, std::array<std::int64_t, 2>> rest; // by pid: what no site holds
};

struct ProfileTimes {
    std::int64_t time_ns = 0;     // wall clock, Unix epoch: when the profile starts
    std::int64_t duration_ns = 0; // what it covers
};

// A profile of `report` made now: it began duration_s ago.
ProfileTimes times_of(const Report& report);

// The gzipped profile. `delta`: null for totals since tracing began; else
// alloc_* less what `*delta` holds, and `*delta` becomes this report's.
std::string heap_profile(const Report& report, const ProfileTimes& times, AllocBaseline* delta = nullptr);

} // namespace memscope
