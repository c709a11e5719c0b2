#!/usr/bin/env bash
# Store benchmarks, each figure beside a baseline measured in the same run,
# printed as a Markdown table (docs/BENCHMARKS.md holds one run of it):
#
#   - embedded store: a rotation write (flushed) p50/p99 vs. a bare 100-byte
#     write + fdatasync in the same directory; the same write with 16
#     writers at once; a read;
#   - embedded store: open time with 100,000 entries (clean, and after a
#     crash) vs. opening an empty store;
#   - Redis: `get` through the store p50/p99 vs. `redis-benchmark -t get`
#     p50 on the same Redis (one connection, same value size), run before
#     and after the store's own run.
#
#   scripts/bench-store.sh
#
# Environment:
#   REQUESTS   redis-benchmark requests per run (default 100000)
#   KEEP_WORK=1  keep the scratch directory (Redis log and data)
#
# The Redis is started here on a free 127.0.0.1 port with a password and
# append-only persistence (as in production), and stopped at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
requests=${REQUESTS:-100000}

for tool in redis-server redis-benchmark redis-cli python3 cargo; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
redis-server --port "$port" --bind 127.0.0.1 --daemonize no --save "" --appendonly yes \
    --dir "$work" --requirepass "$password" --logfile "$work/redis.log" &
redis_pid=$!
cleanup() {
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    [[ -n "${KEEP_WORK:-}" ]] && echo "scratch kept in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

cli() { REDISCLI_AUTH="$password" redis-cli -h 127.0.0.1 -p "$port" "$@"; }
for _ in $(seq 100); do
    [[ "$(cli ping 2>/dev/null)" == PONG ]] && break
    sleep 0.05
done
[[ "$(cli ping)" == PONG ]] || { echo "error: redis-server did not start" >&2; cat "$work/redis.log" >&2; exit 1; }

redis_get_p50() {
    # One connection, 256-byte values (the size the store bench uses).
    redis-benchmark -h 127.0.0.1 -p "$port" -a "$password" -t set,get \
        -n "$requests" -c 1 -d 256 --precision 3 --csv \
        2>/dev/null | awk -F'"' '$2 == "GET" { print $10 * 1000 }'
}

echo "== redis-benchmark -t get (before), $(redis-server --version | awk '{print $3}')" >&2
before=$(redis_get_p50)
echo "GET p50 ${before} us" >&2

echo "== cargo bench --bench store" >&2
out="$work/bench.txt"
BENCH_REDIS_URL="redis://:${password}@127.0.0.1:${port}/0" \
    cargo bench --bench store 2>&1 | tee "$out" >&2

echo "== redis-benchmark -t get (after)" >&2
after=$(redis_get_p50)
echo "GET p50 ${after} us" >&2

python3 - "$out" "$before" "$after" <<'PY'
import sys

path, before, after = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
r = {}
for line in open(path, errors="replace"):
    parts = line.split()
    if len(parts) == 4 and parts[0] == "result":
        r[parts[1]] = float(parts[2])

def row(label, value, unit, base=None):
    ratio = f"**{value / base:.2f}**" if base else ""
    return f"| {label} | {value:,.1f} {unit} | {ratio} |"

fsync = r["bare_fsync_p50"]
empty = r["embedded_open_empty"]
get_base = (before + after) / 2
print(f"- redis-benchmark GET p50 (one connection, 256-byte value): {before:.1f} µs before, {after:.1f} µs after the store's run")
print(f"- embedded store file with 100,000 entries: {r['embedded_file_100k']:.1f} MB")
print()
print("| figure | value | ÷ baseline |")
print("|---|---:|---:|")
print("| *baseline: 100-byte write + fdatasync, p50* | " + f"{fsync:,.1f} µs | 1.00 |")
print(row("embedded rotation write (`put_versioned`), one at a time, p50", r["embedded_put_versioned_p50"], "µs", fsync))
print(row("embedded rotation write, one at a time, p99", r["embedded_put_versioned_p99"], "µs", r["bare_fsync_p99"]))
print(row("embedded rotation write, 16 writers at once, p50", r["embedded_put_versioned_16_writers_p50"], "µs", fsync))
print(row("embedded rotation write, 16 writers at once, p99", r["embedded_put_versioned_16_writers_p99"], "µs", r["bare_fsync_p99"]))
print(f"| embedded rotation writes, 16 writers at once, rate | {r['embedded_put_versioned_16_writers_rate']:,.0f} writes/s | |")
print(row("embedded read (`get_versioned`), p50", r["embedded_get_versioned_p50"], "µs"))
print("| *baseline: open an empty embedded store* | " + f"{empty:,.1f} ms | 1.00 |")
print(row("open with 100,000 entries (clean close)", r["embedded_open_100k"], "ms", empty))
print(row("open with 100,000 entries after a crash (recovery)", r["embedded_open_100k_after_crash"], "ms", empty))
print("| *baseline: `redis-benchmark -t get` p50, mean of before and after* | " + f"{get_base:,.1f} µs | 1.00 |")
print(row("Redis `get` through the store, p50", r["redis_get_p50"], "µs", get_base))
print(row("Redis `get` through the instrumented store (as the broker uses it), p50", r["redis_get_instrumented_p50"], "µs", get_base))
print(row("Redis `get` through the instrumented store, p99", r["redis_get_instrumented_p99"], "µs"))
PY
