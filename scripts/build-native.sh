#!/usr/bin/env bash
# Compile the hot path with mypyc into C extensions next to the sources: the
# sans-IO SIP core (regswitch/sip/) and what every REGISTER runs through
# (endpoint, registrar, events, flood/flapping guards, ids, networks). The same
# typed Python (mypy --strict clean), about a fifth less CPU per registration
# (README, "Benchmarks"). Python imports an extension before the .py of the
# same name; regswitch/__init__.py refuses a module whose source changed after
# compiling (by content, against the sha256 list in src/regswitch/.compiled),
# so a stale build is never run by mistake (`make build` again, or
# `make clean-build`).
#
# Needs a C compiler and the Python headers. Without them regswitch runs the
# same code uncompiled: a warning here, an error under CI=true (CI tests what
# `make run` ships).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
case $VENV in
    /*) PY=$VENV/bin/python ;;
    *) PY=$PWD/$VENV/bin/python ;;
esac
STAMP=src/regswitch/.compiled
# Globs relative to src/. Package __init__ files stay interpreted (the top one
# checks for staleness); registrar/bindings.py too: its Binding extends a
# storage record that is not compiled, which a native class cannot.
MODULES="regswitch/sip/[a-z]*.py regswitch/endpoint.py regswitch/events.py regswitch/ids.py \
regswitch/networks.py regswitch/protection/[a-z]*.py \
regswitch/registrar/{accounts,auth,contacts,expiry,policy,service}.py"

clean() {
    find src -name '*.so' -delete
    rm -f "$STAMP"
    rm -rf src/build
}

# shellcheck disable=SC2086  # the globs are meant to expand, inside src/
modules=($(cd src && eval "echo $MODULES"))

case "${1:-}" in
    clean) clean; exit 0 ;;
    --list) printf 'src/%s\n' "${modules[@]}"; exit 0 ;;  # the Makefile's dependencies
esac

fail() {
    clean
    if [ "${CI:-}" = "true" ]; then
        echo "build-native: $1 (CI=true: the compiled build is required)" >&2
        exit 1
    fi
    echo "build-native: $1; regswitch runs uncompiled (the same code, slower)" >&2
    exit 0
}

headers=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if ! command -v cc >/dev/null 2>&1 || [ ! -f "$headers/Python.h" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build-native: installing a C compiler and the Python headers"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev
    fi
fi
command -v cc >/dev/null 2>&1 || fail "no C compiler (apt-get install gcc)"
[ -f "$headers/Python.h" ] || fail "no Python headers in $headers (apt-get install python3-dev)"

clean
echo "build-native: compiling ${#modules[@]} modules with mypyc"
log=$(mktemp)
if ! (cd src && "$PY" -m mypyc "${modules[@]}") >"$log" 2>&1; then
    tail -20 "$log" >&2
    rm -f "$log"
    fail "mypyc failed"
fi
rm -f "$log"
rm -rf src/build
# what was compiled, by content: regswitch/__init__.py checks it at import
(cd src && sha256sum "${modules[@]}") >"$STAMP"
