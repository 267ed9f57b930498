#!/usr/bin/env bash
# Starts a shard node on 127.0.0.1:6334, loads debian-minilm into local shard `debian`,
# answers the first query of the query set (its vector, precomputed), then keeps serving
# until Ctrl-C (SIGINT stops it cleanly).
# With --exit it stops right after the query (the test suite runs it so, on port 0).
# Settings: VDB_DEMO_PORT (0 picks a free port), VDB_DEMO_STATE (default .fleet),
# VDB_DEMO_LIMIT (load only the first N documents), VDB_DATA_DIR (the dataset).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${VDB_DEMO_PORT:-6334}
state=${VDB_DEMO_STATE:-.fleet}
mkdir -p "$state/shard"
target/release/vdb-shard --listen 127.0.0.1:$port --data-dir "$state/shard" --fsync 10ms \
  > "$state/shard.out" 2> "$state/shard.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
# The node prints {"listening": "127.0.0.1:PORT"} first; read the real port from it.
for _ in $(seq 1 100); do [ -s "$state/shard.out" ] && break; sleep 0.05; done
url=http://$(sed -n '1s/.*"listening":"\([^"]*\)".*/\1/p' "$state/shard.out")
for _ in $(seq 1 600); do curl -fs $url/readyz >/dev/null && break; sleep 0.1; done
curl -fs $url/readyz >/dev/null || { echo "shard did not become ready; see $state/shard.log"; exit 1; }
if ! curl -fs $url/v1/shards/debian >/dev/null; then
  curl -fs -X PUT $url/v1/shards/debian -H 'content-type: application/json' \
    -d '{"collection":"debian","dimension":384,"metric":"cosine"}' >/dev/null
  curl -fs -X PUT $url/v1/shards/debian/index -H 'content-type: application/json' \
    -d '{"field":"section","kind":"keyword"}' >/dev/null
  python3 scripts/load_dataset.py $url debian ${VDB_DEMO_LIMIT:+--limit $VDB_DEMO_LIMIT}
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
req = urllib.request.Request(f"{url}/v1/shards/debian/search", data=body, method="POST",
                             headers={"content-type": "application/json"})
hits = json.load(urllib.request.urlopen(req))
print("query:", {k: v for k, v in query.items() if k != "id"})
for h in hits["points"]:
    print(f"  {h['score']:.3f}  {h['payload']['package']:<30} {h['payload']['section']}")
PY
if [ "${1:-}" = "--exit" ]; then exit 0; fi
echo "serving on $url (Ctrl-C stops)"; wait $pid
