#!/usr/bin/env bash
# The callgrind baseline: how many instructions the kite server spends per echoed
# message, counted by valgrind's callgrind, so a change can be judged on a machine too
# noisy for timings. Instruction counts of this workload repeat to within a few dozen
# instructions in 184 million.
#
# Usage: bench/callgrind.sh BUILD_DIR [--no-doc]
#
# Workloads: the server runs under `valgrind --tool=callgrind`; the generator (not under
# valgrind) sends text messages of 32 bytes:
#   ping-pong  `kite bench echo -c 1 -p 1 -s 32 -n N`: one at a time over one connection,
#              so every message takes the same path: one wake-up, one read, one parse,
#              one echo, one write (the S2 shape). N = 100,000 and N = 10,000.
#   pipelined  `kite bench echo -c 100 -p 16 -s 32 -n N`: the S1 shape, where a wake-up
#              reads and answers several messages. N = 200,000 and N = 20,000.
# Each server is run twice per workload; the difference of the two counts divided by the
# difference of N is the cost of one message without the start-up, the handshakes and
# the shutdown. The same is done for the raw TCP echo (bench/peers/raw_echo.c), the
# floor. The table of kite's functions by their own instructions (callgrind_annotate)
# comes from the ping-pong N = 100,000 run. The pipelined figure moves a little with how
# the messages happen to batch (a few instructions per message between runs).
#
# Writes the figures into docs/benchmarks.md between marker comments (unless --no-doc)
# and prints them. Takes about half a minute.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: bench/callgrind.sh BUILD_DIR [--no-doc]}
build=$(cd "$build" && pwd)
write_doc=1
[ "${2:-}" = --no-doc ] && write_doc=0
n_big=100000
n_small=10000
top=25

die() { echo "bench/callgrind.sh: $*" >&2; exit 1; }
command -v valgrind >/dev/null 2>&1 || die "no valgrind (scripts/install-deps.sh bench)"
command -v callgrind_annotate >/dev/null 2>&1 || die "no callgrind_annotate"
[ -x "$build/bin/kite" ] || die "no $build/bin/kite"
[ -x "$build/bin/peer_raw_echo" ] || die "no $build/bin/peer_raw_echo"

if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0"; pin_bench="taskset -c 1"
else
  pin_server=""; pin_bench=""
fi

tmp=$(mktemp -d)
srv_pid=""
stop_server() {
  [ -n "$srv_pid" ] || return 0
  kill -TERM "$srv_pid" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# measure NAME N C P CMD...: runs CMD under callgrind while N messages are echoed by
# C connections with P in flight each; sets `ir`
# to the server's total instruction count and leaves the profile in $tmp/NAME-N.out.
measure() {
  local name=$1 n=$2 conns=$3 inflight=$4 out="$tmp/$1-$2-$3.out" line="" port
  shift 4
  : >"$tmp/server.out"
  # shellcheck disable=SC2086
  $pin_server valgrind --tool=callgrind --callgrind-out-file="$out" "$@" \
    >"$tmp/server.out" 2>"$tmp/server.err" &
  srv_pid=$!
  for _ in $(seq 300); do
    line=$(head -n 1 "$tmp/server.out")
    case "$line" in listening\ on\ ws://*) break ;; esac
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  case "$line" in listening\ on\ ws://*) ;; *) die "$name did not start: $(tail -5 "$tmp/server.err")" ;; esac
  port=${line##*:}
  port=${port%%/*}
  # shellcheck disable=SC2086
  $pin_bench "$build/bin/kite" bench echo --port "$port" -c "$conns" -p "$inflight" -s 32 -n "$n" \
    --json-only >"$tmp/bench.json" 2>"$tmp/bench.err" ||
    die "$name: kite bench failed: $(cat "$tmp/bench.json" "$tmp/bench.err" | head -c 400)"
  stop_server
  ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out" | head -n 1)
  [ -n "$ir" ] || die "$name: no instruction count in $out"
  echo "  $name, $n messages ($conns x $inflight): $ir instructions" >&2
}

n_pipe_big=200000
n_pipe_small=20000
declare -A per total per_pipe
for name in kite raw; do
  if [ "$name" = kite ]; then
    cmd=("$build/bin/kite" echo -q --port 0)
  else
    cmd=("$build/bin/peer_raw_echo" -q --port 0)
  fi
  measure "$name" "$n_big" 1 1 "${cmd[@]}"
  big=$ir
  measure "$name" "$n_small" 1 1 "${cmd[@]}"
  small=$ir
  total[$name]=$big
  per[$name]=$(( (big - small) / (n_big - n_small) ))
  measure "$name" "$n_pipe_big" 100 16 "${cmd[@]}"
  big=$ir
  measure "$name" "$n_pipe_small" 100 16 "${cmd[@]}"
  small=$ir
  per_pipe[$name]=$(( (big - small) / (n_pipe_big - n_pipe_small) ))
done

# The top functions by their own instructions, with this machine's paths cut to the
# repository-relative file (or the library's name).
functions=$(callgrind_annotate --inclusive=no "$tmp/kite-$n_big-1.out" 2>/dev/null |
  awk -v top="$top" -v src="$here/" -v n="$n_big" -v total="${total[kite]}" '
    /^-+$/ { dashes++; next }
    dashes >= 5 && NF >= 3 && $1 ~ /^[0-9,]+$/ && printed < top {
      ir = $1; gsub(",", "", ir)
      loc = $0; sub(/^[ 0-9,]+\([ 0-9.%]+\) +/, "", loc)
      obj = ""
      if (match(loc, / \[[^]]*\]$/)) { obj = substr(loc, RSTART + 2, RLENGTH - 3); loc = substr(loc, 1, RSTART - 1) }
      k = index(loc, ":"); file = substr(loc, 1, k - 1); fn = substr(loc, k + 1)
      if (index(file, src) == 1) file = substr(file, length(src) + 1)
      else if (file ~ /^\//) { sub(/.*\//, "", file) }
      sub(/.*\//, "", obj)
      if (file == "???") file = obj
      printf "| `%s` | %s | %.0f | %.1f%% |\n", fn, file, ir / n, 100 * ir / total
      printed++
    }')

ratio=$(awk -v a="${per[kite]}" -v b="${per[raw]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
ratio_pipe=$(awk -v a="${per_pipe[kite]}" -v b="${per_pipe[raw]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo "?")
# "+changes": the work tree differs from the commit outside what the benchmarks write.
git -C "$here" diff-index --quiet HEAD -- . ':(exclude)bench/results' ':(exclude)docs' \
  2>/dev/null || commit="$commit+changes"
valgrind_v=$(valgrind --version)
report=$(cat <<EOF
<!-- BEGIN bench/callgrind.sh: generated, do not edit by hand -->

Generated by \`bench/callgrind.sh\` on $(date -u +%Y-%m-%d), commit $commit, $valgrind_v.

| server | ping-pong: instructions, $n_big messages | ping-pong: per message | x raw | pipelined (100 x 16): per message | x raw |
|---|---|---|---|---|---|
| **kite echo** | ${total[kite]} | **${per[kite]}** | $ratio | **${per_pipe[kite]}** | $ratio_pipe |
| raw TCP echo | ${total[raw]} | ${per[raw]} | 1.00 | ${per_pipe[raw]} | 1.00 |

kite's top $top functions by their own instructions (callgrind_annotate, $n_big-message ping-pong run;
"per message" is the function's count divided by $n_big, start-up included):

| function | file | per message | share |
|---|---|---|---|
$functions

<!-- END bench/callgrind.sh -->
EOF
)
echo "$report"
if [ "$write_doc" = 1 ]; then
  doc="$here/docs/benchmarks.md"
  REPORT="$report" python3 - "$doc" <<'EOF'
import os, sys
doc = sys.argv[1]
text = os.environ["REPORT"]
begin, end = "<!-- BEGIN bench/callgrind.sh", "<!-- END bench/callgrind.sh -->"
old = open(doc).read()
b, e = old.find(begin), old.find(end)
if b >= 0 and e > b:
    new = old[:b] + text + old[e + len(end):]
else:
    new = old.rstrip("\n") + "\n\n## Callgrind baseline\n\n" + text + "\n"
open(doc, "w").write(new)
EOF
  echo "bench/callgrind.sh: wrote $doc" >&2
fi
