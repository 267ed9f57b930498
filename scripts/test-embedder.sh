#!/usr/bin/env bash
# The embedder tier: the vdb-embedder binary with both backends (features torch,tensorflow),
# on the real libraries and the real model. Called by scripts/test.sh (tier `embedder`).
#
#   1. scripts/setup-embedder.sh: venv (torch 2.11.0, tensorflow-cpu 2.21.0), model export
#   2. the feature build, in its own target dir ($VDB_EMBEDDER_TARGET, by default under
#      ~/.cache/vdb so a later run on the same machine reuses libtorch's C++ glue and the deps;
#      it never touches target/release, where the default build keeps its backend-less binary)
#   3. every vdb-embedder test with both features: unit, API (fake model), golden (1,000 docs
#      per backend vs base.fvecs), black-box (the binary, SIGTERM, device errors)
#   4. export of 1,000 documents to a .pt + .labels and a TFRecord, read back by torch.load and
#      tf.data.TFRecordDataset (scripts/check_export.py)
#   5. text through the router (tests/tests/router_text.rs): the feature-built embedder, real
#      shard nodes and a router; 1,000 documents upserted as text vs base.fvecs, text searches,
#      422 for over-long text, 503 once the embedder is killed
#   6. vdb-bench embed --quick (both backends next to sentence-transformers)
# Under CI=true nothing here skips: a missing library, model or dataset fails.
set -euo pipefail
cd "$(dirname "$0")/.."

run() { # budget_seconds, command...
  local budget=$1; shift
  echo "==> $* (budget ${budget}s)"
  local start=$SECONDS
  timeout --foreground "$budget" "$@"
  echo "==> done in $((SECONDS - start))s"
}

tier_start=$SECONDS
run 900 scripts/setup-embedder.sh
# shellcheck source=/dev/null
source "${VDB_CACHE:-$HOME/.cache/vdb}/embedder.env"
features=(-p vdb-embedder --features torch,tensorflow --target-dir "$VDB_EMBEDDER_TARGET")
run 1200 cargo build --release "${features[@]}" --bins --tests
run 600 cargo test --release "${features[@]}" -- --test-threads 1 --nocapture

data=${VDB_DATA_DIR:-$(cd .. && pwd)/shared/data}/debian-minilm
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run 300 "$VDB_EMBEDDER_BIN" export --backend torch --device cpu --input "$data/docs.jsonl" \
  --label-field section --limit 1000 --torch "$out/train.pt" --tfrecord "$out/train.tfrecord"
run 300 "$VDB_EMBEDDER_PYTHON" scripts/check_export.py --torch "$out/train.pt" \
  --tfrecord "$out/train.tfrecord" --dataset "$data" --label-field section

# The router and shard binaries of the default build: the same command as scripts/test.sh, so
# it finds everything built (a narrower -p build would resolve other features and rebuild).
run 1200 cargo build --release --workspace --bins --tests
run 600 cargo test --release -p vdb-tests --test router_text -- --nocapture

run 600 cargo run --release -q -p vdb-bench -- embed --quick --embedder-bin "$VDB_EMBEDDER_BIN" \
  --out target/bench-embed-quick.json
echo "==> embedder tier done in $((SECONDS - tier_start))s"
