#!/usr/bin/env bash
# CPU per cache miss of two builds, in interleaved rounds, so that a busy
# machine weighs on both alike: the build in BASE_BIN_DIR, then the one in
# BIN_DIR (or this tree's release build), ROUNDS times, each round a fresh
# broker on STORE (embedded in a fresh DATA_DIR unless given) and
# `wrk -t2 -c16 -d${SECONDS_EACH}s` of fresh AuthIDs; the broker's CPU
# time (user + system, /proc/<pid>/stat) per answer against one P-256 ECDH
# derivation on one core by CPU time (`openssl speed ecdhp256` just before
# and just after, averaged). Prints one line per run and the medians.
#
#   BASE_BIN_DIR=/tmp/base scripts/bench-miss-paired.sh
#   BASE_BIN_DIR=/tmp/base MISS_STORE=memory scripts/bench-miss-paired.sh
#
# Environment: BASE_BIN_DIR (required), BIN_DIR, MISS_STORE (embedded |
# memory), ROUNDS (3), SECONDS_EACH (5), SPEED_SECONDS (2).
#
# Only 127.0.0.1 servers started here receive traffic; every loop is bounded.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/load/env.sh
: "${BASE_BIN_DIR:?set BASE_BIN_DIR to the directory of the earlier build}"
rounds=${ROUNDS:-3}
seconds=${SECONDS_EACH:-5}
store=${MISS_STORE:-embedded}

load_env_init
build_release
start_mock
n=$((seconds * 9000))
echo "== minting $n AuthIDs (each broker starts empty, so the list serves all)" >&2
mint "$WORK/miss.txt" mock "$n"
speed() {
    openssl speed -seconds "${SPEED_SECONDS:-2}" ecdhp256 2>/dev/null |
        awk '/ecdh \(nistp256\)/ { v = $NF } END { print v }'
}

for ((round = 1; round <= rounds; round++)); do
    for build in base this; do
        dir=$BIN
        [[ $build == base ]] && dir=$BASE_BIN_DIR
        rm -rf "$WORK/data"
        case $store in
            embedded) set -- STORE=embedded DATA_DIR="$WORK/data" ;;
            memory) set -- STORE=memory ;;
            *) echo "error: MISS_STORE is embedded or memory" >&2; exit 1 ;;
        esac
        env -i PATH="$PATH" LISTEN=127.0.0.1:0 KEYS_DIR="$KEYS_DIR" CONFIGFILE="$CONFIG" \
            LOG_FORMAT=json LOGIN_REQUESTS_PER_HOUR=1000000000 "$@" \
            "$dir/oauth-broker" serve >"$WORK/$build.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        url="http://$(wait_listening "$WORK/$build.log" "$pid")/refresh"
        s1=$(speed)
        before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
        out=$(wrk -t2 -c16 -d"${seconds}s" -s scripts/load/authids.lua "$url" -- "$WORK/miss.txt" 2 | sed -n 's/^RESULT //p')
        after=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
        s2=$(speed)
        stop_pid "$pid"
        echo "$build $round $((after - before)) $s1 $s2 $out" >>"$WORK/paired.txt"
    done
done

python3 - "$WORK/paired.txt" "$(getconf CLK_TCK)" "$store" <<'PY'
import json, statistics, sys
path, hz, store = sys.argv[1], int(sys.argv[2]), sys.argv[3]
floors = {"base": [], "this": []}
print(f"| round | build | misses | CPU per miss | one ECDH (CPU) | floors per miss |")
print("|---:|---|---:|---:|---:|---:|")
for line in open(path):
    build, rnd, ticks, s1, s2, rest = line.split(" ", 5)
    r = json.loads(rest)
    ok = r.get("statuses", {}).get("200", 0)
    if ok != r["requests"]:
        print(f"WARNING: {build} round {rnd}: statuses {r.get('statuses')}", file=sys.stderr)
    cpu = int(ticks) / hz * 1e6 / max(ok, 1)
    ecdh = 2e6 / (float(s1) + float(s2))
    floors[build].append(cpu / ecdh)
    print(f"| {rnd} | {build} | {ok:,} | {cpu:.0f} µs | {ecdh:.1f} µs | {cpu / ecdh:.2f} |")
b, t = statistics.median(floors["base"]), statistics.median(floors["this"])
print()
print(f"- {store}: median floors per miss, earlier build {b:.2f}, this build {t:.2f}: **{t / b:.2f}** of before")
PY
