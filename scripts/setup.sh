#!/usr/bin/env bash
# Installs what building and testing need, skipping what is already there:
# Debian packages (OpenSSL headers, Chromium for the browser test, Redis for
# the store tests and benchmarks), the Python JOSE library for the
# interoperability test, cargo-nextest, and the browser test's npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

debian_packages=(pkg-config libssl-dev chromium redis-server redis-tools)
missing=()
for p in "${debian_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -c 'import jwcrypto' 2>/dev/null || python3 -m pip install --quiet 'jwcrypto>=1.5'

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules ]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
