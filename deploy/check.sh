#!/usr/bin/env bash
# Checks everything under deploy/ that can be checked without a cluster or a Docker
# daemon:
#   - every YAML and JSON file parses (PyYAML, python's json);
#   - promtool: the rules (check + unit tests), the example Prometheus config, and
#     every PromQL expression of the Grafana dashboard;
#   - the dashboard declares its ${DS_PROMETHEUS} input and every panel uses it;
#   - the Kubernetes manifests hold what kustomization.yaml lists, and the
#     StatefulSet's DROVER_SHARDS equals its replicas;
#   - systemd-analyze verify on the unit, when systemd-analyze exists.
# Exits non-zero on any failure. promtool comes from Debian's `prometheus` package;
# when it is missing this script installs it (as root) and skips the promtool checks,
# loudly, only when it cannot be installed.
#
#   bash deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")"

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok:   $*"; }

echo "== YAML and JSON"
if ! python3 -c 'import yaml' 2>/dev/null; then
    python3 -m pip install --quiet pyyaml || true
fi
if python3 - <<'PY'; then ok "every YAML/JSON file parses"; else fail "YAML/JSON parse"; fi
import json, pathlib, sys, yaml
bad = 0
files = sorted(p for p in pathlib.Path(".").rglob("*")
               if p.is_file() and p.suffix in (".yml", ".yaml", ".json"))
for p in files:
    try:
        with p.open() as f:
            if p.suffix == ".json":
                json.load(f)
            else:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
                if not docs:
                    raise ValueError("no document")
        print(f"      {p}")
    except Exception as e:
        print(f"FAIL: {p}: {e}", file=sys.stderr)
        bad += 1
sys.exit(1 if bad or not files else 0)
PY

echo "== promtool"
if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "promtool missing: installing Debian's prometheus package"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null) || true
fi
if command -v promtool >/dev/null 2>&1; then
    if promtool check rules prometheus/drover-rules.yml; then ok "rules"; else fail "promtool check rules"; fi
    if (cd prometheus && promtool test rules drover-rules.test.yml); then
        ok "rule unit tests"
    else
        fail "promtool test rules"
    fi
    if promtool check config prometheus/prometheus.yml; then ok "prometheus.yml"; else fail "promtool check config"; fi
    # Dashboard queries: Grafana's variables replaced, wrapped as recording rules.
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 - "$tmp/dashboard-rules.yml" <<'PY' || fail "dashboard queries could not be extracted"
import json, sys, yaml
d = json.load(open("grafana/drover-dashboard.json"))
rules = []
for p in d["panels"]:
    for t in p.get("targets", []):
        e = (t["expr"].replace("$__rate_interval", "5m")
             .replace("$job", ".*").replace("$instance", ".*"))
        rules.append({"record": f"dashboard:panel_{p['id']}:{t['refId']}", "expr": e})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
PY
    if promtool check rules "$tmp/dashboard-rules.yml"; then
        ok "dashboard PromQL"
    else
        fail "dashboard PromQL"
    fi
else
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "SKIPPED: promtool is not installed and could not be installed (apt-get install" >&2
    echo "prometheus). Rules, rule tests, prometheus.yml and dashboard queries UNCHECKED." >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
fi

echo "== dashboard and manifests"
if python3 - <<'PY'; then ok "dashboard datasource and Kubernetes manifests"; else fail "dashboard/manifests"; fi
import json, pathlib, sys, yaml
errors = []
d = json.load(open("grafana/drover-dashboard.json"))
if not any(i.get("name") == "DS_PROMETHEUS" for i in d.get("__inputs", [])):
    errors.append("dashboard: no DS_PROMETHEUS input")
for p in d["panels"]:
    if p["type"] == "row":
        continue
    for obj in [p] + p.get("targets", []):
        if obj.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"dashboard panel {p['title']!r}: datasource is not ${{DS_PROMETHEUS}}")

k = pathlib.Path("kubernetes")
kust = yaml.safe_load((k / "kustomization.yaml").read_text())
kinds = {}
for r in kust["resources"]:
    for doc in yaml.safe_load_all((k / r).read_text()):
        if doc:
            kinds[doc["kind"]] = doc
            if "namespace" in doc.get("metadata", {}):
                errors.append(f"{r}: sets a namespace; the manifests are namespace-agnostic")
for want in ("ConfigMap", "StatefulSet", "Service", "ServiceMonitor"):
    if want not in kinds:
        errors.append(f"kustomization.yaml: no {want}")
sts = kinds.get("StatefulSet", {})
spec = sts.get("spec", {})
c = spec.get("template", {}).get("spec", {}).get("containers", [{}])[0]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
if str(spec.get("replicas")) != env.get("DROVER_SHARDS"):
    errors.append(f"statefulset: DROVER_SHARDS={env.get('DROVER_SHARDS')} but replicas={spec.get('replicas')}")
if "--shard" not in " ".join(c.get("args", [])):
    errors.append("statefulset: the wrapper does not pass --shard")
for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthz")):
    if c.get(probe, {}).get("httpGet", {}).get("path") != path:
        errors.append(f"statefulset: {probe} is not {path}")
sc = c.get("securityContext", {})
if not (sc.get("readOnlyRootFilesystem") and sc.get("capabilities", {}).get("drop") == ["ALL"]):
    errors.append("statefulset: container securityContext is not read-only/drop ALL")
if kinds.get("Service", {}).get("spec", {}).get("clusterIP") != "None":
    errors.append("service: not headless")
data = kinds.get("ConfigMap", {}).get("data", {})
try:
    import tomllib
    conf = tomllib.loads(data.get("drover.toml", ""))
    http = conf.get("http", {})
    if http.get("listen") != "0.0.0.0:8080" or not http.get("token_file"):
        errors.append("configmap: drover.toml must listen on 0.0.0.0:8080 with a token_file")
    for inv in conf.get("inventory", []):
        if inv not in data:
            errors.append(f"configmap: inventory {inv!r} is not a key of the ConfigMap")
        else:
            tomllib.loads(data[inv])
except ImportError:
    print("      (python < 3.11: the ConfigMap's TOML is not parsed)")
except tomllib.TOMLDecodeError as e:
    errors.append(f"configmap: TOML: {e}")
for e in errors:
    print(f"FAIL: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

echo "== shard wrapper"
# Runs the StatefulSet's shell wrapper with a stand-in drover that prints its
# arguments: pod drover-2 of 3 must run shard 2/3, and an ordinal >= N must fail.
wrap_tmp="$(mktemp -d)"
python3 - "$wrap_tmp/wrapper.sh" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open("kubernetes/statefulset.yaml")):
    if doc and doc.get("kind") == "StatefulSet":
        c = doc["spec"]["template"]["spec"]["containers"][0]
        open(sys.argv[1], "w").write(c["args"][0])
PY
printf '#!/bin/sh\necho "$*"\n' > "$wrap_tmp/drover" && chmod +x "$wrap_tmp/drover"
got="$(PATH="$wrap_tmp:$PATH" HOSTNAME=drover-2 DROVER_SHARDS=3 sh "$wrap_tmp/wrapper.sh" 2>&1 || true)"
if [ "$got" = "run --config /etc/drover/drover.toml --shard 2/3" ]; then
    ok "drover-2 of 3 runs --shard 2/3"
else
    fail "wrapper for drover-2 of 3 ran: $got"
fi
if PATH="$wrap_tmp:$PATH" HOSTNAME=drover-3 DROVER_SHARDS=3 sh "$wrap_tmp/wrapper.sh" >/dev/null 2>&1; then
    fail "wrapper accepted ordinal 3 of 3 shards"
else
    ok "ordinal 3 of 3 shards is refused"
fi
if PATH="$wrap_tmp:$PATH" HOSTNAME=drover-1 sh "$wrap_tmp/wrapper.sh" >/dev/null 2>&1; then
    fail "wrapper ran without DROVER_SHARDS"
else
    ok "a missing DROVER_SHARDS is refused"
fi
rm -rf "$wrap_tmp"

echo "== systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
    unit_tmp="$(mktemp -d)"
    # verify wants ExecStart's binary to exist: point it at a stand-in.
    printf '#!/bin/sh\n' > "$unit_tmp/drover" && chmod +x "$unit_tmp/drover"
    sed "s#/usr/local/bin/drover#$unit_tmp/drover#" systemd/drover.service > "$unit_tmp/drover.service"
    if out="$(systemd-analyze verify "$unit_tmp/drover.service" 2>&1)" && [ -z "$out" ]; then
        ok "systemd-analyze verify"
    else
        fail "systemd-analyze verify: $out"
    fi
    rm -rf "$unit_tmp"
else
    echo "skipped: systemd-analyze not installed (unit not verified)"
fi

echo
if [ "$failures" -ne 0 ]; then
    echo "deploy/check.sh: $failures check(s) FAILED" >&2
    exit 1
fi
echo "deploy/check.sh: all checks passed"
