#!/bin/sh
# pid 1 of the arm64 VM's first boot (tests/arm64/make-vm-image.sh): debootstrap's second stage,
# then what every test boot needs, then power off. Prints ORCH-STAGE2-OK on the console when done.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
finish() {
    sync
    mount -o remount,ro / 2>/dev/null
    echo o > /proc/sysrq-trigger
    sleep 60
}
if ! /debootstrap/debootstrap --second-stage; then
    echo "stage 2: debootstrap --second-stage failed"
    tail -50 /debootstrap/debootstrap.log 2>/dev/null || tail -50 /var/log/bootstrap.log
    finish
fi

echo orch-arm64 > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 orch-arm64\n' > /etc/hosts
cat > /etc/fstab <<'EOF'
LABEL=orchroot / ext4 defaults,errors=remount-ro 0 1
# The test's share (qemu -virtfs mount_tag=orchtest): the script to run and where results go.
orchtest /mnt/orchtest 9p trans=virtio,version=9p2000.L,msize=262144,nofail,x-systemd.device-timeout=20s 0 0
EOF
mkdir -p /mnt/orchtest
passwd -d root
# qemu's user network (10.0.2.0/24, DHCP; 10.0.2.2 is the host's loopback).
mkdir -p /etc/systemd/network
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' > /etc/systemd/network/10-qemu.network
systemctl enable systemd-networkd.service
# Nothing that wakes up by itself during a test on an emulated CPU.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
    systemctl mask "$u" 2>/dev/null
done
kver=$(ls /lib/modules | head -1)
[ -e "/boot/initrd.img-$kver" ] || update-initramfs -c -k "$kver"
apt-get clean
rm -f /stage2.sh
ls -l /boot
echo ORCH-STAGE2-OK
finish
