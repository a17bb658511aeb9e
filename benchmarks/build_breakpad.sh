#!/usr/bin/env bash
# Build Breakpad's Linux client library (libbreakpad_client.a) from the sources inside
# the npm `minidump` 0.26.0 package (installed by .ci/install-validators.sh under
# .tools/npm), into a cache directory under .tools/ that is never committed, then link
# benchmarks/breakpad_harness.cc against it. Prints the harness path on success.
#
# Recipe (shared/reference/validators.md §4): ./configure --disable-processor
# --disable-tools; the bundled linux_syscall_support.h copied to src/third_party/lss/;
# make src/client/linux/libbreakpad_client.a with -Wno-error.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${MDK_TOOLS_DIR:-$repo/.tools}"
deps="$tools/npm/node_modules/minidump/deps"
cache="$tools/breakpad-client"
lib="$cache/src/src/client/linux/libbreakpad_client.a"
harness="$cache/breakpad_harness"

if [ ! -d "$deps/breakpad" ]; then
    echo "Breakpad sources not found at $deps/breakpad: run .ci/install-validators.sh" >&2
    exit 1
fi
for tool in g++ make; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install g++ make)" >&2; exit 1; }
done
if [ ! -f "$lib" ]; then
    rm -rf "$cache/src"
    mkdir -p "$cache"
    cp -r "$deps/breakpad" "$cache/src"
    mkdir -p "$cache/src/src/third_party/lss"
    cp "$deps/third_party/lss/linux_syscall_support.h" "$cache/src/src/third_party/lss/"
    (cd "$cache/src" && ./configure --disable-processor --disable-tools >"$cache/configure.log" 2>&1 \
        && make -j2 src/client/linux/libbreakpad_client.a CXXFLAGS="-O2 -Wno-error" \
           CFLAGS="-O2 -Wno-error" >"$cache/make.log" 2>&1) \
        || { echo "Breakpad build failed; see $cache/configure.log and $cache/make.log" >&2; exit 1; }
fi
if [ ! -x "$harness" ] || [ "$repo/benchmarks/breakpad_harness.cc" -nt "$harness" ]; then
    g++ -O2 -std=c++17 -I"$cache/src/src" -o "$harness" "$repo/benchmarks/breakpad_harness.cc" \
        "$lib" -pthread
fi
echo "$harness"
