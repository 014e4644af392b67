#!/bin/sh
# permessage-deflate measurements for docs/benchmarks.md: server RSS per connection at
# N idle compressed connections and after each exchanged one message, and echo
# throughput, CPU and wire ratio, for kite's presets, two explicit settings, no
# compression, and python-websockets with its default compression.
#
#   bench/bench_pmd.sh BUILD_DIR [N_CONNECTIONS] [ECHO_SECONDS] [MODES] [REPEAT]
#
# MODES: "hold echo" (default), or one of them; REPEAT: runs of each (default 1; the
# echo figures on a shared machine are best read as the best of a few).
# BUILD_DIR is a Release build (bin/kite, bin/bench_pmd_load). The server runs on core
# 0, the load on core 1 (taskset). Needs `ulimit -n` above N + 100. Prints one JSON
# line per run on stdout (and bench_pmd_load's summaries on stderr).
set -eu
build=${1:?usage: bench/bench_pmd.sh BUILD_DIR [N] [SECONDS]}
n=${2:-10000}
secs=${3:-5}
modes=${4:-hold echo}
repeat=${5:-1}
here=$(cd "$(dirname "$0")" && pwd)
kite=$build/bin/kite
load=$build/bin/bench_pmd_load
py=/usr/bin/python3
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# start NAME CMD...: run a server on core 0, wait for its listening line
start() {
  name=$1
  shift
  : >"$out"
  taskset -c 0 "$@" >"$out" 2>/dev/null &
  pid=$!
  i=0
  while ! grep -q '^listening on ' "$out"; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "$name did not start" >&2; exit 1; }
    sleep 0.1
  done
  url=$(sed -n 's/^listening on //p' "$out")z
}

stop() {
  kill "$pid"
  wait "$pid" || true
  sleep 1
}

run() {
  name=$1
  shift
  for wl in json binary; do
    for mode in $modes; do
      k=0
      while [ $k -lt "$repeat" ]; do
        k=$((k + 1))
        start "$name" "$@"
        printf '{"server":"%s",' "$name"
        if [ "$mode" = hold ]; then
          taskset -c 1 "$load" hold "$url" -c "$n" --server-pid "$pid" --workload $wl --json-only | cut -c2-
        else
          taskset -c 1 "$load" echo "$url" -c 20 -d "$secs" --server-pid "$pid" --workload $wl \
            --json-only | cut -c2-
        fi
        stop
      done
    done
  done
}

run "kite, no deflate" "$kite" echo --port 0 -q
for p in balanced speed memory max-ratio; do
  run "kite --deflate=$p" "$kite" echo --port 0 -q --deflate=$p
done
run "kite 12/5 kept streams" "$load" serve --window 12 --mem-level 5 --kept
run "kite 12/8 pooled" "$load" serve --window 12 --mem-level 8 --pooled
if $py -c 'import websockets' 2>/dev/null; then
  run "python-websockets, no deflate" $py "$here/bench_pmd_python_echo.py" --no-deflate
  run "python-websockets default deflate" $py "$here/bench_pmd_python_echo.py"
fi
