#!/bin/sh
# Measures what one login costs the Redis store (commands per refresh and
# bytes held, per kind of provider) on a real redis-server, for
# docs/CAPACITY.md. Needs redis-server (scripts/setup.sh installs it).
set -eu
cd "$(dirname "$0")/.."
exec cargo nextest run --all-targets --run-ignored only --no-capture \
    -E 'test(/capacity_per_login_and_refresh/)' 2>&1 |
    sed -n 's/^\(##\|- \|$\)/&/p' | grep -E '^(##|- |$)'
