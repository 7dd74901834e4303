#include "system_procs.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <time.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "proc.hpp"

namespace memscope {

namespace {

constexpr std::size_t kMaxStatusBytes = 16 << 10;
constexpr std::size_t kMaxCgroupDirs = 20000; // one walk of the tree reads no more
constexpr double kWalkEvery = 1.0;            // seconds between walks for unknown ids

bool all_digits(const char* s)
{
    if (!*s)
        return false;
    for (; *s; ++s)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

std::optional<std::string> read_bounded(const std::string& path, std::size_t limit)
{
    std::ifstream in(path);
    if (!in)
        return std::nullopt;
    std::string text(limit, '\0');
    in.read(text.data(), static_cast<std::streamsize>(limit));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return text;
}

std::uint64_t kib_field(const std::string& value)
{
    return std::strtoull(value.c_str(), nullptr, 10) * 1024;
}

std::string cgroup2_mount()
{
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
        auto dash = line.find(" - ");
        if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0)
            continue;
        std::istringstream fields(line.substr(0, dash));
        std::string id, parent, dev, root, point;
        if (fields >> id >> parent >> dev >> root >> point)
            return point;
    }
    return {};
}

} // namespace

std::uint64_t monotonic_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

double monotonic_s()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::vector<int> all_pids()
{
    std::vector<int> out;
    DIR* d = opendir("/proc");
    if (!d)
        return out;
    while (dirent* e = readdir(d))
        if (all_digits(e->d_name))
            out.push_back(std::atoi(e->d_name));
    closedir(d);
    return out;
}

std::optional<ProcFacts> parse_proc_status(int pid, const std::string& text)
{
    ProcFacts f;
    f.pid = pid;
    f.ns_pid = pid;
    bool has_memory = false;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        auto colon = line.find(':');
        if (colon == std::string::npos)
            continue;
        const std::string key = line.substr(0, colon);
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(" \t"));
        if (key == "Name")
            f.comm = value;
        else if (key == "PPid")
            f.ppid = std::atoi(value.c_str());
        else if (key == "NSpid") {
            std::istringstream ids(value);
            int id = 0, n = 0;
            while (ids >> id)
                f.ns_pid = id, ++n;
            f.other_pid_namespace = n > 1;
        } else if (key == "RssAnon")
            f.rss_anon = kib_field(value), has_memory = true;
        else if (key == "RssFile")
            f.rss_file = kib_field(value);
        else if (key == "RssShmem")
            f.rss_shmem = kib_field(value);
        else if (key == "VmSwap")
            f.swap = kib_field(value);
    }
    if (!has_memory)
        return std::nullopt; // a kernel thread
    return f;
}

std::optional<ProcFacts> read_proc_facts(int pid)
{
    auto text = read_bounded("/proc/" + std::to_string(pid) + "/status", kMaxStatusBytes);
    if (!text)
        return std::nullopt;
    auto facts = parse_proc_status(pid, *text);
    if (facts)
        facts->start_ticks = std::strtoull(stat_field(pid, 22).c_str(), nullptr, 10);
    return facts;
}

CgroupNames::CgroupNames(std::string mount) : mount_(mount.empty() ? cgroup2_mount() : std::move(mount)) {}

std::string CgroupNames::path_of(std::uint64_t id, int pid)
{
    if (mount_.empty() || (id == 0 && pid <= 0))
        return {};
    if (auto it = names_.find(id); id && it != names_.end())
        return it->second;
    if (pid > 0) {
        // "0::/path": the v2 line. Its path is the kernel's, and checked
        // against the id: a process that moved meanwhile names another.
        auto text = read_bounded("/proc/" + std::to_string(pid) + "/cgroup", 4096);
        std::istringstream in(text.value_or(""));
        for (std::string line; std::getline(in, line);) {
            if (line.rfind("0::", 0) != 0)
                continue;
            std::string path = line.substr(3);
            if (id == 0)
                return path; // no id to check it against: the kernel's word now
            struct stat st{};
            if (stat((mount_ + path).c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_ino) == id) {
                names_[id] = path;
                return path;
            }
        }
    }
    if (monotonic_s() - last_walk_ >= kWalkEvery)
        walk();
    auto it = names_.find(id);
    return it == names_.end() ? std::string() : it->second;
}

// Every directory under the mount, breadth first, bounded; symlinks and
// other file systems are not followed (lstat, st_dev).
void CgroupNames::walk()
{
    last_walk_ = monotonic_s();
    if (names_.size() > 4 * kMaxCgroupDirs)
        names_.clear(); // cgroups come and go: the names of those gone are let go now and then
    struct stat root{};
    if (lstat(mount_.c_str(), &root) != 0)
        return;
    std::vector<std::string> queue{""};
    for (std::size_t i = 0; i < queue.size() && queue.size() < kMaxCgroupDirs; ++i) {
        const std::string rel = queue[i];
        struct stat st{};
        if (lstat((mount_ + (rel.empty() ? "/" : rel)).c_str(), &st) != 0 || st.st_dev != root.st_dev)
            continue;
        names_[static_cast<std::uint64_t>(st.st_ino)] = rel.empty() ? "/" : rel;
        DIR* d = opendir((mount_ + (rel.empty() ? "/" : rel)).c_str());
        if (!d)
            continue;
        while (dirent* e = readdir(d))
            if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
                queue.push_back(rel + "/" + e->d_name);
        closedir(d);
    }
}

std::vector<std::uint64_t> CgroupNames::ids_under(const std::string& prefix)
{
    walk();
    std::vector<std::uint64_t> out;
    for (const auto& [id, path] : names_)
        if (path == prefix || (path.rfind(prefix, 0) == 0 && (prefix == "/" || path[prefix.size()] == '/')))
            out.push_back(id);
    return out;
}

} // namespace memscope
