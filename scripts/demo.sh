#!/usr/bin/env bash
# Starts a local VDB fleet on loopback: three shard nodes and a router (cluster state in a
# local metastore file, or in a real etcd with VDB_DEMO_ETCD=1), creates the collection
# `debian` (4 shards), loads debian-minilm through the router, answers the first query of the
# query set (its precomputed vector), then keeps serving until Ctrl-C, which stops every
# process cleanly.
# With --exit it stops right after the query (the test suite runs it so, on free ports).
# Settings: VDB_DEMO_PORT (router port, default 6333; 0 picks free ports for everything),
# VDB_DEMO_STATE (default .fleet), VDB_DEMO_LIMIT (load only the first N documents),
# VDB_DEMO_ETCD=1 (use etcd), VDB_DATA_DIR (the dataset).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${VDB_DEMO_PORT:-6333}
state=${VDB_DEMO_STATE:-.fleet}
mkdir -p "$state"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # url, name
  for _ in $(seq 1 600); do curl -fs "$1/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "$2 did not become ready; see $state/$2.log" >&2; exit 1
}

nodes=()
for i in 0 1 2; do
  mkdir -p "$state/shard$i"
  shard_port=0; [ "$port" != 0 ] && shard_port=$((6334 + i))
  # A second `start` inside $(...) would lose the pid: record it through a file instead.
  target/release/vdb-shard --listen 127.0.0.1:$shard_port --data-dir "$state/shard$i" \
    --node-id "n$i" --fsync 10ms > "$state/shard$i.out" 2> "$state/shard$i.log" &
  pids+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 1 200); do [ -s "$state/shard$i.out" ] && break; sleep 0.05; done
  url=http://$(sed -n '1s/.*"listening":"\([^"]*\)".*/\1/p' "$state/shard$i.out")
  wait_ready "$url" "shard$i"
  nodes+=(--node "n$i=$url")
done

meta="local://$(cd "$state" && pwd)/meta.json"
if [ "${VDB_DEMO_ETCD:-0}" = 1 ]; then
  command -v etcd >/dev/null || { echo "etcd is missing: run make setup" >&2; exit 1; }
  client=$(free_port); peer=$(free_port)
  etcd --name vdb-demo --data-dir "$state/etcd" --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "vdb-demo=http://127.0.0.1:$peer" > "$state/etcd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$client/health" >/dev/null && break; sleep 0.1; done
  meta="etcd://127.0.0.1:$client"
fi
target/release/vdb-router --listen 127.0.0.1:$port --metastore "$meta" --router-id r1 "${nodes[@]}" \
  > "$state/router.out" 2> "$state/router.log" &
pids+=($!)
for _ in $(seq 1 200); do [ -s "$state/router.out" ] && break; sleep 0.05; done
url=http://$(sed -n '1s/.*"listening":"\([^"]*\)".*/\1/p' "$state/router.out")
wait_ready "$url" router

if ! curl -fs "$url/v1/collections/debian" >/dev/null; then
  curl -fsS -X PUT "$url/v1/collections/debian" -H 'content-type: application/json' \
    -d '{"dimension":384,"metric":"cosine","shard_count":4}' >/dev/null
  curl -fsS -X PUT "$url/v1/collections/debian/index" -H 'content-type: application/json' \
    -d '{"field":"section","kind":"keyword"}' >/dev/null
  python3 scripts/load_dataset.py "$url" debian ${VDB_DEMO_LIMIT:+--limit $VDB_DEMO_LIMIT}
fi
python3 - "$url" <<'PY'
import json, os, struct, sys, urllib.request
url = sys.argv[1]
root = os.environ.get("VDB_DATA_DIR") or "../shared/data"
with open(os.path.join(root, "debian-minilm", "queries.jsonl")) as f:
    query = json.loads(f.readline())
with open(os.path.join(root, "debian-minilm", "queries.fvecs"), "rb") as f:
    (dim,) = struct.unpack("<i", f.read(4)); vec = list(struct.unpack(f"<{dim}f", f.read(4 * dim)))
body = json.dumps({"vector": vec, "k": 5, "with_payload": True}).encode()
req = urllib.request.Request(f"{url}/v1/collections/debian/search", data=body, method="POST",
                             headers={"content-type": "application/json"})
hits = json.load(urllib.request.urlopen(req))
print("query:", {k: v for k, v in query.items() if k != "id"})
for h in hits["points"]:
    print(f"  {h['score']:.3f}  {h['payload']['package']:<30} {h['payload']['section']}")
PY
if [ "${1:-}" = "--exit" ]; then exit 0; fi
echo "router on $url, shard nodes ${nodes[*]} (Ctrl-C stops)"
wait "${pids[@]}"
