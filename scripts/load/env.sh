# Shared by scripts/bench-load.sh and scripts/soak.sh (sourced, not run):
# builds the release binaries once, and starts the mock provider and the
# broker on 127.0.0.1 in a scratch directory, stopping them on exit.
#
# BIN_DIR=DIR runs the binaries already in DIR (oauth-broker and
# examples/) instead of building: to measure an earlier build.
#
# After `load_env_init`: $BIN (release dir), $WORK (scratch dir),
# $KEYS_DIR, $CONFIG (provider entries file). Servers started with
# `start_mock` / `start_broker NAME [ENV=VALUE...]` set $MOCK_URL /
# $BROKER_URL and $BROKER_PID.

load_env_init() {
    for tool in cargo curl python3; do
        command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
    done
    BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/oauth-broker-load.XXXXXX")
    PIDS=()
    trap load_env_cleanup EXIT
    trap 'exit 130' INT TERM
}

load_env_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "${KEEP_WORK:-}" ]]; then
        echo "scratch files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

# One release build of everything the runs need.
build_release() {
    [[ -n "${BIN_DIR:-}" ]] && return 0
    echo "== cargo build --release (broker and load-test examples)" >&2
    cargo build --release --bin oauth-broker \
        --example bare_json --example mock_token --example mint_authids >&2
}

# Waits for "listening <addr>" (examples) or the broker's JSON "listening"
# line in FILE; prints the address.
wait_listening() {
    local file=$1 pid=$2 i addr
    for ((i = 0; i < 2000; i++)); do
        addr=$(python3 - "$file" <<'PY'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    if line.startswith("listening "):
        print(line.split()[1]); break
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("fields", {}).get("message") == "listening":
        print(j["fields"]["address"]); break
PY
)
        if [[ -n "$addr" ]]; then
            echo "$addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "error: server exited:" >&2; cat "$file" >&2; return 1; }
        sleep 0.01
    done
    echo "error: server did not start" >&2
    return 1
}

start_mock() {
    "$BIN/examples/mock_token" 127.0.0.1:0 >"$WORK/mock.out" 2>&1 &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    MOCK_URL="http://$(wait_listening "$WORK/mock.out" "$MOCK_PID")"
    KEYS_DIR=$WORK/keys
    mkdir -p "$KEYS_DIR"
    KEYS_DIR=$KEYS_DIR "$BIN/oauth-broker" keys generate --activate >/dev/null 2>&1
    CONFIG=$WORK/providers.json
    # Two providers on the mock: `mock` keeps its refresh token, `mockrot`
    # rotates it on every refresh (single use, like Box). The provider
    # quota is raised far above the request rates used here, so the broker
    # never holds calls back (the default is 10/s per provider).
    python3 - "$MOCK_URL" >"$CONFIG" <<'PY'
import json, sys
url = sys.argv[1]
def entry(pid, rotation):
    e = {"id": pid, "name": pid, "clientId": "bench-client", "clientSecret": "bench-secret",
         "authUrl": url + "/token", "loginUrl": url + "/authorize",
         "rateLimit": {"perSecond": 1000000, "burst": 1000000}}
    if rotation:
        e["rotation"] = rotation
    return e
print(json.dumps([entry("mock", None), entry("mockrot", "single-use")]))
PY
}

# start_broker NAME [VAR=VALUE...]: `oauth-broker serve` with the mock's
# providers and STORE=memory unless given; logs (JSON) in $WORK/NAME.log.
start_broker() {
    local name=$1
    shift
    env -i PATH="$PATH" LISTEN=127.0.0.1:0 KEYS_DIR="$KEYS_DIR" CONFIGFILE="$CONFIG" \
        LOG_FORMAT=json STORE=memory "$@" "$BIN/oauth-broker" serve >"$WORK/$name.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    BROKER_URL="http://$(wait_listening "$WORK/$name.log" "$BROKER_PID")"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Resident memory of PID in kB (VmRSS).
rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# mint FILE SERVICE COUNT [PREFIX]: COUNT fresh AuthIDs, one per line.
mint() {
    KEYS_DIR=$KEYS_DIR "$BIN/examples/mint_authids" "$2" "$3" "${4:-rt-}" >"$1"
}

# wrk_record FILE LABEL URL [wrk options...] [-- script args...]: runs wrk
# and appends its RESULT json to FILE under LABEL.
wrk_record() {
    local file=$1 label=$2 url=$3 opts=() out
    shift 3
    while (($#)) && [[ $1 != -- ]]; do
        opts+=("$1")
        shift
    done
    echo "== $label: wrk ${opts[*]} $url $*" >&2
    out=$(wrk "${opts[@]}" "$url" "$@")
    echo "$out" | grep -v '^RESULT' >&2
    echo "$label $(echo "$out" | sed -n 's/^RESULT //p')" >>"$file"
}
