#!/usr/bin/env bash
# Runs the test tiers, each inside its time budget:
#   unit      unit and property tests of every crate, alert rules and dashboards (promtool),
#             the Helm chart (lint + rendered objects)          (budget 15 min incl. build)
#   blackbox  the shard and router APIs against the release binaries; resharding under load,
#             controller failover on etcd, replication between shard nodes, primary
#             failover under sync writes (VDB_FAILOVERS, default 5), moves of replicated
#             shards                                           (budget 10 min)
#   slow      recall on debian-minilm (one node, and 4 shards behind the router), kill -9 loop,
#             bench and fleet demo smoke, metrics through a real Prometheus
#             (scripts/test-observability.sh)                  (budget 25 min)
#   embedder  vdb-embedder with both backends on the real model: golden, black-box, export,
#             text through the router, bench smoke (scripts/test-embedder.sh; budget 25 min
#             cold, ~5 min warm)
# Usage: scripts/test.sh [unit|blackbox|slow|embedder|all]
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:-all}

run() { # budget_seconds, command...
  local budget=$1; shift
  echo "==> $* (budget ${budget}s)"
  local start=$SECONDS
  timeout --foreground "$budget" "$@"
  echo "==> done in $((SECONDS - start))s"
}

scripts/setup.sh
run 1200 cargo build --release --workspace --bins --tests

case $tier in
  unit|all)
    run 900 cargo test --release --workspace --exclude vdb-tests
    run 120 dashboards/check.sh
    run 300 helm/check.sh
    ;;&
  blackbox|all) run 600 cargo test --release -p vdb-tests --test blackbox --test router \
    --test resharding_support --test resharding --test controller --test shard_replication \
    --test replication --test replicated_moves \
    -- --test-threads 2 ;;&
  slow|all)
    run 1500 cargo test --release -p vdb-tests --test recall --test router_recall --test crash \
      -- --nocapture --test-threads 1
    run 300 cargo run --release -q -p vdb-bench -- shard --quick --out target/bench-quick.json
    run 300 cargo run --release -q -p vdb-bench -- router --quick --out target/bench-router-quick.json
    run 300 cargo run --release -q -p vdb-bench -- replication --quick \
      --out target/bench-replication-quick.json
    demo_state=$(mktemp -d)
    run 300 env VDB_DEMO_PORT=0 VDB_DEMO_LIMIT=2000 VDB_DEMO_STATE="$demo_state" scripts/demo.sh --exit
    rm -rf "$demo_state"
    run 120 scripts/test-observability.sh
    ;;&
  embedder|all) run 1500 scripts/test-embedder.sh ;;
  unit|blackbox|slow) ;;
  *) echo "unknown tier $tier (unit|blackbox|slow|embedder|all)" >&2; exit 2 ;;
esac
