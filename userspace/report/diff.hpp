// Comparing two JSON reports (schema memscope-trace/1): what changed, worst
// first, and whether an increase passed a threshold (the CI regression gate).
// Reports are read by the one report reader (report_json.hpp); no kernel
// code is linked, so the fuzzer builds it alone.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.hpp"

namespace memscope {

struct DiffOptions {
    std::vector<std::string> max_increase; // "METRIC=PCT%" or "METRIC=ABS"
    bool fail_on_new_leaks = false;
    std::string format = "text"; // text | markdown | json | junit
};

// Exit codes of diff_reports/diff_files.
inline constexpr int kDiffPass = 0;
inline constexpr int kDiffRegression = 1;
inline constexpr int kDiffBadInput = 2;

// One --max-increase, parsed.
struct DiffThreshold {
    std::string spec;   // as given
    std::string metric; // a numeric metric of `totals`
    bool percent = false;
    std::uint64_t percent_micro = 0; // the percentage times 1,000,000
    std::uint64_t limit = 0;         // the absolute increase allowed (bytes or calls)
};

// The metrics of `totals` a threshold may name.
const std::vector<std::string>& diff_metrics();

// Parse "METRIC=PCT%" or "METRIC=ABS" (a byte metric also takes KiB, MiB,
// GiB, fractions allowed, rounded down to a whole byte); an error sentence in
// `error` when it is neither.
std::optional<DiffThreshold> parse_threshold(const std::string& spec, std::string& error);

// Validate thresholds and format before anything runs: an error sentence, or empty.
std::string check_diff_options(const DiffOptions& options);

// Compare two report documents; writes the comparison to `out`, a one-line
// reason to `err` on bad input. Returns the exit code (0, 1, 2). A document is
// read as the file it would be written to (strings that are not UTF-8 get
// U+FFFD, as the report writer does), so the tracer's own report in memory
// matches a report read from disk. The labels (paths, say) head the output
// and name the reports in errors.
int diff_reports(const nlohmann::json& base, const nlohmann::json& current, const DiffOptions& options,
                 std::FILE* out, std::FILE* err, const std::string& base_label = {},
                 const std::string& current_label = {});

// The same from reports in memory (run --baseline: the baseline read, the
// run's own report).
int diff_reports(const Report& base, const Report& current, const DiffOptions& options, std::FILE* out,
                 std::FILE* err, const std::string& base_label = {}, const std::string& current_label = {});

// The same from files (read and validated here: bad input, text that is not
// UTF-8 among it, is exit 2).
int diff_files(const std::string& base_path, const std::string& current_path, const DiffOptions& options,
               std::FILE* out, std::FILE* err);

// The same from the files' contents (what diff_files reads; the fuzzer's entry).
int diff_texts(const std::string& base_text, const std::string& current_text, const DiffOptions& options,
               std::FILE* out, std::FILE* err);

} // namespace memscope
