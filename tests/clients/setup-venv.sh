#!/usr/bin/env bash
# Creates (or refreshes) the Python venv with the real OpenStack clients that
# tests/python_clients.rs drives: python-glanceclient, python-openstackclient and
# openstacksdk, pinned in requirements.txt beside this script.
#
#   VENV=$(bash tests/clients/setup-venv.sh) && export GLANCE_TEST_VENV=$VENV
#
# With the argument `v2`, the same for the current clients of the images API v2 that
# tests/python_clients_v2.rs drives, pinned in v2/requirements.txt, in a venv of its own:
#
#   VENV=$(bash tests/clients/setup-venv.sh v2) && export GLANCE_TEST_VENV_V2=$VENV
#
# Idempotent: the venv lives at ${GLANCE_TEST_VENV:-/var/tmp/glance-test-venv} (v2:
# ${GLANCE_TEST_VENV_V2:-/var/tmp/glance-test-venv-v2}); it is built from scratch when
# missing, broken, or made from another requirements.txt or Python (a hash of both is kept
# in the venv), and left alone otherwise. Progress goes to stderr; the only line on stdout
# is the venv path.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-v1}" in
    v1)
        req="$here/requirements.txt"
        venv="${GLANCE_TEST_VENV:-/var/tmp/glance-test-venv}"
        ;;
    v2)
        req="$here/v2/requirements.txt"
        venv="${GLANCE_TEST_VENV_V2:-/var/tmp/glance-test-venv-v2}"
        ;;
    *)
        echo "usage: $0 [v1|v2]" >&2
        exit 2
        ;;
esac
python="${GLANCE_TEST_PYTHON:-python3}"
stamp="$venv/.glance-test-requirements.sha256"

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    log "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "$@" >&2
}

command -v "$python" >/dev/null || apt_install python3
want="$( (cat "$req"; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c 'import glanceclient, openstackclient, openstack' 2>/dev/null; then
    log "venv $venv is up to date"
    echo "$venv"
    exit 0
fi

# Rebuild from scratch, so the installed set is exactly requirements.txt. Only ever delete
# something that is recognisably a venv.
if [ -e "$venv" ]; then
    if [ -f "$venv/pyvenv.cfg" ]; then
        log "removing stale venv $venv"
        rm -rf "$venv"
    else
        echo "ERROR: $venv exists and is not a venv; set GLANCE_TEST_VENV(_V2) elsewhere" >&2
        exit 1
    fi
fi

log "creating venv $venv with $("$python" --version 2>&1)"
if ! "$python" -m venv "$venv" >&2 2>/dev/null; then
    rm -rf "$venv"
    apt_install python3-venv
    "$python" -m venv "$venv" >&2
fi
# netifaces (a dependency of the v1 set's openstacksdk) has no wheel for recent Pythons: it
# is compiled.
command -v cc >/dev/null || apt_install gcc libc6-dev python3-dev

log "installing $req"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$req" >&2
"$venv/bin/python" -m pip check >&2
"$venv/bin/glance" --version >/dev/null 2>&1 || {
    echo "ERROR: glance does not run in $venv" >&2
    exit 1
}
echo "$want" >"$stamp"
log "venv $venv ready"
echo "$venv"
