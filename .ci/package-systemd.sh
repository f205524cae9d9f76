#!/usr/bin/env bash
# The .deb under a real systemd: boots this machine's own root file system in a throwaway
# systemd-nspawn container (a tmpfs overlay over /, its own network namespace, a target that
# starts nothing but this test), installs the package there and drives the units with
# systemctl: installed enabled and not started, Type=notify start, requests answered under
# the hardening (seccomp filter, ProtectSystem=strict, ...), reload, Restart=on-failure
# after a crash, the scrubber service and timer, stop on removal, purge; and the `glance`
# client, with python3-glanceclient's /usr/bin/glance (installed on this machine for the
# test Keystone) diverted while the package is installed and back after its removal.
#
# With the .rpm as second argument, the RPM's scriptlets get the same treatment (rpm runs on
# Debian: useradd, runuser and systemctl are there; --nodeps as the RPM names RPM packages,
# which also skips its Conflicts: python3-glanceclient: rpm, blind to dpkg's files, replaces
# the container's /usr/bin/glance, on the throwaway overlay only).
#
# Usage: .ci/package-systemd.sh PATH/TO/glance-rs_*.deb [PATH/TO/glance-rs-*.rpm]
#        (as root; .ci/package.sh calls it)
# Exits 0 on success, 1 on a failed check, 77 when this machine cannot boot a container
# (no systemd-nspawn, no permission): then nothing was tested.
set -euo pipefail

deb=$(realpath "${1:?usage: $0 PATH/TO/glance-rs.deb [PATH/TO/glance-rs.rpm]}")
rpm_file=${2:+$(realpath "$2")}
[ "$(id -u)" -eq 0 ] || { echo "package-systemd.sh: must run as root" >&2; exit 1; }
if ! command -v systemd-nspawn >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 install systemd-container >/dev/null ||
        { echo "package-systemd.sh: SKIP: cannot install systemd-container" >&2; exit 77; }
fi

work=$(mktemp -d /tmp/glance-nspawn.XXXXXX)
root="$work/root"
cleanup() {
    mountpoint -q "$root" && umount "$root"
    mountpoint -q "$work/rw" && umount "$work/rw"
    rm -rf "$work"
}
trap cleanup EXIT
cp "$deb" "$work/glance-rs.deb"
[ -z "$rpm_file" ] || cp "$rpm_file" "$work/glance-rs.rpm"
# The container's root: this machine's root file system under a writable tmpfs overlay
# (nspawn refuses / itself), so that nothing the test does reaches the machine.
mkdir -p "$work/rw" "$root"
mount -t tmpfs -o size=2g tmpfs "$work/rw"
mkdir "$work/rw/upper" "$work/rw/work"
if ! mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$work/rw/upper,workdir=$work/rw/work" "$root"; then
    echo "package-systemd.sh: SKIP: cannot mount an overlay of /" >&2
    exit 77
fi
mkdir -p "$root/test"
# Docker-style images forbid service actions in maintainer scripts (policy-rc.d exits 101);
# a Debian host has no such file. Removed from the overlay only.
rm -f "$root/usr/sbin/policy-rc.d"

# The test, run inside the container by glance-test.service once basic.target is up.
cat > "$work/test.sh" <<'EOF'
#!/bin/bash
set -uo pipefail
exec > /test/output 2>&1
failed=0
check() { # DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failed=1; fi
}
prop() { systemctl show -P "$2" "$1"; }
wait_for() { # SECONDS COMMAND...
    local n=$(( $1 * 10 )); shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}
export DEBIAN_FRONTEND=noninteractive
echo "systemd $(systemctl --version | head -1) as PID 1: $(cat /proc/1/comm)"
glanceclient=no
if dpkg-query -W -f='${Status}' python3-glanceclient 2>/dev/null | grep -q 'ok installed'; then
    glanceclient=yes
fi
check "dpkg -i under systemd" dpkg -i /test/glance-rs.deb
check "/usr/bin/glance diverted by glance-rs" \
    test "$(dpkg-divert --listpackage /usr/bin/glance)" = glance-rs
check "/usr/bin/glance is the glance-rs client" sh -c 'glance --version | grep -q glance-rs'
if [ "$glanceclient" = yes ]; then
    check "python3-glanceclient's glance at /usr/bin/glance.glanceclient" \
        grep -q glanceclient /usr/bin/glance.glanceclient
fi
for u in glance-api.service glance-registry.service glance-scrubber.timer \
    glance-cache-prefetcher.timer glance-cache-pruner.timer glance-cache-reaper.timer; do
    check "$u enabled" test "$(systemctl is-enabled "$u")" = enabled
    check "$u not started by the installation" test "$(systemctl is-active "$u")" = inactive
done
check "systemctl start glance-api (Type=notify)" systemctl start glance-api.service
check "glance-api active/running" test "$(prop glance-api SubState)" = running
check "glance-api runs as glance" test "$(ps -o user= -p "$(prop glance-api MainPID)")" = glance
check "GET /v1/images" curl -sf -o /dev/null http://127.0.0.1:9292/v1/images
printf 'nspawn image\n' > /tmp/img
id=$(curl -sf -X POST http://127.0.0.1:9292/v1/images -H 'x-image-meta-name: t' \
    -H 'x-image-meta-disk_format: raw' -H 'x-image-meta-container_format: bare' \
    -H 'Content-Type: application/octet-stream' --data-binary @/tmp/img |
    sed -n 's/.*"id": *"\([0-9a-f-]*\)".*/\1/p')
check "upload into /var/lib/glance/images" test -s "/var/lib/glance/images/$id"
check "download" cmp /tmp/img <(curl -sf "http://127.0.0.1:9292/v1/images/$id")
cli_id=$(glance -H 127.0.0.1 -p 9292 add name=cli is_public=true disk_format=raw \
    container_format=bare --file /tmp/img | sed -n 's/^Added new image with ID: *//p')
check "glance add (as public)" cmp /tmp/img "/var/lib/glance/images/$cli_id"
check "glance index lists it" sh -c "glance -H 127.0.0.1 -p 9292 index | grep -q '^$cli_id '"
pid=$(prop glance-api MainPID)
check "systemctl reload (SIGHUP)" systemctl reload glance-api.service
check "same process after reload" test "$(prop glance-api MainPID)" = "$pid"
check "serving after reload" curl -sf -o /dev/null http://127.0.0.1:9292/v1/images
kill -KILL "$pid"
check "Restart=on-failure after SIGKILL" wait_for 20 \
    sh -c 'test "$(systemctl show -P NRestarts glance-api)" -ge 1 &&
           test "$(systemctl show -P SubState glance-api)" = running'
check "serving after the restart" wait_for 10 curl -sf -o /dev/null http://127.0.0.1:9292/v1/images
check "systemctl start glance-registry" systemctl start glance-registry.service
check "registry GET /images" curl -sf -o /dev/null http://127.0.0.1:9191/images
check "glance-scrubber.service pass" systemctl start glance-scrubber.service
check "scrubber result success" test "$(prop glance-scrubber Result)" = success
check "glance-scrubber.timer starts" systemctl start glance-scrubber.timer
check "timer waiting" test "$(prop glance-scrubber.timer SubState)" = waiting
for p in glance-cache-prefetcher glance-cache-pruner glance-cache-reaper; do
    # image_cache_enabled = False in the packaged glance-api.conf: a pass that does nothing.
    check "$p.service pass" systemctl start "$p.service"
    check "$p result success" test "$(prop "$p" Result)" = success
done
check "systemctl stop glance-api (SIGTERM, exit 0)" systemctl stop glance-api.service
check "glance-api stopped cleanly" test "$(prop glance-api Result)" = success
systemctl start glance-api.service
pid=$(prop glance-api MainPID)
check "upgrade (dpkg -i again) while running" dpkg -i /test/glance-rs.deb
check "upgrade restarted the running glance-api" sh -c \
    "test \"\$(systemctl show -P MainPID glance-api)\" != $pid &&
     test \"\$(systemctl show -P SubState glance-api)\" = running"
check "serving after the upgrade" curl -sf -o /dev/null http://127.0.0.1:9292/v1/images
echo "--- systemd-analyze security"
systemd-analyze security --no-pager glance-api.service glance-registry.service \
    glance-scrubber.service glance-cache-prefetcher.service glance-cache-pruner.service \
    glance-cache-reaper.service | tail -n 4
echo "--- journal (warnings and errors of the units)"
journalctl --no-pager -o cat -p warning \
    -u glance-api -u glance-registry -u glance-scrubber -u 'glance-cache-*' | tail -n 20
check "no seccomp or namespace failure in the journal" sh -c \
    '! journalctl --no-pager -u glance-api -u glance-registry -u glance-scrubber -u "glance-cache-*" |
       grep -E "Operation not permitted|status=(31|226)|SIGSYS"'
check "dpkg -r stops the services" dpkg -r glance-rs
check "glance-api inactive after removal" test "$(systemctl is-active glance-api)" = inactive
check "remove keeps the data" test -s "/var/lib/glance/images/$id"
check "dpkg -r removed the diversion" test -z "$(dpkg-divert --list /usr/bin/glance)"
if [ "$glanceclient" = yes ]; then
    check "python3-glanceclient's /usr/bin/glance back" sh -c \
        'test "$(dpkg-query -S /usr/bin/glance)" = "python3-glanceclient: /usr/bin/glance" &&
         grep -q glanceclient /usr/bin/glance && test ! -e /usr/bin/glance.glanceclient'
else
    check "/usr/bin/glance gone" test ! -e /usr/bin/glance
fi
check "dpkg --purge" dpkg --purge glance-rs
check "data removed by purge" test ! -e /var/lib/glance
if [ -f /test/glance-rs.rpm ]; then
    echo "--- the .rpm's scriptlets"
    userdel glance
    check "rpm -i (scriptlets run)" rpm -i --nodeps /test/glance-rs.rpm
    check "%pre created the glance user" getent passwd glance
    check "/usr/bin/glance is the glance-rs client (rpm)" sh -c 'glance --version | grep -q glance-rs'
    for d in /var/lib/glance /var/lib/glance/images /var/log/glance; do
        check "%post created $d (glance:glance 750)" \
            test "$(stat -c '%U:%G %a' "$d")" = "glance:glance 750"
    done
    check "%post migrated the database" test "$(runuser -u glance -- glance-manage \
        --config-file /etc/glance/glance-registry.conf db_version)" -gt 0
    for u in glance-api.service glance-registry.service glance-scrubber.timer \
    glance-cache-prefetcher.timer glance-cache-pruner.timer glance-cache-reaper.timer; do
        check "$u enabled by %post" test "$(systemctl is-enabled "$u")" = enabled
        check "$u not started by %post" test "$(systemctl is-active "$u")" = inactive
    done
    check "systemctl start glance-api (rpm)" systemctl start glance-api.service
    check "GET /v1/images (rpm)" curl -sf -o /dev/null http://127.0.0.1:9292/v1/images
    pid=$(prop glance-api MainPID)
    check "rpm -U --replacepkgs (upgrade scriptlets)" \
        rpm -U --nodeps --replacepkgs /test/glance-rs.rpm
    check "%postun restarted the running glance-api" sh -c \
        "test \"\$(systemctl show -P MainPID glance-api)\" != $pid &&
         test \"\$(systemctl show -P SubState glance-api)\" = running"
    check "rpm -e" rpm -e --nodeps glance-rs
    check "%preun stopped glance-api" test "$(systemctl is-active glance-api)" = inactive
    check "%preun disabled the units" test ! -e \
        /etc/systemd/system/multi-user.target.wants/glance-api.service
    check "rpm -e keeps the database" test -s /var/lib/glance/glance.sqlite
    check "rpm -e removes the unmodified configs" test ! -e /etc/glance
fi
echo "RESULT: $([ "$failed" = 0 ] && echo PASS || echo FAIL)"
EOF
chmod 755 "$work/test.sh"

cat > "$work/glance-test.service" <<'EOF'
[Unit]
Description=glance-rs package test under systemd
After=basic.target
[Service]
Type=oneshot
ExecStart=/bin/bash /test/test.sh
ExecStopPost=/bin/systemctl --no-block poweroff
EOF
cat > "$work/glance-test.target" <<'EOF'
[Unit]
Description=glance-rs package test (nothing else starts)
Requires=basic.target glance-test.service
After=basic.target glance-test.service
AllowIsolate=yes
EOF

echo "booting this machine's root in systemd-nspawn (tmpfs overlay, private network)"
rc=0
timeout 300 systemd-nspawn --quiet --directory="$root" --private-network \
    --register=no --keep-unit --link-journal=no \
    --machine="glance-test-$$" --bind="$work:/test" \
    --bind-ro="$work/glance-test.service:/etc/systemd/system/glance-test.service" \
    --bind-ro="$work/glance-test.target:/etc/systemd/system/glance-test.target" \
    --boot -- systemd.unit=glance-test.target > "$work/nspawn.log" 2>&1 || rc=$?
if [ ! -s "$work/output" ]; then
    cat "$work/nspawn.log"
    echo "package-systemd.sh: SKIP: the container did not run the test (nspawn exit $rc)" >&2
    exit 77
fi
cat "$work/output"
grep -qx 'RESULT: PASS' "$work/output" || { echo "package-systemd.sh: FAIL" >&2; exit 1; }
echo "package-systemd.sh: all checks passed under systemd"
