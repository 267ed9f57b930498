#!/usr/bin/env bash
# Installs what building and testing VDB need on a fresh Debian machine. Idempotent.
set -euo pipefail

need_apt=()
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
# etcd-client (vdb-meta) compiles etcd's .proto files at build time.
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
# A real etcd for the vdb-meta tests and the local fleet's `etcd://` metastore.
command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
# A real Prometheus for scripts/test-observability.sh, and promtool for dashboards/check.sh.
command -v prometheus >/dev/null || need_apt+=(prometheus)
# nft for the partition tests between shard nodes (tests/src/netfault.rs).
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
echo "setup: ok ($(cargo --version))"
