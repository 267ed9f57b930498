#!/usr/bin/env bash
# Observability test with a real Prometheus: starts a local fleet on loopback (etcd, two
# routers on it, three shard nodes), a real `prometheus` scraping them every second with
# VDB's alert rules loaded, loads points and runs searches through the routers, then asks
# Prometheus' HTTP API whether the series arrived with the right values: every target up,
# exactly one controller, searches counted, the shard nodes' points equal to the points
# loaded, the controller seeing every node up, and every alert rule evaluating without
# error. Prints each check; stops every process it started.
# Needs target/release/vdb-shard and vdb-router, etcd and prometheus (scripts/setup.sh).
# Without prometheus it skips, except under CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "test-observability: prometheus is missing (scripts/setup.sh installs it)" >&2; exit 1
  fi
  echo "test-observability: SKIPPED: prometheus is missing (apt-get install prometheus)"; exit 0
fi
command -v etcd >/dev/null || { echo "test-observability: etcd is missing: run scripts/setup.sh" >&2; exit 1; }
for bin in vdb-shard vdb-router; do
  [ -x "target/release/$bin" ] || { echo "test-observability: build target/release/$bin first" >&2; exit 1; }
done

state=$(mktemp -d /tmp/vdb-observability.XXXXXX)
pids=()
stop() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    echo "test-observability: FAILED; last log lines:" >&2
    for log in "$state"/*.log; do echo "--- $log" >&2; tail -n 5 "$log" >&2 || true; done
  fi
  rm -rf "$state"
}
trap stop EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_url() { # url, name
  for _ in $(seq 1 300); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done
  echo "test-observability: $2 did not answer $1" >&2; exit 1
}
bound() { # the address a vdb service printed first on stdout
  for _ in $(seq 1 200); do [ -s "$1" ] && break; sleep 0.05; done
  sed -n '1s/.*"listening":"\([^"]*\)".*/\1/p' "$1"
}

client=$(free_port); peer=$(free_port)
etcd --name obs --data-dir "$state/etcd" --listen-client-urls "http://127.0.0.1:$client" \
  --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "obs=http://127.0.0.1:$peer" > "$state/etcd.log" 2>&1 &
pids+=($!)
wait_url "http://127.0.0.1:$client/health" etcd

nodes=(); shard_targets=()
for i in 0 1 2; do
  target/release/vdb-shard --listen 127.0.0.1:0 --data-dir "$state/shard$i" --node-id "n$i" \
    --fsync never > "$state/shard$i.out" 2> "$state/shard$i.log" &
  pids+=($!)
done
for i in 0 1 2; do
  addr=$(bound "$state/shard$i.out")
  wait_url "http://$addr/readyz" "shard$i"
  nodes+=(--node "n$i=http://$addr"); shard_targets+=("\"$addr\"")
done

router_targets=(); routers=()
for r in 0 1; do
  target/release/vdb-router --listen 127.0.0.1:0 --metastore "etcd://127.0.0.1:$client" \
    --router-id "r$r" "${nodes[@]}" > "$state/router$r.out" 2> "$state/router$r.log" &
  pids+=($!)
  addr=$(bound "$state/router$r.out")
  wait_url "http://$addr/readyz" "router$r"
  routers+=("http://$addr"); router_targets+=("\"$addr\"")
done

prom_port=$(free_port)
join() { local IFS=,; echo "$*"; }
cat > "$state/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/dashboards/alerts.yml
scrape_configs:
  - job_name: vdb-router
    static_configs:
      - targets: [$(join "${router_targets[@]}")]
  - job_name: vdb-shard
    static_configs:
      - targets: [$(join "${shard_targets[@]}")]
YAML
prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" > "$state/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
wait_url "$prom/-/ready" prometheus
echo "test-observability: etcd, 2 routers, 3 shard nodes, prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') on $prom"

python3 - "$prom" "${routers[@]}" <<'PY'
import json, random, sys, time, urllib.parse, urllib.request

prom, routers = sys.argv[1], sys.argv[2:]
POINTS, SEARCHES, DIM = 600, 12, 8

def call(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)

rng = random.Random(7)
call("PUT", f"{routers[0]}/v1/collections/obs", {"dimension": DIM, "metric": "l2", "shard_count": 3})
for start in range(0, POINTS, 200):
    pts = [{"id": i, "vector": [rng.random() for _ in range(DIM)]} for i in range(start, start + 200)]
    call("PUT", f"{routers[1]}/v1/collections/obs/points", {"points": pts})
for q in range(SEARCHES):
    hits = call("POST", f"{routers[q % 2]}/v1/collections/obs/search",
                {"vector": [rng.random() for _ in range(DIM)], "k": 5})
    assert len(hits["points"]) == 5, hits
print(f"test-observability: loaded {POINTS} points through the routers, ran {SEARCHES} searches")

def query(expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

checks = failed = 0
def expect(what, expr, ok, deadline=30):
    """Polls `expr` until ok(result) or the deadline; prints what was checked and seen."""
    global checks, failed
    end = time.time() + deadline
    while True:
        result = query(expr)
        if ok(result) or time.time() > end:
            break
        time.sleep(0.5)
    seen = "; ".join(f"{ {k: v for k, v in m.items() if k != '__name__'} or ''} {v:g}".strip()
                     for m, v in result) or "no series"
    good = ok(result)
    checks += 1
    failed += not good
    print(f"  {'ok  ' if good else 'FAIL'} {what}: {expr} -> {seen}")

one = lambda want: (lambda r: len(r) == 1 and r[0][1] == want)
expect("every target scraped", 'up', lambda r: len(r) == 5 and all(v == 1 for _, v in r))
expect("router series from both routers", 'count(vdb_router_controller)', one(2))
expect("exactly one controller", 'sum(vdb_router_controller)', one(1))
expect("searches counted", 'sum(vdb_router_searches_total)', one(SEARCHES))
expect("search requests by route", 'sum(vdb_router_http_requests_total{route="/v1/collections/{name}/search",status="200"})', one(SEARCHES))
expect("search latency histogram", 'sum(vdb_router_http_request_duration_seconds_count{route="/v1/collections/{name}/search"})', one(SEARCHES))
expect("shard nodes hold the points loaded", 'sum(vdb_shard_points)', one(POINTS))
expect("every shard node has a shard of the collection", 'count(count by (instance) (vdb_shard_points))', one(3))
expect("shard nodes served the searches", 'sum(vdb_shard_searches_total) >= %d' % SEARCHES, lambda r: len(r) == 1)
expect("controller sees every node up", 'count(vdb_router_node_up == 1 and on (job, instance) (vdb_router_controller == 1))', one(3))
expect("imbalance ratio exported", 'vdb_router_collection_imbalance_ratio{collection="obs"} and on (job, instance) (vdb_router_controller == 1)',
       lambda r: len(r) == 1 and 1 <= r[0][1] < 1.5)
expect("no shard call errors", 'sum(vdb_router_shard_errors_total) or vector(0)', one(0))
expect("all shard nodes ready", 'min(vdb_shard_ready)', one(1))

# The alert rules load and evaluate against the real series without errors.
with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=10) as r:
    groups = json.load(r)["data"]["groups"]
deadline = time.time() + 15
while any(rule.get("lastEvaluation", "").startswith("0001") for g in groups for rule in g["rules"]) and time.time() < deadline:
    time.sleep(1)
    with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=10) as r:
        groups = json.load(r)["data"]["groups"]
rules = [(g["name"], rule) for g in groups for rule in g["rules"]]
bad = [f"{rule['name']}: {rule.get('lastError')}" for _, rule in rules if rule["health"] != "ok"]
firing = [rule["name"] for _, rule in rules if rule.get("state") == "firing"]
checks += 2
failed += bool(bad) + bool(firing)
print(f"  {'ok  ' if not bad else 'FAIL'} alert rules evaluate: {len(rules)} rules in "
      f"{sorted({g for g, _ in rules})}, errors: {bad or 'none'}")
print(f"  {'ok  ' if not firing else 'FAIL'} no alert firing on a healthy fleet: {firing or 'none'}")
print(f"test-observability: {checks - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
