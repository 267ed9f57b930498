#!/usr/bin/env bash
# Checks the monitoring material: the alert rules parse and pass their unit tests
# (alerts_test.yml), and every PromQL expression of the Grafana dashboards (vdb-shard.json,
# vdb-router.json) parses.
# Needs promtool (Debian package prometheus) and python3.
#
# Usage: dashboards/check.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v promtool >/dev/null || {
    echo "check: promtool missing: apt-get install --no-install-recommends prometheus" >&2
    exit 1
}

promtool check rules "$here/alerts.yml"
(cd "$here" && promtool test rules alerts_test.yml)

# The dashboards' queries become recording rules (JSON is YAML), with Grafana's variables
# replaced by plain values, so that promtool parses each one.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for dashboard in vdb-shard vdb-router; do
python3 - "$here/$dashboard.json" >"$tmp/$dashboard-rules.yml" <<'PY'
import json
import sys

dash = json.load(open(sys.argv[1]))
subst = {"$__rate_interval": "5m", "$__interval": "5m", "$__range": "3h", "$job": ".*",
         "$instance": ".*", "$shard": ".*", "$route": ".*", "$node": ".*", "$collection": ".*"}
rules = []
for panel in dash["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"]
        for k, v in subst.items():
            expr = expr.replace(k, v)
        rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
left = [r["expr"] for r in rules if "$" in r["expr"]]
assert not left, f"unsubstituted variables in {left}"
ids = [p["id"] for p in dash["panels"]]
assert len(ids) == len(set(ids)), f"duplicate panel ids in {sys.argv[1]}"
print(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
PY
promtool check rules "$tmp/$dashboard-rules.yml"
done
