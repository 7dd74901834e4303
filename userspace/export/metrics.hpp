// A report as Prometheus's text exposition format (version 0.0.4).
//
// Heap figures per process group and thread name: labels comm, exe and
// cgroup (no pid: a restarted service stays one series), and thread, the
// thread's name, threads of one name summed. Thread names are bounded: past
// kMaxThreadNames names in a group the rest are summed under "[other]". The
// peak is per group without a thread label (peaks do not add up: the
// largest of its processes'). Label values are escaped and made UTF-8.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model.hpp"

namespace memscope {

inline constexpr std::size_t kMaxThreadNames = 32;

// The tracer's own figures, which the report does not hold.
struct TracerFigures {
    double cpu_user_s = 0, cpu_sys_s = 0;
    std::uint64_t max_rss_bytes = 0;
    std::uint64_t scrapes = 0;          // snapshots asked for by /metrics and /debug/pprof/heap
    double snapshot_s = 0;              // the tracer's time spent making them
    std::uint64_t pushes = 0, push_failures = 0, push_dropped = 0;
};

// `cgroup_of`: a process's cgroup when its section does not say (-p, run).
std::string prometheus_metrics(const Report& report, const TracerFigures& tracer,
                               const std::function<std::string(int pid)>& cgroup_of = {});

// A label value as the text format quotes it: \\, \" and \n escaped, what is not UTF-8 replaced.
std::string prometheus_label_value(const std::string& s);

} // namespace memscope
