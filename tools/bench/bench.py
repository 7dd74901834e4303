#!/usr/bin/env python3
"""memscope-trace's benchmark harness: one command, every figure of the
speed issue measured in one run, as ratios within that run.

  tools/bench/run [--reps N] [--ops N] [--threads 1,2,8,50,200] [--sections pairs,stacks,...]

Sections (all by default):
  pairs      malloc+free pairs, 1 thread: untraced, memscope-trace in each
             mode, the floor (empty BPF programs on the very same sites),
             bpftrace (count; memleak pattern) and BCC memleak when they run.
             Alternating, --reps repetitions; min and median ns per pair.
  tables     the unwind tables' kernel memory per MiB of .eh_frame and the
             tracer's start with and without them (/bin/true, g++ -c).
  scaling    the same across thread counts, CPU-normalised (process CPU per pair).
  bystander  an untraced process alone, then while another is traced.
  entry      a tracker entry point: untraced, traced (5-byte NOP site),
             the floor on that site, and our program on a site the kernel
             cannot rewrite (its `ret`).
  follow     `run` following a shell's N short children (/bin/true): wall
             time untraced, traced with --no-follow, followed with shared
             probe sites, and followed with uprobe PMU links per process
             (the fallback without tracefs); and how long the probes'
             release goes on after the tracer exits.
  tracer     the tracer's own cost on the 100,000-variable scenario: CPU per
             100,000 events/s, RSS, BPF map memory, drops.
  system     -a's tier 0 on page-fault- and fork-heavy bystanders.
  export     the tracer's CPU per /metrics and /debug/pprof/heap scrape
             under -a with 1,000 processes; a traced target's speed with no
             push, pushes answered, and pushes to a receiver that stalls.

Writes the results as JSON (--json) and Markdown (--markdown), with the
machine and kernel they came from.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import resource
import signal
import socket
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_path(*parts):
    return os.path.join(ARGS.build, *parts)


def settle():
    """Wait until no earlier tracer is still releasing its probes (a
    detached "memscope-detach" helper): the kernel's uprobe release walks
    every process that maps the same library, which would skew the next
    measurement."""
    for _ in range(200):
        if subprocess.run(["pgrep", "--runstates", "D,R,S", "-x", "memscope-detach"],
                          stdout=subprocess.DEVNULL).returncode != 0:
            return
        time.sleep(0.05)


def run(cmd, timeout=600, env=None, stdin=None):
    settle()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                       env=env, stdin=stdin)
    return p.returncode, p.stdout, p.stderr


PAIR_RE = re.compile(r"([0-9.]+) ns/pair .* cpu ([0-9.]+) ns/pair")


def parse_pairs(text):
    m = PAIR_RE.search(text)
    return (float(m.group(1)), float(m.group(2))) if m else None


def libc_path():
    for line in open("/proc/self/maps"):
        if "libc.so" in line or "libc-" in line:
            return line.split()[-1]
    return "/lib/x86_64-linux-gnu/libc.so.6"


# --- one measurement per configuration ----------------------------------------

def memscope(args_before, target, json_out=True):
    """memscope-trace run [args] -- target; returns (wall, cpu, report)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.json")
        cmd = [build_path("memscope-trace"), "run"] + args_before + (["--json", path] if json_out else []) + ["--"] + target
        rc, out, err = run(cmd)
        if rc != 0:
            raise RuntimeError("memscope-trace failed: " + err.strip().splitlines()[-1] if err.strip() else "?")
        report = json.load(open(path)) if json_out else None
    return parse_pairs(out), report


def bpftrace_script(kind):
    libc = libc_path()
    if kind == "count":
        return "uprobe:%s:malloc,uprobe:%s:free { @calls = count(); }" % (libc, libc)
    # The memleak pattern: entry + uretprobe + ptr->size map.
    return ("uprobe:%s:malloc { @size[tid] = arg0; } "
            "uretprobe:%s:malloc /@size[tid]/ { @mem[retval] = @size[tid]; delete(@size[tid]); } "
            "uprobe:%s:free { delete(@mem[arg0]); }") % (libc, libc, libc)


def peer(name, target):
    if name.startswith("bpftrace"):
        exe = shutil.which("bpftrace")
        if not exe:
            raise RuntimeError("bpftrace not installed")
        cmd = [exe, "-q", "-e", bpftrace_script(name.split("-", 1)[1]), "-c", " ".join(target)]
        rc, out, err = run(cmd)
        r = parse_pairs(out)
        if not r:
            raise RuntimeError("bpftrace: " + (err.strip().splitlines() or ["no output"])[-1])
        return r
    if name == "bcc-memleak":
        exe = shutil.which("memleak-bpfcc")
        if not exe:
            raise RuntimeError("BCC memleak not installed")
        rc, out, err = run([exe, "-c", " ".join(target), "--combined-only", "1", "1"], timeout=300)
        r = parse_pairs(out)
        # It starts the command first and compiles after: a failed build
        # leaves an untraced figure behind, which must not be taken.
        said = out + err
        if rc != 0 or "Failed to compile" in said or "Traceback" in said:
            reason = "no kernel headers for this kernel" if "kernel headers" in said else "it failed"
            raise RuntimeError("memleak-bpfcc did not build its BPF program (%s)" % reason)
        if not r:
            last = [l for l in (err or "").strip().splitlines() if l.strip()]
            raise RuntimeError("memleak-bpfcc: " + (last[-1][:160] if last else "no output"))
        return r
    raise ValueError(name)


def measure(config, target):
    """(wall ns/pair, cpu ns/pair, report or None) for one configuration."""
    if config == "untraced":
        rc, out, err = run(target)
        return parse_pairs(out) + (None,)
    if config == "floor":
        r, rep = memscope(["--bench-floor"], target)
        return r + (rep,)
    if config == "floor-async":
        # Empty programs with async's hits: under uprobe_multi, malloc's
        # entry and free's, no return probe.
        r, rep = memscope(["--bench-floor", "--mode", "async"], target)
        return r + (rep,)
    if config in ("normal", "fast", "async"):
        r, rep = memscope(["--mode", config], target)
        return r + (rep,)
    return peer(config, target) + (None,)


def hits_per_pair(report, pairs):
    t = report["totals"]
    hits = sum(t[k] for k in ("alloc_count", "failed_alloc_count", "free_count", "unmatched_free_count",
                              "exit_unmatched_free_count", "untracked_free_count"))
    return hits / pairs


# --- sections ---------------------------------------------------------------------

def section_pairs(results):
    ops = ARGS.ops
    target = [build_path("alloc_pairs"), "1", str(ops), "64"]
    configs = ["untraced", "floor", "floor-async", "async", "fast", "normal", "bpftrace-count", "bpftrace-memleak",
               "bcc-memleak"]
    samples = {c: [] for c in configs}
    extra = {}
    unavailable = {}
    for rep in range(ARGS.reps):
        order = configs if rep % 2 == 0 else list(reversed(configs))
        for c in order:
            if c in unavailable:
                continue
            try:
                wall, cpu, report = measure(c, target)
            except Exception as e:  # a peer that does not run here is reported, not fatal
                unavailable[c] = str(e)
                continue
            samples[c].append(wall)
            if report:
                extra[c] = {
                    "attach": report["tracer"].get("attach", ""),
                    "hits_per_pair": hits_per_pair(report, ops),
                    "tracer_cpu_s": report["tracer"]["cpu_user_s"] + report["tracer"]["cpu_sys_s"],
                    "tracer_rss_kb": report["tracer"]["max_rss_kb"],
                    "bpf_map_bytes": report["tracer"]["bpf_map_bytes"],
                    "dropped_events": report["dropped"]["events"],
                }
            log("  pairs rep %d %-17s %9.1f ns/pair" % (rep + 1, c, wall))
    base = min(samples["untraced"])
    table = {}
    for c in configs:
        if not samples[c]:
            continue
        mn, med = min(samples[c]), statistics.median(samples[c])
        table[c] = {"min_ns": mn, "median_ns": med, "overhead_ns": max(med - base, 0.0), **extra.get(c, {})}
    # Each mode against the floor with its number of hits: async's own
    # (entries only, where uprobe_multi sessions waive the return), else
    # the one with return probes.
    floor = table.get("floor", {}).get("overhead_ns")
    floor_async = table.get("floor-async", {}).get("overhead_ns")
    for c in ("async", "fast", "normal"):
        f = floor_async if c == "async" and floor_async else floor
        if c in table and f:
            table[c]["x_floor"] = table[c]["overhead_ns"] / f
    for p in ("bpftrace-memleak", "bcc-memleak", "bpftrace-count"):
        if p in table and "normal" in table:
            table["normal"]["x_" + p] = table["normal"]["overhead_ns"] / table[p]["overhead_ns"]
    results["pairs"] = {"ops": ops, "size": 64, "threads": 1, "reps": ARGS.reps, "configs": table,
                        "unavailable": unavailable}


def alloc_return_ns(report):
    """The allocator program's kernel time per allocation (bpf_stats), from
    the report: alloc_return's, or under uprobe_multi alloc_session's, which
    runs at entries, returns and frees alike (the same in every
    configuration: what differs between them is the walk)."""
    progs = report["tracer"].get("bpf_programs", {})
    p = progs.get("alloc_session") or progs.get("alloc_return")
    n = report["totals"]["alloc_count"]
    return p["run_time_ns"] / n if p and p["run_time_ns"] and n else None


def heaptrack_pairs(target):
    """ns per pair of `target` under heaptrack (LD_PRELOAD, in-process), or None."""
    if not shutil.which("heaptrack"):
        return None
    with tempfile.TemporaryDirectory() as d:
        rc, out, err = run(["heaptrack", "-o", os.path.join(d, "ht")] + target)
        if rc != 0:
            return None
        return parse_pairs(out)[0]


def section_stacks(results):
    """Stack collection's extra cost per allocation at 8, 16, 32 and 64
    frames: the unwind-table walk, the frame-pointer walk alone (the walker
    before the tables, --bench-no-unwind-tables) and no stacks, each as
    alloc_return's own kernel time (bpf_stats: exact, where the wall clock
    of a 12 us trap is noise), and heaptrack's whole cost per allocation
    beside them (wall clock: it runs in the process)."""
    ops = ARGS.ops
    rows = {}
    run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"])
    try:
        for frames in (8, 16, 32, 64):
            depth = frames - 4  # pairs, then main and the three runtime frames below it
            target = [build_path("alloc_pairs"), "1", str(ops), "64", str(depth)]
            configs = {"untraced": None, "no_stacks": ["--no-stacks"], "tables": [],
                       "fp_walk": ["--bench-no-unwind-tables"], "heaptrack": None}
            walls = {c: [] for c in configs}
            kernel = {c: [] for c in ("no_stacks", "tables", "fp_walk")}
            recorded = {}
            for rep in range(ARGS.reps):
                order = list(configs) if rep % 2 == 0 else list(reversed(list(configs)))
                for c in order:
                    if c == "untraced":
                        rc, out, err = run(target)
                        wall = parse_pairs(out)[0]
                    elif c == "heaptrack":
                        wall = heaptrack_pairs(target)
                        if wall is None:
                            continue
                    else:
                        (wall, _), rep_json = memscope(["--mode", "normal", "--stack-depth", "64"] + configs[c], target)
                        kernel[c].append(alloc_return_ns(rep_json))
                        if c != "no_stacks":
                            site = max(rep_json["sites"], key=lambda s: s["alloc_count"])
                            recorded[c] = len(site["stack"])
                    walls[c].append(wall)
                    log("  stacks %d frames rep %d %-10s %9.1f ns/pair" % (frames, rep + 1, c, wall))
            med = {c: statistics.median(v) for c, v in walls.items() if v}
            kmed = {c: statistics.median(v) for c, v in kernel.items() if v and None not in v}
            row = {"frames": frames, "recorded": recorded, "untraced_ns": med["untraced"],
                   "wall_no_stacks_ns": med["no_stacks"], "wall_tables_ns": med["tables"],
                   "wall_fp_walk_ns": med["fp_walk"]}
            if "heaptrack" in med:
                row["heaptrack_cost_ns"] = med["heaptrack"] - med["untraced"]
            if len(kmed) == 3:
                row["alloc_return_ns"] = kmed
                row["tables_cost_ns"] = kmed["tables"] - kmed["no_stacks"]
                row["fp_walk_cost_ns"] = kmed["fp_walk"] - kmed["no_stacks"]
            rows[str(frames)] = row
    finally:
        run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"])
    results["stacks"] = {"ops": ops, "reps": ARGS.reps, "rows": rows}


def section_tables(results):
    """The unwind tables' kernel memory and their cost at the start: rows
    (8 bytes each) per MiB of the .eh_frame they came from, for a small C
    program and for Debian's g++ -c (the driver, then cc1plus), and the
    wall time of `run -- /bin/true` and of that compile with tables and
    without (--bench-no-unwind-tables), alternating, median of --reps."""
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "unit.cpp")
        with open(src, "w") as f:
            f.write("#include <map>\n#include <string>\n#include <vector>\n"
                    "int main() { std::map<int, std::vector<std::string>> m; m[1].push_back(\"x\"); return m.size() == 1 ? 0 : 1; }\n")
        cases = {"true": ["/bin/true"],
                 "g++ -c": ["/usr/bin/g++", "-O1", "-c", src, "-o", os.path.join(d, "unit.o")]}
        for name, target in cases.items():
            walls = {"tables": [], "no_tables": []}
            unwind = None
            for rep in range(ARGS.reps):
                order = ["tables", "no_tables"] if rep % 2 == 0 else ["no_tables", "tables"]
                for c in order:
                    t0 = time.monotonic()
                    _, rep_json = memscope(["--bench-no-unwind-tables"] if c == "no_tables" else [], target)
                    walls[c].append(time.monotonic() - t0)
                    if c == "tables":
                        unwind = rep_json["stacks"]["unwind"]
                        bpf_map_bytes = rep_json["tracer"]["bpf_map_bytes"]
                    log("  tables %-7s rep %d %-9s %.3f s" % (name, rep + 1, c, walls[c][-1]))
            row = {"wall_tables_s": statistics.median(walls["tables"]),
                   "wall_no_tables_s": statistics.median(walls["no_tables"]),
                   "files": unwind["files"], "rows": unwind["rows"], "row_bytes": unwind["rows"] * 8,
                   "eh_frame_bytes": unwind["eh_frame_bytes"], "build_ms": unwind["build_ms"],
                   "bpf_map_bytes": bpf_map_bytes}
            row["kib_per_mib"] = (row["row_bytes"] / 1024) / (row["eh_frame_bytes"] / 2**20) if row["eh_frame_bytes"] else None
            row["start_growth_s"] = row["wall_tables_s"] - row["wall_no_tables_s"]
            rows[name] = row
    results["tables"] = {"reps": ARGS.reps, "rows": rows}


def section_scaling(results):
    out = {}
    for t in ARGS.threads:
        ops = max(2000, ARGS.scaling_pairs // t)
        target = [build_path("alloc_pairs"), str(t), str(ops), "64"]
        row = {}
        for c in ("untraced", "floor", "normal"):
            cpus = []
            for rep in range(ARGS.reps):
                wall, cpu, report = measure(c, target)
                cpus.append(cpu)
                if report and report["dropped"]["events"]:
                    row["dropped_" + c] = report["dropped"]["events"]
            row[c + "_cpu_ns"] = statistics.median(cpus)
        row["normal_overhead_cpu_ns"] = row["normal_cpu_ns"] - row["untraced_cpu_ns"]
        row["floor_overhead_cpu_ns"] = row["floor_cpu_ns"] - row["untraced_cpu_ns"]
        out[str(t)] = row
        log("  scaling %3d threads: normal +%.0f ns/pair CPU, floor +%.0f" % (
            t, row["normal_overhead_cpu_ns"], row["floor_overhead_cpu_ns"]))
    o = [r["normal_overhead_cpu_ns"] for r in out.values()]
    results["scaling"] = {"rows": out, "normal_overhead_max_over_min": max(o) / min(o) if min(o) > 0 else None,
                          "cpus": os.cpu_count()}


def section_bystander(results):
    """An untraced process beside a busy process, untraced then traced. The
    figure compared is the bystander's own CPU time per pair: on a small
    machine its wall time also counts the turns it waits for a CPU (the
    tracer is one more thing to run), which is not a cost paid per call."""
    by = [build_path("alloc_pairs"), "1", str(ARGS.ops * 40), "64"]
    busy = [build_path("alloc_pairs"), "1", str(ARGS.ops * 400), "64"]
    rows = {"alone": [], "beside_untraced": [], "beside_floor": [], "beside_traced": []}
    for rep in range(ARGS.reps + 2):
        rows["alone"].append(parse_pairs(run(by)[1]))
        for prefix, key in (([], "beside_untraced"),
                            ([build_path("memscope-trace"), "run", "--bench-floor", "--"], "beside_floor"),
                            ([build_path("memscope-trace"), "run", "--"], "beside_traced")):
            cmd = prefix + busy
            settle()
            neighbour = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            rows[key].append(parse_pairs(run(by)[1]))
            neighbour.terminate()
            neighbour.wait()
        log("  bystander rep %d: cpu ns/pair alone %.2f, beside a busy process %.2f, under the floor %.2f, traced %.2f" % (
            rep + 1, rows["alone"][-1][1], rows["beside_untraced"][-1][1], rows["beside_floor"][-1][1],
            rows["beside_traced"][-1][1]))
    med = {k: (statistics.median(w for w, c in v), statistics.median(c for w, c in v)) for k, v in rows.items()}
    results["bystander"] = {
        "alone_ns": med["alone"][0], "beside_untraced_ns": med["beside_untraced"][0],
        "beside_traced_ns": med["beside_traced"][0],
        "alone_cpu_ns": med["alone"][1], "beside_untraced_cpu_ns": med["beside_untraced"][1],
        "beside_traced_cpu_ns": med["beside_traced"][1],
        "beside_floor_ns": med["beside_floor"][0], "beside_floor_cpu_ns": med["beside_floor"][1],
        "cpu_ratio": med["beside_traced"][1] / med["beside_untraced"][1],
        "cpu_ratio_floor": med["beside_floor"][1] / med["beside_untraced"][1],
        "wall_ratio": med["beside_traced"][0] / med["beside_untraced"][0],
    }


def section_entry(results):
    calls = ARGS.entry_calls
    tc = build_path("track_cost")
    row = {}
    rc, out, err = run([tc, str(calls * 100)])
    row["untraced_ns"] = float(out.split()[0])
    for name, flags in (("nop5_site_ns", []), ("fast_nop5_site_ns", ["--mode", "fast"]),
                        ("async_nop5_site_ns", ["--mode", "async"]), ("floor_nop5_site_ns", ["--bench-floor"]),
                        ("int3_site_ns", ["--bench-tracker-on-ret"])):
        vals = []
        for rep in range(ARGS.reps):
            rc, o, e = run([build_path("memscope-trace"), "run"] + flags + ["--", tc, str(calls), "wait"])
            vals.append(float(o.split()[0]))
        row[name] = min(vals)
        log("  entry %-20s %.1f ns/call" % (name, row[name]))
    row["traced_x_floor"] = row["nop5_site_ns"] / row["floor_nop5_site_ns"]
    row["fast_x_floor"] = row["fast_nop5_site_ns"] / row["floor_nop5_site_ns"]
    row["async_x_floor"] = row["async_nop5_site_ns"] / row["floor_nop5_site_ns"]
    results["entry"] = row


def wait_for_release(timeout=600):
    """Seconds until no memscope-detach helper is left releasing probes."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if subprocess.run(["pgrep", "--runstates", "D,R,S", "-x", "memscope-detach"],
                          stdout=subprocess.DEVNULL).returncode != 0:
            break
        time.sleep(0.05)
    return time.monotonic() - t0


def section_follow(results):
    rows = {}
    for n in ARGS.children:
        cmd = ["/bin/sh", "-c", "for i in $(seq %d); do /bin/true; done" % n]
        row = {}
        for name, args in (("untraced", None), ("no_follow", ["--no-follow"]),
                           ("multi", ["--attach", "uprobe_multi"]), ("shared", ["--attach", "shared_sites"]),
                           ("pmu", ["--bench-pmu-uprobes"])):
            walls, releases = [], []
            for _ in range(ARGS.reps):
                wait_for_release()
                full = cmd if args is None else [build_path("memscope-trace"), "run"] + args + ["--"] + cmd
                t0 = time.monotonic()
                p = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1200)
                walls.append(time.monotonic() - t0)
                if p.returncode != 0:
                    raise RuntimeError("%s: %s" % (name, p.stderr.strip()[-200:]))
                releases.append(wait_for_release() if args is not None else 0.0)
            row[name + "_s"] = statistics.median(walls)
            row[name + "_release_s"] = statistics.median(releases)
        row["multi_ms_per_child"] = 1000 * (row["multi_s"] - row["no_follow_s"]) / n
        row["shared_ms_per_child"] = 1000 * (row["shared_s"] - row["no_follow_s"]) / n
        row["pmu_ms_per_child"] = 1000 * (row["pmu_s"] - row["no_follow_s"]) / n
        rows[str(n)] = row
        log("  %d children: untraced %.2f s, --no-follow %.2f s, uprobe_multi %.2f s (+%.0f s release), "
            "shared sites %.2f s (+%.0f s release), per-process links %.2f s (+%.0f s release)" % (
                n, row["untraced_s"], row["no_follow_s"], row["multi_s"], row["multi_release_s"], row["shared_s"],
                row["shared_release_s"], row["pmu_s"], row["pmu_release_s"]))
    results["follow"] = {"reps": ARGS.reps, "rows": rows}


def section_tracer(results):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.json")
        rc, out, err = run([build_path("memscope-trace"), "run", "--json", path, "--",
                            build_path("target_tracked_threads"), "50", "1000"])
        r = json.load(open(path))
    events = len(r["variables"]) + sum(1 for v in r["variables"] if v["free_ns"] is not None)
    dur = r["duration_s"]
    rate = events / dur
    tr = r["tracer"]
    # While the target ran: the start (BPF load and verification, ELF scans,
    # symbol files) and the report (symbols, JSON) are fixed costs, stated apart.
    cpu_pct = 100.0 * tr["tracing_cpu_user_s"] / dur
    whole_pct = 100.0 * tr["cpu_user_s"] / dur
    live = sum(1 for v in r["variables"] if v["heap"] and v["free_ns"] is None)
    results["tracer"] = {
        "scenario": "target_tracked_threads 50 1000 (100,000 tracked variables)",
        "events": events, "duration_s": dur, "events_per_s": rate,
        "user_cpu_pct_of_a_core": cpu_pct,
        "user_cpu_pct_per_100k_events_per_s": cpu_pct / (rate / 1e5) if rate else None,
        "whole_run_user_cpu_pct_per_100k_events_per_s": whole_pct / (rate / 1e5) if rate else None,
        "startup_cpu_user_s": tr["startup_cpu_user_s"], "startup_cpu_sys_s": tr["startup_cpu_sys_s"],
        "max_rss_kb": r["tracer"]["max_rss_kb"], "bpf_map_bytes": r["tracer"]["bpf_map_bytes"],
        "live_tracked_at_end": live, "dropped_events": r["dropped"]["events"],
    }
    log("  tracer: %.0f events/s, %.1f%% of a core (%.2f%% per 100k events/s), RSS %d KiB" % (
        rate, cpu_pct, results["tracer"]["user_cpu_pct_per_100k_events_per_s"] or 0, r["tracer"]["max_rss_kb"]))


def system_watcher(json_path=None, extra=()):
    """memscope-trace -a in the background, once it watches."""
    cmd = [build_path("memscope-trace"), "-a"] + list(extra) + (["--json", json_path] if json_path else [])
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "watching every process" in line:
            return p
    raise RuntimeError("memscope-trace -a did not start")


def stop_watcher(p):
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=120)


def children_cpu(cmd):
    """The command's CPU time (user + system, its waited children too)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc, out, err = run(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise RuntimeError("%s failed: %s" % (cmd[0], err.strip()))
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def section_system(results):
    """-a's tier 0 (tracepoints, no uprobe) on bystanders it watches: a
    page-fault-heavy one (every fault updates a resident-memory counter,
    one BPF program run) and a fork/exec-heavy one, their CPU time untraced
    and watched, alternated; then the tracer's own CPU per 100,000 tier-0
    events per second (program runs, counted with kernel.bpf_stats_enabled)."""
    faults = [build_path("fault_loop"), str(ARGS.fault_rounds), "64"]
    storm = [build_path("target_storm"), str(ARGS.storm)]
    # A busy allocator user that is not chosen, while -a traces the heap of
    # another: its own code is unpatched, so its CPU per pair must not move.
    pairs = [build_path("alloc_pairs"), "1", str(ARGS.ops * 200), "64"]
    rows = {k: [] for k in ("faults_alone", "faults_watched", "storm_alone", "storm_watched",
                            "pairs_alone", "pairs_beside_heap")}
    def alone():
        rows["faults_alone"].append(children_cpu(faults))
        rows["storm_alone"].append(children_cpu(storm))

    def watched():
        w = system_watcher()
        rows["faults_watched"].append(children_cpu(faults))
        rows["storm_watched"].append(children_cpu(storm))
        stop_watcher(w)
    for rep in range(ARGS.reps + 2):
        # Alone then watched, then the other way round: the machine's drift
        # within a rep does not always land on the same side.
        for step in ((alone, watched) if rep % 2 == 0 else (watched, alone)):
            step()
        rows["pairs_alone"].append(parse_pairs(run(pairs)[1])[1])
        w = system_watcher(extra=["--heap", "comm:fault_loop"])
        chosen = subprocess.Popen(faults, stdout=subprocess.DEVNULL)
        rows["pairs_beside_heap"].append(parse_pairs(run(pairs)[1])[1])
        chosen.wait()
        stop_watcher(w)
        log("  system rep %d: faults cpu %.3f s alone, %.3f s watched; storm cpu %.3f s alone, %.3f s watched; "
            "unchosen pairs cpu %.1f ns alone, %.1f ns beside a heap-traced process" % (
                rep + 1, rows["faults_alone"][-1], rows["faults_watched"][-1], rows["storm_alone"][-1],
                rows["storm_watched"][-1], rows["pairs_alone"][-1], rows["pairs_beside_heap"][-1]))
    med = {k: statistics.median(v) for k, v in rows.items()}
    # Each rep's pair ran back to back: the median of their ratios follows
    # the machine's drift less than the ratio of the medians.
    def ratio(watched, alone):
        return statistics.median(w / a for w, a in zip(rows[watched], rows[alone]))
    # The kernel's program counters on: what tier 0's programs cost while
    # each bystander ran (their own kernel time over its CPU time: a figure
    # the back-to-back ratio above, noisy by several percent here, cannot
    # resolve; an upper bound: it counts every process's runs meanwhile and
    # the counters' own clock reads), and the tracer's cost per event.
    def watched_with_stats(cmd):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            w = system_watcher(path)
            cpu = children_cpu(cmd)
            stop_watcher(w)
            return cpu, json.load(open(path))
    stats = "/proc/sys/kernel/bpf_stats_enabled"
    old = open(stats).read().strip()
    open(stats, "w").write("1")
    try:
        faults_cpu, rf = watched_with_stats(faults)
        storm_cpu, rs = watched_with_stats(storm)
    finally:
        open(stats, "w").write(old)
    def programs_s(rep):
        return sum(v["run_time_ns"] for v in rep["tracer"]["bpf_programs"].values()) / 1e9
    def runs(rep):
        return sum(v["run_count"] for v in rep["tracer"]["bpf_programs"].values())
    events = runs(rf) + runs(rs)
    dur = rf["duration_s"] + rs["duration_s"]
    tracer_cpu = sum(x["tracer"]["tracing_cpu_user_s"] + x["tracer"]["tracing_cpu_sys_s"] for x in (rf, rs))
    tr = {"max_rss_kb": max(rf["tracer"]["max_rss_kb"], rs["tracer"]["max_rss_kb"]),
          "bpf_map_bytes": rf["tracer"]["bpf_map_bytes"]}
    cpu_pct = 100.0 * tracer_cpu / dur
    rate = events / dur
    results["system"] = {
        "fault_workload": "fault_loop %d 64 (mmap, touch, munmap 64 MiB)" % ARGS.fault_rounds,
        "storm_workload": "target_storm %d (fork + exec + exit, one at a time)" % ARGS.storm,
        "faults_alone_cpu_s": med["faults_alone"], "faults_watched_cpu_s": med["faults_watched"],
        "faults_cpu_ratio": ratio("faults_watched", "faults_alone"),
        "storm_alone_cpu_s": med["storm_alone"], "storm_watched_cpu_s": med["storm_watched"],
        "storm_cpu_ratio": ratio("storm_watched", "storm_alone"),
        "unchosen_pairs_alone_cpu_ns": med["pairs_alone"], "unchosen_pairs_beside_heap_cpu_ns": med["pairs_beside_heap"],
        "unchosen_pairs_cpu_ratio": ratio("pairs_beside_heap", "pairs_alone"),
        "tier0_events": events, "tier0_events_per_s": rate, "tracer_cpu_pct_of_a_core": cpu_pct,
        "tracer_cpu_pct_per_100k_events_per_s": cpu_pct / (rate / 1e5) if rate else None,
        "tracer_max_rss_kb": tr["max_rss_kb"], "bpf_map_bytes": tr["bpf_map_bytes"],
        "processes_listed": max(len(rf["processes"]), len(rs["processes"])),
        "faults_programs_pct_of_cpu": 100.0 * programs_s(rf) / faults_cpu,
        "faults_program_ns_per_run": 1e9 * programs_s(rf) / max(runs(rf), 1),
        "storm_programs_pct_of_cpu": 100.0 * programs_s(rs) / storm_cpu,
    }
    log("  system: faults x%.3f, storm x%.3f; tracer %.2f%% of a core at %.0f events/s" % (
        results["system"]["faults_cpu_ratio"], results["system"]["storm_cpu_ratio"], cpu_pct, rate))


def cpu_of(pid):
    """A process's CPU seconds so far (user + system)."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Receiver:
    """A push receiver on loopback: `stall` accepts connections (the kernel
    does) and never answers; otherwise each push is read and answered 200."""

    def __init__(self, stall):
        import http.server
        import socketserver
        import threading
        self.count = 0
        if stall:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(64)
            self.port = self.sock.getsockname()[1]
            self.server = None
            return
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        else:
            self.sock.close()


def section_export(results):
    """Fleet export's costs: the tracer's CPU per /metrics and per
    /debug/pprof/heap scrape under -a with ~1,000 processes (each of its own
    name: a label set each), over its idle CPU; and a traced target's speed
    while pushes go to a receiver that answers, to one that never does, and
    with no push at all, alternated."""
    import urllib.request
    n = ARGS.export_procs
    with tempfile.TemporaryDirectory() as d:
        idle = []
        for i in range(n):
            link = os.path.join(d, "idle_%04d" % i)
            os.symlink(shutil.which("sleep"), link)
            idle.append(subprocess.Popen([link, "600"]))
        try:
            p = subprocess.Popen([build_path("memscope-trace"), "-a", "--listen", "127.0.0.1:0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            port = None
            for line in p.stderr:
                if "/healthz on port " in line:
                    port = int(line.rsplit(" ", 1)[1])
                if "watching every process" in line:
                    break
            time.sleep(2.5)  # two samples of every process
            def scrape(path):
                with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30) as r:
                    return r.read()
            body = scrape("/metrics")
            idle_s = 5.0
            c0 = cpu_of(p.pid)
            time.sleep(idle_s)
            idle_rate = (cpu_of(p.pid) - c0) / idle_s
            per = {}
            for path in ("/metrics", "/debug/pprof/heap"):
                t0, c0 = time.monotonic(), cpu_of(p.pid)
                for _ in range(ARGS.scrapes):
                    scrape(path)
                wall = time.monotonic() - t0
                per[path] = ((cpu_of(p.pid) - c0) - idle_rate * wall) / ARGS.scrapes
            text = body.decode()
            series = sum(1 for l in text.splitlines() if l and not l.startswith("#"))
            listed = sum(1 for l in text.splitlines() if l.startswith("memscope_rss_anon_bytes{"))
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=120)
        finally:
            for q in idle:
                q.kill()
                q.wait()
    # Pushes: a target's CPU per pair, no push / a receiver that answers / one that stalls.
    target = [build_path("alloc_pairs"), "1", str(ARGS.ops * 3), "64"]
    rows = {"no_push": [], "push_ok": [], "push_stalled": []}
    drops = []
    for rep in range(ARGS.reps):
        order = list(rows) if rep % 2 == 0 else list(reversed(list(rows)))
        for config in order:
            args = []
            recv = None
            if config != "no_push":
                recv = Receiver(stall=config == "push_stalled")
                args = ["--push", "http://127.0.0.1:%d" % recv.port, "--push-interval", "0.2"]
            r, rep_json = memscope(args, target)
            rows[config].append(r[1])
            if config == "push_stalled":
                drops.append(rep_json["tracer"]["export"])
            if recv:
                recv.close()
        log("  export rep %d: cpu ns/pair no push %.1f, answered pushes %.1f, stalled receiver %.1f" % (
            rep + 1, rows["no_push"][-1], rows["push_ok"][-1], rows["push_stalled"][-1]))
    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(rows[a], rows[b]))
    results["export"] = {
        "processes": n, "processes_listed_in_metrics": listed, "metrics_series": series,
        "metrics_bytes": len(body), "scrapes": ARGS.scrapes, "tracer_idle_cpu_pct": 100 * idle_rate,
        "cpu_ms_per_metrics_scrape": 1000 * per["/metrics"],
        "cpu_ms_per_profile_scrape": 1000 * per["/debug/pprof/heap"],
        "push_workload": " ".join(os.path.basename(x) for x in target) + " (traced, normal mode; pushes every 0.2 s)",
        "no_push_cpu_ns": statistics.median(rows["no_push"]),
        "push_ok_cpu_ns": statistics.median(rows["push_ok"]),
        "push_stalled_cpu_ns": statistics.median(rows["push_stalled"]),
        "push_ok_ratio": ratio("push_ok", "no_push"), "push_stalled_ratio": ratio("push_stalled", "no_push"),
        "stalled_export": drops[-1] if drops else {},
    }
    e = results["export"]
    log("  export: %.2f ms CPU per /metrics scrape (%d series), %.2f ms per profile; stalled x%.3f, answered x%.3f" % (
        e["cpu_ms_per_metrics_scrape"], series, e["cpu_ms_per_profile_scrape"], e["push_stalled_ratio"],
        e["push_ok_ratio"]))


# --- output -------------------------------------------------------------------------

def machine():
    model = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    virt = ""
    try:
        virt = subprocess.run(["systemd-detect-virt"], stdout=subprocess.PIPE, text=True).stdout.strip()
    except OSError:
        pass
    glibc = platform.libc_ver()[1]
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu": model, "virtualization": virt,
            "glibc": glibc, "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")}


def markdown(res):
    m = res["machine"]
    lines = ["# Benchmark results", "",
             "Regenerated by `tools/bench/run`; every ratio compares figures from one run of its section "
             "(`--sections` reruns some and keeps the others).", "",
             "Machine: %s, %d CPUs (%s), kernel %s, glibc %s, %s." % (
                 m["cpu"], m["cpus"], m["virtualization"] or "bare metal?", m["kernel"], m["glibc"], m["date"]), ""]
    if res.get("kept"):
        lines += ["Sections kept from earlier runs (same kernel version, another build of it): %s." % ", ".join(
            "%s (%s)" % kv for kv in sorted(res["kept"].items())), ""]
    if "pairs" in res:
        p = res["pairs"]
        lines += ["## malloc(64)+free pairs, 1 thread (%d pairs, %d repetitions, alternating)" % (
            p["ops"], p.get("reps", res["reps"])), "",
                  "Probes attached by %s. x floor: overhead over that of empty programs on the same sites "
                  "with the same hits (`floor`: malloc's entry and return and free's entry; `floor-async`: "
                  "the entries alone, as async mode takes them); async is compared with floor-async." % (
                      p["configs"].get("normal", {}).get("attach") or "shared sites"), "",
                  "| configuration | min ns/pair | median ns/pair | overhead ns/pair | x floor | hits/pair | tracer CPU s | tracer RSS KiB | BPF maps KiB | dropped |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c, v in p["configs"].items():
            def f(k, fmt="%.0f"):
                return fmt % v[k] if k in v and v[k] is not None else ""
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                c, f("min_ns", "%.1f"), f("median_ns", "%.1f"), f("overhead_ns"), f("x_floor", "%.2f"),
                f("hits_per_pair", "%.2f"), f("tracer_cpu_s", "%.2f"), f("tracer_rss_kb"),
                ("%.0f" % (v["bpf_map_bytes"] / 1024)) if "bpf_map_bytes" in v else "", f("dropped_events")))
        n = p["configs"].get("normal", {})
        for k, v in n.items():
            if k.startswith("x_bpftrace") or k.startswith("x_bcc"):
                lines.append("")
                lines.append("normal mode overhead / %s overhead: **%.2f**" % (k[2:], v))
        for c, why in p["unavailable"].items():
            lines.append("")
            lines.append("%s: not measured here: %s" % (c, why))
        lines.append("")
    if "stacks" in res:
        st = res["stacks"]
        lines += ["## Stack collection, per allocation (normal mode, 1 thread, malloc(64)+free, %d pairs, median of %d)" % (
            st["ops"], st["reps"]), "",
                  "Extra kernel time per allocation of the walk (alloc_return's run time from bpf_stats, with stacks "
                  "minus without): the unwind-table walk (frames found by each file's .eh_frame rules, no frame "
                  "pointers needed) and the same walker with frame-pointer rules alone (`--bench-no-unwind-tables`: "
                  "each frame by its epilogue, else its frame pointer), at the same depth; heaptrack's whole cost per allocation (wall clock, in-process, "
                  "`heaptrack` 1.4 on the same program). The wall clock of a traced pair here is dominated by the "
                  "uprobe traps themselves.", "",
                  "| frames walked | frames reported, inlined included (tables / fp) | walk with unwind tables, ns | frame-pointer rules alone, ns | heaptrack, ns per allocation | traced pair, wall ns (no stacks / tables) |",
                  "|---|---|---|---|---|---|"]
        for d, r in st["rows"].items():
            rec = r.get("recorded", {})
            lines.append("| %s | %s / %s | **%s** | %s | %s | %.0f / %.0f |" % (
                d, rec.get("tables", "?"), rec.get("fp_walk", "?"),
                "%.0f" % r["tables_cost_ns"] if "tables_cost_ns" in r else "n/a",
                "%.0f" % r["fp_walk_cost_ns"] if "fp_walk_cost_ns" in r else "n/a",
                "%.0f" % r["heaptrack_cost_ns"] if "heaptrack_cost_ns" in r else "not installed",
                r["wall_no_stacks_ns"], r["wall_tables_ns"]))
        lines.append("")
    if "tables" in res:
        t = res["tables"]
        lines += ["## Unwind tables: kernel memory and start (median of %d, alternating)" % t["reps"], "",
                  "Rows in the kernel (8 bytes each: pc, CFA rule, rbp rule) per MiB of the CFI they were built from, "
                  "for every file the run mapped; the wall time of the whole run with tables and without "
                  "(`--bench-no-unwind-tables`), which includes building them (userspace, before the target goes on).", "",
                  "| run | files | .eh_frame KiB | rows | rows KiB | **KiB per MiB of .eh_frame** | build ms | wall s, tables / none | growth s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for n, r in t["rows"].items():
            lines.append("| `run -- %s` | %d | %.0f | %d | %.0f | **%.0f** | %d | %.3f / %.3f | **%+.3f** |" % (
                n, r["files"], r["eh_frame_bytes"] / 1024, r["rows"], r["row_bytes"] / 1024, r["kib_per_mib"] or 0,
                r["build_ms"], r["wall_tables_s"], r["wall_no_tables_s"], r["start_growth_s"]))
        lines += ["", "The rows live in one BPF array sized at the start (%d rows, %.0f MiB, `MS_DEFAULT_MAX_UNWIND_ROWS`), "
                  "shared by every traced process; the figures above are what the files use of it." % (
                      2**21, 2**21 * 8 / 2**20),
                  "", "`run -- true` is the tracer's start (the issue's floor: at most +0.2 s). The g++ row's growth is "
                  "the whole compile's: the tables built when the driver and cc1plus exec (build ms, while each "
                  "waits), then walking and symbolizing whole stacks instead of one-frame ones.", ""]
    if "scaling" in res:
        s = res["scaling"]
        lines += ["## Thread scaling (process CPU per pair, so figures past the core count compare)", "",
                  "| threads | untraced CPU ns/pair | floor CPU ns/pair | normal CPU ns/pair | normal overhead | floor overhead |",
                  "|---|---|---|---|---|---|"]
        for t, r in s["rows"].items():
            lines.append("| %s | %.1f | %.0f | %.0f | %.0f | %.0f |" % (
                t, r["untraced_cpu_ns"], r["floor_cpu_ns"], r["normal_cpu_ns"], r["normal_overhead_cpu_ns"],
                r["floor_overhead_cpu_ns"]))
        if s["normal_overhead_max_over_min"]:
            lines += ["", "normal-mode overhead, largest / smallest across thread counts: **%.2f**" % s["normal_overhead_max_over_min"]]
        lines.append("")
    if "bystander" in res:
        b = res["bystander"]
        lines += ["## Bystander (an untraced process beside a busy one, untraced then traced)", "",
                  "| | alone | beside it untraced | beside it under empty programs (floor) | beside it traced | floor / untraced | traced / untraced |",
                  "|---|---|---|---|---|---|---|",
                  "| its CPU, ns/pair | %.2f | %.2f | %.2f | %.2f | %.3f | **%.3f** |" % (
                      b["alone_cpu_ns"], b["beside_untraced_cpu_ns"], b["beside_floor_cpu_ns"],
                      b["beside_traced_cpu_ns"], b["cpu_ratio_floor"], b["cpu_ratio"]),
                  "| wall, ns/pair | %.2f | %.2f | %.2f | %.2f | | %.3f |" % (
                      b["alone_ns"], b["beside_untraced_ns"], b["beside_floor_ns"], b["beside_traced_ns"],
                      b["wall_ratio"]), "",
                  "Against its own untraced speed (alone): CPU **%.3f x**, wall %.3f x." % (
                      b["beside_traced_cpu_ns"] / b["alone_cpu_ns"], b["beside_traced_ns"] / b["alone_ns"]), "",
                  "Its CPU time per call is the cost tracing could put on it; its wall time on %d CPUs also "
                  "counts turns spent waiting while the neighbour, and the tracer, run. The column against the "
                  "same neighbour untraced is the stricter control; the floor column shows what any uprobe "
                  "next door does." % res["machine"]["cpus"], ""]
    if "entry" in res:
        e = res["entry"]
        lines += ["## Tracker entry point (MEMSCOPE_TRACK_PTR), ns per call", "",
                  "| untraced | normal, 5-byte NOP site | fast | async | empty program, same site | normal, on its `ret` (not rewritable) | normal / empty | fast / empty | async / empty |",
                  "|---|---|---|---|---|---|---|---|---|",
                  "| %.2f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f |" % (
                      e["untraced_ns"], e["nop5_site_ns"], e["fast_nop5_site_ns"], e["async_nop5_site_ns"],
                      e["floor_nop5_site_ns"], e["int3_site_ns"], e["traced_x_floor"], e["fast_x_floor"],
                      e["async_x_floor"]), ""]
    if "follow" in res:
        f = res["follow"]
        lines += ["## Following a command's children (`run -- sh -c 'for ...; do /bin/true; done'`, median of %d)" % f["reps"], "",
                  "| children | untraced s | --no-follow s | followed, uprobe_multi s | ms per child | release after exit s | followed, shared sites s | ms per child | release after exit s | followed, uprobe links per process s | ms per child | release after exit s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, r in f["rows"].items():
            lines.append("| %s | %.2f | %.2f | %.2f | **%.1f** | %.1f | %.2f | %.1f | %.1f | %.2f | %.1f | %.1f |" % (
                n, r["untraced_s"], r["no_follow_s"], r.get("multi_s", 0), r.get("multi_ms_per_child", 0),
                r.get("multi_release_s", 0), r["shared_s"], r["shared_ms_per_child"], r["shared_release_s"],
                r["pmu_s"], r["pmu_ms_per_child"], r["pmu_release_s"]))
        lines += ["", "Release: how long the detached helper goes on releasing probes after the tracer exits. A "
                  "uprobe PMU link's release holds a kernel-wide lock that every other uprobe user waits on; a "
                  "uprobe_multi link's takes its sites out first, then waits out a grace period holding no lock.", ""]
    if "tracer" in res:
        t = res["tracer"]
        lines += ["## The tracer's own cost", "",
                  "%s: %d events in %.2f s (%.0f events/s); userspace CPU while the target ran %.1f%% of one core, "
                  "**%.2f%% per 100,000 events/s** (%.2f%% counting its start and its report too); RSS %d KiB; BPF maps %.1f MiB; "
                  "%d tracked blocks live at the end; %d dropped." % (
                      t["scenario"], t["events"], t["duration_s"], t["events_per_s"], t["user_cpu_pct_of_a_core"],
                      t["user_cpu_pct_per_100k_events_per_s"] or 0,
                      t.get("whole_run_user_cpu_pct_per_100k_events_per_s") or 0, t["max_rss_kb"],
                      t["bpf_map_bytes"] / 2**20, t["live_tracked_at_end"], t["dropped_events"]), ""]
        if "startup_cpu_user_s" in t:
            lines += ["Its start, once per run: %.2f s user, %.2f s system (mostly the kernel verifying the BPF "
                      "programs)." % (t["startup_cpu_user_s"], t["startup_cpu_sys_s"]), ""]
    if "system" in res:
        s = res["system"]
        lines += ["## System-wide, tier 0 (`-a`: tracepoints, no uprobe), median of %d" % res["reps"], "",
                  "Each rep runs the bystander untraced and watched, back to back, in turn first; the ratio is "
                  "the median of those pairs' ratios.", "",
                  "| bystander | CPU s untraced | CPU s watched by -a | watched / untraced |",
                  "|---|---|---|---|",
                  "| %s | %.3f | %.3f | **%.3f** |" % (s["fault_workload"], s["faults_alone_cpu_s"],
                                                  s["faults_watched_cpu_s"], s["faults_cpu_ratio"]),
                  "| %s | %.3f | %.3f | **%.3f** |" % (s["storm_workload"], s["storm_alone_cpu_s"],
                                                  s["storm_watched_cpu_s"], s["storm_cpu_ratio"]),
                  "",
                  "Tier 0's programs' own kernel time while each bystander ran, over its CPU time (bpf_stats; an "
                  "upper bound but for the tracepoint's dispatch around each run: every process's runs meanwhile, and "
                  "the counters' own clock reads): fault_loop "
                  "**%.2f%%** (%.0f ns a run, one run a fault), target_storm **%.2f%%**. The ratios above move by "
                  "several percent from rep to rep on these 2-CPU guests; these do not." % (
                      s.get("faults_programs_pct_of_cpu", 0), s.get("faults_program_ns_per_run", 0),
                      s.get("storm_programs_pct_of_cpu", 0)),
                  "",
                  "A busy allocator user not chosen (`alloc_pairs`, CPU ns per malloc+free pair) while `-a --heap` "
                  "traces another process's heap: %.1f alone, %.1f beside it, **x%.3f** (its code is not patched)." % (
                      s["unchosen_pairs_alone_cpu_ns"], s["unchosen_pairs_beside_heap_cpu_ns"],
                      s["unchosen_pairs_cpu_ratio"]),
                  "",
                  "The tracer, watching each in turn: %d tier-0 program runs (%.0f per s), its own CPU (user + system) %.2f%% "
                  "of one core, **%.2f%% per 100,000 tier-0 events/s**; RSS %d KiB with %d processes listed; BPF maps "
                  "%.1f MiB." % (s["tier0_events"], s["tier0_events_per_s"], s["tracer_cpu_pct_of_a_core"],
                                 s["tracer_cpu_pct_per_100k_events_per_s"] or 0, s["tracer_max_rss_kb"],
                                 s["processes_listed"], s["bpf_map_bytes"] / 2**20), ""]
    if "export" in res:
        e = res["export"]
        lines += ["## Fleet export (`--listen`, `--push`)", "",
                  "`-a --listen` with %d idle processes of their own names running (%d listed in /metrics: %d "
                  "series, %d bytes): the tracer's CPU over its idle CPU (%.2f%% of a core), %d scrapes each: "
                  "**%.2f ms per `/metrics` scrape**, %.2f ms per `/debug/pprof/heap` (no heap traced: an empty "
                  "profile)." % (e["processes"], e["processes_listed_in_metrics"], e["metrics_series"],
                                 e["metrics_bytes"], e["tracer_idle_cpu_pct"], e["scrapes"],
                                 e["cpu_ms_per_metrics_scrape"], e["cpu_ms_per_profile_scrape"]), "",
                  "A traced target (%s), CPU ns per pair, median of %d alternated reps:" % (e["push_workload"], res["reps"]), "",
                  "| no push | pushes to a receiver that answers | pushes to one that never answers |",
                  "|---|---|---|",
                  "| %.1f | %.1f (x%.3f) | %.1f (**x%.3f**) |" % (e["no_push_cpu_ns"], e["push_ok_cpu_ns"], e["push_ok_ratio"],
                                                            e["push_stalled_cpu_ns"], e["push_stalled_ratio"]), "",
                  "Against the stalled receiver the tracer counted %s." % json.dumps(e["stalled_export"]), ""]
    return "\n".join(lines) + "\n"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ops", type=int, default=100000, help="pairs per run in the pairs section")
    ap.add_argument("--scaling-pairs", type=int, default=200000, help="pairs per scaling run, split across threads")
    ap.add_argument("--threads", default="1,2,8,50,200")
    ap.add_argument("--entry-calls", type=int, default=100000)
    ap.add_argument("--children", default="20,200", help="children per run in the follow section")
    ap.add_argument("--fault-rounds", type=int, default=20, help="fault_loop rounds (64 MiB each) in the system section")
    ap.add_argument("--storm", type=int, default=1000, help="processes started in the system section's storm")
    ap.add_argument("--export-procs", type=int, default=1000, help="idle processes running in the export section")
    ap.add_argument("--scrapes", type=int, default=50, help="scrapes of each path in the export section")
    ap.add_argument("--sections", default="pairs,stacks,tables,scaling,bystander,entry,follow,tracer,system,export")
    ap.add_argument("--json", default=os.path.join(ROOT, "tools", "bench", "results.json"))
    ap.add_argument("--markdown", default=os.path.join(ROOT, "tools", "bench", "RESULTS.md"))
    ARGS = ap.parse_args()
    ARGS.threads = [int(t) for t in ARGS.threads.split(",")]
    ARGS.children = [int(c) for c in ARGS.children.split(",")]
    if os.geteuid() != 0:
        sys.exit("bench: needs root (BPF)")
    for exe in ("memscope-trace", "alloc_pairs", "track_cost", "target_tracked_threads", "fault_loop", "target_storm"):
        if not os.access(build_path(exe), os.X_OK):
            sys.exit("bench: %s not built (run tools/setup.sh)" % build_path(exe))
    res = {"machine": machine(), "reps": ARGS.reps}
    sections = ARGS.sections.split(",")
    # Sections not rerun keep their last figures (same machine only).
    try:
        old = json.load(open(ARGS.json))
        # The same kernel version (its build suffix aside) and CPU count.
        same = (old.get("machine", {}).get("kernel", "").split("-")[0] == res["machine"]["kernel"].split("-")[0]
                and old.get("machine", {}).get("cpus") == res["machine"]["cpus"])
        if same:
            for k in ("pairs", "stacks", "tables", "scaling", "bystander", "entry", "follow", "tracer", "system",
                      "export"):
                if k not in sections and k in old:
                    res[k] = old[k]
                    res.setdefault("kept", {})[k] = old.get("kept", {}).get(k, old["machine"].get("date", "?"))
    except (OSError, ValueError):
        pass
    for name, fn in (("pairs", section_pairs), ("stacks", section_stacks), ("tables", section_tables), ("scaling", section_scaling), ("bystander", section_bystander),
                     ("entry", section_entry), ("follow", section_follow), ("tracer", section_tracer),
                     ("system", section_system), ("export", section_export)):
        if name in sections:
            log("bench: %s" % name)
            fn(res)
    os.makedirs(os.path.dirname(ARGS.json), exist_ok=True)
    for path, text in ((ARGS.json, json.dumps(res, indent=2) + "\n"), (ARGS.markdown, markdown(res))):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    print(markdown(res))


if __name__ == "__main__":
    main()
