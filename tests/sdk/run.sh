#!/usr/bin/env bash
# SDK-compatibility test: start a talos binary on a free loopback port with an
# in-memory store and run tests/sdk (the official `ory-client` Python SDK) against it.
# The config carries a freshly generated Ed25519 JWKS (`talos jwk`) for derived JWTs.
# `talos serve admin` and `talos serve check` also run (same config, ports from the
# environment, each with its own in-memory store), for test_openapi.py's route table.
#
# Exported to pytest: TALOS_URL (`talos serve`), TALOS_ADMIN_URL, TALOS_CHECK_URL,
# TALOS_ISSUER (credentials.issuer),
# TALOS_HMAC_SECRET (secrets.hmac.current), TALOS_JWKS_URL (the base64:// JWKS
# URL holding the private signing key), so that tests/sdk/test_tokens.py can check
# the token formats independently of talos, and TALOS_PUBLIC_PREFIX
# (credentials.api_keys.prefix.public_current).
#
# usage: tests/sdk/run.sh path/to/talos-binary
#
# Environment:
#   SDK_VENV   where the Python venv lives (default: target/sdk-venv); reused while
#              tests/sdk/requirements.txt is unchanged.
#   PYTHON     interpreter used to create the venv (default: python3).
#   PYTEST_ARGS extra arguments for pytest (word-split), e.g. "-x -k verify".
#
# Exit code: pytest's (or non-zero if the server could not be started).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 path/to/talos-binary" >&2
    exit 2
fi

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SDK_DIR/../.." && pwd)"
cd "$REPO_ROOT"

BIN="$1"
if [[ "$BIN" != */* ]]; then
    BIN="$(command -v "$BIN" || true)"
fi
if [[ -z "$BIN" || ! -x "$BIN" ]]; then
    echo "run.sh: talos binary '$1' not found or not executable" >&2
    exit 2
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

PYTHON="${PYTHON:-python3}"
VENV="${SDK_VENV:-target/sdk-venv}"
REQS="$SDK_DIR/requirements.txt"

# --- venv, reused while requirements.txt is unchanged -----------------------
req_hash="$(sha256sum "$REQS" | cut -d' ' -f1)"
stamp="$VENV/.requirements.sha256"
if [[ ! -x "$VENV/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$req_hash" ]]; then
    echo "run.sh: creating venv in $VENV" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    echo "$req_hash" > "$stamp"
fi
VPY="$VENV/bin/python"

# --- temporary config ---------------------------------------------------------
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/talos-sdk.XXXXXX")"
SERVER_PIDS=()
PYTEST_RC=1

cleanup() {
    local rc=$?
    local pid log
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for log in "$TMP_DIR"/*.log; do
            [[ -f "$log" ]] || continue
            echo "---- $(basename "$log") (last 100 lines) ----" >&2
            tail -n 100 "$log" >&2 || true
        done
        echo "---- end of server logs ----" >&2
    fi
    rm -rf "$TMP_DIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Three distinct free ports (all bound at once, then released).
read -r PORT ADMIN_PORT CHECK_PORT < <("$VPY" -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()')
BASE_URL="http://127.0.0.1:$PORT"
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
CHECK_URL="http://127.0.0.1:$CHECK_PORT"

ISSUER="$BASE_URL"
HMAC_SECRET="sdk-test-secret-0123456789abcdef0123456789"
PUBLIC_PREFIX="pk_sdk"   # credentials.api_keys.prefix.public_current, for PUBLIC keys
# A fresh Ed25519 signing key (kid sdk-ed25519) for derived JWTs, as a
# base64:// URL of a JWKS holding the private key. test_tokens.py decodes the
# same URL to sign its own JWTs.
JWKS_URL="$("$BIN" jwk --url-only --kid sdk-ed25519)"
if [[ "$JWKS_URL" != base64://* ]]; then
    echo "run.sh: '$BIN jwk --url-only' printed no base64:// URL: $JWKS_URL" >&2
    exit 1
fi

CONFIG="$TMP_DIR/config.yaml"
cat > "$CONFIG" <<EOF
serve:
  http: { host: 127.0.0.1, port: $PORT }
  metrics: { host: 127.0.0.1, port: 0 }
credentials:
  issuer: "$ISSUER"
  api_keys:
    default_ttl: 720h
    prefix: { public_current: "$PUBLIC_PREFIX" }
  derived_tokens:
    jwt:
      signing_keys:
        urls: ["$JWKS_URL"]
secrets:
  hmac: { current: "$HMAC_SECRET" }
db: { dsn: memory }
log: { level: info, format: text }
EOF

# --- start the servers and wait for readiness ---------------------------------
# usage: start_server LOG_NAME PORT [PLANE]; exits (via set -e) if it does not get ready.
start_server() {
    local log="$TMP_DIR/$1.log" port="$2"
    shift 2
    TALOS_SERVE_HTTP_PORT="$port" "$BIN" serve "$@" --config "$CONFIG" >"$log" 2>&1 &
    SERVER_PIDS+=($!)
    wait_ready "http://127.0.0.1:$port/health/ready" "$!"
}

wait_ready() {
"$VPY" - "$1" "$2" <<'EOF'
import os, sys, time, urllib.request, urllib.error
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30.0
last = "no answer"
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{pid}/stat") as f:
            dead = f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        dead = True
    if dead:
        sys.exit(f"run.sh: talos exited before becoming ready ({last})")
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                sys.exit(0)
            last = f"HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        last = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        last = str(e)
    time.sleep(0.05)
sys.exit(f"run.sh: {url} not ready within 30s ({last})")
EOF
}

start_server server "$PORT"
start_server admin "$ADMIN_PORT" admin
start_server check "$CHECK_PORT" check

# --- run the tests ------------------------------------------------------------
set +e
# shellcheck disable=SC2086
PYTHONDONTWRITEBYTECODE=1 TALOS_URL="$BASE_URL" TALOS_ISSUER="$ISSUER" \
    TALOS_ADMIN_URL="$ADMIN_URL" TALOS_CHECK_URL="$CHECK_URL" \
    TALOS_HMAC_SECRET="$HMAC_SECRET" TALOS_JWKS_URL="$JWKS_URL" \
    TALOS_PUBLIC_PREFIX="$PUBLIC_PREFIX" \
    "$VPY" -m pytest -q -p no:cacheprovider tests/sdk ${PYTEST_ARGS:-}
PYTEST_RC=$?
set -e
exit "$PYTEST_RC"
