#!/usr/bin/env bash
# Scans every log line the test suite captured (target/test-logs/*.log) for
# anything shaped like a secret the tests use: the mock provider's tokens and
# codes, AuthIDs (the old App Engine service's keyid:password too), the test
# client secret and the old service's API key.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/test-logs
if ! ls "$dir"/*.log >/dev/null 2>&1; then
    echo "check-test-logs: no captured logs in $dir (did the suite run?)" >&2
    exit 1
fi
lines=$(cat "$dir"/*.log | wc -l)
pattern='(^|[^A-Za-z0-9])(at|rt|code)-[A-Za-z0-9]{40}|v3:ey[A-Za-z0-9_-]{20,}|v2:[a-z.]+:[A-Za-z0-9/_-]{8,}|test-secret-0f9e8d7c|[0-9a-f]{30,32}:[A-Za-z0-9!._-]{21}([^A-Za-z0-9!._-]|$)|legacy-api-key-0123456789'
if grep -E -n "$pattern" "$dir"/*.log | head -n 20 | grep .; then
    echo "check-test-logs: the lines above hold a secret" >&2
    exit 1
fi
echo "check-test-logs: $lines captured log lines, no secrets"
