#!/usr/bin/env bash
# Create benchmark: image creations per second against glance-api on its embedded SQLite
# registry, with `sqlite_synchronous = FULL` (the default: every commit on disk before the
# reply) and `NORMAL`, in alternating rounds of one run, so the cost of durable commits is
# a ratio measured under the same conditions. Two kinds of request:
#
#   reserve  POST /v1/images without data: one write transaction (a queued image);
#   upload   POST /v1/images with 4 KiB of data: reserve, claim (queued -> saving), and
#            activate: three write transactions, plus the file store's own fsyncs.
#
# Usage: bash bench/create.sh [--seconds N] [--connections N] [--repeat N] [--no-install]
# Needs a release build (built if missing; GLANCE_API_BIN names another binary) and wrk (installed from Debian's packages if
# missing, unless --no-install; without wrk it stops).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_ROUND=5
CONNECTIONS=8
REPEAT=3
INSTALL=1
while (( $# )); do
    case $1 in
        --seconds) SECONDS_PER_ROUND=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "create.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[create $(date +%H:%M:%S)] $*" >&2; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if ! command -v wrk >/dev/null; then
    (( INSTALL )) || { echo "create.sh: wrk is not installed" >&2; exit 1; }
    log "installing wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2; }
fi
API_BIN=${GLANCE_API_BIN:-$PWD/target/release/glance-api}
[[ -x $API_BIN ]] || { cargo build --release --bin glance-api >&2; API_BIN=$PWD/target/release/glance-api; }

RUN_DIR=$(mktemp -d /var/tmp/glance-create.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT

# start_api NAME SYNC: glance-api in RUN_DIR/NAME with sqlite_synchronous = SYNC; sets URL.
# (Not called in a command substitution: its PID must reach PIDS in this shell.)
start_api() {
    local dir=$RUN_DIR/$1
    mkdir -p "$dir/images"
    printf '[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\nworkers = 16\n%s\n%s\n%s\n%s\n' \
        "sql_connection = sqlite:///$dir/glance.sqlite" "db_auto_create = True" \
        "filesystem_store_datadir = $dir/images" "sqlite_synchronous = $2" \
        > "$dir/glance-api.conf"
    "$API_BIN" --config-file "$dir/glance-api.conf" > "$dir/stdout" 2> "$dir/stderr" &
    PIDS+=("$!")
    local i line=""
    for (( i = 0; i < 300; i++ )); do
        line=$(head -n 1 "$dir/stdout" 2>/dev/null || true)
        [[ $line == "listening on "* ]] && break
        sleep 0.1
    done
    [[ $line == "listening on "* ]] || { cat "$dir/stderr" >&2; exit 1; }
    URL="http://${line#listening on }"
}

# The wrk scripts: a POST without data, and one with 4 KiB of it.
cat > "$RUN_DIR/reserve.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["x-image-meta-name"] = "bench"
done = function(s) io.write(string.format("BENCH %d %d %d\n", s.requests, s.duration,
  s.errors.connect + s.errors.read + s.errors.write + s.errors.status + s.errors.timeout)) end
EOF
cat > "$RUN_DIR/upload.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["x-image-meta-name"] = "bench"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("x", 4096)
done = function(s) io.write(string.format("BENCH %d %d %d\n", s.requests, s.duration,
  s.errors.connect + s.errors.read + s.errors.write + s.errors.status + s.errors.timeout)) end
EOF

# rate URL SCRIPT: prints "requests/s errors".
rate() {
    local out req us err
    out=$(wrk -t 2 -c "$CONNECTIONS" -d "${SECONDS_PER_ROUND}s" --timeout 10s \
        -s "$RUN_DIR/$2.lua" "$1/v1/images" \
        | awk '$1 == "BENCH"')
    read -r _ req us err <<< "$out"
    echo "$(calc "$req / ($us / 1000000)" 0) $err"
}

start_api full FULL
FULL=$URL
start_api normal NORMAL
NORMAL=$URL
log "glance-api FULL at $FULL, NORMAL at $NORMAL; $REPEAT rounds of ${SECONDS_PER_ROUND}s, $CONNECTIONS connections"
for kind in reserve upload; do
    F=() N=() R=()
    for (( r = 1; r <= REPEAT; r++ )); do
        read -r f fe <<< "$(rate "$FULL" "$kind")"
        read -r n ne <<< "$(rate "$NORMAL" "$kind")"
        (( fe == 0 && ne == 0 )) || log "  $kind: errors (timeouts or non-2xx): FULL $fe, NORMAL $ne"
        F+=("$f") N+=("$n") R+=("$(calc "$f / $n" 3)")
        log "  #$r $kind: FULL $f/s, NORMAL $n/s, ratio $(calc "$f / $n" 3)"
    done
    printf '%-8s FULL %6s/s  NORMAL %6s/s  FULL/NORMAL %s (median of per-round ratios)\n' \
        "$kind" "$(median "${F[@]}")" "$(median "${N[@]}")" "$(median "${R[@]}")"
done
