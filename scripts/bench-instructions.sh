#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a cache-hit
# `GET /refresh` of the broker against the bare axum handler
# (examples/bare_json.rs) answering a body of the same size. An
# instruction count does not move with the load on the machine, unlike a
# throughput, so this ratio can be compared across runs and machines of
# the same architecture. (`perf stat -e instructions` would be faster, but
# virtual machines like this one often expose no hardware counters.)
#
#   scripts/bench-instructions.sh          # prints a Markdown table
#
# Method: each server runs under `valgrind --tool=callgrind` (user-space
# instructions of every thread; the kernel's share of the socket work is
# not counted, and it is the same for both). After a warm-up, the counters
# are zeroed, scripts/load/fixed_count.py sends exactly SMALL requests over
# CONNECTIONS keep-alive connections, and the counters are dumped; then the
# same for LARGE requests. Instructions per request =
# (I_large - I_small) / (LARGE - SMALL): the cost of opening connections
# cancels out.
#
# Environment:
#   SMALL, LARGE   answers in the two windows (2000, 12000)
#   CONNECTIONS    keep-alive connections (8)
#   BROKER_STORE   the broker's STORE (memory); e.g. a redis:// URL, to show
#                  that a hit costs the same whatever the store
#   KEEP_WORK=1    keep the scratch directory (callgrind files, logs)
#
# Only 127.0.0.1 servers started here receive traffic; every loop is bounded.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/load/env.sh

small=${SMALL:-2000}
large=${LARGE:-12000}
connections=${CONNECTIONS:-8}

install() {
    echo "== installing $1 (Debian package)" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y "$1" >&2 || { apt-get update >&2 && apt-get install -y "$1" >&2; }
    else
        sudo apt-get install -y "$1" >&2
    fi
}
command -v valgrind >/dev/null || install valgrind

load_env_init
build_release
start_mock

# callgrind_control speaks to the process through files it polls while it
# runs; each step waits for its answer.
cg() { callgrind_control "$@" >/dev/null; }

# window NAME PID URL COUNT [header...]: zero the counters, send COUNT
# requests, dump; prints the instructions counted.
window() {
    local name=$1 pid=$2 url=$3 count=$4 before
    shift 4
    cg -z "$pid"
    python3 scripts/load/fixed_count.py "$url" "$count" "$connections" "$@"
    before=$(ls "$WORK"/cg."$name".* 2>/dev/null | wc -l)
    cg -d "$pid"
    for ((i = 0; i < 600; i++)); do
        (($(ls "$WORK"/cg."$name".* 2>/dev/null | wc -l) > before)) && break
        sleep 0.1
    done
    # The newest dump; its "summary:" (or "totals:") line is the count.
    awk '/^(summary|totals):/ { print $2; exit }' "$(ls -t "$WORK"/cg."$name".* | head -n1)"
}

# measure NAME PID URL [header...]: warm-up, then the two windows;
# records instructions per request.
measure() {
    local name=$1 pid=$2 url=$3 a b
    shift 3
    echo "== $name: warm-up, then $small and $large requests under callgrind" >&2
    window "$name" "$pid" "$url" 500 "$@" >/dev/null
    a=$(window "$name" "$pid" "$url" "$small" "$@")
    b=$(window "$name" "$pid" "$url" "$large" "$@")
    echo "$name $a $b" >>"$WORK/counts.txt"
    echo "   $name: $a instructions for $small, $b for $large" >&2
}

# The broker, with the same settings as the load benchmark.
echo "== broker under callgrind" >&2
env -i PATH="$PATH" LISTEN=127.0.0.1:0 KEYS_DIR="$KEYS_DIR" CONFIGFILE="$CONFIG" \
    LOG_FORMAT=json LOGIN_REQUESTS_PER_HOUR=1000000000 STORE="${BROKER_STORE:-memory}" \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.broker.%p" \
    "$BIN/oauth-broker" serve >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
PIDS+=("$BROKER_PID")
broker_url="http://$(wait_listening "$WORK/broker.log" "$BROKER_PID")"
mint "$WORK/hit.txt" mock 1
hit_authid=$(head -n1 "$WORK/hit.txt")
curl -fsS -H "X-AuthID: $hit_authid" "$broker_url/refresh" >/dev/null
body_bytes=$(curl -fsS -o /dev/null -w '%{size_download}' -H "X-AuthID: $hit_authid" "$broker_url/refresh")
measure broker "$BROKER_PID" "$broker_url/refresh" "X-AuthID: $hit_authid"
stop_pid "$BROKER_PID"

echo "== bare handler under callgrind" >&2
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.bare.%p" \
    "$BIN/examples/bare_json" 127.0.0.1:0 "$body_bytes" >"$WORK/bare.out" 2>&1 &
bare_pid=$!
PIDS+=("$bare_pid")
bare_url="http://$(wait_listening "$WORK/bare.out" "$bare_pid")"
measure bare "$bare_pid" "$bare_url/refresh"
stop_pid "$bare_pid"

python3 - "$WORK/counts.txt" "$small" "$large" "$connections" "$body_bytes" <<'PY'
import sys
path, small, large, conns, body = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
per = {}
for line in open(path):
    name, a, b = line.split()
    per[name] = (int(b) - int(a)) / (large - small)
hit, bare = per["broker"], per["bare"]
print(f"- response body: {body} bytes (both); {conns} keep-alive connections; "
      f"({large:,} − {small:,}) requests between two windows")
print()
print("| measure | instructions per request | ÷ bare handler | target |")
print("|---|---:|---:|---|")
print(f"| cache-hit `GET /refresh` (broker) | {hit:,.0f} | **{hit / bare:.2f}** | ≤ 1.3 |")
print(f"| bare axum handler (`examples/bare_json.rs`) | {bare:,.0f} | 1.00 | |")
PY
