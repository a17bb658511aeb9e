#!/bin/sh
# Derive the 3.11 / 3.12 struct offsets (Linux x86_64, LP64) from each pyenv CPython's
# own headers. Usage: tools/pyoffsets/generate.sh [/root/.pyenv/versions/3.11.7 ...]
set -eu
here=$(dirname "$0")
[ $# -gt 0 ] || set -- /root/.pyenv/versions/3.11.7 /root/.pyenv/versions/3.12.1
for prefix in "$@"; do
    inc=$(ls -d "$prefix"/include/python3.*)
    out=$(mktemp)
    cc -std=gnu11 -I"$inc" -I"$inc/internal" -o "$out" "$here/offsets.c"
    echo "# $prefix"
    "$out"
    rm -f "$out"
done
