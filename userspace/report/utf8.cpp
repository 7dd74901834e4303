#include "utf8.hpp"

namespace memscope {

long decode_utf8(std::string_view s, std::size_t& i)
{
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    if (c < 0x80) {
        ++i;
        return c;
    }
    std::size_t len = 0;
    unsigned long cp = 0, min = 0;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        ++i;
        return -1;
    }
    if (i + len > s.size()) {
        ++i;
        return -1;
    }
    for (std::size_t k = 1; k < len; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) {
            ++i;
            return -1;
        }
        cp = (cp << 6) | (b(i + k) & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        ++i;
        return -1;
    }
    i += len;
    return static_cast<long>(cp);
}

bool valid_utf8(std::string_view s)
{
    for (std::size_t i = 0; i < s.size();)
        if (decode_utf8(s, i) < 0)
            return false;
    return true;
}

std::string utf8_replaced(std::string_view s)
{
    if (valid_utf8(s))
        return std::string(s);
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t start = i;
        if (decode_utf8(s, i) < 0)
            out += "\xEF\xBF\xBD";
        else
            out.append(s.substr(start, i - start));
    }
    return out;
}

} // namespace memscope
