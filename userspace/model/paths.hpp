// A path's last component: how reports name a file (its module, its source
// file) and how a process's program is matched. Header-only: the report
// reader's fuzzer builds without the libraries.
#pragma once

#include <string>
#include <string_view>

namespace memscope {

// The whole path when it has no slash; empty when it ends with one.
inline std::string base_name(std::string_view path)
{
    const auto slash = path.rfind('/');
    return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

} // namespace memscope
