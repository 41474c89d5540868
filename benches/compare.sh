#!/usr/bin/env bash
# benches/compare.sh: the data plane, the admin plane and an nginx static 200, side by side, in
# one run on this machine, with the same load generator and the same keys.
#
#   (a) `talos serve check`  — the data plane (monoio workers, snapshot, own HTTP/1.1)
#   (b) `talos serve admin`  — the same verify served by the hyper admin plane (from the store)
#   (c) nginx `return 200 '{"is_valid":true}'` — the ceiling of an HTTP server on this box
#
# Every server runs with one worker, pinned to one core (SERVER_CPU, default 0); the load
# generator runs on another (LOAD_CPU, default 1). Keys are seeded through `serve admin` into a
# redb file that `serve check` opens at the same time (redb multi-writer mode). Each target is
# driven at maximum throughput with pipeline 1 and with --pipeline P (valid keys only, then the
# default mix on the two talos planes), then at fixed rates of half its best and half its
# pipeline-1 throughput for latency (measured from the intended send time).
#
# Results: one talos-load JSON per run, plus summary.json, in --out DIR; BENCHMARKS.md is
# regenerated between its "BEGIN compare.sh" and "END compare.sh" markers (text outside them is
# kept; a missing file is created from the template in write_markdown below).
#
# Usage: benches/compare.sh [options]
#   --out DIR         where the JSON goes [target/bench-results/compare-<UTC timestamp>]
#   --markdown PATH   the file to regenerate [BENCHMARKS.md]; --no-markdown to leave it alone
#   --duration SECS   measured seconds per run [10]      --warmup SECS   warmup per run [2]
#   --keys N          keys to seed [10000]               --connections C [32]
#   --pipeline P      the pipelined runs' depth [16]     --no-nginx      skip (c)
#   --no-build        use the binaries already in the target directory
#   --install-nginx   apt-get install nginx when it is missing (otherwise (c) is skipped)
#   --render DIR      measure nothing: regenerate the markdown from DIR/summary.json
# Environment: SERVER_CPU, LOAD_CPU (cores for taskset), CARGO_TARGET_DIR.
#
# Only 127.0.0.1 is ever used. Every process this script starts is stopped on exit, on error
# and on SIGINT/SIGTERM.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=""
MARKDOWN=$ROOT/BENCHMARKS.md
DURATION=10
WARMUP=2
KEYS=10000
CONNECTIONS=32
PIPELINE=16
NGINX=1
BUILD=1
INSTALL_NGINX=0
RENDER=""
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --out) OUT=$2; shift 2 ;;
    --markdown) MARKDOWN=$2; shift 2 ;;
    --no-markdown) MARKDOWN=""; shift ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    --no-nginx) NGINX=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --render) RENDER=$2; shift 2 ;;
    --install-nginx) INSTALL_NGINX=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
for n in DURATION WARMUP KEYS CONNECTIONS PIPELINE; do
    [[ ${!n} =~ ^[0-9]+$ ]] || { echo "compare.sh: --${n,,} must be a whole number, got ${!n}" >&2; exit 2; }
done
((DURATION >= 4)) || { echo "compare.sh: --duration must be at least 4 seconds" >&2; exit 2; }
for tool in jq curl ss taskset; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 2; }
done

log() { printf '\n== %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes and cleanup: every background process goes into PIDS and is stopped on exit.

PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/talos-compare.XXXXXX")

stop_pid() {
    local pid=$1 children
    kill -0 "$pid" 2>/dev/null || return 0
    children=$(pgrep -P "$pid" || true)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "compare.sh: pid $pid ignored SIGTERM for 5s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    # nginx workers (children of the master) go with it; make sure.
    for child in $children; do
        kill -0 "$child" 2>/dev/null && kill -KILL "$child" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
    if [[ -n $OUT && -d $OUT ]]; then
        mkdir -p "$OUT/logs"
        cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    ((rc == 0)) || echo "compare.sh: failed (exit $rc); server logs are in ${OUT:-$WORK}/logs" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background with its output in $WORK/<name>.log; sets STARTED to its pid.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

# Sleeps in the background, so that a signal is handled at once rather than after the sleep.
pause() {
    sleep "$1" &
    wait $!
}

# Drops a pid that has been waited for from PIDS.
forget_pid() {
    local kept=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$1" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

# A TCP port nothing listens on, from the ephemeral-looking range.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 30000))
        if [[ -z $(ss -Htln "sport = :$port") ]]; then
            echo "$port"
            return
        fi
    done
    echo "compare.sh: no free port found" >&2
    return 1
}

# Waits until `curl $@` succeeds (up to 30 s), or the process $pid dies.
wait_http() {
    local pid=$1 name=$2
    shift 2
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "compare.sh: $name exited during startup:" >&2
            tail -20 "$WORK/$name.log" >&2
            return 1
        fi
        curl -sf -o /dev/null --max-time 1 "$@" && return 0
        sleep 0.1
    done
    echo "compare.sh: $name did not become ready in 30s" >&2
    tail -20 "$WORK/$name.log" >&2
    return 1
}

# ---------------------------------------------------------------------------------------------
# Machine and CPU accounting.

if (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_LOAD=(taskset -c "$LOAD_CPU")
    PINNING="servers on core $SERVER_CPU, load generator on core $LOAD_CPU (taskset)"
else
    PIN_SERVER=()
    PIN_LOAD=()
    PINNING="not pinned: one core only, server and load generator share it"
fi
CLK_TCK=$(getconf CLK_TCK)

# utime + stime of the pids and their children's threads, in clock ticks (threads included).
cpu_ticks() {
    local total=0 pid line fields
    for pid in "$@"; do
        for child in $pid $(pgrep -P "$pid" || true); do
            line=$(cat "/proc/$child/stat" 2>/dev/null) || continue
            # Fields after the ")" that ends the command name: state is 3, utime 14, stime 15.
            read -ra fields <<<"${line##*) }"
            total=$((total + fields[11] + fields[12]))
        done
    done
    echo "$total"
}

# "busy steal total" jiffies of one core from /proc/stat. Busy excludes idle, iowait and steal;
# steal is time the hypervisor ran something else on this virtual CPU.
core_jiffies() {
    # Fields: user nice system idle iowait irq softirq steal (guest time is already in user).
    awk -v cpu="cpu$1" '$1 == cpu { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6 - $9, $9, t }' /proc/stat
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
# BENCHMARKS.md: the block between the markers is regenerated from a summary.json ($S).

q() { jq -r "$@" "$S"; }

BEGIN_MARK='<!-- BEGIN compare.sh: generated by benches/compare.sh from its summary.json; edits inside are overwritten -->'
END_MARK='<!-- END compare.sh -->'

render() {
    local pipe=$PIPELINE
    echo "$BEGIN_MARK"
    echo
    q '"## Side by side: data plane, admin plane, nginx\n\nMeasured by `benches/compare.sh` on \(.date) at commit `\(.commit)`, in one run."'
    echo
    echo "| machine | |"
    echo "|---|---|"
    q '"| CPU | \(.machine.cpu) |\n| cores (`nproc`) | \(.machine.nproc) |\n| virtualization | \(.machine.virtualization // "not recorded") |\n| memory | \(.machine.memory) |\n| kernel | \(.machine.kernel) |\n| rustc | \(.machine.rustc) |\n| nginx | \(.machine.nginx) |"'
    echo
    q '"Setup: every server has one worker (`serve.workers: 1`, nginx `worker_processes 1`); \(.setup.pinning). The admin plane runs its tokio runtime (2 threads) on the same one core. \(.setup.keys) keys were seeded through `serve admin` (\(.setup.revoked_keys) of them revoked) into one redb file that `serve check` opened at the same time. The side-by-side runs send the same \(.setup.valid_keys) valid keys to every target (`--mix valid=1`, since nginx answers everything as valid) over \(.setup.connections) keep-alive connections from one generator thread; each run is \(.setup.warmup_s) s of warmup then \(.setup.duration_s) s measured. nginx returns `{\"is_valid\":true}` with `access_log off` and unlimited keep-alive requests (its config is in the results directory)."'
    echo
    echo "Other processes were not stopped: the load average before each run is recorded (the server and the generator themselves add about 2 while they run), and so is how busy each core was during the measured window, beside the CPU charged to the server process itself. \"Core busy\" counts every process on that core and the kernel's loopback network processing (softirq), which is not always charged to the server; a gap between the two is that, or another process. \"Steal\" is the share of the server's core the hypervisor gave to something else (virtual machines only): time the server could not run at all. A server at ~100% of its core is the bottleneck; a generator core at ~100% with the server below it means the generator is. In fixed-rate runs the generator busy-polls before each send, so its core always reads busy."
    echo
    echo "### Maximum throughput (closed loop)"
    echo
    echo "| target | pipeline | requests/s | p50 µs | p99 µs | p99.9 µs | max µs | errors | mismatches | server CPU | server core busy | server core steal | generator core busy | load avg before |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    q '.runs[] | select(.mode == "closed") |
       "| \(.name | sub("-p[0-9]+$"; "") | sub("^check"; "(a) serve check") | sub("^admin"; "(b) serve admin") | sub("^nginx"; "(c) nginx") | sub("-mixed"; " (mixed)")) | \(.pipeline) | \(.requests_per_s | floor) | \(.latency_us.p50) | \(.latency_us.p99) | \(.latency_us.p99_9) | \(.latency_us.max) | \(.errors.total) | \(.mismatches.total) | \(.cpu.server_process_pct | round)% | \(.cpu.server_core_busy_pct | round)% | \(.cpu.server_core_steal_pct // null | if . == null then "n/a" else "\(round)%" end) | \(.cpu.load_core_busy_pct | round)% | \(.load_average_before) |"'
    echo
    echo "The \`mixed\` rows send the default mix (\`$MIXED\`: valid, unknown, revoked and malformed credentials) to the two talos planes."
    echo
    echo "### Ratios"
    echo
    echo "| ratio | pipeline 1 | pipeline $pipe | best of each | issue 5 target | status |"
    echo "|---|---:|---:|---:|---|---|"
    q '.ratios.check_over_admin | "| a/b: serve check ÷ serve admin | \(.p1 * 100 | round / 100) | \(.pipelined * 100 | round / 100) | \(.best * 100 | round / 100) | ≥ 2 | \(if .best >= 2 then "met" else "not met" end) |"'
    q 'if .ratios.check_over_nginx then .ratios.check_over_nginx | "| a/c: serve check ÷ nginx static 200 | \(.p1 * 100 | round / 100) | \(.pipelined * 100 | round / 100) | \(.best * 100 | round / 100) | ≥ 0.7 | \(if .best >= 0.7 then "met" else "not met" end) |" else "| a/c | nginx not run | | | ≥ 0.7 | not measured |" end'
    echo
    echo "\"Best of each\" divides each target's higher throughput of the two pipeline depths, and decides the status."
    echo
    echo "### Latency at half of the maximum (fixed rate)"
    echo
    echo "Each target at a fixed rate: 50% of its own best throughput above (the issue's \"50% of maximum\"), and 50% of its pipeline-1 throughput. Latency is measured from the intended send time (no coordinated omission); the generator lag is how late the generator itself sent. At a fixed rate each connection sends a request when it is due, so requests mostly arrive one per write, as at pipeline 1: a server that gains from pipelined batches cannot keep its pipelined maximum under this arrival pattern."
    echo
    echo "| target | rate | req/s | achieved req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | generator lag p99 µs | unsent | errors | server CPU | server core steal | load avg before |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    q '.runs[] | select(.mode == "rate") |
       "| \(.name | sub("-rate-.*$"; "") | sub("^check"; "(a) serve check") | sub("^admin"; "(b) serve admin") | sub("^nginx"; "(c) nginx")) | \(.rate_basis) | \(.rate | floor) | \(.requests_per_s | floor) | \(.latency_us.p50) | \(.latency_us.p90) | \(.latency_us.p99) | \(.latency_us.p99_9) | \(.latency_us.max) | \(.generator_lag_us.p99) | \(.unsent) | \(.errors.total) | \(.cpu.server_process_pct | round)% | \(.cpu.server_core_steal_pct // null | if . == null then "n/a" else "\(round)%" end) | \(.load_average_before) |"'
    echo
    echo "### Issue 5 targets measured here"
    echo
    echo "| target | measured | status |"
    echo "|---|---|---|"
    q '.ratios.check_over_admin.best as $ab
       | "| data plane ≥ 2× the hyper admin plane | \($ab * 100 | round / 100)× | \(if $ab >= 2 then "met" else "not met" end) |"'
    q 'if .ratios.check_over_nginx then .ratios.check_over_nginx.best as $ac
       | "| data plane ≥ 70% of the nginx static 200 | \($ac * 100 | round)% | \(if $ac >= 0.7 then "met" else "not met" end) |"
       else "| data plane ≥ 70% of the nginx static 200 | nginx not run | not measured |" end'
    q '.runs[] | select(.name == "check-rate-best" or .name == "check-rate-p1")
       | "| p99 ≤ 1 ms at 50% of maximum throughput (data plane; rate \(.rate_basis)) | p99 \(.latency_us.p99) µs at \(.rate | floor) req/s | \(if .latency_us.p99 <= 1000 and .errors.total == 0 then "met" else "not met" end)\(if .name == "check-rate-p1" then " (the issue\u0027s target is the row above)" else "" end) |"'
    q '[.runs[] | select(.name | startswith("check")) | .errors.total + .mismatches.total] | add as $e
       | "| no error under load (data plane, all runs) | \($e) errors and mismatches | \(if $e == 0 then "met" else "not met" end) |"'
    echo
    echo "### Commands"
    echo
    echo "Everything above comes from one \`benches/compare.sh\` run (\`\$WORK\` is its temporary directory):"
    echo
    echo '```sh'
    q '.commands[]'
    echo '```'
    echo
    echo "$END_MARK"
}

write_markdown() {
    BLOCK=$WORK/block.md
    render >"$BLOCK"

    if [[ -f $MARKDOWN ]] && grep -qF "$BEGIN_MARK" "$MARKDOWN" && grep -qF "$END_MARK" "$MARKDOWN"; then
        awk -v begin="$BEGIN_MARK" -v end="$END_MARK" -v block="$BLOCK" '
            $0 == begin { while ((getline line < block) > 0) print line; skip = 1; next }
            $0 == end { skip = 0; next }
            !skip { print }' "$MARKDOWN" >"$WORK/markdown.new"
    else
        # The template: a title, how to reproduce, the generated block, and the sections kept by hand.
        {
            cat <<'EOF'
# Benchmarks

How fast talos verifies, measured with the bundled tools. Reproduce everything with:

```sh
benches/compare.sh                        # data plane vs admin plane vs nginx, regenerates the block below
cargo bench -p talos-benches --bench verify -- --warm-up-time 1 --measurement-time 3
cargo bench -p talos-benches --bench tokens -- --warm-up-time 1 --measurement-time 3
```

EOF
            cat "$BLOCK"
            cat <<'EOF'

## Micro-benchmarks

Not generated by `compare.sh`: paste the criterion results of the two commands above here.

## Revocation propagation

Not generated by `compare.sh`: `cargo run --release -p talos-benches --bin talos-propagation -- --help`.
EOF
        } >"$WORK/markdown.new"
    fi
    cp "$WORK/markdown.new" "$MARKDOWN"
    echo "regenerated $MARKDOWN" >&2
}

# --render DIR: only regenerate the markdown from an earlier run's summary.json.
if [[ -n $RENDER ]]; then
    S=$RENDER/summary.json
    [[ -f $S ]] || { echo "compare.sh: $S does not exist" >&2; exit 2; }
    [[ -n $MARKDOWN ]] || { echo "compare.sh: --render needs a markdown file (not --no-markdown)" >&2; exit 2; }
    PIPELINE=$(jq -r '.setup.pipeline' "$S")
    MIXED=$(jq -r '.setup.mixed_mix' "$S")
    write_markdown
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Build.

cd "$ROOT"
TALOS=$TARGET_DIR/release/talos
LOAD=$TARGET_DIR/release/talos-load
if ((BUILD)); then
    log "building talos and talos-load (release)"
    cargo build --release --bin talos -p talos
    cargo build --release -p talos-benches --bin talos-load
fi
[[ -x $TALOS && -x $LOAD ]] || { echo "compare.sh: $TALOS or $LOAD is missing (drop --no-build)" >&2; exit 1; }

if ((NGINX)) && ! command -v nginx >/dev/null; then
    if ((INSTALL_NGINX)); then
        log "installing nginx"
        apt-get install -y nginx >"$WORK/apt.log" 2>&1 || { apt-get update >>"$WORK/apt.log" 2>&1 && apt-get install -y nginx >>"$WORK/apt.log" 2>&1; } ||
            echo "compare.sh: apt-get install nginx failed; skipping the nginx ceiling" >&2
    fi
    command -v nginx >/dev/null || { echo "compare.sh: nginx is not installed; skipping (c)" >&2; NGINX=0; }
fi
NGINX_BIN=$(command -v nginx || true)

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$TARGET_DIR/bench-results/compare-$STAMP}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/commands.txt"

# The commands as run, with the temporary directory written as $WORK.
record() {
    local line="" arg sq="'\\''"
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then line+="$arg "; else line+="'${arg//\'/$sq}' "; fi
    done
    line=${line//$WORK/\$WORK}
    line=${line//$ROOT\//}
    echo "${line% }" >>"$OUT/commands.txt"
}

# ---------------------------------------------------------------------------------------------
# The servers.

SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
ADMIN_PORT=$(free_port)
CHECK_PORT=$(free_port)
while [[ $CHECK_PORT == "$ADMIN_PORT" ]]; do CHECK_PORT=$(free_port); done
cat >"$WORK/talos.yaml" <<EOF
# compare.sh: one worker, loopback only, a throw-away secret and store.
serve:
  workers: 1
  http:
    host: 127.0.0.1
    port: $CHECK_PORT
  metrics:
    host: 127.0.0.1
    port: 0
credentials:
  issuer: "http://127.0.0.1:$CHECK_PORT"
secrets:
  hmac:
    current: "$SECRET"
db:
  dsn: "redb://$WORK/talos.redb"
log:
  level: warn
EOF

log "starting talos serve admin on 127.0.0.1:$ADMIN_PORT"
record env TALOS_SERVE_HTTP_PORT="$ADMIN_PORT" "${PIN_SERVER[@]}" "$TALOS" serve admin --config "$WORK/talos.yaml"
start admin env TALOS_SERVE_HTTP_PORT="$ADMIN_PORT" "${PIN_SERVER[@]}" "$TALOS" serve admin --config "$WORK/talos.yaml"
ADMIN_PID=$STARTED
wait_http "$ADMIN_PID" admin "http://127.0.0.1:$ADMIN_PORT/health/ready"

log "seeding $KEYS keys through the admin plane"
record "${PIN_LOAD[@]}" "$LOAD" --url "http://127.0.0.1:$ADMIN_PORT" --keys "$KEYS" --save-keys "$WORK/keys.txt" \
    --seed-connections 4 -c 4 -d 1s --warmup 0s
"${PIN_LOAD[@]}" "$LOAD" --url "http://127.0.0.1:$ADMIN_PORT" --keys "$KEYS" --save-keys "$WORK/keys.txt" \
    --seed-connections 4 -c 4 -d 1s --warmup 0s >"$WORK/seed.log" 2>&1 || {
    echo "compare.sh: seeding failed:" >&2
    tail -20 "$WORK/seed.log" >&2
    exit 1
}
# nginx answers every credential as valid, so the side-by-side runs send only valid keys, the
# same file to every target.
grep -v '^revoked ' "$WORK/keys.txt" >"$WORK/valid.txt"
VALID_KEYS=$(grep -c '^valid ' "$WORK/valid.txt")
REVOKED_KEYS=$(grep -c '^revoked ' "$WORK/keys.txt" || true)

log "starting talos serve check on 127.0.0.1:$CHECK_PORT (same redb file)"
record env TALOS_SERVE_HTTP_PORT="$CHECK_PORT" "${PIN_SERVER[@]}" "$TALOS" serve check --config "$WORK/talos.yaml"
start check env TALOS_SERVE_HTTP_PORT="$CHECK_PORT" "${PIN_SERVER[@]}" "$TALOS" serve check --config "$WORK/talos.yaml"
CHECK_PID=$STARTED
wait_http "$CHECK_PID" check "http://127.0.0.1:$CHECK_PORT/health/ready"

NGINX_PORT=""
NGINX_PID=""
if ((NGINX)); then
    NGINX_PORT=$(free_port)
    while [[ $NGINX_PORT == "$ADMIN_PORT" || $NGINX_PORT == "$CHECK_PORT" ]]; do NGINX_PORT=$(free_port); done
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
# compare.sh: a static 200 with the body of a valid verify, one worker, no logging.
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            default_type application/json;
            return 200 '{"is_valid":true}';
        }
    }
}
EOF
    cp "$WORK/nginx/nginx.conf" "$OUT/nginx.conf"
    log "starting nginx on 127.0.0.1:$NGINX_PORT"
    record "${PIN_SERVER[@]}" "$NGINX_BIN" -p "$WORK/nginx" -e "$WORK/nginx.log" -c "$WORK/nginx/nginx.conf"
    start nginx-stdout "${PIN_SERVER[@]}" "$NGINX_BIN" -p "$WORK/nginx" -e "$WORK/nginx.log" -c "$WORK/nginx/nginx.conf"
    NGINX_PID=$STARTED
    wait_http "$NGINX_PID" nginx-stdout -X POST -d '{}' "http://127.0.0.1:$NGINX_PORT/v2alpha1/admin/apiKeys:verify"
fi

# ---------------------------------------------------------------------------------------------
# The runs.

RUNS=()

# run NAME PID URL KEYSFILE MIX PIPELINE [RATE BASIS]: one talos-load run against the server PID,
# with its JSON in $OUT/NAME.json, annotated with the load average before it, the server's CPU
# use and each core's busy share over the measured window.
run() {
    local name=$1 pid=$2 url=$3 keys=$4 mix=$5 pipeline=$6 rate=${7:-} basis=${8:-}
    local args=(--url "$url" --keys-file "$keys" --mix "$mix" -c "$CONNECTIONS" -t 1 --pipeline "$pipeline"
        -d "${DURATION}s" --warmup "${WARMUP}s" --json "$WORK/$name.json")
    [[ -n $rate ]] && args+=(--rate "$rate")
    local load_before uptime_line
    uptime_line=$(uptime)
    load_before=$(loadavg)
    log "$name: $url pipeline $pipeline${rate:+ rate $rate/s} (load average $load_before)"
    record "${PIN_LOAD[@]}" "$LOAD" "${args[@]}"
    "${PIN_LOAD[@]}" "$LOAD" "${args[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local load_pid=$!
    PIDS+=("$load_pid")
    # Sample CPU use inside the measured window: from 1 s after the warmup to 1 s before the end.
    pause "$((WARMUP + 1))"
    local t0 s0 c0 l0 t1 s1 c1 l1
    t0=$(date +%s.%N)
    s0=$(cpu_ticks "$pid")
    c0=$(core_jiffies "$SERVER_CPU")
    l0=$(core_jiffies "$LOAD_CPU")
    pause "$((DURATION - 2))"
    t1=$(date +%s.%N)
    s1=$(cpu_ticks "$pid")
    c1=$(core_jiffies "$SERVER_CPU")
    l1=$(core_jiffies "$LOAD_CPU")
    local rc=0
    wait "$load_pid" || rc=$?
    forget_pid "$load_pid"
    cat "$WORK/$name.out" >&2
    if [[ ! -s $WORK/$name.json ]]; then
        echo "compare.sh: talos-load wrote no results for $name (exit $rc):" >&2
        tail -20 "$WORK/$name.err" >&2
        exit 1
    fi
    ((rc == 0)) || echo "compare.sh: $name saw errors or mismatches (kept in the results)" >&2
    jq --arg name "$name" --arg basis "$basis" --arg load "$load_before" --arg uptime "$uptime_line" --argjson rc "$rc" \
        --argjson window "$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')" \
        --argjson server_ticks "$((s1 - s0))" --argjson tck "$CLK_TCK" \
        --argjson c0 "[${c0// /,}]" --argjson c1 "[${c1// /,}]" --argjson l0 "[${l0// /,}]" --argjson l1 "[${l1// /,}]" \
        '. + { name: $name, rate_basis: (if $basis == "" then null else $basis end), exit_code: $rc,
               load_average_before: $load, uptime_before: $uptime,
               cpu: { window_s: $window,
                      server_process_pct: (100 * $server_ticks / $tck / $window),
                      server_core_busy_pct: (100 * ($c1[0] - $c0[0]) / ([($c1[2] - $c0[2]), 1] | max)),
                      server_core_steal_pct: (100 * ($c1[1] - $c0[1]) / ([($c1[2] - $c0[2]), 1] | max)),
                      load_core_busy_pct: (100 * ($l1[0] - $l0[0]) / ([($l1[2] - $l0[2]), 1] | max)),
                      load_core_steal_pct: (100 * ($l1[1] - $l0[1]) / ([($l1[2] - $l0[2]), 1] | max)) } }' \
        "$WORK/$name.json" >"$OUT/$name.json"
    RUNS+=("$name")
}

rps() { jq -r '.requests_per_s' "$OUT/$1.json"; }

CHECK_URL=http://127.0.0.1:$CHECK_PORT
ADMIN_URL=http://127.0.0.1:$ADMIN_PORT
NGINX_URL=${NGINX_PORT:+http://127.0.0.1:$NGINX_PORT}
MIXED=valid=90,unknown=5,revoked=3,malformed=2

for p in 1 "$PIPELINE"; do
    run "check-p$p" "$CHECK_PID" "$CHECK_URL" "$WORK/valid.txt" valid=1 "$p"
    run "admin-p$p" "$ADMIN_PID" "$ADMIN_URL" "$WORK/valid.txt" valid=1 "$p"
    if ((NGINX)); then run "nginx-p$p" "$NGINX_PID" "$NGINX_URL" "$WORK/valid.txt" valid=1 "$p"; fi
done
# The default mix (unknown, revoked and malformed credentials too) on both talos planes.
run "check-mixed-p$PIPELINE" "$CHECK_PID" "$CHECK_URL" "$WORK/keys.txt" "$MIXED" "$PIPELINE"
run "admin-mixed-p$PIPELINE" "$ADMIN_PID" "$ADMIN_URL" "$WORK/keys.txt" "$MIXED" "$PIPELINE"

# Latency at a fixed rate, measured from the intended send time: half of each target's best
# throughput (the issue's "50% of maximum"), and half of its pipeline-1 throughput. A fixed-rate
# generator writes each request when it is due, so at these rates requests mostly arrive one per
# write as at pipeline 1, which costs a server more per request than pipelined batches do.
half() { jq -rn --argjson a "$(rps "$1-p1")" --argjson b "$(rps "$1-p$PIPELINE")" "[\$a, \$b] | $2 / 2 | floor"; }
TARGETS=(check admin)
if ((NGINX)); then TARGETS+=(nginx); fi
for t in "${TARGETS[@]}"; do
    case $t in
    check) pid=$CHECK_PID url=$CHECK_URL ;;
    admin) pid=$ADMIN_PID url=$ADMIN_URL ;;
    nginx) pid=$NGINX_PID url=$NGINX_URL ;;
    esac
    run "$t-rate-best" "$pid" "$url" "$WORK/valid.txt" valid=1 "$PIPELINE" "$(half "$t" max)" "50% of best"
    run "$t-rate-p1" "$pid" "$url" "$WORK/valid.txt" valid=1 "$PIPELINE" "$(half "$t" '.[0]')" "50% of pipeline 1"
done

# ---------------------------------------------------------------------------------------------
# Summary.

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
[[ -n $CPU_MODEL ]] || CPU_MODEL=$(awk -F': ' '/^(Hardware|Processor|cpu model)/ { print $2; exit }' /proc/cpuinfo)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (with uncommitted changes)"
VM=$(systemd-detect-virt --vm 2>/dev/null || true)
CONTAINER=$(systemd-detect-virt --container 2>/dev/null || true)
if [[ -z $VM || $VM == none ]]; then
    if grep -qw hypervisor /proc/cpuinfo; then VM="unknown hypervisor (hypervisor flag in /proc/cpuinfo)"; else VM=""; fi
fi
[[ $CONTAINER == none ]] && CONTAINER=""
VIRT="${VM:+virtual machine: $VM}${VM:+${CONTAINER:+; }}${CONTAINER:+container: $CONTAINER}"
VIRT=${VIRT:-none detected}

jq -n \
    --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg commit "$COMMIT" \
    --arg cpu "$CPU_MODEL" --argjson nproc "$(nproc)" --arg kernel "$(uname -srm)" --arg virt "$VIRT" \
    --arg mem "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)" \
    --arg rustc "$(rustc --version 2>/dev/null || echo unknown)" \
    --arg nginx "$( ((NGINX)) && "$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //' || echo 'not run')" \
    --arg pinning "$PINNING" --argjson keys "$KEYS" --argjson valid "$VALID_KEYS" --argjson revoked "$REVOKED_KEYS" \
    --argjson duration "$DURATION" --argjson warmup "$WARMUP" --argjson connections "$CONNECTIONS" \
    --argjson pipeline "$PIPELINE" --arg mixed "$MIXED" --argjson nginx_run "$NGINX" \
    --rawfile commands "$OUT/commands.txt" \
    --slurpfile runs <(for r in "${RUNS[@]}"; do cat "$OUT/$r.json"; done | jq -s '.') \
    '($runs[0] | map({ (.name): . }) | add) as $r
     | def ratio(a; b): if ($r[a] and $r[b]) then $r[a].requests_per_s / $r[b].requests_per_s else null end;
       def best(t): [$r[t + "-p1"].requests_per_s, $r[t + "-p\($pipeline)"].requests_per_s] | max;
     {
       date: $date, commit: $commit,
       machine: { cpu: $cpu, nproc: $nproc, virtualization: $virt, kernel: $kernel, memory: $mem, rustc: $rustc, nginx: $nginx },
       setup: { pinning: $pinning, keys: $keys, valid_keys: $valid, revoked_keys: $revoked, duration_s: $duration,
                warmup_s: $warmup, connections: $connections, pipeline: $pipeline, mixed_mix: $mixed,
                workers: 1, generator_threads: 1 },
       best_rps: { check: best("check"), admin: best("admin"), nginx: (if $nginx_run == 1 then best("nginx") else null end) },
       ratios: {
         check_over_admin: { p1: ratio("check-p1"; "admin-p1"), pipelined: ratio("check-p\($pipeline)"; "admin-p\($pipeline)"),
                             best: (best("check") / best("admin")) },
         check_over_nginx: (if $nginx_run == 1 then
                             { p1: ratio("check-p1"; "nginx-p1"), pipelined: ratio("check-p\($pipeline)"; "nginx-p\($pipeline)"),
                               best: (best("check") / best("nginx")) } else null end)
       },
       commands: ($commands | rtrimstr("\n") | split("\n")),
       runs: $runs[0]
     }' >"$OUT/summary.json"

S=$OUT/summary.json

log "results"
q '"check (a) best \(.best_rps.check | floor) req/s, admin (b) best \(.best_rps.admin | floor) req/s, nginx (c) best \(.best_rps.nginx // "-" | if type == "number" then floor else . end) req/s"'
q '"a/b: pipeline 1 \(.ratios.check_over_admin.p1 * 100 | round / 100), pipelined \(.ratios.check_over_admin.pipelined * 100 | round / 100), best \(.ratios.check_over_admin.best * 100 | round / 100)"'
if ((NGINX)); then q '"a/c: pipeline 1 \(.ratios.check_over_nginx.p1 * 100 | round / 100), pipelined \(.ratios.check_over_nginx.pipelined * 100 | round / 100), best \(.ratios.check_over_nginx.best * 100 | round / 100)"'; fi
q '.runs[] | select(.mode == "rate") | "\(.name): \(.rate) req/s, p50 \(.latency_us.p50) µs, p99 \(.latency_us.p99) µs, max \(.latency_us.max) µs, errors \(.errors.total)"'
echo "results: $OUT" >&2

if [[ -n $MARKDOWN ]]; then write_markdown; fi
