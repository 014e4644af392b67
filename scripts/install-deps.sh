#!/usr/bin/env bash
# Installs what kite's build and test suite need on Debian 12, if it is missing.
# As root it runs apt-get; otherwise it names the packages to install and fails.
# Usage: scripts/install-deps.sh [build|test|fuzz|bench]   (default: test)
set -euo pipefail

what=${1:-test}
here=$(cd "$(dirname "$0")/.." && pwd)

build_pkgs=(gcc make cmake pkg-config libssl-dev zlib1g-dev)
test_pkgs=(openssl python3 python3-websockets nodejs chromium)
fuzz_pkgs=(clang libclang-rt-14-dev)
bench_pkgs=(libwebsockets-dev gnuplot-nox python3-websockets nodejs valgrind util-linux)

case "$what" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  fuzz)  want=("${build_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|fuzz|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  # Node.js may come from another repository that bundles npm: any node and npm will do.
  if [ "$p" = nodejs ]; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
      missing+=(nodejs npm)
    fi
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "kite: missing Debian packages: ${missing[*]}" >&2
    echo "kite: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "kite: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node packages, from the npm registry: ws and playwright-core for the interop tests,
# ws with its native add-ons and uWebSockets.js for the benchmark peers. Reinstalled when
# the lock file changes.
npm_install() {
  local dir=$1
  [ -f "$dir/package.json" ] || return 0
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "kite: installing npm packages in ${dir#"$here"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
[ "$what" = test ] && npm_install "$here/tests/interop"
[ "$what" = bench ] && npm_install "$here/bench/peers"
exit 0
