#!/bin/bash
# make demo: a local fleet in the foreground: nats-server (JetStream, temp store, decentralised
# auth from `orchctl identity init`), the identity service, and three orchd nodes on loopback
# that enrol with a one-time token (each with its own key, state, bridge and zone label), then
# examples/hello.yaml applied to the fleet: the elected scheduler puts one replica on each
# node, and each replica answers. Ctrl-C deletes the deployment, stops everything and removes
# the temp dir. DEMO_DURATION=N stops it by itself after N seconds (used by the tests).
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
work=$(mktemp -d /tmp/orch-demo.XXXXXX)
nats_pid=""
identity_pid=""
declare -a orchd_pids=()
nodes=(demo-1 demo-2 demo-3)
zones=(a b c)
here=$(cd "$(dirname "$0")" && pwd)
examples=$(cd "$here/../../examples" && pwd)
net=$(( RANDOM % 60 + 20 ))   # 10.20-79.x: apart from the services range (network.services, 10.89.0.0/16)

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=4222
if ! port_free $port; then
  # Below the kernel's ephemeral range (32768-60999), so no outgoing connection holds it.
  port=$(( 14000 + RANDOM % 10000 ))
  while ! port_free $port; do port=$(( 14000 + RANDOM % 10000 )); done
fi
url=nats://127.0.0.1:$port
creds=$work/identity/admin.creds
ctl() { "$bin/orchctl" --server "$url" --creds "$creds" "$@"; }

stop() {
  trap - INT TERM EXIT
  echo
  if [ ${#orchd_pids[@]} -gt 0 ] && kill -0 "${orchd_pids[0]}" 2>/dev/null; then
    # Containers outlive orchd by design: take the deployment away first and let the nodes remove its replicas.
    ctl delete deployment hello >/dev/null 2>&1 || true
    for _ in $(seq 50); do
      ctl get containers -o name 2>/dev/null | grep -q . || break
      sleep 0.2
    done
  fi
  echo "demo: stopping the orchd nodes and nats-server"
  for pid in "${orchd_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${orchd_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for node in "${nodes[@]}"; do
    grep -h "stopped cleanly" "$work/$node/orchd.log" 2>/dev/null | sed "s/^/$node: /" >&2 || true
  done
  [ -n "$identity_pid" ] && kill -TERM "$identity_pid" 2>/dev/null && wait "$identity_pid" 2>/dev/null || true
  [ -n "$nats_pid" ] && kill -TERM "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  for i in "${!nodes[@]}"; do
    node_dir="$work/${nodes[$i]}"
    # Anything left (an orchd killed before it could remove them): the runtime's own cleanup.
    for dir in "$node_dir"/run/runtime/*/; do [ -d "$dir" ] && "$bin/orch-runc" --root "$node_dir/run/runtime" delete --force "$(basename "$dir")" 2>/dev/null || true; done
    ip link del "orchdemo$((i + 1))" 2>/dev/null || true
    [ -f "$node_dir/state/node-id" ] && nft delete table ip "orchd_$(head -c 8 "$node_dir/state/node-id")" 2>/dev/null || true
  done
  { grep -o " $work[^ ]*" /proc/self/mountinfo 2>/dev/null || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
  echo "demo: stopped, $work removed"
}
trap stop EXIT
# Ctrl-C is the normal way to end the demo: clean up and report success.
trap 'stop; exit 0' INT TERM

# The fleet's keys (operator, account, signing keys) and the server's auth configuration.
"$bin/orchctl" identity init "$work/identity" --name demo >/dev/null
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
"$nats_server" -c "$work/identity/server/nats-server.conf" -a 127.0.0.1 -p "$port" -js -sd "$work/jetstream" -l "$work/nats-server.log" &
nats_pid=$!
for _ in $(seq 100); do port_free $port || break; kill -0 $nats_pid 2>/dev/null || break; sleep 0.05; done
if port_free $port; then
  echo "demo: nats-server did not start; its log:" >&2
  cat "$work/nats-server.log" >&2 2>/dev/null || true
  exit 1
fi
echo "demo: nats-server with JetStream on $url (store $work/jetstream), decentralised auth (keys in $work/identity)"

# The identity service issues each device its own credentials for a one-time token.
"$bin/orchd" identity serve --dir "$work/identity/service" --nats-url "$url" --config /dev/null 2>"$work/identity.log" &
identity_pid=$!
for _ in $(seq 100); do grep -q "identity service for account" "$work/identity.log" 2>/dev/null && break; kill -0 $identity_pid 2>/dev/null || break; sleep 0.1; done
token=$(ctl node token create --labels site=demo --uses 3 --ttl 10m --scheduler 2>/dev/null)
if [ -z "$token" ]; then
  echo "demo: the identity service did not make a token; its log:" >&2
  cat "$work/identity.log" >&2
  exit 1
fi
echo "demo: \$ orchctl node token create --labels site=demo --uses 3 --ttl 10m --scheduler"
echo "${token:0:40}…"

# The image: Debian's busybox-static as an OCI layout (no registry needed), imported into each node's store.
bash "$here/busybox-layout.sh" "$work/busybox" >/dev/null
for i in "${!nodes[@]}"; do
  node=${nodes[$i]}
  node_dir="$work/$node"
  "$bin/orchd" image import "$work/busybox" --name busybox:latest --state-dir "$node_dir/state" --config /dev/null >/dev/null
  enrolled=$("$bin/orchd" enroll "$url" "$token" --node-name "$node" --state-dir "$node_dir/state" --config /dev/null)
  echo "demo: $node ${enrolled%%$'\n'*}"
  "$bin/orchd" --config /dev/null --node-name "$node" --label "zone=${zones[$i]}" \
    --state-dir "$node_dir/state" --run-dir "$node_dir/run" --nats-url "$url" --manifest-dir none \
    --bridge "orchdemo$((i + 1))" --bridge-cidr "10.$net.$((i + 1)).0/24" --heartbeat 2s 2>"$node_dir/orchd.log" &
  orchd_pids+=($!)
done
echo "demo: three orchd nodes, each with its own credentials (logs in $work/demo-*/orchd.log)"

# The fleet as an operator sees it, once every node has joined and one is the scheduler.
for _ in $(seq 100); do
  [ "$(ctl get nodes 2>/dev/null | grep -c ' ready ')" -ge 3 ] && ctl get nodes 2>/dev/null | grep -q scheduler && break
  sleep 0.2
done
echo
echo "demo: \$ orchctl get nodes"
ctl get nodes
echo
echo "demo: \$ orchctl apply -f examples/hello.yaml"
ctl apply -f "$examples/hello.yaml"
for _ in $(seq 150); do
  ctl get deployments -o json 2>/dev/null | tr -d ' \n' | grep -q '"updatedReady":3' && break
  sleep 0.2
done
echo
echo "demo: \$ orchctl get deployments"
ctl get deployments
echo
echo "demo: \$ orchctl get containers"
ctl get containers
echo
echo "demo: each replica answers on its node (orchctl exec finds the node):"
for replica in hello-0 hello-1 hello-2; do
  ctl exec "$replica" -- sh -c 'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 127.0.0.1 80 | tail -1' || true
done
echo
echo "demo: \$ orchctl apply -f examples/sensor.yaml   # mode: global, a two-container app on every device, in waves"
ctl apply -f "$examples/sensor.yaml"
for _ in $(seq 150); do
  ctl rollout status sensor 2>/dev/null | grep -q 'complete: 3/3' && break
  sleep 0.2
done
echo "demo: \$ orchctl rollout status sensor"
ctl rollout status sensor || true
echo
echo "demo: \$ orchctl ps -n demo-1 -l orch.deployment=sensor   # the app's two containers on one device"
ctl ps -n demo-1 -l orch.deployment=sensor || true
reader=$(ctl ps -n demo-1 -l orch.app.service=reader 2>/dev/null | awk 'NR==2{print $1}')
if [ -n "$reader" ]; then
  echo "demo: \$ orchctl logs -n demo-1 $reader --tail 1   # the reader reached its broker by name"
  ctl logs -n demo-1 "$reader" --tail 1 || true
fi
echo
echo "demo: try it from another terminal:"
echo "  export ORCH_SERVER=$url ORCH_CREDS=$creds"
echo "  $bin/orchctl get containers -o wide"
echo "  $bin/orchctl describe deployment hello"
echo "  $bin/orchctl scale hello 2 && $bin/orchctl events"
echo "  $bin/orchctl logs hello-0 && $bin/orchctl rollout history hello"
echo "  $bin/orchctl node revoke demo-3     # cut a device off: its replica moves at once"
echo "demo: Ctrl-C stops nats-server and the nodes"

if [ -n "${DEMO_DURATION:-}" ]; then
  sleep "$DEMO_DURATION"
  exit 0
fi
wait "${orchd_pids[0]}"
