#!/bin/bash
# Runs inside the arm64 VM (tests/arm64/vm-e2e.sh boots it with this script as systemd.run=, from
# the 9p share /mnt/orchtest). Installs the arm64 .deb and checks, on the arm64 kernel under
# systemd: orchd as a Type=notify service with the watchdog, a workload with a bridge network, a
# published port and probes, a restart after a crash, `orch-runc run` with orchd's default seccomp
# profile, joining the host's fleet over NATS, and the watchdog killing a wedged orchd. Writes
# "ok: …"/"FAIL: …" lines to out/results, figures to out/figures, "done N" to out/status, then
# powers the VM off.
set -uo pipefail
share=/mnt/orchtest
out=$share/out
mkdir -p "$out"
: > "$out/results"
: > "$out/figures"
exec > >(tee "$out/vm.log" > /dev/console) 2>&1
# shellcheck source=/dev/null
. "$share/env" # NATS_URL NODE KEEP_GOING RSS_STUDY
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

finish() {
    echo "done $1" > "$out/status"
    sync
    systemctl poweroff --no-block
    exit "$1"
}
ok() { echo "ok: $*" | tee -a "$out/results"; }
# KEEP_GOING=1 (ORCH_ARM64_KEEP_GOING on the host): report a failure and go on, to see every
# failure of one (slow) boot.
fail() { echo "FAIL: $*" | tee -a "$out/results"; [ "${KEEP_GOING:-0}" = 1 ] || finish 1; }
figure() { echo "$1=$2" | tee -a "$out/figures"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
journal() { journalctl -u orchd --no-pager -o cat | tail -"${1:-30}"; }
# orchctl against the host's NATS, this node's containers as JSON.
ctl() { orchctl --server "$NATS_URL" "$@"; }
container() { ctl get containers -n "$NODE" -o json 2>/dev/null | jq -c --arg n "$1" '[.[] | select(.name == $n)][0] // empty'; }
wait_until() { # SECONDS COMMAND...: true once COMMAND succeeds
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || return 1; sleep 1; done
}

# systemd.run= boots into kernel-command-line.target (basic.target and this script's unit):
# start the rest of a normal boot (systemd-networkd, getty, …). Not `is-system-running --wait`:
# this script's own unit is part of the boot, which does not end before it does.
systemctl start multi-user.target || fail "multi-user.target did not start: $(systemctl list-jobs --no-pager | head -20)"
routed() { ip -4 route show default | grep -q .; }
wait_until 120 routed || fail "no default route from qemu's DHCP: $(ip -4 addr)"
ok "booted: $(uname -m), Linux $(uname -r), systemd $(systemctl --version | head -1 | cut -d' ' -f2), /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB, up $(cut -d' ' -f1 /proc/uptime) s"
[ "$(uname -m)" = aarch64 ] || fail "not an arm64 machine: $(uname -m)"

# 1. The package.
dpkg -i "$share/orchestrator.deb" > /tmp/dpkg.log 2>&1 || fail "dpkg -i: $(cat /tmp/dpkg.log)"
ok "dpkg -i $(dpkg-query -W -f '${Package} ${Version} ${Architecture}' orchestrator)"
for f in orchd orchctl orch-runc; do figure "size_$f" "$(stat -c %s /usr/bin/$f)"; done
systemd-analyze verify /lib/systemd/system/orchd.service > /tmp/verify.log 2>&1 || fail "systemd-analyze verify: $(cat /tmp/verify.log)"
ok "systemd-analyze verify orchd.service"
start=$(now_ms); orchd --version > /dev/null; figure orchd_version_ms $(( $(now_ms) - start ))
start=$(now_ms); /bin/true; figure bin_true_ms $(( $(now_ms) - start ))

bash "$share/busybox-layout.sh" /tmp/busybox || fail "busybox-layout.sh"
orchd image import /tmp/busybox --name busybox:latest > /tmp/import.log 2>&1 || fail "orchd image import: $(cat /tmp/import.log)"
ok "image imported: $(orchd image list 2>&1 | tail -1)"

# 2. orchd under systemd, with a workload on the bridge with a published port and probes.
cat > /etc/orchestrator/orchd.yaml <<EOF
node_name: $NODE
nats:
  urls: [$NATS_URL]
fleet:
  heartbeat: 2s
EOF
cat > /etc/orchestrator/manifests/web.yaml <<'EOF'
name: web
image: busybox:latest
command: [sh, -c]
args: ['mkdir -p /www && echo "hello from $(uname -m)" > /www/index.html && exec httpd -f -p 80 -h /www']
network: bridge
ports: [{containerPort: 80, hostPort: 8080}]
probes:
  readiness: {httpGet: {path: /index.html, port: 80}, periodSeconds: 1}
  liveness: {tcpSocket: {port: 80}, periodSeconds: 2, failureThreshold: 5}
restart: {policy: always, backoff: 1s}
stopGracePeriodSeconds: 2
EOF
systemctl enable --now orchd.service > /tmp/enable.log 2>&1 || fail "systemctl enable --now orchd: $(cat /tmp/enable.log; journal)"
show() { systemctl show -p "$1" --value orchd.service; }
main=$(show MainPID)
ready_us=$(( $(show ActiveEnterTimestampMonotonic) - $(show ExecMainStartTimestampMonotonic) ))
figure orchd_start_to_ready_ms $(( ready_us / 1000 ))
[ "$(show WatchdogUSec)" = 30s ] || fail "WatchdogUSec is '$(show WatchdogUSec)', not 30s"
ok "orchd active (pid $main, READY after $(( ready_us / 1000 )) ms), WatchdogSec=30s"

# cgroup v2 under systemd: the node's containers are in its delegated scope
# system.slice/orchestrator-ID12.scope (src/Orchestrator.Runtime/Cgroups/NodeCgroup.cs).
scope_dir() { ls -d /sys/fs/cgroup/system.slice/orchestrator-*.scope 2>/dev/null | head -1; }
cg_pid() { # the lowest pid in the workload's cgroup
    cat /sys/fs/cgroup/system.slice/orchestrator-*.scope/"$1"/cgroup.procs 2>/dev/null | sort -n | head -1
}
have_pid() { [ -n "$(cg_pid web)" ]; }
wait_until 120 have_pid || fail "web did not start: $(journal)"
pid=$(cg_pid web)
scope=$(basename "$(scope_dir)")
ok "web running (pid $pid), cgroup $(scope_dir)/web"
[ "$(systemctl show -p Delegate --value "$scope")" = yes ] || fail "$scope is not delegated: $(systemctl show -p Delegate "$scope")"
[ -n "$(cat "$(scope_dir)/.keeper/cgroup.procs")" ] || fail "no holder in $(scope_dir)/.keeper"
ok "the node's cgroup is systemd's delegated scope $scope (Delegate=yes), its holder pid $(head -1 "$(scope_dir)/.keeper/cgroup.procs") in .keeper"
ip -4 -o addr show orch0 > /tmp/bridge || fail "no bridge orch0"
# HTTP by hand over bash's /dev/tcp: Debian arm64 busybox-static's wget dies of SIGSEGV here
# (exit 139, also straight to the container's address).
http_get() { # HOST PORT PATH: the response's body
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3 && tr -d "\r" <&3 | sed "1,/^$/d"' "$1" "$2" "$3" 2>/dev/null
}
served() { [ "$(http_get "$1" 8080 /index.html)" = "hello from aarch64" ]; }
diagnose() {
    local t
    t=$(nft list tables | awk '/orchd_/ {print $3}')
    echo "journal:"; journal 40; echo "nft:"; nft list ruleset 2>&1 | head -60
    echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward) route_localnet(orch0)=$(cat /proc/sys/net/ipv4/conf/orch0/route_localnet) rp_filter(all)=$(cat /proc/sys/net/ipv4/conf/all/rp_filter) rp_filter(orch0)=$(cat /proc/sys/net/ipv4/conf/orch0/rp_filter)"
    lsmod | grep -E "^nf|^nft|^br" | cut -d' ' -f1 | tr '\n' ' '; echo
    ip route get 10.88.0.2; ip -d link show orch0 | head -3
    nft insert rule ip "$t" output counter; nft insert rule ip "$t" postrouting counter; nft insert rule ip "$t" forward counter
    echo "127.0.0.1:8080: $(http_get 127.0.0.1 8080 /index.html)"; echo "10.88.0.2:80: $(http_get 10.88.0.2 80 /index.html)"
    nft list ruleset 2>&1 | grep counter
    head -5 /proc/net/nf_conntrack 2>/dev/null
    nsenter -t "$(cg_pid web)" -n ip -4 route; nsenter -t "$(cg_pid web)" -n busybox netstat -tn 2>/dev/null | head
}
wait_until 60 served 127.0.0.1 || fail "the published port 8080 does not answer on 127.0.0.1: $(diagnose)"
vm_ip=$(ip -4 -o route get 10.0.2.2 | sed -n 's/.* src \([0-9.]*\).*/\1/p')
served "$vm_ip" || fail "the published port 8080 does not answer on $vm_ip"
ok "published port: http://127.0.0.1:8080 and http://$vm_ip:8080 answer 'hello from aarch64' from the container"
caddr=$(nsenter -t "$pid" -n ip -4 -o addr show scope global | awk '{print $2 " " $4}')
ok "bridge $(awk '{print $4}' /tmp/bridge), the container's $caddr"
connected() { show StatusText | grep -q "connected to"; }
wait_until 120 connected || fail "orchd did not connect to $NATS_URL: $(show StatusText)"
ok "orchd joined the fleet: STATUS=$(show StatusText)"
is_ready() { container web | jq -e '.ready == true and .state == "running"' > /dev/null; }
wait_until 60 is_ready || fail "web is not ready (readiness probe): $(container web)"
ok "readiness probe: web ready ($(container web | jq -c '{state, ready, restarts, pid}'))"

# 3. A crash: the container's process killed; the restart policy starts it again.
restarts=$(container web | jq .restarts)
kill -KILL "$pid"
restarted() { p=$(cg_pid web); [ -n "$p" ] && [ "$p" != "$pid" ] && container web | jq -e --argjson r "$restarts" '.restarts > $r and .state == "running"' > /dev/null; }
wait_until 60 restarted || fail "web was not restarted after kill -KILL: $(container web); $(journal)"
wait_until 60 served 127.0.0.1 || fail "the published port does not answer after the restart"
ok "crash: web killed (pid $pid), restarted (pid $(cg_pid web), $(container web | jq -c '{restarts, state}')), port 8080 answers again"
pid=$(cg_pid web)

# 4. The watchdog pings: systemd's timestamp of the last WATCHDOG=1 moves.
w1=$(show WatchdogTimestampMonotonic)
sleep 17
w2=$(show WatchdogTimestampMonotonic)
[ "$w2" -gt "$w1" ] || fail "no WATCHDOG=1 from orchd in 17 s (WatchdogTimestampMonotonic $w1 -> $w2)"
ok "watchdog: orchd pings (last ping moved by $(( (w2 - w1) / 1000 )) ms in 17 s)"
sleep 5
figure orchd_idle_rss_kib "$(awk '/^VmRSS/ {print $2}' "/proc/$(show MainPID)/status")"
# Where it goes (docs/benchmarks.md, "arm64"): smaps by mapping, the page size, THP, the caches.
bash "$share/rss-report.sh" "$(show MainPID)" > "$out/rss-orchd.txt" 2>&1
figure orchd_idle_anon_kib "$(awk '/^Anonymous:/ {print $2}' "/proc/$(show MainPID)/smaps_rollup")"
figure orchd_idle_anon_huge_kib "$(awk '/^AnonHugePages:/ {print $2}' "/proc/$(show MainPID)/smaps_rollup")"
figure page_size "$(getconf PAGESIZE)"
figure thp "$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo none)"

# 5. orch-runc run with orchd's default seccomp profile (the one in web's config.json).
spec=""
for f in $(find /run/orchestrator /var/lib/orchestrator -name config.json 2>/dev/null); do
    if jq -e '.annotations["org.orchestrator.workload"] == "web"' "$f" > /dev/null 2>&1; then spec=$f; break; fi
done
[ -n "$spec" ] || fail "web's config.json not found under /run/orchestrator or /var/lib/orchestrator"
jq -e '.linux.seccomp.syscalls | length > 0' "$spec" > /dev/null || fail "web's config.json ($spec) has no seccomp profile"
b=/tmp/bundle
mkdir -p "$b/rootfs"
layer=$(ls -S /tmp/busybox/blobs/sha256/* | head -1)
tar -xzf "$layer" -C "$b/rootfs"
cp "$share/probe-arm64" "$share/probe-arm" "$b/rootfs/bin/"
(cd "$b" && orch-runc spec) || fail "orch-runc spec"
base=$b/config.base.json
mv "$b/config.json" "$base"
# The probes (tests/arm64/syscall-probe.c): the native one, and the same for 32-bit arm, which
# this kernel runs with compat syscalls (AUDIT_ARCH_ARM, other numbers); then the image's own
# ordinary work. CAP_SYS_ADMIN, so that only the filter can refuse unshare and mount.
probe='echo "[arm64]"; /bin/probe-arm64; echo "exit $?"; echo "[arm]"; /bin/probe-arm; echo "exit $?"; echo "[busybox]"; echo data > /tmp/f && cat /tmp/f > /dev/null && ls /bin/busybox > /dev/null && echo ordinary=ok'
jq --arg probe "$probe" '.root.readonly = false | .process.terminal = false | .process.args = ["sh", "-c", $probe]
    | .process.capabilities |= with_entries(.value += ["CAP_SYS_ADMIN"])' "$base" > "$b/control.json"
jq --slurpfile web "$spec" '.linux.seccomp = $web[0].linux.seccomp' "$b/control.json" > "$b/seccomp.json"
run_bundle() { cp "$b/$1.json" "$b/config.json"; orch-runc run -b "$b" "test-$1-$$" > "/tmp/$1.out" 2>&1; echo "runc-exit $?" >> "/tmp/$1.out"; }
section() { sed -n "/^\[$2\]/,/^\[/p" "/tmp/$1.out"; }
run_bundle control
echo "--- orch-runc run, no seccomp:"; cat /tmp/control.out
[ "$(section control arm64 | grep -c '=allowed')" = 2 ] && [ "$(section control arm | grep -c '=allowed')" = 2 ] \
    && grep -q ordinary=ok /tmp/control.out || fail "orch-runc run without seccomp (the control): $(cat /tmp/control.out)"
ok "orch-runc run, no seccomp, CAP_SYS_ADMIN: unshare and mount allowed to the arm64 and the 32-bit arm probe (the control)"
run_bundle seccomp
echo "--- orch-runc run, orchd's default seccomp profile:"; cat /tmp/seccomp.out
section seccomp arm64 | grep -q '^unshare=Operation not permitted' && section seccomp arm64 | grep -q '^mount=Operation not permitted' \
    || fail "orch-runc run with the default profile: the arm64 probe's unshare or mount was not refused with EPERM: $(cat /tmp/seccomp.out)"
section seccomp arm64 | grep -q '^ordinary=ok' && section seccomp busybox | grep -q '^ordinary=ok' && grep -q "runc-exit 0" /tmp/seccomp.out \
    || fail "orch-runc run with the default profile: the ordinary work failed: $(cat /tmp/seccomp.out)"
ok "orch-runc run with orchd's default seccomp profile ($spec): unshare and mount refused with EPERM (arm64 numbers, AUDIT_ARCH_AARCH64), the ordinary work ran"
# A 32-bit program's syscalls carry AUDIT_ARCH_ARM: they must not get around the filter.
if section seccomp arm | grep -q '=allowed'; then
    fail "orch-runc run with the default profile: the 32-bit arm probe got around the filter: $(section seccomp arm | tr '\n' ' ')"
fi
ok "orch-runc run with the default profile: the 32-bit arm (compat) probe did not get around it: $(section seccomp arm | tr '\n' ' ')"

# 6. orch-runc vs runc vs crun in this VM: `run` of /bin/true, the same bundle, no seccomp.
jq '.process.terminal = false | .process.args = ["/bin/true"]' "$base" > "$b/config.json"
bench() { # NAME COMMAND...: median ms of 7 runs of COMMAND run -b BUNDLE ID
    local name=$1; shift; local t=() i s
    "$@" run -b "$b" "warm-$name" > /dev/null 2>&1 || { echo "$name: run failed: $("$@" run -b "$b" "warm2-$name" 2>&1 | tail -3)"; return; }
    for i in 1 2 3 4 5 6 7; do s=$(date +%s%N); "$@" run -b "$b" "b-$name-$i" > /dev/null 2>&1; t+=($(( ($(date +%s%N) - s) / 1000 ))); done
    figure "run_true_median_us_$name" "$(printf '%s\n' "${t[@]}" | sort -n | sed -n 4p)"
}
bench orch-runc orch-runc
bench runc runc
bench crun crun

# 7. The fleet: the host applies a deployment with `arch: arm64` in its selector and checks where
# it lands; this side checks that its replicas run here.
echo fleet-ready > "$out/fleet-ready"
host_done() { [ -e "$share/host-done" ]; }
wait_until 600 host_done || fail "the host did not finish its fleet checks in 10 minutes"
n=$(ctl get containers -n "$NODE" -o json | jq '[.[] | select(.labels.app == "armonly" and .state == "running")] | length')
[ "$n" -ge 1 ] || fail "no replica of armonly runs here: $(ctl get containers -n "$NODE" -o json)"
ok "fleet: $n replica(s) of armonly (selector arch: arm64) run on this node"

# 8. The watchdog kills a wedged orchd; the containers survive (KillMode=process).
restarts_before=$(show NRestarts)
mkdir -p /run/systemd/system/orchd.service.d
printf '[Service]\nEnvironment=ORCHD_FAILPOINT=hang\nWatchdogSec=10s\n' > /run/systemd/system/orchd.service.d/hang.conf
systemctl daemon-reload
systemctl restart orchd.service
watchdog_kill() { journalctl -u orchd --no-pager | grep -q "Watchdog timeout"; }
wait_until 180 watchdog_kill || fail "systemd did not kill the hung orchd: $(journalctl -u orchd --no-pager | tail -20)"
auto_restarted() { [ "$(show NRestarts)" -gt "$restarts_before" ]; }
wait_until 30 auto_restarted || fail "systemd did not restart orchd after the watchdog killed it (NRestarts $(show NRestarts))"
restarts_after=$(show NRestarts)
rm -rf /run/systemd/system/orchd.service.d
systemctl daemon-reload
systemctl restart orchd.service
systemctl is-active --quiet orchd.service || fail "orchd did not come back: $(journal)"
[ "$(cg_pid web)" = "$pid" ] || fail "web did not survive the watchdog restart (pid $pid, now '$(cg_pid web)')"
ok "watchdog: a hung orchd was killed by systemd ($(journalctl -u orchd --no-pager -o cat | grep -m1 'Watchdog timeout')), and restarted (NRestarts $restarts_before -> $restarts_after); web kept pid $pid"
wait_until 60 served 127.0.0.1 || fail "port 8080 does not answer after the watchdog restart"

# 9. A terminal of its own (tty: true, stdin: true): the stdio holder (orchd's C main, the master
# taken with pidfd_getfd) keeps it across a restart of orchd; what is typed reaches the shell on
# it, and its answer reaches the log.
cat > /etc/orchestrator/manifests/console.yaml <<'EOF'
name: console
image: busybox:latest
command: [sh, -c, 'while read l; do echo "got:$l on $(uname -m)"; done']
network: none
tty: true
stdin: true
EOF
cdir=/run/orchestrator/containers/console
have_console() { [ -n "$(cg_pid console)" ] && [ -s "$cdir/stdio-holder.pid" ]; }
wait_until 90 have_console || fail "console did not start with a stdio holder: $(container console); $(journal)"
holder=$(cut -d' ' -f1 "$cdir/stdio-holder.pid"); cpid=$(cg_pid console)
tr '\0' ' ' < "/proc/$holder/cmdline" | grep -q "stdio-holder" || fail "pid $holder is not a stdio holder: $(tr '\0' ' ' < "/proc/$holder/cmdline")"
holder_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$holder/status")
holder_cg=$(cut -d: -f3 "/proc/$holder/cgroup" | head -1)
systemctl restart orchd.service
echo one > "$cdir/stdin.fifo"
logged() { grep -q "got:one on aarch64" /var/lib/orchestrator/logs/console/container.log 2>/dev/null; }
wait_until 60 logged || fail "what was typed into console's terminal did not reach its log: $(tail -3 /var/lib/orchestrator/logs/console/container.log 2>&1); $(journal)"
[ "$(cg_pid console)" = "$cpid" ] && [ -d "/proc/$holder" ] || fail "console (pid $cpid, now '$(cg_pid console)') or its holder ($holder) did not survive the restart of orchd"
ok "tty: console (pid $cpid) on a terminal of its own, held by its stdio holder (pid $holder, $holder_kb kB RSS, in $holder_cg) across a restart of orchd; 'one' typed, the log says '$(grep -m1 -o 'got:one on [a-z0-9_]*' /var/lib/orchestrator/logs/console/container.log)'"
figure stdio_holder_rss_kib "$holder_kb"

# 10. Opt-in (ORCH_ARM64_RSS_STUDY=1 on the host): orchd's idle RSS with transparent huge pages
# on and off and with a small gen0 budget, each a fresh orchd under systemd 30 s after it
# connected, reports in out/rss-study-NAME.txt (docs/benchmarks.md, "arm64").
thp_file=/sys/kernel/mm/transparent_hugepage/enabled
rss_variant() { # NAME THP_MODE [VAR=VALUE...]
    local name=$1 thp=$2 p conf=/run/systemd/system/orchd.service.d/rss.conf; shift 2
    echo "$thp" > "$thp_file"
    mkdir -p "$(dirname "$conf")"
    { echo '[Service]'; for e in "$@"; do echo "Environment=$e"; done; } > "$conf"
    systemctl daemon-reload
    systemctl restart orchd.service
    wait_until 120 connected || { echo "rss study $name: orchd did not connect"; return 0; }
    sleep 30
    p=$(show MainPID)
    bash "$share/rss-report.sh" "$p" > "$out/rss-study-$name.txt" 2>&1
    figure "rss_study_${name}_kib" "$(awk '/^VmRSS/ {print $2}' "/proc/$p/status") (Anonymous $(awk '/^Anonymous:/ {print $2}' "/proc/$p/smaps_rollup"), AnonHugePages $(awk '/^AnonHugePages:/ {print $2}' "/proc/$p/smaps_rollup"), THP $thp${*:+, $*})"
}
if [ "${RSS_STUDY:-0}" = 1 ] && [ -w "$thp_file" ]; then
    thp0=$(sed 's/.*\[\(.*\)\].*/\1/' "$thp_file")
    rss_variant base "$thp0"
    rss_variant thp_madvise madvise
    rss_variant thp_never never
    rss_variant gen0_1m "$thp0" DOTNET_GCgen0size=0x100000
    rss_variant thp_madvise_gen0_1m madvise DOTNET_GCgen0size=0x100000
    echo "$thp0" > "$thp_file"
    rm -rf /run/systemd/system/orchd.service.d
    systemctl daemon-reload
    systemctl restart orchd.service
fi

if grep -q '^FAIL' "$out/results"; then finish 1; fi
ok "all checks passed"
finish 0
