#!/usr/bin/env bash
# Builds the Debian 12 (bookworm) base image `vdb-base:bookworm` that VDB's images start
# from, without any container registry: debootstrap writes a minimal root filesystem from
# Debian's mirror, apt brings in the current security updates plus curl (for health
# checks) and ca-certificates, and `docker import` turns the tree into an image.
#
# Usage: deploy/build-base-image.sh [--mirror URL] [--security-mirror URL] [--tag TAG]
#   --mirror URL           Debian mirror (default http://deb.debian.org/debian)
#   --security-mirror URL  security mirror (default http://deb.debian.org/debian-security)
#   --tag TAG              image tag (default vdb-base:bookworm)
#
# Needs root (debootstrap and chroot), the debootstrap package, and a running Docker daemon.
set -euo pipefail

mirror="http://deb.debian.org/debian"
security="http://deb.debian.org/debian-security"
tag="vdb-base:bookworm"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --mirror) mirror="$2"; shift 2 ;;
        --security-mirror) security="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-base-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ "$(id -u)" == 0 ]] || { echo "build-base-image: run as root (debootstrap needs it)" >&2; exit 1; }
command -v debootstrap >/dev/null || {
    echo "build-base-image: debootstrap missing: apt-get install debootstrap" >&2
    exit 1
}
command -v docker >/dev/null || { echo "build-base-image: docker missing" >&2; exit 1; }

work="$(mktemp -d /tmp/vdb-base.XXXXXX)"
rootfs="$work/rootfs"
cleanup() {
    for m in proc sys dev/pts dev; do
        mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

echo "build-base-image: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include=ca-certificates,curl \
    bookworm "$rootfs" "$mirror"

# The same three suites a Debian container image carries.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# Containers have no init system: keep package scripts from starting services, and keep
# images small (no recommends, no docs, no translations).
cat >"$rootfs/usr/sbin/policy-rc.d" <<'POLICY'
#!/bin/sh
exit 101
POLICY
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
cat >"$rootfs/etc/apt/apt.conf.d/90vdb-container" <<'APTCONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APTCONF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90vdb-nodoc" <<'DPKGCFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKGCFG

cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
echo "build-base-image: applying bookworm-updates and bookworm-security" >&2
chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -euc '
    apt-get update -qq
    apt-get -y -qq upgrade
    apt-get clean
'
umount "$rootfs/proc"

rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/* \
    "$rootfs"/var/log/*.log "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

echo "build-base-image: importing as $tag" >&2
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "Debian bookworm minbase + curl, ca-certificates (debootstrap from $mirror)" \
    - "$tag"
docker image inspect --format '{{.Id}} {{.Size}}' "$tag"
