#!/bin/bash
# The package under a real systemd: a Debian 12 rootfs booted with systemd-nspawn (its own
# network namespace, nothing on the host's network), the .deb installed with dpkg, orchd
# enabled as a service, a container started from the manifest dir. Then what issue #17 found:
#   1. `systemctl restart orchd` leaves the container running and systemd reports no
#      "left-over process" (the container is not in orchd.service's cgroup, name=systemd included);
#   2. `dpkg -r` stops the container and leaves no bridge, nft table, cgroup, mount or dangling
#      multi-user.target.wants link, and keeps the state;
#   3. reinstalling enables and starts orchd again, which restarts the container;
#   4. `dpkg -P` deletes the state.
# Usage: nspawn-e2e.sh DEB IMAGE_TAR ROOTFS WORKDIR [hybrid|unified]
#   hybrid (the default): the machine gets this host's cgroup layout (v1 controllers, systemd's
#   name=systemd hierarchy, and cgroup2 for tracking where the host has it).
#   unified: the machine boots with cgroup v2 alone (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1), as
#   Debian 12 and most edge distributions do; orchd then asks systemd for a delegated scope.
#   On a hybrid host the v2 hierarchy has no controllers (they are bound to v1): the workloads
#   here set no limits, so what is tested is where processes live, which is what systemd sees.
#   ROOTFS: a debootstrapped Debian 12 (systemd, dbus, libssl3, iproute2, nftables); used
#   read-only, as the lower layer of an overlay in WORKDIR.
# Prints "ok: …" per check and exits non-zero at the first failure.
set -euo pipefail

deb=$1 image=$2 rootfs=$3 work=$4 mode=${5:-hybrid}
case "$mode" in hybrid|unified) ;; *) echo "mode must be hybrid or unified, not '$mode'" >&2; exit 2 ;; esac
machine="orchtest-$$"
mkdir -p "$work/upper" "$work/overlay-work" "$work/root"
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$work/upper,workdir=$work/overlay-work" "$work/root"
root="$work/root"
nspawn_pid=""

# The machine's cgroups: nspawn --keep-unit makes them below its caller's (payload/, supervisor/)
# in the tracking hierarchies, and a killed machine leaves them there for the next run to see.
# Each run gets cgroups of its own, removed at the end.
tracking_cgroups=""
for hierarchy in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
    if [ -f "$hierarchy/cgroup.procs" ]; then
        mkdir -p "$hierarchy/$machine"
        tracking_cgroups="$tracking_cgroups $hierarchy/$machine"
    fi
done

init=""
cleanup() {
    # The machine's pid 1 first: killing it ends its whole pid namespace. Killing only nspawn
    # would leave a booted systemd (and its inotify instances, 128 per user) running for good.
    if [ -n "$init" ] && kill -0 "$init" 2>/dev/null; then
        kill -KILL "$init" 2>/dev/null || true
    fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -KILL "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    umount -R -l "$root" 2>/dev/null || true
    # The killed machine's processes leave their cgroups a moment later: retry for up to 5 s.
    for dir in $tracking_cgroups; do
        for _ in $(seq 1 50); do
            find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
            [ -d "$dir" ] || break
            sleep 0.1
        done
    done
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

mkdir -p "$root/opt/orchtest"
cp "$deb" "$root/opt/orchtest/orchestrator.deb"
cp "$image" "$root/opt/orchtest/busybox.tar"
echo "$machine" > "$root/etc/hostname"

[ "$mode" = unified ] && export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
(
    for dir in $tracking_cgroups; do echo "$BASHPID" > "$dir/cgroup.procs"; done
    exec systemd-nspawn -q -b -D "$root" -M "$machine" --register=no --keep-unit --private-network \
        --console=passive
) > "$work/console.log" 2>&1 &
nspawn_pid=$!

# The container's pid 1 (systemd) is nspawn's child.
init=""
# nspawn's first child only sets up namespaces and goes; pid 1 is the child running systemd.
for _ in $(seq 1 300); do
    for p in $(pgrep -P "$nspawn_pid" || true); do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ]; then
            init=$p
        fi
    done
    [ -n "$init" ] && break
    sleep 0.1
done
[ -n "$init" ] || fail "systemd-nspawn did not start a container: $(cat "$work/console.log")"
inside() { nsenter -t "$init" -m -u -i -n -p -C -- "$@"; }
# nsenter -C needs a cgroup namespace; older nspawn on v1 has none: fall back without it.
if ! nsenter -t "$init" -m -u -i -n -p -C -- true 2>/dev/null; then
    inside() { nsenter -t "$init" -m -u -i -n -p -- "$@"; }
fi

state=""
for _ in $(seq 1 600); do
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.2
done
case "$state" in running|degraded) ok "systemd booted ($state)" ;; *) fail "systemd did not boot: '$state'; $(tail -20 "$work/console.log")" ;; esac

# The control: this systemd does report left-over processes of a KillMode=process service (a
# child of the service that outlives its restart), so the check below can fail.
cat > "$root/etc/systemd/system/leftover-control.service" <<'UNIT'
[Service]
ExecStart=/bin/sh -c 'sleep 1000 & exec sleep 1000'
KillMode=process
UNIT
inside systemctl daemon-reload
inside systemctl start leftover-control.service
sleep 0.5
inside systemctl restart leftover-control.service
sleep 0.5
# journalctl --sync: everything journald received so far is in the files a reader sees.
reported() { inside journalctl --sync; inside journalctl -u "$1" --no-pager -o cat | grep "left-over process" || true; }
control=""
for _ in $(seq 1 50); do
    control=$(reported leftover-control.service)
    [ -n "$control" ] && break
    sleep 0.1
done
inside systemctl stop leftover-control.service
# systemd 252 reads the unit's cgroup for this in the tracking hierarchy, and under nspawn on a
# hybrid host it does not always manage to (it then says nothing): the cgroup check after the
# restart below is what does not depend on it.
if [ -n "$control" ]; then
    ok "control: systemd reports a left-over process of a KillMode=process service"
else
    echo "note: this systemd did not report the control's left-over process; the cgroup check below still holds"
fi

if [ "$mode" = unified ]; then
    [ "$(inside stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || fail "the machine did not boot with cgroup v2 alone: $(inside stat -fc %T /sys/fs/cgroup)"
    ok "the machine runs cgroup v2 alone"
else
    # nspawn mounts the v1 controllers read-only inside: a container runtime needs them writable.
    for dir in $(inside sh -c 'ls -d /sys/fs/cgroup/*/'); do
        inside mount -o remount,bind,rw "$dir" 2>/dev/null || true
    done
fi

inside dpkg -i /opt/orchtest/orchestrator.deb > "$work/dpkg-i.log" 2>&1 || fail "dpkg -i: $(cat "$work/dpkg-i.log")"
ok "dpkg -i"
inside orchd image import /opt/orchtest/busybox.tar --name busybox:latest > /dev/null
cat > "$root/etc/orchestrator/manifests/sleeper.yaml" <<'YAML'
name: sleeper
image: busybox:latest
command: [sh, -c, 'trap "exit 0" TERM; echo started; while true; do sleep 1; done']
network: bridge
restart: {policy: always}
stopGracePeriodSeconds: 5
---
name: stubborn
image: busybox:latest
command: [sh, -c, 'trap "" TERM; while true; do sleep 1; done']
network: none
restart: {policy: always}
YAML
inside systemctl enable --now orchd.service > /dev/null 2>&1 || fail "orchd did not start: $(inside journalctl -u orchd --no-pager | tail -20)"
ok "orchd enabled and started"

container_pid() {
    # The container's first process: the lowest pid in its cgroup (v1 pids hierarchy, or v2).
    inside sh -c 'cat /sys/fs/cgroup/pids/orchestrator/*/sleeper/cgroup.procs /sys/fs/cgroup/orchestrator/*/sleeper/cgroup.procs /sys/fs/cgroup/system.slice/orchestrator-*.scope/sleeper/cgroup.procs 2>/dev/null; true' | sort -n | head -1
}
# Its pid once it runs (up to 60 s), or nothing.
wait_for_container() {
    for _ in $(seq 1 300); do
        p=$(container_pid)
        if [ -n "$p" ]; then echo "$p"; return; fi
        sleep 0.2
    done
}
pid=$(wait_for_container)
[ -n "$pid" ] || fail "the container did not start: $(inside journalctl -u orchd --no-pager | tail -30)"
ok "container running (pid $pid in the machine)"

# systemd tracks a unit's processes in name=systemd (v1) and, on a hybrid system, in the
# cgroup2 hierarchy ("0::"): the container must be in neither of orchd.service's.
systemd_cgroups=$(inside awk -F: '$2 == "name=systemd" || ($1 == "0" && $2 == "") { print $3 }' "/proc/$pid/cgroup" | tr '\n' ' ')
case "$systemd_cgroups" in
*orchd.service*) fail "the container is in orchd.service's cgroup: $(inside cat "/proc/$pid/cgroup")" ;;
esac
ok "container's systemd cgroups are $systemd_cgroups- not orchd.service's"
node12=$(inside cut -c1-12 /var/lib/orchestrator/node-id)
if [ "$mode" = unified ]; then
    # cgroup v2 under systemd: the node's delegated scope, the container in a leaf of it, and
    # the keeper that holds the scope in another.
    scope="orchestrator-$node12.scope"
    expected="/system.slice/$scope/sleeper"
    # (The host's v1 hierarchies still show in /proc/PID/cgroup, at "/": v2's line is the one.)
    unified=$(inside awk -F: '$1 == "0" && $2 == "" { print $3 }' "/proc/$pid/cgroup")
    [ "$unified" = "$expected" ] || fail "the container's cgroup is '$unified', not $expected"
    [ "$(inside systemctl show -p ActiveState --value "$scope")" = active ] || fail "scope $scope is not active: $(inside systemctl status "$scope" 2>&1 | head -5)"
    [ "$(inside systemctl show -p Delegate --value "$scope")" = yes ] || fail "scope $scope is not delegated"
    stop_timeout=$(inside systemctl show -p TimeoutStopUSec --value "$scope")
    [ "$stop_timeout" = 30s ] || fail "scope $scope waits '$stop_timeout' after SIGTERM when stopped (want 30s, not systemd's 90 s)"
    keeper=$(inside sh -c "cat /sys/fs/cgroup/system.slice/$scope/.keeper/cgroup.procs")
    [ -n "$keeper" ] && inside grep -q scope-holder "/proc/$keeper/cmdline" || fail "no scope holder in $scope/.keeper: '$keeper'"
    # The holder is orchd's binary stopped before the .NET runtime starts: a few pages, not the
    # runtime's 15-20 MB.
    holder_kb=$(inside awk '/^VmRSS:/ { print $2 }' "/proc/$keeper/status")
    [ "$holder_kb" -lt 4096 ] || fail "the scope holder uses $holder_kb kB of memory"
    direct=$(inside sh -c "cat /sys/fs/cgroup/system.slice/$scope/cgroup.procs")
    [ -z "$direct" ] || fail "processes '$direct' sit in $scope itself, not in a leaf (v2 forbids that once controllers are enabled)"
    ok "cgroup v2: container in $expected, scope active and delegated, holder $keeper ($holder_kb kB) in $scope/.keeper"
else
    case "$systemd_cgroups" in
    "/orchestrator/$node12/sleeper "*) ;;
    *) fail "the container's tracking cgroups are '$systemd_cgroups', not /orchestrator/$node12/sleeper" ;;
    esac
fi
inside systemctl restart orchd.service
sleep 2
inside systemctl is-active --quiet orchd.service || fail "orchd is not active after restart"
leftover=$(reported orchd.service)
[ -z "$leftover" ] || fail "systemd reported left-over processes of orchd.service: $leftover"
# What systemd counts as orchd.service: only orchd itself, in every tracking hierarchy.
main=$(inside systemctl show -p MainPID --value orchd.service)
for procs in /sys/fs/cgroup/systemd/system.slice/orchd.service/cgroup.procs /sys/fs/cgroup/unified/system.slice/orchd.service/cgroup.procs /sys/fs/cgroup/system.slice/orchd.service/cgroup.procs; do
    if inside test -f "$procs"; then
        members=$(inside sh -c "cat $procs" | grep -v '^0$' | tr '\n' ' ')
        [ "$members" = "$main " ] || fail "$procs holds '$members', not only orchd (pid $main)"
    fi
done
[ "$(container_pid)" = "$pid" ] || fail "the container did not survive the restart of orchd (pid $pid, now '$(container_pid)')"
if [ "$mode" = unified ]; then
    now=$(inside sh -c "cat /sys/fs/cgroup/system.slice/$scope/.keeper/cgroup.procs")
    [ "$now" = "$keeper" ] || fail "the scope holder changed across the restart of orchd ('$keeper', now '$now')"
    holder_now() { inside sh -c "cat /sys/fs/cgroup/system.slice/$scope/.keeper/cgroup.procs 2>/dev/null; true"; }
    # Faults: the holder killed while orchd runs (orchd starts another within 5 s), then killed
    # while orchd is stopped (the containers hold the scope; the next orchd puts a holder back).
    inside sh -c "kill -KILL $keeper"
    replaced=""
    for _ in $(seq 1 100); do
        replaced=$(holder_now)
        [ -n "$replaced" ] && [ "$replaced" != "$keeper" ] && break
        sleep 0.1
    done
    [ -n "$replaced" ] && [ "$replaced" != "$keeper" ] || fail "no new scope holder 10 s after the old one was killed"
    inside systemctl stop orchd.service
    inside sh -c "kill -KILL $replaced"
    sleep 0.5
    [ "$(inside systemctl show -p ActiveState --value "$scope")" = active ] || fail "scope $scope ended with its holder although the container runs"
    inside systemctl start orchd.service
    again=""
    for _ in $(seq 1 100); do
        again=$(holder_now)
        [ -n "$again" ] && break
        sleep 0.1
    done
    [ -n "$again" ] || fail "the restarted orchd put no holder back into $scope"
    [ "$(container_pid)" = "$pid" ] || fail "the container did not survive the holder's faults (pid $pid, now '$(container_pid)')"
    ok "scope holder killed: replaced by orchd ($keeper -> $replaced); killed with orchd stopped: the scope stayed, the next orchd put $again back; container kept"
fi
ok "systemctl restart orchd: container kept (pid $pid), no left-over process reported"

inside test -d /sys/class/net/orch0 || fail "no bridge orch0 while the container runs"
# A teardown while orchd runs is refused (the state lock), and changes nothing.
if inside orchd teardown --config /etc/orchestrator/orchd.yaml > "$work/teardown-early.log" 2>&1; then
    fail "orchd teardown ran while orchd runs: $(cat "$work/teardown-early.log")"
fi
grep -q "stop it first (systemctl stop orchd)" "$work/teardown-early.log" || fail "orchd teardown while orchd runs did not say to stop it: $(cat "$work/teardown-early.log")"
[ "$(container_pid)" = "$pid" ] || fail "a refused teardown touched the container"
ok "orchd teardown while orchd runs: refused ($(head -1 "$work/teardown-early.log"))"
inside dpkg -r orchestrator > "$work/dpkg-r.log" 2>&1 || fail "dpkg -r: $(cat "$work/dpkg-r.log")"
grep -q "orchd teardown: 2 container(s) of orchd's runtime stopped (1 killed after 10 s)" "$work/dpkg-r.log" || fail "dpkg -r did not say it stopped the container: $(cat "$work/dpkg-r.log")"
ok "dpkg -r: $(grep 'orchd teardown' "$work/dpkg-r.log")"
inside test ! -e "/proc/$pid" || fail "the container still runs after dpkg -r"
[ -z "$(container_pid)" ] || fail "a container still runs after dpkg -r"
inside test ! -d /sys/class/net/orch0 || fail "the bridge orch0 is left after dpkg -r"
if inside nft list tables | grep -q orchd_; then fail "an nft table is left after dpkg -r: $(inside nft list tables)"; fi
# This node's (on a v1 host the machine shares the controllers' hierarchies with the host, where
# other nodes' /orchestrator/<id> may exist: teardown leaves /orchestrator to them).
leftover_cgroups() { inside sh -c "ls -d /sys/fs/cgroup/*/orchestrator/$node12 /sys/fs/cgroup/orchestrator/$node12 /sys/fs/cgroup/system.slice/orchestrator-$node12.scope 2>/dev/null; systemctl list-units --all --plain --no-legend 'orchestrator-*' 2>/dev/null; true"; }
if leftover_cgroups | grep -q .; then
    fail "cgroups are left after dpkg -r: $(leftover_cgroups)"
fi
if inside grep -q " /var/lib/orchestrator\| /run/orchestrator" /proc/self/mountinfo; then
    fail "mounts are left after dpkg -r: $(inside grep " /var/lib/orchestrator\| /run/orchestrator" /proc/self/mountinfo)"
fi
if inside sh -c 'test -e /etc/systemd/system/multi-user.target.wants/orchd.service || test -L /etc/systemd/system/multi-user.target.wants/orchd.service'; then
    fail "dpkg -r left /etc/systemd/system/multi-user.target.wants/orchd.service"
fi
inside test -f /var/lib/orchestrator/node-id || fail "dpkg -r deleted the node's state"
ok "dpkg -r left no container, bridge, nft table, cgroup, mount or wants link; state kept"

inside dpkg -i /opt/orchtest/orchestrator.deb > "$work/dpkg-i2.log" 2>&1 || fail "dpkg -i again: $(cat "$work/dpkg-i2.log")"
inside systemctl is-enabled --quiet orchd.service || fail "reinstalling did not enable orchd again"
pid=$(wait_for_container)
[ -n "$pid" ] || fail "the container did not start again after reinstalling: $(inside journalctl -u orchd --no-pager | tail -30)"
ok "reinstalled: orchd enabled and running again, container restarted (pid $pid)"

inside dpkg -P orchestrator > "$work/dpkg-p.log" 2>&1 || fail "dpkg -P: $(cat "$work/dpkg-p.log")"
inside test ! -e /var/lib/orchestrator || fail "dpkg -P left /var/lib/orchestrator"
[ -z "$(container_pid)" ] || fail "a container still runs after dpkg -P"
inside test ! -d /sys/class/net/orch0 || fail "the bridge orch0 is left after dpkg -P"
if leftover_cgroups | grep -q .; then
    fail "cgroups are left after dpkg -P: $(leftover_cgroups)"
fi
ok "dpkg -P: state, container, bridge and cgroups gone"
