#!/usr/bin/env bash
# Checks deploy/kubernetes/ offline: every manifest against the Kubernetes
# API schemas (kubernetes-validate, which ships them, in strict mode: an
# unknown field is an error) at the oldest and the newest Kubernetes version
# the manifests are meant for; then scripts/check-kubernetes.py (references
# between the objects, the properties the deployment relies on, and the
# Deployment's environment against the binary's `check-config`).
#
# Installs kubernetes-validate (pinned, from PyPI) into a tool directory
# outside the repository on first use, and builds the debug binary if it is
# not there (OAUTH_BROKER_BIN names another one).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.34.1
# The manifests use fields up to these versions' APIs (preStop sleep,
# nodeTaintsPolicy, unhealthyPodEvictionPolicy): the oldest supported and
# the newest the pinned package knows.
KUBERNETES_VERSIONS=(1.31.0 1.34.0)
TOOLS=${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-broker/deploy-tools}

venv="$TOOLS/venv"
if ! [ -x "$venv/bin/kubernetes-validate" ] ||
    [ "$("$venv/bin/kubernetes-validate" --version)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
    echo "installing kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" >&2
fi

status=0
manifests=()
for f in deploy/kubernetes/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
for version in "${KUBERNETES_VERSIONS[@]}"; do
    echo "== kubernetes-validate --strict, Kubernetes ${version}: ${#manifests[@]} files"
    "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" \
        "${manifests[@]}" || status=1
done

bin=${OAUTH_BROKER_BIN:-target/debug/oauth-broker}
if [ -z "${OAUTH_BROKER_BIN:-}" ]; then
    cargo build --quiet --locked --bin oauth-broker
fi
echo "== references, requirements and the environment against ${bin}"
"$venv/bin/python" scripts/check-kubernetes.py "$bin" || status=1
exit "$status"
