#!/usr/bin/env bash
# TLS against plain: `kite echo` over wss:// compared with `kite echo` over ws:// in the
# same run, measured by `kite bench` (which speaks TLS with OpenSSL for wss:// URLs).
#
# Usage: bench/tls_ratio.sh BUILD_DIR
#
# Two workloads:
#   small  kite bench echo -c 100 -p 16 -s 32         (many small messages: record batching)
#   big    kite bench echo -c 4 -p 2 -s 1048576       (1 MiB messages: bulk encryption)
# Each run starts a fresh server pinned to core 0 (plain, or with --tls-cert/--tls-key and
# a throwaway certificate made by tests/interop/gen_certs.sh) and runs the generator pinned
# to core 1. Runs alternate plain, TLS, plain, TLS ... for ROUNDS rounds, so slow drifts
# of a shared machine hit both alike. Prints each run, the medians and the ratios TLS/plain
# of throughput (messages per second) and of the server's CPU per message; the last stdout
# line is one JSON object. Exits non-zero if a run fails or counts an error.
#
# Environment: ROUNDS=3 DURATION=5 WARMUP=1
set -euo pipefail

build=${1:?usage: bench/tls_ratio.sh BUILD_DIR}
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
here=$(cd "$(dirname "$0")" && pwd)
kite="$build/bin/kite"

die() { echo "tls_ratio: $*" >&2; exit 1; }
[ -x "$kite" ] || die "no $kite"
command -v openssl >/dev/null || die "the openssl command is needed to make a certificate"

if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0"
  pin_bench="taskset -c 1"
else
  echo "tls_ratio: fewer than 2 cores or no taskset: running unpinned" >&2
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

sh "$here/../tests/interop/gen_certs.sh" "$tmp/certs"

# start_server tls|plain: sets srv_pid and srv_url from the "listening on" line.
start_server() {
  local out="$tmp/server.out" line="" args=(echo --port 0 -q)
  [ "$1" = tls ] && args+=(--tls-cert "$tmp/certs/server.crt" --tls-key "$tmp/certs/server.key")
  : >"$out"
  # shellcheck disable=SC2086
  $pin_server "$kite" "${args[@]}" >"$out" 2>"$tmp/server.err" &
  srv_pid=$!
  for _ in $(seq 100); do
    line=$(head -n 1 "$out")
    case "$line" in listening\ on\ ws*) break ;; esac
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  case "$line" in listening\ on\ ws*) ;; *) die "server did not start: $(cat "$tmp/server.err")" ;; esac
  srv_url=${line#listening on }
}

json_field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\|null\).*/\1/p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run_one WORKLOAD tls|plain: sets rate (msg/s) and per (server CPU us/msg).
run_one() {
  local load=$1 kind=$2 json errors mb flags
  case "$load" in
    small) flags="-c 100 -p 16 -s 32" ;;
    big) flags="-c 4 -p 2 -s 1048576" ;;
  esac
  start_server "$kind"
  # shellcheck disable=SC2086
  json=$(timeout $((duration + warmup + 60)) $pin_bench "$kite" bench echo "$srv_url" $flags \
           -d "$duration" --warmup "$warmup" --server-pid "$srv_pid" --json-only) \
    || die "$load/$kind: kite bench failed: $json"
  stop_server
  rate=$(json_field msgs_per_s <<<"$json")
  per=$(json_field server_cpu_us_per_msg <<<"$json")
  mb=$(json_field mb_per_s <<<"$json")
  errors=$(json_field errors <<<"$json")
  [ "$errors" = 0 ] || die "$load/$kind: $errors errors: $json"
  printf '  %-5s %-5s %10s msg/s %9s MB/s  server %9s us/msg\n' "$load" "$kind" "$rate" "$mb" \
    "$per" >&2
}

declare -A runs
echo "tls_ratio: $rounds rounds of ${duration}s (+${warmup}s warm-up) per workload" >&2
for load in small big; do
  for r in $(seq "$rounds"); do
    echo "round $r ($load)" >&2
    for kind in plain tls; do
      run_one "$load" "$kind"
      runs[$load.$kind.rate]+="$rate "
      runs[$load.$kind.cpu]+="$per "
    done
  done
done

med() { printf '%s\n' ${runs[$1]} | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
out="{"
for load in small big; do
  pr=$(med "$load.plain.rate"); tr=$(med "$load.tls.rate")
  pc=$(med "$load.plain.cpu"); tc=$(med "$load.tls.cpu")
  rr=$(ratio "$tr" "$pr"); cr=$(ratio "$tc" "$pc")
  echo "$load: median msg/s plain $pr, TLS $tr: TLS/plain throughput = $rr;" \
       "server us/msg plain $pc, TLS $tc: TLS/plain CPU = $cr" >&2
  out+="\"$load\":{\"plain_msgs_per_s\":$pr,\"tls_msgs_per_s\":$tr,\"throughput_ratio\":$rr,"
  out+="\"plain_server_us_per_msg\":$pc,\"tls_server_us_per_msg\":$tc,\"cpu_ratio\":$cr},"
done
echo "${out}\"rounds\":$rounds,\"duration_s\":$duration}"
