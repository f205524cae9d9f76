#!/usr/bin/env bash
# glance-rs connection benchmark (issue 13): many idle keep-alive connections, slowloris heads
# and trickling uploads, HEAD requests/s at 16 and 256 connections, and 1 GiB downloads with
# and without sendfile; every figure beside nginx measured in the same run. See bench/README.md.
#
#   bench/connections.sh              # full run (10,000 idle connections, 1 GiB image)
#   bench/connections.sh --quick      # small sizes: a check that everything works
#   bench/connections.sh --help
#
# All traffic goes to 127.0.0.1 (the idle and slow clients from 127.0.1.x source addresses,
# 200 per address). Every server and client this script starts is stopped on exit.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"
CONNS_PY=$SCRIPT_DIR/conns.py

# ---- options -----------------------------------------------------------------------------
IDLE=10000
LATENCY_REQUESTS=500
SLOWLORIS=500
TRICKLE=50
ATTACK_SECONDS=20
HEAD_SECONDS=10
HEAD_CONNECTIONS="16 256"
SIZE_MIB=1024
REPEAT=3
CONCURRENCY=8
WORKERS=16
SEND_BUFFER=1048576
NGINX_WORKERS=auto
WORKDIR="$SCRIPT_DIR/work"
RESULTS="$SCRIPT_DIR/results/connections.json"
BUILD=1
INSTALL=1
KEEP=0

# Targets (issue 13, item 5).
IDLE_RSS_TARGET_MIB=64      # glance-api RSS with IDLE keep-alive connections open
IDLE_P99_TARGET_MS=10       # new client's HEAD p99 with them open
ATTACK_P99_TARGET_MS=20     # new client's HEAD p99 under slowloris + trickling uploads
HEAD_RATIO_TARGET=0.80      # HEAD req/s vs nginx, at each connection count
DL_RATIO_TARGET=0.95        # download MB/s vs the faster nginx mode
DL_RSS_TARGET_MIB=32        # glance-api peak RSS during CONCURRENCY downloads

usage() {
    cat <<EOF
Usage: bench/connections.sh [options]

  --idle N              idle keep-alive connections held open (default $IDLE)
  --latency-requests N  sequential new-connection HEADs measured with them open (default $LATENCY_REQUESTS)
  --slowloris N         connections sending a request head one byte a second (default $SLOWLORIS)
  --trickle N           uploads sending one body byte a second (default $TRICKLE)
  --attack-seconds N    how long the slowloris/trickle mix runs while a client measures (default $ATTACK_SECONDS)
  --head-seconds N      duration of each wrk HEAD run (default $HEAD_SECONDS)
  --head-connections L  wrk connection counts, space- or comma-separated (default "$HEAD_CONNECTIONS")
  --size-mib N          size of the download image in MiB (default $SIZE_MIB)
  --repeat N            rounds of each download figure and each HEAD rate; medians reported (default $REPEAT)
  --concurrency N       concurrent downloads of the aggregate and RSS figures (default $CONCURRENCY)
  --workers N           glance-api workers (default $WORKERS)
  --send-buffer BYTES   glance-api send_buffer_size for the sendfile = False runs (default $SEND_BUFFER)
  --nginx-workers N     nginx worker_processes (default $NGINX_WORKERS)
  --quick               --idle 1000 --latency-requests 200 --slowloris 100 --trickle 10
                        --attack-seconds 5 --head-seconds 3 --size-mib 64 --repeat 1
                        (options after --quick override it)
  --workdir DIR         work directory; the image file is cached there (default bench/work)
  --results FILE        JSON results (default bench/results/connections.json)
  --no-build            do not run cargo build --release --bins
  --no-install          do not apt-get install missing nginx/wrk
  --keep                keep the run's directory (configs, logs, helper output)
  -h, --help            this help

Exit status: 0 all targets met, 1 a target missed, 2 usage or setup error.
EOF
}

die() { echo "connections.sh: $*" >&2; exit 2; }
log() { echo "[conns $(date +%H:%M:%S)] $*" >&2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
need_uint() {
    if ! is_uint "$2" || (( $2 < ${3:-1} )); then die "$1: expected a whole number >= ${3:-1}, got '$2'"; fi
}
opt() { (( $# >= 2 )) || { usage >&2; die "$1 needs a value"; }; printf '%s' "$2"; }
while (( $# )); do
    case $1 in
        --idle) IDLE=$(opt "$@"); shift ;;
        --latency-requests) LATENCY_REQUESTS=$(opt "$@"); shift ;;
        --slowloris) SLOWLORIS=$(opt "$@"); shift ;;
        --trickle) TRICKLE=$(opt "$@"); shift ;;
        --attack-seconds) ATTACK_SECONDS=$(opt "$@"); shift ;;
        --head-seconds) HEAD_SECONDS=$(opt "$@"); shift ;;
        --head-connections) HEAD_CONNECTIONS=$(opt "$@"); shift ;;
        --size-mib) SIZE_MIB=$(opt "$@"); shift ;;
        --repeat) REPEAT=$(opt "$@"); shift ;;
        --concurrency) CONCURRENCY=$(opt "$@"); shift ;;
        --workers) WORKERS=$(opt "$@"); shift ;;
        --send-buffer) SEND_BUFFER=$(opt "$@"); shift ;;
        --nginx-workers) NGINX_WORKERS=$(opt "$@"); shift ;;
        --quick) IDLE=1000 LATENCY_REQUESTS=200 SLOWLORIS=100 TRICKLE=10 ATTACK_SECONDS=5
                 HEAD_SECONDS=3 SIZE_MIB=64 REPEAT=1 ;;
        --workdir) WORKDIR=$(opt "$@"); shift ;;
        --results) RESULTS=$(opt "$@"); shift ;;
        --no-build) BUILD=0 ;;
        --no-install) INSTALL=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
    shift
done

need_uint --idle "$IDLE"
need_uint --latency-requests "$LATENCY_REQUESTS"
need_uint --slowloris "$SLOWLORIS" 0
need_uint --trickle "$TRICKLE" 0
need_uint --attack-seconds "$ATTACK_SECONDS"
need_uint --head-seconds "$HEAD_SECONDS"
need_uint --size-mib "$SIZE_MIB"
need_uint --repeat "$REPEAT"
need_uint --concurrency "$CONCURRENCY"
need_uint --workers "$WORKERS"
need_uint --send-buffer "$SEND_BUFFER" 4096
[[ $NGINX_WORKERS == auto ]] || need_uint --nginx-workers "$NGINX_WORKERS"
read -r -a HEAD_CONNS <<< "${HEAD_CONNECTIONS//,/ }"
(( ${#HEAD_CONNS[@]} )) || die "--head-connections: empty"
for c in "${HEAD_CONNS[@]}"; do need_uint --head-connections "$c"; done
[[ -n $WORKDIR ]] || die "--workdir: empty"

for tool in curl awk python3 sort; do
    command -v "$tool" >/dev/null || die "'$tool' is required"
done

# ---- helpers -----------------------------------------------------------------------------
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f", m }'
}
mb_per_s() { calc "$1 / $2 / 1000000" 2; }
json_array() { local IFS=,; printf '[%s]' "$*"; }
# jget FILE KEY: a top-level value of a one-line JSON object (null when absent).
jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("null" if v is None else json.dumps(v))' "$1" "$2"; }
pass() { awk "BEGIN { exit !($1) }" && echo PASS || echo FAIL; }

BYTES=$(( SIZE_MIB * 1024 * 1024 ))
RUN_DIR=""
API_PID=""
API=""
API_PIDS=()
NGINX_PID=""
CLIENT_PIDS=()
CREATED_POLICY_RC=0


exec 9>&2
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 2>&9
    local pid
    for pid in "${CLIENT_PIDS[@]}"; do stop_pid "$pid"; done
    for pid in "${API_PIDS[@]}"; do stop_pid "$pid"; done
    [[ -z $NGINX_PID ]] || stop_pid "$NGINX_PID"
    (( CREATED_POLICY_RC == 0 )) || rm -f /usr/sbin/policy-rc.d
    if [[ -n $RUN_DIR && -d $RUN_DIR ]]; then
        if (( KEEP )); then log "kept $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The pids of a server: the process and its children (nginx's workers).
tree_pids() { echo "$1"; pgrep -P "$1" 2>/dev/null || true; }
# tree_kib PID FIELD: the sum of a /proc status field over the process and its children.
tree_kib() {
    local p sum=0 v
    for p in $(tree_pids "$1"); do v=$(proc_kib "$p" "$2"); sum=$(( sum + ${v:-0} )); done
    echo "$sum"
}
reset_hwm() { local p; for p in $(tree_pids "$1"); do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done; }

# ---- setup -------------------------------------------------------------------------------
# The idle connections need a file descriptor each in the helper and in the server.
NEED_FDS=$(( IDLE + SLOWLORIS + TRICKLE + 4096 ))
if (( $(ulimit -n) < NEED_FDS )); then
    ulimit -n "$NEED_FDS" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
(( $(ulimit -n) >= IDLE + 1024 )) || die "ulimit -n is $(ulimit -n): too low for --idle $IDLE (hard limit $(ulimit -Hn))"

mkdir -p "$WORKDIR" "$(dirname "$RESULTS")"
WORKDIR=$(cd "$WORKDIR" && pwd)
RUN_DIR=$(mktemp -d "$WORKDIR/conns.XXXXXX")
LOAD_BEFORE=$(loadavg)
# Which mode of sending files is faster over loopback depends on the CPU (see README).
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)

release_binaries
load_tools
[[ -n $NGINX ]] || die "nginx is required (install nginx or nginx-light, or run as root without --no-install)"
[[ -n $WRK ]] || log "wrk unavailable: the HEAD requests/s figures are skipped"
image_file
cat "$DATA" > /dev/null
# nginx serves the same file and an empty one (wrk cannot measure HEAD of a file with a
# length: it waits for the body; glance's HEAD responses say Content-Length: 0).
NG_ROOT=$RUN_DIR/www
mkdir -p "$NG_ROOT"
ln "$DATA" "$NG_ROOT/image.bin" 2>/dev/null || ln -s "$DATA" "$NG_ROOT/image.bin"
: > "$NG_ROOT/empty"

# ---- glance-api --------------------------------------------------------------------------
# start_api SENDFILE: glance-api on RUN_DIR/api (its database and store kept across restarts)
# with sendfile = SENDFILE. Unknown options only warn, so this runs against servers without
# them too (the log says which were ignored).
API_DIR=$RUN_DIR/api
start_api() {
    mkdir -p "$API_DIR/images"
    cat > "$API_DIR/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
workers = $WORKERS
verbose = False
debug = False
sql_connection = sqlite:///$API_DIR/glance.sqlite
db_auto_create = True
default_store = file
filesystem_store_datadir = $API_DIR/images
keepalive_timeout = 600
max_connections = $(( IDLE + 1024 ))
sendfile = $1
send_buffer_size = $SEND_BUFFER
EOF
    # Removed first: the shell truncates it in the child, possibly after the loop below has
    # read the previous server's "listening on" line.
    rm -f "$API_DIR/api.stdout"
    "$API_BIN" --config-file "$API_DIR/glance-api.conf" \
        > "$API_DIR/api.stdout" 2>> "$API_DIR/api.stderr" &
    API_PID=$!
    API_PIDS+=("$API_PID")
    local i line=""
    for (( i = 0; i < 300; i++ )); do
        line=$(head -n 1 "$API_DIR/api.stdout" 2>/dev/null || true)
        [[ $line == "listening on "* ]] && break
        kill -0 "$API_PID" 2>/dev/null || { cat "$API_DIR/api.stderr" >&2; die "glance-api exited"; }
        sleep 0.1
    done
    [[ $line == "listening on "* ]] || die "glance-api did not report its port in 30 s"
    API="http://${line#listening on }"
    API_PORT=${API##*:}
    log "glance-api pid $API_PID on $API (workers $WORKERS, sendfile = $1)"
}
stop_api() {
    stop_tracked "$API_PID" API_PIDS
    API_PID=""
}

# ---- nginx -------------------------------------------------------------------------------
# Two servers: NG_PORT with sendfile on, NG_PORT_OFF with sendfile off and one 1 MiB output
# buffer; both serve NG_ROOT, with /upload taking request bodies for the trickling uploads.
start_nginx() {
    local ng=$RUN_DIR/nginx attempt i dav=""
    mkdir -p "$ng/tmp"
    NG_UPLOAD_METHOD=POST
    if "$NGINX" -V 2>&1 | grep -q http_dav_module; then dav="dav_methods PUT;" NG_UPLOAD_METHOD=PUT; fi
    for (( attempt = 0; attempt < 5; attempt++ )); do
        NG_PORT=$(free_port) || return 1
        NG_PORT_OFF=$(free_port) || return 1
        [[ $NG_PORT != "$NG_PORT_OFF" ]] || continue
        cat > "$ng/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile $(( IDLE * 2 + 4096 ));
$( [[ $EUID -eq 0 ]] && echo "user root;" )
pid $ng/nginx.pid;
error_log $ng/error.log crit;
events { worker_connections $(( IDLE + SLOWLORIS + TRICKLE + 2048 )); }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    default_type application/octet-stream;
    client_body_temp_path $ng/tmp/body;
    proxy_temp_path $ng/tmp/proxy;
    fastcgi_temp_path $ng/tmp/fastcgi;
    uwsgi_temp_path $ng/tmp/uwsgi;
    scgi_temp_path $ng/tmp/scgi;
    server {
        listen 127.0.0.1:$NG_PORT backlog=4096;
        root $NG_ROOT;
        sendfile on;
        tcp_nopush on;
        location / { }
        location /upload { client_max_body_size 0; $dav root $ng/tmp; }
    }
    server {
        listen 127.0.0.1:$NG_PORT_OFF backlog=4096;
        root $NG_ROOT;
        sendfile off;
        output_buffers 1 1m;
        location / { }
    }
}
EOF
        "$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" > "$ng/stdout" 2> "$ng/stderr" &
        NGINX_PID=$!
        for (( i = 0; i < 50; i++ )); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            if [[ $(curl -s -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$NG_PORT/empty") == 200 &&
                  $(curl -s -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$NG_PORT_OFF/empty") == 200 ]]; then
                log "nginx pid $NGINX_PID on 127.0.0.1:$NG_PORT (sendfile on) and :$NG_PORT_OFF (sendfile off, output_buffers 1 1m), $NGINX_WORKERS workers${dav:+, DAV PUT on /upload}"
                return 0
            fi
            sleep 0.1
        done
        stop_pid "$NGINX_PID"; NGINX_PID=""
    done
    cat "$ng/error.log" "$ng/stderr" >&2 2>/dev/null || true
    return 1
}

# ---- measurements ------------------------------------------------------------------------
# hold_start NAME PORT MODE COUNT PATH [ARGS...]: conns.py hold in the background; waits until every
# connection was tried. Sets HOLD_PID; the summary is in RUN_DIR/NAME.ready.
hold_start() {
    local name=$1 port=$2 mode=$3 count=$4 path=$5 i
    shift 5
    rm -f "$RUN_DIR/$name.ready" "$RUN_DIR/$name.stats"
    python3 "$CONNS_PY" hold --port "$port" --mode "$mode" --count "$count" --path "$path" "$@" \
        --ready "$RUN_DIR/$name.ready" --stats "$RUN_DIR/$name.stats" 2> "$RUN_DIR/$name.err" &
    HOLD_PID=$!
    CLIENT_PIDS+=("$HOLD_PID")
    for (( i = 0; i < 1200; i++ )); do
        [[ -f $RUN_DIR/$name.ready ]] && return 0
        kill -0 "$HOLD_PID" 2>/dev/null || { cat "$RUN_DIR/$name.err" >&2; die "conns.py hold $mode exited"; }
        sleep 0.1
    done
    die "conns.py hold $mode: not ready after 120 s"
}
# hold_stop PID: stops a holder; its final summary lands in RUN_DIR/NAME.stats.
hold_stop() {
    stop_tracked "$1" CLIENT_PIDS
}
# latency PORT PATH COUNT INTERVAL_MS OUT: sequential new-connection HEADs, JSON to OUT.
latency() {
    python3 "$CONNS_PY" latency --port "$1" --path "$2" --count "$3" --interval-ms "$4" > "$5"
}

# idle_figure NAME PID PORT PATH: IDLE keep-alive connections (one HEAD each) held open, then
# LATENCY_REQUESTS new-connection HEADs. Writes RUN_DIR/NAME.{ready,stats,latency} and sets
# IDLE_RSS (KiB: max of VmRSS and VmHWM since the reset, summed over the server's processes).
idle_figure() {
    local name=$1 pid=$2 port=$3 path=$4 hwm rss
    reset_hwm "$pid"
    hold_start "$name" "$port" keepalive "$IDLE" "$path"
    sleep 1
    rss=$(tree_kib "$pid" VmRSS)
    latency "$port" "$path" "$LATENCY_REQUESTS" 0 "$RUN_DIR/$name.latency"
    hwm=$(tree_kib "$pid" VmHWM)
    (( hwm > rss )) || hwm=$rss
    IDLE_RSS=$hwm
    echo "{\"vmrss_kib\": $rss, \"peak_kib\": $hwm}" > "$RUN_DIR/$name.rss"
    hold_stop "$HOLD_PID"
    log "  $name: $(jget "$RUN_DIR/$name.ready" opened) of $IDLE opened ($(jget "$RUN_DIR/$name.ready" failed) failed," \
        "statuses $(jget "$RUN_DIR/$name.ready" statuses)), $(jget "$RUN_DIR/$name.stats" still_open) still open at the end;" \
        "RSS $rss KiB (peak $hwm); HEAD p50 $(jget "$RUN_DIR/$name.latency" p50_ms) ms," \
        "p99 $(jget "$RUN_DIR/$name.latency" p99_ms) ms, errors $(jget "$RUN_DIR/$name.latency" errors)"
}

# attack_figure NAME PORT HEAD_PATH UPLOAD_METHOD UPLOAD_PATH: SLOWLORIS + TRICKLE slow clients
# for ATTACK_SECONDS while a client sends a new-connection HEAD every 20 ms.
attack_figure() {
    local name=$1 port=$2 path=$3 umethod=$4 upath=$5 slow_pid trickle_pid n
    hold_start "$name-slowloris" "$port" slowloris "$SLOWLORIS" "$path"; slow_pid=$HOLD_PID
    hold_start "$name-trickle" "$port" trickle "$TRICKLE" "$upath" --method "$umethod"; trickle_pid=$HOLD_PID
    n=$(( ATTACK_SECONDS * 1000 / 25 ))
    latency "$port" "$path" "$n" 20 "$RUN_DIR/$name.latency"
    hold_stop "$slow_pid"; hold_stop "$trickle_pid"
    log "  $name: slowloris $(jget "$RUN_DIR/$name-slowloris.stats" opened) opened, $(jget "$RUN_DIR/$name-slowloris.stats" cut_by_server) cut;" \
        "trickle $(jget "$RUN_DIR/$name-trickle.stats" opened) opened, $(jget "$RUN_DIR/$name-trickle.stats" cut_by_server) cut;" \
        "HEAD p50 $(jget "$RUN_DIR/$name.latency" p50_ms) ms, p99 $(jget "$RUN_DIR/$name.latency" p99_ms) ms," \
        "errors $(jget "$RUN_DIR/$name.latency" errors) of $n"
}

# head_rps URL CONNECTIONS: prints "requests/s errors" (wrk, HEAD).
# head_rps URL CONNECTIONS PID...: one wrk run of HEADs; prints req/s, errors, p99 ms and the
# server's CPU microseconds per request (the threads of PID...).
head_rps() {
    local url=$1 c=$2
    cat > "$RUN_DIR/head.lua" <<'EOF'
wrk.method = "HEAD"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(99)))
end
EOF
    local threads=2 out req us err p99 t0 t1
    (( $2 >= threads )) || threads=$2
    shift 2
    t0=$(cpu_ticks "$@")
    out=$(timeout $(( HEAD_SECONDS + 30 )) "$WRK" -t "$threads" -c "$c" -d "${HEAD_SECONDS}s" \
        -s "$RUN_DIR/head.lua" "$url" | awk '$1 == "BENCH"') || true
    t1=$(cpu_ticks "$@")
    read -r _ req us err p99 <<< "$out"
    [[ -n ${req-} && $req -gt 0 ]] || { echo "0 -1 0 0"; return; }
    echo "$(calc "$req / ($us / 1000000)" 0) $err $(calc "$p99 / 1000" 3)" \
        "$(calc "($t1 - $t0) * 1000000 / $CLK_TCK / $req" 1)"
}

# cpu_ticks PID...: CPU time (user + system, clock ticks) of every thread of the processes.
cpu_ticks() {
    local p t=0 n
    for p in "$@"; do
        # Fields after "pid (name) ": utime and stime are the 12th and 13th.
        n=$(sed 's/^.*) //' /proc/"$p"/task/*/stat 2>/dev/null | awk '{ s += $12 + $13 } END { print s + 0 }')
        t=$(( t + n ))
    done
    echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

# download URL: one curl -o /dev/null; prints MB/s (checks status and size).
download() {
    local out code size total
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$1")
    read -r code size total <<< "$out"
    [[ $code == 200 && $size == "$BYTES" ]] || die "GET $1: status $code, $size of $BYTES bytes"
    mb_per_s "$size" "$total"
}
# downloads_parallel URL N [PID]: N concurrent downloads; prints "aggregate_MB/s peak_rss_kib"
# (peak RSS of PID and its children: VmHWM after a reset, the kernel's own peak). Nothing
# samples /proc meanwhile: a sampling loop forks on the 2 cores the servers share, and ran for
# glance only, which cost its figure a few percent against nginx's. Where the reset is refused,
# VmHWM holds an older, higher peak: the figure errs high, never low.
downloads_parallel() {
    local url=$1 n=$2 pid=${3:-} c p t0 t1 pids=() max=0 code size
    [[ -z $pid ]] || reset_hwm "$pid"
    t0=$(now)
    for (( c = 1; c <= n; c++ )); do
        curl -sS -o /dev/null -w '%{http_code} %{size_download}\n' "$url" > "$RUN_DIR/par.$c" &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || die "a concurrent download of $url failed"; done
    t1=$(now)
    for (( c = 1; c <= n; c++ )); do
        read -r code size < "$RUN_DIR/par.$c"
        [[ $code == 200 && $size == "$BYTES" ]] || die "concurrent download $c of $url: status $code, $size bytes"
    done
    [[ -z $pid ]] || max=$(tree_kib "$pid" VmHWM)
    echo "$(mb_per_s $(( BYTES * n )) "$(calc "$t1 - $t0" 3)") $max"
}

# concurrent URL [PID]: CONCURRENCY downloads of URL at once (see downloads_parallel).
concurrent() { downloads_parallel "$1" "$CONCURRENCY" "${2:-}"; }
# download_round R MEASURE: one round of MEASURE (download or concurrent) against nginx
# sendfile on, nginx sendfile off and glance (url, API_PID): nginx first in odd rounds, glance
# first in even ones, so that drifting load hits all three alike. Appends the MB/s figures to
# on, off and g, and sets kib to glance's peak RSS where MEASURE reports one.
download_round() {
    local measure=$2 order=(on off g) k out
    (( $1 % 2 )) || order=(g off on)
    for k in "${order[@]}"; do
        case $k in
            on) out=$("$measure" "$NG_ON_URL"); on+=("${out%% *}") ;;
            off) out=$("$measure" "$NG_OFF_URL"); off+=("${out%% *}") ;;
            g) out=$("$measure" "$url" "$API_PID"); g+=("${out%% *}"); [[ $out != *" "* ]] || kib=${out##* } ;;
        esac
    done
}

# ---- run ---------------------------------------------------------------------------------
start_nginx || die "nginx did not start"
NG_PID=$NGINX_PID
start_api True
# A small image for the HEADs (the idle and attack figures); the big one is uploaded later so
# that its upload does not count in the RSS of the idle figure.
code=$(curl -sS -o "$RUN_DIR/small.json" -w '%{http_code}' -X POST --data-binary 'small image' \
    -H 'Content-Type: application/octet-stream' -H 'x-image-meta-name: conns-head' \
    -H 'x-image-meta-disk_format: raw' -H 'x-image-meta-container_format: bare' "$API/v1/images")
[[ $code == 201 ]] || die "upload of the HEAD image: status $code: $(cat "$RUN_DIR/small.json")"
HEAD_ID=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$RUN_DIR/small.json" | head -n 1)
HEAD_PATH=/v1/images/$HEAD_ID

log "idle: $IDLE keep-alive connections (one HEAD each) held open, then $LATENCY_REQUESTS new-connection HEADs"
idle_figure idle-glance "$API_PID" "$API_PORT" "$HEAD_PATH"; IDLE_RSS_G=$IDLE_RSS
idle_figure idle-nginx "$NG_PID" "$NG_PORT" /empty; IDLE_RSS_N=$IDLE_RSS

log "attack: $SLOWLORIS slowloris + $TRICKLE trickling uploads for ${ATTACK_SECONDS}s, a new-connection HEAD every 20 ms"
attack_figure attack-glance "$API_PORT" "$HEAD_PATH" POST /v1/images
attack_figure attack-nginx "$NG_PORT" /empty "$NG_UPLOAD_METHOD" /upload/trickle

declare -A HEAD_G HEAD_N HEAD_GE HEAD_NE HEAD_GP HEAD_NP HEAD_R HEAD_GU HEAD_NU
if [[ -n $WRK ]]; then
    # shellcheck disable=SC2086  # the nginx workers' pids, one word each
    NG_WORKERS=$(pgrep -P "$NG_PID" | tr '\n' ' ')
    for c in "${HEAD_CONNS[@]}"; do
        # Alternating rounds, medians: the host's load moves both servers' rates by up to
        # 2 x within minutes, and one round each would compare different moments.
        log "HEAD requests/s: wrk -c $c -d ${HEAD_SECONDS}s, $REPEAT alternating rounds"
        head_rps "$API$HEAD_PATH" "$c" "$API_PID" > /dev/null   # warm-up
        g=() ge=0 gp=() gu=() n=() ne=0 np=() nu=()
        for (( r = 1; r <= REPEAT; r++ )); do
            read -r rate err p99 us <<< "$(head_rps "$API$HEAD_PATH" "$c" "$API_PID")"
            g+=("$rate"); gp+=("$p99"); gu+=("$us"); (( err == 0 )) || ge=$err
            # shellcheck disable=SC2086
            read -r rate err p99 us <<< "$(head_rps "http://127.0.0.1:$NG_PORT/empty" "$c" $NG_WORKERS)"
            n+=("$rate"); np+=("$p99"); nu+=("$us"); (( err == 0 )) || ne=$err
            log "  round $r: glance ${g[-1]} req/s (${gu[-1]} us CPU each), nginx ${n[-1]} req/s (${nu[-1]} us)"
        done
        HEAD_G[$c]=$(calc "$(median "${g[@]}")" 0); HEAD_N[$c]=$(calc "$(median "${n[@]}")" 0)
        HEAD_GP[$c]=$(median "${gp[@]}"); HEAD_NP[$c]=$(median "${np[@]}")
        HEAD_GU[$c]=$(median "${gu[@]}"); HEAD_NU[$c]=$(median "${nu[@]}")
        HEAD_GE[$c]=$ge; HEAD_NE[$c]=$ne
        HEAD_R[$c]=$(awk -v g="${HEAD_G[$c]}" -v n="${HEAD_N[$c]}" 'BEGIN { printf "%.3f", (n > 0 ? g / n : 0) }')
        log "  median: glance ${HEAD_G[$c]} req/s (errors ${HEAD_GE[$c]}), nginx ${HEAD_N[$c]} req/s (errors ${HEAD_NE[$c]}): ratio ${HEAD_R[$c]}"
    done
fi

log "downloads: uploading the $SIZE_MIB MiB image"
code=$(curl -sS -o "$RUN_DIR/big.json" -w '%{http_code}' -X POST -T "$DATA" -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' -H 'x-image-meta-name: conns-download' \
    -H 'x-image-meta-disk_format: raw' -H 'x-image-meta-container_format: bare' \
    -H "x-image-meta-size: $BYTES" "$API/v1/images")
[[ $code == 201 ]] || die "upload: status $code: $(cat "$RUN_DIR/big.json")"
BIG_ID=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$RUN_DIR/big.json" | head -n 1)

NG_ON_URL=http://127.0.0.1:$NG_PORT/image.bin
NG_OFF_URL=http://127.0.0.1:$NG_PORT_OFF/image.bin
declare -A DL1 DLN RSSN NG1_ON NG1_OFF NGN_ON NGN_OFF RATIO1 RATION
for mode in True False; do
    # A fresh process for each mode: the upload's buffers (freed, but kept by the
    # allocator) would otherwise count in the first mode's download RSS.
    stop_api; start_api "$mode"
    url=$API/v1/images/$BIG_ID
    download "$url" > /dev/null   # warm-up
    g=() on=() off=()
    for (( r = 1; r <= REPEAT; r++ )); do download_round "$r" download; done
    DL1[$mode]=$(median "${g[@]}") NG1_ON[$mode]=$(median "${on[@]}") NG1_OFF[$mode]=$(median "${off[@]}")
    # The concurrent figure moves most with the host's load (0.82 to 1.13 x across single
    # runs), so it gets the same alternating rounds; the RSS figure is the worst round.
    g=() on=() off=() rss=0
    for (( r = 1; r <= REPEAT; r++ )); do
        download_round "$r" concurrent
        if (( kib > rss )); then rss=$kib; fi
        log "  sendfile = $mode, $CONCURRENCY downloads, round $r: glance ${g[-1]} MB/s, nginx on ${on[-1]}, off ${off[-1]}"
    done
    DLN[$mode]=$(median "${g[@]}") NGN_ON[$mode]=$(median "${on[@]}") NGN_OFF[$mode]=$(median "${off[@]}") RSSN[$mode]=$rss
    best1=$(awk -v a="${NG1_ON[$mode]}" -v b="${NG1_OFF[$mode]}" 'BEGIN { print (a > b ? a : b) }')
    bestn=$(awk -v a="${NGN_ON[$mode]}" -v b="${NGN_OFF[$mode]}" 'BEGIN { print (a > b ? a : b) }')
    RATIO1[$mode]=$(calc "${DL1[$mode]} / $best1" 3)
    RATION[$mode]=$(calc "${DLN[$mode]} / $bestn" 3)
    log "  sendfile = $mode: 1 download ${DL1[$mode]} MB/s (nginx on ${NG1_ON[$mode]}, off ${NG1_OFF[$mode]}: ratio ${RATIO1[$mode]});" \
        "$CONCURRENCY downloads ${DLN[$mode]} MB/s (nginx on ${NGN_ON[$mode]}, off ${NGN_OFF[$mode]}: ratio ${RATION[$mode]});" \
        "peak RSS ${RSSN[$mode]} KiB"
done
LOAD_AFTER=$(loadavg)

# ---- results -----------------------------------------------------------------------------
lat() { jget "$RUN_DIR/$1.latency" "$2"; }
mib() { calc "$1 / 1024" 1; }
IDLE_G_OPEN=$(jget "$RUN_DIR/idle-glance.stats" still_open)
IDLE_N_OPEN=$(jget "$RUN_DIR/idle-nginx.stats" still_open)
R_IDLE_RSS=$(pass "$IDLE_RSS_G < $IDLE_RSS_TARGET_MIB * 1024 && $IDLE_G_OPEN >= $IDLE")
p99=$(lat idle-glance p99_ms); errs=$(lat idle-glance errors)
R_IDLE_LAT=$(pass "\"$p99\" != \"null\" && $p99 < $IDLE_P99_TARGET_MS && $errs == 0")
p99=$(lat attack-glance p99_ms); errs=$(lat attack-glance errors)
R_ATTACK=$(pass "\"$p99\" != \"null\" && $p99 < $ATTACK_P99_TARGET_MS && $errs == 0")

row() { printf '%-40s %14s  %-26s %7s  %-10s %s\n' "$@"; }
echo
echo "glance-rs connection benchmark, each figure beside nginx in the same run ($(nproc) cores)"
echo "host: $CPU_MODEL, $(nproc) cores, kernel $(uname -r); load average before: $LOAD_BEFORE; after: $LOAD_AFTER"
echo
row "measure" "glance-api" "nginx" "ratio" "target" "result"
row "RSS MiB, $IDLE idle keep-alive conns" "$(mib "$IDLE_RSS_G")" "$(mib "$IDLE_RSS_N")" "-" "< $IDLE_RSS_TARGET_MIB" "$R_IDLE_RSS"
row "  connections still open at the end" "$IDLE_G_OPEN" "$IDLE_N_OPEN" "-" "$IDLE" "info"
row "  new-connection HEAD p50 ms" "$(lat idle-glance p50_ms)" "$(lat idle-nginx p50_ms)" "-" "-" "info"
row "  new-connection HEAD p99 ms" "$(lat idle-glance p99_ms)" "$(lat idle-nginx p99_ms)" "-" "< $IDLE_P99_TARGET_MS" "$R_IDLE_LAT"
row "  HEAD errors of $LATENCY_REQUESTS" "$(lat idle-glance errors)" "$(lat idle-nginx errors)" "-" "0" "info"
row "$SLOWLORIS slowloris + $TRICKLE trickle: HEAD p50" "$(lat attack-glance p50_ms)" "$(lat attack-nginx p50_ms)" "-" "-" "info"
row "  HEAD p99 ms" "$(lat attack-glance p99_ms)" "$(lat attack-nginx p99_ms)" "-" "< $ATTACK_P99_TARGET_MS" "$R_ATTACK"
row "  HEAD errors" "$(lat attack-glance errors)" "$(lat attack-nginx errors)" "-" "0" "info"
ALL=("$R_IDLE_RSS" "$R_IDLE_LAT" "$R_ATTACK")
declare -A R_HEAD
if [[ -n $WRK ]]; then
    for c in "${HEAD_CONNS[@]}"; do
        R_HEAD[$c]=$(pass "${HEAD_R[$c]} >= $HEAD_RATIO_TARGET && ${HEAD_GE[$c]} == 0")
        ALL+=("${R_HEAD[$c]}")
        row "HEAD req/s, wrk $c connections" "${HEAD_G[$c]}" "${HEAD_N[$c]}" "${HEAD_R[$c]}" ">= $HEAD_RATIO_TARGET" "${R_HEAD[$c]}"
        row "  errors / p99 ms" "${HEAD_GE[$c]} / ${HEAD_GP[$c]}" "${HEAD_NE[$c]} / ${HEAD_NP[$c]}" "-" "0" "info"
        row "  server CPU us per request" "${HEAD_GU[$c]}" "${HEAD_NU[$c]}" "-" "-" "info"
    done
fi
declare -A R_DL1 R_DLN R_RSS
for mode in True False; do
    R_DL1[$mode]=$(pass "${RATIO1[$mode]} >= $DL_RATIO_TARGET")
    R_DLN[$mode]=$(pass "${RATION[$mode]} >= $DL_RATIO_TARGET")
    R_RSS[$mode]=$(pass "${RSSN[$mode]} < $DL_RSS_TARGET_MIB * 1024")
    ALL+=("${R_DL1[$mode]}" "${R_DLN[$mode]}" "${R_RSS[$mode]}")
    best1=$(awk -v a="${NG1_ON[$mode]}" -v b="${NG1_OFF[$mode]}" 'BEGIN { print (a > b ? a "(on)" : b "(off)") }')
    bestn=$(awk -v a="${NGN_ON[$mode]}" -v b="${NGN_OFF[$mode]}" 'BEGIN { print (a > b ? a "(on)" : b "(off)") }')
    row "download MB/s, sendfile=$mode, 1" "${DL1[$mode]}" "$best1" "${RATIO1[$mode]}" ">= $DL_RATIO_TARGET" "${R_DL1[$mode]}"
    row "download MB/s, sendfile=$mode, $CONCURRENCY" "${DLN[$mode]}" "$bestn" "${RATION[$mode]}" ">= $DL_RATIO_TARGET" "${R_DLN[$mode]}"
    row "  peak RSS MiB, $CONCURRENCY downloads" "$(mib "${RSSN[$mode]}")" "-" "-" "< $DL_RSS_TARGET_MIB" "${R_RSS[$mode]}"
done
echo
echo "nginx download MB/s (1 / $CONCURRENCY): sendfile on ${NG1_ON[True]} / ${NGN_ON[True]} and ${NG1_ON[False]} / ${NGN_ON[False]};" \
     "sendfile off ${NG1_OFF[True]} / ${NGN_OFF[True]} and ${NG1_OFF[False]} / ${NGN_OFF[False]} (beside glance sendfile=True, =False)"
echo "(MB = 10^6 bytes; image $SIZE_MIB MiB; downloads and HEAD rates: $REPEAT rounds, median; RSS of nginx: master + workers)"

ALL_PASS=true
for p in "${ALL[@]}"; do [[ $p == PASS ]] || ALL_PASS=false; done
bool() { [[ $1 == PASS ]] && echo true || echo false; }
q() { printf '"%s"' "$1"; }
head_json() {
    local c sep=""
    printf '{'
    if [[ -n $WRK ]]; then
        for c in "${HEAD_CONNS[@]}"; do
            printf '%s"%s": {"glance_rps": %s, "glance_errors": %s, "glance_p99_ms": %s, "glance_cpu_us": %s, "nginx_rps": %s, "nginx_errors": %s, "nginx_p99_ms": %s, "nginx_cpu_us": %s, "ratio": %s, "target": %s, "pass": %s}' \
                "$sep" "$c" "${HEAD_G[$c]}" "${HEAD_GE[$c]}" "${HEAD_GP[$c]}" "${HEAD_GU[$c]}" "${HEAD_N[$c]}" "${HEAD_NE[$c]}" \
                "${HEAD_NP[$c]}" "${HEAD_NU[$c]}" "${HEAD_R[$c]}" "$HEAD_RATIO_TARGET" "$(bool "${R_HEAD[$c]}")"
            sep=", "
        done
    fi
    printf '}'
}
dl_json() {
    local mode sep=""
    printf '{'
    for mode in True False; do
        printf '%s"sendfile_%s": {"glance_mbps_1": %s, "nginx_sendfile_on_mbps_1": %s, "nginx_sendfile_off_mbps_1": %s, "ratio_1": %s,' \
            "$sep" "${mode,,}" "${DL1[$mode]}" "${NG1_ON[$mode]}" "${NG1_OFF[$mode]}" "${RATIO1[$mode]}"
        printf ' "glance_mbps_%s": %s, "nginx_sendfile_on_mbps_%s": %s, "nginx_sendfile_off_mbps_%s": %s, "ratio_%s": %s,' \
            "$CONCURRENCY" "${DLN[$mode]}" "$CONCURRENCY" "${NGN_ON[$mode]}" "$CONCURRENCY" "${NGN_OFF[$mode]}" "$CONCURRENCY" "${RATION[$mode]}"
        printf ' "peak_rss_kib": %s, "pass_1": %s, "pass_%s": %s, "pass_rss": %s}' \
            "${RSSN[$mode]}" "$(bool "${R_DL1[$mode]}")" "$CONCURRENCY" "$(bool "${R_DLN[$mode]}")" "$(bool "${R_RSS[$mode]}")"
        sep=", "
    done
    printf '}'
}
f() { cat "$RUN_DIR/$1"; }
cat > "$RESULTS" <<EOF
{
  "date": $(q "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),
  "commit": $(q "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo -dirty)"),
  "host": {"cores": $(nproc), "cpu": $(q "$CPU_MODEL"), "kernel": $(q "$(uname -r)"), "loadavg_before": $(q "$LOAD_BEFORE"), "loadavg_after": $(q "$LOAD_AFTER")},
  "params": {"idle": $IDLE, "latency_requests": $LATENCY_REQUESTS, "slowloris": $SLOWLORIS, "trickle": $TRICKLE,
             "attack_seconds": $ATTACK_SECONDS, "head_seconds": $HEAD_SECONDS, "size_mib": $SIZE_MIB, "repeat": $REPEAT,
             "concurrency": $CONCURRENCY, "workers": $WORKERS, "send_buffer_size": $SEND_BUFFER, "nginx_workers": $(q "$NGINX_WORKERS")},
  "units": {"throughput": "MB/s (10^6 bytes/s)", "rss": "KiB", "latency": "ms"},
  "idle": {"glance": {"hold": $(f idle-glance.ready), "end": $(f idle-glance.stats), "rss": $(f idle-glance.rss), "head": $(f idle-glance.latency)},
           "nginx": {"hold": $(f idle-nginx.ready), "end": $(f idle-nginx.stats), "rss": $(f idle-nginx.rss), "head": $(f idle-nginx.latency)},
           "target_rss_kib": $(( IDLE_RSS_TARGET_MIB * 1024 )), "target_p99_ms": $IDLE_P99_TARGET_MS,
           "pass_rss": $(bool "$R_IDLE_RSS"), "pass_latency": $(bool "$R_IDLE_LAT")},
  "attack": {"glance": {"slowloris": $(f attack-glance-slowloris.stats), "trickle": $(f attack-glance-trickle.stats), "head": $(f attack-glance.latency)},
             "nginx": {"slowloris": $(f attack-nginx-slowloris.stats), "trickle": $(f attack-nginx-trickle.stats), "head": $(f attack-nginx.latency)},
             "target_p99_ms": $ATTACK_P99_TARGET_MS, "pass": $(bool "$R_ATTACK")},
  "head_rps": $(head_json),
  "downloads": $(dl_json),
  "all_targets_pass": $ALL_PASS
}
EOF
python3 -m json.tool "$RESULTS" > /dev/null || log "warning: $RESULTS is not valid JSON"
echo "results: $RESULTS"
$ALL_PASS || exit 1
