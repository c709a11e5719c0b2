#!/usr/bin/env bash
# The whole test suite: installs what it needs, runs every test, then checks
# that nothing the tests logged holds a token, secret or AuthID.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
rm -rf target/test-logs
cargo nextest run --all-targets --no-fail-fast "$@"
scripts/check-test-logs.sh
