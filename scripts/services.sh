#!/usr/bin/env bash
# Installs and starts the real services the tests use, if they are not running yet,
# and prints the environment the tests read (`eval "$(scripts/services.sh)"`).
#
# - An S3-compatible object store (moto's server, from PyPI), for checkpoints in object
#   storage, with an empty bucket `sluice-test`.
#
# Everything is installed under ~/.cache/sluice, outside the clone.
set -euo pipefail
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
venv="$cache/venv"
port="${SLUICE_S3_PORT:-45123}"
mkdir -p "$cache"

if [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "moto[server]==5.*" >&2
fi

endpoint="http://127.0.0.1:$port"
# HTTP through Python, which the install needs anyway (curl may be missing).
http() {
    python3 - "$@" <<'PY'
import sys, urllib.request
request = urllib.request.Request(sys.argv[2], method=sys.argv[1])
try:
    urllib.request.urlopen(request, timeout=2)
except urllib.error.HTTPError:
    pass
PY
}
if ! http GET "$endpoint" 2>/dev/null; then
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$cache/moto.log" 2>&1 &
    for _ in $(seq 1 100); do
        http GET "$endpoint" 2>/dev/null && break
        sleep 0.1
    done
fi
http PUT "$endpoint/sluice-test"

cat <<ENV
export SLUICE_TEST_S3_BUCKET=sluice-test
export AWS_ENDPOINT=$endpoint
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=sluice
export AWS_SECRET_ACCESS_KEY=sluice
export AWS_REGION=us-east-1
export SLUICE_REQUIRE_SERVICES=1
ENV
