#!/usr/bin/env python3
"""Checks deploy/kubernetes/ offline, beyond the API schemas
(scripts/check-kubernetes.sh runs kubernetes-validate first, then this):

- kustomization.yaml lists every manifest of the folder (and only those);
- the objects refer to each other correctly: selectors match the pods they
  mean, the Secrets and ConfigMaps the pods use exist (in configmap.yaml or
  secrets.example.yaml) with the keys they use, the autoscaler and the
  disruption budget target the Deployment;
- the Deployment keeps the properties the deployment relies on (replicas,
  non-root, read-only root, no capabilities, probes, the grace period above
  the broker's own shutdown grace, the keys Secret at KEYS_DIR with mode
  0400, limits set);
- the environment the Deployment passes is accepted by the binary: every
  name is one the binary reads, and `oauth-broker check-config` passes with
  the Deployment's values (secrets replaced by test values, mounted files
  by copies of the ConfigMap and example Secret).

Usage: check-kubernetes.py BINARY (the oauth-broker binary to ask).
Exits non-zero with every problem listed.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secrets.example.yaml"}

problems = []


def problem(text):
    problems.append(text)


def load_all():
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.setdefault(path.name, []).append(doc)
    return docs


def objects(docs, kind=None):
    for name, items in docs.items():
        for doc in items:
            if kind is None or doc.get("kind") == kind:
                yield name, doc


def one(docs, kind, name):
    found = [d for _, d in objects(docs, kind) if d["metadata"]["name"] == name]
    if len(found) != 1:
        problem(f"expected one {kind} {name}, found {len(found)}")
        return None
    return found[0]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check_kustomization(docs):
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust.get("resources", []))
    present = {p.name for p in K8S.glob("*.yaml")} - NOT_IN_KUSTOMIZATION
    for missing in sorted(present - listed):
        problem(f"kustomization.yaml: {missing} is not listed in resources")
    for extra in sorted(listed - present):
        problem(f"kustomization.yaml: resource {extra} does not exist")
    ns = kust.get("namespace")
    for name, doc in objects(docs):
        if name in NOT_IN_KUSTOMIZATION:
            continue
        meta_ns = doc["metadata"].get("namespace")
        if meta_ns and meta_ns != ns:
            problem(f"{name}: {doc['kind']} {doc['metadata']['name']} is in namespace {meta_ns}, not {ns}")
    images = {i["name"] for i in kust.get("images", [])}
    for _, doc in objects(docs):
        for c in pod_containers(doc):
            if doc["kind"] == "Deployment" and c["image"] not in images:
                problem(f"Deployment image {c['image']} is not set by kustomization.yaml images")


def pod_spec(doc):
    if doc.get("kind") in ("Deployment", "StatefulSet"):
        return doc["spec"]["template"]["spec"]
    return None


def pod_containers(doc):
    spec = pod_spec(doc)
    return (spec or {}).get("containers", [])


def shutdown_grace_seconds():
    # Wherever the command-line module keeps it.
    pattern = re.compile(r"const SHUTDOWN_GRACE: [^=]+= [\w:]*Duration::from_secs\((\d+)\)")
    for path in sorted((ROOT / "src" / "cli").glob("*.rs")):
        m = pattern.search(path.read_text())
        if m:
            return int(m.group(1))
    problem("src/cli/: SHUTDOWN_GRACE not found; update check-kubernetes.py")
    return 0


def check_references(docs):
    secrets = {d["metadata"]["name"]: d for _, d in objects(docs, "Secret")}
    configmaps = {d["metadata"]["name"]: d for _, d in objects(docs, "ConfigMap")}

    def secret_keys(name):
        d = secrets.get(name)
        if d is None:
            return None
        return set((d.get("stringData") or {}).keys()) | set((d.get("data") or {}).keys())

    def configmap_keys(name):
        d = configmaps.get(name)
        return None if d is None else set((d.get("data") or {}).keys())

    pods = []
    for file, doc in objects(docs):
        spec = pod_spec(doc)
        if spec is None:
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        if not labels_match(doc["spec"]["selector"]["matchLabels"], labels):
            problem(f"{file}: {doc['kind']} selector does not match its pod labels")
        pods.append((doc, labels))
        for vol in spec.get("volumes", []):
            if "secret" in vol and secret_keys(vol["secret"]["secretName"]) is None:
                problem(f"{file}: volume {vol['name']} uses Secret {vol['secret']['secretName']}, which secrets.example.yaml does not show")
            if "configMap" in vol and configmap_keys(vol["configMap"]["name"]) is None:
                problem(f"{file}: volume {vol['name']} uses ConfigMap {vol['configMap']['name']}, which does not exist")
        for c in spec["containers"]:
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    keys = secret_keys(ref["name"])
                    if keys is None or ref["key"] not in keys:
                        problem(f"{file}: {env['name']} uses {ref['name']}/{ref['key']}, which secrets.example.yaml does not show")

    def pods_selected(selector):
        return [d for d, labels in pods if labels_match(selector, labels)]

    for file, svc in objects(docs, "Service"):
        if not pods_selected(svc["spec"].get("selector")):
            problem(f"{file}: Service {svc['metadata']['name']} selects no pod")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str):
                named = {p["name"] for d in pods_selected(svc["spec"]["selector"]) for c in pod_containers(d) for p in c.get("ports", [])}
                if target not in named:
                    problem(f"{file}: Service {svc['metadata']['name']} targets port {target}, which its pods do not name")
    for file, pdb in objects(docs, "PodDisruptionBudget"):
        if not pods_selected(pdb["spec"]["selector"]["matchLabels"]):
            problem(f"{file}: PodDisruptionBudget selects no pod")
    for file, np in objects(docs, "NetworkPolicy"):
        if not pods_selected(np["spec"]["podSelector"]["matchLabels"]):
            problem(f"{file}: NetworkPolicy {np['metadata']['name']} selects no pod")
        for rule in np["spec"].get("egress", []) + np["spec"].get("ingress", []):
            for peer in rule.get("to", []) + rule.get("from", []):
                sel = peer.get("podSelector")
                if sel is not None and "namespaceSelector" not in peer and not pods_selected(sel["matchLabels"]):
                    problem(f"{file}: NetworkPolicy {np['metadata']['name']} names pods {sel['matchLabels']} that do not exist")
    for file, hpa in objects(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = one(docs, ref["kind"], ref["name"])
        if target is not None and hpa["spec"]["minReplicas"] != target["spec"].get("replicas"):
            problem(f"{file}: minReplicas {hpa['spec']['minReplicas']} differs from the Deployment's replicas")


def check_deployment(docs):
    dep = one(docs, "Deployment", "oauth-broker")
    if dep is None:
        return
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    if dep["spec"].get("replicas", 1) < 2:
        problem("deployment.yaml: fewer than 2 replicas")
    sc = spec.get("securityContext", {})
    csc = c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or csc.get("runAsNonRoot")) or sc.get("runAsUser", 1) == 0:
        problem("deployment.yaml: the pod may run as root")
    if not csc.get("readOnlyRootFilesystem"):
        problem("deployment.yaml: the root filesystem is writable")
    if csc.get("allowPrivilegeEscalation") is not False:
        problem("deployment.yaml: privilege escalation is allowed")
    if "ALL" not in (csc.get("capabilities") or {}).get("drop", []):
        problem("deployment.yaml: capabilities are not all dropped")
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                problem(f"deployment.yaml: no {r} {kind[:-1]}")
    if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/health":
        problem("deployment.yaml: liveness is not GET /health")
    if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/ready":
        problem("deployment.yaml: readiness is not GET /ready")
    grace = shutdown_grace_seconds()
    pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    if spec.get("terminationGracePeriodSeconds", 30) <= grace + pre_stop:
        problem(f"deployment.yaml: terminationGracePeriodSeconds must exceed the shutdown grace ({grace} s) plus the preStop pause ({pre_stop} s)")
    hosts = [t for t in spec.get("topologySpreadConstraints", []) if t["topologyKey"] == "kubernetes.io/hostname"]
    if not hosts:
        problem("deployment.yaml: no spread across nodes (topologyKey kubernetes.io/hostname)")
    env = {e["name"]: e for e in c.get("env", [])}
    keys_dir = (env.get("KEYS_DIR") or {}).get("value")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mount = mounts.get(keys_dir)
    vol = volumes.get(mount["name"]) if mount else None
    if not vol or "secret" not in vol:
        problem("deployment.yaml: no Secret mounted at KEYS_DIR")
    elif vol["secret"].get("defaultMode") != 0o400:
        problem("deployment.yaml: the keys Secret is not mounted with defaultMode 0400")
    if "STORE" not in env or not env["STORE"].get("value", "").startswith(("redis://", "rediss://")):
        problem("deployment.yaml: STORE does not point at Redis")


def check_redis(docs):
    sts = one(docs, "StatefulSet", "redis")
    if sts is None:
        return
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    args = c.get("args", [])
    pairs = dict(zip(args[::2], args[1::2]))
    if pairs.get("--appendonly") != "yes":
        problem("redis.yaml: append-only persistence is off")
    if "--requirepass" not in pairs:
        problem("redis.yaml: no password")
    if not sts["spec"].get("volumeClaimTemplates"):
        problem("redis.yaml: no persistent volume")


# --------------------------------------------------------------------------
# The environment against the binary
# --------------------------------------------------------------------------


def names_the_binary_reads(binary):
    out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    names = set(re.findall(r"\[env: ([A-Z0-9_]+)", out))
    # Read outside the command-line definition (log filter, legacy names):
    # counted when the source names them as a string.
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.rs"))
    for extra in ("LOG_LEVEL", "APPNAME", "DISPLAYNAME"):
        if f'"{extra}"' in source:
            names.add(extra)
    # Read by OpenSSL itself.
    names |= {"SSL_CERT_FILE", "SSL_CERT_DIR"}
    return names


TEST_VALUES = {"password": "0123456789abcdef0123456789abcdef"}


def expand(value, env):
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def check_env(docs, binary):
    dep = one(docs, "Deployment", "oauth-broker")
    if dep is None:
        return
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    accepted = names_the_binary_reads(binary)
    entries = c.get("env", [])
    helpers = set()
    for e in entries:
        helpers |= set(re.findall(r"\$\((\w+)\)", e.get("value", "")))
    for e in entries:
        if e["name"] not in accepted and e["name"] not in helpers:
            problem(f"deployment.yaml: the binary reads no variable {e['name']}")
    if c.get("envFrom"):
        problem("deployment.yaml: envFrom passes names this check cannot see")

    secrets = {d["metadata"]["name"]: d for _, d in objects(docs, "Secret")}
    configmaps = {d["metadata"]["name"]: d for _, d in objects(docs, "ConfigMap")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Mounted volumes, laid out in a scratch folder.
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {}
        for m in c.get("volumeMounts", []):
            vol = volumes[m["name"]]
            where = tmp / m["name"]
            where.mkdir()
            if "configMap" in vol:
                data = configmaps[vol["configMap"]["name"]].get("data", {})
            elif "secret" in vol:
                sec = secrets[vol["secret"]["secretName"]]
                data = dict(sec.get("stringData") or {})
                data.update({k: base64.b64decode(v).decode() for k, v in (sec.get("data") or {}).items()})
            else:
                data = {}
            for k, v in data.items():
                (where / k).write_text(v)
            mounts[m["mountPath"].rstrip("/")] = where
        env = {}
        for e in entries:
            if "value" in e:
                value = expand(e["value"], env)
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                value = TEST_VALUES.get(ref["key"], "test-value")
            for mount_path, where in mounts.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    value = str(where) + value[len(mount_path):]
            env[e["name"]] = value
        # The keys directory gets a real key, as the Secret would hold.
        if "KEYS_DIR" in env:
            subprocess.run(
                [binary, "keys", "generate", "--activate"],
                env={"PATH": os.environ.get("PATH", ""), "KEYS_DIR": env["KEYS_DIR"]},
                capture_output=True,
                check=True,
            )
        run_env = {"PATH": os.environ.get("PATH", ""), **env}
        result = subprocess.run([binary, "check-config"], env=run_env, capture_output=True, text=True)
        if result.returncode != 0:
            problem(
                "oauth-broker check-config rejects the Deployment's environment:\n"
                + result.stdout
                + result.stderr
            )
        else:
            disabled = [l for l in result.stdout.splitlines() if "disabled:" in l]
            print(f"check-config with the Deployment's environment: ok ({len(disabled)} provider(s) without credentials in the example)")
        for name in env:
            # A helper must not leak into anything the binary prints.
            if name in helpers and env[name] in result.stdout + result.stderr:
                problem(f"check-config printed the value of {name}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    docs = load_all()
    check_kustomization(docs)
    check_references(docs)
    check_deployment(docs)
    check_redis(docs)
    check_env(docs, binary)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    if problems:
        return 1
    print("deploy/kubernetes: consistent, and the binary accepts the Deployment's environment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
