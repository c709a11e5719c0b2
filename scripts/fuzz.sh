#!/usr/bin/env bash
# Fuzzes the parsers that take outside input (AuthIDs, login states,
# CONFIGFILE, Retry-After, token-endpoint answers) with cargo-fuzz and
# libFuzzer, each target for SECONDS (default 20), starting from the seed
# corpus in fuzz/corpus/. Fails if any target crashes; the crashing input is
# left in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]        # every target
#   FUZZ_TARGETS="authid" scripts/fuzz.sh 600
#   FUZZ_SANITIZER=address scripts/fuzz.sh   # default: none (faster)
#
# New inputs the fuzzer finds go to fuzz/target/corpus/<target>/ (not in
# git); `cargo fuzz cmin` can fold good ones into fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
read -r -a targets <<<"${FUZZ_TARGETS:-authid login_state provider_config retry_after token_answer}"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz

# cargo-fuzz drives rustc with -Z flags (sanitizer coverage for libFuzzer);
# the stable toolchain accepts them only with RUSTC_BOOTSTRAP set.
export RUSTC_BOOTSTRAP=1

cargo fuzz build --sanitizer "$sanitizer"

failed=()
for target in "${targets[@]}"; do
    work="fuzz/target/corpus/$target"
    mkdir -p "$work"
    echo "fuzz: $target for ${seconds}s"
    # The first corpus directory receives new inputs; the seeds stay as
    # they are in git.
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=20000 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}; inputs are in fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz: no crash in ${targets[*]}"
