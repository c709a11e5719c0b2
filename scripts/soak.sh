#!/usr/bin/env bash
# Soak test, on demand (not in CI): a fixed request rate for a set time
# against one broker, with a mix of cache hits, misses, rotations and bad
# inputs; reports answers by status, p50/p99 and the broker's resident
# memory at start and end as Markdown (docs/BENCHMARKS.md holds one run).
#
#   scripts/soak.sh [RATE] [SECONDS]     # default 200 req/s for 60 s
#
# The broker (`oauth-broker serve`, release build) refreshes at the mock
# provider of examples/mock_token.rs, both on 127.0.0.1. Its limits are the
# defaults, except TRUSTED_PROXIES=127.0.0.1 so each simulated client is
# its own address (X-Forwarded-For), and the provider quota (see
# scripts/load/env.sh). The hit pool is large enough for each login to stay
# under LOGIN_REQUESTS_PER_HOUR (1200). The mix and the driver are in
# scripts/load/soak.py. Exits non-zero on any unexpected answer.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/load/env.sh

rate=${1:-200}
seconds=${2:-60}

load_env_init
build_release
start_mock
start_broker soak TRUSTED_PROXIES=127.0.0.1/32

n_total=$(python3 -c "print(int($rate * $seconds))")
n_hit=$(python3 -c "import math; print(max(50, math.ceil($n_total * 0.6 / 1000)))")
n_miss=$(python3 -c "import math; print(math.ceil($n_total * 0.2 * 1.2) + 10)")
n_rot=$(python3 -c "import math; print(math.ceil($n_total * 0.1 * 1.2) + 10)")
echo "== minting AuthIDs: $n_hit cached logins, $n_miss misses, $n_rot rotations" >&2
mint "$WORK/hit.txt" mock "$n_hit"
mint "$WORK/miss.txt" mock "$n_miss"
mint "$WORK/rot.txt" mockrot "$n_rot" rot-
i=0
while read -r authid; do
    curl -fsS -o /dev/null -H "X-AuthID: $authid" -H "X-Forwarded-For: 10.0.$((i / 250 % 250)).$((i % 250 + 1))" "$BROKER_URL/refresh"
    i=$((i + 1))
done <"$WORK/hit.txt"

echo "== soak: $rate req/s for $seconds s against $BROKER_URL" >&2
python3 scripts/load/soak.py "$BROKER_URL" "$BROKER_PID" "$rate" "$seconds" \
    "$WORK/hit.txt" "$WORK/miss.txt" "$WORK/rot.txt"
