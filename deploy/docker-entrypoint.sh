#!/bin/sh
# Entry point of the dataswarm images: a thin wrapper around the `dataswarm` command.
#
#   docker-entrypoint.sh provision-coordinator-key KEY_FILE PEER_FILE
#       Create the coordinator's Ed25519 key at KEY_FILE if it is missing (never replaced),
#       then write its peer ID, alone on one line, to PEER_FILE. The compose file runs this
#       once as the `keys` init service: KEY_FILE stays on the coordinator's private volume,
#       PEER_FILE goes to a volume the nodes mount read-only.
#
#   docker-entrypoint.sh ARGS...
#       `exec dataswarm ARGS...`. Before that, when DATASWARM_COORDINATOR_PEER_FILE is set
#       (the all-in-one compose file sets it for nodes), the coordinator's peer ID is read
#       from that file and, unless already set, exported as
#         DATASWARM_NODE_TRUSTED_COORDINATORS='["<peer id>"]'
#         DATASWARM_NODE_BOOTSTRAP='["/ip4/<address>/tcp/<port>/p2p/<peer id>"]'
#       where <address> is DATASWARM_COORDINATOR_HOST resolved now with the system resolver
#       (getent: /etc/hosts and Docker's DNS) and <port> is DATASWARM_COORDINATOR_PORT (4001).
#       The name is resolved here, once, because py-libp2p resolves /dns4 names through its
#       own DNS client, which does not read /etc/hosts; an /ip4 address always dials.
#
# Values set explicitly (DATASWARM_NODE_* in the environment, or a --config file plus flags)
# are never overridden: the peer-file path is only a convenience for the compose setup.
set -eu

log() { echo "docker-entrypoint: $*" >&2; }

peer_id_of() {
    # `dataswarm keys show` prints "peer id     12D3KooW…"; keep the ID only.
    dataswarm keys show --path "$1" | awk '$1 == "peer" && $2 == "id" { print $3; exit }'
}

if [ "${1:-}" = "provision-coordinator-key" ]; then
    key=${2:?usage: provision-coordinator-key KEY_FILE PEER_FILE}
    peer_file=${3:?usage: provision-coordinator-key KEY_FILE PEER_FILE}
    if [ -f "$key" ]; then
        log "keeping the existing key $key"
    else
        mkdir -p "$(dirname "$key")"
        dataswarm keys generate --role coordinator --path "$key" >&2
    fi
    peer=$(peer_id_of "$key")
    [ -n "$peer" ] || { log "could not read a peer ID from $key"; exit 1; }
    mkdir -p "$(dirname "$peer_file")"
    printf '%s\n' "$peer" > "$peer_file.tmp"
    mv "$peer_file.tmp" "$peer_file"
    log "coordinator peer ID $peer written to $peer_file"
    exit 0
fi

if [ -n "${DATASWARM_COORDINATOR_PEER_FILE:-}" ]; then
    waited=0
    while [ ! -s "$DATASWARM_COORDINATOR_PEER_FILE" ]; do
        if [ "$waited" -ge "${DATASWARM_PEER_FILE_WAIT_S:-60}" ]; then
            log "$DATASWARM_COORDINATOR_PEER_FILE did not appear: is the keys service done?"
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    peer=$(head -n 1 "$DATASWARM_COORDINATOR_PEER_FILE" | tr -d '[:space:]')
    if [ -z "${DATASWARM_NODE_TRUSTED_COORDINATORS:-}" ]; then
        export DATASWARM_NODE_TRUSTED_COORDINATORS="[\"$peer\"]"
    fi
    if [ -z "${DATASWARM_NODE_BOOTSTRAP:-}" ] && [ -n "${DATASWARM_COORDINATOR_HOST:-}" ]; then
        address=$(getent ahostsv4 "$DATASWARM_COORDINATOR_HOST" | awk 'NR == 1 { print $1 }')
        if [ -z "$address" ]; then
            log "cannot resolve DATASWARM_COORDINATOR_HOST=$DATASWARM_COORDINATOR_HOST"
            exit 1
        fi
        export DATASWARM_NODE_BOOTSTRAP="[\"/ip4/$address/tcp/${DATASWARM_COORDINATOR_PORT:-4001}/p2p/$peer\"]"
    fi
    log "trusting $DATASWARM_NODE_TRUSTED_COORDINATORS; bootstrap ${DATASWARM_NODE_BOOTSTRAP:-(none)}"
fi

exec dataswarm "$@"
