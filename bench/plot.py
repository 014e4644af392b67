#!/usr/bin/env python3
"""Summarise and plot the server benchmarks that bench/run.sh collected.

Usage: bench/plot.py RESULTS.jsonl [--meta META.json] [--doc docs/benchmarks.md]
                     [--img docs/img]

RESULTS.jsonl holds one `kite bench` JSON line per run, tagged by bench/run.sh with
"server", "scenario", "round" and "failed". For every scenario and server this takes the
median of each metric over the runs that did not fail, and writes markdown: one table per
scenario with the ratios to the raw TCP echo, the targets kite must meet, and kite's
ratio to each peer. The variant scenarios (S1-TLS, S3-TLS, S1-PMD, S3-PMD, S1-HANDLER,
S2-HANDLER) get tables with their base scenario's columns; where the raw echo took no
part (TLS, PMD) the ratio columns compare each server with itself in the base scenario
(what TLS or compression costs it), and their rows join the kite-against-each-peer
table. The markdown goes to stdout and, with --doc, replaces what lies
between the two marker comments in that file (appended with its own heading when the
markers are missing). With --img it also draws one PNG per scenario with gnuplot:
medians as bars, the spread of the rounds as error bars.

Only the Python standard library and gnuplot are used (Debian: python3, gnuplot-nox).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

BEGIN = "<!-- BEGIN bench/run.sh: generated, do not edit by hand -->"
END = "<!-- END bench/run.sh -->"

SERVERS = ["kite", "kite-cb", "raw", "lws", "ws", "uws", "websockets"]
LABELS = {
    "kite": "kite",
    "kite-cb": "kite (callbacks)",
    "raw": "raw TCP echo",
    "lws": "libwebsockets",
    "ws": "Node ws",
    "uws": "uWebSockets.js",
    "websockets": "Python websockets",
}

# A metric: key, header, path in the JSON line, format, and whether lower is better.
class Metric:
    def __init__(self, key, header, path, fmt, lower_better, unit=""):
        self.key, self.header, self.path = key, header, path
        self.fmt, self.lower_better, self.unit = fmt, lower_better, unit

    def get(self, row):
        v = row
        for k in self.path:
            if not isinstance(v, dict) or v.get(k) is None:
                return None
            v = v[k]
        return float(v)


M = Metric
SCENARIOS = {
    "S1": {
        "title": "S1: 100 connections x 16 in flight x 32 B text",
        "metrics": [
            M("rate", "msg/s", ["msgs_per_s"], "{:,.0f}", False),
            M("cpu", "server CPU us/msg", ["server_cpu_us_per_msg"], "{:.3f}", True, "us"),
            M("gen", "generator CPU us/msg", ["client_cpu_us_per_msg"], "{:.3f}", True),
            M("p99", "p99 latency us", ["latency_us", "p99"], "{:,.0f}", True),
        ],
        "ratios": ["cpu"],
        "plot": [("cpu", "server CPU per message (us)"), ("rate", "messages per second")],
    },
    "S2": {
        "title": "S2: 100 connections x 1 in flight x 32 B text (ping-pong)",
        "metrics": [
            M("p50", "p50 us", ["latency_us", "p50"], "{:,.1f}", True),
            M("p99", "p99 us", ["latency_us", "p99"], "{:,.1f}", True, "us"),
            M("p999", "p99.9 us", ["latency_us", "p999"], "{:,.1f}", True),
            M("cpu", "server CPU us/msg", ["server_cpu_us_per_msg"], "{:.3f}", True, "us"),
            M("rate", "msg/s", ["msgs_per_s"], "{:,.0f}", False),
        ],
        "ratios": ["p99", "cpu"],
        "plot": [("p99", "p99 latency (us)"), ("cpu", "server CPU per message (us)")],
    },
    "S3": {
        "title": "S3: 10 connections x 1 in flight x 1 MiB binary",
        "metrics": [
            M("mbs", "MB/s", ["mb_per_s"], "{:,.0f}", False, "MB/s"),
            M("cpu", "server CPU us/MiB", ["server_cpu_us_per_msg"], "{:,.0f}", True, "us"),
            M("gen", "generator CPU us/MiB", ["client_cpu_us_per_msg"], "{:,.0f}", True),
            M("p99", "p99 latency us", ["latency_us", "p99"], "{:,.0f}", True),
        ],
        "ratios": ["mbs", "cpu"],
        "plot": [("mbs", "MB/s (one direction)"), ("cpu", "server CPU per MiB (us)")],
    },
    "S4": {
        "title": "S4: 19,000 idle connections",
        "metrics": [
            M("rate", "connects/s", ["connects_per_s"], "{:,.0f}", False, "/s"),
            M("rss", "server RSS B/conn", ["server_rss_per_conn_bytes"], "{:,.0f}", True, "B"),
            M("secs", "connect s", ["connect_s"], "{:.2f}", True),
            # What opening the connections cost each side: the rate is set by whichever
            # runs out of CPU first (the generator, on loopback).
            M("ocpu", "server CPU us/conn opening", ["connect_server_cpu_us_per_conn"],
              "{:.1f}", True),
            M("ogen", "generator CPU us/conn opening", ["connect_client_cpu_us_per_conn"],
              "{:.1f}", True),
            M("closet", "close timeouts", ["close_timeouts"], "{:,.0f}", True),
        ],
        "ratios": ["rate", "rss"],
        "plot": [("rate", "connections per second"), ("rss", "server RSS per connection (bytes)")],
    },
}

# Variant scenarios: the base scenario's metrics under another title (bench/run.sh says
# how each is run).
VARIANTS = [
    ("S1-TLS", "S1", "S1-TLS: S1 over TLS (wss://)"),
    ("S3-TLS", "S3", "S3-TLS: S3 over TLS (wss://)"),
    ("S1-PMD", "S1", "S1-PMD: 100 connections x 16 in flight x 256 B compressible text, "
                     "permessage-deflate"),
    ("S3-PMD", "S3", "S3-PMD: 10 connections x 1 in flight x 1 MiB compressible binary, "
                     "permessage-deflate"),
    ("S1-HANDLER", "S1", "S1-HANDLER: S1 with the kite echo as a sequential handler"),
    ("S2-HANDLER", "S2", "S2-HANDLER: S2 with the kite echo as a sequential handler"),
]
for _name, _base, _title in VARIANTS:
    SCENARIOS[_name] = dict(SCENARIOS[_base], title=_title, base=_base)


def label(srv, scen):
    """A server's name in a scenario: kite is the handler echo in the HANDLER ones."""
    if srv == "kite" and scen.endswith("-HANDLER"):
        return "kite (handler)"
    return LABELS[srv]


# Where a plot's axis breaks a long name that has no space in it, so that neighbouring
# names do not run into each other.
PLOT_BREAKS = {"libwebsockets": "lib-\\nwebsockets", "uWebSockets.js": "uWeb-\\nSockets.js"}


def plot_label(srv, scen):
    name = label(srv, scen)
    return PLOT_BREAKS.get(name, name.replace(" ", "\\n"))


# The targets (issue "Benchmarks: kite bench, peers side by side"): scenario, metric,
# description, and a test on (kite median, raw median).
TARGETS = [
    ("S1", "cpu", "server CPU per message <= 1.0x raw", lambda k, r: k <= r),
    ("S2", "p99", "p99 latency <= raw", lambda k, r: k <= r),
    ("S2", "cpu", "server CPU per message <= raw", lambda k, r: k <= r),
    ("S3", "mbs", "MB/s >= 0.95x raw", lambda k, r: k >= 0.95 * r),
    ("S3", "cpu", "server CPU per MiB <= 1.0x raw", lambda k, r: k <= r),
    ("S4", "rss", "RSS per idle connection <= 256 B", lambda k, r: k <= 256),
    ("S4", "rate", "connect rate >= raw", lambda k, r: k >= r),
]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def metric(scen, key):
    for m in SCENARIOS[scen]["metrics"]:
        if m.key == key:
            return m
    raise KeyError(key)


def summarise(rows):
    """{scenario: {server: {"n": ok runs, "of": runs, key: (median, min, max)}}}"""
    out = {}
    for scen, spec in SCENARIOS.items():
        for srv in SERVERS:
            runs = [r for r in rows if r.get("scenario") == scen and r.get("server") == srv]
            if not runs:
                continue
            ok = [r for r in runs if not r.get("failed")]
            cell = {"n": len(ok), "of": len(runs),
                    "error": next((r.get("first_error", "") for r in runs if r.get("failed")), "")}
            for m in spec["metrics"]:
                vals = [v for v in (m.get(r) for r in ok) if v is not None]
                if vals:
                    cell[m.key] = (statistics.median(vals), min(vals), max(vals))
            out.setdefault(scen, {})[srv] = cell
    return out


def fmt(m, v):
    return "-" if v is None else m.fmt.format(v)


def med(cell, key):
    v = cell.get(key) if cell else None
    return v[0] if v else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def scenario_table(scen, cells, summary):
    """The ratio columns divide by the raw echo in this scenario or, when it took no
    part (a TLS or PMD variant), by the same server in the base scenario."""
    spec = SCENARIOS[scen]
    raw = cells.get("raw")
    base = spec.get("base") if raw is None else None
    refname = base or "raw"
    head = ["server"] + [m.header for m in spec["metrics"]]
    head += ["%s x %s" % (metric(scen, k).header.split(" us")[0], refname)
             for k in spec["ratios"]]
    head.append("runs ok")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for srv in SERVERS:
        if srv not in cells:
            continue
        c = cells[srv]
        ref = summary.get(base, {}).get(srv) if base else raw
        row = ["**%s**" % label(srv, scen) if srv == "kite" else label(srv, scen)]
        row += [fmt(m, med(c, m.key)) for m in spec["metrics"]]
        for k in spec["ratios"]:
            r = ratio(med(c, k), med(ref, k))
            row.append("-" if r is None else "%.2f" % r)
        row.append("%d/%d" % (c["n"], c["of"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def paired_ratios(rows, scen, key):
    """kite / raw for each round of a scenario in which both ran without failing. The two
    ran back to back in that round, so a slow drift of the machine cancels out of each
    ratio; their spread shows how far one run of the scenario can be trusted."""
    m = metric(scen, key)
    by_round = {}
    for r in rows:
        if r.get("scenario") == scen and r.get("server") in ("kite", "raw") and \
                not r.get("failed"):
            v = m.get(r)
            if v is not None:
                by_round.setdefault(r.get("round"), {})[r["server"]] = v
    return [d["kite"] / d["raw"] for _, d in sorted(by_round.items(), key=lambda kv: str(kv[0]))
            if "kite" in d and "raw" in d and d["raw"]]


def verdict(test, k, r, pairs):
    """"yes" or "no" on the medians, then "(holds in N of M rounds)" when the rounds
    disagree with each other."""
    if k is None or r is None:
        return "-"
    holds = test(k, r)
    word = "yes" if holds else "**no**"
    if pairs:
        n = sum(1 for x in pairs if test(x, 1.0))
        if 0 < n < len(pairs):
            word += " (holds in %d of %d rounds)" % (n, len(pairs))
    return word


def targets_table(summary, rows):
    lines = ["| scenario | target | kite | raw | kite / raw | per round: min - max | holds |",
             "|---|---|---|---|---|---|---|"]
    for scen, key, text, test in TARGETS:
        cells = summary.get(scen, {})
        m = metric(scen, key)
        k, r = med(cells.get("kite"), key), med(cells.get("raw"), key)
        rr = ratio(k, r)
        pairs = paired_ratios(rows, scen, key)
        # The RSS target is absolute (bytes), not a ratio: its rounds are judged on kite.
        if scen == "S4" and key == "rss":
            pairs = []
        spread = "%.2f - %.2f" % (min(pairs), max(pairs)) if len(pairs) > 1 else "-"
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            scen, text, fmt(m, k), fmt(m, r), "-" if rr is None else "%.2f" % rr, spread,
            verdict(test, k, r, pairs)))
    return "\n".join(lines)


def peers_table(summary):
    peers = [p for p in SERVERS if p not in ("kite", "raw")
             and any(p in summary.get(s, {}) for s in SCENARIOS)]
    if not peers:
        return ""
    head = ["scenario", "metric"] + [LABELS[p] for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # Scenarios that were not run (a variants-only run) have no row.
    rows = [(scen, key) for scen, key, _, _ in TARGETS if scen in summary]
    rows += [(scen, key) for scen, _, _ in VARIANTS if scen in summary
             for key in SCENARIOS[scen]["ratios"]]
    for scen, key in rows:
        cells = summary.get(scen, {})
        m = metric(scen, key)
        row = [scen, m.header]
        k = med(cells.get("kite"), key)
        for p in peers:
            v = med(cells.get(p), key)
            r = ratio(k, v)
            if r is None:
                row.append("-")
                continue
            # Within 2% is a draw: latency percentiles fall into histogram buckets
            # about 1.6% wide (docs/bench-tool.md).
            better = (k < v) if m.lower_better else (k > v)
            verdict = "even" if abs(r - 1) < 0.02 else ("better" if better else "**worse**")
            row.append("%.2f %s" % (r, verdict))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def header(meta):
    if not meta:
        return ""
    v = meta.get("versions", {})
    return (
        "Generated by `bench/run.sh` (%s mode: %d round(s), %g s windows after %g s warm-up, "
        "S4 held %g s; measuring took %d s) on %s, commit %s, %s build. Machine: %s, %d "
        "cores, Linux %s, load average %s at the start. Peers: libwebsockets %s, Node %s "
        "with ws %s (bufferutil %s, utf-8-validate %s) and uWebSockets.js %s, Python %s with "
        "websockets %s."
        % (meta.get("mode", "?"), meta.get("rounds", 0), meta.get("window_s", 0),
           meta.get("warmup_s", 0), meta.get("hold_s", 0), meta.get("elapsed_s", 0),
           meta.get("date", "?"), meta.get("commit", "?"), meta.get("build_type", "?"),
           meta.get("cpu", "?"), meta.get("nproc", 0), meta.get("kernel", "?"),
           meta.get("loadavg", "?"), v.get("libwebsockets", "-"), v.get("node", "-"),
           v.get("ws", "-"), v.get("bufferutil", "-"), v.get("utf-8-validate", "-"),
           v.get("uws", "-"), v.get("python", "-"), v.get("websockets", "-")))


def failures(rows):
    bad = [r for r in rows if r.get("failed")]
    if not bad:
        return ""
    out = ["Failed runs (left out of the medians):", ""]
    for r in bad:
        out.append("- %s %s round %s: %s" % (r.get("scenario"), LABELS.get(r.get("server"), "?"),
                                            r.get("round"), r.get("first_error") or
                                            "errors %s" % r.get("error_detail")))
    return "\n".join(out)


def markdown(rows, summary, meta, images):
    parts = [BEGIN, "", header(meta), ""]
    if any(scen in summary for scen, _, _, _ in TARGETS):
        parts += ["Targets (kite against the raw TCP echo; \"per round\" divides kite's figure by "
                  "the raw echo's of the same round, run back to back):", "",
                  targets_table(summary, rows), ""]
    pt = peers_table(summary)
    if pt:
        handler = any(scen.endswith("-HANDLER") for scen in summary)
        parts += ["kite against each peer: kite's median divided by the peer's, on the same "
                  "metrics (lower is better for CPU, latency and RSS; higher for rates; "
                  "within 2% is even)" +
                  (". In the HANDLER scenarios kite is the sequential-handler echo, and "
                   "\"kite (callbacks)\" is the callback echo measured beside it:"
                   if handler else ":"), "",
                  pt, ""]
    for scen, spec in SCENARIOS.items():
        if scen not in summary:
            continue
        parts += ["### " + spec["title"], "", scenario_table(scen, summary[scen], summary), ""]
        if scen in images:
            parts += ["![%s](%s)" % (spec["title"], images[scen]), ""]
    f = failures(rows)
    if f:
        parts += [f, ""]
    parts.append(END)
    return "\n".join(parts)


def plot(summary, img_dir, doc_dir):
    """One PNG per scenario, two panels; returns {scenario: path relative to doc_dir}."""
    if not shutil.which("gnuplot"):
        print("bench/plot.py: no gnuplot: no plots", file=sys.stderr)
        return {}
    os.makedirs(img_dir, exist_ok=True)
    images = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scen, spec in SCENARIOS.items():
            cells = summary.get(scen)
            if not cells:
                continue
            png = os.path.join(img_dir, "bench-%s.png" % scen.lower())
            script = [
                "set terminal pngcairo size 1200,440 font 'sans,10'",
                "set output '%s'" % png,
                "set multiplot layout 1,2 title '%s (median of the rounds; bars: min to max)'"
                % spec["title"],
                "set style fill solid 0.85 border -1",
                "set boxwidth 0.6",
                "set grid ytics",
                "set xtics nomirror scale 0 font ',9'",
                "unset key",
                "set offsets 0.5, 0.5, 0, 0",
                "set bmargin 4",
            ]
            for i, (key, ylabel) in enumerate(spec["plot"]):
                m = metric(scen, key)
                data = os.path.join(tmp, "%s-%d.dat" % (scen, i))
                vals = []
                with open(data, "w") as f:
                    for srv in SERVERS:
                        v = cells.get(srv, {}).get(key)
                        if not v:
                            continue
                        colour = (0xd95f02 if srv.startswith("kite") else
                                  (0x7570b3 if srv == "raw" else 0x1b9e77))
                        f.write('"%s" %g %g %g %d "%s"\n' % (
                            plot_label(srv, scen), v[0], v[1], v[2], colour,
                            m.fmt.format(v[0])))
                        vals.append(v)
                if not vals:
                    continue
                lo, hi = min(v[0] for v in vals), max(v[2] for v in vals)
                logy = lo > 0 and max(v[0] for v in vals) / lo > 30
                script += [
                    "set title '%s%s'" % (ylabel, ", log scale" if logy else ""),
                    "set logscale y" if logy else "unset logscale y",
                    "set yrange [%s:%g]" % ("%g" % (lo / 3) if logy else "0", hi * (4 if logy else 1.2)),
                    "plot '%s' using 0:2:5:xtic(1) with boxes lc rgb variable, "
                    "'' using 0:2:3:4 with yerrorbars lc rgb 'black' pt 7 ps 0.4, "
                    "'' using 0:4:6 with labels offset 0,0.8 font ',9'" % data,
                ]
            script.append("unset multiplot")
            gp = os.path.join(tmp, "%s.gp" % scen)
            with open(gp, "w") as f:
                f.write("\n".join(script) + "\n")
            r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
            if r.returncode != 0:
                print("bench/plot.py: gnuplot failed for %s: %s" % (scen, r.stderr), file=sys.stderr)
                continue
            images[scen] = os.path.relpath(png, doc_dir)
    return images


def replace_section(doc, text):
    with open(doc) as f:
        old = f.read()
    b, e = old.find(BEGIN), old.find(END)
    if b >= 0 and e > b:
        new = old[:b] + text + old[e + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n## Server benchmarks (S1-S4)\n\n" + text + "\n"
    with open(doc, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--meta")
    ap.add_argument("--doc")
    ap.add_argument("--img")
    a = ap.parse_args()
    rows = load(a.results)
    summary = summarise(rows)
    meta = json.load(open(a.meta)) if a.meta else {}
    images = {}
    if a.img:
        doc_dir = os.path.dirname(os.path.abspath(a.doc)) if a.doc else os.getcwd()
        images = plot(summary, a.img, doc_dir)
    text = markdown(rows, summary, meta, images)
    print(text)
    if a.doc:
        replace_section(a.doc, text)
        print("bench/plot.py: wrote %s" % a.doc, file=sys.stderr)


if __name__ == "__main__":
    main()
