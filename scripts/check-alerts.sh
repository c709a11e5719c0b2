#!/usr/bin/env bash
# Checks deploy/prometheus/ and deploy/grafana/: the rules load (`promtool
# check rules`), their unit tests pass (`promtool test rules`), every alert
# has at least one test case where it fires and one where it does not, the
# dashboard's queries parse, and every oauth_broker_* metric the rules and
# the dashboard name is one the source registers. Installs promtool from
# Debian's `prometheus` package on first use, and PyYAML (pinned, from PyPI)
# into a tool directory outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

PYYAML_VERSION=6.0.3
TOOLS=${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-broker/deploy-tools}

if ! command -v promtool >/dev/null 2>&1; then
    echo "installing promtool (Debian package prometheus)" >&2
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2 ||
        { as_root apt-get update -q >&2 &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2; }
fi
venv="$TOOLS/venv"
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    echo "installing PyYAML ${PYYAML_VERSION} into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "PyYAML==${PYYAML_VERSION}" >&2
fi

cd deploy/prometheus
status=0
echo "== promtool check rules alerts.yml ($(promtool --version 2>&1 | head -1))"
promtool check rules alerts.yml || status=1
echo "== promtool test rules"
promtool test rules alerts_test.yml alerts_monthly_test.yml || status=1

echo "== every alert fires in a test and stays quiet in another"
"$venv/bin/python" - alerts.yml alerts_test.yml alerts_monthly_test.yml <<'PY' || status=1
import sys
import yaml

rules_file, *test_files = sys.argv[1:]
alerts = [
    r["alert"]
    for g in yaml.safe_load(open(rules_file))["groups"]
    for r in g["rules"]
    if "alert" in r
]
fires, quiet = set(), set()
for path in test_files:
    for group in yaml.safe_load(open(path))["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
problems = [f"{a}: no case where it fires" for a in alerts if a not in fires]
problems += [f"{a}: no case where it stays quiet" for a in alerts if a not in quiet]
problems += [f"{a}: tested but not in {rules_file}" for a in (fires | quiet) - set(alerts)]
for p in problems:
    print(f"problem: {p}", file=sys.stderr)
print(f"{len(alerts)} alerts, each with a firing and a quiet case" if not problems else "")
sys.exit(1 if problems else 0)
PY

echo "== the dashboard's queries parse; the metrics named exist"
cd ../..
"$venv/bin/python" - <<'PY' || status=1
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

problems = []
dashboards = sorted(Path("deploy/grafana").glob("*.json"))
exprs = []
for path in dashboards:
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"].replace("$__rate_interval", "5m"))
with tempfile.NamedTemporaryFile("w", suffix=".yml") as rules:
    yaml.safe_dump(
        {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)
        ]}]},
        rules,
    )
    rules.flush()
    check = subprocess.run(["promtool", "check", "rules", rules.name], capture_output=True, text=True)
    if check.returncode != 0:
        problems.append("dashboard queries: " + check.stdout + check.stderr)

source = "\n".join(p.read_text() for p in Path("src").rglob("*.rs"))
text = Path("deploy/prometheus/alerts.yml").read_text() + "\n".join(p.read_text() for p in dashboards)
names = set(re.findall(r"\boauth_broker_(\w+)", text))
for name in sorted(names):
    base = re.sub(r"_(total|bucket|sum|count)$", "", name)
    if f'"{base}"' not in source:
        problems.append(f"oauth_broker_{name}: src/ registers no metric \"{base}\"")
for p in problems:
    print(f"problem: {p}", file=sys.stderr)
if not problems:
    print(f"{len(exprs)} dashboard queries parse; {len(names)} metric names, all registered")
sys.exit(1 if problems else 0)
PY
exit "$status"
