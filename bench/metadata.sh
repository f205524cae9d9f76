#!/usr/bin/env bash
# Metadata benchmark: the images API v2 against v1 on the same glance-api, the same images
# and the same connections, in alternating rounds of one run (issue 14, item 9):
#
#   show   v1 HEAD /v1/images/<id>            vs  v2 GET /v2/images/<id>
#   list   v1 GET /v1/images/detail?limit=100 vs  v2 GET /v2/images?limit=100
#
# with IMAGES images in the embedded SQLite registry (default 10,000, each with two
# properties and a tag). Reports requests/s (median of the rounds) and v2/v1 ratios; the
# target is v2 >= v1 (ratio >= 1.0, TOLERANCE below for the machine's noise).
#
# Usage: bash bench/metadata.sh [--images N] [--seconds N] [--connections N] [--repeat N]
#                               [--no-build] [--no-install]
# Needs wrk (installed from Debian's packages when missing, unless --no-install) and a
# release build (built unless --no-build). All traffic goes to 127.0.0.1.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"

IMAGES=10000
SECONDS_PER_ROUND=5
CONNECTIONS=8
REPEAT=3
BUILD=1
INSTALL=1
CREATED_POLICY_RC=0
TOLERANCE=0.95   # v2/v1 below this is a miss: "at least as fast", within the noise
while (( $# )); do
    case $1 in
        --images) IMAGES=$2; shift ;;
        --seconds) SECONDS_PER_ROUND=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "metadata.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[metadata $(date +%H:%M:%S)] $*" >&2; }
die() { echo "metadata.sh: $*" >&2; exit 2; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

release_binaries
load_tools
[[ -n $WRK ]] || die "wrk is needed (apt-get install wrk, or run without --no-install)"

WORK=$(mktemp -d /tmp/glance-bench-metadata.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    rm -rf "$WORK"
    (( CREATED_POLICY_RC )) && rm -f /usr/sbin/policy-rc.d
    return 0
}
trap cleanup EXIT

# The embedded defaults, with commits that need not reach the disk (the setup creates
# IMAGES images; the measured requests only read).
cat > "$WORK/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
sql_connection = sqlite:///$WORK/registry.db
db_auto_create = True
sqlite_synchronous = NORMAL
filesystem_store_datadir = $WORK/images
api_limit_max = 1000
EOF
"$API_BIN" --config-file "$WORK/glance-api.conf" > "$WORK/api.stdout" 2> "$WORK/api.log" &
PIDS+=("$!")
for _ in $(seq 100); do
    line=$(head -n 1 "$WORK/api.stdout" 2>/dev/null || true)
    [[ $line == "listening on "* ]] && break
    sleep 0.1
done
[[ ${line:-} == "listening on "* ]] || die "glance-api did not start: $(tail -n 5 "$WORK/api.log")"
API="http://${line#listening on }"
log "glance-api at $API; creating $IMAGES images"

# Creation over v1 with keep-alive (python3's http.client: no extra tool).
python3 - "$API" "$IMAGES" <<'PY'
import http.client, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1]); n = int(sys.argv[2])
c = http.client.HTTPConnection(url.hostname, url.port)
for i in range(n):
    c.request("POST", "/v1/images", headers={
        "x-image-meta-name": f"bench-{i:05d}", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare", "x-image-meta-is_public": "true",
        "x-image-meta-property-os_distro": "cirros",
        "x-image-meta-property-index": str(i)})
    r = c.getresponse(); r.read()
    if r.status != 201:
        sys.exit(f"create {i}: {r.status}")
PY
ID=$(curl -sS "$API/v1/images?limit=1" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1)
[[ -n $ID ]] || die "no image id"
# A tag on the measured image, so both APIs load one.
curl -sS -o /dev/null -X PUT "$API/v2/images/$ID/tags/bench"

cat > "$WORK/head.lua" <<'EOF'
wrk.method = "HEAD"
done = function(summary, latency, requests)
    io.write(string.format("BENCH %.1f %d\n", summary.requests / (summary.duration / 1e6),
        summary.errors.status + summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout))
end
EOF
sed '1d' "$WORK/head.lua" > "$WORK/get.lua"

# rps LUA URL: requests/s (status errors make the run fail).
rps() {
    local out rate errs
    out=$("$WRK" -t 2 -c "$CONNECTIONS" -d "${SECONDS_PER_ROUND}s" -s "$1" "$2" | awk '$1 == "BENCH"')
    read -r _ rate errs <<< "$out"
    (( errs == 0 )) || die "$2: $errs errors"
    echo "$rate"
}

declare -A R
for (( r = 1; r <= REPEAT; r++ )); do
    log "round $r/$REPEAT"
    R[v1show]+="$(rps "$WORK/head.lua" "$API/v1/images/$ID") "
    R[v2show]+="$(rps "$WORK/get.lua" "$API/v2/images/$ID") "
    R[v1list]+="$(rps "$WORK/get.lua" "$API/v1/images/detail?limit=100") "
    R[v2list]+="$(rps "$WORK/get.lua" "$API/v2/images?limit=100") "
done

# shellcheck disable=SC2086
{
    V1S=$(median ${R[v1show]}); V2S=$(median ${R[v2show]})
    V1L=$(median ${R[v1list]}); V2L=$(median ${R[v2list]})
}
SHOW=$(calc "$V2S / $V1S"); LIST=$(calc "$V2L / $V1L")
verdict() { awk -v r="$1" -v t="$TOLERANCE" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }'; }
printf '\n%-44s %12s %12s %8s %s\n' "measure ($IMAGES images, $CONNECTIONS conns)" "v1 req/s" "v2 req/s" "v2/v1" "verdict"
printf '%-44s %12s %12s %8s %s\n' "show one image (v1 HEAD, v2 GET)" "$V1S" "$V2S" "$SHOW" "$(verdict "$SHOW")"
printf '%-44s %12s %12s %8s %s\n' "page of 100 (v1 detail, v2 list)" "$V1L" "$V2L" "$LIST" "$(verdict "$LIST")"
[[ $(verdict "$SHOW") == PASS && $(verdict "$LIST") == PASS ]]
