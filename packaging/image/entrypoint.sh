#!/bin/sh
# mqnode's container entrypoint (dash, builtins only: the image has no other tools).
# The environment becomes mqnode's command line and, unless a config file is mounted, its
# config, as RabbitMQ's image turns RABBITMQ_* variables into rabbitmq.conf:
#
#   MQNODE_ROLE          --role (default disc)
#   MQNODE_CONFIG        a mounted config file (default /etc/mqnode/mqnode.json); when it
#                        exists it is used as it is and the variables below are not read
#   MQNODE_NODE_NAME     /node/name (default: the container's host name)
#   MQNODE_DEFAULT_USER  the administrator user (default guest, usable from any address as
#   MQNODE_DEFAULT_PASS  in RabbitMQ's image; its password, default guest)
#   MQNODE_CLUSTER       1: the node is clusterable (/cluster on port 25672; join with
#                        `mqnode ctl join_cluster`)
#   MQNODE_CLUSTER_SEEDS with MQNODE_CLUSTER: node names (comma list) whose cluster the node
#                        joins on its first start (/cluster/seeds), instead of join_cluster
#   MQNODE_COOKIE        the cluster cookie, written to <data_dir>/.cookie (mode 0600)
#   MQNODE_COOKIE_FILE   or: the cookie's file (a mounted secret), /node/cookie_file
#   MQNODE_LOG_LEVEL     --log-level (default info)
#
# `mqnode-entrypoint healthcheck` is the image's HEALTHCHECK: the node answers on its
# control socket and no module reports itself down. Any other first argument that is not
# an option is run as a command (`podman run IMAGE mqnode ctl ...`).
set -eu
data=/var/lib/mqnode
config=${MQNODE_CONFIG:-/etc/mqnode/mqnode.json}

die() { echo "mqnode-entrypoint: $*" >&2; exit 2; }

if [ "${1:-}" = healthcheck ]; then
  status=$(/usr/local/bin/mqnode ctl --data-dir "$data" status) || exit 1
  case "$status" in
    *'"state": "down"'*) echo "$status" >&2; exit 1 ;;
  esac
  exit 0
fi
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then exec "$@"; fi

# A value put into JSON between quotes: refuse what would need escaping.
json_safe() {
  case "$2" in
    *[\"\\]* | *[![:print:]]*) die "$1: quotes, backslashes and control characters are not supported" ;;
  esac
}

if [ ! -f "$config" ]; then
  name=${MQNODE_NODE_NAME:-}
  [ -n "$name" ] || IFS= read -r name < /proc/sys/kernel/hostname || name=mqnode
  user=${MQNODE_DEFAULT_USER:-guest}
  pass=${MQNODE_DEFAULT_PASS:-guest}
  json_safe MQNODE_NODE_NAME "$name"
  json_safe MQNODE_DEFAULT_USER "$user"
  [ -n "$user" ] || die "MQNODE_DEFAULT_USER: empty"
  hash=$(/usr/local/bin/mqnode hash_password "$pass")
  cookie_key=""
  if [ -n "${MQNODE_COOKIE_FILE:-}" ]; then
    json_safe MQNODE_COOKIE_FILE "$MQNODE_COOKIE_FILE"
    cookie_key=", \"cookie_file\": \"$MQNODE_COOKIE_FILE\""
  fi
  cluster=""
  seeds=""
  if [ -n "${MQNODE_CLUSTER_SEEDS:-}" ]; then
    json_safe MQNODE_CLUSTER_SEEDS "$MQNODE_CLUSTER_SEEDS"
    old_ifs=$IFS
    IFS=,
    for s in $MQNODE_CLUSTER_SEEDS; do
      [ -n "$s" ] && seeds="$seeds${seeds:+, }\"$s\""
    done
    IFS=$old_ifs
    seeds=", \"seeds\": [ $seeds ]"
  fi
  case "${MQNODE_CLUSTER:-}" in
    1 | yes | true) cluster=',
  "cluster": { "bind": "0.0.0.0:25672"'"$seeds"' }' ;;
    "" | 0 | no | false) ;;
    *) die "MQNODE_CLUSTER: expected 1 or 0, got \"$MQNODE_CLUSTER\"" ;;
  esac
  config=/tmp/mqnode.json
  umask 077
  cat_config() {
    printf '%s\n' "// written by mqnode-entrypoint from the environment at container start
{
  \"node\": { \"name\": \"$name\", \"data_dir\": \"$data\"$cookie_key },
  \"broker\": {
    \"listeners\": [ { \"port\": 5672 } ],
    \"users\": [ { \"name\": \"$user\", \"password_hash\": \"$hash\", \"tags\": [ \"administrator\" ] } ],
    \"permissions\": [ { \"user\": \"$user\", \"vhost\": \"/\" } ],
    \"loopback_users\": []
  },
  \"management\": { \"bind\": \"0.0.0.0:15672\" }$cluster
}"
  }
  cat_config > "$config"
  umask 022
fi

if [ -n "${MQNODE_COOKIE:-}" ]; then
  cookie="$data/.cookie"
  if [ -f "$cookie" ]; then
    IFS= read -r old < "$cookie" || true
    if [ "$old" != "$MQNODE_COOKIE" ]; then
      (umask 077; printf '%s\n' "$MQNODE_COOKIE" > "$cookie") 2>/dev/null ||
        die "$cookie holds another cookie and cannot be rewritten; remove it from the volume"
    fi
  else
    (umask 077; printf '%s\n' "$MQNODE_COOKIE" > "$cookie")
  fi
fi

exec /usr/local/bin/mqnode --role "${MQNODE_ROLE:-disc}" --config "$config" --log-level "${MQNODE_LOG_LEVEL:-info}" "$@"
