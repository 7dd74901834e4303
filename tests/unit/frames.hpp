// A stack frame for unit tests: its address made from the offset unless given.
#pragma once

#include <cstdint>

#include "model.hpp"

namespace memscope_test {

inline memscope::Frame frame(const char* symbol, const char* module = "/usr/bin/app", std::uint64_t offset = 0x1000,
                             std::uint64_t addr = 0)
{
    memscope::Frame f;
    f.addr = addr ? addr : 0x555500000000 + offset;
    f.symbol = symbol;
    f.module = module;
    f.offset = offset;
    return f;
}

} // namespace memscope_test
