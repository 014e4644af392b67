#!/usr/bin/env bash
# The server benchmarks: kite and its peers side by side, driven by `kite bench`.
#
# Usage: bench/run.sh BUILD_DIR [--quick] [--rounds N] [--servers LIST] [--scenarios LIST]
#                     [--variants] [--no-doc]
#
# Servers (each skipped, with a note, when it is not available):
#   kite        BUILD_DIR/bin/kite echo -q --port 0
#   raw         BUILD_DIR/bin/peer_raw_echo: the raw epoll TCP echo, the ceiling
#   lws         BUILD_DIR/bin/peer_lws_echo: libwebsockets (built when pkg-config finds it)
#   ws          node bench/peers/ws_echo.mjs: Node ws with bufferutil and utf-8-validate
#   uws         node bench/peers/uws_echo.mjs: uWebSockets.js (native engine, a JavaScript
#               callback per message; no TLS or permessage-deflate in its npm build)
#   websockets  /usr/bin/python3 bench/peers/websockets_echo.py: python3-websockets, asyncio
#   kite-cb     BUILD_DIR/bin/kite echo -q --port 0 in the HANDLER scenarios only (added
#               when kite is measured)
#
# Scenarios (docs/benchmarks.md, "Server benchmarks (S1-S4)"):
#   S1  100 connections x 16 in flight x 32 B text      server CPU us per message
#   S2  100 connections x 1 in flight x 32 B text       p50/p99/p99.9 latency, CPU per message
#   S3  10 connections x 1 in flight x 1 MiB binary     MB/s, server CPU per MiB
#   S4  19,000 idle connections                         connect rate, RSS bytes per connection
#
# Variant scenarios (not run by default: --scenarios LIST picks some, --variants adds
# them all to the list, --scenarios all runs S1-S4 and every variant):
#   S1-TLS, S3-TLS  S1, S3 over wss://: every server serves TLS 1.3 with a throwaway
#                   certificate (tests/interop/gen_certs.sh, in a temporary directory)
#                   and `kite bench --tls` connects; the raw echo and the uWebSockets.js
#                   build have no TLS: left out.
#   S1-PMD, S3-PMD  S1 (with 256 B messages: 32 B ones are below kite's and ws's
#                   compression thresholds) and S3 with permessage-deflate: each server
#                   accepts it with its default settings (kite echo --deflate), and
#                   `kite bench --deflate` requires it and sends compressible words.
#                   The raw echo and the uWebSockets.js build cannot: left out.
#   S1-HANDLER,     S1, S2 with kite's echo written as a sequential handler (kite echo
#   S2-HANDLER      --handler) as the "kite" server, and the callback echo measured
#                   beside it as "kite-cb", with the raw echo and the peers as in S1, S2.
#
# Every run starts a fresh server pinned to core 0 (taskset -c 0) and runs the generator
# on core 1. Within a scenario the servers take turns, kite raw lws ws uws websockets,
# kite raw ..., for ROUNDS rounds (default 3), so a slow drift of a shared machine hits
# them all alike. Each JSON line of `kite bench`, tagged with server, scenario and round,
# goes to bench/results/{full,quick}.jsonl, and what it ran on to {full,quick}.meta.json.
# bench/plot.py then writes the medians, the ratios and the targets into
# docs/benchmarks.md (between marker comments) and the plots into docs/img/; it can redo
# that from the two files alone. About 8-15 minutes by default (the peers are slow to
# accept 19,000 connections); --quick (1 round, shorter windows) about 2. The variants
# add about 10 minutes (1.5 with --quick).
#
# Exit status: 0 when every kite, kite-cb and raw run finished without errors (a peer's
# failed run is reported in the table, not fatal), 1 otherwise, 2 on bad usage.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

build=""
quick=0
rounds=""
servers="kite raw lws ws uws websockets"
base_scenarios="S1 S2 S3 S4"
variant_scenarios="S1-TLS S3-TLS S1-PMD S3-PMD S1-HANDLER S2-HANDLER"
scenarios=$base_scenarios
write_doc=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --rounds) rounds=${2:?}; shift ;;
    --servers) servers=${2//,/ }; shift ;;
    --scenarios) scenarios=${2//,/ }; shift ;;
    --variants) add_variants=1 ;;
    --no-doc) write_doc=0 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) [ -z "$build" ] || usage; build=$1 ;;
  esac
  shift
done
[ -n "$build" ] || usage
build=$(cd "$build" && pwd)
[ "$scenarios" != all ] || scenarios="$base_scenarios $variant_scenarios"
[ -z "${add_variants:-}" ] || scenarios="$scenarios $variant_scenarios"
for scen in $scenarios; do
  case " $base_scenarios $variant_scenarios " in
    *" $scen "*) ;;
    *) echo "bench/run.sh: unknown scenario '$scen'" >&2; usage ;;
  esac
done

# The schedule. Windows are short because the servers are far apart; the rounds and the
# medians take care of the noise of a shared machine.
if [ "$quick" = 1 ]; then
  mode=quick; rounds=${rounds:-1}; window=2; warmup=0.5; hold=1
else
  mode=full; rounds=${rounds:-3}; window=5; warmup=1; hold=2
fi
s4_conns=19000

kite="$build/bin/kite"
results_dir="$here/bench/results"
results="$results_dir/$mode.jsonl"

die() { echo "bench/run.sh: $*" >&2; exit 1; }
note() { echo "bench/run.sh: $*" >&2; }

[ -x "$kite" ] || die "no $kite (build first: make)"
"$kite" bench --help >/dev/null 2>&1 || die "'$kite bench' does not run"
"$kite" echo --help >/dev/null 2>&1 || die "'$kite echo' does not run"

# `make bench` builds before it installs the bench packages: when libwebsockets arrived
# after the build was configured, configure again so the lws peer gets built.
if [ ! -x "$build/bin/peer_lws_echo" ] && [ -f "$build/CMakeCache.txt" ] &&
   pkg-config --exists libwebsockets 2>/dev/null; then
  note "building peer_lws_echo"
  { cmake "$build" && cmake --build "$build" --target peer_lws_echo; } >"$build/peer_lws_echo.log" 2>&1 ||
    note "could not build peer_lws_echo (see $build/peer_lws_echo.log)"
fi

# server_cmd NAME: the command line of a server, or nothing when it is unavailable.
server_cmd() {
  case "$1" in
    kite|kite-cb) echo "$kite echo -q --port 0" ;;
    raw) [ -x "$build/bin/peer_raw_echo" ] && echo "$build/bin/peer_raw_echo -q --port 0" ;;
    lws) [ -x "$build/bin/peer_lws_echo" ] && echo "$build/bin/peer_lws_echo -q --port 0" ;;
    ws)
      command -v node >/dev/null 2>&1 && [ -d "$here/bench/peers/node_modules/ws" ] &&
        [ -d "$here/bench/peers/node_modules/bufferutil" ] &&
        [ -d "$here/bench/peers/node_modules/utf-8-validate" ] &&
        echo "node $here/bench/peers/ws_echo.mjs -q --port 0" ;;
    uws)
      command -v node >/dev/null 2>&1 &&
        [ -d "$here/bench/peers/node_modules/@trufflesuite/uws-js-unofficial" ] &&
        echo "node $here/bench/peers/uws_echo.mjs -q --port 0" ;;
    websockets)
      [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import websockets' 2>/dev/null &&
        echo "/usr/bin/python3 $here/bench/peers/websockets_echo.py -q --port 0" ;;
    *) return 0 ;;
  esac
  return 0
}

# variant_of SCENARIO: TLS, PMD, HANDLER, or nothing for S1-S4.
variant_of() { case "$1" in *-*) echo "${1#*-}" ;; esac; }

# scenario_servers SCENARIO: the active servers that take part, in turn order. The raw
# echo and the uWebSockets.js build speak neither TLS nor permessage-deflate; the
# callback echo joins the handler scenarios.
scenario_servers() {
  local v name
  v=$(variant_of "$1")
  for name in "${active[@]}"; do
    case "$v:$name" in
      TLS:raw|PMD:raw|TLS:uws|PMD:uws) ;;
      HANDLER:kite) echo kite kite-cb ;;
      *) echo "$name" ;;
    esac
  done
}

# scenario_cmd NAME SCENARIO: the server's command line for one scenario (every server
# takes the same --tls-cert/--tls-key and --deflate options).
scenario_cmd() {
  local cmd
  cmd=$(server_cmd "$1")
  case "$(variant_of "$2")" in
    TLS) cmd="$cmd --tls-cert $tmp/certs/server.crt --tls-key $tmp/certs/server.key" ;;
    PMD) cmd="$cmd --deflate" ;;
    HANDLER) [ "$1" != kite ] || cmd="$cmd --handler" ;;
  esac
  echo "$cmd"
}

active=()
for s in $servers; do
  if [ -n "$(server_cmd "$s")" ]; then
    active+=("$s")
  else
    note "skipping $s: not available (scripts/install-deps.sh bench, then rebuild)"
  fi
done
[ ${#active[@]} -gt 0 ] || die "no server to measure"

# Pin the server and the generator to different cores when there are two.
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0"; pin_bench="taskset -c 1"
else
  note "fewer than 2 cores or no taskset: running unpinned"
  pin_server=""; pin_bench=""
fi

tmp=$(mktemp -d)
srv_pid=""
stop_server() {
  [ -n "$srv_pid" ] || return 0
  kill -TERM "$srv_pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# The TLS scenarios' certificate: a throwaway CA and a server certificate for
# 127.0.0.1, made once per run (the servers read it; `kite bench` does not verify it).
case " $scenarios " in
  *-TLS\ *)
    command -v openssl >/dev/null 2>&1 || die "the TLS scenarios need the openssl command"
    sh "$here/tests/interop/gen_certs.sh" "$tmp/certs" || die "could not make certificates" ;;
esac

# start_server CMD...: sets srv_pid and srv_port from the "listening on" line; returns 1
# when the server does not start within 10 s.
start_server() {
  local out="$tmp/server.out" line=""
  : >"$out"
  # taskset execs the server, so $! is the server's own PID (for /proc).
  # shellcheck disable=SC2086
  $pin_server "$@" >"$out" 2>"$tmp/server.err" &
  srv_pid=$!
  for _ in $(seq 100); do
    line=$(head -n 1 "$out")
    case "$line" in listening\ on\ ws://* | listening\ on\ wss://*) break ;; esac
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  case "$line" in
    listening\ on\ ws://* | listening\ on\ wss://*) ;;
    *) note "server '$*' did not start: $(head -c 500 "$tmp/server.err")"; stop_server; return 1 ;;
  esac
  srv_port=${line##*:}
  srv_port=${srv_port%%/*}
}

# bench_args SCENARIO: the generator's arguments for one scenario.
bench_args() {
  local w="-d $window --warmup $warmup"
  case "$1" in
    S1|S1-TLS|S1-HANDLER) echo "echo -c 100 -p 16 -s 32 $w" ;;
    S1-PMD) echo "echo -c 100 -p 16 -s 256 $w" ;;
    S2|S2-HANDLER) echo "echo -c 100 -p 1 -s 32 $w" ;;
    S3|S3-TLS|S3-PMD) echo "echo -c 10 -p 1 -s 1048576 --binary $w" ;;
    S4) echo "connect -c $s4_conns -d $hold" ;;
  esac
  case "$(variant_of "$1")" in
    TLS) echo "--tls" ;;
    PMD) echo "--deflate" ;;
  esac
}

json_field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\|null\|true\|false\).*/\1/p"; }

failed_core=0
is_core() { [ "$1" = kite ] || [ "$1" = kite-cb ] || [ "$1" = raw ]; }
# run_one SERVER SCENARIO ROUND: one fresh server, one generator run, one tagged JSON line.
run_one() {
  local name=$1 scen=$2 round=$3 json rc=0 errors
  # shellcheck disable=SC2046
  if ! start_server $(scenario_cmd "$name" "$scen"); then
    printf '{"server":"%s","scenario":"%s","round":%s,"failed":true,"first_error":"server did not start"}\n' \
      "$name" "$scen" "$round" >>"$results"
    if is_core "$name"; then failed_core=1; fi
    return 0
  fi
  # shellcheck disable=SC2046,SC2086
  json=$(timeout 180 $pin_bench "$kite" bench $(bench_args "$scen") --port "$srv_port" \
           --server-pid "$srv_pid" --json-only 2>"$tmp/bench.err") || rc=$?
  stop_server
  case "$json" in
    \{*) ;;
    *) json="{\"errors\":1,\"first_error\":\"kite bench exit $rc: $(head -c 200 "$tmp/bench.err" | tr -d '"\\\n')\"}" ;;
  esac
  errors=$(json_field errors <<<"$json")
  local failed=false
  if [ "$rc" != 0 ] || [ "${errors:-1}" != 0 ]; then
    failed=true
    note "$name $scen round $round: failed (exit $rc): $(head -c 300 <<<"$json")"
    if is_core "$name"; then failed_core=1; fi
  fi
  printf '{"server":"%s","scenario":"%s","round":%s,"failed":%s,%s\n' \
    "$name" "$scen" "$round" "$failed" "${json#\{}" >>"$results"
  summary "$name" "$scen" "$json"
}

# One progress line per run, on stderr.
summary() {
  local name=$1 scen=$2 json=$3 f
  case "${scen%%-*}" in
    S1) f="$(json_field msgs_per_s <<<"$json") msg/s, server $(json_field server_cpu_us_per_msg <<<"$json") us/msg" ;;
    S2) f="p99 $(sed -n 's/.*"p99":\([0-9.]*\).*/\1/p' <<<"$json") us, server $(json_field server_cpu_us_per_msg <<<"$json") us/msg" ;;
    S3) f="$(json_field mb_per_s <<<"$json") MB/s, server $(json_field server_cpu_us_per_msg <<<"$json") us/MiB" ;;
    S4) f="$(json_field connects_per_s <<<"$json") conn/s, $(json_field server_rss_per_conn_bytes <<<"$json") B/conn" ;;
  esac
  printf '  %-10s %-11s %s\n' "$scen" "$name" "$f" >&2
}

mkdir -p "$results_dir"
: >"$results"
started=$(date +%s)
note "$mode run: ${active[*]}; scenarios $scenarios; $rounds round(s), ${window}s windows"
for scen in $scenarios; do
  for round in $(seq "$rounds"); do
    for name in $(scenario_servers "$scen"); do
      run_one "$name" "$scen" "$round"
    done
  done
done
elapsed=$(( $(date +%s) - started ))
note "measured in ${elapsed}s; results in $results"

# What the results were measured on, for the report's header.
meta="$results_dir/$mode.meta.json"
/usr/bin/env python3 - "$meta" "$build" "$here" "$mode" "$rounds" "$window" "$warmup" \
  "$hold" "$elapsed" <<'EOF'
import json, os, platform, subprocess, sys, time
out, build, here, mode, rounds, window, warmup, hold, elapsed = sys.argv[1:]
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
cpu = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
btype = ""
try:
    for line in open(os.path.join(build, "CMakeCache.txt")):
        if line.startswith("CMAKE_BUILD_TYPE:"):
            btype = line.split("=", 1)[1].strip()
except OSError:
    pass
def npm_version(pkg):
    try:
        p = os.path.join(here, "bench/peers/node_modules", pkg, "package.json")
        return json.load(open(p))["version"]
    except Exception:
        return ""
meta = {
    "date": time.strftime("%Y-%m-%d", time.gmtime()),
    # "+changes" when the work tree differs from the commit (read-only check), outside
    # what the benchmarks themselves write (the results and the docs).
    "commit": run("git", "-C", here, "rev-parse", "--short", "HEAD") +
              ("" if subprocess.run(["git", "-C", here, "diff-index", "--quiet", "HEAD", "--",
                                     ".", ":(exclude)bench/results", ":(exclude)docs"],
                                    capture_output=True).returncode == 0 else "+changes"),
    "cpu": cpu, "nproc": os.cpu_count(), "kernel": platform.release(),
    "loadavg": open("/proc/loadavg").read().split()[0],
    "build_type": btype, "mode": mode, "rounds": int(rounds), "window_s": float(window),
    "warmup_s": float(warmup), "hold_s": float(hold), "elapsed_s": int(elapsed),
    "versions": {
        "libwebsockets": run("pkg-config", "--modversion", "libwebsockets").rstrip("-"),
        "node": run("node", "--version").lstrip("v"),
        "ws": npm_version("ws"), "bufferutil": npm_version("bufferutil"),
        "utf-8-validate": npm_version("utf-8-validate"),
        "uws": npm_version("@trufflesuite/uws-js-unofficial"),
        "python": run("/usr/bin/python3", "-c", "import platform; print(platform.python_version())"),
        "websockets": run("/usr/bin/python3", "-c", "import websockets; print(websockets.__version__)"),
    },
}
json.dump(meta, open(out, "w"))
EOF

plot_args=("$results" --meta "$meta")
if [ "$write_doc" = 1 ]; then
  plot_args+=(--doc "$here/docs/benchmarks.md" --img "$here/docs/img")
fi
/usr/bin/env python3 "$here/bench/plot.py" "${plot_args[@]}"
exit "$failed_core"
