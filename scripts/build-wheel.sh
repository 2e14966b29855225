#!/usr/bin/env bash
# Build the regswitch wheel into dist/ with the hot path compiled by mypyc
# (hatch_build.py), and write the wheel's path to dist/.built.
#
# Needs a C compiler and the Python headers (installed with apt when run as
# root). Without them the wheel is pure Python, with a message; under CI=true
# (or REGSWITCH_MYPYC=required) that is an error instead.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-run}  # whose pip builds the wheel
if [ -z "${REGSWITCH_MYPYC:-}" ]; then
    REGSWITCH_MYPYC=$([ "${CI:-}" = true ] && echo required || echo auto)
fi
export REGSWITCH_MYPYC

if [ "$REGSWITCH_MYPYC" != off ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    include=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    if ! command -v cc >/dev/null 2>&1 || [ ! -f "$include/Python.h" ]; then
        echo "build-wheel: installing a C compiler and the Python headers"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev
    fi
fi

scripts/ensure-venv.sh --bare
# mypyc type-checks the compiled modules against the libraries they import
# (redis, hiredis), found in the venv whose pip builds: they go there first
mapfile -t deps < <("$VENV/bin/python" -c '
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
"$VENV/bin/python" -m pip --disable-pip-version-check install --quiet "${deps[@]}"
mkdir -p dist build
rm -f dist/regswitch-*.whl dist/.built
log=build/wheel.log
echo "build-wheel: building the wheel (REGSWITCH_MYPYC=$REGSWITCH_MYPYC; log in $log)"
start=$SECONDS
if ! "$VENV/bin/python" -m pip --disable-pip-version-check wheel --verbose --no-deps \
        --wheel-dir dist . >"$log" 2>&1; then
    grep -h 'regswitch-build:' "$log" | sed 's/^ *//' >&2 || true
    tail -30 "$log" >&2
    echo "build-wheel: failed (see $log)" >&2
    exit 1
fi
grep -h 'regswitch-build:' "$log" | sed 's/^ *//' || true
wheel=$(ls dist/regswitch-*.whl)
echo "build-wheel: $wheel in $((SECONDS - start)) s"
echo "$wheel" >dist/.built
