#include "selectors.hpp"

#include <cstdlib>

namespace memscope {

namespace {

constexpr std::size_t kCommLen = 15; // TASK_COMM_LEN - 1

bool is_number(const std::string& s)
{
    return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
}

} // namespace

std::optional<HeapSelector> parse_heap_selector(const std::string& text, std::string& why)
{
    const auto colon = text.find(':');
    if (colon == std::string::npos) {
        why = "--heap " + text + ": expected pid:N, comm:NAME, exe:PATH or cgroup:PREFIX";
        return std::nullopt;
    }
    HeapSelector s;
    s.text = text;
    const std::string kind = text.substr(0, colon);
    s.value = text.substr(colon + 1);
    if (s.value.empty()) {
        why = "--heap " + text + ": nothing after '" + kind + ":'";
        return std::nullopt;
    }
    if (kind == "pid") {
        if (!is_number(s.value) || std::atoi(s.value.c_str()) <= 0) {
            why = "--heap " + text + ": a pid is a number from 1 up";
            return std::nullopt;
        }
        s.kind = HeapSelector::Kind::pid;
        s.pid = std::atoi(s.value.c_str());
    } else if (kind == "comm") {
        if (s.value.size() > kCommLen) {
            why = "--heap " + text + ": a comm is at most 15 bytes (the kernel keeps no more)";
            return std::nullopt;
        }
        s.kind = HeapSelector::Kind::comm;
    } else if (kind == "exe" || kind == "cgroup") {
        if (s.value[0] != '/') {
            why = "--heap " + text + ": " + kind + ": takes an absolute path";
            return std::nullopt;
        }
        s.kind = kind == "exe" ? HeapSelector::Kind::exe : HeapSelector::Kind::cgroup;
        while (s.kind == HeapSelector::Kind::cgroup && s.value.size() > 1 && s.value.back() == '/')
            s.value.pop_back();
    } else {
        why = "--heap " + text + ": unknown selector '" + kind + "' (pid, comm, exe or cgroup)";
        return std::nullopt;
    }
    return s;
}

bool selector_matches(const HeapSelector& s, const ProcessIdentity& p)
{
    switch (s.kind) {
    case HeapSelector::Kind::pid: return p.pid == s.pid;
    case HeapSelector::Kind::comm: return p.comm == s.value;
    case HeapSelector::Kind::exe: return !p.exe.empty() && p.exe == s.value;
    case HeapSelector::Kind::cgroup:
        return !p.cgroup.empty() &&
               (s.value == "/" || p.cgroup == s.value ||
                (p.cgroup.rfind(s.value, 0) == 0 && p.cgroup[s.value.size()] == '/'));
    }
    return false;
}

const HeapSelector* first_match(const std::vector<HeapSelector>& selectors, const ProcessIdentity& p)
{
    for (const auto& s : selectors)
        if (selector_matches(s, p))
            return &s;
    return nullptr;
}

} // namespace memscope
