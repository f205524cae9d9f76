#!/usr/bin/env bash
# Single-node OpenStack Swift ("all-in-one") with tempauth and the s3api
# middleware, from Debian bookworm packages (swift 2.30.x), on loopback: the real
# Swift and S3 servers of glance-rs's store tests (see tests/services/README.md).
# Idempotent: installs packages only when missing, reuses a running healthy Swift.
#
#   swift-s3.sh [start]   install if missing, start if not running, wait healthy (default)
#   swift-s3.sh stop      stop everything this script started
#   swift-s3.sh status    exit 0 if healthy
#   swift-s3.sh env       print export lines (eval "$(swift-s3.sh env)")
#   swift-s3.sh reset     stop and delete all data/rings (next start is fresh)
#
# Swift API : http://127.0.0.1:8080/auth/v1.0  (X-Auth-User test:tester, X-Auth-Key testing)
# S3 API    : http://127.0.0.1:8080  access key test:tester  secret testing  region us-east-1
# Data      : /var/tmp/svc-swift   (override the parent with SVC_ROOT)
set -euo pipefail
SVC_NAME=swift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

BASE=$SVC_ROOT/svc-swift
ETC=$BASE/etc        # rings + server configs (swift_dir)
DATA=$BASE/data      # "devices"; d1 is the one and only device
RUN=$BASE/run        # pid files, recon cache
LOGD=$BASE/log
PROXY_PORT=${SWIFT_PROXY_PORT:-8080}
MEMCACHED_PORT=${SWIFT_MEMCACHED_PORT:-11211}
OBJ_PORT=6200 CONT_PORT=6201 ACCT_PORT=6202
URL=http://127.0.0.1:$PROXY_PORT
APT_LOG=/tmp/svc-apt-swift.log
SERVERS="account container object proxy"

print_env() {
  cat <<EOF
export SWIFT_AUTH_URL=$URL/auth/v1.0
export SWIFT_USER=test:tester
export SWIFT_KEY=testing
export SWIFT_STORAGE_URL=$URL/v1/AUTH_test
export S3_ENDPOINT=$URL
export S3_ACCESS_KEY=test:tester
export S3_SECRET_KEY=testing
export S3_REGION=us-east-1
EOF
}

install() {
  need_root
  apt_install swift swift-proxy swift-object swift-container swift-account memcached curl
  # The servers always read /etc/swift/swift.conf (hash prefix/suffix and storage
  # policies), whatever swift_dir says. The Debian package ships a usable one;
  # only write ours if it is missing or lacks the hash settings.
  if ! grep -qs '^swift_hash_path_suffix' /etc/swift/swift.conf; then
    mkdir -p /etc/swift
    cat >/etc/swift/swift.conf <<'EOF'
[swift-hash]
swift_hash_path_suffix = svc-test-suffix
swift_hash_path_prefix = svc-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
EOF
  fi
}

write_configs() {
  mkdir -p "$ETC" "$DATA/d1" "$RUN/recon" "$LOGD"
  local common="bind_ip = 127.0.0.1
workers = 1
user = swift
swift_dir = $ETC
devices = $DATA
mount_check = false
log_level = INFO
recon_cache_path = $RUN/recon"

  cat >"$ETC/account-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $ACCT_PORT
log_name = account-server

[pipeline:main]
pipeline = healthcheck recon account-server

[app:account-server]
use = egg:swift#account

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon

[account-replicator]
[account-auditor]
[account-reaper]
EOF

  cat >"$ETC/container-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $CONT_PORT
log_name = container-server

[pipeline:main]
pipeline = healthcheck recon container-server

[app:container-server]
use = egg:swift#container

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon

[container-replicator]
[container-updater]
[container-auditor]
[container-sync]
[container-sharder]
EOF

  cat >"$ETC/object-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $OBJ_PORT
log_name = object-server

[pipeline:main]
pipeline = healthcheck recon object-server

[app:object-server]
use = egg:swift#object

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon

[object-replicator]
[object-reconstructor]
[object-updater]
[object-auditor]
EOF

  # s3api must sit just before the auth filter (tempauth) and before slo/dlo
  # (multipart upload is built on SLO). tempauth needs memcache ("cache").
  cat >"$ETC/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY_PORT
workers = 1
user = swift
swift_dir = $ETC
log_name = proxy-server
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl ratelimit s3api tempauth copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
# path-style only (no storage_domain => no virtual-hosted buckets)
dns_compliant_bucket_names = true
s3_acl = false
allowable_clock_skew = 900

[filter:tempauth]
use = egg:swift#tempauth
# user_<account>_<user> = <key> [group] ...   ->  account AUTH_<account>
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin
user_test_tester3 = testing3
user_test2_tester2 = testing2 .admin
token_life = 86400

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:ratelimit]
use = egg:swift#ratelimit

[filter:copy]
use = egg:swift#copy

[filter:container-quotas]
use = egg:swift#container_quotas

[filter:account-quotas]
use = egg:swift#account_quotas

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true

[filter:symlink]
use = egg:swift#symlink
EOF
}

build_rings() {
  local t port
  for t in account container object; do
    [ -s "$ETC/$t.ring.gz" ] && continue
    case $t in account) port=$ACCT_PORT;; container) port=$CONT_PORT;; object) port=$OBJ_PORT;; esac
    log "building $t ring (part power 8, 1 replica, device d1 on 127.0.0.1:$port)"
    rm -f "$ETC/$t.builder"
    swift-ring-builder "$ETC/$t.builder" create 8 1 1 >/dev/null
    swift-ring-builder "$ETC/$t.builder" add "r1z1-127.0.0.1:$port/d1" 100 >/dev/null
    swift-ring-builder "$ETC/$t.builder" rebalance >/dev/null || true  # exit 1 = warning only
    [ -s "$ETC/$t.ring.gz" ] || die "failed to build $t ring"
  done
  chown -R swift:swift "$DATA" "$RUN"
}

start_memcached() {
  if port_open "$MEMCACHED_PORT"; then
    pid_alive "$RUN/memcached.pid" || log "memcached: something already listens on 127.0.0.1:$MEMCACHED_PORT, reusing it"
    return 0
  fi
  start_daemon "$RUN/memcached.pid" "$LOGD/memcached.log" \
    memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -u memcache
  wait_daemon "$RUN/memcached.pid" "memcached on 127.0.0.1:$MEMCACHED_PORT" 20 port_open "$MEMCACHED_PORT" \
    || die "memcached did not start; see $LOGD/memcached.log"
}

server_port() { case $1 in account) echo $ACCT_PORT;; container) echo $CONT_PORT;; object) echo $OBJ_PORT;; proxy) echo "$PROXY_PORT";; esac; }

healthcheck_ok() { [ "$(curl -fsS --max-time 3 "http://127.0.0.1:$1/healthcheck" 2>/dev/null)" = OK ]; }

# A port held by something this script did not start -> stop with a clear message
# (checked before any config is rewritten).
check_port() {
  local s=$1 port; port=$(server_port "$s")
  if port_foreign "$port" "$RUN/$s.pid"; then
    die "port 127.0.0.1:$port ($s-server) is taken by a process this script did not start; stop that process (the proxy port can also be moved with SWIFT_PROXY_PORT)"
  fi
}

start_server() {
  local s=$1 port; port=$(server_port "$s")
  if pid_alive "$RUN/$s.pid" && healthcheck_ok "$port"; then return 0; fi
  check_port "$s"
  stop_daemon "$RUN/$s.pid"   # stale pid file / half-dead group
  # -v: also log to stdout (there is no syslog daemon); file is $LOGD/$s.log
  start_daemon "$RUN/$s.pid" "$LOGD/$s.log" "swift-$s-server" "$ETC/$s-server.conf" -v
}

# Full check: every server answers /healthcheck, tempauth issues a token,
# and the account answers HEAD through the proxy.
auth_token=
storage_url=
swift_auth() {
  local hdrs
  hdrs=$(curl -fsS --max-time 5 -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' "$URL/auth/v1.0") || return 1
  auth_token=$(printf '%s' "$hdrs" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-auth-token"{print $2}')
  storage_url=$(printf '%s' "$hdrs" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-storage-url"{print $2}')
  [ -n "$auth_token" ] && [ -n "$storage_url" ]
}
healthy() {
  local s
  for s in $SERVERS; do healthcheck_ok "$(server_port "$s")" || return 1; done
  swift_auth || return 1
  curl -fsS --max-time 5 -o /dev/null -I -H "X-Auth-Token: $auth_token" "$storage_url"
}

# One real write/read/delete round trip through the proxy (object server + xattrs).
smoke() {
  local c="$storage_url/svc-smoke-$$" body
  curl -fsS --max-time 10 -o /dev/null -X PUT -H "X-Auth-Token: $auth_token" "$c" || return 1
  curl -fsS --max-time 10 -o /dev/null -X PUT -H "X-Auth-Token: $auth_token" --data-binary 'hello' "$c/o" || return 1
  body=$(curl -fsS --max-time 10 -H "X-Auth-Token: $auth_token" "$c/o") || return 1
  curl -fsS --max-time 10 -o /dev/null -X DELETE -H "X-Auth-Token: $auth_token" "$c/o" || true
  curl -fsS --max-time 10 -o /dev/null -X DELETE -H "X-Auth-Token: $auth_token" "$c" || true
  [ "$body" = hello ]
  # S3 side: an unsigned request must be answered by s3api with an S3 XML error
  curl -sS --max-time 5 "$URL/" -H 'Authorization: AWS test:tester:bogus' | grep -q '<Error>' || return 1
}

do_start() {
  need_root
  take_lock "$BASE"
  if healthy; then
    log "already running and healthy (nothing to do)"
  else
    local s
    for s in $SERVERS; do check_port "$s"; done
    install
    write_configs
    build_rings
    start_memcached
    for s in $SERVERS; do start_server "$s"; done
    for s in $SERVERS; do
      wait_daemon "$RUN/$s.pid" "$s-server on 127.0.0.1:$(server_port "$s")" "$SVC_TIMEOUT" healthcheck_ok "$(server_port "$s")" \
        || { tail -20 "$LOGD/$s.log" >&2; die "$s-server not healthy (timeout ${SVC_TIMEOUT}s); log: $LOGD/$s.log"; }
    done
    wait_for "tempauth + account HEAD" "$SVC_TIMEOUT" healthy \
      || { tail -20 "$LOGD/proxy.log" >&2; die "proxy up but auth/account check fails; log: $LOGD/proxy.log"; }
  fi
  smoke || { tail -20 "$LOGD/proxy.log" >&2; die "smoke test (PUT/GET/DELETE object, S3 error reply) failed"; }
  print_env >"$BASE/env.sh"
  log "healthy after $(elapsed)s"
  cat >&2 <<EOF
  Swift : auth v1.0  $URL/auth/v1.0   user test:tester  key testing  (account AUTH_test, storage $URL/v1/AUTH_test)
          also test:tester3/testing3 (non-admin, AUTH_test), test2:tester2/testing2 (AUTH_test2), admin:admin/admin (reseller)
  S3    : $URL (path-style)  access key test:tester  secret testing  region us-east-1  (SigV4 and SigV2)
  env   : source $BASE/env.sh   logs: $LOGD/   stop: $0 stop
EOF
}

do_stop() {
  take_lock "$BASE"
  stop_daemons "$RUN/proxy.pid" "$RUN/object.pid" "$RUN/container.pid" "$RUN/account.pid" "$RUN/memcached.pid"
  log "stopped"
}

service_main "$@"
