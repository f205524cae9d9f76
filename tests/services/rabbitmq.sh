#!/usr/bin/env bash
# RabbitMQ (AMQP 0-9-1) for tests, from Debian bookworm's rabbitmq-server 3.10.x.
# (The project's copy of a recipe verified on the CI machine kind; .ci/run calls it before the
# tests. tests/notifier.rs uses the broker at 127.0.0.1:5672 with guest/guest.)
#
#   rabbitmq.sh [start]  if a broker already accepts guest/guest on 127.0.0.1:$RABBITMQ_PORT
#                        (pre-started machine kind, or an earlier run) do nothing; else install
#                        if missing, start our own node on loopback, wait until it accepts logins
#   rabbitmq.sh stop     stop the node this script started (never one it did not start)
#   rabbitmq.sh status   exit 0 if guest/guest can log in
#   rabbitmq.sh env      print export lines
#   rabbitmq.sh ctl ARGS rabbitmqctl ARGS against the node this script started
#   rabbitmq.sh reset    stop and delete our node's data
#
# Endpoint : amqp://guest:guest@127.0.0.1:5672/   (vhost "/")
# Env      : RABBITMQ_PORT (5672), RABBITMQ_MANAGEMENT=1 -> management UI/API on 127.0.0.1:15672,
#            RABBITMQ_USER/RABBITMQ_PASSWORD (guest/guest): login that identifies a pre-started broker
# Data     : /var/tmp/svc-rabbitmq (mnesia, logs)
set -euo pipefail
SVC_NAME=rabbitmq
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PORT=${RABBITMQ_PORT:-5672}
BASE=$SVC_ROOT/svc-rabbitmq
[ "$PORT" = 5672 ] || BASE=$SVC_ROOT/svc-rabbitmq-$PORT
RUN=$BASE/run
LOGD=$BASE/log
if [ "$PORT" = 5672 ]; then NODE=${RABBITMQ_NODENAME:-rabbit@localhost}; else NODE=${RABBITMQ_NODENAME:-rabbit$PORT@localhost}; fi
MGMT=${RABBITMQ_MANAGEMENT:-0}
MGMT_PORT=${RABBITMQ_MANAGEMENT_PORT:-15672}
APT_LOG=/tmp/svc-apt-rabbitmq.log
RUSER=${RABBITMQ_USER:-guest}      # login used to recognise a pre-started broker; a node
RPASS=${RABBITMQ_PASSWORD:-guest}  # started here gets this user too (plus guest/guest)
URL="amqp://$RUSER:$RPASS@127.0.0.1:$PORT/"

print_env() {
  cat <<EOF
export RABBITMQ_URL=$URL
export RABBITMQ_HOST=127.0.0.1
export RABBITMQ_PORT=$PORT
export RABBITMQ_USER=$RUSER
export RABBITMQ_PASSWORD=$RPASS
export RABBITMQ_VHOST=/
EOF
}

# amqp_ping.py is stdlib-only Python 3; install Debian's interpreter if there is none.
command -v python3 >/dev/null || { need_root; apt_install python3; }

amqp_ok() { python3 "$HERE/amqp_ping.py" 127.0.0.1 "$PORT" "$RUSER" "$RPASS" / 2>/dev/null; }

# Environment for our node and for rabbitmqctl talking to it. Everything on loopback:
# AMQP listener, Erlang distribution port (PORT+20000), epmd, CLI distribution ports.
node_env() {
  echo HOME=/var/lib/rabbitmq                       # Erlang cookie lives there (rabbitmq user's home)
  echo RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"   # ignore /etc/rabbitmq/rabbitmq-env.conf
  echo RABBITMQ_NODENAME="$NODE"
  echo RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  echo RABBITMQ_NODE_PORT="$PORT"
  echo RABBITMQ_DIST_PORT="$((PORT + 20000))"
  echo ERL_EPMD_ADDRESS=127.0.0.1
  echo RABBITMQ_MNESIA_BASE="$BASE/mnesia"
  echo RABBITMQ_LOG_BASE="$LOGD"
  echo ERL_CRASH_DUMP="$LOGD/erl_crash.dump"
  echo RABBITMQ_PID_FILE="$RUN/beam.pid"
  echo RABBITMQ_CONFIG_FILE="$BASE/rabbitmq.conf"
  echo RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
  echo "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
  echo "RABBITMQ_CTL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}
ctl() {  # rabbitmqctl against our node, as the rabbitmq user (same Erlang cookie), 60 s max
  local envs=(); mapfile -t envs < <(node_env)
  timeout 60 runuser -u rabbitmq -- env "${envs[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE" "$@"
}

install() {
  need_root
  # On a machine without /usr/sbin/policy-rc.d the package's postinst would start Debian's
  # default node (rabbit@<hostname>, all interfaces, 5672); do_start re-checks afterwards.
  apt_install rabbitmq-server
}

write_config() {
  mkdir -p "$BASE/mnesia" "$RUN" "$LOGD"
  : >"$BASE/rabbitmq-env.conf"
  cat >"$BASE/rabbitmq.conf" <<EOF
loopback_users.guest = true
log.file.level = info
log.console = false
EOF
  if [ "$MGMT" = 1 ]; then
    echo '[rabbitmq_management].' >"$BASE/enabled_plugins"
    printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "$MGMT_PORT" >>"$BASE/rabbitmq.conf"
  else
    echo '[].' >"$BASE/enabled_plugins"
  fi
  chown -R rabbitmq:rabbitmq "$BASE"
}

do_start() {
  need_root
  if amqp_ok; then
    if pid_alive "$RUN/rabbitmq.pid"; then log "already running (started by this script), nothing to do"
    else log "a broker already accepts $RUSER/$RPASS on 127.0.0.1:$PORT (pre-started), using it"; fi
  else
    take_lock "$BASE"
    if port_open "$PORT"; then
      die "127.0.0.1:$PORT is open but $RUSER/$RPASS cannot log in (not RabbitMQ, or other credentials: set RABBITMQ_USER/RABBITMQ_PASSWORD; or set RABBITMQ_PORT to start our own on another port)"
    fi
    install
    if amqp_ok; then
      log "the package's postinst started a broker on $PORT, using it"
    else
      write_config
      stop_daemon "$RUN/rabbitmq.pid"   # stale group from an earlier run
      local envs=(); mapfile -t envs < <(node_env)
      start_daemon "$RUN/rabbitmq.pid" "$LOGD/console.log" \
        runuser -u rabbitmq -- env "${envs[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server
      wait_daemon "$RUN/rabbitmq.pid" "AMQP login guest/guest on 127.0.0.1:$PORT" "$SVC_TIMEOUT" \
          python3 "$HERE/amqp_ping.py" 127.0.0.1 "$PORT" guest guest / \
        || { tail -30 "$LOGD/console.log" >&2; ls "$LOGD" >&2; die "RabbitMQ did not come up (node exited, or no login within ${SVC_TIMEOUT}s); logs in $LOGD"; }
      if [ "$RUSER" != guest ]; then
        ctl add_user "$RUSER" "$RPASS" >/dev/null 2>&1 || ctl change_password "$RUSER" "$RPASS" >/dev/null
        ctl set_user_tags "$RUSER" administrator >/dev/null
        ctl set_permissions -p / "$RUSER" '.*' '.*' '.*' >/dev/null
        amqp_ok || die "could not create user $RUSER"
      fi
      if [ "$MGMT" = 1 ]; then
        wait_for "management API on 127.0.0.1:$MGMT_PORT" 60 curl -fsS -u guest:guest "http://127.0.0.1:$MGMT_PORT/api/overview" \
          || die "management plugin did not come up"
      fi
    fi
  fi
  mkdir -p "$BASE"; print_env >"$BASE/env.sh"
  log "healthy after $(elapsed)s"
  cat >&2 <<EOF
  AMQP  : $URL  (user $RUSER, password $RPASS, vhost /)
  env   : source $BASE/env.sh    stop: $0 stop
  ctl   : $0 ctl list_queues   (only for a node this script started)
EOF
}

do_stop() {
  if [ ! -s "$RUN/rabbitmq.pid" ]; then
    log "no node started by this script (pid file $RUN/rabbitmq.pid absent); a pre-started broker is left alone"
    return 0
  fi
  take_lock "$BASE"
  if pid_alive "$RUN/rabbitmq.pid"; then
    log "rabbitmqctl stop ($NODE)"
    ctl stop >/dev/null 2>&1 || log "rabbitmqctl stop failed, signalling the process group"
  fi
  stop_daemons "$RUN/rabbitmq.pid"
  # epmd (Erlang's port mapper, 127.0.0.1:4369) is spawned by the first Erlang node and
  # daemonises outside our process group. Stop it only when no node is registered any more.
  local names
  if names=$(ERL_EPMD_ADDRESS=127.0.0.1 epmd -names 2>/dev/null) && ! grep -q '^name ' <<<"$names"; then
    ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 && log "epmd stopped (no Erlang node left)"
  elif [ -n "${names:-}" ]; then
    log "epmd left running: other Erlang nodes are registered"
  fi
  log "stopped"
}

case "${1:-start}" in
  status) if amqp_ok; then log "healthy ($RUSER/$RPASS login on 127.0.0.1:$PORT)"; else log "NOT healthy"; exit 1; fi ;;
  ctl)    shift; ctl "$@" ;;
  *)      service_main "$@" ;;
esac
