# Cache misses on each store, for scripts/bench-load.sh (sourced after
# load_env_init, build_release and start_mock): for the embedded default
# store (a fresh DATA_DIR), STORE=memory and a Redis on a free loopback
# port, a broker of its own receives
#
#   - one connection, MISS1_SECONDS: a fresh AuthID per request (p50/p99,
#     against the mock token endpoint's own p50/p99 measured the same way
#     just before: the latency the broker adds);
#   - 16 connections, MISS_STORE_SECONDS: a fresh AuthID per request; the
#     broker's CPU time (user + system from /proc/<pid>/stat) over the run
#     divided by the answers, against one P-256 ECDH derivation on one
#     core by CPU time (`openssl speed ecdhp256`, run just before and just
#     after, averaged); misses per second beside `openssl speed -multi`.
#
# `miss_stores` prints a Markdown table and leaves it in $WORK/misses.md.
#
# Environment:
#   MISS_STORES          which of "embedded memory redis" (all three)
#   MISS_STORE_SECONDS   seconds of each 16-connection run (8)
#   MISS1_SECONDS        seconds of each one-connection run (5)
#   SPEED_SECONDS        seconds of each `openssl speed` (5)

# ECDH derivations per second: `ecdh_speed` (one process, by its CPU
# time) or `ecdh_speed -multi N` (N processes, by the clock on the wall).
ecdh_speed() {
    openssl speed -seconds "${SPEED_SECONDS:-5}" "$@" ecdhp256 2>/dev/null |
        awk '/ecdh \(nistp256\)/ { v = $NF } END { print v }'
}

miss_redis() {
    command -v redis-server >/dev/null || { echo "error: redis-server not found" >&2; return 1; }
    local port password i
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    redis-server --port "$port" --bind 127.0.0.1 --daemonize no --save "" --appendonly yes \
        --dir "$WORK" --requirepass "$password" --logfile "$WORK/redis.log" &
    PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do
        [[ "$(REDISCLI_AUTH="$password" redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && break
        sleep 0.05
    done
    MISS_REDIS_URL="redis://:${password}@127.0.0.1:${port}/0"
}

# miss_wrk LABEL URL [wrk options...] [-- script args...]: one wrk run, its
# RESULT json appended to $WORK/misses.txt under LABEL.
miss_wrk() { wrk_record "$WORK/misses.txt" "$@"; }

miss_stores() {
    local seconds=${MISS_STORE_SECONDS:-8} one=${MISS1_SECONDS:-5} store pid url
    local cores n1 n16 before after u0 s0 u1 s1 hz
    cores=$(nproc)
    n1=$((one * 4000))
    n16=$((seconds * 9000))
    : >"$WORK/misses.txt"
    echo "== minting $n1 + $n16 AuthIDs (each store's broker starts empty, so the lists serve all)" >&2
    mint "$WORK/miss1.txt" mock "$n1"
    mint "$WORK/miss16s.txt" mock "$n16"
    miss_wrk direct1 "$MOCK_URL/token" -t 1 -c 1 -d "${one}s" -s scripts/load/token.lua
    for store in ${MISS_STORES:-embedded memory redis}; do
        case $store in
            embedded) set -- STORE=embedded DATA_DIR="$WORK/data-miss" ;;
            memory) set -- STORE=memory ;;
            redis) miss_redis; set -- STORE="$MISS_REDIS_URL" ;;
            *) echo "error: unknown store $store" >&2; return 1 ;;
        esac
        echo "== broker for misses, $store" >&2
        start_broker "miss-$store" LOGIN_REQUESTS_PER_HOUR=1000000000 "$@"
        pid=$BROKER_PID
        url=$BROKER_URL
        curl -fsS "$url/ready" >/dev/null
        miss_wrk "one_$store" "$url/refresh" -t 1 -c 1 -d "${one}s" -s scripts/load/authids.lua -- "$WORK/miss1.txt" 1
        echo "$store speed_before $(ecdh_speed)" >>"$WORK/misses.txt"
        before=$(awk '{ print $14, $15 }' "/proc/$pid/stat")
        miss_wrk "sixteen_$store" "$url/refresh" -t 2 -c 16 -d "${seconds}s" -s scripts/load/authids.lua -- "$WORK/miss16s.txt" 2
        after=$(awk '{ print $14, $15 }' "/proc/$pid/stat")
        # User and system ticks apart: the system share is the socket,
        # epoll, futex (thread hand-offs) and file work of the kernel.
        read -r u0 s0 <<<"$before"
        read -r u1 s1 <<<"$after"
        hz=$(getconf CLK_TCK)
        echo "$store user_s $(awk -v t="$((u1 - u0))" -v hz="$hz" 'BEGIN { print t / hz }')" >>"$WORK/misses.txt"
        echo "$store sys_s $(awk -v t="$((s1 - s0))" -v hz="$hz" 'BEGIN { print t / hz }')" >>"$WORK/misses.txt"
        echo "$store speed_after $(ecdh_speed)" >>"$WORK/misses.txt"
        if [[ $store == memory ]]; then
            # For scale: the CPU of a cache hit (one HTTP exchange, no
            # open, no provider), with an AuthID the one-connection run
            # cached.
            hit=$(head -n1 "$WORK/miss1.txt")
            before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
            miss_wrk hit_memory "$url/refresh" -t 2 -c 16 -d 5s -s scripts/load/report.lua -H "X-AuthID: $hit"
            after=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
            echo "hit cpu_s $(awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')" >>"$WORK/misses.txt"
            echo "hit speed $(ecdh_speed)" >>"$WORK/misses.txt"
        fi
        stop_pid "$pid"
    done
    echo "all multi $(ecdh_speed -multi "$cores")" >>"$WORK/misses.txt"
    python3 scripts/load/misses_table.py "$WORK/misses.txt" "$seconds" "$one" "$cores" | tee "$WORK/misses.md"
}
