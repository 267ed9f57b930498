#!/usr/bin/env bash
# Builds the vdb-router container image from deploy/Dockerfile.router and a release binary
# built on the host. Only the binary is sent to Docker: the build context is a temporary
# directory holding target/release/vdb-router, not the repository (whose target/ is large).
#
# Usage: deploy/build-router-image.sh [--tag TAG] [--binary PATH]
#   --tag TAG      image name and tag (default vdb-router:latest); the image is also tagged
#                  with the binary's version (vdb-router --version) and with
#                  `git describe` when the repository has commits
#   --binary PATH  the vdb-router binary (default target/release/vdb-router)
#
# Needs the base image (deploy/build-base-image.sh) and `cargo build --release -p vdb-router`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="vdb-router:latest"
binary="$repo/target/release/vdb-router"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-router-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ -x "$binary" ]] || {
    echo "build-router-image: $binary not found: run 'cargo build --release -p vdb-router'" >&2
    exit 1
}
docker image inspect vdb-base:bookworm >/dev/null 2>&1 || {
    echo "build-router-image: image vdb-base:bookworm missing: run deploy/build-base-image.sh" >&2
    exit 1
}

context="$(mktemp -d /tmp/vdb-router-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/target/release"
cp "$binary" "$context/target/release/vdb-router"
cp "$repo/deploy/Dockerfile.router" "$context/Dockerfile"

tags=(-t "$tag")
version="$("$binary" --version | awk '{print $2}')"
[[ -n "$version" ]] && tags+=(-t "${tag%:*}:$version")
if described="$(git -C "$repo" describe --always --dirty 2>/dev/null)"; then
    tags+=(-t "${tag%:*}:$described")
fi
docker build "${tags[@]}" "$context"
docker image inspect --format '{{.Id}} {{.Size}}' "$tag"
