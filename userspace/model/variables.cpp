#include "variables.hpp"

#include <algorithm>

namespace memscope {

std::uint32_t VariableTable::intern(const Descriptor& d)
{
    auto key = std::make_tuple(d.name, d.type, d.file, d.line, d.kind, d.valid);
    auto it = descriptor_index_.find(key);
    if (it != descriptor_index_.end())
        return it->second;
    auto index = static_cast<std::uint32_t>(descriptors_.size());
    descriptors_.push_back(d);
    descriptor_index_.emplace(std::move(key), index);
    return index;
}

void VariableTable::on_track(Variable v)
{
    if (variables_.size() >= max_) {
        ++dropped_;
        return;
    }
    if (!v.heap)
        v.alloc_ns = 0;
    v.free_ns = 0;
    auto index = static_cast<std::uint32_t>(variables_.size());
    variables_.push_back(v);
    // Only blocks the tracer saw allocated report their free.
    if (v.heap)
        live_[{v.tgid, v.addr}].push_back(index);
}

void VariableTable::on_free(std::uint32_t tgid, std::uint64_t addr, std::uint64_t ts)
{
    auto it = live_.find({tgid, addr});
    if (it == live_.end())
        return;
    for (auto i : it->second)
        variables_[i].free_ns = ts;
    live_.erase(it);
}

void VariableTable::on_move(std::uint32_t tgid, std::uint64_t old_addr, std::uint64_t new_addr,
                            std::uint64_t size)
{
    auto it = live_.find({tgid, old_addr});
    if (it == live_.end())
        return;
    std::vector<std::uint32_t> moved = std::move(it->second);
    live_.erase(it);
    for (auto i : moved) {
        variables_[i].addr = new_addr;
        variables_[i].size = size;
    }
    auto& dest = live_[{tgid, new_addr}];
    dest.insert(dest.end(), moved.begin(), moved.end());
}

std::vector<VariableSummary> VariableTable::summary(const std::vector<VariableSummary>& counted_by_name) const
{
    std::map<std::pair<std::string, std::string>, VariableSummary> groups;
    auto group = [&](std::uint32_t desc) -> VariableSummary& {
        const Descriptor* d = desc < descriptors_.size() ? &descriptors_[desc] : nullptr;
        auto& g = groups[{d ? d->name : "?", d ? d->type : ""}];
        if (g.desc == kNoDescriptor)
            g.desc = desc;
        return g;
    };
    for (const auto& v : variables_) {
        auto& g = group(v.desc);
        g.count += 1;
        g.bytes += v.size;
        if (v.heap && v.free_ns == 0) {
            g.live_count += 1;
            g.live_bytes += v.size;
        }
    }
    for (const auto& c : counted_by_name) {
        auto& g = group(c.desc);
        g.count += c.count;
        g.bytes += c.bytes;
    }
    std::vector<VariableSummary> out;
    out.reserve(groups.size());
    for (auto& [key, g] : groups)
        out.push_back(g);
    std::stable_sort(out.begin(), out.end(),
                     [](const VariableSummary& a, const VariableSummary& b) { return a.bytes > b.bytes; });
    return out;
}

std::vector<std::uint32_t> VariableTable::descriptors_at(std::uint32_t tgid, std::uint64_t addr) const
{
    std::vector<std::uint32_t> out;
    auto it = live_.find({tgid, addr});
    if (it != live_.end())
        for (std::uint32_t i : it->second)
            if (variables_[i].desc != kNoDescriptor)
                out.push_back(variables_[i].desc);
    return out;
}

} // namespace memscope
