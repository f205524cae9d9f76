# Shell helpers shared by the benchmark scripts (bench/run.sh, bench/connections.sh).
# Sourced, not run. The sourcing script defines `log` and the variables INSTALL (1 = may
# apt-get install) and CREATED_POLICY_RC (set to 1 here when this run created
# /usr/sbin/policy-rc.d; its cleanup removes the file then).

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# stop_pid PID: TERM, wait up to 10 s, then KILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for (( i = 0; i < 100; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# stop_tracked PID ARRAY: stop_pid, then drop PID from the array named ARRAY (the pids the
# script's cleanup would otherwise stop again).
stop_tracked() {
    stop_pid "$1"
    local -n tracked=$2
    local keep=() p
    for p in "${tracked[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    tracked=("${keep[@]}")
}

# apt_install PKG...: install missing Debian packages without starting their services.
apt_install() {
    (( INSTALL )) || return 1
    [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || return 1
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Keep the package from starting a system nginx on port 80.
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        CREATED_POLICY_RC=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }
}

# free_port: a loopback TCP port nobody listens on (bounded tries).
free_port() {
    local i p
    for (( i = 0; i < 200; i++ )); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

# proc_kib PID FIELD: a "kB" field of /proc/PID/status (0 when the process is gone).
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# release_binaries: builds the release binaries unless BUILD is 0, and sets API_BIN.
# Uses REPO, BUILD, log and die of the sourcing script.
release_binaries() {
    if (( BUILD )); then
        log "cargo build --release --bins"
        (cd "$REPO" && cargo build --release --bins --quiet) || die "cargo build failed"
    fi
    local target_dir=${CARGO_TARGET_DIR:-$REPO/target}
    [[ $target_dir = /* ]] || target_dir=$REPO/$target_dir
    API_BIN=$target_dir/release/glance-api
    [[ -x $API_BIN ]] || die "$API_BIN not found (run without --no-build)"
}

# load_tools: nginx and wrk, installed when missing (and allowed); sets NGINX and WRK, empty
# when unavailable.
load_tools() {
    command -v nginx >/dev/null || apt_install nginx-light || true
    command -v wrk >/dev/null || apt_install wrk || true
    NGINX=$(command -v nginx || true)
    WRK=$(command -v wrk || true)
}

# image_file: random image data of SIZE_MIB MiB (BYTES bytes), made once and cached in
# WORKDIR for every benchmark script; sets DATA.
image_file() {
    DATA=$WORKDIR/image-${SIZE_MIB}MiB.bin
    if [[ ! -f $DATA || $(stat -c %s "$DATA") -ne $BYTES ]]; then
        log "making $DATA ($SIZE_MIB MiB from /dev/urandom)"
        head -c "$BYTES" /dev/urandom > "$DATA.tmp"
        mv "$DATA.tmp" "$DATA"
        rm -f "$DATA.md5"
    fi
}
