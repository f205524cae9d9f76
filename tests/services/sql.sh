#!/usr/bin/env bash
# PostgreSQL and MariaDB for the registry's SQL backends (src/registry/sql, src/registry/migrate),
# from Debian's packages. .ci/run calls `start`, `setup` and `env` before the tests; the tests
# create a scratch database per test (glance_t_<pid>_<n>) next to glance_test and drop it.
#
#   sql.sh [start]  for each server not answering on 127.0.0.1 (5432, 3306): install it if
#                   missing and start it (the Debian cluster / the init script; no systemd
#                   needed); a server already answering is left as it is
#   sql.sh setup    make the test logins work (postgres trusted from 127.0.0.1 and the local
#                   socket; MariaDB root with an empty password over TCP and the socket) and
#                   create the database glance_test on both; idempotent
#   sql.sh status   exit 0 if both logins work and glance_test exists on both
#   sql.sh env      print export lines (GLANCE_TEST_PG_URL, GLANCE_TEST_MYSQL_URL)
#
# Endpoints: postgresql://postgres@127.0.0.1:5432/glance_test
#            mysql://root@127.0.0.1:3306/glance_test
# Both servers listen on loopback only (Debian's defaults: listen_addresses = 'localhost',
# bind-address = 127.0.0.1). These logins have no password: for test machines only.
set -euo pipefail
SVC_NAME=sql
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PG_PORT=5432
MY_PORT=3306
DB=glance_test
PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/$DB"
MY_URL="mysql://root@127.0.0.1:$MY_PORT/$DB"
BASE=$SVC_ROOT/svc-sql
APT_LOG=/tmp/svc-apt-sql.log

print_env() {
  cat <<EOF
export GLANCE_TEST_PG_URL=$PG_URL
export GLANCE_TEST_MYSQL_URL=$MY_URL
EOF
}

# The test logins, over TCP, never prompting for a password.
pg_tcp() { PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atq "$@"; }
my_tcp() { mysql --no-defaults --protocol=tcp -h 127.0.0.1 -P "$MY_PORT" -u root --connect-timeout=5 -N -B "$@"; }
# Administration through the local socket as the servers' superusers (peer / unix_socket
# authentication on a stock Debian installation).
pg_admin() { runuser -u postgres -- psql -X -p "$PG_PORT" -Atq "$@"; }
my_admin() { mysql --no-defaults --protocol=socket -u root -N -B "$@"; }

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -1; }

start_postgres() {
  if port_open "$PG_PORT"; then log "PostgreSQL already answers on 127.0.0.1:$PG_PORT"; return 0; fi
  apt_install postgresql
  local ver; ver=$(pg_version)
  [ -n "$ver" ] || die "postgresql is installed but /etc/postgresql has no version"
  if [ ! -d "/etc/postgresql/$ver/main" ]; then
    log "creating cluster $ver/main"
    pg_createcluster "$ver" main >/dev/null
  fi
  log "starting PostgreSQL $ver/main"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
    || pg_ctlcluster "$ver" main start
  wait_for "PostgreSQL on 127.0.0.1:$PG_PORT" "$SVC_TIMEOUT" port_open "$PG_PORT" \
    || die "PostgreSQL did not come up (see /var/log/postgresql/)"
}

start_mariadb() {
  if port_open "$MY_PORT"; then log "MariaDB already answers on 127.0.0.1:$MY_PORT"; return 0; fi
  apt_install mariadb-server
  log "starting MariaDB"
  install -d -o mysql -g mysql /run/mysqld
  if [ -x /etc/init.d/mariadb ]; then
    service mariadb start >/dev/null 2>&1 || /etc/init.d/mariadb start >/dev/null 2>&1 || true
  fi
  if ! port_open "$MY_PORT"; then
    # No init script or it failed (no systemd): run the daemon detached, as the machine
    # image does; it switches to the mysql user from Debian's my.cnf.
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  fi
  wait_for "MariaDB on 127.0.0.1:$MY_PORT" "$SVC_TIMEOUT" port_open "$MY_PORT" \
    || die "MariaDB did not come up (see /var/log/mysql/ or journal)"
}

setup_postgres() {
  command -v psql >/dev/null || apt_install postgresql-client
  if ! pg_tcp -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    local hba; hba=$(pg_admin -c 'SHOW hba_file')
    [ -f "$hba" ] || die "cannot find PostgreSQL's pg_hba.conf"
    if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
      log "trusting postgres from 127.0.0.1 in $hba (test machine)"
      # The first matching line wins: put ours first.
      sed -i '1i host all postgres 127.0.0.1/32 trust\nlocal all postgres trust' "$hba"
    fi
    pg_admin -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
    pg_tcp -d postgres -c 'SELECT 1' >/dev/null || die "postgres still cannot log in over TCP"
  fi
  if [ "$(pg_tcp -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    log "creating PostgreSQL database $DB"
    pg_tcp -d postgres -c "CREATE DATABASE $DB TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
  fi
}

setup_mariadb() {
  command -v mysql >/dev/null || apt_install mariadb-client
  if ! my_tcp -e 'SELECT 1' >/dev/null 2>&1; then
    log "letting root log in without a password over TCP (test machine)"
    my_admin <<'EOF' || die "cannot administer MariaDB through its socket as root"
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
EOF
    my_tcp -e 'SELECT 1' >/dev/null || die "root still cannot log in over TCP"
  fi
  my_tcp -e "CREATE DATABASE IF NOT EXISTS $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
}

healthy() {
  [ "$(pg_tcp -d "$DB" -c 'SELECT 1' 2>/dev/null)" = 1 ] \
    && [ "$(my_tcp -D "$DB" -e 'SELECT 1' 2>/dev/null)" = 1 ]
}

case "${1:-start}" in
  start)
    need_root
    take_lock "$BASE"
    start_postgres
    start_mariadb
    log "up after $(elapsed)s"
    ;;
  setup)
    need_root
    take_lock "$BASE"
    setup_postgres
    setup_mariadb
    healthy || die "the test logins or $DB do not work"
    log "ready after $(elapsed)s: $PG_URL, $MY_URL"
    ;;
  status) if healthy; then log "healthy"; else log "NOT healthy"; exit 1; fi ;;
  env)    print_env ;;
  *)      echo "usage: $0 [start|setup|status|env]" >&2; exit 2 ;;
esac
