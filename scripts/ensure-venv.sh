#!/usr/bin/env bash
# Create .venv (if missing) and install regswitch editable with its test and
# dev extras. Quick when nothing changed: a stamp inside .venv records the
# last successful install and is newer than pyproject.toml and this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.regswitch-installed"
EXTRAS=${EXTRAS:-test,dev}

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

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt "$0" ]; then
    exit 0
fi

echo "ensure-venv: installing regswitch[$EXTRAS] into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]"
touch "$STAMP"
