#include "interned.hpp"

#include <mutex>
#include <unordered_set>

namespace memscope {

const std::string* Interned::intern(std::string_view s)
{
    if (s.empty())
        return &kInternedEmpty;
    static std::mutex lock;
    static auto* pool = new std::unordered_set<std::string>(); // lives as long as the pointers into it
    std::lock_guard<std::mutex> hold(lock);
    return &*pool->emplace(s).first;
}

} // namespace memscope
