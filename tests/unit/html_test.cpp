// The HTML report, opened in headless Chromium: the DOM it builds holds the
// exact figures, the chart and no markup from the target's strings.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "report_html.hpp"
#include "report_json.hpp"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kHostile = "</script><img src=x onerror=alert(1)>";
const std::string kQuotes = "\"'&<>";
const std::string kHostileText = "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;";  // as serialized text

// --- Chromium ------------------------------------------------------------------

std::string find_chromium()
{
    if (const char* env = std::getenv("MEMSCOPE_CHROMIUM"); env && *env)
        return ::access(env, X_OK) == 0 ? env : "";
    for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
                             "/usr/bin/google-chrome-stable"})
        if (::access(path, X_OK) == 0)
            return path;
    return {};
}

bool in_ci()
{
    const char* ci = std::getenv("CI");
    return ci && std::string(ci) == "true";
}

// Under CI=true a missing browser fails the test; elsewhere it skips it.
#define REQUIRE_CHROMIUM(var)                                                                       \
    const std::string var = find_chromium();                                                        \
    if (var.empty()) {                                                                              \
        if (in_ci())                                                                                \
            FAIL() << "chromium not found (CI=true): apt-get install chromium, or set MEMSCOPE_CHROMIUM"; \
        GTEST_SKIP() << "chromium not found: apt-get install chromium, or set MEMSCOPE_CHROMIUM";   \
    }

struct TempDir {
    fs::path path;
    TempDir()
    {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/memscope-html-XXXXXX";
        if (::mkdtemp(tmpl.data()))
            path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        if (!path.empty())
            fs::remove_all(path, ec);
    }
};

std::string read_file(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string file_url(const fs::path& p)
{
    static const char digits[] = "0123456789ABCDEF";
    std::string url = "file://";
    for (unsigned char c : fs::absolute(p).string()) {
        if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
            url += char(c);
        } else {
            url += '%';
            url += digits[c >> 4];
            url += digits[c & 15];
        }
    }
    return url;
}

struct ProcessRun {
    bool started = false;
    bool timed_out = false;
    int status = -1;
    std::string out;
    std::string err;
};

// Run argv with stdout/stderr to files in `dir`; past `limit` the whole
// process group (the browser and its helpers) is killed.
ProcessRun run_with_timeout(const std::vector<std::string>& argv, const fs::path& dir, std::chrono::seconds limit)
{
    ProcessRun run;
    const fs::path out = dir / "stdout", err = dir / "stderr";
    const pid_t pid = ::fork();
    if (pid < 0)
        return run;
    if (pid == 0) {
        ::setpgid(0, 0);
        int in_fd = ::open("/dev/null", O_RDONLY);
        int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in_fd < 0 || out_fd < 0 || err_fd < 0)
            ::_exit(126);
        ::dup2(in_fd, 0);
        ::dup2(out_fd, 1);
        ::dup2(err_fd, 2);
        std::vector<char*> args;
        for (const auto& a : argv)
            args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::setpgid(pid, pid);  // also here: no race with the child's own call
    run.started = true;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        // Wait without reaping, so the group can still be named safely below.
        siginfo_t info{};
        if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
            break;
        if (std::chrono::steady_clock::now() >= deadline) {
            run.timed_out = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(-pid, SIGKILL);  // a hung browser, or helpers left behind by one that exited
    while (::waitpid(pid, &run.status, 0) < 0 && errno == EINTR) {
    }
    run.out = read_file(out);
    run.err = read_file(err);
    return run;
}

std::vector<std::string> chromium_args(const std::string& chromium, const fs::path& profile)
{
    return {chromium,
            "--headless=new",
            "--no-sandbox",  // root, and containers without user namespaces
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--hide-scrollbars",
            "--user-data-dir=" + profile.string()};
}

std::string describe(const ProcessRun& run)
{
    std::ostringstream s;
    s << "started=" << run.started << " timed_out=" << run.timed_out << " status=" << run.status
      << "\nstderr (tail):\n"
      << run.err.substr(run.err.size() > 3000 ? run.err.size() - 3000 : 0);
    return s.str();
}

// The page as Chromium's DOM after the script ran (--dump-dom); laid out in
// a window of `window` ("1280,1600") where given.
std::string dump_dom(const std::string& chromium, const TempDir& tmp, const fs::path& page,
                     std::chrono::seconds limit = std::chrono::seconds(60), const std::string& window = "")
{
    auto args = chromium_args(chromium, tmp.path / "profile-dom");
    if (!window.empty())
        args.push_back("--window-size=" + window);
    args.push_back("--virtual-time-budget=5000");
    args.push_back("--dump-dom");
    args.push_back(file_url(page));
    fs::create_directories(tmp.path / "run-dom");
    const ProcessRun run = run_with_timeout(args, tmp.path / "run-dom", limit);
    EXPECT_TRUE(run.started && !run.timed_out && WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0)
        << describe(run);
    EXPECT_NE(run.out.find("</html>"), std::string::npos) << "no DOM dumped\n" << describe(run);
    return run.out;
}

fs::path screenshot_dir()
{
    if (const char* env = std::getenv("MEMSCOPE_SCREENSHOT_DIR"); env && *env)
        return env;
    return TARGET_DIR; // the build directory, never the source tree
}

// A screenshot of the page's first `window` ("1280,1600") pixels.
bool screenshot(const std::string& chromium, const TempDir& tmp, const fs::path& page, const fs::path& shot,
                const std::string& window)
{
    std::error_code ec;
    fs::remove(shot, ec);
    auto args = chromium_args(chromium, tmp.path / "profile-shot");
    args.push_back("--window-size=" + window);
    args.push_back("--screenshot=" + fs::absolute(shot).string());
    args.push_back(file_url(page));
    fs::create_directories(tmp.path / "run-shot");
    const ProcessRun run = run_with_timeout(args, tmp.path / "run-shot", std::chrono::seconds(60));
    EXPECT_FALSE(run.timed_out) << describe(run);
    EXPECT_TRUE(fs::exists(shot)) << describe(run);
    return fs::exists(shot);
}

// --- a PNG reader for the screenshots (8-bit RGB or RGBA, not interlaced) ---------

struct Image {
    std::uint32_t width = 0, height = 0;
    std::vector<std::uint8_t> rgb;  // 3 bytes a pixel, rows top to bottom

    std::uint32_t pixel(std::uint32_t x, std::uint32_t y) const
    {
        const std::size_t i = (std::size_t(y) * width + x) * 3;
        return std::uint32_t(rgb[i]) << 16 | std::uint32_t(rgb[i + 1]) << 8 | rgb[i + 2];
    }
};

std::optional<Image> decode_png(const std::string& png)
{
    if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0)
        return std::nullopt;
    auto be32 = [&png](std::size_t i) {
        return std::uint32_t(std::uint8_t(png[i])) << 24 | std::uint32_t(std::uint8_t(png[i + 1])) << 16 |
               std::uint32_t(std::uint8_t(png[i + 2])) << 8 | std::uint8_t(png[i + 3]);
    };
    Image img;
    int depth = 0, type = 0, interlace = 0;
    std::string idat;
    for (std::size_t at = 8; at + 12 <= png.size();) {
        const std::uint32_t n = be32(at);
        const std::string kind = png.substr(at + 4, 4);
        if (at + 12 + n > png.size())
            return std::nullopt;
        if (kind == "IHDR" && n >= 13) {
            img.width = be32(at + 8);
            img.height = be32(at + 12);
            depth = png[at + 16];
            type = png[at + 17];
            interlace = png[at + 20];
        } else if (kind == "IDAT") {
            idat.append(png, at + 8, n);
        } else if (kind == "IEND") {
            break;
        }
        at += 12 + n;
    }
    if (depth != 8 || (type != 2 && type != 6) || interlace != 0 || !img.width || !img.height)
        return std::nullopt;
    const std::size_t bpp = type == 6 ? 4 : 3, stride = img.width * bpp;
    std::vector<std::uint8_t> raw((stride + 1) * img.height);
    z_stream z{};
    if (inflateInit(&z) != Z_OK)
        return std::nullopt;
    z.next_in = reinterpret_cast<Bytef*>(idat.data());
    z.avail_in = static_cast<uInt>(idat.size());
    z.next_out = raw.data();
    z.avail_out = static_cast<uInt>(raw.size());
    const int rc = inflate(&z, Z_FINISH);
    inflateEnd(&z);
    if (rc != Z_STREAM_END)
        return std::nullopt;
    // Undo each row's filter (PNG spec, 9.2), then keep R, G and B.
    std::vector<std::uint8_t> prev(stride, 0), row(stride);
    img.rgb.reserve(std::size_t(img.width) * img.height * 3);
    for (std::uint32_t y = 0; y < img.height; ++y) {
        const std::uint8_t* in = &raw[y * (stride + 1)];
        for (std::size_t x = 0; x < stride; ++x) {
            const int a = x >= bpp ? row[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
            int pred = 0;
            switch (in[0]) {
            case 1: pred = a; break;
            case 2: pred = b; break;
            case 3: pred = (a + b) / 2; break;
            case 4: {
                const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
                pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
                break;
            }
            default: break;
            }
            row[x] = std::uint8_t(in[1 + x] + pred);
        }
        for (std::size_t x = 0; x < stride; x += bpp)
            img.rgb.insert(img.rgb.end(), row.begin() + long(x), row.begin() + long(x) + 3);
        prev.swap(row);
    }
    return img;
}

// --- a small HTML reader for the serialized DOM ------------------------------------

std::string decode_entities(const std::string& s)
{
    static const std::pair<const char*, const char*> entities[] = {
        {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&apos;", "'"}, {"&nbsp;", "\xc2\xa0"},
        {"&amp;", "&"}};
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        bool matched = false;
        if (s[i] == '&') {
            for (const auto& [from, to] : entities) {
                if (s.compare(i, std::strlen(from), from) == 0) {
                    out += to;
                    i += std::strlen(from);
                    matched = true;
                    break;
                }
            }
        }
        if (!matched)
            out += s[i++];
    }
    return out;
}

struct Tag {
    bool closing = false;
    std::string name;
    std::map<std::string, std::string> attrs;
    std::size_t begin = 0;  // '<'
    std::size_t end = 0;    // after '>'

    std::string attr(const std::string& key) const
    {
        auto it = attrs.find(key);
        return it == attrs.end() ? std::string() : it->second;
    }
    bool has(const std::string& key) const { return attrs.count(key) != 0; }
    bool has_class(const std::string& cls) const
    {
        std::istringstream s(attr("class"));
        std::string word;
        while (s >> word)
            if (word == cls)
                return true;
        return false;
    }
};

std::string lower(std::string s)
{
    for (auto& c : s)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Every tag of the serialized document, in order: quoted attribute values and
// raw-text elements (script, style) are skipped over as the parser would, so
// a '<' in them is never taken for a tag.
std::vector<Tag> scan_tags(const std::string& html)
{
    std::vector<Tag> tags;
    std::size_t i = 0;
    while ((i = html.find('<', i)) != std::string::npos) {
        if (html.compare(i, 4, "<!--") == 0) {
            const auto e = html.find("-->", i + 4);
            i = e == std::string::npos ? html.size() : e + 3;
            continue;
        }
        if (i + 1 < html.size() && html[i + 1] == '!') {
            const auto e = html.find('>', i);
            i = e == std::string::npos ? html.size() : e + 1;
            continue;
        }
        Tag tag;
        tag.begin = i;
        std::size_t j = i + 1;
        if (j < html.size() && html[j] == '/') {
            tag.closing = true;
            ++j;
        }
        while (j < html.size() && (std::isalnum(static_cast<unsigned char>(html[j])) || html[j] == '-'))
            tag.name += char(std::tolower(static_cast<unsigned char>(html[j++])));
        if (tag.name.empty()) {
            ++i;
            continue;
        }
        for (;;) {
            while (j < html.size() && std::isspace(static_cast<unsigned char>(html[j])))
                ++j;
            if (j >= html.size())
                break;
            if (html[j] == '>') {
                ++j;
                break;
            }
            if (html[j] == '/') {
                ++j;
                continue;
            }
            std::string key;
            while (j < html.size() && !std::isspace(static_cast<unsigned char>(html[j])) && html[j] != '=' &&
                   html[j] != '>' && html[j] != '/')
                key += char(std::tolower(static_cast<unsigned char>(html[j++])));
            std::string value;
            if (j < html.size() && html[j] == '=') {
                ++j;
                if (j < html.size() && (html[j] == '"' || html[j] == '\'')) {
                    const char q = html[j++];
                    const auto e = html.find(q, j);
                    value = html.substr(j, e - j);
                    j = e == std::string::npos ? html.size() : e + 1;
                } else {
                    while (j < html.size() && !std::isspace(static_cast<unsigned char>(html[j])) && html[j] != '>')
                        value += html[j++];
                }
            }
            tag.attrs[key] = decode_entities(value);
        }
        tag.end = j;
        tags.push_back(tag);
        i = j;
        if (!tag.closing && (tag.name == "script" || tag.name == "style" || tag.name == "noscript")) {
            const auto e = lower(html).find("</" + tag.name, i);
            i = e == std::string::npos ? html.size() : e;
        }
    }
    return tags;
}

// The text of a stretch of markup: tags dropped, entities decoded.
std::string text_of(const std::string& html, std::size_t from, std::size_t to)
{
    std::string raw;
    bool in_tag = false;
    for (std::size_t i = from; i < to && i < html.size(); ++i) {
        if (html[i] == '<')
            in_tag = true;
        else if (html[i] == '>')
            in_tag = false;
        else if (!in_tag)
            raw += html[i];
    }
    return decode_entities(raw);
}

struct Cell {
    std::string value;  // data-value, absent for text cells
    bool has_value = false;
    std::string text;
};

struct Row {
    std::map<std::string, std::string> attrs;
    std::map<std::string, Cell> cells;  // by data-col

    const Cell& cell(const std::string& col) const
    {
        static const Cell none;
        auto it = cells.find(col);
        return it == cells.end() ? none : it->second;
    }
    std::string value(const std::string& col) const { return cell(col).value; }
};

class Dom {
public:
    explicit Dom(std::string html) : html_(std::move(html)), tags_(scan_tags(html_)) {}

    const std::string& html() const { return html_; }
    const std::vector<Tag>& tags() const { return tags_; }

    // Index of the opening tag with this id, or -1.
    long find_id(const std::string& id) const
    {
        for (std::size_t i = 0; i < tags_.size(); ++i)
            if (!tags_[i].closing && tags_[i].attr("id") == id)
                return long(i);
        return -1;
    }

    // Index of the tag closing the one at `open` (same name; no nesting of it inside).
    std::size_t close_of(std::size_t open) const
    {
        int depth = 0;
        for (std::size_t i = open; i < tags_.size(); ++i) {
            if (tags_[i].name != tags_[open].name)
                continue;
            depth += tags_[i].closing ? -1 : 1;
            if (depth == 0)
                return i;
        }
        return tags_.size() - 1;
    }

    std::string text_by_id(const std::string& id) const
    {
        const long open = find_id(id);
        if (open < 0)
            return {};
        return text_of(html_, tags_[open].end, tags_[close_of(open)].begin);
    }

    // The data rows (<tr class="row">) of a table, their cells keyed by data-col.
    std::vector<Row> rows(const std::string& table_id) const
    {
        std::vector<Row> rows;
        const long open = find_id(table_id);
        if (open < 0)
            return rows;
        const std::size_t close = close_of(open);
        for (std::size_t i = open; i < close; ++i) {
            const Tag& t = tags_[i];
            if (t.closing || t.name != "tr" || !t.has_class("row"))
                continue;
            Row row;
            row.attrs = t.attrs;
            const std::size_t tr_close = close_of(i);
            for (std::size_t k = i + 1; k < tr_close; ++k) {
                const Tag& td = tags_[k];
                if (td.closing || td.name != "td")
                    continue;
                Cell cell;
                cell.has_value = td.has("data-value");
                cell.value = td.attr("data-value");
                cell.text = text_of(html_, td.end, tags_[close_of(k)].begin);
                row.cells[td.attr("data-col")] = cell;
            }
            rows.push_back(row);
        }
        return rows;
    }

    // Opening tags inside the element with this id.
    std::vector<Tag> inside(const std::string& id) const
    {
        std::vector<Tag> out;
        const long open = find_id(id);
        if (open < 0)
            return out;
        const std::size_t close = close_of(open);
        for (std::size_t i = open + 1; i < close; ++i)
            if (!tags_[i].closing)
                out.push_back(tags_[i]);
        return out;
    }

    // Opening tags of this class inside the element with this id, each with its text.
    std::vector<std::pair<Tag, std::string>> with_class(const std::string& id, const std::string& cls) const
    {
        std::vector<std::pair<Tag, std::string>> out;
        const long open = find_id(id);
        if (open < 0)
            return out;
        const std::size_t close = close_of(open);
        for (std::size_t i = open + 1; i < close; ++i)
            if (!tags_[i].closing && tags_[i].has_class(cls))
                out.emplace_back(tags_[i], text_of(html_, tags_[i].end, tags_[close_of(i)].begin));
        return out;
    }

    // The text of the page's <main>: what a reader sees, without the data.
    std::string main_text() const
    {
        for (std::size_t i = 0; i < tags_.size(); ++i)
            if (!tags_[i].closing && tags_[i].name == "main")
                return text_of(html_, tags_[i].end, tags_[close_of(i)].begin);
        return {};
    }

    const Tag* first(const std::string& name) const
    {
        for (const auto& t : tags_)
            if (!t.closing && t.name == name)
                return &t;
        return nullptr;
    }

private:
    std::string html_;
    std::vector<Tag> tags_;
};

// --- reports ------------------------------------------------------------------------

json frame(std::uint64_t addr, const json& symbol, const json& module, std::uint64_t offset)
{
    return json{{"addr", addr}, {"symbol", symbol}, {"module", module}, {"offset", offset}};
}

json thread_json(int tid, const std::string& name, std::uint64_t ac, std::uint64_t ab, std::uint64_t fc,
                 std::uint64_t lb, std::uint64_t peak)
{
    return json{{"tid", tid},          {"name", name},     {"alloc_count", ac},     {"alloc_bytes", ab},
                {"free_count", fc},    {"free_bytes", 0},  {"live_count", 1},       {"live_bytes", lb},
                {"peak_live_bytes", peak}};
}

// Schema 2: each distinct frame once, in "frames"; stacks name them by index.
json to_schema2(json r)
{
    json frames = json::array();
    std::map<std::string, std::size_t> index;
    for (const char* list : {"sites", "leaks"}) {
        if (!r.contains(list))
            continue;
        for (auto& entry : r[list]) {
            json ids = json::array();
            for (const auto& f : entry["stack"]) {
                auto [it, added] = index.try_emplace(f.dump(), frames.size());
                if (added)
                    frames.push_back(f);
                ids.push_back(it->second);
            }
            entry["stack"] = ids;
        }
    }
    r["frames"] = frames;
    r["schema"] = "memscope-trace/2";
    return r;
}

json bucket(std::uint64_t min, std::uint64_t max, std::uint64_t count, std::uint64_t bytes)
{
    return json{{"min", min}, {"max", max}, {"count", count}, {"bytes", bytes}};
}

// A small report as an older memscope-trace wrote it (schema 1, the frames
// written out in every stack; no peak, sizes or temporaries), with known
// figures and hostile strings in every place the target names something.
json older_small_report()
{
    json r;
    r["schema"] = "memscope-trace/1";
    r["tool"] = {{"name", "memscope-trace"}, {"version", "0.1.0"}};
    r["target"] = {{"pid", 4242}, {"comm", "svc"}, {"exe", "/opt/svc/" + kHostile}, {"exit_code", 3}};
    r["duration_s"] = 2.5;
    r["mode"] = "fast";
    r["mode_source"] = "auto";
    r["mode_changes"] = json::array({{{"t_s", 1.5}, {"from", "normal"}, {"to", "fast"},
                                      {"reason", "event rate above 2,000,000/s"}}});
    r["totals"] = {{"alloc_count", 123456789},    {"alloc_bytes", 9876543210ULL}, {"free_count", 123400000},
                   {"free_bytes", 9000000000ULL}, {"live_count", 56789},          {"live_bytes", 876543210},
                   {"peak_live_bytes", 987654321}};
    r["threads"] = json::array({thread_json(4242, "main", 1000, 123456789, 900, 1048576, 2097152),
                                thread_json(4243, kHostile, 7, 7777, 3, 4444, 5555),
                                thread_json(4244, kQuotes, 1, 65536, 0, 65536, 65536)});
    r["dropped"] = {{"events", 17}, {"reasons", {{"ring_full", 17}}}, {"untracked_allocations", 0}};
    r["stacks"] = {{"enabled", true}, {"depth", 32}, {"distinct", 3}, {"truncated_share", 0.25}};
    r["sites"] = json::array({
        {{"id", "a1"},
         {"function", "compute(int)"},
         {"alloc_count", 5000},
         {"alloc_bytes", 123000000},
         {"live_count", 40},
         {"live_bytes", 1000000},
         {"truncated", false},
         {"stack", json::array({frame(0x401234, "compute(int)", "/opt/svc/svc", 0x1234),
                                frame(0x7f0000029d90, nullptr, "/lib/x86_64-linux-gnu/libc.so.6", 0x29d90)})}},
        {{"id", "b2"},
         {"function", kHostile},
         {"alloc_count", 300},
         {"alloc_bytes", 456789},
         {"live_count", 2},
         {"live_bytes", 4444},
         {"truncated", true},
         {"stack", json::array({frame(0x402000, kHostile, "/opt/svc/svc", 0x2000)})}},
        {{"id", "c3"},
         {"function", nullptr},
         {"alloc_count", 1},
         {"alloc_bytes", 65536},
         {"live_count", 1},
         {"live_bytes", 65536},
         {"truncated", false},
         {"stack", json::array({frame(0x7f1000000abc, nullptr, "/opt/lib" + kQuotes + ".so", 0xabc)})}},
    });
    r["sites"][0]["stack"][0]["file"] = "/src/svc.cpp";
    r["sites"][0]["stack"][0]["line"] = 42;
    r["leaks"] = json::array({
        {{"id", "a1"},
         {"expected", nullptr},
         {"function", "compute(int)"},
         {"stack", r["sites"][0]["stack"]},
         {"live_count", 40},
         {"live_bytes", 1000000},
         {"oldest_age_s", 1.75},
         {"threads", json::array({{{"tid", 4242}, {"name", "main"}, {"live_count", 39}, {"live_bytes", 999000}},
                                  {{"tid", 4243}, {"name", kHostile}, {"live_count", 1}, {"live_bytes", 1000}}})},
         {"variables", json::array({{{"name", "buffer"}, {"type", "std::vector<char>"}, {"count", 40}, {"bytes", 1000000}}})}},
        {{"id", "c3"},
         {"expected", "stdio buffer, kept for the process's lifetime"},
         {"function", nullptr},
         {"stack", r["sites"][2]["stack"]},
         {"live_count", 1},
         {"live_bytes", 65536},
         {"oldest_age_s", 0.5},
         {"threads", json::array({{{"tid", 4244}, {"name", kQuotes}, {"live_count", 1}, {"live_bytes", 65536}}})},
         {"variables", json::array({{{"name", kQuotes}, {"type", "char[]"}, {"count", 1}, {"bytes", 65536}}})}},
    });
    r["variable_summary"] = json::array({
        {{"name", "buffer"}, {"type", "std::vector<char>"}, {"count", 120}, {"bytes", 3000000}, {"live_count", 40}, {"live_bytes", 1000000}},
        {{"name", kQuotes}, {"type", kHostile}, {"count", 5}, {"bytes", 327680}, {"live_count", 1}, {"live_bytes", 65536}},
    });
    r["variables"] = json::array();
    for (int i = 0; i < 125; ++i)
        r["variables"].push_back({{"name", "buffer"}, {"type", "std::vector<char>"}, {"size", 25000}, {"tid", 4242}});
    json tl = {{"interval_s", 0.1}, {"t_s", json::array()}, {"process_live_bytes", json::array()}};
    json series = json::array({{{"tid", 4242}, {"name", "main"}, {"live_bytes", json::array()}},
                               {{"tid", 4243}, {"name", kHostile}, {"live_bytes", json::array()}},
                               {{"tid", 4244}, {"name", kQuotes}, {"live_bytes", json::array()}}});
    for (int i = 0; i < 20; ++i) {
        tl["t_s"].push_back((i + 1) / 10.0);
        const std::uint64_t a = std::uint64_t(i) * 100000, b = std::uint64_t(i % 5) * 1000, c = i >= 10 ? 65536 : 0;
        series[0]["live_bytes"].push_back(a);
        series[1]["live_bytes"].push_back(b);
        series[2]["live_bytes"].push_back(c);
        tl["process_live_bytes"].push_back(a + b + c);
    }
    tl["threads"] = series;
    r["timeline"] = tl;
    r["warnings"] = json::array({"warning " + kHostile});
    return r;
}

// The small report as written now: schema 2, its peak between two samples and
// above the highest (the page must show the report's figure, not the
// samples'), sizes, temporaries, and a pool of two "worker" threads.
json small_report()
{
    json r = older_small_report();
    r["totals"]["peak_live_bytes"] = 2500000;
    r["totals"]["peak_live_bytes_exact"] = false;
    r["totals"]["temporary_count"] = 1234;
    r["threads"].push_back(thread_json(4245, "worker", 10, 1000, 5, 100, 3000));
    r["threads"].push_back(thread_json(4246, "worker", 20, 2000, 15, 200, 4000));
    const std::uint64_t thread_temporaries[] = {1200, 34, 0, 0, 0};
    for (std::size_t i = 0; i < r["threads"].size(); ++i)
        r["threads"][i]["temporary_count"] = thread_temporaries[i];
    const std::uint64_t site_temporaries[] = {1200, 34, 0};
    for (std::size_t i = 0; i < r["sites"].size(); ++i) {
        r["sites"][i]["temporary_count"] = site_temporaries[i];
        r["sites"][i]["pid"] = 4242;
    }
    r["sites"][0]["size_histogram"] = json::array({bucket(16, 31, 4000, 96000), bucket(32768, 65535, 1000, 122904000)});
    r["sites"][1]["size_histogram"] = json::array({bucket(256, 511, 300, 456789)});
    r["sites"][2]["size_histogram"] = json::array({bucket(65536, 131071, 1, 65536)});
    r["size_histogram"] = json::array({bucket(0, 1, 3, 2), bucket(16, 31, 100, 2400), bucket(65536, 131071, 1, 65536)});
    r["peak"] = {{"pid", 4242},
                 {"t_s", 1.95},
                 {"live_bytes", 2500000},
                 {"exact", false},
                 {"sites", json::array({{{"id", "a1"}, {"pid", 4242}, {"live_count", 30}, {"live_bytes", 2000000}},
                                        {{"id", "b2"}, {"pid", 4242}, {"live_count", 2}, {"live_bytes", 4444}},
                                        {{"id", "ff"}, {"pid", 4242}, {"live_count", 1}, {"live_bytes", 1000}},
                                        // a1's id, in another process: not a1
                                        {{"id", "a1"}, {"pid", 999}, {"live_count", 1}, {"live_bytes", 500}}})},
                 {"note", "sites at the peak: " + kHostile}};
    return to_schema2(r);
}

// `sites` sites under one caller, each with its own function, sizes and
// temporaries (schema 2: the frames written once); the peak's first 100 sites.
json large_report(int sites, int threads)
{
    json r = {{"schema", "memscope-trace/2"},
              {"target", {{"pid", 1}, {"comm", "big"}, {"exe", "/usr/bin/big"}, {"exit_code", 0}}},
              {"duration_s", 60.0},
              {"mode", "normal"},
              {"totals", {{"alloc_count", 1}, {"alloc_bytes", 1}, {"peak_live_bytes", 9000000},
                          {"peak_live_bytes_exact", true}, {"temporary_count", 5}}}};
    r["frames"] = json::array({frame(0x500000, "caller()", "/usr/bin/big", 0x100000),
                               frame(0x7f0000029d90, nullptr, "/lib/libc.so.6", 0x29d90)});
    r["sites"] = json::array();
    json peak_sites = json::array();
    for (int i = 0; i < sites; ++i) {
        char id[32];
        std::snprintf(id, sizeof id, "%08x", i);
        const std::string fn = "ns::function_" + std::to_string(i) + "(std::vector<int> const&)";
        r["frames"].push_back(frame(0x400000 + i, fn, "/usr/bin/big", i));
        const std::uint64_t n = std::uint64_t(sites - i);
        r["sites"].push_back({{"id", id},
                              {"function", fn},
                              {"alloc_count", n},
                              {"alloc_bytes", n * 1000},
                              {"live_count", i % 7},
                              {"live_bytes", (i % 7) * 100},
                              {"temporary_count", i % 3},
                              {"size_histogram", json::array({bucket(16, 31, n - 1, (n - 1) * 20),
                                                              bucket(512, 1023, 1, n * 1000 - (n - 1) * 20)})},
                              {"truncated", false},
                              {"stack", json::array({r["frames"].size() - 1, 0, 1})}});
        if (i < 100)
            peak_sites.push_back({{"id", id}, {"live_count", 1}, {"live_bytes", 100 - i}});
    }
    r["size_histogram"] = json::array({bucket(16, 31, 5, 80)});
    r["peak"] = {{"pid", 1}, {"t_s", 30.05}, {"live_bytes", 9000000}, {"exact", true}, {"sites", peak_sites}};
    json tl = {{"interval_s", 0.1}, {"t_s", json::array()}, {"process_live_bytes", json::array()},
               {"threads", json::array()}};
    const int points = 600;
    for (int i = 0; i < points; ++i) {
        tl["t_s"].push_back((i + 1) / 10.0);
        tl["process_live_bytes"].push_back(std::uint64_t(i) * threads * 1000);
    }
    for (int t = 0; t < threads; ++t) {
        json values = json::array();
        for (int i = 0; i < points; ++i)
            values.push_back(std::uint64_t(i) * (t + 1) * 10);
        tl["threads"].push_back({{"tid", 1000 + t}, {"name", "worker-" + std::to_string(t)}, {"live_bytes", values}});
    }
    r["timeline"] = tl;
    return r;
}

fs::path write_page(const TempDir& tmp, const std::string& name, const json& report)
{
    const fs::path page = tmp.path / name;
    std::ofstream(page, std::ios::binary) << memscope::render_html(report);
    return page;
}

// The embedded data: between the report script's '>' and its "</script>".
std::string embedded_data(const std::string& html)
{
    const std::string open = "id=\"report\"";
    auto at = html.find(open);
    if (at == std::string::npos)
        return {};
    at = html.find('>', at) + 1;
    return html.substr(at, html.find("</script>", at) - at);
}

std::size_t count_of(const std::string& hay, const std::string& needle)
{
    std::size_t n = 0;
    for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1))
        ++n;
    return n;
}

void expect_no_injected_markup(const Dom& dom, std::size_t scripts_expected = 2)
{
    std::size_t scripts = 0;
    for (const auto& t : dom.tags()) {
        if (t.closing)
            continue;
        EXPECT_NE(t.name, "img") << "an <img> element made it into the DOM";
        EXPECT_NE(t.name, "iframe");
        if (t.name == "script")
            ++scripts;
        for (const auto& [key, value] : t.attrs)
            EXPECT_NE(key.rfind("on", 0), 0u) << "event handler attribute " << key << " on <" << t.name << ">";
    }
    EXPECT_EQ(scripts, scripts_expected) << "only the data and the page's own script (and a test's driver)";
}

// The page with a second script, `driver`, that carries the page's own nonce
// (the policy refuses any other) and runs once the page is drawn.
fs::path write_page_with_driver(const TempDir& tmp, const std::string& name, const json& report,
                                const std::string& driver)
{
    std::string html = memscope::render_html(report);
    const auto at = html.find("<script nonce=\"");
    EXPECT_NE(at, std::string::npos);
    const std::string nonce = html.substr(at + 15, html.find('"', at + 15) - at - 15);
    html.insert(html.rfind("</body>"), "<script nonce=\"" + nonce + "\">" + driver + "</script>\n");
    const fs::path page = tmp.path / name;
    std::ofstream(page, std::ios::binary) << html;
    return page;
}

// What a driver left in body's data-out (JSON), or null.
json driver_out(const Dom& dom)
{
    const Tag* body = dom.first("body");
    if (!body || !body->has("data-out"))
        return nullptr;
    return json::parse(body->attr("data-out"), nullptr, false);
}

// Stacks that share callers, a hostile symbol, an unsymbolized frame, a
// truncated stack and a site too small to draw. Bytes at the root: 10,501.
json flame_report()
{
    const json main_f = frame(0x403000, "main", "/opt/svc/svc", 0x3000);
    const json work = frame(0x404000, "work()", "/opt/svc/svc", 0x4000);
    const json alloc_a = frame(0x405000, "alloc_a()", "/opt/svc/svc", 0x5000);
    const json alloc_b = frame(0x406000, "alloc_b()", "/opt/svc/svc", 0x6000);
    const json hostile = frame(0x407000, kHostile, "/opt/svc/svc", 0x7000);
    const json unnamed = frame(0x7f1000000abc, nullptr, "/opt/lib" + kQuotes + ".so", 0xabc);
    const json tiny = frame(0x408000, "tiny()", "/opt/svc/svc", 0x8000);
    auto site = [](const char* id, json stack, int bytes, int count, int live, bool truncated = false) {
        return json{{"id", id},          {"function", nullptr}, {"stack", std::move(stack)}, {"truncated", truncated},
                    {"alloc_bytes", bytes}, {"alloc_count", count}, {"live_bytes", live},      {"live_count", live ? 1 : 0}};
    };
    json r = {{"schema", "memscope-trace/1"}, {"target", {{"pid", 7}, {"comm", "svc"}, {"exe", "/opt/svc/svc"}}}};
    r["sites"] = json::array({site("s1", {alloc_a, work, main_f}, 6000, 6, 600),
                              site("s2", {alloc_b, work, main_f}, 3000, 30, 0),
                              site("s3", {hostile, main_f}, 900, 1, 900),
                              site("s4", {unnamed, main_f}, 100, 2, 0),
                              site("s5", {alloc_a}, 500, 5, 0, true),
                              site("s6", {tiny, main_f}, 1, 1, 0)});
    r["totals"] = {{"alloc_count", 45}, {"alloc_bytes", 10501}, {"peak_live_bytes", 7000}, {"temporary_count", 0}};
    r["size_histogram"] = json::array();
    r["peak"] = {{"t_s", 0.5}, {"live_bytes", 7000}, {"exact", true},
                 {"sites", json::array({{{"id", "s1"}, {"live_count", 5}, {"live_bytes", 5000}},
                                        {{"id", "s3"}, {"live_count", 2}, {"live_bytes", 2000}}})}};
    return to_schema2(r);
}

} // namespace

// --- without a browser ------------------------------------------------------------------

TEST(HtmlReport, EmbeddedDataCannotCloseTheScript)
{
    json r = small_report();
    r["target"]["comm"] = "<!--<script>\xff\xfe";  // not UTF-8 either
    const std::string html = memscope::render_html(r);
    const std::string data = embedded_data(html);
    ASSERT_FALSE(data.empty());
    EXPECT_EQ(data.find_first_of("<>&"), std::string::npos);
    for (unsigned char c : data)
        ASSERT_LT(c, 0x80) << "the data is ASCII (ensure_ascii)";
    EXPECT_EQ(count_of(lower(html), "</script"), 2u);
    EXPECT_EQ(count_of(html, "<!--"), 0u);

    // It reads back as the report, less the per-variable records, which are counted.
    json back = json::parse(data);
    EXPECT_FALSE(back.contains("variables"));
    EXPECT_NE(html.find("data-variables-count=\"125\""), std::string::npos);
    json expected = r;
    expected.erase("variables");
    expected["target"]["comm"] = "<!--<script>\xef\xbf\xbd\xef\xbf\xbd";  // U+FFFD for each bad byte
    EXPECT_EQ(back, expected);
}

TEST(HtmlReport, SelfContained)
{
    const std::string html = memscope::render_html(small_report());
    // The only URL is the SVG namespace name, which is never fetched; the
    // data (inert, and full of the test's hostile strings) is left out.
    std::string rest = html;
    rest.erase(rest.find(embedded_data(html)), embedded_data(html).size());
    for (std::size_t at; (at = rest.find("http://www.w3.org/2000/svg")) != std::string::npos;)
        rest.erase(at, 26);
    EXPECT_EQ(rest.find("http:"), std::string::npos);
    EXPECT_EQ(rest.find("https:"), std::string::npos);
    EXPECT_EQ(rest.find("//cdn"), std::string::npos);
    EXPECT_EQ(rest.find(" src="), std::string::npos);
    EXPECT_EQ(rest.find("<link"), std::string::npos);
    EXPECT_NE(html.find("Content-Security-Policy"), std::string::npos);
    EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
}

TEST(HtmlReport, AnyDocumentRenders)
{
    for (const json& j : {json(), json::object(), json::array(), json("text"), json{{"sites", 3}}}) {
        const std::string html = memscope::render_html(j);
        EXPECT_NE(html.find("</html>"), std::string::npos);
        EXPECT_EQ(embedded_data(html).find('<'), std::string::npos);
    }
}

// --- in Chromium --------------------------------------------------------------------------

TEST(HtmlReport, SmallReportInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const fs::path page = write_page(tmp, "report.html", small_report());
    const Dom dom(dump_dom(chromium, tmp, page));
    const Tag* body = dom.first("body");
    ASSERT_NE(body, nullptr);
    EXPECT_EQ(body->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    EXPECT_TRUE(dom.tags()[dom.find_id("processes-section")].has("hidden")) << "a system report's only";

    // Header figures.
    std::map<std::string, std::string> fields;
    for (const auto& t : dom.tags())
        if (t.has("data-field"))
            fields[t.attr("data-field")] = t.attr("data-value");
    EXPECT_EQ(fields["target.pid"], "4242");
    EXPECT_EQ(fields["target.exit_code"], "3");
    EXPECT_EQ(fields["duration_s"], "2.5");
    EXPECT_EQ(fields["totals.alloc_count"], "123456789");
    EXPECT_EQ(fields["totals.alloc_bytes"], "9876543210");
    EXPECT_EQ(fields["totals.free_count"], "123400000");
    EXPECT_EQ(fields["totals.live_bytes"], "876543210");
    EXPECT_EQ(fields["totals.peak_live_bytes"], "2500000");
    EXPECT_EQ(fields["totals.temporary_count"], "1234");
    EXPECT_EQ(fields["dropped.events"], "17");
    EXPECT_EQ(fields["variables"], "125");
    EXPECT_NE(dom.html().find("123,456,789"), std::string::npos) << "thousands separators";

    EXPECT_EQ(dom.find_id("older-report"), -1) << dom.text_by_id("older-report");

    // Threads, by tid (the two "worker" threads are one row: ThreadsGroupedByName).
    const auto threads = dom.rows("threads-table");
    ASSERT_EQ(threads.size(), 4u);
    std::map<std::string, Row> by_tid;
    for (const auto& row : threads)
        by_tid[row.value("tid")] = row;
    ASSERT_EQ(by_tid.size(), 4u);
    EXPECT_EQ(by_tid["4242"].cell("name").text, "main");
    EXPECT_EQ(by_tid["4242"].value("alloc_count"), "1000");
    EXPECT_EQ(by_tid["4242"].value("alloc_bytes"), "123456789");
    EXPECT_EQ(by_tid["4242"].value("live_bytes"), "1048576");
    EXPECT_EQ(by_tid["4242"].value("peak_live_bytes"), "2097152");
    EXPECT_EQ(by_tid["4243"].cell("name").text, kHostile);
    EXPECT_EQ(by_tid["4243"].value("alloc_count"), "7");
    EXPECT_EQ(by_tid["4243"].value("alloc_bytes"), "7777");
    EXPECT_EQ(by_tid["4243"].value("live_bytes"), "4444");
    EXPECT_EQ(by_tid["4243"].value("peak_live_bytes"), "5555");
    EXPECT_EQ(by_tid["4244"].cell("name").text, kQuotes);
    EXPECT_EQ(by_tid["4244"].value("alloc_bytes"), "65536");

    // Sites: by bytes, largest first; the unnamed one by its frame.
    const auto sites = dom.rows("sites-table");
    ASSERT_EQ(sites.size(), 3u);
    EXPECT_EQ(sites[0].attrs.at("data-id"), "a1");
    EXPECT_EQ(sites[1].attrs.at("data-id"), "b2");
    EXPECT_EQ(sites[2].attrs.at("data-id"), "c3");
    EXPECT_EQ(sites[0].value("alloc_count"), "5000");
    EXPECT_EQ(sites[0].value("alloc_bytes"), "123000000");
    EXPECT_EQ(sites[0].value("live_count"), "40");
    EXPECT_EQ(sites[0].value("live_bytes"), "1000000");
    EXPECT_NE(sites[0].cell("function").text.find("compute(int)"), std::string::npos);
    EXPECT_NE(sites[1].cell("function").text.find(kHostile), std::string::npos);
    EXPECT_EQ(sites[1].value("alloc_bytes"), "456789");
    EXPECT_NE(sites[2].cell("function").text.find("/opt/lib" + kQuotes + ".so+0xabc"), std::string::npos);
    EXPECT_EQ(dom.text_by_id("sites-count"), "Showing 3 of 3 sites");
    EXPECT_NE(dom.text_by_id("sites-table").find("/lib/x86_64-linux-gnu/libc.so.6+0x29d90"), std::string::npos)
        << "frames without a symbol as module+0xoffset";
    EXPECT_NE(dom.text_by_id("sites-table").find("/src/svc.cpp:42"), std::string::npos);

    // Leaks.
    const auto leaks = dom.rows("leaks-table");
    ASSERT_EQ(leaks.size(), 2u);
    EXPECT_EQ(leaks[0].value("live_count"), "40");
    EXPECT_EQ(leaks[0].value("live_bytes"), "1000000");
    EXPECT_EQ(leaks[0].value("oldest_age_s"), "1.75");
    EXPECT_NE(leaks[0].cell("threads").text.find("main [4242]"), std::string::npos);
    EXPECT_NE(leaks[0].cell("threads").text.find(kHostile + " [4243]"), std::string::npos);
    EXPECT_EQ(leaks[0].cell("variables").text, "buffer");
    EXPECT_EQ(leaks[0].attrs.at("data-id"), "a1");
    EXPECT_FALSE(leaks[0].attrs.count("data-expected"));
    EXPECT_EQ(leaks[1].attrs.at("data-id"), "c3");
    EXPECT_EQ(leaks[1].attrs.at("data-expected"), "true");
    EXPECT_NE(leaks[1].cell("function").text.find("expected"), std::string::npos);
    EXPECT_EQ(leaks[1].value("live_bytes"), "65536");
    EXPECT_EQ(leaks[1].value("oldest_age_s"), "0.5");
    EXPECT_EQ(leaks[1].cell("variables").text, kQuotes);

    // Variables.
    const auto vars = dom.rows("variables-table");
    ASSERT_EQ(vars.size(), 2u);
    EXPECT_EQ(vars[0].cell("name").text, "buffer");
    EXPECT_EQ(vars[0].cell("type").text, "std::vector<char>");
    EXPECT_EQ(vars[0].value("count"), "120");
    EXPECT_EQ(vars[0].value("bytes"), "3000000");
    EXPECT_EQ(vars[0].value("live_count"), "40");
    EXPECT_EQ(vars[0].value("live_bytes"), "1000000");
    EXPECT_EQ(vars[1].cell("name").text, kQuotes);
    EXPECT_EQ(vars[1].cell("type").text, kHostile);
    EXPECT_EQ(vars[1].value("bytes"), "327680");

    // Mode changes: in the table and on the chart.
    const auto modes = dom.rows("modes-table");
    ASSERT_EQ(modes.size(), 1u);
    EXPECT_EQ(modes[0].value("t_s"), "1.5");
    EXPECT_EQ(modes[0].cell("from").text, "normal");
    EXPECT_EQ(modes[0].cell("to").text, "fast");
    EXPECT_EQ(modes[0].cell("reason").text, "event rate above 2,000,000/s");

    // The chart: the process and one line per thread, each with a path.
    const auto chart = dom.inside("timeline-chart");
    ASSERT_FALSE(chart.empty()) << "no <svg id=timeline-chart>";
    std::map<std::string, std::string> paths;
    std::size_t mode_lines = 0;
    for (const auto& t : chart) {
        if (t.name == "path" && t.has_class("series"))
            paths[t.attr("data-series")] = t.attr("d");
        if (t.name == "line" && t.has_class("mode-line"))
            ++mode_lines;
    }
    EXPECT_EQ(paths.size(), 4u);
    for (const char* key : {"process", "tid:4242", "tid:4243", "tid:4244"}) {
        ASSERT_TRUE(paths.count(key)) << key;
        EXPECT_EQ(paths[key].rfind("M", 0), 0u) << key << ": " << paths[key];
        EXPECT_EQ(count_of(paths[key], "L"), 19u) << key << ": 20 points";
    }
    EXPECT_EQ(mode_lines, 1u);
    EXPECT_EQ(dom.find_id("timeline-hidden"), -1);

    // Hostile strings: text only, never markup.
    expect_no_injected_markup(dom);
    EXPECT_NE(dom.html().find(kHostileText), std::string::npos);
    const long title = [&] {
        for (std::size_t i = 0; i < dom.tags().size(); ++i)
            if (dom.tags()[i].name == "title" && !dom.tags()[i].closing)
                return long(i);
        return -1L;
    }();
    ASSERT_GE(title, 0);
    EXPECT_EQ(text_of(dom.html(), dom.tags()[title].end, dom.tags()[dom.close_of(title)].begin),
              "memscope-trace: /opt/svc/" + kHostile);
    EXPECT_NE(dom.html().find("<title>memscope-trace: /opt/svc/" + kHostileText + "</title>"), std::string::npos);
    EXPECT_NE(dom.text_by_id("warnings").find("warning " + kHostile), std::string::npos);

    // A screenshot, for people: the page as drawn.
    const fs::path shot = screenshot_dir() / "html_report_small.png";
    ASSERT_TRUE(screenshot(chromium, tmp, page, shot, "1280,4000"));
    EXPECT_GT(fs::file_size(shot), 10u * 1024) << shot;
    EXPECT_EQ(read_file(shot).substr(0, 8), "\x89PNG\r\n\x1a\n");
    std::printf("screenshot: %s\n", shot.c_str());
}

TEST(HtmlReport, ThirtyThousandSitesInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const auto t0 = std::chrono::steady_clock::now();
    const fs::path page = write_page(tmp, "big.html", large_report(30000, 15));
    const auto t1 = std::chrono::steady_clock::now();
    const Dom dom(dump_dom(chromium, tmp, page, std::chrono::seconds(60)));
    const auto t2 = std::chrono::steady_clock::now();
    const Tag* body = dom.first("body");
    ASSERT_NE(body, nullptr);
    EXPECT_EQ(body->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    std::printf("page %.1f MB: rendered in %.2f s, Chromium %.2f s (script %s ms)\n",
                double(fs::file_size(page)) / 1e6, std::chrono::duration<double>(t1 - t0).count(),
                std::chrono::duration<double>(t2 - t1).count(), body->attr("data-render-ms").c_str());
    // The page's own measure: reading the data, drawing every section, and
    // the layout, from its script's first line.
    ASSERT_TRUE(body->has("data-render-ms"));
    EXPECT_LT(std::stol(body->attr("data-render-ms")), 5000) << "the page took 5 s or more to draw";

    // The flame graph: the caller and libc's frame drawn; the 30,000 functions,
    // each under a pixel wide, are not.
    const long flame = dom.find_id("flame");
    ASSERT_GE(flame, 0);
    EXPECT_EQ(dom.tags()[flame].attr("data-total"), "450015000000");
    EXPECT_EQ(dom.tags()[flame].attr("data-drawn"), "3");
    EXPECT_EQ(dom.tags()[flame].attr("data-culled"), "30000");
    EXPECT_NE(dom.text_by_id("flame-culled").find("30,000 frames narrower than 2 pixels not drawn"), std::string::npos);
    EXPECT_EQ(dom.rows("peak-table").size(), 100u);
    EXPECT_EQ(dom.text_by_id("temporaries-count"), "Showing 200 of 20,000 sites");
    EXPECT_EQ(dom.rows("temporaries-table").front().value("temporary_count"), "2");

    const auto sites = dom.rows("sites-table");
    ASSERT_EQ(sites.size(), 200u);
    EXPECT_EQ(sites.front().attrs.at("data-id"), "00000000");
    EXPECT_EQ(sites.front().value("alloc_bytes"), "30000000");
    EXPECT_EQ(sites.back().attrs.at("data-id"), "000000c7");
    EXPECT_EQ(sites.back().value("alloc_bytes"), "29801000");
    EXPECT_EQ(dom.text_by_id("sites-count"), "Showing 200 of 30,000 sites");
    const long count = dom.find_id("sites-count");
    ASSERT_GE(count, 0);
    EXPECT_EQ(dom.tags()[count].attr("data-total"), "30000");
    EXPECT_EQ(dom.tags()[count].attr("data-shown"), "200");
    EXPECT_EQ(dom.text_by_id("sites-more"), "Show 200 more");

    // 15 threads: the 10 with the highest peak are drawn (tids 1005..1014).
    std::set<std::string> series;
    for (const auto& t : dom.inside("timeline-chart"))
        if (t.name == "path" && t.has_class("series") && !t.attr("d").empty())
            series.insert(t.attr("data-series"));
    EXPECT_EQ(series.size(), 11u);
    EXPECT_TRUE(series.count("process"));
    for (int tid = 1005; tid < 1015; ++tid)
        EXPECT_TRUE(series.count("tid:" + std::to_string(tid))) << tid;
    EXPECT_NE(dom.text_by_id("timeline-hidden").find("5 more threads not drawn"), std::string::npos);
}

// Paging, sorting, filtering and the stack toggle, driven by a second script
// that carries the page's own nonce (the policy refuses any other).
TEST(HtmlReport, InteractionsInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    std::string html = memscope::render_html(large_report(30000, 2));
    const auto at = html.find("<script nonce=\"");
    ASSERT_NE(at, std::string::npos);
    const std::string nonce = html.substr(at + 15, html.find('"', at + 15) - at - 15);
    const std::string driver = R"js(
(() => {
  const rows = () => document.querySelectorAll('#sites-table tbody tr.row');
  const out = {};
  document.getElementById('sites-more').click();
  out.afterMore = rows().length;
  const sort = document.querySelector('#sites-table th[data-col="alloc_count"] button');
  sort.click();
  sort.click();
  out.ascFirst = rows()[0].dataset.id;
  out.afterSort = rows().length;
  const filter = document.getElementById('sites-filter');
  filter.value = 'Function_2999';
  filter.dispatchEvent(new Event('input'));
  setTimeout(() => {
    out.filtered = rows().length;
    out.filteredFirst = rows()[0].dataset.id;
    out.count = document.getElementById('sites-count').textContent;
    out.moreHidden = document.getElementById('sites-more').hidden;
    rows()[0].querySelector('td').click();
    out.detailOpen = !rows()[0].nextElementSibling.hidden;
    document.getElementById('timeline-threads-only').click();
    out.series = [...document.querySelectorAll('#timeline-chart path.series')].map((p) => p.dataset.series).sort();
    document.body.dataset.interactions = JSON.stringify(out);
  }, 500);
})();
)js";
    html.insert(html.rfind("</body>"), "<script nonce=\"" + nonce + "\">" + driver + "</script>\n");
    const fs::path page = tmp.path / "interact.html";
    std::ofstream(page, std::ios::binary) << html;

    const Dom dom(dump_dom(chromium, tmp, page));
    const Tag* body = dom.first("body");
    ASSERT_NE(body, nullptr);
    EXPECT_EQ(body->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    ASSERT_TRUE(body->has("data-interactions")) << "the driver did not finish";
    const json out = json::parse(body->attr("data-interactions"));
    EXPECT_EQ(out["afterMore"], 400);
    EXPECT_EQ(out["afterSort"], 200) << "a new order starts again at one page";
    EXPECT_EQ(out["ascFirst"], "0000752f") << "ascending by allocations: the last site first";
    EXPECT_EQ(out["filtered"], 11) << "function_2999 and function_29990..29999, case-insensitive";
    EXPECT_EQ(out["filteredFirst"], "0000752f");
    EXPECT_EQ(out["count"], "Showing 11 of 11 matching sites (30,000 in all)");
    EXPECT_EQ(out["moreHidden"], true);
    EXPECT_EQ(out["detailOpen"], true);
    EXPECT_EQ(out["series"], json({"tid:1000", "tid:1001"})) << "threads only, rescaled";
}

TEST(HtmlReport, EmptyReportInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const json r = {{"schema", "memscope-trace/1"}, {"timeline", {{"interval_s", 0.1}, {"t_s", json::array()}}}};
    const Dom dom(dump_dom(chromium, tmp, write_page(tmp, "empty.html", r)));
    const Tag* body = dom.first("body");
    ASSERT_NE(body, nullptr);
    EXPECT_EQ(body->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    EXPECT_EQ(dom.find_id("timeline-chart"), -1);
    EXPECT_NE(dom.text_by_id("timeline-body").find("No samples"), std::string::npos);
    for (const char* id : {"threads-table", "variables-table", "modes-table"}) {
        EXPECT_GE(dom.find_id(id), 0) << id;
        EXPECT_TRUE(dom.rows(id).empty()) << id;
    }
    EXPECT_EQ(dom.text_by_id("flame-body"), "No allocation sites, so no flame graph.");
    EXPECT_EQ(dom.tags()[dom.find_id("older-report")].attr("data-missing"), "peak size_histogram temporary_count");
    EXPECT_EQ(dom.find_id("peak-statement"), -1) << "no peak figure at all";

    // The current writer's empty report (a peak only when it had one): no
    // older-report note, nothing drawn from nothing.
    json now = r;
    now["schema"] = "memscope-trace/2";
    now["totals"] = {{"alloc_count", 0}, {"peak_live_bytes", 0}, {"peak_live_bytes_exact", true}, {"temporary_count", 0}};
    now["size_histogram"] = json::array();
    now["sites"] = json::array();
    const Dom dom2(dump_dom(chromium, tmp, write_page(tmp, "empty2.html", now)));
    ASSERT_NE(dom2.first("body"), nullptr);
    EXPECT_EQ(dom2.first("body")->attr("data-rendered"), "ok") << dom2.text_by_id("errors");
    EXPECT_EQ(dom2.find_id("older-report"), -1);
    EXPECT_EQ(dom2.text_by_id("sizes-body"), "No allocations, so no sizes.");
    EXPECT_EQ(dom2.text_by_id("peak-body"), "This report does not say when the peak was or what was live then.");
    EXPECT_TRUE(dom2.rows("temporaries-table").empty());
    EXPECT_EQ(dom2.text_by_id("peak-statement"), "The peak, 0 B, is exact: live bytes were counted at every allocation and free.");
}

// -a: the machine's processes drawn from the writer's own document, the
// target's strings as text.
TEST(HtmlReport, SystemReportInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    using namespace memscope;
    Report r;
    r.mode_scope = "system";
    for (int pid : {200, 300, 400}) {
        ProcessSection p;
        p.target = {pid, pid == 300 ? kHostile : "svc", "/usr/bin/svc", std::nullopt};
        p.cgroup = pid == 300 ? kQuotes : "/system.slice/svc.service";
        if (pid != 400) {
            p.memory.emplace();
            p.memory->peak_rss_anon_bytes = std::uint64_t(pid) << 20;
            p.memory->rss_file_bytes = 4096;
            p.memory->anon_growth_bytes_per_s = -2048;
        }
        p.ns_pid = 7;
        p.other_pid_namespace = pid == 300;
        p.heap_traced = pid == 200;
        p.oom_killed = pid == 300;
        r.processes.push_back(p);
    }
    r.oom_kills.push_back({300, 7, kHostile, kQuotes, 1.5, {}});
    r.system = {40, 5, 6, 7, 1, 30, 1 << 30, {"--heap=" + kHostile}};
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const Dom dom(dump_dom(chromium, tmp, write_page(tmp, "system.html", report_summary_json(r))));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    expect_no_injected_markup(dom);
    EXPECT_EQ(dom.find_id("warnings"), -1) << dom.text_by_id("warnings"); // schema 2 is this page's own
    EXPECT_FALSE(dom.tags()[dom.find_id("processes-section")].has("hidden"));

    const auto rows = dom.rows("processes-table"); // largest anonymous peak first, none last
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].value("pid"), "300");
    EXPECT_EQ(rows[0].value("ns_pid"), "7");
    EXPECT_EQ(rows[0].cell("comm").text, kHostile);
    EXPECT_EQ(rows[0].cell("cgroup").text, kQuotes);
    EXPECT_EQ(rows[0].value("peak_rss_anon_bytes"), std::to_string(300ull << 20));
    EXPECT_EQ(rows[0].value("anon_growth_bytes_per_s"), "-2048");
    EXPECT_EQ(rows[0].cell("flags").text, "OOM");
    EXPECT_EQ(rows[1].value("pid"), "200");
    EXPECT_FALSE(rows[1].cell("ns_pid").has_value); // same namespace
    EXPECT_EQ(rows[1].cell("flags").text, "heap-traced");
    EXPECT_EQ(rows[2].value("pid"), "400");
    EXPECT_FALSE(rows[2].cell("rss_file_bytes").has_value); // no figures

    const auto kills = dom.rows("oom-table");
    ASSERT_EQ(kills.size(), 1u);
    EXPECT_EQ(kills[0].cell("comm").text, kHostile);
    EXPECT_EQ(kills[0].value("t_s"), "1.5");
    EXPECT_NE(dom.text_by_id("system-counts").find("40 processes seen: 5 born"), std::string::npos)
        << dom.text_by_id("system-counts");
    EXPECT_NE(dom.text_by_id("processes-body").find("Heap traced by: --heap=" + kHostile), std::string::npos);
}

// --- issue 18: the peak, the flame graph, sizes, temporaries, threads by name -----------

// The process peak is the report's figure (2,500,000 B at 1.95 s, between two
// samples and above the highest, 1,969,536 B) in the summary, the legend and
// the marker's label; a thread's is its own (main: 2,097,152 B, its samples
// reach 1,900,000); whether it is exact or sampled is said once. The marker
// is drawn in a color of its own at its place, as a screenshot's pixels show.
TEST(HtmlReport, OnePeakFigureEverywhereInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const std::string window = "1280,1600";
    const std::string driver = R"js(
(() => {
  const box = (id) => { const r = document.getElementById(id).getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  document.body.dataset.out = JSON.stringify({ dot: box('peak-dot'), chart: box('timeline-chart'), scrollY: window.scrollY });
})();
)js";
    const fs::path page = write_page_with_driver(tmp, "peak.html", small_report(), driver);
    const Dom dom(dump_dom(chromium, tmp, page, std::chrono::seconds(60), window));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");

    const std::string figure = "2.4 MiB";  // 2,500,000 B
    const std::string summary = dom.text_by_id("summary-peak");
    EXPECT_NE(summary.find("2,500,000"), std::string::npos) << summary;
    EXPECT_NE(summary.find(figure), std::string::npos) << summary;
    EXPECT_NE(summary.find("at 1.95 s"), std::string::npos) << summary;

    // The legend: the process, then the threads by their peak, each the report's figure.
    const auto peaks = dom.with_class("timeline-legend", "legend-peak");
    ASSERT_EQ(peaks.size(), 4u);
    const std::vector<std::pair<std::string, std::string>> legend = {
        {"2500000", "peak " + figure}, {"2097152", "peak 2.0 MiB"}, {"65536", "peak 64.0 KiB"}, {"5555", "peak 5.4 KiB"}};
    for (std::size_t i = 0; i < legend.size(); ++i) {
        EXPECT_EQ(peaks[i].first.attr("data-value"), legend[i].first) << i;
        EXPECT_EQ(peaks[i].second, legend[i].second) << i;
    }
    const auto items = dom.with_class("timeline-legend", "legend-item");
    ASSERT_EQ(items.size(), 4u);
    EXPECT_EQ(items[0].first.attr("data-series"), "process");
    EXPECT_EQ(items[1].first.attr("data-series"), "tid:4242");

    // The thread table says the same per thread.
    for (const auto& row : dom.rows("threads-table")) {
        if (row.value("tid") == "4242") {
            EXPECT_EQ(row.value("peak_live_bytes"), "2097152");
            EXPECT_NE(row.cell("peak_live_bytes").text.find("2.0 MiB"), std::string::npos);
        }
    }

    // The marker, at the peak's time and figure.
    const long marker = dom.find_id("peak-marker");
    ASSERT_GE(marker, 0) << "no peak marker on the chart";
    EXPECT_EQ(dom.tags()[marker].attr("data-value"), "2500000");
    EXPECT_EQ(dom.tags()[marker].attr("data-t"), "1.95");
    EXPECT_EQ(dom.text_by_id("peak-label"), "peak " + figure + " at 1.95 s");

    // Exact or sampled: one sentence, once on the page.
    EXPECT_EQ(dom.text_by_id("peak-statement"),
              "The peak, " + figure + " at 1.95 s, is sampled: live bytes were read every 100.0 ms, "
              "so the true peak may have been higher between two readings.");
    EXPECT_EQ(dom.tags()[dom.find_id("peak-statement")].attr("data-exact"), "false");
    const std::string text = dom.main_text();
    EXPECT_EQ(count_of(text, "sampled"), 1u);
    EXPECT_EQ(count_of(text, "exact"), 0u);

    // The screenshot: the marker's color inside the dot, and nowhere off the chart.
    const json rects = driver_out(dom);
    ASSERT_TRUE(rects.is_object()) << "the driver did not finish";
    EXPECT_EQ(rects["scrollY"], 0);
    const fs::path shot = tmp.path / "peak.png";
    ASSERT_TRUE(screenshot(chromium, tmp, page, shot, window));
    const auto img = decode_png(read_file(shot));
    ASSERT_TRUE(img) << "not a PNG this test reads";
    ASSERT_EQ(img->width, 1280u);
    ASSERT_EQ(img->height, 1600u);
    auto within = [](const json& r, std::uint32_t x, std::uint32_t y) {
        return x + 1 > r[0].get<double>() && x < r[2].get<double>() && y + 1 > r[1].get<double>() && y < r[3].get<double>();
    };
    ASSERT_LT(rects["chart"][3].get<double>(), 1600.0) << "the chart is below the screenshot";
    const std::uint32_t peak_color = 0xd4008f;
    std::size_t in_dot = 0, in_chart = 0, elsewhere = 0, dark = 0;
    for (std::uint32_t y = 0; y < img->height; ++y) {
        for (std::uint32_t x = 0; x < img->width; ++x) {
            const std::uint32_t px = img->pixel(x, y);
            if (px == 0x1d2330)
                ++dark;
            if (px != peak_color)
                continue;
            if (within(rects["dot"], x, y))
                ++in_dot;
            if (within(rects["chart"], x, y))
                ++in_chart;
            else
                ++elsewhere;
        }
    }
    EXPECT_GE(in_dot, 40u) << "the peak's dot is not drawn in its color where the page put it";
    EXPECT_GE(in_chart, in_dot);
    EXPECT_EQ(elsewhere, 0u) << "the peak's color off the chart";
    EXPECT_GT(dark, 1000u) << "the header and the process line are there too";
}

// Several processes held memory: the command's peak (3,000,000 B, sampled)
// is the page's figure; the report's "peak" is the largest process's own
// (2,500,000 B, exact), marked and named as that process's.
TEST(HtmlReport, PeakOfOneProcessAmongSeveralInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    json r = small_report();
    r["totals"]["peak_live_bytes"] = 3000000;
    r["peak"]["exact"] = true;
    r["peak"]["note"] = "process 4242's own peak; the command's over its 2 processes is sampled";
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const Dom dom(dump_dom(chromium, tmp, write_page(tmp, "processes.html", r)));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");

    const std::string summary = dom.text_by_id("summary-peak");
    EXPECT_NE(summary.find("3,000,000"), std::string::npos) << summary;
    EXPECT_NE(summary.find("2.9 MiB"), std::string::npos) << summary;
    EXPECT_EQ(summary.find(" at "), std::string::npos) << "the command's peak has no one time: " << summary;
    const auto peaks = dom.with_class("timeline-legend", "legend-peak");
    ASSERT_FALSE(peaks.empty());
    EXPECT_EQ(peaks[0].second, "peak 2.9 MiB");
    EXPECT_EQ(dom.text_by_id("peak-statement"),
              "The peak, 2.9 MiB, is sampled: live bytes were read every 100.0 ms, "
              "so the true peak may have been higher between two readings.");
    const long marker = dom.find_id("peak-marker");
    ASSERT_GE(marker, 0);
    EXPECT_EQ(dom.tags()[marker].attr("data-value"), "2500000");
    EXPECT_EQ(dom.text_by_id("peak-label"), "process 4242's peak 2.4 MiB at 1.95 s");
    EXPECT_NE(dom.text_by_id("peak-body").find("What was live at process 4242's own peak (2.4 MiB at 1.95 s)"),
              std::string::npos) << dom.text_by_id("peak-body");
    EXPECT_EQ(dom.text_by_id("peak-note"), "process 4242's own peak; the command's over its 2 processes is sampled");
    const auto rows = dom.rows("peak-table");
    ASSERT_FALSE(rows.empty());
    EXPECT_EQ(rows[0].value("share"), "0.8") << "a share of that process's peak";
}

// Click a frame to zoom into it, click a frame above to zoom out, the metric
// switch; frames merged from the sites' stacks, outermost first, as wide as
// their share; the hostile symbol as text.
TEST(HtmlReport, FlameGraphInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const std::string driver = R"js(
(() => {
  const HOSTILE = '\u003c/script\u003e\u003cimg src=x onerror=alert(1)\u003e';
  const box = document.getElementById('flame');
  const name = (d) => d.title.split('\n')[0];
  const all = () => [...box.querySelectorAll('.flame-frame')];
  const frames = () => all().map((d) => ({ name: name(d), text: d.textContent, depth: +d.dataset.depth,
    value: d.dataset.value, left: d.style.left, width: d.style.width, cls: d.className }));
  const click = (n) => all().find((d) => name(d) === n).click();
  const state = () => ({ focus: box.getAttribute('data-focus-name'), value: box.dataset.focusValue, total: box.dataset.total,
    metric: box.dataset.metric, drawn: box.dataset.drawn, culled: box.dataset.culled,
    reset: document.getElementById('flame-reset').disabled, frames: frames() });
  const out = { initial: state(), metrics: [...document.querySelectorAll('#flame-metric button')].map((b) => b.dataset.key) };
  out.workTitle = all().find((d) => name(d) === 'work()').title;
  click('work()'); out.work = state();
  click('main'); out.main = state();
  click(HOSTILE); out.hostile = state();
  document.getElementById('flame-reset').click(); out.reset = state();
  document.querySelector('#flame-metric button[data-key="alloc_count"]').click(); out.count = state();
  document.querySelector('#flame-metric button[data-key="peak_bytes"]').click(); out.peak = state();
  document.body.dataset.out = JSON.stringify(out);
})();
)js";
    const Dom dom(dump_dom(chromium, tmp, write_page_with_driver(tmp, "flame.html", flame_report(), driver)));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    expect_no_injected_markup(dom, 3);
    const json out = driver_out(dom);
    ASSERT_TRUE(out.is_object()) << "the driver did not finish";

    auto pct = [](double v, double total) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.4f%%", 100.0 * v / total);
        return std::string(buf);
    };
    auto find = [](const json& state, const std::string& name, int depth) -> json {
        for (const auto& f : state["frames"])
            if (f["name"] == name && f["depth"] == depth)
                return f;
        return nullptr;
    };
    EXPECT_EQ(out["metrics"], json({"alloc_bytes", "alloc_count", "live_bytes", "peak_bytes"}));

    // All of it: root -> main (and the truncated stack) -> work(), the hostile
    // frame, the unnamed one; tiny() (1 of 10,501 bytes) is culled.
    const json& in = out["initial"];
    EXPECT_EQ(in["focus"], "all");
    EXPECT_EQ(in["value"], "10501");
    EXPECT_EQ(in["total"], "10501");
    EXPECT_EQ(in["metric"], "alloc_bytes");
    EXPECT_EQ(in["drawn"], "9");
    EXPECT_EQ(in["culled"], "1");
    EXPECT_EQ(in["reset"], true);
    EXPECT_EQ(find(in, "tiny()", 2), nullptr);
    const json main_f = find(in, "main", 1);
    ASSERT_TRUE(main_f.is_object());
    EXPECT_EQ(main_f["value"], "10001");
    EXPECT_EQ(main_f["left"], "0%");
    EXPECT_EQ(main_f["width"], pct(10001, 10501));
    const json truncated = find(in, "[stack truncated]", 1);
    ASSERT_TRUE(truncated.is_object());
    EXPECT_EQ(truncated["left"], pct(10001, 10501));
    EXPECT_EQ(truncated["width"], pct(500, 10501));
    EXPECT_NE(truncated["cls"].get<std::string>().find("none"), std::string::npos);
    ASSERT_TRUE(find(in, "alloc_a()", 2).is_object()) << "the truncated stack's own alloc_a()";
    EXPECT_EQ(find(in, "alloc_a()", 2)["value"], "500");
    const json work = find(in, "work()", 2);
    ASSERT_TRUE(work.is_object());
    EXPECT_EQ(work["value"], "9000");
    EXPECT_EQ(work["left"], "0%");
    const json hostile = find(in, kHostile, 2);
    ASSERT_TRUE(hostile.is_object());
    EXPECT_EQ(hostile["text"], kHostile);
    EXPECT_EQ(hostile["value"], "900");
    EXPECT_EQ(hostile["left"], pct(9000, 10501));
    const json unnamed = find(in, "/opt/lib" + kQuotes + ".so+0xabc", 2);
    ASSERT_TRUE(unnamed.is_object());
    EXPECT_NE(unnamed["cls"].get<std::string>().find("addr"), std::string::npos);
    EXPECT_EQ(find(in, "alloc_a()", 3)["value"], "6000");
    EXPECT_EQ(find(in, "alloc_b()", 3)["left"], pct(6000, 10501));
    EXPECT_EQ(out["workTitle"],
              "work()\nBytes allocated: 8.8 KiB (85.7 % of all)\nAllocations: 36\nLive at the end: 600 B\n"
              "Live at the peak: 4.9 KiB");

    // Zoomed into work(): it spans the width, its callers above it, full width.
    const json& w = out["work"];
    EXPECT_EQ(w["focus"], "work()");
    EXPECT_EQ(w["value"], "9000");
    EXPECT_EQ(w["drawn"], "3");
    EXPECT_EQ(w["culled"], "0");
    EXPECT_EQ(w["reset"], false);
    EXPECT_EQ(find(w, "work()", 2)["width"], "100%");
    EXPECT_EQ(find(w, "alloc_a()", 3)["width"], pct(6000, 9000));
    EXPECT_EQ(find(w, "alloc_b()", 3)["left"], pct(6000, 9000));
    EXPECT_EQ(find(w, "alloc_b()", 3)["width"], pct(3000, 9000));
    for (const char* above : {"all", "main"}) {
        const json f = find(w, above, above == std::string("all") ? 0 : 1);
        ASSERT_TRUE(f.is_object()) << above;
        EXPECT_EQ(f["width"], "100%") << above;
        EXPECT_NE(f["cls"].get<std::string>().find("ancestor"), std::string::npos) << above;
    }
    EXPECT_EQ(find(w, kHostile, 2), nullptr);

    // Out to main (a frame above), then into the hostile frame, then reset.
    EXPECT_EQ(out["main"]["focus"], "main");
    EXPECT_EQ(out["main"]["value"], "10001");
    EXPECT_EQ(out["main"]["drawn"], "6");
    EXPECT_EQ(out["hostile"]["focus"], kHostile);
    EXPECT_EQ(out["hostile"]["value"], "900");
    EXPECT_EQ(out["hostile"]["drawn"], "1");
    EXPECT_EQ(out["reset"]["focus"], "all");
    EXPECT_EQ(out["reset"]["reset"], true);

    // By count: alloc_b() (30) before alloc_a() (6); tiny() now wide enough.
    const json& c = out["count"];
    EXPECT_EQ(c["metric"], "alloc_count");
    EXPECT_EQ(c["total"], "45");
    EXPECT_EQ(c["culled"], "0");
    EXPECT_EQ(find(c, "alloc_b()", 3)["left"], "0%");
    EXPECT_EQ(find(c, "alloc_b()", 3)["width"], pct(30, 45));
    EXPECT_EQ(find(c, "alloc_a()", 3)["left"], pct(30, 45));
    EXPECT_TRUE(find(c, "tiny()", 2).is_object());

    // Live at the peak: the two sites the peak lists.
    const json& p = out["peak"];
    EXPECT_EQ(p["metric"], "peak_bytes");
    EXPECT_EQ(p["total"], "7000");
    EXPECT_EQ(p["drawn"], "5");
    EXPECT_EQ(find(p, "[stack truncated]", 1), nullptr);
    EXPECT_EQ(find(p, kHostile, 2)["width"], pct(2000, 7000));
}

// Drag across the chart to zoom in, the wheel in and out, Reset zoom; the
// y axis and the lines follow, the peak marker shows only in its span.
TEST(HtmlReport, TimelineZoomInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const std::string driver = R"js(
(() => {
  const svg = () => document.getElementById('timeline-chart');
  const overlay = () => svg().querySelector('rect.overlay');
  const at = (t) => { const r = overlay().getBoundingClientRect(), s = svg();
                      return r.left + (t - +s.dataset.x0) / (+s.dataset.x1 - +s.dataset.x0) * r.width; };
  const y = () => overlay().getBoundingClientRect().top + 20;
  const state = () => {
    const s = svg(), d = s.querySelector('path.series[data-series="process"]').getAttribute('d');
    const label = document.getElementById('peak-label');
    return { x0: +s.dataset.x0, x1: +s.dataset.x1, zoomed: s.dataset.zoomed, points: (d.match(/[ML]/g) || []).length,
             marker: !!document.getElementById('peak-marker'), label: label ? label.textContent : null,
             reset: document.getElementById('timeline-reset').disabled };
  };
  const drag = (a, b) => {
    const xa = at(a), xb = at(b);
    overlay().dispatchEvent(new MouseEvent('mousedown', { clientX: xa, clientY: y(), button: 0, bubbles: true, cancelable: true }));
    window.dispatchEvent(new MouseEvent('mousemove', { clientX: xb, clientY: y() }));
    window.dispatchEvent(new MouseEvent('mouseup', { clientX: xb, clientY: y() }));
  };
  const wheel = (t, dy) => overlay().dispatchEvent(new WheelEvent('wheel', { clientX: at(t), clientY: y(), deltaY: dy,
                                                                              bubbles: true, cancelable: true }));
  const out = { initial: state() };
  drag(0.45, 1.05); out.dragged = state();
  document.getElementById('timeline-reset').click(); out.reset = state();
  wheel(1.05, -100); out.wheelIn = state();
  wheel(1.05, 100); wheel(1.05, 100); out.wheelOut = state();
  drag(1.8, 2.0); out.peak = state();
  document.body.dataset.out = JSON.stringify(out);
})();
)js";
    const Dom dom(dump_dom(chromium, tmp, write_page_with_driver(tmp, "zoom.html", small_report(), driver)));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    const json out = driver_out(dom);
    ASSERT_TRUE(out.is_object()) << "the driver did not finish";
    const double pixel = 0.005;  // 2 s over ~1,100 pixels: a pointer position is good to a pixel or two

    EXPECT_EQ(out["initial"]["x0"], 0);
    EXPECT_EQ(out["initial"]["x1"], 2);
    EXPECT_EQ(out["initial"]["zoomed"], "false");
    EXPECT_EQ(out["initial"]["points"], 20);
    EXPECT_EQ(out["initial"]["marker"], true);
    EXPECT_EQ(out["initial"]["reset"], true);

    // 0.45 s to 1.05 s: the samples from 0.5 to 1.0 s and one either side.
    const json& d = out["dragged"];
    EXPECT_NEAR(d["x0"].get<double>(), 0.45, pixel);
    EXPECT_NEAR(d["x1"].get<double>(), 1.05, pixel);
    EXPECT_EQ(d["zoomed"], "true");
    EXPECT_EQ(d["points"], 8);
    EXPECT_EQ(d["marker"], false) << "the peak, at 1.95 s, is outside";
    EXPECT_EQ(d["reset"], false);

    EXPECT_EQ(out["reset"]["x0"], 0);
    EXPECT_EQ(out["reset"]["x1"], 2);
    EXPECT_EQ(out["reset"]["points"], 20);
    EXPECT_EQ(out["reset"]["marker"], true);

    // The wheel, at 1.05 s: in by a fifth on each side (0.21 s to 1.81 s: the
    // samples from 0.3 to 1.8 s and one either side), then out to the whole.
    const json& wi = out["wheelIn"];
    EXPECT_NEAR(wi["x0"].get<double>(), 0.21, pixel);
    EXPECT_NEAR(wi["x1"].get<double>(), 1.81, pixel);
    EXPECT_EQ(wi["points"], 18);
    EXPECT_EQ(wi["marker"], false);
    EXPECT_EQ(out["wheelOut"]["x0"], 0);
    EXPECT_EQ(out["wheelOut"]["x1"], 2);
    EXPECT_EQ(out["wheelOut"]["zoomed"], "false");
    EXPECT_EQ(out["wheelOut"]["reset"], true);

    const json& p = out["peak"];
    EXPECT_NEAR(p["x0"].get<double>(), 1.8, pixel);
    EXPECT_EQ(p["marker"], true);
    EXPECT_EQ(p["label"], "peak 2.4 MiB at 1.95 s");
}

// Threads of one name are one row: "x94", their figures summed, the peak the
// largest of theirs, opened to list each; the hostile name as text.
TEST(HtmlReport, ThreadsGroupedByNameInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    json r = {{"schema", "memscope-trace/2"}, {"target", {{"pid", 1}, {"comm", "pool"}}}, {"frames", json::array()}};
    r["threads"] = json::array({thread_json(1, "main", 100, 1000, 0, 10, 500)});
    for (int tid = 100; tid < 194; ++tid)
        r["threads"].push_back(thread_json(tid, "worker", tid, tid * 10, 0, 1, tid * 100));
    for (int tid : {10, 11})
        r["threads"].push_back(thread_json(tid, kHostile, 5, 50, 0, 2, 7));
    for (auto& t : r["threads"])
        t["temporary_count"] = 1;
    const std::string driver = R"js(
(() => {
  const row = document.querySelector('#threads-table tr.row[data-threads="94"]');
  row.querySelector('button.toggle').click();
  const d = row.nextElementSibling;
  document.body.dataset.out = JSON.stringify({ open: !d.hidden, members: d.querySelectorAll('tr.member').length });
})();
)js";
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const Dom dom(dump_dom(chromium, tmp, write_page_with_driver(tmp, "threads.html", r, driver)));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    expect_no_injected_markup(dom, 3);

    const auto rows = dom.rows("threads-table");  // by bytes
    ASSERT_EQ(rows.size(), 3u);
    const Row& pool = rows[0];
    EXPECT_EQ(pool.attrs.at("data-name"), "worker");
    EXPECT_EQ(pool.attrs.at("data-threads"), "94");
    EXPECT_EQ(pool.cell("name").text, "\u25beworkerx94");  // opened by the driver
    EXPECT_EQ(pool.value("threads"), "94");
    EXPECT_FALSE(pool.cell("tid").has_value) << "a pool has no one tid";
    EXPECT_EQ(pool.value("alloc_count"), "13771");    // 100 + ... + 193
    EXPECT_EQ(pool.value("alloc_bytes"), "137710");
    EXPECT_EQ(pool.value("live_bytes"), "94");
    EXPECT_EQ(pool.value("peak_live_bytes"), "19300"); // the largest, not a sum
    EXPECT_EQ(pool.value("temporary_count"), "94");
    EXPECT_EQ(rows[1].cell("name").text, "main");
    EXPECT_EQ(rows[1].value("threads"), "1");
    EXPECT_EQ(rows[1].value("tid"), "1");
    EXPECT_EQ(rows[1].value("peak_live_bytes"), "500");
    EXPECT_EQ(rows[2].attrs.at("data-name"), kHostile);
    EXPECT_EQ(rows[2].cell("name").text, "\u25b8" + kHostile + "x2");
    EXPECT_EQ(rows[2].value("alloc_bytes"), "100");
    EXPECT_EQ(rows[2].value("peak_live_bytes"), "7");
    EXPECT_NE(dom.text_by_id("threads-body").find("97 threads under 3 names"), std::string::npos);

    // Each pool opens to its members, largest first; a lone thread has nothing to open.
    const auto toggles = dom.with_class("threads-table", "toggle");
    EXPECT_EQ(toggles.size(), 2u);
    const auto members = dom.with_class("threads-table", "member");
    ASSERT_EQ(members.size(), 96u);
    EXPECT_EQ(members[0].first.attr("data-tid"), "193");
    EXPECT_EQ(members[93].first.attr("data-tid"), "100");
    const json out = driver_out(dom);
    ASSERT_TRUE(out.is_object()) << "the driver did not finish";
    EXPECT_EQ(out["open"], true);
    EXPECT_EQ(out["members"], 94);
}

// Temporaries (the summary, the top temporary sites, the sites' column), the
// size histogram (the report's, gaps drawn empty; a site's, when its row
// opens), and what was live at the peak, joined with the sites by id.
TEST(HtmlReport, TemporariesSizesAndPeakSitesInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const std::string driver = R"js(
(() => {
  const row = document.querySelector('#sites-table tr.row[data-id="a1"]');
  row.querySelector('td').click();
  const bars = (svg) => (svg ? [...svg.querySelectorAll('rect.bar')].map((b) => [+b.dataset.min, +b.dataset.count]) : null);
  const out = { siteBars: bars(row.nextElementSibling.querySelector('svg.histogram')) };
  out.before = document.getElementById('sizes-chart').dataset.metric;
  document.querySelector('#sizes-metric button[data-key="bytes"]').click();
  out.after = document.getElementById('sizes-chart').dataset.metric;
  document.body.dataset.out = JSON.stringify(out);
})();
)js";
    const Dom dom(dump_dom(chromium, tmp, write_page_with_driver(tmp, "parts.html", small_report(), driver)));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    expect_no_injected_markup(dom, 3);
    const json out = driver_out(dom);
    ASSERT_TRUE(out.is_object()) << "the driver did not finish";

    // Temporaries: by their count, sites without any left out.
    const auto temps = dom.rows("temporaries-table");
    ASSERT_EQ(temps.size(), 2u);
    EXPECT_EQ(temps[0].attrs.at("data-id"), "a1");
    EXPECT_EQ(temps[0].value("temporary_count"), "1200");
    EXPECT_EQ(temps[0].value("alloc_count"), "5000");
    EXPECT_EQ(temps[0].value("temporary_share"), "0.24");
    EXPECT_EQ(temps[0].cell("temporary_share").text, "24.0 %");
    EXPECT_EQ(temps[1].attrs.at("data-id"), "b2");
    EXPECT_EQ(temps[1].value("temporary_count"), "34");
    EXPECT_EQ(temps[1].cell("temporary_share").text, "11.3 %");
    EXPECT_NE(temps[1].cell("function").text.find(kHostile), std::string::npos);
    EXPECT_NE(dom.text_by_id("temporaries-body").find("1,234 of 123,456,789 allocations were temporary"), std::string::npos);
    const auto sites = dom.rows("sites-table");
    ASSERT_EQ(sites.size(), 3u);
    EXPECT_EQ(sites[0].value("temporary_count"), "1200");
    EXPECT_EQ(sites[2].value("temporary_count"), "0");

    // The report's sizes: classes 0 (0-1 B) to 16 (64-128 KiB), the empty ones too.
    const auto bars = dom.with_class("sizes-chart", "bar");
    ASSERT_EQ(bars.size(), 17u);
    std::map<std::string, Tag> by_min;
    for (const auto& [bar, text] : bars)
        by_min[bar.attr("data-min")] = bar;
    ASSERT_EQ(by_min.size(), 17u);
    EXPECT_EQ(by_min["0"].attr("data-max"), "1");
    EXPECT_EQ(by_min["0"].attr("data-count"), "3");
    EXPECT_EQ(by_min["2"].attr("data-max"), "3");
    EXPECT_EQ(by_min["2"].attr("data-count"), "0");
    EXPECT_EQ(by_min["16"].attr("data-max"), "31");
    EXPECT_EQ(by_min["16"].attr("data-count"), "100");
    EXPECT_EQ(by_min["16"].attr("data-bytes"), "2400");
    EXPECT_EQ(by_min["65536"].attr("data-max"), "131071");
    EXPECT_EQ(by_min["65536"].attr("data-bytes"), "65536");
    EXPECT_EQ(out["before"], "count");
    EXPECT_EQ(out["after"], "bytes");
    // A site's own, drawn when its row opened: 16 B to 32 KiB.
    ASSERT_TRUE(out["siteBars"].is_array()) << "no histogram under the opened site";
    ASSERT_EQ(out["siteBars"].size(), 12u);
    EXPECT_EQ(out["siteBars"][0], json({16, 4000}));
    EXPECT_EQ(out["siteBars"][1], json({32, 0}));
    EXPECT_EQ(out["siteBars"][11], json({32768, 1000}));

    // Live at the peak: largest first, named from the sites; an id the sites lack said so.
    const auto peak = dom.rows("peak-table");
    ASSERT_EQ(peak.size(), 4u);
    EXPECT_EQ(peak[0].attrs.at("data-id"), "a1");
    EXPECT_NE(peak[0].cell("function").text.find("compute(int)"), std::string::npos);
    EXPECT_EQ(peak[0].value("live_bytes"), "2000000");
    EXPECT_EQ(peak[0].value("live_count"), "30");
    EXPECT_EQ(peak[0].value("share"), "0.8");
    EXPECT_EQ(peak[1].attrs.at("data-id"), "b2");
    EXPECT_NE(peak[1].cell("function").text.find(kHostile), std::string::npos);
    EXPECT_EQ(peak[1].value("live_bytes"), "4444");
    EXPECT_EQ(peak[2].attrs.at("data-id"), "ff");
    EXPECT_EQ(peak[2].cell("function").text, "[site ff of pid 4242, not among the sites]");
    EXPECT_EQ(peak[2].value("live_bytes"), "1000");
    EXPECT_EQ(peak[3].attrs.at("data-id"), "a1");
    EXPECT_EQ(peak[3].cell("function").text, "[site a1 of pid 999, not among the sites]");
    EXPECT_EQ(peak[3].value("live_bytes"), "500");
    EXPECT_EQ(dom.text_by_id("peak-note"), "sites at the peak: " + kHostile);
}

// A report of an older memscope-trace (no peak, sizes or temporaries; schema
// 1): a note says what is missing, the rest is drawn, the peak is the totals'.
TEST(HtmlReport, OlderReportSaysWhatIsMissingInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    const Dom dom(dump_dom(chromium, tmp, write_page(tmp, "older.html", older_small_report())));
    ASSERT_NE(dom.first("body"), nullptr);
    EXPECT_EQ(dom.first("body")->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    expect_no_injected_markup(dom);
    const long note = dom.find_id("older-report");
    ASSERT_GE(note, 0);
    EXPECT_EQ(dom.tags()[note].attr("data-missing"), "peak size_histogram temporary_count");
    EXPECT_EQ(dom.text_by_id("older-report"),
              "This report was written by an older memscope-trace and lacks the peak (its time and what was live then), "
              "allocation sizes and temporary counts: those parts are left out, the rest is drawn.");
    EXPECT_EQ(dom.text_by_id("peak-statement"), "The peak, 941.9 MiB, is not said to be exact or sampled in this report.");
    EXPECT_EQ(dom.find_id("peak-marker"), -1);
    const auto peaks = dom.with_class("timeline-legend", "legend-peak");
    ASSERT_FALSE(peaks.empty());
    EXPECT_EQ(peaks[0].second, "peak 941.9 MiB") << "the totals' figure, as in the summary";
    EXPECT_EQ(dom.text_by_id("sizes-body"), "This report has no size histogram.");
    EXPECT_EQ(dom.text_by_id("temporaries-body"), "This report does not count temporary allocations.");
    EXPECT_EQ(dom.text_by_id("peak-body"), "This report does not say when the peak was or what was live then.");
    EXPECT_EQ(dom.find_id("sites-table") >= 0 && dom.rows("sites-table").size() == 3u, true);
    EXPECT_EQ(dom.rows("threads-table").size(), 3u);
    EXPECT_FALSE(dom.rows("sites-table")[0].cells.count("temporary_count")) << "no column of figures it lacks";
    // The flame graph from schema 1's written-out stacks, without "live at the peak".
    const long flame = dom.find_id("flame");
    ASSERT_GE(flame, 0);
    EXPECT_EQ(dom.tags()[flame].attr("data-total"), "123522325");
    for (const auto& t : dom.inside("flame-metric"))
        EXPECT_NE(t.attr("data-key"), "peak_bytes");
    const auto frames = dom.with_class("flame", "flame-frame");
    bool hostile = false;
    for (const auto& [tag, text] : frames)
        hostile = hostile || (tag.attr("title").rfind(kHostile + "\n", 0) == 0);
    EXPECT_TRUE(hostile) << "the hostile symbol's frame, named in its tooltip";
}

// --min-age: a leak lists its blocks old enough; one whose blocks are all
// younger is left out; the page says how many were not listed.
TEST(HtmlReport, YoungBlocksAreNotListedAsLeaksInChromium)
{
    REQUIRE_CHROMIUM(chromium);
    TempDir tmp;
    ASSERT_FALSE(tmp.path.empty());
    json r = small_report();
    r["stacks"]["leak_min_age_s"] = 1;
    r["leaks"][0]["young_count"] = 10;
    r["leaks"][0]["young_bytes"] = 250000;
    json fresh = r["leaks"][0];
    fresh["id"] = "d4";
    fresh["live_count"] = 5;
    fresh["live_bytes"] = 500;
    fresh["young_count"] = 5;
    fresh["young_bytes"] = 500;
    r["leaks"].push_back(fresh);
    const fs::path page = write_page(tmp, "report.html", r);
    const Dom dom(dump_dom(chromium, tmp, page));
    const Tag* body = dom.first("body");
    ASSERT_NE(body, nullptr);
    EXPECT_EQ(body->attr("data-rendered"), "ok") << dom.text_by_id("errors");
    const auto leaks = dom.rows("leaks-table");
    ASSERT_EQ(leaks.size(), 2u);
    EXPECT_EQ(leaks[0].attrs.at("data-id"), "a1");
    EXPECT_EQ(leaks[0].value("live_count"), "30");
    EXPECT_EQ(leaks[0].value("live_bytes"), "750000");
    EXPECT_EQ(leaks[1].attrs.at("data-id"), "c3"); // d4 is all working set
    EXPECT_NE(dom.text_by_id("young-blocks").find("15 blocks ("), std::string::npos) << dom.text_by_id("young-blocks");
    EXPECT_NE(dom.text_by_id("young-blocks").find("younger than 1 s"), std::string::npos);
}
