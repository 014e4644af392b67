#!/usr/bin/env bash
# Sequential handlers against the callback API on the same engine (docs/benchmarks.md,
# "Sequential handlers"):
#
#   1. memory: RSS growth of the server per session with N sessions open and idle, their
#      handlers suspended in kite_receive() (kite bench connect --server-pid);
#   2. echo throughput: kite bench echo -c 100 -p 16 -s 32, alternating callback and
#      handler servers run after run, with the server's CPU per message;
#   3. the coroutine context switch (bench_coro).
#
# Usage: bench/handler_bench.sh BUILD_DIR
# Environment: ROUNDS=5 DURATION=5 WARMUP=1 SESSIONS=10000
# Server pinned to core 0, generator to core 1 (when there are two cores and taskset).
# Prints one line per run and a JSON summary with the medians as the last line.
set -euo pipefail

build=${1:?usage: bench/handler_bench.sh BUILD_DIR}
rounds=${ROUNDS:-5}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
sessions=${SESSIONS:-10000}
server="$build/bin/bench_handler_server"
gen="$build/bin/kite bench"

die() { echo "handler_bench: $*" >&2; exit 1; }
[ -x "$server" ] || die "no $server (build the benchmarks)"
[ -x "$build/bin/kite" ] || die "no $build/bin/kite"

if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0"
  pin_gen="taskset -c 1"
else
  pin_server=""
  pin_gen=""
fi

tmp=$(mktemp -d)
srv_pid=""
stop_server() {
  [ -n "$srv_pid" ] || return 0
  kill -TERM "$srv_pid" 2>/dev/null || true
  for _ in $(seq 80); do
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# start_server MODE: sets srv_pid and srv_port.
start_server() {
  : >"$tmp/out"
  # shellcheck disable=SC2086
  $pin_server "$server" --mode "$1" --port 0 >"$tmp/out" 2>"$tmp/err" &
  srv_pid=$!
  local line=""
  for _ in $(seq 100); do
    line=$(head -n 1 "$tmp/out")
    case "$line" in listening\ on\ ws://*) break ;; esac
    sleep 0.1
  done
  case "$line" in listening\ on\ ws://*) ;; *) die "server did not start: $(cat "$tmp/err")" ;; esac
  srv_port=${line##*:}
  srv_port=${srv_port%/}
}

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo "== memory: $sessions idle sessions" >&2
declare -A rss
for mode in callback handler; do
  start_server "$mode"
  # shellcheck disable=SC2086
  j=$($pin_gen $gen connect --port "$srv_port" -c "$sessions" -d 3 --server-pid "$srv_pid" --json-only)
  stop_server
  [ "$(field "$j" errors)" = "0" ] || die "connect run against $mode failed: $j"
  rss[$mode]=$(field "$j" server_rss_per_conn_bytes)
  echo "memory $mode: ${rss[$mode]} bytes per session" >&2
done

echo "== echo: -c 100 -p 16 -s 32, $rounds rounds of $duration s" >&2
declare -a cb_mps h_mps cb_us h_us
for r in $(seq "$rounds"); do
  for mode in callback handler; do
    start_server "$mode"
    # shellcheck disable=SC2086
    j=$($pin_gen $gen echo --port "$srv_port" -c 100 -p 16 -s 32 -d "$duration" \
        --warmup "$warmup" --server-pid "$srv_pid" --json-only)
    stop_server
    [ "$(field "$j" errors)" = "0" ] || die "echo run against $mode failed: $j"
    mps=$(field "$j" msgs_per_s)
    us=$(field "$j" server_cpu_us_per_msg)
    echo "round $r $mode: $mps msg/s, server $us us/msg" >&2
    if [ "$mode" = callback ]; then cb_mps+=("$mps"); cb_us+=("$us"); else h_mps+=("$mps"); h_us+=("$us"); fi
  done
done

switch_ns=$($pin_gen "$build/bin/bench_coro" 2>/dev/null | awk -F'|' '/context switch \(resume/ {gsub(/[^0-9.]/, "", $3); print $3}')
echo "context switch: $switch_ns ns" >&2

mc=$(median "${cb_mps[@]}"); mh=$(median "${h_mps[@]}")
uc=$(median "${cb_us[@]}"); uh=$(median "${h_us[@]}")
ratio=$(awk -v a="$mh" -v b="$mc" 'BEGIN {printf "%.3f", a / b}')
echo "medians: callback $mc msg/s ($uc us/msg), handler $mh msg/s ($uh us/msg), ratio $ratio" >&2
printf '{"rss_per_session_callback":%s,"rss_per_session_handler":%s,"callback_msgs_per_s":%s,"handler_msgs_per_s":%s,"throughput_ratio":%s,"callback_us_per_msg":%s,"handler_us_per_msg":%s,"switch_ns":%s}\n' \
  "${rss[callback]}" "${rss[handler]}" "$mc" "$mh" "$ratio" "$uc" "$uh" "${switch_ns:-null}"
