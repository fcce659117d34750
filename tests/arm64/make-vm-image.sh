#!/bin/bash
# Builds the Debian 12 arm64 VM that tests/arm64/vm-e2e.sh boots under qemu-system-aarch64, once
# per machine, into CACHE (default /var/cache/orchestrator-tests/arm64):
#   vmlinuz, initrd.img  Debian's arm64 kernel (linux-image-arm64) and the initramfs Debian's
#                        initramfs-tools made for it inside the VM
#   rootfs.qcow2         the root filesystem (ext4), used read-only as the backing file of
#                        each run's overlay
#   .complete            written last
# How: `debootstrap --arch=arm64 --foreign` on the host (downloads and unpacks, runs nothing),
# then the second stage inside the VM itself (no binfmt_misc registration on the host): the
# first boot uses a throwaway initramfs (the arm64 busybox-static and the five modules that
# mount a virtio disk), runs `debootstrap --second-stage`, configures the image and powers off.
# Under TCG on 2 cores the first boot takes about 20 minutes; later runs reuse the cache.
# Usage: make-vm-image.sh [CACHE]
set -euo pipefail

cache=${1:-/var/cache/orchestrator-tests/arm64}
mirror=${ORCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$(dirname "$cache")"
exec 9> "$cache.lock"
flock 9
if [ -e "$cache/.complete" ]; then
    exit 0
fi
tmp="$cache.tmp"
rm -rf "$tmp" "$cache"
mkdir -p "$tmp"
root="$tmp/root"

# What the VM runs besides the .deb's own dependencies: systemd with udev (module autoload for
# virtio net and 9p), the kernel, busybox-static (the containers' image and the initramfs of the
# first boot), runc and crun (the benchmarks' comparison in the same VM), jq (the
# orch-runc bundle is orchd's own config.json with another root).
echo "debootstrap --foreign (arm64)"
debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=systemd,systemd-sysv,udev,dbus,libssl3,iproute2,nftables,ca-certificates,linux-image-arm64,initramfs-tools,kmod,busybox-static,runc,crun,procps,e2fsprogs,jq \
    bookworm "$root" "$mirror"

# The kernel and the first boot's initramfs, from the downloaded .debs.
x="$tmp/extract"
mkdir -p "$x/kernel" "$x/busybox"
dpkg-deb -x "$(ls "$root"/var/cache/apt/archives/linux-image-[0-9]*-arm64_*_arm64.deb | head -1)" "$x/kernel"
dpkg-deb -x "$(ls "$root"/var/cache/apt/archives/busybox-static_*_arm64.deb | head -1)" "$x/busybox"
kver=$(ls "$x/kernel/lib/modules")
cp "$x/kernel/boot/vmlinuz-$kver" "$tmp/vmlinuz"

ird="$x/initrd"
mkdir -p "$ird/bin" "$ird/modules" "$ird/newroot" "$ird/proc" "$ird/sys" "$ird/dev"
cp "$x/busybox/bin/busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
# In load order (each after what its `depends=` names).
mods="lib/crc16 crypto/crc32c_generic fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4 drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci drivers/block/virtio_blk"
for m in $mods; do cp "$x/kernel/lib/modules/$kver/kernel/$m.ko" "$ird/modules/"; done
cat > "$ird/init" <<EOF
#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in $mods; do /bin/busybox insmod /modules/\${m##*/}.ko; done
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; /bin/busybox sleep 1; done
/bin/busybox mount -t ext4 /dev/vda /newroot || { echo "stage 1: cannot mount /dev/vda"; /bin/busybox sh; }
/bin/busybox umount /proc
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /bin/sh /stage2.sh
EOF
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp/initrd-stage1.img"

# The second stage, as pid 1 of the first boot.
cp "$here/vm-stage2.sh" "$root/stage2.sh"
# Debian's initramfs with the modules this VM boots with, not MODULES=most: under emulation
# mkinitramfs takes minutes per hundred modules (over half an hour for `most` on arm64).
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$root/etc/initramfs-tools/conf.d/orchtest-vm.conf"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic > "$root/etc/initramfs-tools/modules"

echo "ext4 image from the foreign rootfs"
truncate -s 4G "$tmp/rootfs.raw"
mkfs.ext4 -q -L orchroot -O ^metadata_csum -d "$root" "$tmp/rootfs.raw"
rm -rf "$root"

echo "first boot: debootstrap --second-stage inside the VM (log: $tmp/stage2.log)"
start=$(date +%s)
timeout 3600 qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -accel tcg,thread=multi \
    -display none -monitor none -serial "file:$tmp/stage2.log" -no-reboot \
    -kernel "$tmp/vmlinuz" -initrd "$tmp/initrd-stage1.img" \
    -append "console=ttyAMA0 panic=-1" \
    -drive "file=$tmp/rootfs.raw,if=virtio,format=raw,cache=unsafe" \
    -nic none
echo "first boot took $(( $(date +%s) - start )) s"
grep -q ORCH-STAGE2-OK "$tmp/stage2.log" || { tail -40 "$tmp/stage2.log" >&2; echo "error: the second stage did not finish (see $tmp/stage2.log)" >&2; exit 1; }

# Debian's initramfs (initramfs-tools, built in the VM by the kernel's postinst) for every later boot.
debugfs -R "dump /boot/initrd.img-$kver $tmp/initrd.img" "$tmp/rootfs.raw" 2>/dev/null
test -s "$tmp/initrd.img" || { echo "error: no /boot/initrd.img-$kver in the image" >&2; exit 1; }
qemu-img convert -O qcow2 "$tmp/rootfs.raw" "$tmp/rootfs.qcow2"
rm -f "$tmp/rootfs.raw" "$tmp/initrd-stage1.img"
rm -rf "$x"
touch "$tmp/.complete"
mv "$tmp" "$cache"
echo "built $cache"
