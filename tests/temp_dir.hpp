// A directory of a test's own under /tmp, removed with what it holds.
// Shared by the unit and end-to-end test programs.
#pragma once

#include <dirent.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace memscope_test {

struct TempDir {
    std::string path;
    TempDir()
    {
        char d[] = "/tmp/memscope-test-XXXXXX";
        path = mkdtemp(d);
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return path + "/" + name; }
    // Its entries' names, sorted.
    std::vector<std::string> entries() const
    {
        std::vector<std::string> out;
        DIR* d = opendir(path.c_str());
        while (dirent* e = d ? readdir(d) : nullptr)
            if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
                out.push_back(e->d_name);
        if (d)
            closedir(d);
        std::sort(out.begin(), out.end());
        return out;
    }
};

} // namespace memscope_test
