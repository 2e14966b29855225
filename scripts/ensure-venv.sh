#!/usr/bin/env bash
# Create a virtualenv (if missing) and install regswitch into it.
#
#   scripts/ensure-venv.sh               .venv, editable, with the test and dev extras
#   scripts/ensure-venv.sh --bare        only create the venv
#   scripts/ensure-venv.sh --wheel FILE  install a built wheel (and EXTRAS, default none)
#
# The editable install is quick when nothing changed: a stamp inside the venv
# records the last successful install and is newer than pyproject.toml and
# this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.regswitch-installed"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
    echo "ensure-venv: creating $VENV with $("$PYTHON" --version 2>&1)"
    if ! "$PYTHON" -m venv "$VENV"; then
        # Debian's python3 ships venv/ensurepip in a separate package.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            rm -rf "$VENV"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            "$PYTHON" -m venv "$VENV"
        else
            echo "ensure-venv: '$PYTHON -m venv' failed; install python3-venv" >&2
            exit 1
        fi
    fi
fi

case "${1:-}" in
    --bare) exit 0 ;;
    --wheel)
        wheel=${2:?--wheel needs a file}
        extras=${EXTRAS:-}
        echo "ensure-venv: installing $(basename "$wheel")${extras:+[$extras]} into $VENV"
        # the same version number as an earlier build: replace it, keep the dependencies
        "${PIP[@]}" uninstall --quiet --yes regswitch 2>/dev/null || true
        "${PIP[@]}" install --quiet "$wheel${extras:+[$extras]}"
        exit 0
        ;;
esac

# Compiled modules next to the sources (left by the in-tree build regswitch
# had before its wheel was compiled instead) would shadow edited sources.
find src -name '*.so' -print -delete | sed 's/^/ensure-venv: removed a stale compiled module: /'

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt "$0" ]; then
    exit 0
fi

EXTRAS=${EXTRAS:-test,dev}
echo "ensure-venv: installing regswitch[$EXTRAS] into $VENV (editable)"
"${PIP[@]}" install --quiet -e ".[$EXTRAS]"
touch "$STAMP"
