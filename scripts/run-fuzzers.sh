#!/usr/bin/env bash
# Runs every libFuzzer binary in DIR for SECONDS each, on its corpus in fuzz/corpus/.
# New inputs land in build/fuzz/new-corpus/<target>/ (merge the useful ones by hand,
# see fuzz/README.md). Usage: scripts/run-fuzzers.sh DIR SECONDS
set -euo pipefail
dir=$1; secs=${2:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
status=0
for bin in "$dir"/fuzz_*; do
  [ -x "$bin" ] || continue
  target=$(basename "$bin"); target=${target#fuzz_}
  out="$dir/../new-corpus/$target"; mkdir -p "$out"
  dict=""
  # A target's own dictionary, else its family's (http_request -> http.dict).
  family=${target%%_*}
  [ "$family" = handshake ] && family=http
  for d in "$here/fuzz/$target.dict" "$here/fuzz/$family.dict"; do
    if [ -f "$d" ]; then dict="-dict=$d"; break; fi
  done
  echo "== fuzz $target for ${secs}s"
  if ! "$bin" -max_total_time="$secs" -print_final_stats=1 $dict "$out" "$here/fuzz/corpus/$target" \
        2>"$dir/../fuzz-$target.log"; then
    echo "!! $target found a failure; see $dir/../fuzz-$target.log"; status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$dir/../fuzz-$target.log" || true
done
exit $status
