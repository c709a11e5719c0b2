#!/usr/bin/env bash
# Measures AuthID seal and open against the P-256 ECDH floor and prints a
# Markdown table (docs/BENCHMARKS.md holds one run of it).
#
#   scripts/bench-authid.sh                               # system OpenSSL
#   scripts/bench-authid.sh --features vendored-openssl   # vendored OpenSSL
#
# Arguments are passed to `cargo bench`. Environment:
#   SPEED_SECONDS   seconds for `openssl speed` (default 3)
#   CRITERION_ARGS  extra criterion arguments
#                   (default: --warm-up-time 2 --measurement-time 6)
#   CARGO_TARGET_DIR  where criterion writes target/criterion/...
#
# The ECDH floor is the system `openssl speed ecdhp256` figure: one bare
# P-256 derivation with long-lived keys on one core. The bench also measures,
# through the OpenSSL the binary links (the system one, or the vendored one
# with --features vendored-openssl), the P-256 steps seal and open are made
# of: a derivation with the peer key validated, a bare derivation, and
# decoding the ephemeral public key.
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
speed_seconds=${SPEED_SECONDS:-3}
read -r -a criterion_args <<<"${CRITERION_ARGS:---warm-up-time 2 --measurement-time 6}"

for tool in openssl python3 cargo; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

echo "== openssl speed -seconds $speed_seconds ecdhp256 ($(openssl version))" >&2
speed_out=$(openssl speed -seconds "$speed_seconds" ecdhp256 2>/dev/null)
echo "$speed_out" | tail -n 3 >&2
# Result line: " 256 bits ecdh (nistp256)   0.0001s  13600.0"
ops_per_s=$(echo "$speed_out" | awk '/ecdh \(nistp256\)/ { v = $NF } END { print v }')
if [[ -z "$ops_per_s" ]]; then
    echo "error: could not read the nistp256 line of openssl speed" >&2
    exit 1
fi

echo "== cargo bench --bench authid $*" >&2
bench_log=$(mktemp)
trap 'rm -f "$bench_log"' EXIT
cargo bench --bench authid "$@" -- --noplot "${criterion_args[@]}" 2>&1 | tee "$bench_log" >&2

python3 - "$target_dir/criterion" "$ops_per_s" "$bench_log" "$*" <<'PY'
import json, os, re, sys

root, ops_per_s, log_path, cargo_args = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]

def median_us(name):
    path = os.path.join(root, name, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1000.0

log = open(log_path, errors="replace").read()
def grab(label):
    m = re.search(label + r": (.+)", log)
    return m.group(1).strip() if m else "?"

floor = 1e6 / ops_per_s
seal, open_ = median_us("authid_seal"), median_us("authid_open")
pieces = [
    ("P-256 ECDH, peer validated (`ecdh_p256_derive`)", "ecdh_p256_derive"),
    ("P-256 ECDH, bare (`ecdh_p256_derive_unvalidated`)", "ecdh_p256_derive_unvalidated"),
    ("P-256 public key from DER (`p256_public_key_decode`)", "p256_public_key_decode"),
]
system = os.popen("openssl version").read().strip()

print(f"- OpenSSL linked by the broker: {grab('OpenSSL linked')}"
      + (f" (cargo bench {cargo_args})" if cargo_args else ""))
print(f"- ECDH floor from `openssl speed`: {system}, {ops_per_s:,.0f} derivations/s")
print(f"- AuthID length: {grab('AuthID length')}")
print()
print("| operation | median | ÷ ECDH floor |")
print("|---|---:|---:|")
print(f"| **AuthID seal** (`authid_seal`) | {seal:.1f} µs | **{seal / floor:.2f}** |")
print(f"| **AuthID open** (`authid_open`) | {open_:.1f} µs | **{open_ / floor:.2f}** |")
print(f"| P-256 ECDH floor (`openssl speed ecdhp256`) | {floor:.1f} µs | 1.00 |")
for label, name in pieces:
    us = median_us(name)
    print(f"| {label} | {us:.1f} µs | {us / floor:.2f} |")
PY
