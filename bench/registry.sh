#!/usr/bin/env bash
# Registry benchmark (issue 15, item 6): glance-api over each registry database backend,
# SQLite, PostgreSQL and MySQL/MariaDB, with IMAGES images (default 100,000; each with two
# properties, `os_distro` shared by one image in FILTER_EVERY):
#
#   creates/s    POST /v1/images (name and formats, no data) with 1 and with 16 clients
#   first page   GET /v1/images/detail?limit=100, 1 client: median and p99 latency, without
#                and with a property filter (?property-os_distro=cirros)
#   walk         every image in pages of 1,000 (limit=1000&marker=<last id>): total seconds
#   HEAD         HEAD /v1/images/<id> with 16 clients: requests/s
#   two nodes    (PostgreSQL) two glance-api over one database: HEAD and create rate of the
#                two (16 clients split over them, at the same time) against one node
#
# Usage: bash bench/registry.sh [--images N] [--seconds N] [--repeat N]
#            [--backends sqlite,postgresql,mysql] [--two-nodes postgresql] [--workers N]
#            [--filter-every N] [--pg-sslmode MODE] [--no-build] [--no-install] [--keep]
# Each backend's database is made for the run (SQLite: a file; PostgreSQL and MySQL: a
# database glance_bench_<pid> on 127.0.0.1, dropped at the end); a backend whose server does
# not answer, or that this build of glance-api cannot use, is skipped with a note. Needs wrk
# (installed from Debian's packages when missing, unless --no-install), python3, psql and
# mysql clients for those backends, and a release build (built unless --no-build). All
# traffic goes to 127.0.0.1. Exit status: 0 every target met, 1 a target missed, 2 setup.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"

IMAGES=100000
SECONDS_PER_ROUND=5
REPEAT=3
BACKENDS=sqlite,postgresql,mysql
TWO_NODES=postgresql
WORKERS=16
FILTER_EVERY=10     # one image in FILTER_EVERY has os_distro=cirros (the filtered listing)
BUILD=1
INSTALL=1
KEEP=0
CREATED_POLICY_RC=0
# The database servers (loopback only; trust auth / no password, as on the dev machine).
PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
PG_SSLMODE=""       # --pg-sslmode: appended to the PostgreSQL URL (default: none, i.e. prefer)
MY_HOST=127.0.0.1 MY_PORT=3306 MY_USER=root
DB_NAME=glance_bench_$$

# Targets (issue 15, item 6).
PAGE_TARGET_MS_SQLITE=2     # first page of 100 of 100,000, median
PAGE_TARGET_MS_SERVER=5     # the same on PostgreSQL and MySQL
CREATE_TARGET_PG=1000       # creates/s with 16 clients on PostgreSQL
TWO_NODE_TARGET=1.7         # two nodes' HEAD req/s >= 1.7 x one node's

die() { echo "registry.sh: $*" >&2; exit 2; }
log() { echo "[registry $(date +%H:%M:%S)] $*" >&2; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
sum() { local t=0 x; for x in "$@"; do t=$(( t + x )); done; echo "$t"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
imedian() { median "$@" | awk '{ printf "%.0f", $1 }'; }
m3() { median "$@" | awk '{ printf "%.3f", $1 }'; }
need_uint() { [[ $2 =~ ^[0-9]+$ ]] && (( $2 >= ${3:-1} )) || die "$1: expected a whole number >= ${3:-1}, got '$2'"; }
opt() { (( $# >= 2 )) || die "$1 needs a value"; printf '%s' "$2"; }

while (( $# )); do
    case $1 in
        --images) IMAGES=$(opt "$@"); shift ;;
        --seconds) SECONDS_PER_ROUND=$(opt "$@"); shift ;;
        --repeat) REPEAT=$(opt "$@"); shift ;;
        --backends) BACKENDS=$(opt "$@"); shift ;;
        --two-nodes) TWO_NODES=$(opt "$@"); shift ;;
        --workers) WORKERS=$(opt "$@"); shift ;;
        --pg-sslmode) PG_SSLMODE=$(opt "$@"); shift ;;
        --filter-every) FILTER_EVERY=$(opt "$@"); shift ;;
        --no-build) BUILD=0 ;;
        --no-install) INSTALL=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (--help lists them)" ;;
    esac
    shift
done
need_uint --images "$IMAGES" 1000
need_uint --seconds "$SECONDS_PER_ROUND"
need_uint --repeat "$REPEAT"
need_uint --workers "$WORKERS"
need_uint --filter-every "$FILTER_EVERY" 2
case $PG_SSLMODE in
    ''|disable|allow|prefer|require) ;;
    *) die "--pg-sslmode: expected disable, allow, prefer or require, got '$PG_SSLMODE'" ;;
esac
IFS=, read -r -a BACKEND_LIST <<< "$BACKENDS"
for b in "${BACKEND_LIST[@]}"; do
    case $b in sqlite|postgresql|mysql) ;; *) die "--backends: unknown backend '$b' (sqlite, postgresql, mysql)" ;; esac
done
[[ ,$TWO_NODES, != *,sqlite,* ]] || die "--two-nodes: SQLite is one process's database"

# ---- state and cleanup ---------------------------------------------------------------------
WORK=""
PIDS=()             # every process this script started and has not stopped yet
NODE_PIDS=()        # the glance-api of the current backend
DBS=()              # "backend name" of every database this run created
cleanup() {
    local p entry
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    for entry in "${DBS[@]}"; do drop_db ${entry} >/dev/null 2>&1 || true; done
    if [[ -n $WORK ]]; then
        if (( KEEP )); then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    (( CREATED_POLICY_RC )) && rm -f /usr/sbin/policy-rc.d
    return 0
}
trap cleanup EXIT
trap 'echo "registry.sh: line $LINENO: a command failed (status $?)" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

release_binaries
MANAGE_BIN=$(dirname "$API_BIN")/glance-manage
[[ -x $MANAGE_BIN ]] || die "$MANAGE_BIN not found (run without --no-build)"
command -v wrk >/dev/null || apt_install wrk || true
WRK=$(command -v wrk || true)
[[ -n $WRK ]] || die "wrk is needed (apt-get install wrk, or run without --no-install)"
command -v python3 >/dev/null || die "python3 is needed (seeding and the paged walk)"
WORK=$(mktemp -d /var/tmp/glance-bench-registry.XXXXXX)
NCPU=$(nproc)
LOAD_BEFORE=$(loadavg)

# ---- the databases -----------------------------------------------------------------------
pg_admin() { PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "${2:-postgres}" -Atc "$1"; }
my_admin() { mysql --connect-timeout=3 -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N -B ${2:+"$2"} -e "$1"; }

# drop_db BACKEND NAME
drop_db() {
    case $1 in
        postgresql) pg_admin "DROP DATABASE IF EXISTS $2 WITH (FORCE)" ;;
        mysql) my_admin "DROP DATABASE IF EXISTS $2" ;;
    esac
}

# server_answers BACKEND: 0 when its server answers (REASON says why not otherwise).
server_answers() {
    local out
    case $1 in
        postgresql)
            command -v psql >/dev/null || { REASON="no psql client"; return 1; }
            out=$(pg_admin "SELECT 1" 2>&1) || { REASON="PostgreSQL at $PG_HOST:$PG_PORT does not answer: ${out//$'\n'/ }"; return 1; } ;;
        mysql)
            command -v mysql >/dev/null || { REASON="no mysql client"; return 1; }
            out=$(my_admin "SELECT 1" 2>&1) || { REASON="MySQL/MariaDB at $MY_HOST:$MY_PORT does not answer: ${out//$'\n'/ }"; return 1; } ;;
    esac
}

# The seeded SQLite registry every backend starts from (made once): the schema by
# glance-manage db_sync, then IMAGES active public images in one transaction, with created_at
# one second apart (and distinct microseconds) and random UUIDs, each with two properties:
# os_distro (cirros for one image in FILTER_EVERY, ubuntu for the others) and index.
TEMPLATE=$WORK/template.db
make_template() {
    [[ -f $TEMPLATE ]] && return 0
    printf '[DEFAULT]\n' > "$WORK/glance-registry.conf"
    "$MANAGE_BIN" --config-file "$WORK/glance-registry.conf" \
        --sql-connection "sqlite:///$TEMPLATE" db_sync >/dev/null || die "glance-manage db_sync failed"
    local t0=$EPOCHREALTIME
    python3 - "$TEMPLATE" "$IMAGES" "$FILTER_EVERY" <<'PY'
import sqlite3, sys
path, n, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA synchronous = OFF")
c.execute("BEGIN")
c.execute("""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO images (id, name, disk_format, container_format, size, status, is_public,
    checksum, min_ram, min_disk, owner, created_at, deleted, visibility, protected, os_hidden)
SELECT lower(printf('%s-%s-4%s-8%s-%s', hex(randomblob(4)), hex(randomblob(2)),
        substr(hex(randomblob(2)), 2), substr(hex(randomblob(2)), 2), hex(randomblob(6)))),
    printf('seed-%07d', i), 'raw', 'bare', 1024, 'active', 1, lower(hex(randomblob(16))),
    0, 0, 'bench',
    strftime('%Y-%m-%dT%H:%M:%S', '2020-01-01', '+' || i || ' seconds')
        || printf('.%06d', (i * 7919) % 1000000),
    0, 'public', 0, 0
FROM n""", (n,))
c.execute("""
INSERT INTO image_properties (image_id, name, value, created_at, deleted)
SELECT id, 'os_distro',
    CASE WHEN CAST(substr(name, 6) AS INTEGER) % ? = 0 THEN 'cirros' ELSE 'ubuntu' END,
    created_at, 0
FROM images""", (every,))
c.execute("""
INSERT INTO image_properties (image_id, name, value, created_at, deleted)
SELECT id, 'index', CAST(CAST(substr(name, 6) AS INTEGER) AS TEXT), created_at, 0
FROM images""")
c.execute("COMMIT")
got = c.execute("SELECT count(*) FROM images").fetchone()[0]
if got != n:
    sys.exit(f"seeded {got} images, expected {n}")
PY
    log "seeded $IMAGES images (and $(( 2 * IMAGES )) properties) into the SQLite template in $(calc "$EPOCHREALTIME - $t0" 1) s"
}

# prepare_backend BACKEND: a database holding the template's images; sets SQL_URL and
# SEED_SECONDS, or REASON and returns 1 when the backend cannot be benchmarked.
prepare_backend() {
    local b=$1 t0 out
    server_answers "$b" || return 1
    make_template
    t0=$EPOCHREALTIME
    case $b in
        sqlite)
            mkdir -p "$WORK/sqlite"
            cp "$TEMPLATE" "$WORK/sqlite/registry.db"
            SQL_URL="sqlite:///$WORK/sqlite/registry.db" ;;
        postgresql|mysql)
            drop_db "$b" "$DB_NAME" >/dev/null 2>&1 || true
            if [[ $b == postgresql ]]; then
                pg_admin "CREATE DATABASE $DB_NAME TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
                SQL_URL="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$DB_NAME${PG_SSLMODE:+?sslmode=$PG_SSLMODE}"
            else
                my_admin "CREATE DATABASE $DB_NAME CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                SQL_URL="mysql://$MY_USER@$MY_HOST:$MY_PORT/$DB_NAME"
            fi
            DBS+=("$b $DB_NAME")
            # The images go in through glance-manage db_copy (the documented way from SQLite
            # to a server), which also creates the schema.
            if ! out=$("$MANAGE_BIN" --config-file "$WORK/glance-registry.conf" \
                    --sql-connection "$SQL_URL" db_copy "sqlite:///$TEMPLATE" 2>&1); then
                REASON="glance-manage db_copy into $b failed (does this build have the $b registry driver?): ${out//$'\n'/ }"
                return 1
            fi
            log "  $out"
            # What the server's own statistics collection (autovacuum, InnoDB's persistent
            # statistics) does shortly after such a bulk load, done at once.
            if [[ $b == postgresql ]]; then
                pg_admin "VACUUM ANALYZE" "$DB_NAME"
            else
                my_admin "ANALYZE TABLE images, image_properties, image_tags, image_members" "$DB_NAME" >/dev/null
            fi ;;
    esac
    SEED_SECONDS=$(calc "$EPOCHREALTIME - $t0" 1)
    # The settings that decide what a commit costs.
    case $b in
        sqlite) SETTINGS+=("sqlite: the file under $WORK (journal WAL), sqlite_synchronous = FULL (the default)") ;;
        postgresql) SETTINGS+=("postgresql: sslmode ${PG_SSLMODE:-not set (prefer)}, $(pg_admin "SELECT 'ssl = ' || current_setting('ssl') || ', ' || split_part(version(), ' ', 2) || ', synchronous_commit = ' || current_setting('synchronous_commit') || ', fsync = ' || current_setting('fsync') || ', shared_buffers = ' || current_setting('shared_buffers') || ', max_connections = ' || current_setting('max_connections')")") ;;
        mysql) SETTINGS+=("mysql: $(my_admin "SELECT CONCAT(VERSION(), ', innodb_flush_log_at_trx_commit = ', @@innodb_flush_log_at_trx_commit, ', sync_binlog = ', @@sync_binlog, ', innodb_buffer_pool_size = ', @@innodb_buffer_pool_size, ', max_connections = ', @@max_connections)")") ;;
    esac
}

# ---- glance-api ----------------------------------------------------------------------------
# start_node NAME: a glance-api on SQL_URL in WORK/NAME; appends its base URL to NODES.
# (Not in a command substitution: its PID must reach PIDS in this shell.)
start_node() {
    local dir=$WORK/$1 i line=""
    mkdir -p "$dir/images"
    cat > "$dir/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
workers = $WORKERS
sql_connection = $SQL_URL
filesystem_store_datadir = $dir/images
api_limit_max = 1000
EOF
    "$API_BIN" --config-file "$dir/glance-api.conf" > "$dir/stdout" 2> "$dir/api.log" &
    PIDS+=("$!")
    NODE_PIDS+=("$!")
    for (( i = 0; i < 300; i++ )); do
        line=$(head -n 1 "$dir/stdout" 2>/dev/null || true)
        [[ $line == "listening on "* ]] && break
        kill -0 "${NODE_PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    [[ $line == "listening on "* ]] || die "glance-api $1 did not start: $(tail -n 5 "$dir/api.log")"
    NODES+=("http://${line#listening on }")
}

stop_nodes() {
    local p
    for p in "${NODE_PIDS[@]}"; do stop_tracked "$p" PIDS; done
    NODE_PIDS=() NODES=()
}

# ---- load generation -----------------------------------------------------------------------
cat > "$WORK/latency.lua" <<'EOF'
done = function(summary, latency, requests)
    io.write(string.format("BENCH %d %.1f %.1f %d\n", summary.requests,
        latency:percentile(50), latency:percentile(99),
        summary.errors.status + summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout))
end
EOF
cat > "$WORK/rate.lua" <<'EOF'
done = function(summary, latency, requests)
    io.write(string.format("BENCH %d %d %d\n", summary.requests, summary.duration,
        summary.errors.status + summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout))
end
EOF
{ echo 'wrk.method = "HEAD"'; cat "$WORK/rate.lua"; } > "$WORK/head.lua"
{
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["x-image-meta-name"] = "bench-create"'
    echo 'wrk.headers["x-image-meta-disk_format"] = "raw"'
    echo 'wrk.headers["x-image-meta-container_format"] = "bare"'
    cat "$WORK/rate.lua"
} > "$WORK/create.lua"

# latency URL: one connection for SECONDS_PER_ROUND; sets P50 and P99 (ms). Any error fails.
latency() {
    local out n p50 p99 errs
    out=$("$WRK" -t 1 -c 1 -d "${SECONDS_PER_ROUND}s" --timeout 10s -s "$WORK/latency.lua" "$1" | awk '$1 == "BENCH"')
    read -r _ n p50 p99 errs <<< "$out"
    [[ -n ${errs:-} ]] && (( errs == 0 && n > 0 )) || die "$1: ${errs:-no result} errors in ${n:-0} requests"
    P50=$(calc "$p50 / 1000" 3) P99=$(calc "$p99 / 1000" 3)
}

# CPU seconds so far of: all CPUs busy (/proc/stat, not idle or iowait), our glance-api
# nodes, the database server's processes (postgres, mariadbd, mysqld: other clients of the
# same server count too), and this shell's waited-for children (the wrk runs: `times`, which
# must run in this shell, not in the command substitution, has written them to file $1).
cpu_snap() {
    local nodes=" ${NODE_PIDS[*]} " children
    children=$(sed -n 2p "$1")
    { head -n 1 /proc/stat; cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v nodes="$nodes" -v ch="$children" '
        $1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 + $9; next }
        {
            pid = $1; comm = $0; sub(/^[^(]*\(/, "", comm); sub(/\).*$/, "", comm)
            rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
            t = f[12] + f[13]
            if (index(nodes, " " pid " ")) glance += t
            else if (comm == "postgres" || comm == "mariadbd" || comm == "mysqld") db += t
        }
        END {
            # `times`: "0m1.234s 0m0.567s" (user, system) of the children.
            n = split(ch, c, " "); w = 0
            for (i = 1; i <= n; i++) { split(c[i], ms, /[ms]/); w += ms[1] * 60 + ms[2] }
            printf "%.2f %.2f %.2f %.2f\n", busy / 100, glance / 100, db / 100, w }'
}
# cpu_share BEFORE AFTER SECONDS: "busy% glance% db% wrk% other%" of the NCPU cores.
cpu_share() {
    awk -v a="$1" -v b="$2" -v s="$3" -v n="$NCPU" 'BEGIN {
        split(a, x, " "); split(b, y, " "); cap = s * n / 100
        for (i = 1; i <= 4; i++) { d[i] = (y[i] - x[i]) / cap; printf "%.0f ", d[i] }
        o = d[1] - d[2] - d[3] - d[4]; printf "%.0f\n", (o > 0 ? o : 0) }'
}

# rate LUA CONNS URL...: CONNS keep-alive connections split evenly over the URLs, one wrk per
# URL, all at once (one thread per wrk when there are several, two for one); sets RATE (the
# sum of requests/s), ERRS, CPU ("busy glance db wrk other", % of the cores, over the run)
# and CPU_US (CPU microseconds of glance-api and the database server per request).
rate() {
    local lua=$1 conns=$2 i=0 url pids=() per threads t0 c0 c1 f n
    shift 2
    local urls=("$@")
    per=$(( conns / $# )) threads=1
    (( $# == 1 && conns >= 2 )) && threads=2
    times > "$WORK/times"
    t0=$EPOCHREALTIME c0=$(cpu_snap "$WORK/times")
    for url in "$@"; do
        i=$(( i + 1 ))
        "$WRK" -t "$threads" -c "$per" -d "${SECONDS_PER_ROUND}s" --timeout 10s \
            -s "$WORK/$lua" "$url" > "$WORK/wrk.$i.out" 2>&1 &
        pids+=("$!") PIDS+=("$!")
    done
    for i in "${pids[@]}"; do wait "$i" || true; stop_tracked "$i" PIDS; done
    times > "$WORK/times"
    c1=$(cpu_snap "$WORK/times")
    CPU=$(cpu_share "$c0" "$c1" "$(calc "$EPOCHREALTIME - $t0" 3)")
    RATE=0 ERRS=0 n=0
    for (( i = 1; i <= ${#pids[@]}; i++ )); do
        f=$WORK/wrk.$i.out
        grep -q '^BENCH ' "$f" || die "wrk against ${urls[i - 1]}: $(tail -n 3 "$f")"
        read -r RATE ERRS n <<< "$(awk -v r="$RATE" -v e="$ERRS" -v n="$n" '$1 == "BENCH" {
            printf "%.1f %d %d\n", r + $2 / ($3 / 1e6), e + $4, n + $2 }' "$f")"
    done
    ERR_SUM=$(( ERR_SUM + ERRS ))
    # CPU time of glance-api and the database server per request, in microseconds.
    CPU_US=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { split(a, x, " "); split(b, y, " ")
        printf "%.0f", (n > 0) ? (y[2] - x[2] + y[3] - x[3]) / n * 1e6 : 0 }')
}

# walk URL: every image in pages of 1000 by marker; sets WALK (seconds), checks the count.
cat > "$WORK/walk.py" <<'PY'
import http.client, json, sys, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1]); expect = int(sys.argv[2]); limit = 1000
c = http.client.HTTPConnection(url.hostname, url.port)
seen, marker, pages, waited, each = 0, None, 0, 0.0, []
t0 = time.perf_counter()
while True:
    path = f"/v1/images/detail?limit={limit}" + (f"&marker={marker}" if marker else "")
    t = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse(); body = r.read()
    each.append(time.perf_counter() - t); waited += each[-1]
    if r.status != 200:
        sys.exit(f"{path}: {r.status} {body[:200]!r}")
    images = json.loads(body)["images"]
    pages += 1; seen += len(images)
    if len(images) < limit:
        break
    marker = images[-1]["id"]
total = time.perf_counter() - t0
if seen != expect:
    sys.exit(f"walk saw {seen} images, expected {expect}")
full = each[:-1] or each   # the last request answers the short (or empty) page
slow = max(range(len(full)), key=full.__getitem__)
print(f"{total:.3f} {pages} {waited:.3f} {1000 * full[0]:.1f} {1000 * sorted(full)[len(full) // 2]:.1f} "
      f"{1000 * full[slow]:.1f} {slow + 1}")
PY
walk() {
    local out pages waited first mid slow at
    out=$(python3 "$WORK/walk.py" "$1" "$IMAGES") || die "walk failed"
    read -r WALK pages waited first mid slow at <<< "$out"
    WALK_NOTE="$pages requests, $waited s waiting for responses; page ms: first $first, median $mid, slowest $slow (#$at)"
    WALK_PAGE="$mid $slow"
}

# ---- results -------------------------------------------------------------------------------
ROWS=()         # "backend|measure|value|detail|target|result"
NOTES=()
SKIPPED=()
SETTINGS=()
MISSED=0
# row BACKEND MEASURE VALUE DETAIL TARGET (e.g. "<= 2", ">= 1000", or "-")
row() {
    local result=info op t
    if [[ $5 != - ]]; then
        read -r op t <<< "$5"
        if awk -v v="$3" -v t="$t" -v op="$op" 'BEGIN { exit !((op == "<=") ? v <= t : v >= t) }'; then
            result=PASS
        else
            result=MISS MISSED=1
        fi
    fi
    ROWS+=("$1|$2|$(awk -v v="$3" 'BEGIN { printf (v >= 100) ? "%.0f" : (v >= 10) ? "%.1f" : "%.3f", v }')|$4|$5|$result")
    LAST_RESULT=$result
}

# ---- one backend ---------------------------------------------------------------------------
run_backend() {
    local b=$1 r id base page_t
    declare -A S=()
    NODES=()
    start_node "$b-a"
    base=${NODES[0]}
    log "$b: glance-api at $base ($SQL_URL, $IMAGES images, seeded in $SEED_SECONDS s)"
    id=$(curl -fsS "$base/v1/images?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["images"][0]["id"])') \
        || die "$b: no image listed"
    local page="$base/v1/images/detail?limit=100"
    local filtered="$page&property-os_distro=cirros"
    # Warm-up: the server's caches and the page cache, untimed.
    curl -fsS -o /dev/null "$page" && curl -fsS -o /dev/null "$filtered"
    [[ $(curl -fsS "$filtered" | python3 -c 'import json, sys; i = json.load(sys.stdin)["images"]; print(len(i) == 100 and all(x["properties"]["os_distro"] == "cirros" for x in i))') == True ]] \
        || die "$b: the filtered page is not 100 cirros images"
    walk "$base" >/dev/null

    local p50
    for (( r = 1; r <= REPEAT; r++ )); do
        latency "$page"; S[p50]+="$P50 " S[p99]+="$P99 " p50=$P50
        latency "$filtered"; S[fp50]+="$P50 " S[fp99]+="$P99 "
        walk "$base"; S[walk]+="$WALK " S[wmid]+="${WALK_PAGE% *} " S[wslow]+="${WALK_PAGE#* } "
        rate head.lua 16 "$base/v1/images/$id"
        (( ERRS == 0 )) || die "$b: HEAD: $ERRS errors"
        S[head]+="$RATE " S[headcpu]+="${CPU// /\/} " S[headus]+="$CPU_US "
        log "  #$r $b: page p50 $p50 ms; filtered p50 $P50 ms; walk $WALK s ($WALK_NOTE); HEAD $RATE/s (cpu % busy/glance/db/wrk/other $CPU)"
    done
    # Creates last: they add images (newest first in the listing).
    for (( r = 1; r <= REPEAT; r++ )); do
        rate create.lua 1 "$base/v1/images"; S[c1]+="$RATE " S[c1e]+="$ERRS "
        local c1=$RATE
        rate create.lua 16 "$base/v1/images"; S[c16]+="$RATE " S[c16e]+="$ERRS " S[c16cpu]+="${CPU// /\/} " S[c16us]+="$CPU_US "
        log "  #$r $b: creates/s 1 client $c1, 16 clients $RATE (cpu % busy/glance/db/wrk/other $CPU)"
    done

    # shellcheck disable=SC2086
    {
        local target=$PAGE_TARGET_MS_SERVER
        [[ $b == sqlite ]] && target=$PAGE_TARGET_MS_SQLITE
        row "$b" "creates/s, 1 client" "$(median ${S[c1]})" "errors $(sum ${S[c1e]})" -
        local ct=- cpu
        [[ $b == postgresql ]] && ct=">= $CREATE_TARGET_PG"
        cpu=$(imedian $(for x in ${S[c16cpu]}; do echo "${x%%/*}"; done))
        row "$b" "creates/s, 16 clients" "$(median ${S[c16]})" "cpu busy ${cpu}%, $(imedian ${S[c16us]}) us/req, errors $(sum ${S[c16e]})" "$ct"
        if [[ $LAST_RESULT == MISS ]] && (( cpu >= 90 )); then
            NOTES+=("$b creates: all $NCPU cores were ${cpu}% busy (glance-api, the database server and wrk on the same machine; cpu % busy/glance/db/wrk/other: ${S[c16cpu]})")
        fi
        row "$b" "first page of 100, ms (median; p99)" "$(median ${S[p50]})" "p99 $(m3 ${S[p99]})" "<= $target"
        row "$b" "  with property filter (1 in $FILTER_EVERY)" "$(median ${S[fp50]})" "p99 $(m3 ${S[fp99]})" -
        row "$b" "walk $IMAGES in pages of 1000, s" "$(median ${S[walk]})" "$(( IMAGES / 1000 + 1 )) requests; page ms median $(calc "$(median ${S[wmid]})" 1), slowest $(calc "$(median ${S[wslow]})" 1)" -
        cpu=$(imedian $(for x in ${S[headcpu]}; do echo "${x%%/*}"; done))
        row "$b" "HEAD req/s, 16 clients" "$(median ${S[head]})" "cpu busy ${cpu}%, $(imedian ${S[headus]}) us/req" -
    }
    SAMPLES+=("$b: page p50 ${S[p50]}| p99 ${S[p99]}| filtered p50 ${S[fp50]}| p99 ${S[fp99]}| walk ${S[walk]}| HEAD ${S[head]}| creates c1 ${S[c1]}| c16 ${S[c16]}")

    if [[ ,$TWO_NODES, == *,$b,* ]]; then
        two_nodes "$b" "$id"
    fi
    stop_nodes
}

# two_nodes BACKEND ID: a second glance-api on the same database; in alternating order each
# round, one node with 16 connections, then both with 8 each at the same time.
two_nodes() {
    local b=$1 id=$2 r one two pair us1 us2
    declare -A T=()
    start_node "$b-b"
    ERR_SUM=0
    log "$b: second glance-api at ${NODES[1]} on the same database"
    for kind in head create; do
        for (( r = 1; r <= REPEAT; r++ )); do
            local urls=() u
            for u in "${NODES[@]}"; do
                if [[ $kind == head ]]; then urls+=("$u/v1/images/$id"); else urls+=("$u/v1/images"); fi
            done
            # Alternating order: one node first in odd rounds, both first in even ones.
            if (( r % 2 )); then
                rate "$kind.lua" 16 "${urls[0]}"; one=$RATE us1=$CPU_US
                rate "$kind.lua" 16 "${urls[@]}"; two=$RATE pair=$CPU us2=$CPU_US
            else
                rate "$kind.lua" 16 "${urls[@]}"; two=$RATE pair=$CPU us2=$CPU_US
                rate "$kind.lua" 16 "${urls[0]}"; one=$RATE us1=$CPU_US
            fi
            T[${kind}2cpu]+="${pair// /\/} " T[${kind}us1]+="$us1 " T[${kind}us2]+="$us2 "
            T[${kind}1]+="$one " T[${kind}2]+="$two " T[${kind}r]+="$(calc "$two / $one" 3) "
            log "  #$r $b $kind: one node $one/s ($us1 us/req), two nodes $two/s ($us2 us/req; cpu % busy/glance/db/wrk/other $pair), ratio $(calc "$two / $one" 3)"
        done
    done
    # shellcheck disable=SC2086
    {
        local cpu
        cpu=$(imedian $(for x in ${T[head2cpu]}; do echo "${x%%/*}"; done))
        row "$b" "two nodes / one node, HEAD req/s" "$(median ${T[headr]})" \
            "$(imedian ${T[head2]}) / $(imedian ${T[head1]}), cpu busy ${cpu}%, us/req $(imedian ${T[headus2]}) / $(imedian ${T[headus1]})" ">= $TWO_NODE_TARGET"
        if [[ $LAST_RESULT == MISS ]] && (( cpu >= 90 )); then
            NOTES+=("$b two nodes: all $NCPU cores were ${cpu}% busy during the two-node HEAD rounds (two glance-api, wrk and the database server on $NCPU cores; cpu % busy/glance/db/wrk/other: ${T[head2cpu]}), and glance-api plus the database spent $(imedian ${T[headus2]}) us of CPU per request with two nodes against $(imedian ${T[headus1]}) with one: the cores, not contention between the nodes, bound the ratio; it needs a machine with cores to spare")
        fi
        cpu=$(imedian $(for x in ${T[create2cpu]}; do echo "${x%%/*}"; done))
        row "$b" "two nodes / one node, creates/s" "$(median ${T[creater]})" \
            "$(imedian ${T[create2]}) / $(imedian ${T[create1]}), cpu busy ${cpu}%, us/req $(imedian ${T[createus2]}) / $(imedian ${T[createus1]})" -
        (( ERR_SUM == 0 )) || NOTES+=("$b two nodes: $ERR_SUM requests failed (non-2xx or timeouts)")
    }
    SAMPLES+=("$b two nodes: HEAD one ${T[head1]}| two ${T[head2]}| creates one ${T[create1]}| two ${T[create2]}")
}

# ---- main ----------------------------------------------------------------------------------
SAMPLES=()
ERR_SUM=0
log "$IMAGES images, ${SECONDS_PER_ROUND}s per measurement, $REPEAT rounds, backends ${BACKEND_LIST[*]}; load average $LOAD_BEFORE ($NCPU cores)"
for b in "${BACKEND_LIST[@]}"; do
    REASON=""
    if ! prepare_backend "$b"; then
        log "$b: SKIPPED: $REASON"
        SKIPPED+=("$b: $REASON")
        continue
    fi
    run_backend "$b"
    for (( i = 0; i < ${#DBS[@]}; i++ )); do
        if [[ ${DBS[i]} == "$b "* ]]; then drop_db ${DBS[i]} >/dev/null || true; unset 'DBS[i]'; fi
    done
    DBS=("${DBS[@]}")
    rm -rf "$WORK/sqlite"
done

echo
echo "glance-rs registry benchmark: $IMAGES images, ${SECONDS_PER_ROUND}s per measurement, $REPEAT rounds, $WORKERS workers"
echo "values: medians of the rounds; latency with 1 connection; rates with 16 keep-alive connections (wrk)"
echo "load average before: $LOAD_BEFORE; after: $(loadavg) ($NCPU cores; cpu: % of all of them)"
echo
printf '%-11s %-42s %10s  %-50s %-9s %s\n' backend measure value detail target result
for line in "${ROWS[@]}"; do
    IFS='|' read -r b m v d t res <<< "$line"
    printf '%-11s %-42s %10s  %-50s %-9s %s\n' "$b" "$m" "$v" "$d" "$t" "$res"
done
for s in "${SKIPPED[@]}"; do echo "skipped $s"; done
for s in "${SETTINGS[@]}"; do echo "server $s"; done
for n in "${NOTES[@]}"; do echo "note: $n"; done
echo "samples:"
for s in "${SAMPLES[@]}"; do echo "  $s"; done
(( ${#ROWS[@]} )) || exit 2
exit "$MISSED"
