#!/usr/bin/env bash
# Where a cache miss's instructions go, by phase, counted by valgrind's
# callgrind for each store: the embedded default (`STORE` unset, a fresh
# `DATA_DIR`), `STORE=memory` and Redis (a redis-server on a free
# loopback port). Every request carries a fresh AuthID, so each is a whole
# miss: open, store reads, one refresh at the mock token endpoint
# (examples/mock_token.rs, not under valgrind), store writes, answer.
#
#   scripts/bench-miss-profile.sh          # prints Markdown tables
#
# Method as scripts/bench-instructions.sh: after a warm-up of WARM misses
# the counters are zeroed, SMALL misses are sent over CONNECTIONS
# keep-alive connections and the counters dumped; then the same with
# LARGE misses. Instructions per miss = (I_large - I_small) / (LARGE -
# SMALL). The phases are the inclusive counts of the functions that own
# them in the LARGE window (`callgrind_annotate --inclusive=yes`), divided
# by LARGE; the ECDH floor is the inclusive count of `EC_POINT_mul` (the
# one scalar multiplication of an open) per miss, in the same profile, so
# "floors" here are instruction ratios the machine's load cannot move.
# The kernel's share (socket and disk work) is not counted: the CPU-time
# ratios of scripts/bench-load.sh include it.
#
# Environment:
#   WARM, SMALL, LARGE   misses in the warm-up and the two windows (200, 300, 1300)
#   CONNECTIONS          keep-alive connections (16)
#   STORES               which of "embedded memory redis" to run (all three)
#   SKIP_STRACE=1        leave out the system-call counts (strace)
#   SKIP_CALLGRIND=1     only the system-call counts
#   KEEP_WORK=1          keep the scratch directory (callgrind files, logs)
#
# Only 127.0.0.1 servers started here receive traffic; every loop is bounded.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/load/env.sh

warm=${WARM:-200}
small=${SMALL:-300}
large=${LARGE:-1300}
connections=${CONNECTIONS:-16}
stores=${STORES:-embedded memory redis}

command -v valgrind >/dev/null || { echo "error: valgrind not found (apt-get install valgrind)" >&2; exit 1; }

load_env_init
build_release
start_mock

total=$((warm + small + large))
echo "== minting $total AuthIDs" >&2
mint "$WORK/miss.txt" mock "$total"

cg() { callgrind_control "$@" >/dev/null; }

# window NAME PID URL START COUNT: zero, COUNT misses from line START, dump;
# prints the newest dump's file name.
window() {
    local name=$1 pid=$2 url=$3 start=$4 count=$5 before i
    cg -z "$pid"
    python3 scripts/load/miss_count.py "$url" "$WORK/miss.txt" "$start" "$count" "$connections"
    before=$(ls "$WORK"/cg."$name".* 2>/dev/null | wc -l)
    cg -d "$pid"
    for ((i = 0; i < 600; i++)); do
        (($(ls "$WORK"/cg."$name".* 2>/dev/null | wc -l) > before)) && break
        sleep 0.1
    done
    ls -t "$WORK"/cg."$name".* | head -n1
}

redis_flush() { REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" flushall >/dev/null; }

total_of() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

start_redis() {
    command -v redis-server >/dev/null || { echo "error: redis-server not found" >&2; exit 1; }
    local port password
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    redis-server --port "$port" --bind 127.0.0.1 --daemonize no --save "" --appendonly yes \
        --dir "$WORK" --requirepass "$password" --logfile "$WORK/redis.log" &
    PIDS+=("$!")
    for _ in $(seq 100); do
        [[ "$(REDISCLI_AUTH="$password" redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && break
        sleep 0.05
    done
    REDIS_URL="redis://:${password}@127.0.0.1:${port}/0"
    # The same logins are refreshed again later: start each run empty.
    REDIS_PASSWORD=$password
    REDIS_PORT=$port
}

[[ " $stores " == *" redis "* ]] && start_redis
for store in $stores; do
    [[ -n "${SKIP_CALLGRIND:-}" ]] && break
    case $store in
        embedded) mkdir -p "$WORK/data"; set -- DATA_DIR="$WORK/data" ;;
        memory) set -- STORE=memory ;;
        redis) set -- STORE="$REDIS_URL" ;;
        *) echo "error: unknown store $store" >&2; exit 1 ;;
    esac
    echo "== broker ($store) under callgrind" >&2
    env -i PATH="$PATH" LISTEN=127.0.0.1:0 KEYS_DIR="$KEYS_DIR" CONFIGFILE="$CONFIG" \
        LOG_FORMAT=json LOGIN_REQUESTS_PER_HOUR=1000000000 "$@" \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$store.%p" \
        "$BIN/oauth-broker" serve >"$WORK/$store.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    url="http://$(wait_listening "$WORK/$store.log" "$pid")/refresh"
    window "$store" "$pid" "$url" 0 "$warm" >/dev/null
    a=$(window "$store" "$pid" "$url" "$warm" "$small")
    b=$(window "$store" "$pid" "$url" "$((warm + small))" "$large")
    callgrind_annotate --inclusive=yes --threshold=100 "$b" >"$WORK/annotate.$store.txt" 2>/dev/null
    echo "$store $(total_of "$a") $(total_of "$b") $WORK/annotate.$store.txt" >>"$WORK/counts.txt"
    echo "   $store: $(total_of "$a") instructions for $small, $(total_of "$b") for $large" >&2
    stop_pid "$pid"
    if [[ -n "${KEEP_WORK:-}" ]]; then cp "$b" "$WORK/profile.$store.out"; fi
done

[[ -z "${SKIP_CALLGRIND:-}" ]] && python3 scripts/load/miss_breakdown.py "$WORK/counts.txt" "$small" "$large"

# The kernel's share, which callgrind does not see: system calls per miss
# by name, counted by `strace -f -c` attached to a broker running natively
# (strace slows the calls down; their number does not change).
if command -v strace >/dev/null && [[ -z "${SKIP_STRACE:-}" ]]; then
    echo
    echo "System calls per miss (\`strace -f -c\`, $large misses over $connections connections):"
    echo
    echo "| store | calls | futex | epoll_wait | recvfrom/read | sendto/write/writev | pread64/pwrite64 | other |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for store in $stores; do
        case $store in
            embedded) rm -rf "$WORK/data-s"; mkdir -p "$WORK/data-s"; set -- DATA_DIR="$WORK/data-s" ;;
            memory) set -- STORE=memory ;;
            redis) redis_flush; set -- STORE="$REDIS_URL" ;;
        esac
        env -i PATH="$PATH" LISTEN=127.0.0.1:0 KEYS_DIR="$KEYS_DIR" CONFIGFILE="$CONFIG" \
            LOG_FORMAT=json LOGIN_REQUESTS_PER_HOUR=1000000000 "$@" \
            "$BIN/oauth-broker" serve >"$WORK/strace-$store.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        url="http://$(wait_listening "$WORK/strace-$store.log" "$pid")/refresh"
        python3 scripts/load/miss_count.py "$url" "$WORK/miss.txt" 0 "$warm" "$connections"
        strace -f -c -o "$WORK/strace.$store.txt" -p "$pid" 2>/dev/null &
        spid=$!
        sleep 1
        python3 scripts/load/miss_count.py "$url" "$WORK/miss.txt" "$warm" "$large" "$connections"
        kill -INT "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        stop_pid "$pid"
        python3 - "$WORK/strace.$store.txt" "$store" "$large" <<'PY'
import sys
path, store, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = {}
for line in open(path):
    parts = line.split()
    if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
        calls[parts[-1]] = int(parts[3])
groups = [["futex"], ["epoll_wait"], ["recvfrom", "read", "recvmsg"], ["sendto", "write", "writev", "sendmsg"], ["pread64", "pwrite64", "fsync", "fdatasync"]]
vals = [sum(calls.get(c, 0) for c in g) for g in groups]
total = sum(calls.values())
other = total - sum(vals)
print(f"| {store} | {total / n:.1f} | " + " | ".join(f"{v / n:.1f}" for v in vals) + f" | {other / n:.1f} |")
PY
    done
fi
