#!/usr/bin/env bash
# Installs kite from BUILD_DIR into a temporary prefix, then builds and runs a small
# program against it three ways: pkg-config (shared), the CMake package (shared and
# static). Usage: check.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1; build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
export LD_LIBRARY_PATH="$libdir"

echo "# pkg-config"
cc -std=c11 -Wall -Werror -o "$tmp/pc_consumer" "$src/tests/packaging/consumer.c" \
   $(pkg-config --cflags --libs kite)
"$tmp/pc_consumer"

echo "# CMake package"
cmake -S "$src/tests/packaging/cmake" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm" >/dev/null
"$tmp/cm/consumer_shared"
"$tmp/cm/consumer_static"
echo "packaging ok"
