#!/usr/bin/env bash
# Cache hits with a shared store, and a miss the shared store answers, each
# beside a baseline measured in the same run (docs/BENCHMARKS.md holds one
# run of it):
#
#   - cache-hit `GET /refresh` throughput of a broker on STORE=redis vs. one
#     on STORE=memory: a hit never leaves the process, so they should match
#     (interleaved rounds of `wrk -t2 -c32`, medians);
#   - a miss in this instance that the shared store answers (another
#     instance on the same Redis refreshed the login): its p50 with one
#     connection vs. `redis-benchmark -t get` p50 on the same Redis, one
#     connection, before and after the broker's run;
#   - resident memory per cached login with the store outside the process
#     (STORE=redis): what the broker itself holds per login.
#
#   scripts/bench-redis-hits.sh
#
# Environment:
#   DURATION   seconds of each wrk run (10)
#   ROUNDS     interleaved memory/redis rounds (3)
#   SHARED     logins refreshed by the first instance and then asked of the
#              second (3000)
#   FILL       cached logins for the memory figure on STORE=redis (100000)
#   KEEP_WORK=1  keep the scratch directory
#
# Redis runs here on a free 127.0.0.1 port with a password (as in
# production); only 127.0.0.1 servers started here receive traffic.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/load/env.sh

duration=${DURATION:-10}
rounds=${ROUNDS:-3}
shared=${SHARED:-3000}
fill=${FILL:-100000}

install() {
    echo "== installing $1 (Debian package)" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y "$1" >&2 || { apt-get update >&2 && apt-get install -y "$1" >&2; }
    else
        sudo apt-get install -y "$1" >&2
    fi
}
command -v wrk >/dev/null || install wrk
command -v redis-server >/dev/null || install redis-server

load_env_init
build_release
start_mock
results=$WORK/results.txt
: >"$results"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
redis-server --port "$port" --bind 127.0.0.1 --daemonize no --save "" --appendonly yes \
    --dir "$WORK" --requirepass "$password" --logfile "$WORK/redis.log" &
PIDS+=("$!")
cli() { REDISCLI_AUTH="$password" redis-cli -h 127.0.0.1 -p "$port" "$@"; }
for _ in $(seq 100); do
    [[ "$(cli ping 2>/dev/null)" == PONG ]] && break
    sleep 0.05
done
store="redis://:${password}@127.0.0.1:${port}/0"

redis_get_p50() {
    redis-benchmark -h 127.0.0.1 -p "$port" -a "$password" -t set,get \
        -n 100000 -c 1 -d 256 --precision 3 --csv \
        2>/dev/null | awk -F'"' '$2 == "GET" { print $10 * 1000 }'
}

# wrk_run LABEL URL [wrk options...] [-- script args...]
wrk_run() { wrk_record "$results" "$@"; }

metric() { curl -fsS "$1/metrics" | awk -v m="$2" '$1 ~ m { s += $2 } END { print s + 0 }'; }
# until_counted PID URL METRIC START N: wrk's `stop` ends its threads but
# not the run; once the broker's METRIC has reached START + N (600 s at
# most; START read before wrk started), wrk is interrupted and reports.
until_counted() {
    local pid=$1 url=$2 m=$3 start=$4 n=$5 i
    PIDS+=("$pid")
    for ((i = 0; i < 6000; i++)); do
        sleep 0.1
        kill -0 "$pid" 2>/dev/null || return 0
        (($(metric "$url" "$m") - start >= n)) && break
    done
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" || true
}
answered='http_requests_total[{].*route="/refresh"'

limits=(LOGIN_REQUESTS_PER_HOUR=1000000000)
start_broker memory "${limits[@]}" STORE=memory
memory_url=$BROKER_URL
start_broker redis_a "${limits[@]}" STORE="$store"
redis_url=$BROKER_URL
start_broker redis_b "${limits[@]}" STORE="$store"
second_url=$BROKER_URL

mint "$WORK/hit.txt" mock 1
hit=$(head -n1 "$WORK/hit.txt")
for url in "$memory_url" "$redis_url"; do
    curl -fsS -H "X-AuthID: $hit" "$url/refresh" >/dev/null
done
common=(-t 2 -c 32 -d "${duration}s" -s scripts/load/report.lua -H "X-AuthID: $hit")
for ((r = 1; r <= rounds; r++)); do
    wrk_run "memory_$r" "$memory_url/refresh" "${common[@]}"
    wrk_run "redis_$r" "$redis_url/refresh" "${common[@]}"
done

# Shared-store misses: instance A refreshes each login (the token goes to
# the store); instance B then gets each AuthID once: a miss in its own
# cache, answered from the store.
echo "== minting $shared AuthIDs; instance A refreshes them" >&2
mint "$WORK/shared.txt" mock "$shared"
start=$(metric "$redis_url" "$answered")
wrk -t 2 -c 8 -d 600s -s scripts/load/authids.lua "$redis_url/refresh" -- "$WORK/shared.txt" 2 stop >"$WORK/fill.wrk" &
until_counted "$!" "$redis_url" "$answered" "$start" "$shared"
echo "redis_get_before $(redis_get_p50)" >>"$results"
echo "== shared_miss: wrk -t1 -c1 -s scripts/load/authids.lua $second_url/refresh -- shared.txt 1 stop" >&2
start=$(metric "$second_url" "$answered")
wrk -t 1 -c 1 -d 600s -s scripts/load/authids.lua "$second_url/refresh" -- "$WORK/shared.txt" 1 stop >"$WORK/shared.wrk" &
until_counted "$!" "$second_url" "$answered" "$start" "$shared"
grep -v '^RESULT' "$WORK/shared.wrk" >&2 || true
echo "shared_miss $(sed -n 's/^RESULT //p' "$WORK/shared.wrk")" >>"$results"
echo "redis_get_after $(redis_get_p50)" >>"$results"
echo "shared_outcomes $(metric "$second_url" 'refreshes_total[{].*outcome="shared"')" >>"$results"
echo "mock_calls_b $(metric "$second_url" 'upstream_duration_seconds_count')" >>"$results"

# Memory per cached login, the store being Redis: instance B, idle apart
# from the logins above, refreshes FILL distinct logins.
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
second_pid=$BROKER_PID
echo "rss_before_kb $(rss "$second_pid")" >>"$results"
echo "cached_before $(metric "$second_url" '^[a-z_]*cached_tokens$')" >>"$results"
echo "== minting $fill AuthIDs; instance B refreshes them" >&2
mint "$WORK/fill.txt" mock "$fill"
start=$(metric "$second_url" "$answered")
wrk -t 2 -c 16 -d 600s -s scripts/load/authids.lua "$second_url/refresh" -- "$WORK/fill.txt" 2 stop >"$WORK/fill2.wrk" &
until_counted "$!" "$second_url" "$answered" "$start" "$fill"
sleep 2
echo "cached_after $(metric "$second_url" '^[a-z_]*cached_tokens$')" >>"$results"
echo "rss_after_kb $(rss "$second_pid")" >>"$results"

python3 - "$results" "$duration" "$shared" <<'PY'
import json, statistics, sys
path, duration, shared = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = {}
for line in open(path):
    k, _, v = line.strip().partition(" ")
    rows[k] = v
j = lambda k: json.loads(rows[k])
rounds = sorted(k[7:] for k in rows if k.startswith("memory_"))
mem = [j("memory_" + r)["rps"] for r in rounds]
red = [j("redis_" + r)["rps"] for r in rounds]
ratios = [b / a for a, b in zip(mem, red)]
miss = j("shared_miss")
before, after = float(rows["redis_get_before"]), float(rows["redis_get_after"])
base = (before + after) / 2
print(f"- hits: {len(rounds)} interleaved rounds of `wrk -t2 -c32 -d{duration}s`; per-round ratios redis/memory "
      + ", ".join(f"{r:.3f}" for r in ratios))
print(f"- shared-store misses: {miss['requests']:,} requests, {rows['shared_outcomes']} answered from the store "
      f"(outcome `shared`), {rows['mock_calls_b']} calls to the provider by the second instance")
print(f"- `redis-benchmark -t get -c 1 -d 256` p50: {before:.1f} µs before, {after:.1f} µs after")
print()
print("| measure | broker | baseline (same run) | ratio / difference | target | met |")
print("|---|---:|---:|---:|---|---|")
m, r = statistics.median(mem), statistics.median(red)
ok = lambda b: "yes" if b else "**no**"
print(f"| cache-hit throughput, STORE=redis | {r:,.0f} req/s | {m:,.0f} req/s (STORE=memory) | **{r / m:.3f}** | within 5 % | {ok(abs(r / m - 1) <= 0.05)} |")
p50 = miss["p50_us"]
print(f"| miss answered by the shared store, p50 (`wrk -t1 -c1`) | {p50 / 1000:.3f} ms | {base / 1000:.3f} ms (`redis-benchmark -t get` p50) | +{(p50 - base) / 1000:.3f} ms | | |")
print(f"| miss answered by the shared store, p99 | {miss['p99_us'] / 1000:.3f} ms | | | | |")
added = float(rows["cached_after"]) - float(rows["cached_before"])
grown = (int(rows["rss_after_kb"]) - int(rows["rss_before_kb"])) * 1024
print(f"| resident memory per cached login, STORE=redis ({added:,.0f} logins added) | {grown / max(added, 1):,.0f} bytes | | +{grown / 1048576:.1f} MB | ≤ 600 bytes | {ok(grown / max(added, 1) <= 600)} |")
PY
