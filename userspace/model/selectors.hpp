// -a --heap SELECTOR: which processes get exact heap tracing (their
// allocator probed, theirs alone). Pure: parsing and matching.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace memscope {

struct HeapSelector {
    enum class Kind { pid, comm, exe, cgroup };
    Kind kind = Kind::pid;
    std::string value; // as given after the colon (comm: at most 15 bytes, as the kernel keeps it)
    int pid = 0;       // Kind::pid
    std::string text;  // the whole selector, as given
};

// "pid:N", "comm:NAME", "exe:/ABS/PATH", "cgroup:/PREFIX"; nullopt with
// `why` (one sentence) when malformed.
std::optional<HeapSelector> parse_heap_selector(const std::string& text, std::string& why);

// What a selector is matched against (exe: the file's path as the host
// sees it, resolved; cgroup: its v2 path).
struct ProcessIdentity {
    int pid = 0;
    std::string comm;
    std::string exe;
    std::string cgroup;
};
bool selector_matches(const HeapSelector& s, const ProcessIdentity& p);
// The first of `selectors` that matches, or null.
const HeapSelector* first_match(const std::vector<HeapSelector>& selectors, const ProcessIdentity& p);

} // namespace memscope
