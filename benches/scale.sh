#!/usr/bin/env bash
# benches/scale.sh: data-plane verify throughput with 10,000 keys and with 1,000,000 keys in the
# snapshot, same machine, same run (issue: within 10% of each other).
#
# For each size: talos-scale fills a redb store (and prints its cold-load, memory and refresh
# numbers), `talos serve check` opens that store (one worker, pinned to SERVER_CPU), and
# talos-load (pinned to LOAD_CPU) drives it at maximum throughput with valid keys spread over
# the whole key space, at pipeline 1 and 16, after an unmeasured pass that uses every key once
# (its first use of the day is written to the store). Prints one JSON line per size and the
# ratios.
#
# Usage: benches/scale.sh [--small N] [--large N] [--duration SECS] [--no-build]
# Environment: SERVER_CPU (default 0), LOAD_CPU (default 1), CARGO_TARGET_DIR.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SMALL=10000
LARGE=1000000
DURATION=10
BUILD=1
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
while [[ $# -gt 0 ]]; do
    case $1 in
    --small) SMALL=$2; shift 2 ;;
    --large) LARGE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "scale.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in jq curl taskset python3; do
    command -v "$tool" >/dev/null || { echo "scale.sh: $tool is required" >&2; exit 2; }
done
if ((BUILD)); then
    (cd "$ROOT" && cargo build --release --quiet -p talos -p talos-benches --bins)
fi
WORK=$(mktemp -d)
SERVER=""
trap '[[ -n $SERVER ]] && kill $SERVER 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A P1 P16
for N in "$SMALL" "$LARGE"; do
    DIR=$WORK/$N
    SCALE=$("$TARGET_DIR/release/talos-scale" --keys "$N" --changes 100 --keep "$DIR" 2>/dev/null)
    PORT=$(free_port)
    TALOS_SERVE_HTTP_HOST=127.0.0.1 TALOS_SERVE_HTTP_PORT=$PORT TALOS_SERVE_METRICS_HOST=127.0.0.1 \
        TALOS_SERVE_METRICS_PORT=0 TALOS_SERVE_WORKERS=1 \
        taskset -c "$SERVER_CPU" "$TARGET_DIR/release/talos" serve check --config "$DIR/talos.yaml" 2>"$DIR/server.log" &
    SERVER=$!
    STARTED=$(date +%s.%N)
    until curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null; do
        kill -0 "$SERVER" 2>/dev/null || { echo "scale.sh: serve check died" >&2; cat "$DIR/server.log" >&2; exit 1; }
        sleep 0.2
    done
    READY_S=$(echo "$(date +%s.%N) - $STARTED" | bc)
    # An unmeasured pass first: every key's first use of the day is written to the store
    # (last_used_time), which a real server pays once per key per day, not per request.
    taskset -c "$LOAD_CPU" "$TARGET_DIR/release/talos-load" --url "http://127.0.0.1:$PORT" --keys-file "$DIR/keys.txt" \
        --mix valid=1 -c 32 --pipeline 16 -d 8s --warmup 0s >/dev/null 2>&1
    sleep 2
    for P in 1 16; do
        taskset -c "$LOAD_CPU" "$TARGET_DIR/release/talos-load" --url "http://127.0.0.1:$PORT" --keys-file "$DIR/keys.txt" \
            --mix valid=1 -c 32 --pipeline "$P" -d "${DURATION}s" --warmup 2s --json "$DIR/p$P.json" >/dev/null 2>&1
    done
    P1[$N]=$(jq .requests_per_s "$DIR/p1.json")
    P16[$N]=$(jq .requests_per_s "$DIR/p16.json")
    jq -cn --argjson scale "$SCALE" --arg ready "$READY_S" --slurpfile p1 "$DIR/p1.json" --slurpfile p16 "$DIR/p16.json" \
        '{keys: $scale.keys, serve_check_ready_s: ($ready|tonumber), scale: $scale,
          p1_rps: $p1[0].requests_per_s, p1_p99_us: $p1[0].latency_us.p99, p1_errors: ($p1[0].errors.total + $p1[0].mismatches.total),
          p16_rps: $p16[0].requests_per_s, p16_p99_us: $p16[0].latency_us.p99, p16_errors: ($p16[0].errors.total + $p16[0].mismatches.total)}'
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
done
jq -cn --argjson a1 "${P1[$SMALL]}" --argjson b1 "${P1[$LARGE]}" --argjson a16 "${P16[$SMALL]}" --argjson b16 "${P16[$LARGE]}" \
    '{large_over_small_p1: ($b1/$a1), large_over_small_p16: ($b16/$a16)}'
