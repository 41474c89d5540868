#!/usr/bin/env bash
# benches/soak.sh: `talos serve` under minutes of load with thousands of mostly idle keep-alive
# connections, then above its connection cap. Shows whether memory stays flat, whether any
# request fails, and that connections above serve.max_connections_per_worker are shed with a
# 503 and a close instead of hurting the server.
#
#   1. start `talos serve` (release build, redb store in a scratch directory, one worker per
#      core, a cap of --cap connections per worker) and seed --keys keys through its admin API;
#   2. for --minutes, run two talos-load instances at once: --idle connections paced at
#      --idle-rate requests/s in total (each connection is idle most of the time), and a hot
#      closed loop of 16 connections at maximum throughput; sample the server's RSS and open
#      connections from /metrics every 10 s;
#   3. open connections until every worker is past its cap, and count the 503s;
#   4. report: RSS at the first sample after warm-up and at the end, both runs' errors, the shed
#      count, and whether the server is still answering.
#
# Usage: benches/soak.sh [--minutes M] [--idle N] [--idle-rate R] [--cap C] [--keys K]
#                        [--out DIR] [--no-build]
# Defaults: 5 minutes, 4000 idle connections at 2000 requests/s, cap 5000 per worker, 10000 keys.
# Exits non-zero when a request failed, memory grew by more than 20 % after warm-up, nothing
# was shed above the cap, or the server stopped answering.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MINUTES=5
IDLE=4000
IDLE_RATE=2000
CAP=5000
KEYS=10000
OUT=""
BUILD=1

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --idle-rate) IDLE_RATE=$2; shift 2 ;;
    --cap) CAP=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage 0 ;;
    *) echo "soak.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
for n in MINUTES IDLE IDLE_RATE CAP KEYS; do
    [[ ${!n} =~ ^[0-9]+$ ]] || { echo "soak.sh: --${n,,} must be a whole number, got ${!n}" >&2; exit 2; }
done
for tool in jq curl python3; do
    command -v "$tool" >/dev/null || { echo "soak.sh: $tool is required" >&2; exit 2; }
done
WORKERS=$(nproc)
NEEDED=$((IDLE + 64 + WORKERS * CAP + 256))
if (($(ulimit -n) < NEEDED)); then
    ulimit -n "$NEEDED" 2>/dev/null || {
        echo "soak.sh: needs $NEEDED file descriptors (ulimit -n is $(ulimit -n)); lower --idle or --cap" >&2
        exit 2
    }
fi

OUT=${OUT:-$ROOT/target/bench-results/soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if ((BUILD)); then
    log "building talos and talos-load (release)"
    (cd "$ROOT" && cargo build --release --quiet -p talos -p talos-benches --bins)
fi
TALOS=$TARGET_DIR/release/talos
LOAD=$TARGET_DIR/release/talos-load

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
METRICS_PORT=$(free_port)
SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
cat >"$WORK/talos.yaml" <<EOF
serve:
  http: { host: 127.0.0.1, port: $PORT }
  metrics: { host: 127.0.0.1, port: $METRICS_PORT }
  max_connections_per_worker: $CAP
credentials:
  issuer: "http://127.0.0.1:$PORT"
  api_keys: { default_ttl: 24h }
secrets:
  hmac: { current: "$SECRET" }
db: { dsn: "redb://$WORK/talos.redb" }
log: { level: warn, format: text }
EOF

log "starting talos serve ($WORKERS workers, cap $CAP connections each)"
"$TALOS" serve --config "$WORK/talos.yaml" 2>"$OUT/server.log" &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null || { echo "soak.sh: talos did not start" >&2; cat "$OUT/server.log" >&2; exit 1; }

metric() { curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

log "seeding $KEYS keys"
"$LOAD" --url "http://127.0.0.1:$PORT" --keys "$KEYS" --save-keys "$WORK/keys.txt" -c 4 -d 1s --warmup 0s \
    >"$OUT/seed.log" 2>&1 || { echo "soak.sh: seeding failed" >&2; tail "$OUT/seed.log" >&2; exit 1; }

SECONDS_TOTAL=$((MINUTES * 60))
log "soaking for $MINUTES min: $IDLE paced connections at $IDLE_RATE req/s + 16 hot connections"
"$LOAD" --url "http://127.0.0.1:$PORT" --keys-file "$WORK/keys.txt" -c "$IDLE" --rate "$IDLE_RATE" \
    -d "${SECONDS_TOTAL}s" --warmup 5s --json "$OUT/idle.json" >"$OUT/idle.log" 2>&1 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
"$LOAD" --url "http://127.0.0.1:$PORT" --keys-file "$WORK/keys.txt" -c 16 --pipeline 4 \
    -d "${SECONDS_TOTAL}s" --warmup 5s --json "$OUT/hot.json" >"$OUT/hot.log" 2>&1 &
HOT_PID=$!
PIDS+=("$HOT_PID")

echo "elapsed_s rss_bytes open_connections" >"$OUT/memory.txt"
START=$(date +%s)
while kill -0 "$IDLE_PID" 2>/dev/null || kill -0 "$HOT_PID" 2>/dev/null; do
    sleep 10
    kill -0 "$SERVER" 2>/dev/null || { echo "soak.sh: the server died" >&2; tail "$OUT/server.log" >&2; exit 1; }
    RSS=$(metric process_resident_memory_bytes)
    OPEN=$(metric 'talos_engine_connections_open{plane="all"}')
    echo "$(($(date +%s) - START)) $RSS $OPEN" | tee -a "$OUT/memory.txt" >&2
done
IDLE_RC=0; wait "$IDLE_PID" || IDLE_RC=$?
HOT_RC=0; wait "$HOT_PID" || HOT_RC=$?

log "opening connections past the cap ($WORKERS x $CAP)"
python3 - "$PORT" "$((WORKERS * CAP + 200))" >"$OUT/shed.json" <<'PY'
import json, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
time.sleep(2)  # a shed connection has its 503 by now; an accepted one waits for a request
held = shed = other = 0
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(4096)
        if data.startswith(b"HTTP/1.1 503") and b"connection: close" in data.lower():
            shed += 1
        else:
            other += 1
    except BlockingIOError:
        held += 1
print(json.dumps({"opened": count, "held": held, "shed": shed, "other": other}))
PY
SHED=$(metric 'talos_engine_connections_shed_total{plane="all"}')
ALIVE=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/alive" || true)

FIRST=$(awk 'NR == 2 { print $2 }' "$OUT/memory.txt")
LAST=$(awk 'END { print $2 }' "$OUT/memory.txt")
IDLE_ERR=$(jq '.errors.total + .mismatches.total' "$OUT/idle.json" 2>/dev/null || echo missing)
HOT_ERR=$(jq '.errors.total + .mismatches.total' "$OUT/hot.json" 2>/dev/null || echo missing)
jq -n --argjson first "${FIRST:-0}" --argjson last "${LAST:-0}" --arg idle_err "$IDLE_ERR" --arg hot_err "$HOT_ERR" \
    --argjson shed "${SHED:-0}" --arg alive "$ALIVE" --slurpfile probe "$OUT/shed.json" \
    --slurpfile idle "$OUT/idle.json" --slurpfile hot "$OUT/hot.json" \
    '{rss_first_bytes: $first, rss_last_bytes: $last, idle_errors: $idle_err, hot_errors: $hot_err,
      idle_rps: $idle[0].requests_per_s, idle_p99_us: $idle[0].latency_us.p99,
      hot_rps: $hot[0].requests_per_s, hot_p99_us: $hot[0].latency_us.p99,
      shed_metric: $shed, shed_probe: $probe[0], alive_after: $alive}' | tee "$OUT/summary.json"

FAIL=0
[[ $IDLE_RC == 0 && $HOT_RC == 0 ]] || { echo "soak.sh: a load run failed (rc $IDLE_RC/$HOT_RC)" >&2; FAIL=1; }
[[ $IDLE_ERR == 0 && $HOT_ERR == 0 ]] || { echo "soak.sh: requests failed: idle $IDLE_ERR, hot $HOT_ERR" >&2; FAIL=1; }
if [[ -n $FIRST && -n $LAST ]] && ((LAST * 100 > FIRST * 120)); then
    echo "soak.sh: RSS grew from $FIRST to $LAST bytes" >&2
    FAIL=1
fi
[[ ${SHED:-0} -gt 0 ]] || { echo "soak.sh: nothing was shed above the cap" >&2; FAIL=1; }
[[ $ALIVE == 200 ]] || { echo "soak.sh: the server stopped answering ($ALIVE)" >&2; FAIL=1; }
log "results in $OUT"
exit "$FAIL"
