#!/usr/bin/env bash
# The server speed check: how much server CPU one echoed message costs in `kite echo`,
# against the raw TCP echo ceiling (bench/peers/raw_echo.c), measured by `kite bench`.
#
# Usage: bench/speedcheck.sh BUILD_DIR
#
# Each run starts a fresh server pinned to core 0 and runs
#   kite bench echo -c 100 -p 16 -s 32 -d DURATION --warmup WARMUP --server-pid PID
# pinned to core 1, recording the server's CPU microseconds per message. Runs alternate
# kite, raw, kite, raw ... for ROUNDS rounds, so slow drifts of a shared machine hit both
# sides alike. Prints each run, the medians, and the ratio kite/raw; the last stdout line
# is one JSON object. Exits non-zero if any run fails or counts an error.
#
# Environment:
#   ROUNDS=3 DURATION=10 WARMUP=1   the schedule (each run is bounded by a timeout)
#   KITE_SERVER="cmd ..."           server A instead of "BUILD_DIR/bin/kite echo --port 0 -q"
#   KITE_BENCH="cmd ..."            the load generator instead of "BUILD_DIR/bin/kite bench"
set -euo pipefail

build=${1:?usage: bench/speedcheck.sh BUILD_DIR}
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
warmup=${WARMUP:-1}
kite="$build/bin/kite"
raw_cmd="$build/bin/peer_raw_echo --port 0 -q"
bench_cmd=${KITE_BENCH:-"$kite bench"}
kite_cmd=${KITE_SERVER:-"$kite echo --port 0 -q"}

die() { echo "speedcheck: $*" >&2; exit 1; }

[ -x "$build/bin/peer_raw_echo" ] || die "no $build/bin/peer_raw_echo (build the bench peers)"
# shellcheck disable=SC2086
$bench_cmd --help >/dev/null 2>&1 || die "'$bench_cmd' does not run (set KITE_BENCH)"
# shellcheck disable=SC2086
if [ -z "${KITE_SERVER:-}" ] && ! $kite echo --help >/dev/null 2>&1; then
  echo "speedcheck: 'kite echo' is missing: measuring the raw echo on both sides" >&2
  kite_cmd=$raw_cmd
fi

# Pin server and generator to different cores when there are two.
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0"
  pin_bench="taskset -c 1"
else
  echo "speedcheck: fewer than 2 cores or no taskset: running unpinned" >&2
  pin_server=""
  pin_bench=""
fi

tmp=$(mktemp -d)
srv_pid=""
stop_server() {
  [ -n "$srv_pid" ] || return 0
  kill -TERM "$srv_pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# start_server CMD...: sets srv_pid and srv_port from the "listening on" line.
start_server() {
  local out="$tmp/server.out" line=""
  : >"$out"
  # taskset execs the server, so $! is the server's own PID (for /proc).
  # shellcheck disable=SC2086
  $pin_server "$@" >"$out" 2>"$tmp/server.err" &
  srv_pid=$!
  for _ in $(seq 100); do
    line=$(head -n 1 "$out")
    case "$line" in listening\ on\ ws://*) break ;; esac
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  case "$line" in listening\ on\ ws://*) ;; *) die "server '$*' did not start: $(cat "$tmp/server.err")" ;; esac
  srv_port=${line##*:}
  srv_port=${srv_port%%/*}
}

# json_field NAME: the number after "NAME": in the JSON line on stdin ("null" if none).
json_field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\|null\).*/\1/p"; }

# run_one LABEL SERVER_CMD: sets `per` to the server's CPU µs per message. Runs in the
# main shell (not a $(...) subshell) so the EXIT trap can always stop the server.
run_one() {
  local label=$1 json rate errors client
  # shellcheck disable=SC2086
  start_server $2
  # shellcheck disable=SC2086
  json=$(timeout $((duration + warmup + 40)) $pin_bench $bench_cmd echo --port "$srv_port" \
           -c 100 -p 16 -s 32 -d "$duration" --warmup "$warmup" --server-pid "$srv_pid" \
           --json-only) || die "$label: kite bench failed: $json"
  stop_server
  per=$(json_field server_cpu_us_per_msg <<<"$json")
  rate=$(json_field msgs_per_s <<<"$json")
  errors=$(json_field errors <<<"$json")
  client=$(json_field client_cpu_us_per_msg <<<"$json")
  [ "$errors" = 0 ] || die "$label: $errors errors: $json"
  if [ -z "$per" ] || [ "$per" = null ]; then die "$label: no server CPU figure: $json"; fi
  printf '  %-4s server %8s us/msg  %10s msg/s  (generator %s us/msg)\n' "$label" "$per" \
    "$rate" "$client" >&2
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

kite_runs=()
raw_runs=()
echo "speedcheck: $rounds rounds of ${duration}s (+${warmup}s warm-up), kite = '$kite_cmd'" >&2
for r in $(seq "$rounds"); do
  echo "round $r" >&2
  run_one kite "$kite_cmd"
  kite_runs+=("$per")
  run_one raw "$raw_cmd"
  raw_runs+=("$per")
done

kite_med=$(printf '%s\n' "${kite_runs[@]}" | median)
raw_med=$(printf '%s\n' "${raw_runs[@]}" | median)
ratio=$(awk -v a="$kite_med" -v b="$raw_med" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
echo "median server CPU per message: kite $kite_med us, raw $raw_med us; kite/raw = $ratio" >&2
printf '{"kite_us_per_msg":%s,"raw_us_per_msg":%s,"ratio":%s,"rounds":%s,"duration_s":%s}\n' \
  "$kite_med" "$raw_med" "$ratio" "$rounds" "$duration"
