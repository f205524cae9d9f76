#!/usr/bin/env bash
# glance-rs benchmark: upload/download throughput of one image against this machine's own
# ceilings (dd to the same disk, cat, nginx+sendfile on loopback), peak RSS of glance-api during
# concurrent downloads, and HEAD requests/s. See bench/README.md.
#
#   bench/run.sh                  # full run: 1 GiB image, 3 repeats
#   bench/run.sh --size-mib 64    # quick run
#   bench/run.sh --store file,swift,s3   # also Swift and S3 (tests/services/swift-s3.sh)
#   bench/run.sh --cache          # also the image cache: Swift downloads, miss and hit
#   bench/run.sh --help
#
# All traffic goes to 127.0.0.1. Every server and client this script starts is stopped on exit.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"

# ---- options -----------------------------------------------------------------------------
SIZE_MIB=1024
STORE="file"
REPEAT=6
CONCURRENCY=8
HEAD_SECONDS=10
HEAD_CONNECTIONS=16
HEAD_THREADS=2
BUFFER_SIZE=""          # image_buffer_size; empty = the server's default
DIRECT_IO=""            # filesystem_store_direct_io (on/off); empty = the server's default
HASHING_ALGORITHM=sha512    # hashing_algorithm of glance-api: the multihash of every upload
WORKERS=16
WORKDIR="$SCRIPT_DIR/work"
RESULTS="$SCRIPT_DIR/results/latest.json"
BUILD=1
INSTALL=1
KEEP=0
CACHE=0                 # --cache: downloads from the Swift store through the image cache

# Targets (issue 3, item 10).
DOWNLOAD_TARGET=0.80    # glance download >= 80% of nginx sendfile
UPLOAD_TARGET=0.70      # glance upload   >= 70% of dd conv=fsync to the same disk
SLOWEST_TARGET=0.80     # glance upload   >= 80% of the slowest of dd conv=fsync, MD5 and the
                        # multihash on one core (issue 14, item 6)
INSPECT_TARGET_PCT=2    # format inspection < 2% of an upload's time
RSS_TARGET_MIB=64       # peak RSS during CONCURRENCY concurrent downloads < 64 MiB
CACHE_HIT_TARGET=0.95   # a cache hit >= 95% of the file store's download (issue 17, item 5)

usage() {
    cat <<EOF
Usage: bench/run.sh [options]

  --size-mib N          image size in MiB (default $SIZE_MIB)
  --store LIST          stores to benchmark: file (default), swift, s3, or a comma list
                        (file,swift,s3). The file store is always measured in full; swift and
                        s3 get upload/download MB/s and peak RSS beside it (no targets), against
                        the local Swift of tests/services/swift-s3.sh (started if not running)
  --repeat N            repeats of each throughput measurement; the median is reported (default $REPEAT)
  --concurrency N       concurrent downloads during the RSS measurement (default $CONCURRENCY)
  --head-seconds N      duration of the HEAD load test (default $HEAD_SECONDS)
  --head-connections N  keep-alive connections of the HEAD load test (default $HEAD_CONNECTIONS)
  --buffer-size BYTES   image_buffer_size for glance-api (default: the server's, 1048576)
  --direct-io on|off    filesystem_store_direct_io for glance-api (default: the server's, on)
  --hashing-algorithm A hashing_algorithm for glance-api: sha256, sha384 or sha512 (default $HASHING_ALGORITHM)
  --workers N           glance-api worker threads (default $WORKERS)
  --workdir DIR         work directory; the image file is cached there (default bench/work)
  --results FILE        JSON results (default bench/results/latest.json)
  --no-build            do not run cargo build --release --bins
  --no-install          do not apt-get install missing nginx/wrk (fall back instead)
  --cache               also measure the image cache: a glance-api on the Swift store with
                        image_cache_enabled, each round a first download (miss: from Swift,
                        filling the cache) and a second (hit: from the cache), beside the file
                        store's download and nginx of the same round; implies swift in --store
  --keep                keep the run's glance data directory and logs
  -h, --help            this help

Exit status: 0 all targets met, 1 a target missed, 2 usage or setup error.
EOF
}

die() { echo "run.sh: $*" >&2; exit 2; }
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
need_uint() {
    if ! is_uint "$2" || (( $2 < ${3:-1} )); then die "$1: expected a whole number >= ${3:-1}, got '$2'"; fi
}

# opt NAME VALUE...: the value of an option that takes one.
opt() { (( $# >= 2 )) || { usage >&2; die "$1 needs a value"; }; printf '%s' "$2"; }
while (( $# )); do
    case $1 in
        --size-mib) SIZE_MIB=$(opt "$@"); shift ;;
        --store) STORE=$(opt "$@"); shift ;;
        --repeat) REPEAT=$(opt "$@"); shift ;;
        --concurrency) CONCURRENCY=$(opt "$@"); shift ;;
        --head-seconds) HEAD_SECONDS=$(opt "$@"); shift ;;
        --head-connections) HEAD_CONNECTIONS=$(opt "$@"); shift ;;
        --buffer-size) BUFFER_SIZE=$(opt "$@"); shift ;;
        --direct-io) DIRECT_IO=$(opt "$@"); shift ;;
        --hashing-algorithm) HASHING_ALGORITHM=$(opt "$@"); shift ;;
        --workers) WORKERS=$(opt "$@"); shift ;;
        --workdir) WORKDIR=$(opt "$@"); shift ;;
        --results) RESULTS=$(opt "$@"); shift ;;
        --no-build) BUILD=0 ;;
        --no-install) INSTALL=0 ;;
        --keep) KEEP=1 ;;
        --cache) CACHE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
    shift
done

need_uint --size-mib "$SIZE_MIB"
need_uint --repeat "$REPEAT"
need_uint --concurrency "$CONCURRENCY"
need_uint --head-seconds "$HEAD_SECONDS"
need_uint --head-connections "$HEAD_CONNECTIONS"
need_uint --workers "$WORKERS"
[[ -z $BUFFER_SIZE ]] || need_uint --buffer-size "$BUFFER_SIZE" 4096
case $DIRECT_IO in
    ''|on|off) ;;
    *) die "--direct-io: expected on or off, got '$DIRECT_IO'" ;;
esac
HASHING_ALGORITHM=${HASHING_ALGORITHM,,}
case $HASHING_ALGORITHM in
    sha256|sha384|sha512) ;;
    *) die "--hashing-algorithm: expected sha256, sha384 or sha512, got '$HASHING_ALGORITHM'" ;;
esac
(( HEAD_CONNECTIONS >= HEAD_THREADS )) || HEAD_THREADS=$HEAD_CONNECTIONS
[[ -n $WORKDIR ]] || die "--workdir: empty"

# The stores under test. The file store is always measured (the full set, with targets); the
# object stores of OBJ_STORES get upload/download MB/s and peak RSS beside it.
OBJ_STORES=()
IFS=, read -r -a store_list <<< "$STORE"
(( ${#store_list[@]} )) || die "--store: empty"
for s in "${store_list[@]}"; do
    case $s in
        file) ;;
        swift|s3) [[ " ${OBJ_STORES[*]} " == *" $s "* ]] || OBJ_STORES+=("$s") ;;
        *) die "--store: unknown store '$s' (file, swift, s3, or a comma list of them)" ;;
    esac
done
if (( CACHE )) && [[ " ${OBJ_STORES[*]} " != *" swift "* ]]; then OBJ_STORES+=(swift); fi
STORE_NAMES=$(IFS=,; echo "file${OBJ_STORES[*]:+,${OBJ_STORES[*]}}")

# The local Swift (proxy with tempauth and s3api) of tests/services/swift-s3.sh.
SWIFT_SVC=$REPO/tests/services/swift-s3.sh
SWIFT_ENDPOINT=http://127.0.0.1:8080
SWIFT_AUTH=$SWIFT_ENDPOINT/auth/v1.0
SWIFT_USER=test:tester
SWIFT_KEY=testing
# Container/bucket names of this run; a store's name gets "-<store>" appended.
BENCH_TAG=glance-bench-$(date +%s)-$$

# store_config STORE DIR: the glance-api.conf lines of STORE; DIR is that glance-api's directory.
store_config() {
    case $1 in
        file)
            printf 'default_store = file\nfilesystem_store_datadir = %s/images\n' "$2"
            ;;
        swift)
            printf 'default_store = swift\n'
            printf 'swift_store_auth_address = %s\n' "$SWIFT_AUTH"
            printf 'swift_store_user = %s\nswift_store_key = %s\n' "$SWIFT_USER" "$SWIFT_KEY"
            printf 'swift_store_container = %s-swift\n' "$BENCH_TAG"
            printf 'swift_store_create_container_on_put = True\n'
            ;;
        s3)
            printf 'default_store = s3\n'
            printf 's3_store_host = %s\n' "$SWIFT_ENDPOINT"
            printf 's3_store_access_key = %s\ns3_store_secret_key = %s\n' "$SWIFT_USER" "$SWIFT_KEY"
            printf 's3_store_bucket = %s-s3\ns3_store_create_bucket_on_put = True\n' "$BENCH_TAG"
            printf 's3_store_bucket_url_format = path\ns3_store_region_name = us-east-1\n'
            ;;
    esac
}

for tool in curl awk dd cat sort "${HASHING_ALGORITHM}sum"; do
    command -v "$tool" >/dev/null || die "'$tool' is required"
done
# The MD5 and multihash ceilings need the openssl command of the libcrypto glance-api uses;
# without it they, and the upload's target against the slowest ceiling, are skipped.
HAVE_OPENSSL=0
command -v openssl >/dev/null && HAVE_OPENSSL=1

# ---- helpers -----------------------------------------------------------------------------
now() { date +%s.%N; }
# calc EXPR [DECIMALS]: floating-point arithmetic through awk.
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
# median/best of numbers given as arguments.
median() { median_n 2 "$@"; }
median3() { median_n 3 "$@"; }
median_n() {
    local d=$1; shift
    printf '%s\n' "$@" | sort -g | awk -v d="$d" '{ a[NR] = $1 }
        END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.*f", d, m }'
}
best() { printf '%s\n' "$@" | sort -g | tail -n 1; }
least() { printf '%s\n' "$@" | sort -g | head -n 1; }
json_array() { local IFS=,; printf '[%s]' "$*"; }
mb_per_s() { calc "$1 / $2 / 1000000" 2; }   # bytes, seconds -> MB/s (10^6 bytes)

BYTES=$(( SIZE_MIB * 1024 * 1024 ))
RUN_DIR=""
API_PID=""
API_PIDS=()             # every glance-api this script started
NGINX_PID=""
OBJ_API=""              # the object-store glance-api being measured, and its images left to delete
OBJ_IDS=()
CONTAINERS=()           # Swift containers (S3 buckets) this run may have created
CLIENT_PIDS=()
CREATED_POLICY_RC=0
API_EXTRA=""            # more glance-api.conf lines for the next start_api

# swift_auth: sets SWIFT_URL and SWIFT_TOKEN (tempauth v1.0) for the Swift API.
swift_auth() {
    local h
    h=$(curl -sS -m 10 -o /dev/null -D - -H "X-Auth-User: $SWIFT_USER" -H "X-Auth-Key: $SWIFT_KEY" \
        "$SWIFT_AUTH" | tr -d '\r') || return 1
    SWIFT_URL=$(awk -F': ' 'tolower($1) == "x-storage-url" { print $2 }' <<< "$h")
    SWIFT_TOKEN=$(awk -F': ' 'tolower($1) == "x-auth-token" { print $2 }' <<< "$h")
    [[ -n $SWIFT_URL && -n $SWIFT_TOKEN ]]
}

# swift_delete_container NAME: delete the container (an S3 bucket is one too) and whatever is
# left in it (segments of an interrupted upload). A missing container is fine.
swift_delete_container() {
    local c=$1 code pass name names
    for (( pass = 0; pass < 3; pass++ )); do
        names=$(curl -sS -m 30 -f -H "X-Auth-Token: $SWIFT_TOKEN" "$SWIFT_URL/$c?format=plain" 2>/dev/null) \
            || names=""
        [[ -n $names ]] || break
        while IFS= read -r name; do
            [[ -z $name ]] || curl -sS -m 30 -o /dev/null -X DELETE -H "X-Auth-Token: $SWIFT_TOKEN" \
                "$SWIFT_URL/$c/$name" || true
        done <<< "$names"
    done
    code=$(curl -sS -m 30 -o /dev/null -w '%{http_code}' -X DELETE -H "X-Auth-Token: $SWIFT_TOKEN" \
        "$SWIFT_URL/$c") || code=000
    case $code in
        204) log "deleted container $c" ;;
        404) ;;
        *) log "could not delete container $c (status $code)" ;;
    esac
}

# The script's stderr, for cleanup(): a signal can arrive while stderr is redirected to a file
# of the run directory (the `time` measurements), which cleanup deletes.
exec 9>&2
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 2>&9
    local pid id c
    for pid in "${CLIENT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Images still held by an object-store glance-api: deleted through the API first.
    for id in "${OBJ_IDS[@]}"; do
        curl -sS -m 60 -o /dev/null -X DELETE "$OBJ_API/v1/images/$id" 2>/dev/null || true
    done
    for pid in "${API_PIDS[@]}"; do stop_pid "$pid"; done
    if (( ${#CONTAINERS[@]} )); then
        if swift_auth; then
            for c in "${CONTAINERS[@]}"; do swift_delete_container "$c" || true; done
        else
            log "no Swift token: containers ${CONTAINERS[*]} not deleted"
        fi
    fi
    [[ -z $NGINX_PID ]] || stop_pid "$NGINX_PID"
    (( CREATED_POLICY_RC == 0 )) || rm -f /usr/sbin/policy-rc.d
    rm -f "$WORKDIR/ddcopy"
    if [[ -n $RUN_DIR && -d $RUN_DIR ]]; then
        if (( KEEP )); then log "kept $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- setup -------------------------------------------------------------------------------
mkdir -p "$WORKDIR" "$(dirname "$RESULTS")"
WORKDIR=$(cd "$WORKDIR" && pwd)
RUN_DIR=$(mktemp -d "$WORKDIR/run.XXXXXX")
LOAD_BEFORE=$(loadavg)

release_binaries
load_tools
[[ -n $NGINX ]] || log "nginx unavailable: the download ceiling falls back to cat"
image_file
if [[ ! -f $DATA.md5 ]]; then
    md5sum "$DATA" | cut -d' ' -f1 > "$DATA.md5"
fi
DATA_MD5=$(cat "$DATA.md5")
if [[ ! -f $DATA.$HASHING_ALGORITHM ]]; then
    "${HASHING_ALGORITHM}sum" "$DATA" | cut -d' ' -f1 > "$DATA.$HASHING_ALGORITHM"
fi
DATA_OS_HASH=$(cat "$DATA.$HASHING_ALGORITHM")
cat "$DATA" > /dev/null   # into the page cache

if (( ${#OBJ_STORES[@]} )); then
    log "Swift (and its S3 API) for ${OBJ_STORES[*]}: bash tests/services/swift-s3.sh start"
    bash "$SWIFT_SVC" start >&2 || die "tests/services/swift-s3.sh start failed"
    swift_auth || die "no token from Swift at $SWIFT_AUTH"
fi

# ---- glance-api --------------------------------------------------------------------------
# start_api STORE DIR: a glance-api for STORE with its config, registry and logs in DIR. Sets
# API_PID and API (its URL).
start_api() {
    local dir=$2
    mkdir -p "$dir/images"
    {
        printf '[DEFAULT]\n'
        printf 'bind_host = 127.0.0.1\nbind_port = 0\nworkers = %s\n' "$WORKERS"
        printf 'verbose = False\ndebug = False\n'
        printf 'sql_connection = sqlite:///%s/glance.sqlite\ndb_auto_create = True\n' "$dir"
        store_config "$1" "$dir"
        [[ -z $BUFFER_SIZE ]] || printf 'image_buffer_size = %s\n' "$BUFFER_SIZE"
        printf 'hashing_algorithm = %s\n' "$HASHING_ALGORITHM"
        case $DIRECT_IO in
            on) printf 'filesystem_store_direct_io = True\n' ;;
            off) printf 'filesystem_store_direct_io = False\n' ;;
        esac
        printf '%s' "$API_EXTRA"
    } > "$dir/glance-api.conf"
    "$API_BIN" --config-file "$dir/glance-api.conf" \
        > "$dir/api.stdout" 2> "$dir/api.stderr" &
    API_PID=$!
    API_PIDS+=("$API_PID")
    local i line=""
    for (( i = 0; i < 300; i++ )); do
        line=$(head -n 1 "$dir/api.stdout" 2>/dev/null || true)
        [[ $line == "listening on "* ]] && break
        kill -0 "$API_PID" 2>/dev/null || { cat "$dir/api.stderr" >&2; die "glance-api exited"; }
        sleep 0.1
    done
    [[ $line == "listening on "* ]] || die "glance-api did not report its port in 30 s"
    API="http://${line#listening on }"
    log "glance-api pid $API_PID on $API (store $1, workers $WORKERS, image_buffer_size ${BUFFER_SIZE:-default}, direct I/O ${DIRECT_IO:-default}, hashing_algorithm $HASHING_ALGORITHM)"
}

# ---- nginx -------------------------------------------------------------------------------
start_nginx() {
    local ng=$RUN_DIR/nginx attempt port i
    mkdir -p "$ng/tmp"
    for (( attempt = 0; attempt < 5; attempt++ )); do
        port=$(free_port) || return 1
        cat > "$ng/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
$( [[ $EUID -eq 0 ]] && echo "user root;" )
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $ng/tmp/body;
    proxy_temp_path $ng/tmp/proxy;
    fastcgi_temp_path $ng/tmp/fastcgi;
    uwsgi_temp_path $ng/tmp/uwsgi;
    scgi_temp_path $ng/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $WORKDIR;
        location / { }
    }
}
EOF
        "$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" \
            > "$ng/stdout" 2> "$ng/stderr" &
        NGINX_PID=$!
        NGINX_URL="http://127.0.0.1:$port/$(basename "$DATA")"
        for (( i = 0; i < 50; i++ )); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            if [[ $(curl -s -o /dev/null -w '%{http_code}' -I "$NGINX_URL") == 200 ]]; then
                log "nginx pid $NGINX_PID on 127.0.0.1:$port (sendfile on)"
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
# CPU seconds (user+system, exited threads included) of process $1.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# Seconds the threads of process $1 have spent runnable but waiting for a CPU (schedstat).
proc_runq() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ w += $2 } END { printf "%.2f", w / 1e9 }'; }

# measure_dd: the write ceiling. Sets DD_MBPS and DD_CPU (dd's user+system seconds).
measure_dd() {
    sync
    local TIMEFORMAT='%R %U %S' wall user sys
    { time dd if="$DATA" of="$WORKDIR/ddcopy" bs=1M conv=fsync status=none; } 2> "$RUN_DIR/time"
    read -r wall user sys < <(tail -n 1 "$RUN_DIR/time")
    rm -f "$WORKDIR/ddcopy"
    DD_MBPS=$(mb_per_s "$BYTES" "$wall")
    DD_CPU=$(calc "$user + $sys")
}

# measure_dd_direct: the disk without the page cache (dd oflag=direct, as the file store writes
# with filesystem_store_direct_io). Sets DDD_MBPS; info only.
measure_dd_direct() {
    sync
    local TIMEFORMAT='%R' wall
    if ! { time dd if="$DATA" of="$WORKDIR/ddcopy" bs=1M oflag=direct conv=fsync status=none; } 2> "$RUN_DIR/time"; then
        DDD_MBPS=0   # no O_DIRECT on this filesystem
    else
        wall=$(tail -n 1 "$RUN_DIR/time")
        DDD_MBPS=$(mb_per_s "$BYTES" "$wall")
    fi
    rm -f "$WORKDIR/ddcopy"
}

# measure_digest ALGO: how fast this machine's libcrypto (the one glance-api links) computes
# one ALGO digest on one core, over 1 MiB blocks in memory. Sets DIGEST_MBPS.
measure_digest() {
    local bps
    bps=$(openssl speed -mr -evp "$1" -bytes 1048576 -seconds 2 2>/dev/null \
        | awk -F: -v a="$1" '$1 == "+F" && $3 == a { print $4 }')
    [[ -n $bps ]] || die "openssl speed -evp $1: no result"
    DIGEST_MBPS=$(calc "$bps / 1000000" 2)
}

# measure_md5: the MD5 rate: the ceiling of any upload that returns Glance's checksum, since
# one MD5 cannot be split across cores. Sets MD5_MBPS.
measure_md5() { measure_digest md5; MD5_MBPS=$DIGEST_MBPS; }

# measure_os_hash: the rate of HASHING_ALGORITHM, the upload's os_hash_value: one hash over
# the whole image too, on a thread of its own beside the MD5. Sets OS_HASH_MBPS.
measure_os_hash() { measure_digest "$HASHING_ALGORITHM"; OS_HASH_MBPS=$DIGEST_MBPS; }

# measure_cat: the read ceiling (page cache). Sets CAT_MBPS.
measure_cat() {
    local TIMEFORMAT='%R' wall
    { time cat "$DATA" > /dev/null; } 2> "$RUN_DIR/time"
    wall=$(tail -n 1 "$RUN_DIR/time")
    CAT_MBPS=$(mb_per_s "$BYTES" "$wall")
}

# curl_get URL: download to /dev/null. Sets GET_MBPS from curl's own timing.
curl_get() {
    local out code size total
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$1")
    read -r code size total <<< "$out"
    [[ $code == 200 && $size == "$BYTES" ]] || die "GET $1: status $code, $size of $BYTES bytes"
    GET_MBPS=$(mb_per_s "$size" "$total")
}

# upload NAME: POST the image. Sets UPLOAD_ID, UPLOAD_MBPS (curl's time_total), UPLOAD_CPU
# (glance-api's CPU seconds), UPLOAD_CURL_CPU and UPLOAD_RUNQ (seconds glance-api's threads
# were runnable but waiting for a CPU: the cost of sharing the machine).
upload() {
    sync
    local out code total cpu0 runq0 TIMEFORMAT='%U %S' user sys
    cpu0=$(proc_cpu "$API_PID") runq0=$(proc_runq "$API_PID")
    { time out=$(curl -sS -o "$RUN_DIR/upload.json" -w '%{http_code} %{time_total}' \
        -X POST -T "$DATA" -H 'Expect:' \
        -H 'Content-Type: application/octet-stream' \
        -H "x-image-meta-name: $1" -H 'x-image-meta-disk_format: raw' \
        -H 'x-image-meta-container_format: bare' -H "x-image-meta-size: $BYTES" \
        "$API/v1/images"); } 2> "$RUN_DIR/time"
    read -r user sys < <(tail -n 1 "$RUN_DIR/time")
    UPLOAD_CPU=$(calc "$(proc_cpu "$API_PID") - $cpu0")
    UPLOAD_RUNQ=$(calc "$(proc_runq "$API_PID") - $runq0")
    UPLOAD_CURL_CPU=$(calc "$user + $sys")
    read -r code total <<< "$out"
    [[ $code == 201 ]] || { cat "$RUN_DIR/upload.json" >&2; die "upload: status $code"; }
    UPLOAD_ID=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$RUN_DIR/upload.json" | head -n 1)
    local sum algo os_hash
    sum=$(sed -n 's/.*"checksum": *"\([^"]*\)".*/\1/p' "$RUN_DIR/upload.json" | head -n 1)
    algo=$(sed -n 's/.*"os_hash_algo": *"\([^"]*\)".*/\1/p' "$RUN_DIR/upload.json" | head -n 1)
    os_hash=$(sed -n 's/.*"os_hash_value": *"\([^"]*\)".*/\1/p' "$RUN_DIR/upload.json" | head -n 1)
    [[ -n $UPLOAD_ID ]] || die "upload: no image id in $(cat "$RUN_DIR/upload.json")"
    [[ $sum == "$DATA_MD5" ]] || die "upload: checksum $sum, expected $DATA_MD5"
    [[ $algo == "$HASHING_ALGORITHM" && $os_hash == "$DATA_OS_HASH" ]] \
        || die "upload: os_hash $algo $os_hash, expected $HASHING_ALGORITHM $DATA_OS_HASH"
    UPLOAD_MBPS=$(mb_per_s "$BYTES" "$total")
}

# ---- run ---------------------------------------------------------------------------------
start_api file "$RUN_DIR"
if [[ -n $NGINX ]]; then
    start_nginx || { log "nginx did not start: the download ceiling falls back to cat"; NGINX=""; }
fi

# Each round measures the ceiling and glance back to back, in alternating order, so that
# drifting load on a shared machine hits both alike.
log "upload: $REPEAT x (dd conv=fsync, glance POST), $SIZE_MIB MiB"
DD=() DD_CPUS=() UP=() UP_CPUS=() UP_CURL_CPUS=() UP_RUNQS=() UP_PAIRED=() IMAGE_ID=""
DDD=() MD5S=() OS_HASHES=()
for (( r = 1; r <= REPEAT; r++ )); do
    (( r % 2 )) && measure_dd
    upload "bench-$r"
    (( r % 2 )) || measure_dd
    DD+=("$DD_MBPS") DD_CPUS+=("$DD_CPU")
    UP+=("$UPLOAD_MBPS") UP_CPUS+=("$UPLOAD_CPU") UP_CURL_CPUS+=("$UPLOAD_CURL_CPU") UP_RUNQS+=("$UPLOAD_RUNQ")
    UP_PAIRED+=("$(calc "$UPLOAD_MBPS / $DD_MBPS" 3)")
    log "  #$r dd $DD_MBPS MB/s (cpu ${DD_CPU}s), glance upload $UPLOAD_MBPS MB/s (glance cpu ${UPLOAD_CPU}s, waiting for a cpu ${UPLOAD_RUNQ}s; curl cpu ${UPLOAD_CURL_CPU}s)"
    if [[ -z $IMAGE_ID ]]; then
        IMAGE_ID=$UPLOAD_ID   # kept for the download, RSS and HEAD tests
    else
        curl -sS -o /dev/null -X DELETE "$API/v1/images/$UPLOAD_ID"
    fi
done

# The other ceilings, in their own loop so that they do not change what the upload rounds see
# (on a VM, idle time between rounds lets freed memory go back to the host, which slows the
# next buffered dd). The hash rates of round r are set against upload round r.
log "more ceilings: $REPEAT x (dd oflag=direct$( (( HAVE_OPENSSL )) && echo ", openssl speed md5 and $HASHING_ALGORITHM"))"
for (( r = 1; r <= REPEAT; r++ )); do
    measure_dd_direct; DDD+=("$DDD_MBPS")
    if (( HAVE_OPENSSL )); then
        measure_md5; MD5S+=("$MD5_MBPS")
        measure_os_hash; OS_HASHES+=("$OS_HASH_MBPS")
    fi
done
log "  dd direct ${DDD[*]} MB/s${MD5S:+; md5 ${MD5S[*]} MB/s; $HASHING_ALGORITHM ${OS_HASHES[*]} MB/s}"

log "read ceiling: $REPEAT x cat > /dev/null"
CAT=()
for (( r = 1; r <= REPEAT; r++ )); do measure_cat; CAT+=("$CAT_MBPS"); done
log "  cat ${CAT[*]} MB/s"

log "download: $REPEAT x (${NGINX:+nginx, }glance GET)"
NG=() DL=() DL_PAIRED=()
curl -sS -o /dev/null "$API/v1/images/$IMAGE_ID"   # warm-up: the stored copy into the page cache
for (( r = 1; r <= REPEAT; r++ )); do
    if [[ -n $NGINX ]] && (( r % 2 )); then curl_get "$NGINX_URL"; NG+=("$GET_MBPS"); fi
    curl_get "$API/v1/images/$IMAGE_ID"; DL+=("$GET_MBPS")
    if [[ -n $NGINX ]] && ! (( r % 2 )); then curl_get "$NGINX_URL"; NG+=("$GET_MBPS"); fi
    [[ -z $NGINX ]] || DL_PAIRED+=("$(calc "${DL[-1]} / ${NG[-1]}" 3)")
    log "  #$r ${NGINX:+nginx ${NG[-1]} MB/s, }glance ${DL[-1]} MB/s"
done

log "peak RSS: $CONCURRENCY concurrent downloads"
RSS_BASE=$(proc_kib "$API_PID" VmRSS)
HWM_BEFORE=$(proc_kib "$API_PID" VmHWM)
HWM_RESET=false
# Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so VmHWM after the
# test is the peak of the test itself rather than of the process's whole life.
if echo 5 > "/proc/$API_PID/clear_refs" 2>/dev/null; then HWM_RESET=true; fi
CLIENT_PIDS=()
t0=$(now)
for (( c = 1; c <= CONCURRENCY; c++ )); do
    curl -sS -o /dev/null -w '%{http_code} %{size_download}\n' "$API/v1/images/$IMAGE_ID" \
        > "$RUN_DIR/concurrent.$c" &
    CLIENT_PIDS+=($!)
done
RSS_MAX=$RSS_BASE SAMPLES=0
# Sample every ~50 ms while the clients run; bounded to 20 minutes.
for (( i = 0; i < 24000; i++ )); do
    rss=$(proc_kib "$API_PID" VmRSS)
    (( rss > RSS_MAX )) && RSS_MAX=$rss
    SAMPLES=$(( SAMPLES + 1 ))
    alive=0
    for pid in "${CLIENT_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1 && break; done
    (( alive )) || break
    sleep 0.05
done
for pid in "${CLIENT_PIDS[@]}"; do wait "$pid" || die "a concurrent download failed"; done
t1=$(now)
CLIENT_PIDS=()
HWM_AFTER=$(proc_kib "$API_PID" VmHWM)
for (( c = 1; c <= CONCURRENCY; c++ )); do
    read -r code size < "$RUN_DIR/concurrent.$c"
    [[ $code == 200 && $size == "$BYTES" ]] || die "concurrent download $c: status $code, $size bytes"
done
CONC_SECONDS=$(calc "$t1 - $t0" 3)
CONC_MBPS=$(mb_per_s "$(( BYTES * CONCURRENCY ))" "$CONC_SECONDS")
RSS_PEAK=$(( HWM_AFTER > RSS_MAX ? HWM_AFTER : RSS_MAX ))
$HWM_RESET || RSS_PEAK=$RSS_MAX   # without the reset, VmHWM covers the uploads too
log "  baseline VmRSS $RSS_BASE KiB, sampled max $RSS_MAX KiB ($SAMPLES samples), VmHWM $HWM_AFTER KiB; aggregate $CONC_MBPS MB/s"

if [[ -n $WRK ]]; then
    HEAD_TOOL="wrk -t $HEAD_THREADS -c $HEAD_CONNECTIONS -d ${HEAD_SECONDS}s, HEAD"
else
    HEAD_TOOL="curl keep-alive loop, 1 connection, ${HEAD_SECONDS}s"
fi
# head_rps URL: prints "requests/s non2xx_or_errors"
head_rps() {
    if [[ -n $WRK ]]; then
        cat > "$RUN_DIR/head.lua" <<'EOF'
wrk.method = "HEAD"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
        local out req us err
        out=$(timeout $(( HEAD_SECONDS + 30 )) "$WRK" -t "$HEAD_THREADS" -c "$HEAD_CONNECTIONS" \
            -d "${HEAD_SECONDS}s" -s "$RUN_DIR/head.lua" "$1" | awk '$1 == "BENCH"')
        read -r _ req us err <<< "$out"
        [[ -n ${req-} ]] || die "wrk produced no result for $1"
        echo "$(calc "$req / ($us / 1000000)" 0) $err"
    else
        # Fallback: sequential keep-alive HEADs with curl for HEAD_SECONDS (bounded count).
        local n=20000 t0 t1 urls=()
        for (( i = 0; i < n; i++ )); do urls+=("$1"); done
        t0=$(now)
        local done_n
        done_n=$(timeout "$HEAD_SECONDS" curl -s -I -o /dev/null -w '%{http_code}\n' "${urls[@]}" | grep -c '^200$' || true)
        t1=$(now)
        echo "$(calc "$done_n / ($t1 - $t0)" 0) 0"
    fi
}

log "HEAD requests/s: ${HEAD_SECONDS}s, $HEAD_CONNECTIONS connections"
v=$(head_rps "$API/v1/images/$IMAGE_ID"); read -r HEAD_RPS HEAD_ERR <<< "$v"
HEAD_NG_RPS="" HEAD_NG_ERR=""
if [[ -n $NGINX ]]; then
    # An empty file: wrk waits for a body after a HEAD response that declares a length, and
    # nginx declares the file's; glance's HEAD says Content-Length: 0.
    : > "$WORKDIR/empty"
    v=$(head_rps "${NGINX_URL%/*}/empty"); read -r HEAD_NG_RPS HEAD_NG_ERR <<< "$v"
fi
log "  glance $HEAD_RPS req/s (errors $HEAD_ERR)${NGINX:+, nginx $HEAD_NG_RPS req/s}"

# ---- object stores -----------------------------------------------------------------------
# For each of OBJ_STORES, a second glance-api configured for it: REPEAT uploads and REPEAT
# downloads of the same image, each divided by the file store's figure of the same round.
# The peak RSS is that glance-api's VmHWM over its uploads and downloads; the file store's
# counterpart is its VmHWM before the concurrent-download test (HWM_BEFORE), after the same
# sequence of uploads and downloads.
declare -A R_UP R_UPS R_UPR R_UPRS R_UPCPU R_DL R_DLS R_DLR R_DLRS R_RSS R_BASE
FILE_API=$API FILE_API_PID=$API_PID
for st in "${OBJ_STORES[@]}"; do
    CONTAINERS+=("$BENCH_TAG-$st")
    [[ $st != s3 ]] || CONTAINERS+=("$BENCH_TAG-$st+segments")
    start_api "$st" "$RUN_DIR/$st"
    OBJ_API=$API
    R_BASE[$st]=$(proc_kib "$API_PID" VmRSS)
    echo 5 > "/proc/$API_PID/clear_refs" 2>/dev/null || true
    log "$st: upload $REPEAT x glance POST, $SIZE_MIB MiB (container/bucket $BENCH_TAG-$st)"
    S_UP=() S_UPR=() S_UPCPU=() keep=""
    for (( r = 1; r <= REPEAT; r++ )); do
        upload "bench-$st-$r"
        OBJ_IDS+=("$UPLOAD_ID")
        S_UP+=("$UPLOAD_MBPS") S_UPCPU+=("$UPLOAD_CPU")
        S_UPR+=("$(calc "$UPLOAD_MBPS / ${UP[r - 1]}" 3)")
        log "  #$r $st upload $UPLOAD_MBPS MB/s (file store ${UP[r - 1]} MB/s; glance cpu ${UPLOAD_CPU}s, waiting for a cpu ${UPLOAD_RUNQ}s)"
        if [[ -z $keep ]]; then
            keep=$UPLOAD_ID
        else
            code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$API/v1/images/$UPLOAD_ID")
            [[ $code == 200 ]] || die "$st: DELETE /v1/images/$UPLOAD_ID: status $code"
            OBJ_IDS=("$keep")
        fi
    done
    log "$st: download $REPEAT x glance GET"
    S_DL=() S_DLR=()
    curl_get "$API/v1/images/$keep"   # warm-up, as for the file store
    for (( r = 1; r <= REPEAT; r++ )); do
        curl_get "$API/v1/images/$keep"
        S_DL+=("$GET_MBPS") S_DLR+=("$(calc "$GET_MBPS / ${DL[r - 1]}" 3)")
        log "  #$r $st download $GET_MBPS MB/s (file store ${DL[r - 1]} MB/s)"
    done
    R_RSS[$st]=$(proc_kib "$API_PID" VmHWM)
    log "  $st glance-api baseline VmRSS ${R_BASE[$st]} KiB, VmHWM ${R_RSS[$st]} KiB"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$API/v1/images/$keep")
    [[ $code == 200 ]] || die "$st: DELETE /v1/images/$keep: status $code"
    OBJ_IDS=()
    stop_pid "$API_PID"
    API=$FILE_API API_PID=$FILE_API_PID OBJ_API=""
    R_UP[$st]=$(median "${S_UP[@]}") R_UPS[$st]=$(json_array "${S_UP[@]}")
    R_UPR[$st]=$(median3 "${S_UPR[@]}") R_UPRS[$st]=$(json_array "${S_UPR[@]}")
    R_UPCPU[$st]=$(json_array "${S_UPCPU[@]}")
    R_DL[$st]=$(median "${S_DL[@]}") R_DLS[$st]=$(json_array "${S_DL[@]}")
    R_DLR[$st]=$(median3 "${S_DLR[@]}") R_DLRS[$st]=$(json_array "${S_DLR[@]}")
done

# ---- image cache -------------------------------------------------------------------------
# A glance-api on the Swift store with the image cache on: one image uploaded, then per round
# its cached copy purged (DELETE /v1/cached_images/<id>), a first download (the miss: from
# Swift, written into the cache on the way) and a second (the hit: from the cache file, sent
# as file-store downloads are), then the file store's download and nginx, so that the hit is
# set against ceilings of the same moment.
CACHE_MISS=() CACHE_HIT=() CACHE_FILE=() CACHE_NG=() CACHE_HIT_FILE=() CACHE_HIT_NG=()
if (( CACHE )); then
    API_EXTRA=$(printf 'image_cache_enabled = True\nimage_cache_datadir = %s\nimage_cache_max_size_bytes = %s\n' \
        "$RUN_DIR/cache/image-cache" "$(( BYTES * 2 ))")
    start_api swift "$RUN_DIR/cache"
    API_EXTRA=""
    OBJ_API=$API
    upload "bench-cache"
    OBJ_IDS+=("$UPLOAD_ID")
    CACHE_ID=$UPLOAD_ID
    log "cache: $REPEAT x (purge, glance GET miss, glance GET hit, file store GET${NGINX:+, nginx})"
    for (( r = 1; r <= REPEAT; r++ )); do
        code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$API/v1/cached_images/$CACHE_ID")
        [[ $code == 200 ]] || die "cache: DELETE /v1/cached_images/$CACHE_ID: status $code"
        curl_get "$API/v1/images/$CACHE_ID"; CACHE_MISS+=("$GET_MBPS")
        curl -sS "$API/v1/cached_images" | grep -q "\"$CACHE_ID\"" \
            || die "cache: the first download did not fill the cache"
        curl_get "$API/v1/images/$CACHE_ID"; CACHE_HIT+=("$GET_MBPS")
        curl -sS "$API/v1/cached_images" | grep -q '"hits": *1[,}]' \
            || die "cache: the second download was not a hit"
        curl_get "$FILE_API/v1/images/$IMAGE_ID"; CACHE_FILE+=("$GET_MBPS")
        CACHE_HIT_FILE+=("$(calc "${CACHE_HIT[-1]} / ${CACHE_FILE[-1]}" 3)")
        if [[ -n $NGINX ]]; then
            curl_get "$NGINX_URL"; CACHE_NG+=("$GET_MBPS")
            CACHE_HIT_NG+=("$(calc "${CACHE_HIT[-1]} / ${CACHE_NG[-1]}" 3)")
        fi
        log "  #$r miss ${CACHE_MISS[-1]} MB/s, hit ${CACHE_HIT[-1]} MB/s, file store ${CACHE_FILE[-1]} MB/s${NGINX:+, nginx ${CACHE_NG[-1]} MB/s}"
    done
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$API/v1/images/$CACHE_ID")
    [[ $code == 200 ]] || die "cache: DELETE /v1/images/$CACHE_ID: status $code"
    OBJ_IDS=()
    stop_pid "$API_PID"
    API=$FILE_API API_PID=$FILE_API_PID OBJ_API=""
fi
LOAD_AFTER=$(loadavg)

# ---- inspection cost ---------------------------------------------------------------------
# Every upload's bytes pass through the format inspector (src/format/) on the copying thread,
# so its time adds to the upload's. It is measured on its own (`cargo bench --bench inspect`:
# 1 GiB in reads of 16 KiB to 1 MiB, raw and qcow2 data; the slowest case is taken) and set
# against the upload rate above: the share of an upload's time spent inspecting.
INSPECT_MBPS=""
if (( BUILD )); then
    log "inspection: cargo bench --bench inspect"
    INSPECT_OUT=$(cd "$REPO" && cargo bench --quiet --bench inspect 2>&1) || die "cargo bench --bench inspect failed: $INSPECT_OUT"
    INSPECT_MBPS=$(awk '$1 == "inspect_min_mb_per_s" { print $2 }' <<< "$INSPECT_OUT")
    log "  inspector alone: $INSPECT_MBPS MB/s (slowest case)"
else
    log "inspection: skipped (--no-build: cargo bench would build)"
fi

# ---- results -----------------------------------------------------------------------------
UP_MED=$(median "${UP[@]}") DD_MED=$(median "${DD[@]}")
DL_MED=$(median "${DL[@]}") CAT_MED=$(median "${CAT[@]}")
if [[ -n $NGINX ]]; then
    NG_MED=$(median "${NG[@]}") DL_CEIL_NAME="nginx sendfile"
else
    NG_MED=$CAT_MED DL_CEIL_NAME="cat (no nginx)"
fi
# The verdicts use the median of the per-round ratios (each glance measurement divided by the
# ceiling measured next to it): on a shared machine the ceiling itself swings several-fold
# between rounds, and pairing cancels most of that. The ratio of the medians is kept too.
UP_PAIRED_MED=$(median3 "${UP_PAIRED[@]}")
DDD_MED=$(median "${DDD[@]}")
UP_DDD_RATIO=$(awk -v d="$DDD_MED" 'BEGIN { exit !(d > 0) }' && calc "$UP_MED / $DDD_MED" 3 || echo -)
MD5_MED="" UP_MD5_RATIO="-" OS_HASH_MED="" UP_OS_HASH_RATIO="-"
if (( ${#MD5S[@]} )); then MD5_MED=$(median "${MD5S[@]}") UP_MD5_RATIO=$(calc "$UP_MED / $MD5_MED" 3); fi
if (( ${#OS_HASHES[@]} )); then
    OS_HASH_MED=$(median "${OS_HASHES[@]}") UP_OS_HASH_RATIO=$(calc "$UP_MED / $OS_HASH_MED" 3)
fi
# The issue's upload target: each round's upload against the slowest of that round's dd, MD5
# and multihash rates (an upload can be no faster than its disk and either of its hashes).
SLOWEST=() SLOWEST_NAMES=() SLOWEST_PAIRED=() SLOWEST_MED="" SLOWEST_RATIO=""
for (( r = 0; r < ${#OS_HASHES[@]}; r++ )); do
    SLOWEST+=("$(least "${DD[r]}" "${MD5S[r]}" "${OS_HASHES[r]}")")
    case ${SLOWEST[r]} in
        "${DD[r]}") SLOWEST_NAMES+=(dd) ;;
        "${MD5S[r]}") SLOWEST_NAMES+=(md5) ;;
        *) SLOWEST_NAMES+=("$HASHING_ALGORITHM") ;;
    esac
    SLOWEST_PAIRED+=("$(calc "${UP[r]} / ${SLOWEST[r]}" 3)")
done
if (( ${#SLOWEST[@]} )); then
    SLOWEST_MED=$(median "${SLOWEST[@]}") SLOWEST_RATIO=$(median3 "${SLOWEST_PAIRED[@]}")
fi
UP_RATIO_OF_MEDIANS=$(calc "$UP_MED / $DD_MED" 3)
UP_RATIO=$UP_PAIRED_MED
DL_RATIO_OF_MEDIANS=$(calc "$DL_MED / $NG_MED" 3)
if (( ${#DL_PAIRED[@]} )); then
    DL_PAIRED_MED=$(median3 "${DL_PAIRED[@]}") DL_RATIO=$DL_PAIRED_MED
else
    DL_PAIRED_MED="" DL_RATIO=$DL_RATIO_OF_MEDIANS   # cat fallback: not measured in pairs
fi
CAT_RATIO=$(calc "$DL_MED / $CAT_MED" 3)
RSS_PEAK_MIB=$(calc "$RSS_PEAK / 1024" 1)
RSS_BASE_MIB=$(calc "$RSS_BASE / 1024" 1)
HEAD_RATIO=""
if [[ -n $HEAD_NG_RPS && $HEAD_NG_RPS != 0 ]]; then HEAD_RATIO=$(calc "$HEAD_RPS / $HEAD_NG_RPS" 3); fi

INSPECT_SHARE="" INSPECT_PASS="skipped"
pass() { awk "BEGIN { exit !($1) }" && echo PASS || echo FAIL; }
if [[ -n $INSPECT_MBPS ]]; then
    INSPECT_SHARE=$(calc "100 * $UP_MED / $INSPECT_MBPS" 4)
    INSPECT_PASS=$(pass "$INSPECT_SHARE < $INSPECT_TARGET_PCT")
fi
UP_PASS=$(pass "$UP_RATIO >= $UPLOAD_TARGET")
SLOWEST_PASS="skipped"
[[ -z $SLOWEST_RATIO ]] || SLOWEST_PASS=$(pass "$SLOWEST_RATIO >= $SLOWEST_TARGET")
DL_PASS=$(pass "$DL_RATIO >= $DOWNLOAD_TARGET")
RSS_PASS=$(pass "$RSS_PEAK < $RSS_TARGET_MIB * 1024")

row() { printf '%-34s %12s  %-24s %7s  %-9s %s\n' "$@"; }
echo
echo "glance-rs benchmark: $SIZE_MIB MiB image, store file${OBJ_STORES[*]:+ (and ${OBJ_STORES[*]} below)}, $REPEAT rounds (MB = 10^6 bytes)"
echo "value, ceiling: medians; ratio: median of the per-round ratios$([[ -n $NGINX ]] || echo " (download vs cat: ratio of the medians)")"
echo "load average before: $LOAD_BEFORE; after: $LOAD_AFTER ($(nproc) cores)"
echo
row "measure" "value" "ceiling" "ratio" "target" "result"
row "upload MB/s" "$UP_MED" "dd fsync $DD_MED" "$UP_RATIO" ">= $UPLOAD_TARGET" "$UP_PASS"
row "upload MB/s vs dd direct" "$UP_MED" "dd oflag=direct $DDD_MED" "$UP_DDD_RATIO" "-" "info"
row "upload MB/s vs MD5" "$UP_MED" "${MD5_MED:+openssl speed md5 $MD5_MED}" "$UP_MD5_RATIO" "-" "info"
row "upload MB/s vs $HASHING_ALGORITHM" "$UP_MED" "${OS_HASH_MED:+openssl $HASHING_ALGORITHM $OS_HASH_MED}" "$UP_OS_HASH_RATIO" "-" "info"
row "upload MB/s vs slowest hash/dd" "$UP_MED" "${SLOWEST_MED:+slowest $SLOWEST_MED}" "${SLOWEST_RATIO:--}" ">= $SLOWEST_TARGET" "$SLOWEST_PASS"
row "download MB/s" "$DL_MED" "$DL_CEIL_NAME $NG_MED" "$DL_RATIO" ">= $DOWNLOAD_TARGET" "$DL_PASS"
row "download MB/s vs cat" "$DL_MED" "cat $CAT_MED" "$CAT_RATIO" "-" "info"
row "peak RSS MiB, $CONCURRENCY downloads" "$RSS_PEAK_MIB" "baseline $RSS_BASE_MIB" "-" "< $RSS_TARGET_MIB" "$RSS_PASS"
row "aggregate MB/s, $CONCURRENCY downloads" "$CONC_MBPS" "-" "-" "-" "info"
row "HEAD requests/s" "$HEAD_RPS" "${HEAD_NG_RPS:+nginx $HEAD_NG_RPS}" "${HEAD_RATIO:--}" "-" "info"
row "inspection % of upload time" "${INSPECT_SHARE:--}" "${INSPECT_MBPS:+inspector $INSPECT_MBPS}" "-" "< $INSPECT_TARGET_PCT%" "$INSPECT_PASS"
echo
UP_CPU_MED=$(median "${UP_CPUS[@]}") UP_CURL_CPU_MED=$(median "${UP_CURL_CPUS[@]}")
UP_RUNQ_MED=$(median "${UP_RUNQS[@]}") DD_CPU_MED=$(median "${DD_CPUS[@]}")
echo "samples (MB/s, in round order):"
echo "  upload   ${UP[*]}"
echo "  dd       ${DD[*]}"
echo "  dd direct ${DDD[*]}"
(( ${#MD5S[@]} )) && echo "  md5      ${MD5S[*]}"
(( ${#OS_HASHES[@]} )) && echo "  $HASHING_ALGORITHM   ${OS_HASHES[*]}"
(( ${#SLOWEST[@]} )) && echo "  slowest  ${SLOWEST[*]} (${SLOWEST_NAMES[*]})"
echo "  download ${DL[*]}"
[[ -z $NGINX ]] || echo "  nginx    ${NG[*]}"
echo "  cat      ${CAT[*]}"
echo "per-round ratios: upload/dd ${UP_PAIRED[*]}${SLOWEST_PAIRED:+; upload/slowest ${SLOWEST_PAIRED[*]}}${NGINX:+; download/nginx ${DL_PAIRED[*]}}"
echo "ratio of the medians (not the verdict): upload $UP_RATIO_OF_MEDIANS, download $DL_RATIO_OF_MEDIANS"
echo "upload CPU seconds per run (median): glance-api $UP_CPU_MED, curl $UP_CURL_CPU_MED, dd $DD_CPU_MED;" \
     "glance-api runnable but waiting for a CPU: $UP_RUNQ_MED s"
echo "HEAD tool: $HEAD_TOOL; errors: glance ${HEAD_ERR}${NGINX:+, nginx $HEAD_NG_ERR}"

srow() { printf '%-8s %12s %7s %14s %7s %13s  %s\n' "$@"; }
if (( ${#OBJ_STORES[@]} )); then
    echo
    echo "stores: the same $SIZE_MIB MiB image through a glance-api per store; MB/s: medians;"
    echo "ratio: median of the per-round ratios to the file store's figure of the same round;"
    echo "peak RSS: VmHWM of that store's glance-api over its uploads and downloads (no targets)"
    echo "(Swift runs on this machine and shares its $(nproc) cores: its figures are bounded by Swift itself)"
    echo
    srow "store" "upload MB/s" "ratio" "download MB/s" "ratio" "peak RSS MiB" "result"
    srow "file" "$UP_MED" "1.000" "$DL_MED" "1.000" "$(calc "$HWM_BEFORE / 1024" 1)" "info"
    for st in "${OBJ_STORES[@]}"; do
        srow "$st" "${R_UP[$st]}" "${R_UPR[$st]}" "${R_DL[$st]}" "${R_DLR[$st]}" \
            "$(calc "${R_RSS[$st]} / 1024" 1)" "info"
    done
    for st in "${OBJ_STORES[@]}"; do
        echo "  $st samples: upload ${R_UPS[$st]}, download ${R_DLS[$st]} MB/s;" \
             "per-round ratios: upload ${R_UPRS[$st]}, download ${R_DLRS[$st]}"
    done
fi

CACHE_PASS="skipped"
if (( CACHE )); then
    CACHE_MISS_MED=$(median "${CACHE_MISS[@]}") CACHE_HIT_MED=$(median "${CACHE_HIT[@]}")
    CACHE_FILE_MED=$(median "${CACHE_FILE[@]}")
    CACHE_RATIO=$(median3 "${CACHE_HIT_FILE[@]}")
    CACHE_NG_MED="" CACHE_NG_RATIO=""
    if (( ${#CACHE_NG[@]} )); then
        CACHE_NG_MED=$(median "${CACHE_NG[@]}") CACHE_NG_RATIO=$(median3 "${CACHE_HIT_NG[@]}")
    fi
    CACHE_PASS=$(pass "$CACHE_RATIO >= $CACHE_HIT_TARGET")
    echo
    echo "image cache: the same $SIZE_MIB MiB image from the Swift store, first download (miss,"
    echo "filling the cache) and second (hit), beside the file store and nginx in each round;"
    echo "MB/s: medians; ratio: median of the per-round ratios"
    echo
    row "measure" "value" "ceiling" "ratio" "target" "result"
    row "cache miss MB/s (swift)" "$CACHE_MISS_MED" "file store $CACHE_FILE_MED" "$(calc "$CACHE_MISS_MED / $CACHE_FILE_MED" 3)" "-" "info"
    row "cache hit MB/s" "$CACHE_HIT_MED" "file store $CACHE_FILE_MED" "$CACHE_RATIO" ">= $CACHE_HIT_TARGET" "$CACHE_PASS"
    row "cache hit MB/s vs nginx" "$CACHE_HIT_MED" "${CACHE_NG_MED:+nginx sendfile $CACHE_NG_MED}" "${CACHE_NG_RATIO:--}" "-" "info"
    echo "  samples: miss ${CACHE_MISS[*]}; hit ${CACHE_HIT[*]}; file store ${CACHE_FILE[*]}${NGINX:+; nginx ${CACHE_NG[*]}}"
    echo "  per-round ratios: hit/file store ${CACHE_HIT_FILE[*]}${NGINX:+; hit/nginx ${CACHE_HIT_NG[*]}}"
fi

q() { printf '"%s"' "$1"; }
num_or_null() { [[ -n $1 ]] && printf '%s' "$1" || printf 'null'; }
bool() { [[ $1 == PASS ]] && echo true || echo false; }
ALL_PASS=true
# stores_json: the "stores" object: the file store's figures and those of each object store.
stores_json() {
    local st sep=$'\n'
    printf '{"file": {"upload_mbps": %s, "download_mbps": %s, "upload_ratio_to_file": 1, "download_ratio_to_file": 1,' \
        "$UP_MED" "$DL_MED"
    printf ' "rss_peak_kib": %s, "rss_peak": "VmHWM after the upload and download rounds", "target": null}' \
        "$HWM_BEFORE"
    for st in "${OBJ_STORES[@]}"; do
        printf ',%s    %s: {"upload_mbps": %s, "upload_samples": %s, "upload_ratio_to_file": %s,' \
            "$sep" "$(q "$st")" "${R_UP[$st]}" "${R_UPS[$st]}" "${R_UPR[$st]}"
        printf ' "upload_paired_ratios": %s, "glance_upload_cpu_s": %s,' "${R_UPRS[$st]}" "${R_UPCPU[$st]}"
        printf '%s      "download_mbps": %s, "download_samples": %s, "download_ratio_to_file": %s,' \
            "$sep" "${R_DL[$st]}" "${R_DLS[$st]}" "${R_DLR[$st]}"
        printf ' "download_paired_ratios": %s,' "${R_DLRS[$st]}"
        printf '%s      "rss_baseline_kib": %s, "rss_peak_kib": %s, "rss_peak": "VmHWM over the uploads and downloads",' \
            "$sep" "${R_BASE[$st]}" "${R_RSS[$st]}"
        printf ' "container": %s, "endpoint": %s, "target": null}' "$(q "$BENCH_TAG-$st")" "$(q "$SWIFT_ENDPOINT")"
    done
    printf '}'
}
for p in "$UP_PASS" "$DL_PASS" "$RSS_PASS"; do [[ $p == PASS ]] || ALL_PASS=false; done
[[ $INSPECT_PASS != FAIL ]] || ALL_PASS=false
[[ $SLOWEST_PASS != FAIL ]] || ALL_PASS=false
[[ $CACHE_PASS != FAIL ]] || ALL_PASS=false
# cache_json: the "cache" object (null without --cache).
cache_json() {
    (( CACHE )) || { printf 'null'; return; }
    printf '{"store": "swift", "miss_mbps": %s, "miss_samples": %s, "hit_mbps": %s, "hit_samples": %s,' \
        "$CACHE_MISS_MED" "$(json_array "${CACHE_MISS[@]}")" "$CACHE_HIT_MED" "$(json_array "${CACHE_HIT[@]}")"
    printf ' "file_store_mbps": %s, "file_store_samples": %s, "hit_ratio_to_file_store": %s,' \
        "$CACHE_FILE_MED" "$(json_array "${CACHE_FILE[@]}")" "$CACHE_RATIO"
    printf ' "hit_paired_ratios": %s, "nginx_mbps": %s, "nginx_samples": %s, "hit_ratio_to_nginx": %s,' \
        "$(json_array "${CACHE_HIT_FILE[@]}")" "$(num_or_null "$CACHE_NG_MED")" \
        "$(json_array "${CACHE_NG[@]:-}")" "$(num_or_null "$CACHE_NG_RATIO")"
    printf ' "target": %s, "pass": %s}' "$CACHE_HIT_TARGET" "$(bool "$CACHE_PASS")"
}
cat > "$RESULTS" <<EOF
{
  "date": $(q "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),
  "commit": $(q "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo -dirty)"),
  "host": {"cores": $(nproc), "kernel": $(q "$(uname -r)"), "loadavg_before": $(q "$LOAD_BEFORE"), "loadavg_after": $(q "$LOAD_AFTER")},
  "params": {"size_mib": $SIZE_MIB, "store": $(q "$STORE"), "repeat": $REPEAT,
             "statistic": "values: median; ratio: median of per-round ratios",
             "concurrency": $CONCURRENCY, "workers": $WORKERS, "image_buffer_size": $(num_or_null "$BUFFER_SIZE"), "direct_io": "${DIRECT_IO:-default}",
             "hashing_algorithm": $(q "$HASHING_ALGORITHM"), "cache": $( (( CACHE )) && echo true || echo false ),
             "stores": $(q "$STORE_NAMES"), "head_tool": $(q "$HEAD_TOOL")},
  "units": {"throughput": "MB/s (10^6 bytes/s)", "rss": "KiB"},
  "upload": {"mbps": $UP_MED, "samples": $(json_array "${UP[@]}"), "ceiling": "dd bs=1M conv=fsync",
             "ceiling_mbps": $DD_MED, "ceiling_samples": $(json_array "${DD[@]}"),
             "ratio": $UP_RATIO, "ratio_of_medians": $UP_RATIO_OF_MEDIANS,
             "target": $UPLOAD_TARGET, "pass": $(bool "$UP_PASS"), "paired_ratios": $(json_array "${UP_PAIRED[@]}"),
             "glance_cpu_s": $(json_array "${UP_CPUS[@]}"), "glance_runq_wait_s": $(json_array "${UP_RUNQS[@]}"),
             "curl_cpu_s": $(json_array "${UP_CURL_CPUS[@]}"), "dd_cpu_s": $(json_array "${DD_CPUS[@]}"),
             "dd_direct_mbps": $DDD_MED, "dd_direct_samples": $(json_array "${DDD[@]}"),
             "md5_mbps": $(num_or_null "$MD5_MED"), "md5_samples": $(json_array "${MD5S[@]:-}"),
             "ratio_to_md5": $(num_or_null "${UP_MD5_RATIO#-}"),
             "os_hash_algorithm": $(q "$HASHING_ALGORITHM"), "os_hash_mbps": $(num_or_null "$OS_HASH_MED"),
             "os_hash_samples": $(json_array "${OS_HASHES[@]:-}"), "ratio_to_os_hash": $(num_or_null "${UP_OS_HASH_RATIO#-}"),
             "slowest_ceiling": "per round, the least of dd conv=fsync, openssl speed md5 and openssl speed $HASHING_ALGORITHM",
             "slowest_mbps": $(num_or_null "$SLOWEST_MED"), "slowest_samples": $(json_array "${SLOWEST[@]:-}"),
             "slowest_paired_ratios": $(json_array "${SLOWEST_PAIRED[@]:-}"), "ratio_to_slowest": $(num_or_null "$SLOWEST_RATIO"),
             "slowest_target": $SLOWEST_TARGET, "slowest_pass": $( [[ $SLOWEST_PASS == FAIL ]] && echo false || echo true )},
  "download": {"mbps": $DL_MED, "samples": $(json_array "${DL[@]}"), "ceiling": $(q "$DL_CEIL_NAME"),
               "ceiling_mbps": $NG_MED, "ceiling_samples": $(json_array "${NG[@]:-}"),
               "ratio": $DL_RATIO, "ratio_of_medians": $DL_RATIO_OF_MEDIANS,
               "target": $DOWNLOAD_TARGET, "pass": $(bool "$DL_PASS"), "paired_ratios": $(json_array "${DL_PAIRED[@]:-}"),
               "cat_mbps": $CAT_MED, "cat_samples": $(json_array "${CAT[@]}"), "ratio_to_cat": $CAT_RATIO},
  "concurrent_downloads": {"clients": $CONCURRENCY, "seconds": $CONC_SECONDS, "aggregate_mbps": $CONC_MBPS,
                           "rss_baseline_kib": $RSS_BASE, "hwm_before_kib": $HWM_BEFORE, "hwm_reset": $HWM_RESET,
                           "rss_sampled_max_kib": $RSS_MAX, "hwm_after_kib": $HWM_AFTER, "samples": $SAMPLES,
                           "rss_peak_kib": $RSS_PEAK, "target_kib": $(( RSS_TARGET_MIB * 1024 )), "pass": $(bool "$RSS_PASS")},
  "head": {"rps": $HEAD_RPS, "errors": $HEAD_ERR, "nginx_rps": $(num_or_null "$HEAD_NG_RPS"),
           "connections": $HEAD_CONNECTIONS, "seconds": $HEAD_SECONDS},
  "inspection": {"inspector_mbps": $(num_or_null "$INSPECT_MBPS"), "share_of_upload_pct": $(num_or_null "$INSPECT_SHARE"),
                 "target_pct": $INSPECT_TARGET_PCT, "pass": $( [[ $INSPECT_PASS == FAIL ]] && echo false || echo true )},
  "stores": $(stores_json),
  "cache": $(cache_json),
  "all_targets_pass": $ALL_PASS
}
EOF
echo "results: $RESULTS"
$ALL_PASS || exit 1
