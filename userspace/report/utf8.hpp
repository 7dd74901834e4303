// UTF-8 as the outputs need it: decoded one code point at a time, checked,
// or with what is not UTF-8 replaced (U+FFFD), for formats that require it
// (Prometheus label values, profile.proto strings).
#pragma once

#include <string>
#include <string_view>

namespace memscope {

// The code point at s[i], advancing i past it; -1 (advancing one byte) for a
// byte that does not start well-formed UTF-8 (overlong, surrogate, > U+10FFFF).
long decode_utf8(std::string_view s, std::size_t& i);
bool valid_utf8(std::string_view s);
// `s` with each byte that does not start well-formed UTF-8 replaced by U+FFFD.
std::string utf8_replaced(std::string_view s);

} // namespace memscope
