#!/bin/bash
# The arm64 build end to end, in an arm64 VM (issue #27): Debian 12 arm64 under
# qemu-system-aarch64 -M virt (TCG), booted from the image tests/arm64/make-vm-image.sh caches,
# runs tests/arm64/in-vm.sh (the .deb, orchd under systemd, containers, orch-runc with seccomp)
# while this side plays the x86-64 fleet: a nats-server and two x64 orchd nodes on 127.0.0.1.
# The VM reaches the NATS server through qemu's user network (10.0.2.2 is the host's loopback
# there); nothing here listens anywhere but 127.0.0.1, and the VM's network is qemu's own.
# Usage: vm-e2e.sh ARM64_DEB X64_BIN_DIR VM_CACHE WORKDIR
# Prints "ok: …" per check (from the VM and from the fleet side), the figures measured in the
# VM, and exits non-zero at the first failure.
set -euo pipefail

deb=$1 bin=$2 cache=$3 work=$4
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
node=vm-arm64
timeout_s=${ORCH_ARM64_TIMEOUT:-1500}
for f in vmlinuz initrd.img rootfs.qcow2 .complete; do
    [ -e "$cache/$f" ] || { echo "error: $cache/$f is missing; run tests/arm64/make-vm-image.sh $cache" >&2; exit 1; }
done
rm -rf "$work"
mkdir -p "$work/share/out" "$work/nats"
share=$work/share

pids=()
qemu_pid=""
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill -KILL "$qemu_pid" 2>/dev/null || true; fi
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
elapsed() { echo $(( $(date +%s) - t0 )); }
t0=$(date +%s)

# The fleet side: nats-server with JetStream on loopback, two x64 nodes without bridges.
# Port -1: a free one, which the server's log names.
nats-server -a 127.0.0.1 -p -1 -js -sd "$work/nats/js" -l "$work/nats/nats-server.log" &
pids+=($!)
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*Listening for client connections on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/nats/nats-server.log" 2>/dev/null | head -1 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "nats-server did not start: $(cat "$work/nats/nats-server.log")"
url=nats://127.0.0.1:$port
ctl() { "$bin/orchctl" --server "$url" "$@"; }
for n in x64-1 x64-2; do
    mkdir -p "$work/$n"
    "$bin/orchd" --config /dev/null --node-name "$n" --state-dir "$work/$n/state" --run-dir "$work/$n/run" \
        --nats-url "$url" --manifest-dir none --bridge none --heartbeat 2s 2> "$work/$n/orchd.log" &
    pids+=($!)
done

# The VM: a copy-on-write overlay of the cached image, the share over 9p, qemu's user network.
qemu-img create -q -f qcow2 -F qcow2 -b "$cache/rootfs.qcow2" "$work/disk.qcow2"
cp "$here/in-vm.sh" "$here/rss-report.sh" "$repo/packaging/demo/busybox-layout.sh" "$share/"
cp "$deb" "$share/orchestrator.deb"
# The syscall probes the seccomp check runs: arm64, and 32-bit arm (compat syscalls).
aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -Werror -o "$share/probe-arm64" "$here/syscall-probe.c"
arm-linux-gnueabihf-gcc -static -O2 -Wall -Wextra -Werror -o "$share/probe-arm" "$here/syscall-probe.c"
printf 'NATS_URL=nats://10.0.2.2:%s\nNODE=%s\nKEEP_GOING=%s\nRSS_STUDY=%s\n' "$port" "$node" "${ORCH_ARM64_KEEP_GOING:-0}" "${ORCH_ARM64_RSS_STUDY:-0}" > "$share/env"
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -accel tcg,thread=multi \
    -display none -monitor none -serial "file:$work/console.log" -no-reboot \
    -kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" \
    -append "root=LABEL=orchroot rw console=ttyAMA0 quiet systemd.show_status=0 systemd.run=\"/bin/bash -c 'mountpoint -q /mnt/orchtest || mount /mnt/orchtest; exec /bin/bash /mnt/orchtest/in-vm.sh'\" systemd.run_failure_action=poweroff" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
    -virtfs "local,path=$share,mount_tag=orchtest,security_model=none,id=orchtest" \
    -netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile= &
qemu_pid=$!
echo "VM booting (console: $work/console.log, its log: $share/out/vm.log)"

# Until the VM has joined: its results as they come.
shown=0
show_results() {
    local n
    [ -e "$share/out/results" ] || return 0
    n=$(wc -l < "$share/out/results")
    if [ "$n" -gt "$shown" ]; then sed -n "$((shown + 1)),${n}p" "$share/out/results"; shown=$n; fi
}
vm_failed() { grep -q '^FAIL' "$share/out/results" 2>/dev/null; }
while [ ! -e "$share/out/fleet-ready" ]; do
    show_results
    if vm_failed && [ "${ORCH_ARM64_KEEP_GOING:-0}" != 1 ]; then sleep 2; show_results; fail "in the VM (its log: $share/out/vm.log)"; fi
    kill -0 "$qemu_pid" 2>/dev/null || { show_results; fail "the VM stopped before joining the fleet: $(tail -20 "$work/console.log")"; }
    [ "$(elapsed)" -lt "$timeout_s" ] || fail "the VM did not join the fleet in $timeout_s s: $(tail -20 "$work/console.log")"
    sleep 2
done
show_results
ok "[$(elapsed) s] the VM is up and in the fleet"
# The same idle measure on this side, for the ratio (docs/benchmarks.md, "arm64"): x64-1, idle
# since the VM booted, connected to the same NATS (no containers, no bridge).
bash "$here/rss-report.sh" "${pids[1]}" > "$share/out/rss-x64-1.txt" 2>&1 || true
x64_rss=$(awk '/^VmRSS/ {print $2}' "/proc/${pids[1]}/status")

# The mixed fleet: three nodes, the VM's arm64.
arch_of() { ctl get nodes -o json | jq -r --arg n "$1" '.[] | select(.info.node == $n) | .info.arch'; }
[ "$(arch_of "$node")" = arm64 ] || fail "$node's arch is '$(arch_of "$node")': $(ctl get nodes -o json)"
[ "$(arch_of x64-1)" = x64 ] && [ "$(arch_of x64-2)" = x64 ] || fail "the host nodes are not x64: $(ctl get nodes -o json)"
ctl get nodes -o wide
ok "fleet: $node (arm64) and x64-1, x64-2 (x64) on NATS $url"
cat > "$work/armonly.yaml" <<'EOF'
kind: Deployment
name: armonly
replicas: 2
selector: {arch: arm64}
template:
  image: busybox:latest
  command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
  network: none
  labels: {app: armonly}
  stopGracePeriodSeconds: 2
EOF
ctl apply -f "$work/armonly.yaml"
placed() { [ "$(ctl get containers -l app=armonly -o json 2>/dev/null | jq '[.[] | select(.state == "running")] | length')" = 2 ]; }
for _ in $(seq 150); do placed && break; sleep 2; done
placed || fail "armonly's 2 replicas are not running: $(ctl get containers -l app=armonly -o json 2>&1); $(ctl get deployments -o json 2>&1)"
nodes=$(ctl get containers -l app=armonly -o json | jq -r '[.[].node] | unique | join(",")')
[ "$nodes" = "$node" ] || fail "armonly's replicas run on '$nodes', not only on $node"
ctl get containers -l app=armonly
ok "[$(elapsed) s] a deployment with selector arch: arm64 runs its 2 replicas on $node only"
touch "$share/host-done"

# The rest runs in the VM; it powers itself off.
while kill -0 "$qemu_pid" 2>/dev/null; do
    show_results
    [ "$(elapsed)" -lt "$timeout_s" ] || fail "the VM did not finish in $timeout_s s"
    sleep 2
done
wait "$qemu_pid" || true
qemu_pid=""
show_results
echo "figures (emulated arm64, TCG on this host):"
sed 's/^/  /' "$share/out/figures"
echo "  x64-1_idle_rss_kib=$x64_rss (this host, x64, no containers: $share/out/rss-x64-1.txt)"
grep -q '^done 0' "$share/out/status" 2>/dev/null || fail "in the VM: $(cat "$share/out/status" 2>/dev/null || echo 'no status'); its log: $share/out/vm.log"
ok "[$(elapsed) s] all checks in the arm64 VM passed"
