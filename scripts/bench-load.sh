#!/usr/bin/env bash
# Load benchmark of the broker, each figure next to a baseline measured in
# the same run, printed as a Markdown table (docs/BENCHMARKS.md holds one
# run of it):
#
#   - cache-hit `GET /refresh` vs. a bare axum handler answering a JSON body
#     of the same size (examples/bare_json.rs): throughput ratio, p50, p99,
#     with wrk (same threads, connections and duration for both);
#   - the miss path (a fresh AuthID per request) vs. the mock provider's own
#     token endpoint (examples/mock_token.rs): the broker's added latency;
#   - the miss path under concurrency (16 connections) vs. the P-256 ECDH
#     floor on all cores (`openssl speed -multi`), and the broker's CPU time
#     per miss;
#   - misses on each store (embedded default, memory, Redis;
#     scripts/load/misses.sh): CPU per miss (user and system) in ECDH
#     derivations of one core by CPU time, misses/s beside the ECDH rate
#     of all cores, and the latency added over the token endpoint;
#   - resident memory idle and with 100,000 cached tokens;
#   - time from process start to `/ready` answering 200;
#   - criterion medians of AuthID open/seal, login state seal/open and the
#     token cache lookups.
#
#   scripts/bench-load.sh
#
# Environment:
#   DURATION      seconds of each wrk run (default 10)
#   ROUNDS        interleaved hit/bare rounds; medians are reported (3)
#   THREADS, CONNECTIONS   wrk settings of the hit/bare runs (2, 32)
#   MISS_SECONDS  seconds of each miss-path run, one connection (10)
#   MISS16_SECONDS  seconds of the miss run with 16 connections (8)
#   SPEED_SECONDS   seconds of `openssl speed -multi` (5)
#   FILL          cached tokens for the memory figure (100000)
#   READY_RUNS    process starts timed to /ready (30)
#   CRITERION_ARGS  (default: --warm-up-time 1 --measurement-time 4)
#   SKIP_CRITERION=1  leave the criterion benches out
#   HITS_ONLY=1   only the cache-hit and bare rounds (more ROUNDS for less
#                 noise on a busy machine)
#   MISSES_ONLY=1 only the cache-miss runs on each store (see
#                 scripts/load/misses.sh: MISS_STORES, MISS_STORE_SECONDS)
#   KEEP_WORK=1   keep the scratch directory (logs, AuthID lists)
#
# Only 127.0.0.1 servers started here receive traffic; every loop is bounded.
# The broker runs with STORE=memory (the in-process hit path is the same
# with any store; scripts/bench-redis-hits.sh measures it on Redis) and
# LOGIN_REQUESTS_PER_HOUR=1000000000 (the per-login cap
# of 1200/h would otherwise answer 429 to the one login the hit run uses)
# and a provider quota far above the rates used (see scripts/load/env.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/load/env.sh

duration=${DURATION:-10}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
connections=${CONNECTIONS:-32}
miss_seconds=${MISS_SECONDS:-10}
miss16_seconds=${MISS16_SECONDS:-8}
speed_seconds=${SPEED_SECONDS:-5}
cores=$(nproc)
fill=${FILL:-100000}
ready_runs=${READY_RUNS:-30}
read -r -a criterion_args <<<"${CRITERION_ARGS:---warm-up-time 1 --measurement-time 4}"

if ! command -v wrk >/dev/null; then
    echo "== installing wrk (Debian package)" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; }
    else
        sudo apt-get install -y wrk >&2
    fi
fi

load_env_init
build_release
start_mock
results=$WORK/results.txt
: >"$results"
note() { echo "$1 $2" >>"$results"; }
source scripts/load/misses.sh

if [[ -n "${MISSES_ONLY:-}" ]]; then
    miss_stores
    exit 0
fi

# wrk_run LABEL URL [wrk options...] [-- script args...]: runs wrk, records
# its RESULT json under LABEL.
wrk_run() { wrk_record "$results" "$@"; }

echo "== broker (LOGIN_REQUESTS_PER_HOUR=1000000000)" >&2
start_broker broker LOGIN_REQUESTS_PER_HOUR=1000000000
broker_pid=$BROKER_PID
broker_url=$BROKER_URL
curl -fsS "$broker_url/ready" >/dev/null
sleep 1
note rss_idle_kb "$(rss_kb "$broker_pid")"

# One login, refreshed once so its token is cached.
mint "$WORK/hit.txt" mock 1
hit_authid=$(head -n1 "$WORK/hit.txt")
curl -fsS -H "X-AuthID: $hit_authid" "$broker_url/refresh" >/dev/null
body_bytes=$(curl -fsS -o /dev/null -w '%{size_download}' -H "X-AuthID: $hit_authid" "$broker_url/refresh")
note body_bytes "$body_bytes"
"$BIN/examples/bare_json" 127.0.0.1:0 "$body_bytes" >"$WORK/bare.out" 2>&1 &
bare_pid=$!
PIDS+=("$bare_pid")
bare_url="http://$(wait_listening "$WORK/bare.out" "$bare_pid")"
bare_bytes=$(curl -fsS -o /dev/null -w '%{size_download}' "$bare_url/refresh")
note bare_body_bytes "$bare_bytes"

common=(-t "$threads" -c "$connections" -d "${duration}s" -s scripts/load/report.lua)
for ((r = 1; r <= rounds; r++)); do
    wrk_run "bare_$r" "$bare_url/refresh" "${common[@]}"
    wrk_run "hit_$r" "$broker_url/refresh" "${common[@]}" -H "X-AuthID: $hit_authid"
done
stop_pid "$bare_pid"

if [[ -n "${HITS_ONLY:-}" ]]; then
    python3 - "$results" <<'PY'
import json, statistics, sys
rows = dict(line.strip().partition(" ")[::2] for line in open(sys.argv[1]))
rounds = sorted((k[4:] for k in rows if k.startswith("hit_")), key=int)
hit = [json.loads(rows["hit_" + r])["rps"] for r in rounds]
bare = [json.loads(rows["bare_" + r])["rps"] for r in rounds]
ratios = [h / b for h, b in zip(hit, bare)]
print(f"- {len(rounds)} interleaved rounds; per-round ratios " + ", ".join(f"{x:.2f}" for x in ratios))
print(f"- medians: hit {statistics.median(hit):,.0f} req/s, bare {statistics.median(bare):,.0f} req/s, "
      f"ratio of medians {statistics.median(hit) / statistics.median(bare):.2f}, median of ratios {statistics.median(ratios):.2f}")
PY
    exit 0
fi

# Miss path, one connection: each request a new login, opened and refreshed
# at the mock; against the mock's token endpoint directly.
miss_n=$((miss_seconds * 3000))
echo "== minting $miss_n AuthIDs for the miss path" >&2
mint "$WORK/miss.txt" mock "$miss_n"
wrk_run mock_direct "$MOCK_URL/token" -t 1 -c 1 -d "${miss_seconds}s" -s scripts/load/token.lua
wrk_run miss "$broker_url/refresh" -t 1 -c 1 -d "${miss_seconds}s" -s scripts/load/authids.lua -- "$WORK/miss.txt" 1

# Miss path under concurrency: 16 connections, each request a new login;
# the ECDH floor of all cores measured just before; the broker's CPU time
# (user + system, from /proc) over the run.
miss16_n=$((miss16_seconds * 10000))
echo "== minting $miss16_n AuthIDs for the concurrent miss run" >&2
mint "$WORK/miss16.txt" mock "$miss16_n"
echo "== openssl speed -seconds $speed_seconds -multi $cores ecdhp256" >&2
speed=$(openssl speed -seconds "$speed_seconds" -multi "$cores" ecdhp256 2>/dev/null |
    awk '/ecdh \(nistp256\)/ { v = $NF } END { print v }')
note ecdh_floor_all_cores "$speed"
# `-multi` counts by the clock on the wall (each process gets its share of
# a busy machine); one process alone counts by its own CPU time, the floor
# to set the broker's CPU time per miss against.
speed1=$(openssl speed -seconds "$speed_seconds" ecdhp256 2>/dev/null |
    awk '/ecdh \(nistp256\)/ { v = $NF } END { print v }')
note ecdh_floor_one_core "$speed1"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_before=$(cpu_ticks "$broker_pid")
wrk_run miss16 "$broker_url/refresh" -t 2 -c 16 -d "${miss16_seconds}s" -s scripts/load/authids.lua -- "$WORK/miss16.txt" 2
note miss16_cpu_s "$(awk -v t="$(($(cpu_ticks "$broker_pid") - ticks_before))" -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')"

# Memory with FILL cached tokens: refresh distinct logins until the cache
# holds FILL (the hit login and the miss run's logins count). wrk runs until
# the broker has counted every refresh of the list (bounded: 600 s at most),
# then is interrupted and reports.
metric() { curl -fsS "$broker_url/metrics" | awk -v m="$1" '$1 ~ m { s += $2 } END { print s + 0 }'; }
cached=$(metric '^[a-z_]*cached_tokens$')
refreshed_before=$(metric 'refreshes_total[{].*outcome="refreshed"')
need=$((fill - cached))
if ((need > 0)); then
    echo "== minting $need AuthIDs to fill the cache to $fill" >&2
    mint "$WORK/fill.txt" mock "$need"
    echo "== fill: wrk -t2 -c16 (one refresh per AuthID of the list)" >&2
    wrk -t 2 -c 16 -d 600s -s scripts/load/authids.lua "$broker_url/refresh" -- "$WORK/fill.txt" 2 stop >"$WORK/fill.wrk" &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    for ((i = 0; i < 600; i++)); do
        sleep 1
        kill -0 "$wrk_pid" 2>/dev/null || break
        done_n=$(($(metric 'refreshes_total[{].*outcome="refreshed"') - refreshed_before))
        ((done_n >= need)) && break
    done
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" || true
    grep -v '^RESULT' "$WORK/fill.wrk" >&2 || true
    echo "fill $(sed -n 's/^RESULT //p' "$WORK/fill.wrk")" >>"$results"
fi
sleep 2
note cached_tokens "$(metric '^[a-z_]*cached_tokens$')"
note rss_filled_kb "$(rss_kb "$broker_pid")"
stop_pid "$broker_pid"

# Misses on each store, CPU per miss in ECDH floors (printed after the
# main table).
miss_stores >/dev/null

# Start to ready: spawn, poll /ready every millisecond, stop; READY_RUNS times.
echo "== start to /ready, $ready_runs runs" >&2
python3 - "$BIN/oauth-broker" "$KEYS_DIR" "$CONFIG" "$ready_runs" "$WORK" >>"$results" <<'PY'
import os, socket, subprocess, sys, time, statistics
binary, keys_dir, config, runs, work = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05) as c:
            c.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
times = []
for i in range(runs):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LISTEN": f"127.0.0.1:{port}", "KEYS_DIR": keys_dir,
           "CONFIGFILE": config, "LOG_FORMAT": "json", "STORE": "memory"}
    log = open(os.path.join(work, "ready.log"), "ab")
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log)
    deadline = t0 + 10
    ok = False
    while time.monotonic() < deadline:
        if ready(port):
            ok = True
            break
        time.sleep(0.001)
    t = time.monotonic() - t0
    p.terminate(); p.wait(timeout=10)
    if not ok:
        sys.exit(f"run {i}: not ready within 10 s")
    times.append(t * 1000)
times.sort()
print("ready_ms " + " ".join(f"{t:.1f}" for t in times))
PY

if [[ -z "${SKIP_CRITERION:-}" ]]; then
    echo "== cargo bench (authid_seal/open, login state, token cache)" >&2
    cargo bench --bench authid -- --noplot "${criterion_args[@]}" authid_ >&2
    cargo bench --bench login_state --bench token_cache -- --noplot "${criterion_args[@]}" >&2
fi

python3 - "$results" "${CARGO_TARGET_DIR:-target}/criterion" "$threads" "$connections" "$duration" "$miss_seconds" "$fill" "$ready_runs" "$miss16_seconds" "$cores" <<'PY'
import json, os, statistics, sys
path, crit, threads, conns, duration, miss_s, fill, ready_runs, miss16_s, cores = sys.argv[1:11]
rows = {}
for line in open(path):
    key, _, value = line.strip().partition(" ")
    rows[key] = value
def j(key):
    return json.loads(rows[key])
def check(key, r):
    bad = {k: v for k, v in r["errors"].items() if v}
    if bad:
        print(f"WARNING: {key}: errors {bad}", file=sys.stderr)
    if r.get("wrapped", {}).get("n"):
        print(f"WARNING: {key}: the AuthID list wrapped around (some requests were hits)", file=sys.stderr)
    for s, n in r.get("statuses", {}).items():
        if s != "200":
            print(f"WARNING: {key}: {n} answers with status {s}", file=sys.stderr)
rounds = sorted(k for k in rows if k.startswith("hit_") and k[4:].isdigit())
hit = [j(k) for k in rounds]
bare = [j("bare_" + k[4:]) for k in rounds]
for k, r in zip(rounds, hit): check(k, r)
for k, r in zip(rounds, bare): check("bare_" + k[4:], r)
med = lambda xs: statistics.median(xs)
ratios = [h["rps"] / b["rps"] for h, b in zip(hit, bare)]
hit_rps, bare_rps = med([r["rps"] for r in hit]), med([r["rps"] for r in bare])
hp50, bp50 = med([r["p50_us"] for r in hit]), med([r["p50_us"] for r in bare])
hp99, bp99 = med([r["p99_us"] for r in hit]), med([r["p99_us"] for r in bare])
miss, direct = j("miss"), j("mock_direct")
check("miss", miss); check("mock_direct", direct)
over50 = (miss["p50_us"] - direct["p50_us"]) / 1000
over99 = (miss["p99_us"] - direct["p99_us"]) / 1000
if "fill" in rows: check("fill", j("fill"))
idle = int(rows["rss_idle_kb"]) / 1024
filled = int(rows["rss_filled_kb"]) / 1024
cached = float(rows["cached_tokens"])
ready = [float(x) for x in rows["ready_ms"].split()]
def crit_us(name):
    try:
        with open(os.path.join(crit, name, "new", "estimates.json")) as f:
            return json.load(f)["median"]["point_estimate"] / 1000
    except OSError:
        return None
ok = lambda b: "yes" if b else "**no**"
ms = lambda us: f"{us / 1000:.2f} ms"
wrk = f"wrk -t{threads} -c{conns} -d{duration}s"
print(f"- response body: broker {rows['body_bytes']} bytes, bare handler {rows['bare_body_bytes']} bytes")
print(f"- hit/bare: {len(rounds)} interleaved rounds of `{wrk}`; medians; per-round throughput ratios "
      + ", ".join(f"{r:.2f}" for r in ratios))
print()
print("| measure | broker | baseline (same run) | ratio / difference | target | met |")
print("|---|---:|---:|---:|---|---|")
print(f"| cache-hit `GET /refresh` throughput (`{wrk}`, X-AuthID) | {hit_rps:,.0f} req/s | {bare_rps:,.0f} req/s (bare axum) | **{hit_rps / bare_rps:.2f}** | ≥ 0.9 | {ok(hit_rps / bare_rps >= 0.9)} |")
print(f"| cache-hit p50 | {ms(hp50)} | {ms(bp50)} | {hp50 / bp50:.2f}× | | |")
print(f"| cache-hit p99 | {ms(hp99)} | {ms(bp99)} | {hp99 / bp99:.2f}× | | |")
print(f"| miss path p50 (`wrk -t1 -c1 -d{miss_s}s`, fresh AuthID per request) | {ms(miss['p50_us'])} | {ms(direct['p50_us'])} (mock token endpoint) | **+{over50:.2f} ms** | ≤ +0.3 ms | {ok(over50 <= 0.3)} |")
print(f"| miss path p99 | {ms(miss['p99_us'])} | {ms(direct['p99_us'])} | +{over99:.2f} ms | | |")
print(f"| miss path throughput, one connection | {miss['rps']:,.0f} req/s | {direct['rps']:,.0f} req/s | {miss['rps'] / direct['rps']:.2f} | | |")
m16 = j("miss16"); check("miss16", m16)
floor = float(rows["ecdh_floor_all_cores"])
cpu_us = float(rows["miss16_cpu_s"]) * 1e6 / max(m16["requests"], 1)
floor_us = 1e6 / float(rows["ecdh_floor_one_core"])
print(f"| misses per second, 16 connections (`wrk -t2 -c16 -d{miss16_s}s`, fresh AuthID per request) | {m16['rps']:,.0f} req/s | {floor:,.0f} ECDH/s (`openssl speed -multi {cores} ecdhp256`) | **{m16['rps'] / floor:.2f}** | ≥ 0.7 | {ok(m16['rps'] / floor >= 0.7)} |")
print(f"| broker CPU time per miss (user + system, same run) | {cpu_us:.0f} µs | {floor_us:.1f} µs (one ECDH, CPU time: `openssl speed ecdhp256`) | {cpu_us / floor_us:.2f} floors | | |")
print(f"| misses per broker CPU-second ÷ ECDH per CPU-second | | | **{floor_us / cpu_us:.2f}** | (≥ 0.7) | {ok(floor_us / cpu_us >= 0.7)} |")
print(f"| resident memory, idle (VmRSS) | {idle:.1f} MB | | | ≤ 20 MB | {ok(idle <= 20)} |")
print(f"| resident memory, {cached:,.0f} cached tokens | {filled:.1f} MB | {idle:.1f} MB (idle) | +{filled - idle:.1f} MB, {(filled - idle) * 1048576 / max(cached, 1):,.0f} bytes/token | | |")
print(f"| start to `/ready` 200, median of {len(ready)} | {med(ready):.1f} ms | | min {ready[0]:.1f}, max {ready[-1]:.1f} ms | ≤ 100 ms | {ok(med(ready) <= 100)} |")
benches = [
    ("AuthID open (`authid_open`)", "authid_open", 100),
    ("AuthID seal (`authid_seal`)", "authid_seal", None),
    ("login state seal (`login_state_seal`)", "login_state_seal", None),
    ("login state open (`login_state_open`)", "login_state_open", None),
    ("cache hit: hash + both lookups (`cache_hit_by_text`)", "cache_hit_by_text", None),
    ("cache: SHA-256 of the AuthID (`cache_text_key`)", "cache_text_key", None),
    ("cache: login key + by-login lookup (`cache_login_key_path`)", "cache_login_key_path", None),
    ("cache miss by text (`cache_miss_by_text`)", "cache_miss_by_text", None),
]
opened = crit_us("authid_open")
for label, name, target in benches:
    us = crit_us(name)
    if us is None:
        continue
    vs = f"{us / opened:.4f} of an open" if opened and name != "authid_open" else ""
    t = f"≤ {target} µs" if target else ""
    met = ok(us <= target) if target else ""
    print(f"| {label}, criterion median | {us:.2f} µs | | {vs} | {t} | {met} |")
PY

echo
echo "Cache misses by store:"
echo
cat "$WORK/misses.md"
