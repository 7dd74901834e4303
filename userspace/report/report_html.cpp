// The HTML report: one self-contained page (inline CSS, JS and SVG, no
// network) that draws the JSON report in the browser. The report travels as
// data in the page; the script reads it and builds the page with DOM text
// nodes, so nothing from the target is ever parsed as markup.
#include "report_html.hpp"
#include "html_assets.hpp" // report.css and report.js, embedded at build time

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace memscope {

using nlohmann::json;

namespace {

std::string dump_ascii(const json& value)
{
    // ensure_ascii also escapes U+2028/U+2029; bytes that are not UTF-8 are
    // replaced rather than trusted.
    return value.dump(-1, ' ', true, json::error_handler_t::replace);
}

// Inside <script> the HTML parser looks for "</script" and "<!--"; JSON has
// no '<', '>' or '&' outside strings, and inside them \u escapes are exact.
void append_script_safe(std::string& out, std::string_view json_text)
{
    for (char c : json_text) {
        switch (c) {
        case '<': out += "\\u003c"; break;
        case '>': out += "\\u003e"; break;
        case '&': out += "\\u0026"; break;
        default: out += c;
        }
    }
}

// The report minus the per-variable records (the page shows only their
// number, and there may be millions): one member at a time, no copy.
std::string page_data(const json& report, std::size_t& variables_count)
{
    variables_count = 0;
    if (!report.is_object())
        return dump_ascii(report);
    std::string out = "{";
    for (auto it = report.begin(); it != report.end(); ++it) {
        if (it.key() == "variables") {
            variables_count = it->is_array() ? it->size() : 0;
            continue;
        }
        if (out.size() > 1)
            out += ',';
        out += dump_ascii(json(it.key()));
        out += ':';
        out += dump_ascii(*it);
    }
    out += '}';
    return out;
}

// The Content-Security-Policy allows only the page's own script (by this
// nonce) and no fetches at all: defence in depth behind the escaping.
std::string make_nonce()
{
    std::uint64_t a = 0, b = 0;
    try {
        std::random_device rd;
        a = (std::uint64_t(rd()) << 32) ^ rd();
        b = (std::uint64_t(rd()) << 32) ^ rd();
    } catch (...) {
        a = std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
        b = std::uint64_t(std::chrono::system_clock::now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ULL;
    }
    static const char digits[] = "0123456789abcdef";
    std::string nonce;
    for (std::uint64_t v : {a, b})
        for (int i = 0; i < 16; ++i)
            nonce += digits[(v >> (i * 4)) & 0xf];
    return nonce;
}

constexpr std::string_view kHeadBeforeNonce = R"page(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="memscope-trace">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; script-src 'nonce-)page";

constexpr std::string_view kHeadAfterNonce = R"page('">
<title>memscope-trace report</title>
<style>
)page";

constexpr std::string_view kBody = R"page(</style>
</head>
<body data-rendered="pending">
<header class="top"><div class="inner">
<h1>memscope-trace report<span class="tool" id="tool"></span></h1>
<div class="target-line" id="target-line"></div>
<nav><a href="#summary-section">Summary</a><a href="#processes-section" id="processes-link" hidden>Processes</a><a href="#timeline-section">Timeline</a><a href="#peak-section">Peak</a><a href="#flame-section">Flame graph</a><a href="#sizes-section">Sizes</a><a href="#modes-section">Mode changes</a><a href="#sites-section">Sites</a><a href="#temporaries-section">Temporaries</a><a href="#leaks-section">Leaks</a><a href="#variables-section">Variables</a><a href="#threads-section">Threads</a></nav>
</div></header>
<noscript><p class="noscript">This report is drawn by JavaScript, which is off. The data is in the page source, as JSON.</p></noscript>
<main>
<div class="errors" id="errors" hidden></div>
<section id="summary-section"><h2>Summary</h2><div id="summary"></div></section>
<section id="processes-section" hidden><h2>Processes</h2><div id="processes-body"></div></section>
<section id="timeline-section"><h2>Live bytes over time</h2><div id="timeline-body"></div></section>
<section id="peak-section"><h2>Live at the peak</h2><div id="peak-body"></div></section>
<section id="flame-section"><h2>Flame graph</h2><div id="flame-body"></div></section>
<section id="sizes-section"><h2>Allocation sizes</h2><div id="sizes-body"></div></section>
<section id="modes-section"><h2>Mode changes</h2><div id="modes-body"></div></section>
<section id="sites-section"><h2>Top allocation sites</h2><div id="sites-body"></div></section>
<section id="temporaries-section"><h2>Top temporary sites</h2><div id="temporaries-body"></div></section>
<section id="leaks-section"><h2>Leaks</h2><div id="leaks-body"></div></section>
<section id="variables-section"><h2>Variables</h2><div id="variables-body"></div></section>
<section id="threads-section"><h2>Threads</h2><div id="threads-body"></div></section>
</main>
<script type="application/json" id="report" data-variables-count=")page";

constexpr std::string_view kScriptOpen = R"page(<script nonce=")page";

constexpr std::string_view kEnd = R"page(</script>
</body>
</html>
)page";

} // namespace

std::string render_html(const json& report)
{
    std::size_t variables_count = 0;
    const std::string data = page_data(report, variables_count);
    const std::string nonce = make_nonce();

    std::string page;
    page.reserve(data.size() + kStyle.size() + kScript.size() + 4096);
    page += kHeadBeforeNonce;
    page += nonce;
    page += kHeadAfterNonce;
    page += kStyle;
    page += kBody;
    page += std::to_string(variables_count);
    page += "\">";
    append_script_safe(page, data);
    page += "</script>\n";
    page += kScriptOpen;
    page += nonce;
    page += "\">\n";
    page += kScript;
    page += kEnd;
    return page;
}

} // namespace memscope
