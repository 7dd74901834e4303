// The node-daemon deployment (tools/deploy): the systemd unit passes
// systemd-analyze verify with the built binary in its ExecStart (and a
// broken copy does not, so the check can fail), and the Kubernetes
// DaemonSet, read by a real YAML parser, runs the tracer privileged in the
// host's PID namespace with its endpoint probed. Neither needs root.
#include "harness.hpp"

#include "../temp_dir.hpp"

#include <algorithm>
#include <filesystem>

namespace e2e {
namespace {

using memscope_test::TempDir;

// tools/deploy: from SOURCE_DIR if the build defines it, else from this file's path.
#ifdef SOURCE_DIR
const std::filesystem::path kDeployDir = std::filesystem::path(SOURCE_DIR) / "tools" / "deploy";
#else
const std::filesystem::path kDeployDir =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "tools" / "deploy";
#endif
const std::string kUnitName = "memscope-trace.service";
const std::string kUnitExec = "ExecStart=/usr/local/bin/memscope-trace ";



// The unit as shipped, its ExecStart's binary replaced by `bin` (verify
// checks that the binary exists), written as DIR/memscope-trace.service;
// with `from`, that one line (whole) becomes `to`, its number in *line_no.
std::string write_unit(const TempDir& dir, const std::string& bin, const std::string& from = {},
                       const std::string& to = {}, int* line_no = nullptr)
{
    const std::string shipped = read_all((kDeployDir / kUnitName).string());
    EXPECT_FALSE(shipped.empty()) << "no unit at " << kDeployDir / kUnitName;
    // systemd's quoting: % doubles; a path with blanks is quoted.
    std::string quoted;
    for (char c : bin)
        quoted += c == '%' ? std::string("%%") : std::string(1, c);
    EXPECT_EQ(bin.find_first_of("\"\\'\n"), std::string::npos) << bin;
    if (quoted.find_first_of(" \t") != std::string::npos)
        quoted = "\"" + quoted + "\"";
    std::string text;
    int n = 0, execs = 0, edits = 0;
    for (std::string line : lines_of(shipped)) {
        ++n;
        if (line.rfind(kUnitExec, 0) == 0) {
            line = "ExecStart=" + quoted + " " + line.substr(kUnitExec.size());
            ++execs;
        }
        if (!from.empty() && line == from) {
            line = to;
            ++edits;
            if (line_no)
                *line_no = n;
        }
        text += line + "\n";
    }
    EXPECT_EQ(execs, 1) << "one ExecStart running /usr/local/bin/memscope-trace";
    EXPECT_EQ(edits, from.empty() ? 0 : 1) << "the line to break: " << from;
    const std::string path = dir / kUnitName;
    std::ofstream(path) << text;
    return path;
}

struct Verified {
    int status = -1;
    std::string output;            // stdout and stderr
    std::vector<std::string> problems; // its lines about our unit that say something is wrong
    bool accepted() const { return status == 0 && problems.empty(); }
};

// systemd-analyze verify UNIT. Warnings about the machine's other units
// may come too: only the lines naming ours count.
Verified verify(const std::string& analyze, const std::string& unit)
{
    Result r = run({analyze, "verify", unit});
    Verified v;
    v.status = r.status;
    v.output = r.out + r.err;
    for (const auto& line : lines_of(v.output)) {
        if (line.find(kUnitName) == std::string::npos)
            continue;
        for (const char* bad : {"Unknown", "unknown", "Failed", "failed", "ignoring", "Invalid", "invalid",
                                "not executable", "No such file", "deprecated"})
            if (line.find(bad) != std::string::npos) {
                v.problems.push_back(line);
                break;
            }
    }
    return v;
}

// KEY=VALUE lines of a unit, comments left out (a key may repeat).
std::multimap<std::string, std::string> directives(const std::string& text)
{
    std::multimap<std::string, std::string> out;
    for (const auto& line : lines_of(text)) {
        auto eq = line.find('=');
        if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[' || eq == std::string::npos)
            continue;
        out.emplace(line.substr(0, eq), line.substr(eq + 1));
    }
    return out;
}

TEST(Deploy, SystemdUnitVerifies)
{
    REQUIRE_TOOL(analyze, "systemd-analyze", "systemd");
    // What the unit promises, as shipped.
    const auto d = directives(read_all((kDeployDir / kUnitName).string()));
    auto one = [&](const std::string& key) {
        EXPECT_EQ(d.count(key), 1u) << key;
        auto it = d.find(key);
        return it == d.end() ? std::string() : it->second;
    };
    EXPECT_EQ(one("Type"), "simple");
    EXPECT_EQ(one("ExecStart"), "/usr/local/bin/memscope-trace -a --listen 127.0.0.1:9877"); // loopback by default
    EXPECT_EQ(one("SuccessExitStatus"), "143"); // 128+SIGTERM: its clean stop
    EXPECT_EQ(one("KillSignal"), "SIGTERM");
    EXPECT_EQ(one("Restart"), "on-failure");
    EXPECT_EQ(one("LimitMEMLOCK"), "infinity");
    EXPECT_EQ(one("StateDirectory"), "memscope-trace");
    EXPECT_EQ(one("WantedBy"), "multi-user.target");
    // Hiding /home (even read-only it is its choice to make) or any of /proc
    // would keep targets' files or processes from the tracer.
    for (const char* key : {"ProtectHome", "ProtectProc", "ProcSubset", "ProtectKernelTunables", "SystemCallFilter"})
        EXPECT_EQ(d.count(key), 0u) << key;

    TempDir dir;
    const std::string unit = write_unit(dir, kBin);
    const Verified v = verify(analyze, unit);
    EXPECT_TRUE(v.accepted()) << "systemd-analyze verify " << unit << ": exit " << v.status << "\n" << v.output;
}

// The check above can fail: systemd-analyze verify exits 0 on a directive
// it cannot parse (it only says so, naming the line), which the check
// takes as a failure; a binary that is not there is a non-zero exit.
TEST(Deploy, SystemdUnitRejectsABrokenCopy)
{
    REQUIRE_TOOL(analyze, "systemd-analyze", "systemd");
    const std::vector<std::pair<std::string, std::string>> breaks{
        {"Restart=on-failure", "Restart=sometimes"},        // a value it cannot parse
        {"LimitMEMLOCK=infinity", "LimitMEMLOK=infinity"}, // a key it does not know
    };
    for (const auto& [from, to] : breaks) {
        SCOPED_TRACE(to);
        TempDir dir;
        int line_no = 0;
        const std::string unit = write_unit(dir, kBin, from, to, &line_no);
        const Verified v = verify(analyze, unit);
        EXPECT_FALSE(v.accepted()) << v.output;
        const std::string where = kUnitName + ":" + std::to_string(line_no) + ":";
        EXPECT_TRUE(v.status != 0 || v.output.find(where) != std::string::npos)
            << "neither a failure nor a message naming " << where << "\n" << v.output;
    }
    {
        SCOPED_TRACE("a binary that is not there");
        TempDir dir;
        const Verified v = verify(analyze, write_unit(dir, dir / "no-such-memscope-trace"));
        EXPECT_FALSE(v.accepted()) << v.output;
    }
}

// daemonset.yaml's documents, as JSON, read by PyYAML.
const char* kYamlToJson = R"(import json, sys, yaml
with open(sys.argv[1]) as f:
    json.dump([d for d in yaml.safe_load_all(f) if d is not None], sys.stdout, default=str)
)";

TEST(Deploy, DaemonSetIsPrivilegedHostPidAndListens)
{
    REQUIRE_TOOL(python, "python3", "python3");
    if (run({python, "-c", "import yaml"}).status != 0) {
        if (in_ci())
            FAIL() << "python3 has no yaml module (CI=true forbids skipping): apt-get install python3-yaml";
        GTEST_SKIP() << "python3 has no yaml module: apt-get install python3-yaml";
    }
    const std::string path = (kDeployDir / "daemonset.yaml").string();
    Result r = run({python, "-c", kYamlToJson, path});
    ASSERT_EQ(r.status, 0) << path << ": " << r.err;
    json docs = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(docs.is_array()) << r.out;

    json* ns = nullptr;
    json* ds = nullptr;
    for (auto& d : docs) {
        if (d.value("kind", "") == "Namespace")
            ns = &d;
        if (d.value("kind", "") == "DaemonSet")
            ds = &d;
    }
    ASSERT_TRUE(ns) << docs.dump(1);
    EXPECT_EQ((*ns)["metadata"]["name"], "memscope");
    ASSERT_TRUE(ds) << docs.dump(1);
    EXPECT_EQ((*ds)["apiVersion"], "apps/v1");
    EXPECT_EQ((*ds)["metadata"]["namespace"], "memscope");

    json& tmpl = (*ds)["spec"]["template"];
    // The selector picks the pods it makes (the API server refuses it otherwise).
    for (const auto& [k, v] : (*ds)["spec"]["selector"]["matchLabels"].items())
        EXPECT_EQ(tmpl["metadata"]["labels"].value(k, json()), v) << k;
    json& pod = tmpl["spec"];
    EXPECT_EQ(pod.value("hostPID", false), true);
    EXPECT_NE(pod.value("hostNetwork", false), true) << "0.0.0.0 is meant to bind the pod IP only";
    EXPECT_EQ(pod.value("terminationGracePeriodSeconds", 0), 30);
    bool everywhere = false;
    for (const auto& t : pod.value("tolerations", json::array()))
        everywhere |= t.value("operator", "") == "Exists" && !t.contains("key") && !t.contains("effect");
    EXPECT_TRUE(everywhere) << "a toleration with operator Exists alone: every node";

    // Annotations are strings (a bare true or 9877 is refused by the API server).
    json& ann = tmpl["metadata"]["annotations"];
    EXPECT_EQ(ann.value("prometheus.io/scrape", json()), json("true"));
    EXPECT_EQ(ann.value("prometheus.io/port", json()), json("9877"));
    EXPECT_EQ(ann.value("prometheus.io/path", json()), json("/metrics"));

    ASSERT_TRUE(pod["containers"].is_array() && !pod["containers"].empty()) << pod.dump(1);
    json& c = pod["containers"][0];
    EXPECT_EQ(c["securityContext"].value("privileged", false), true);
    std::vector<std::string> argv;
    for (const char* key : {"command", "args"})
        for (const auto& a : c.value(key, json::array()))
            argv.push_back(a.get<std::string>());
    auto has = [&](const std::string& a) { return std::find(argv.begin(), argv.end(), a) != argv.end(); };
    EXPECT_TRUE(has("-a")) << json(argv).dump();
    auto listen = std::find(argv.begin(), argv.end(), "--listen");
    ASSERT_TRUE(listen != argv.end() && listen + 1 != argv.end()) << json(argv).dump();
    EXPECT_EQ(listen[1], "0.0.0.0:9877");

    int port = 0;
    std::string port_name;
    for (const auto& p : c.value("ports", json::array()))
        if (p.value("containerPort", 0) == 9877)
            port = 9877, port_name = p.value("name", "");
    EXPECT_EQ(port, 9877);
    EXPECT_EQ(port_name, "metrics");
    for (const char* probe : {"livenessProbe", "readinessProbe"}) {
        SCOPED_TRACE(probe);
        ASSERT_TRUE(c.contains(probe)) << c.dump(1);
        json& get = c[probe]["httpGet"];
        EXPECT_EQ(get.value("path", ""), "/healthz");
        EXPECT_TRUE(get["port"] == 9877 || get["port"] == port_name) << get.dump();
    }
    EXPECT_EQ(c["resources"]["requests"].value("cpu", ""), "50m");
    EXPECT_EQ(c["resources"]["requests"].value("memory", ""), "64Mi");
    EXPECT_EQ(c["resources"]["limits"].value("memory", ""), "256Mi");

    // The host's tracefs and cgroup tree, the latter read-only.
    std::map<std::string, std::string> host_path; // volume name -> host path
    for (const auto& v : pod.value("volumes", json::array()))
        if (v.contains("hostPath"))
            host_path[v.value("name", "")] = v["hostPath"].value("path", "");
    bool tracefs = false, cgroup = false;
    for (const auto& m : c.value("volumeMounts", json::array())) {
        auto it = host_path.find(m.value("name", ""));
        if (it == host_path.end())
            continue;
        tracefs |= it->second == "/sys/kernel/tracing" || it->second == "/sys/kernel/debug";
        cgroup |= it->second == "/sys/fs/cgroup" && m.value("readOnly", false);
    }
    EXPECT_TRUE(tracefs) << pod.dump(1);
    EXPECT_TRUE(cgroup) << pod.dump(1);
}

} // namespace
} // namespace e2e
