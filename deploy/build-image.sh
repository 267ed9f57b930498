#!/usr/bin/env bash
# Builds the container image of a VDB service (shard or router) from deploy/Dockerfile.<service>
# and a release binary, on the Debian base image. The build context is a temporary directory
# holding target/release/vdb-<service>, not the repository (whose target/ is large).
#
# Usage: deploy/build-image.sh SERVICE [--tag TAG] [--binary PATH]
#   SERVICE        shard or router
#   --tag TAG      image name and tag (default vdb-SERVICE:latest); the image is also tagged
#                  with the binary's version (vdb-SERVICE --version) and with
#                  `git describe --always --dirty`
#   --binary PATH  the binary (default target/release/vdb-SERVICE)
#
# Needs the base image (deploy/build-base-image.sh) and `cargo build --release -p vdb-SERVICE`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
    shard | router) service="$1"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-image: first argument must be shard or router (see --help)" >&2; exit 2 ;;
esac
name="vdb-$service"
tag="$name:latest"
binary="$repo/target/release/$name"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ -x "$binary" ]] || {
    echo "build-image: $binary not found: run 'cargo build --release -p $name'" >&2
    exit 1
}
docker image inspect vdb-base:bookworm >/dev/null 2>&1 || {
    echo "build-image: image vdb-base:bookworm missing: run deploy/build-base-image.sh" >&2
    exit 1
}

context="$(mktemp -d "/tmp/$name-image.XXXXXX")"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/target/release"
cp "$binary" "$context/target/release/$name"
cp "$repo/deploy/Dockerfile.$service" "$context/Dockerfile"

tags=(-t "$tag")
version="$("$binary" --version | awk '{print $2}')"
[[ -n "$version" ]] && tags+=(-t "${tag%:*}:$version")
if described="$(git -C "$repo" describe --always --dirty 2>/dev/null)"; then
    tags+=(-t "${tag%:*}:$described")
fi
docker build "${tags[@]}" "$context"
docker image inspect --format '{{.Id}} {{.Size}}' "$tag"
