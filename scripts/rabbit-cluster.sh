#!/usr/bin/env bash
# A local three-node RabbitMQ cluster on one machine, for tests and chaos runs: separate node
# names (mailroom-1..3@localhost), AMQP ports (5681..5683), distribution ports (25681..25683) and
# data directories, beside the machine's own broker on 5672 (which it never touches). Every node
# enables the consistent-hash exchange plugin (partitioned consumers need it).
#
#   scripts/rabbit-cluster.sh start          start the three nodes and join 2 and 3 to 1 (idempotent)
#   scripts/rabbit-cluster.sh stop           stop the three nodes (data is kept)
#   scripts/rabbit-cluster.sh destroy        stop them and delete their data
#   scripts/rabbit-cluster.sh status         which nodes run and the cluster's view of itself
#   scripts/rabbit-cluster.sh urls           the AMQP URLs, comma-separated (for MAILROOM_AMQP_URL)
#   scripts/rabbit-cluster.sh kill N         kill -9 node N's Erlang VM (a crash, no goodbye)
#   scripts/rabbit-cluster.sh start-node N   start node N again after a kill or a stop
#   scripts/rabbit-cluster.sh stop-app N     rabbitmqctl stop_app on node N (the VM stays up)
#   scripts/rabbit-cluster.sh start-app N    rabbitmqctl start_app on node N
#
# Environment: MAILROOM_CLUSTER_DIR (default /tmp/mailroom-rabbit-cluster), MAILROOM_CLUSTER_PORT
# (the first node's AMQP port, default 5681). Needs rabbitmq-server and rabbitmqctl (Debian's
# rabbitmq-server package) and the epmd they start; as root the nodes run as the rabbitmq user.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

dir="${MAILROOM_CLUSTER_DIR:-/tmp/mailroom-rabbit-cluster}"
base_port="${MAILROOM_CLUSTER_PORT:-5681}"
nodes=(1 2 3)

node_name() { echo "mailroom-$1@localhost"; }
node_port() { echo $((base_port + $1 - 1)); }
ctl() { local n=$1; shift; rabbitmqctl -q -n "$(node_name "$n")" "$@"; }

running() { ctl "$1" ping >/dev/null 2>&1; }

start_node() {
  local n=$1 home="$dir/node$1" port
  port=$(node_port "$n")
  if running "$n"; then return 0; fi
  mkdir -p "$home"
  echo "listeners.tcp.local = 127.0.0.1:$port" >"$home/rabbitmq.conf"
  # Quorum queues need no more than this on one machine; keep the disk alarm out of the way.
  echo "disk_free_limit.absolute = 50MB" >>"$home/rabbitmq.conf"
  echo '[rabbitmq_consistent_hash_exchange].' >"$home/enabled_plugins"
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$dir"; fi
  (
    cd "$home"
    # The node outlives this script: it must not inherit our open descriptors (a test runner's
    # pipes, a lock file held with flock), or whoever waits on them waits for the node's death.
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT="$port" \
    RABBITMQ_DIST_PORT=$((port + 20000)) \
    RABBITMQ_CONFIG_FILE="$home/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$home/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$home/mnesia" \
    RABBITMQ_LOG_BASE="$home/log" \
    RABBITMQ_PID_FILE="$home/pid" \
      rabbitmq-server -detached
  )
  # -detached returns before the node registers with epmd: wait for it, then for the broker.
  for _ in $(seq 1 60); do
    ctl "$n" await_startup --timeout 60 >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "node $(node_name "$n") did not start; see $home/log" >&2
  return 1
}

join_node() {
  local n=$1
  if ctl "$n" cluster_status --formatter json 2>/dev/null | grep -q "running_nodes.*$(node_name 1)"; then return 0; fi
  # The CLI prints the joining node's start-up warnings on stderr; keep them for a failure only.
  local log="$dir/node$n/join.log"
  { ctl "$n" stop_app && ctl "$n" reset && ctl "$n" join_cluster "$(node_name 1)" && ctl "$n" start_app; } >"$log" 2>&1 \
    || { cat "$log" >&2; return 1; }
}

case "${1:-}" in
  start)
    # In parallel: the nodes of a cluster that was stopped each wait at boot for their peers, so
    # starting them one after the other would wait out that timeout on the first.
    pids=()
    for n in "${nodes[@]}"; do start_node "$n" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid"; done
    for n in 2 3; do join_node "$n"; done
    echo "cluster up: $("$0" urls)"
    ;;
  stop)
    for n in "${nodes[@]}"; do running "$n" && ctl "$n" stop || true; done
    ;;
  destroy)
    "$0" stop
    rm -rf "$dir"
    ;;
  status)
    for n in "${nodes[@]}"; do
      if running "$n"; then echo "$(node_name "$n") up (amqp $(node_port "$n"))"; else echo "$(node_name "$n") down"; fi
    done
    for n in "${nodes[@]}"; do
      if running "$n"; then
        echo "running nodes, as $(node_name "$n") sees them:"
        ctl "$n" cluster_status --formatter json 2>/dev/null | node -e 'for (const name of JSON.parse(require("fs").readFileSync(0, "utf8")).running_nodes) console.log("  " + name)'
        break
      fi
    done
    ;;
  urls)
    urls=()
    for n in "${nodes[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$(node_port "$n")"); done
    (IFS=,; echo "${urls[*]}")
    ;;
  kill)
    n=${2:?node number}
    pid=$(cat "$dir/node$n/pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    ;;
  start-node) start_node "${2:?node number}" ;;
  stop-app) ctl "${2:?node number}" stop_app ;;
  start-app) ctl "${2:?node number}" start_app ;;
  *)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
