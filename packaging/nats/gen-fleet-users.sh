#!/bin/bash
# gen-fleet-users.sh: the NATS accounts block for an Orchestrator fleet (docs/nats-security.md).
#
#   gen-fleet-users.sh [--account NAME] --operator UKEY... [--operator-without RIGHTS=UKEY...] [--scheduler NODE=UKEY...] [--node NODE=UKEY...] > fleet-users.conf
#
# Every user is an nkey user (the public key U…; the node keeps the seed SU… in the file that
# orchd's nats.nkey_seed_file names). Three kinds of user:
#   --node NODE=UKEY       a worker node (fleet.scheduler: false): publishes its own heartbeat and
#                          events, reads its own requests and its own assignments, nothing else
#   --scheduler NODE=UKEY  a node that may take the scheduler lease: a worker's rights plus
#                          reading every bucket and writing assignments, the lease and status
#   --operator UKEY        orchctl (and `orchd image push --nats`): the whole fleet
#   --operator-without RIGHTS=UKEY
#                          an operator without some of the rights that reach into a device:
#                          RIGHTS is a comma list of exec (and attach), cp and forward (port-forward), e.g.
#                          forward=U… or exec,cp,forward=U… (the server refuses those requests)
# The server config includes the output (`include fleet-users.conf`, see fleet-server.conf).
# Keys: `orchctl keys create -o node.seed` (prints the public key), or `nk -gen user -pubout`.
set -euo pipefail

account=ORCH
operators=() restricted=() schedulers=() nodes=()
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --account) account=${2:?--account needs a name}; shift 2 ;;
        --operator) operators+=("${2:?--operator needs a public key}"); shift 2 ;;
        --operator-without) restricted+=("${2:?--operator-without needs RIGHTS=UKEY}"); shift 2 ;;
        --scheduler) schedulers+=("${2:?--scheduler needs NODE=UKEY}"); shift 2 ;;
        --node) nodes+=("${2:?--node needs NODE=UKEY}"); shift 2 ;;
        -h|--help) usage ;;
        *) echo "gen-fleet-users.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
[ $((${#operators[@]} + ${#restricted[@]})) -gt 0 ] || { echo "gen-fleet-users.sh: give at least one --operator UKEY (orchctl needs one)" >&2; exit 2; }

check_key() {
    [[ "$1" =~ ^U[A-Z2-7]{55}$ ]] || { echo "gen-fleet-users.sh: '$1' is not a public user nkey (U followed by 55 base32 characters)" >&2; exit 2; }
}
check_node() {
    [[ "$1" =~ ^[A-Za-z0-9_-]{1,63}$ ]] || { echo "gen-fleet-users.sh: '$1' is not a node name (1-63 letters, digits, '-', '_')" >&2; exit 2; }
}

buckets=(orch-nodes orch-deployments orch-assignments orch-leader orch-deployment-status orch-node-settings orch-endpoints)

q() { printf '"%s"' "$1"; }
list() { local first=1; for s in "$@"; do [ $first = 1 ] || printf ', '; q "$s"; first=0; done; }

# What every node needs: its own heartbeat, events and replies; opening the fleet's buckets;
# its own assignments, through a consumer whose filter is in the API subject (nats-server
# refuses a filter in the body that differs from the subject's).
node_publish() {
    local n=$1
    local s=("\$KV.orch-nodes.$n" "orch.events.$n.>" "_INBOX.>")
    for b in "${buckets[@]}"; do s+=("\$JS.API.STREAM.INFO.KV_$b"); done
    s+=("\$JS.API.CONSUMER.CREATE.KV_orch-assignments.*.\$KV.orch-assignments.$n")
    # The events stream is looked up (STREAM.INFO) and created only by a scheduler when missing.
    s+=("\$JS.API.STREAM.INFO.ORCH_EVENTS")
    # Images from the fleet's object store (orchd image pull nats:…), read only.
    s+=("\$JS.API.STREAM.INFO.OBJ_orch-images" "\$JS.API.CONSUMER.CREATE.OBJ_orch-images.>" "\$JS.API.DIRECT.GET.OBJ_orch-images.>" "\$JS.API.STREAM.MSG.GET.OBJ_orch-images")
    # Signed orchd releases (orchd release rollout asks the node on orch.node.<n>.update.*), read only.
    s+=("\$JS.API.STREAM.INFO.OBJ_orch-releases" "\$JS.API.CONSUMER.CREATE.OBJ_orch-releases.>" "\$JS.API.DIRECT.GET.OBJ_orch-releases.>" "\$JS.API.STREAM.MSG.GET.OBJ_orch-releases")
    # Its own sealed copies of the fleet's secrets (NAME.VERSION.NODE: no other node's, no escrow copy), and configs.
    s+=("\$JS.API.STREAM.INFO.KV_orch-secrets" "\$JS.API.DIRECT.GET.KV_orch-secrets.\$KV.orch-secrets.*.*.$n"
        "\$JS.API.STREAM.INFO.KV_orch-configs" "\$JS.API.DIRECT.GET.KV_orch-configs.\$KV.orch-configs.>")
    # The operators' variables (orchctl env), watched: every scope, as they are not secret.
    s+=("\$JS.API.STREAM.INFO.KV_orch-variables" "\$JS.API.CONSUMER.CREATE.KV_orch-variables.>")
    # Deployment names across nodes: its own endpoints written, everyone's watched, and a
    # connection to another node's ready replica (connect answers for those only, docs/node.md).
    s+=("\$KV.orch-endpoints.$n" "\$JS.API.CONSUMER.CREATE.KV_orch-endpoints.>" "orch.node.*.connect" "orch.node.*.connect.*")
    list "${s[@]}"
}
node_subscribe() {
    local n=$1
    list "orch.node.$n.>" "orch.fleet.info" "_INBOX_$n.>"
}
scheduler_publish() {
    local n=$1
    node_publish "$n"
    local s=()
    for b in "${buckets[@]}"; do
        # CREATE only: it makes a missing bucket and cannot change one that exists (the server
        # refuses a create whose config differs). No UPDATE, DELETE or PURGE: a scheduler's
        # seed must not be able to shorten max_age and erase the fleet's desired state.
        s+=("\$JS.API.STREAM.CREATE.KV_$b"
            "\$JS.API.CONSUMER.CREATE.KV_$b.>" "\$JS.API.DIRECT.GET.KV_$b" "\$JS.API.DIRECT.GET.KV_$b.>" "\$JS.API.STREAM.MSG.GET.KV_$b")
    done
    s+=("\$JS.API.STREAM.CREATE.ORCH_EVENTS" "\$KV.orch-assignments.>" "\$KV.orch-leader.scheduler" "\$KV.orch-deployment-status.>")
    printf ', '; list "${s[@]}"
}
scheduler_subscribe() {
    node_subscribe "$1"; printf ', '; list "orch.metrics.>"
}

echo "# Generated by packaging/nats/gen-fleet-users.sh; docs/nats-security.md explains every line."
echo "accounts {"
echo "  $account {"
echo "    jetstream: enabled"
echo "    users: ["
for key in "${operators[@]}"; do
    check_key "$key"
    echo "      # operator (orchctl)"
    echo "      { nkey: $key, permissions: {"
    echo "          publish: { allow: [$(list 'orch.>' '$KV.>' '$O.>' '$JS.API.>' '$JS.ACK.>' '$JS.FC.>' '_INBOX.>')] }"
    echo "          subscribe: { allow: [$(list '_INBOX.>' 'orch.events.>' 'orch.metrics.>')] }"
    echo "          allow_responses: true } }"
done
for entry in "${restricted[@]}"; do
    rights=${entry%%=*} key=${entry#*=}; check_key "$key"
    deny=()
    IFS=, read -ra names <<< "$rights"
    for r in "${names[@]}"; do
        case "$r" in
            exec) deny+=('orch.node.*.exec' 'orch.node.*.exec.>' 'orch.node.*.attach' 'orch.node.*.attach.>') ;;
            cp) deny+=('orch.node.*.cp' 'orch.node.*.cp.>') ;;
            forward) deny+=('orch.node.*.port-forward' 'orch.node.*.port-forward.>') ;;
            *) echo "gen-fleet-users.sh: --operator-without: '$r' is not a right to take away (exec, cp, forward)" >&2; exit 2 ;;
        esac
    done
    echo "      # operator (orchctl) without: $rights"
    echo "      { nkey: $key, permissions: {"
    echo "          publish: { allow: [$(list 'orch.>' '$KV.>' '$O.>' '$JS.API.>' '$JS.ACK.>' '$JS.FC.>' '_INBOX.>')], deny: [$(list "${deny[@]}")] }"
    echo "          subscribe: { allow: [$(list '_INBOX.>' 'orch.events.>' 'orch.metrics.>')] }"
    echo "          allow_responses: true } }"
done
for entry in "${schedulers[@]}"; do
    n=${entry%%=*} key=${entry#*=}; check_node "$n"; check_key "$key"
    echo "      # scheduler-eligible node $n (fleet.scheduler: true)"
    echo "      { nkey: $key, permissions: {"
    echo "          publish: { allow: [$(scheduler_publish "$n")] }"
    echo "          subscribe: { allow: [$(scheduler_subscribe "$n")] }"
    echo "          allow_responses: true } }"
done
for entry in "${nodes[@]}"; do
    n=${entry%%=*} key=${entry#*=}; check_node "$n"; check_key "$key"
    echo "      # worker node $n (fleet.scheduler: false)"
    echo "      { nkey: $key, permissions: {"
    echo "          publish: { allow: [$(node_publish "$n")] }"
    echo "          subscribe: { allow: [$(node_subscribe "$n")] }"
    echo "          allow_responses: true } }"
done
echo "    ]"
echo "  }"
echo "}"
