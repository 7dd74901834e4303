// libFuzzer over the report reader and the comparison (userspace/report/report_read.cpp, diff.cpp).
// An input is an options line, then the base report, a NUL byte, the new
// report; without a NUL the report is compared with itself. Words of the
// options line: text, markdown, json or junit picks the format, "leaks" asks
// for --fail-on-new-leaks, any other is a --max-increase (those that do not
// parse go through check_diff_options, then are left out, so the reports are
// still read). Whatever the input: an exit code of 0, 1 or 2, the same
// verdict from the text and from the parsed documents, and with --format
// json, output that parses back.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "diff.hpp"

namespace {

std::FILE* null_sink()
{
    static std::FILE* sink = std::fopen("/dev/null", "w");
    return sink;
}

memscope::DiffOptions options_from(const std::string& line)
{
    memscope::DiffOptions o;
    std::size_t start = 0;
    for (int words = 0; start <= line.size() && words < 16; ++words) {
        std::size_t space = line.find(' ', start);
        std::string word = line.substr(start, space == std::string::npos ? std::string::npos : space - start);
        start = space == std::string::npos ? line.size() + 1 : space + 1;
        if (word == "text" || word == "markdown" || word == "json" || word == "junit") {
            o.format = word;
        } else if (word == "leaks") {
            o.fail_on_new_leaks = true;
        } else if (!word.empty()) {
            std::string error;
            memscope::DiffOptions one;
            one.max_increase.push_back(word);
            bool ok = memscope::parse_threshold(word, error).has_value();
            if (ok != memscope::check_diff_options(one).empty() || ok != error.empty())
                std::abort(); // the two checks disagree
            if (ok)
                o.max_increase.push_back(word);
        }
    }
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string input(reinterpret_cast<const char*>(data), size);
    std::size_t newline = input.find('\n');
    std::string line = newline == std::string::npos ? std::string() : input.substr(0, newline);
    std::string rest = newline == std::string::npos ? input : input.substr(newline + 1);
    std::size_t nul = rest.find('\0');
    std::string base = rest.substr(0, nul);
    std::string current = nul == std::string::npos ? base : rest.substr(nul + 1);
    memscope::DiffOptions options = options_from(line);

    if (options.format != "json") {
        int code = memscope::diff_texts(base, current, options, null_sink(), null_sink());
        if (code < 0 || code > 2)
            std::abort();
        // The in-memory entry (run --baseline) on the same documents.
        nlohmann::json b = nlohmann::json::parse(base, nullptr, false);
        nlohmann::json c = nlohmann::json::parse(current, nullptr, false);
        int again = memscope::diff_reports(b, c, options, null_sink(), null_sink(), "base", "new");
        if (again < 0 || again > 2 || (!b.is_discarded() && !c.is_discarded() && again != code))
            std::abort(); // read from text or from memory, one verdict
        return 0;
    }
    char* buf = nullptr;
    std::size_t len = 0;
    std::FILE* out = open_memstream(&buf, &len);
    if (!out)
        return 0;
    int code = memscope::diff_texts(base, current, options, out, null_sink());
    std::fclose(out);
    std::string text(buf ? buf : "", len);
    std::free(buf);
    if (code < 0 || code > 2)
        std::abort();
    if (code != 2 && nlohmann::json::parse(text, nullptr, false).is_discarded())
        std::abort(); // the json format must parse back
    if (code == 2 && !text.empty())
        std::abort(); // bad input writes nothing but the reason
    return 0;
}
