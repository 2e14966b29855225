#!/usr/bin/env bash
# System tools the tests drive: SIPp (Debian package sip-tester), Chromium for
# browser tests (used at /usr/bin/chromium; never `playwright install`), and
# openssl for the self-signed TLS test certificate, promtool (Debian package
# prometheus) to check the /metrics exposition, baresip (baresip-core) as a
# real phone following the README's phone set-up, and PostgreSQL (Debian package
# postgresql: the tests run initdb/pg_ctl from /usr/lib/postgresql/<major>/bin
# themselves, as the unprivileged user postgres; the packaged cluster is not used),
# redis-server (the cluster tests start their own on a free loopback port),
# sngrep, a HEP consumer for the HEP capture test, and linphone-cli (linphonec)
# as a second real phone following the README.
# With --bench (from `make bench`) also the references the benchmarks measure
# against: Kamailio with its SQLite modules (Debian kamailio,
# kamailio-sqlite-modules).
#
# As root, missing ones are installed with apt-get (one `apt-get update`).
# Not root: with CI=true that is an error (CI must not skip tests for a
# missing tool); otherwise a warning, and those tests skip.
set -euo pipefail

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # promtool checks /metrics
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)  # README's phone set-up
# initdb is not on PATH in Debian; runuser runs it as postgres when we are root
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 \
    || missing+=(postgresql)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)  # cluster tests: shared location
command -v sngrep >/dev/null 2>&1 || missing+=(sngrep)  # listens for HEP in test_hep.py
command -v linphonecsh >/dev/null 2>&1 || missing+=(linphone-cli)  # README's linphone set-up
if [ "${1:-}" = "--bench" ]; then
    command -v kamailio >/dev/null 2>&1 || missing+=(kamailio)
    # db_sqlite: the Kamailio bench reads its subscribers (credentials) from SQLite
    compgen -G "/usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so" >/dev/null \
        || compgen -G "/usr/lib/*/kamailio/modules/db_sqlite.so" >/dev/null \
        || missing+=(kamailio-sqlite-modules)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    exit 0
fi

msg="setup-system: missing system packages: ${missing[*]} (run 'sudo apt-get install ${missing[*]}')"
if [ "${CI:-}" = "true" ]; then
    echo "$msg; CI=true and not root, cannot install them" >&2
    exit 1
fi
echo "$msg; the tests that need them will be skipped" >&2
