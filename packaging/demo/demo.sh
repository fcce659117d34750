#!/bin/bash
# make demo: a local fleet in the foreground: nats-server (JetStream, temp store), one orchd
# node, and examples/hello.yaml running on it (a web server on a published port and a client
# calling it by name). Ctrl-C removes the containers, stops both and removes the temp dir.
# DEMO_DURATION=N stops it by itself after N seconds (used by the tests).
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
work=$(mktemp -d /tmp/orch-demo.XXXXXX)
nats_pid="" orchd_pid=""
here=$(cd "$(dirname "$0")" && pwd)
examples=$(cd "$here/../../examples" && pwd)
bridge=orchdemo0
cidr=10.89.$(( RANDOM % 200 + 20 )).0/24

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=4222
if ! port_free $port; then
  # Below the kernel's ephemeral range (32768-60999), so no outgoing connection holds it.
  port=$(( 14000 + RANDOM % 10000 ))
  while ! port_free $port; do port=$(( 14000 + RANDOM % 10000 )); done
fi
url=nats://127.0.0.1:$port

stop() {
  trap - INT TERM EXIT
  echo
  if [ -n "$orchd_pid" ] && kill -0 "$orchd_pid" 2>/dev/null; then
    # Containers outlive orchd by design: remove them first.
    for name in hello caller; do "$bin/orchctl" --server "$url" rm -n demo-1 "$name" >/dev/null 2>&1 || true; done
  fi
  echo "demo: stopping orchd and nats-server"
  [ -n "$orchd_pid" ] && kill -TERM "$orchd_pid" 2>/dev/null && wait "$orchd_pid" 2>/dev/null || true
  [ -n "$nats_pid" ] && kill -TERM "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  # Anything left (orchd killed before it could remove them): the runtime's own cleanup.
  for dir in "$work"/run/runtime/*/; do [ -d "$dir" ] && "$bin/orch-runc" --root "$work/run/runtime" delete --force "$(basename "$dir")" 2>/dev/null || true; done
  { grep -o " $work[^ ]*" /proc/self/mountinfo 2>/dev/null || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ip link del "$bridge" 2>/dev/null || true
  [ -f "$work/state/node-id" ] && nft delete table ip "orchd_$(head -c 8 "$work/state/node-id")" 2>/dev/null || true
  rm -rf "$work"
  echo "demo: stopped, $work removed"
}
trap stop EXIT
# Ctrl-C is the normal way to end the demo: clean up and report success.
trap 'stop; exit 0' INT TERM

nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
"$nats_server" -a 127.0.0.1 -p "$port" -js -sd "$work/jetstream" -l "$work/nats-server.log" &
nats_pid=$!
for _ in $(seq 100); do port_free $port || break; kill -0 $nats_pid 2>/dev/null || break; sleep 0.05; done
if port_free $port; then
  echo "demo: nats-server did not start; its log:" >&2
  cat "$work/nats-server.log" >&2 2>/dev/null || true
  exit 1
fi
echo "demo: nats-server with JetStream on $url (store $work/jetstream)"

# The image: Debian's busybox-static as an OCI layout, imported into the node's store (no registry needed).
bash "$here/busybox-layout.sh" "$work/busybox" >/dev/null
"$bin/orchd" image import "$work/busybox" --name busybox:latest --state-dir "$work/state" --config /dev/null >/dev/null

"$bin/orchd" --config /dev/null --node-name demo-1 --label zone=demo --label role=gateway \
  --state-dir "$work/state" --run-dir "$work/run" --nats-url "$url" \
  --manifest-dir none --bridge "$bridge" --bridge-cidr "$cidr" &
orchd_pid=$!

# Show the fleet as an operator sees it, once the node has answered.
for _ in $(seq 50); do
  if "$bin/orchctl" --server "$url" --timeout 0.5 version 2>/dev/null | grep -q '^demo-1 '; then break; fi
  sleep 0.1
done
echo
echo "demo: the fleet, as 'orchctl --server $url version' sees it:"
"$bin/orchctl" --server "$url" version
echo
echo "demo: \$ orchctl run -n demo-1 -f examples/hello.yaml"
"$bin/orchctl" --server "$url" run -n demo-1 -f "$examples/hello.yaml"
for _ in $(seq 50); do
  "$bin/orchctl" --server "$url" ps -n demo-1 2>/dev/null | grep -q '^hello .* running *yes' && break
  sleep 0.2
done
sleep 3
echo
echo "demo: \$ orchctl ps -n demo-1"
"$bin/orchctl" --server "$url" ps -n demo-1
echo
echo "demo: the published port, from the host: curl http://127.0.0.1:8080/"
curl -s --max-time 3 http://127.0.0.1:8080/ || echo "(no answer: is port 8080 taken on this machine?)"
echo
echo "demo: \$ orchctl logs -n demo-1 caller --tail 3"
"$bin/orchctl" --server "$url" logs -n demo-1 caller --tail 3
echo
echo "demo: try it from another terminal:"
echo "  $bin/orchctl --server $url ps -n demo-1"
echo "  $bin/orchctl --server $url exec -n demo-1 hello -- cat /etc/hosts"
echo "  $bin/orchctl --server $url stats -n demo-1"
echo "demo: Ctrl-C stops nats-server and orchd"

if [ -n "${DEMO_DURATION:-}" ]; then
  sleep "$DEMO_DURATION"
  exit 0
fi
wait "$orchd_pid"
