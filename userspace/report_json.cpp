#include "report_json.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace memscope {

using nlohmann::json;

static json counters_json(const Counters& c)
{
    return json{
        {"alloc_count", c.alloc_count},
        {"alloc_bytes", c.alloc_bytes},
        {"free_count", c.free_count},
        {"free_bytes", c.free_bytes},
        {"live_count", c.live_count},
        {"live_bytes", c.live_bytes},
        {"peak_live_bytes", c.peak_live_bytes},
        {"failed_alloc_count", c.failed_alloc_count},
        {"unmatched_free_count", c.unmatched_free_count},
        {"exit_unmatched_free_count", c.exit_unmatched_free_count},
    };
}

json report_to_json(const Report& r)
{
    json target{{"pid", r.target.pid}, {"comm", r.target.comm}, {"exe", r.target.exe}};
    target["exit_code"] = r.target.exit_code ? json(*r.target.exit_code) : json(nullptr);

    json totals = counters_json(r.totals);
    totals["peak_live_bytes_exact"] = r.peak_live_bytes_exact;

    json threads = json::array();
    for (const auto& t : r.threads) {
        json j{{"tid", t.tid}, {"name", t.name}};
        j.update(counters_json(t.counters));
        threads.push_back(std::move(j));
    }

    return json{
        {"schema", kSchema},
        {"tool", {{"name", "memscope-trace"}, {"version", kToolVersion}}},
        {"target", std::move(target)},
        {"duration_s", r.duration_s},
        {"mode", r.mode},
        {"totals", std::move(totals)},
        {"threads", std::move(threads)},
        {"dropped",
         {{"events", r.dropped.events},
          {"untracked_allocations", r.dropped.untracked_allocations},
          {"reasons", r.dropped.reasons}}},
        {"children",
         {{"forks", r.children.forks}, {"execs", r.children.execs}, {"pids", r.children.pids},
          {"traced", false}}},
        {"warnings", r.warnings},
    };
}

std::string report_to_json_text(const Report& report)
{
    return report_to_json(report).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string write_file_atomic(const std::string& path, const std::string& contents)
{
    std::string tmp = path + ".tmp.XXXXXX";
    int fd = mkstemp(tmp.data());
    if (fd < 0)
        return "cannot create " + path + ": " + std::strerror(errno);
    const char* p = contents.data();
    size_t left = contents.size();
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            std::string err = "cannot write " + path + ": " + std::strerror(errno);
            close(fd);
            unlink(tmp.c_str());
            return err;
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    fchmod(fd, 0644);
    bool synced = fsync(fd) == 0;
    if (close(fd) != 0 || !synced) {
        std::string err = "cannot write " + path + ": " + std::strerror(errno);
        unlink(tmp.c_str());
        return err;
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        std::string err = "cannot write " + path + ": " + std::strerror(errno);
        unlink(tmp.c_str());
        return err;
    }
    return {};
}

} // namespace memscope
