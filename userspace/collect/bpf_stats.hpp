// What a loaded BPF object costs, for the report: its maps' kernel memory
// and its programs' runs (the heap tracer's object and -a's alike).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

struct bpf_object;

namespace memscope {

// Kernel memory of the object's maps (memlock, as the kernel counts it).
std::uint64_t object_map_bytes(const bpf_object* obj);
// Each program's runs and kernel time so far (counted only while
// kernel.bpf_stats_enabled is 1): name -> (runs, ns), added into `out`.
void add_program_stats(const bpf_object* obj, std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& out);
// libbpf's messages: silent, but for warnings under MEMSCOPE_DEBUG_LIBBPF.
void quiet_libbpf();

} // namespace memscope
