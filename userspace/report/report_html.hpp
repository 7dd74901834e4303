// The HTML report: one self-contained page that draws the JSON report.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace memscope {

// One self-contained HTML page (no network: inline CSS/JS/SVG only) for a
// report, given as the JSON document (schema "memscope-trace/2"; /1 is read too).
//
// The document is embedded as data (every '<', '>' and '&' \u-escaped, so no
// target string can close the script element) and drawn by the page's script
// with DOM text nodes only. The per-variable records ("variables", possibly
// millions) are left out and only counted; everything else travels as is.
std::string render_html(const nlohmann::json& report);

} // namespace memscope
