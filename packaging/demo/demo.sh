#!/bin/bash
# make demo: a local fleet in the foreground. Today: nats-server (JetStream, temp store) and one
# orchd node; Ctrl-C stops both cleanly and removes the temp dir.
# DEMO_DURATION=N stops it by itself after N seconds (used by the tests).
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
work=$(mktemp -d /tmp/orch-demo.XXXXXX)
nats_pid="" orchd_pid=""

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
  echo "demo: stopping orchd and nats-server"
  [ -n "$orchd_pid" ] && kill -TERM "$orchd_pid" 2>/dev/null && wait "$orchd_pid" 2>/dev/null || true
  [ -n "$nats_pid" ] && kill -TERM "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
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

"$bin/orchd" --config /dev/null --node-name demo-1 --label zone=demo --label role=gateway \
  --state-dir "$work/state" --run-dir "$work/run" --nats-url "$url" &
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
echo "demo: try it from another terminal:  $bin/orchctl --server $url version"
echo "demo: Ctrl-C stops nats-server and orchd"

if [ -n "${DEMO_DURATION:-}" ]; then
  sleep "$DEMO_DURATION"
  exit 0
fi
wait "$orchd_pid"
