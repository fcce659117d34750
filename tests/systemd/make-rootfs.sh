#!/bin/bash
# Builds the Debian 12 rootfs that tests/systemd/nspawn-e2e.sh boots with systemd-nspawn, once
# per machine: debootstrap (about 3.5 minutes, from Debian's mirror, like apt-get), into a
# temporary directory renamed into place when complete. make test starts it in the background
# before the build; SystemdNspawnTests waits for ROOTFS/.complete.
# Usage: make-rootfs.sh ROOTFS
set -euo pipefail
rootfs=$1
mkdir -p "$(dirname "$rootfs")"
exec 9> "$rootfs.lock"
flock 9
if [ -e "$rootfs/.complete" ]; then
    exit 0
fi
rm -rf "$rootfs.tmp" "$rootfs"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,libssl3,iproute2,nftables,ca-certificates \
    bookworm "$rootfs.tmp" http://deb.debian.org/debian
touch "$rootfs.tmp/.complete"
mv "$rootfs.tmp" "$rootfs"
echo "built $rootfs"
