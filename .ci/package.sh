#!/usr/bin/env bash
# Packaging test: builds the .deb and the .rpm, inspects them, checks the man pages, drives
# the .deb's units under a real systemd booted in a throwaway container
# (.ci/package-systemd.sh), installs the .deb on this machine, runs systemd-analyze verify on
# the installed units, runs the installed glance-api as the glance user from (a port-only
# copy of) its installed config and makes requests, also with the installed `glance` client,
# then removes and purges the package and checks what each step keeps and deletes.
#
# /usr/bin/glance: the .deb diverts python3-glanceclient's (which python3-keystone, the test
# services' Keystone, depends on) to /usr/bin/glance.glanceclient with dpkg-divert; the checks
# follow the diversion through installation, reinstallation, removal and purge, and that the
# Python client is back in place afterwards. Nothing is installed at the expense of another
# package: apt-get runs with --no-remove, after a dry run that must remove nothing.
#
# Needs root and Debian/Ubuntu (dpkg, apt-get). Installs what it needs when missing: rpm,
# systemd (systemd-analyze), systemd-container (systemd-nspawn), man-db, curl, socat,
# adduser, dpkg-dev, and the pinned cargo-deb / cargo-generate-rpm. Exits non-zero with
# "package.sh: FAIL: ..." on any failure; the package is purged on the way out whatever
# happens. PACKAGE_SH_TRACE=1 traces the commands.
set -euo pipefail
[ -n "${PACKAGE_SH_TRACE:-}" ] && set -x
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
PKG=glance-rs

started=$SECONDS
step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() { printf 'package.sh: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '    ok: %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs the .deb)"
command -v dpkg >/dev/null && command -v apt-get >/dev/null || fail "needs dpkg and apt-get"
export DEBIAN_FRONTEND=noninteractive CARGO_TERM_COLOR=never

work=$(mktemp -d /tmp/glance-package.XXXXXX)
chmod 755 "$work"
server_pid=""
notify_pid=""
we_installed=no
cleanup() {
    local rc=$?
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    [ -n "$notify_pid" ] && kill "$notify_pid" 2>/dev/null || true
    if [ "$we_installed" = yes ] && dpkg-query -W "$PKG" >/dev/null 2>&1; then
        echo "package.sh: purging $PKG (cleanup)" >&2
        apt_get purge "$PKG" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    if [ "$rc" -ne 0 ]; then
        echo "package.sh: FAILED after $((SECONDS - started)) s" >&2
    fi
}
trap cleanup EXIT
# Other jobs on the machine may hold the dpkg lock: apt-get waits for it (dpkg would fail).
apt_get() { apt-get -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"; }

# --- Tools ----------------------------------------------------------------------------------
step "tools"
need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd rpm || need+=(rpm)
have_cmd systemd-analyze || need+=(systemd)
have_cmd systemd-nspawn || need+=(systemd-container)
have_cmd man || need+=(man-db)
have_cmd curl || need+=(curl)
have_cmd socat || need+=(socat)
have_cmd adduser || need+=(adduser)
have_cmd dpkg-shlibdeps || need+=(dpkg-dev)
have_cmd gzip || need+=(gzip)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt_get update -qq
    apt_get install -qq "${need[@]}" >/dev/null
fi
have_cmd cargo || fail "cargo is not installed"
# The cargo tools, pinned; `cargo install` is a one-time cost on a machine.
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
if ! cargo generate-rpm --version 2>/dev/null | grep -qF "$CARGO_GENERATE_RPM_VERSION"; then
    cargo install cargo-generate-rpm --version "$CARGO_GENERATE_RPM_VERSION" --locked
fi
echo "$(cargo deb --version), $(cargo generate-rpm --version), $(rpm --version)," \
    "$(systemd-analyze --version | head -1)"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || fail "cannot read the version from Cargo.toml"
target_dir=${CARGO_TARGET_DIR:-target}

# --- Man pages ------------------------------------------------------------------------------
step "man pages render without warnings"
for page in man/*.[1-9]; do
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "$page: man --warnings: $warnings"
    lines=$(MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
    [ "$lines" -gt 20 ] || fail "$page renders to only $lines lines"
    ok "$page ($lines lines)"
done
for page in glance.1 glance-api.8 glance-registry.8 glance-manage.8 glance-scrubber.8 \
    glance-cache-prefetcher.8 glance-cache-pruner.8 glance-cache-reaper.8 \
    glance-api.conf.5 glance-registry.conf.5; do
    [ -f "man/$page" ] || fail "man/$page is missing"
done

# --- Build ----------------------------------------------------------------------------------
step "cargo deb"
cargo deb --locked
deb="$target_dir/debian/${PKG}_${version}-1_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || fail "$deb was not built"
deb=$(realpath "$deb")

step "packaging/build-rpm.sh"
packaging/build-rpm.sh
rpm_file=""
for f in "$target_dir/generate-rpm/$PKG-$version-1."*.rpm; do rpm_file=$f; done
[ -f "$rpm_file" ] || fail "the .rpm was not built"
rpm_file=$(realpath "$rpm_file")
ls -l "$deb" "$rpm_file"

cache_programs="glance-cache-prefetcher glance-cache-pruner glance-cache-reaper"
bins="glance-api glance-registry glance-manage glance-scrubber $cache_programs glance"
units="glance-api.service glance-registry.service glance-scrubber.service glance-scrubber.timer"
for p in $cache_programs; do units="$units $p.service $p.timer"; done
confs="glance-api.conf glance-registry.conf glance-scrubber.conf"
pages="man1/glance.1 man5/glance-api.conf.5 man5/glance-registry.conf.5 man8/glance-api.8
       man8/glance-registry.8 man8/glance-manage.8 man8/glance-scrubber.8
       man8/glance-cache-prefetcher.8 man8/glance-cache-pruner.8 man8/glance-cache-reaper.8"
# bash-completion loads it on the first TAB after `glance`; zsh's _glance goes through it.
bash_completion=usr/share/bash-completion/completions/glance
# python3-glanceclient's /usr/bin/glance, diverted by the .deb's preinst, restored by its postrm.
diversion="--divert /usr/bin/glance.glanceclient /usr/bin/glance"

# --- Inspect the .deb -----------------------------------------------------------------------
step "inspect the .deb"
dpkg-deb -I "$deb" | sed -n '/Package:/,$p'
dpkg-deb -c "$deb" > "$work/deb-contents"
cat "$work/deb-contents"
deb_has() { # PATH [PERMS], owned by root
    grep -qE "^${2:-}[^ ]* +(root/root|0/0) .* \./$1\$" "$work/deb-contents" ||
        fail "the .deb lacks ./$1 ${2:+($2 root)}"
}
for b in $bins; do deb_has "usr/bin/$b" -rwxr-xr-x; done
for c in $confs; do deb_has "etc/glance/$c" -rw-r--r--; done
deb_has etc/logrotate.d/glance-rs -rw-r--r--
for u in $units; do deb_has "usr/lib/systemd/system/$u" -rw-r--r--; done
for p in $pages; do deb_has "usr/share/man/$p.gz" -rw-r--r--; done
deb_has "$bash_completion" -rw-r--r--
deb_has usr/share/zsh/vendor-completions/_glance -rw-r--r--
deb_has usr/share/doc/glance-rs/copyright
deb_has usr/share/doc/glance-rs/changelog.Debian.gz
ok "binaries, configs, units, man pages, shell completions"
dpkg-deb -e "$deb" "$work/control"
for c in $confs; do
    grep -qx "/etc/glance/$c" "$work/control/conffiles" || fail "/etc/glance/$c is not a conffile"
done
grep -qx /etc/logrotate.d/glance-rs "$work/control/conffiles" || fail "logrotate file not a conffile"
ok "conffiles: $(tr '\n' ' ' < "$work/control/conffiles")"
depends=$(dpkg-deb -f "$deb" Depends)
for d in adduser libc6 libssl3; do
    [[ ", $depends," == *", $d"[\ ,]* ]] || fail "Depends lacks $d: $depends"
done
ok "Depends: $depends"
for s in preinst postinst prerm postrm; do
    [ -x "$work/control/$s" ] || fail "no executable $s"
    sh -n "$work/control/$s" || fail "$s: syntax error"
done
pi="$work/control/postinst"
grep -q 'glance-manage' "$pi" && grep -q 'db_sync' "$pi" || fail "postinst does not run db_sync"
for u in glance-api.service glance-registry.service glance-scrubber.timer \
    glance-cache-prefetcher.timer glance-cache-pruner.timer glance-cache-reaper.timer; do
    grep -q "deb-systemd-helper enable $u" "$pi" || fail "postinst does not enable $u"
done
# Enabled, not started: the only invoke is the try-restart of an upgrade.
if grep -E 'deb-systemd-invoke +(start|\$_dh_action)' "$pi"; then
    fail "postinst starts services on installation"
fi
grep -q 'deb-systemd-invoke try-restart' "$pi" || fail "postinst does not restart on upgrade"
# The snippets come once each, after the user and the database exist.
# Two per unit-name of systemd-units in Cargo.toml (six of them).
[ "$(grep -c '^# Automatically added by cargo-deb' "$pi")" -eq 12 ] ||
    fail "postinst: expected 12 debhelper snippets"
first_snippet=$(grep -n '^# Automatically added by cargo-deb' "$pi" | head -1 | cut -d: -f1)
[ "$(grep -n 'glance-manage' "$pi" | tail -1 | cut -d: -f1)" -lt "$first_snippet" ] ||
    fail "postinst: the unit snippets run before db_sync"
grep -q 'rm -rf /var/lib/glance /var/log/glance' "$work/control/postrm" ||
    fail "postrm does not remove the data on purge"
# The diversion commands, continuation lines joined.
divert_cmds() {
    sed -e ':a' -e '/\\$/{N;s/ *\\\n */ /;ba' -e '}' "$1" | sed -n 's/^ *\(dpkg-divert .*\)/\1/p'
}
[ "$(divert_cmds "$work/control/preinst")" = \
    "dpkg-divert --package glance-rs --add --rename $diversion" ] ||
    fail "preinst does not divert /usr/bin/glance: $(divert_cmds "$work/control/preinst")"
[ "$(divert_cmds "$work/control/postrm")" = \
    "dpkg-divert --package glance-rs --remove --rename $diversion" ] ||
    fail "postrm does not remove the diversion: $(divert_cmds "$work/control/postrm")"
ok "maintainer scripts: db_sync, enable without start, try-restart on upgrade, purge," \
    "diversion of /usr/bin/glance"

# --- Inspect the .rpm -----------------------------------------------------------------------
step "inspect the .rpm"
rpm -qip "$rpm_file"
rpm -qlvp "$rpm_file" > "$work/rpm-contents"
cat "$work/rpm-contents"
rpm_has() { # PATH PERMS, owned by root
    grep -qE "^$2 +[0-9]+ +root +root .* /$1\$" "$work/rpm-contents" ||
        fail "the .rpm lacks /$1 ($2 root root)"
}
for b in $bins; do rpm_has "usr/bin/$b" -rwxr-xr-x; done
for c in $confs; do rpm_has "etc/glance/$c" -rw-r--r--; done
for u in $units; do rpm_has "usr/lib/systemd/system/$u" -rw-r--r--; done
for p in $pages; do rpm_has "usr/share/man/$p.gz" -rw-r--r--; done
rpm_has "$bash_completion" -rw-r--r--
rpm_has usr/share/zsh/site-functions/_glance -rw-r--r--
ok "binaries, configs, units, man pages, shell completions"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_file" > "$work/rpm-flags"
for c in $confs; do
    grep -qx "cn /etc/glance/$c" "$work/rpm-flags" || fail "/etc/glance/$c is not %config(noreplace)"
done
grep -qx "cn /etc/logrotate.d/glance-rs" "$work/rpm-flags" || fail "logrotate not %config(noreplace)"
ok "config(noreplace): $(grep '^cn ' "$work/rpm-flags" | cut -d' ' -f2 | tr '\n' ' ')"
rpm -qp --requires "$rpm_file" | tr '\n' ' '
echo
rpm -qp --conflicts "$rpm_file" > "$work/rpm-conflicts"
grep -qx 'python3-glanceclient' "$work/rpm-conflicts" ||
    fail "the .rpm does not conflict with python3-glanceclient (both ship /usr/bin/glance)"
ok "Conflicts: $(tr '\n' ' ' < "$work/rpm-conflicts")"
rpm -qp --scripts "$rpm_file" > "$work/rpm-scripts"
for what in useradd 'install -d -o glance -g glance -m 0750' db_sync \
    'enable glance-api.service' 'disable --now' try-restart; do
    grep -q -- "$what" "$work/rpm-scripts" || fail "RPM scripts lack '$what'"
done
for s in pre post preun postun; do
    sh -n "packaging/rpm/$s.sh" || fail "packaging/rpm/$s.sh: syntax error"
done
ok "scripts: user, directories, db_sync, enable on install, disable on erase, try-restart on upgrade"
# rpm installs it into a throwaway root (files only: no scripts, no dependencies there)
# and verifies the installed files against the package.
mkdir -p "$work/deb-root" "$work/rpm-root"
rpm --root="$work/rpm-root" --initdb
rpm --root="$work/rpm-root" -i --nodeps --noscripts "$rpm_file" 2> "$work/rpm-install.err" ||
    { cat "$work/rpm-install.err"; fail "rpm -i into a throwaway root failed"; }
rpm --root="$work/rpm-root" -V --nodeps glance-rs || fail "rpm -V: installed files differ"
ok "rpm -i --root (no scripts) and rpm -V: $(rpm --root="$work/rpm-root" -q glance-rs)"
# Both packages carry the same binaries, units, configs and man pages.
dpkg-deb -x "$deb" "$work/deb-root"
for u in $units; do
    cmp "$work/deb-root/usr/lib/systemd/system/$u" "$work/rpm-root/usr/lib/systemd/system/$u" ||
        fail "$u differs between the packages"
done
for c in $confs; do
    cmp "$work/deb-root/etc/glance/$c" "$work/rpm-root/etc/glance/$c" || fail "$c differs"
done
for p in $pages; do
    cmp <(zcat "$work/deb-root/usr/share/man/$p.gz") <(zcat "$work/rpm-root/usr/share/man/$p.gz") ||
        fail "$p differs"
done
for b in $bins; do
    cmp "$work/deb-root/usr/bin/$b" "$work/rpm-root/usr/bin/$b" || fail "/usr/bin/$b differs"
done
cmp "$work/deb-root/$bash_completion" "$work/rpm-root/$bash_completion" ||
    fail "the bash completion differs"
cmp "$work/deb-root/usr/share/zsh/vendor-completions/_glance" \
    "$work/rpm-root/usr/share/zsh/site-functions/_glance" || fail "the zsh completion differs"
ok "the .deb and the .rpm ship identical binaries, units, configs, man pages and completions"

# --- Under a real systemd -------------------------------------------------------------------
step "the .deb under systemd (booted in a throwaway container)"
rc=0
bash .ci/package-systemd.sh "$deb" "$rpm_file" || rc=$?
case $rc in
0) ok "units, readiness, hardening, reload, restart, upgrade, removal (deb and rpm scripts)" ;;
77) echo "    SKIPPED: this machine cannot boot a systemd container (see above)" ;;
*) fail "the .deb under systemd (.ci/package-systemd.sh exit $rc)" ;;
esac

# --- Install the .deb -----------------------------------------------------------------------
step "install the .deb"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'ok installed\|config-files'; then
    echo "a previous $PKG is installed: purging it first"
    apt_get purge "$PKG"
fi
for f in /usr/bin/glance-api /etc/glance; do
    [ ! -e "$f" ] || fail "$f exists before installation (another Glance installed?)"
done
# Every package installed now must still be at the end (python3-keystone,
# python3-glanceclient, python3-openstackclient of the test services among them).
installed_pkgs() { dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\n' | awk '$1 == "ii" { print $2 }' | sort; }
installed_pkgs > "$work/installed-before"
still_installed() { # WHEN
    installed_pkgs > "$work/installed-now"
    local gone
    gone=$(comm -23 "$work/installed-before" "$work/installed-now" | tr '\n' ' ')
    [ -z "$gone" ] || fail "$1: packages no longer installed: $gone"
    ok "$1: all $(wc -l < "$work/installed-before") packages installed before still are" \
        "($(grep -xE 'python3-(keystone|glanceclient|openstackclient)' "$work/installed-now" |
            tr '\n' ' ')among them)"
}
# /usr/bin/glance before: python3-glanceclient's when installed, undiverted.
[ -z "$(dpkg-divert --list /usr/bin/glance)" ] ||
    fail "/usr/bin/glance is already diverted: $(dpkg-divert --list /usr/bin/glance)"
glanceclient=no
if dpkg-query -W -f='${Status}' python3-glanceclient 2>/dev/null | grep -q 'ok installed'; then
    glanceclient=yes
    cp -p /usr/bin/glance "$work/glance.python"
    echo "before: $(dpkg-query -S /usr/bin/glance); $(head -c 40 /usr/bin/glance | head -1)"
fi
# /usr/bin/glance is python3-glanceclient's (GLANCECLIENT=yes) or absent, undiverted.
python_glance_restored() { # WHEN
    [ -z "$(dpkg-divert --list /usr/bin/glance)" ] ||
        fail "$1: /usr/bin/glance still diverted: $(dpkg-divert --list /usr/bin/glance)"
    [ ! -e /usr/bin/glance.glanceclient ] || fail "$1: /usr/bin/glance.glanceclient remains"
    if [ "$glanceclient" = yes ]; then
        cmp "$work/glance.python" /usr/bin/glance ||
            fail "$1: /usr/bin/glance is not python3-glanceclient's"
        [ "$(dpkg-query -S /usr/bin/glance)" = "python3-glanceclient: /usr/bin/glance" ] ||
            fail "$1: dpkg -S /usr/bin/glance: $(dpkg-query -S /usr/bin/glance)"
        ok "$1: /usr/bin/glance is python3-glanceclient's again, no diversion"
    else
        [ ! -e /usr/bin/glance ] || fail "$1: /usr/bin/glance remains"
        ok "$1: /usr/bin/glance gone, no diversion (python3-glanceclient is not installed)"
    fi
}
# Never at the expense of another package of the machine (the test services' python3-keystone
# needs python3-glanceclient, for one): apt-get aborts instead of removing anything.
if apt-get -s install "$deb" | grep '^Remv'; then
    fail "installing the .deb would remove the packages above"
fi
we_installed=yes
apt_get install --no-remove "$deb"
dpkg-query -W -f='${Status} ${Version}\n' "$PKG"
getent passwd glance | grep -q ':/var/lib/glance:/usr/sbin/nologin$' ||
    fail "glance user: $(getent passwd glance || echo missing)"
for d in /var/lib/glance /var/lib/glance/images /var/log/glance; do
    [ "$(stat -c '%U:%G %a' "$d")" = "glance:glance 750" ] ||
        fail "$d is $(stat -c '%U:%G %a' "$d"), want glance:glance 750"
done
ok "user glance; /var/lib/glance, images/, /var/log/glance: glance:glance 750"
db=/var/lib/glance/glance.sqlite
[ "$(stat -c %U "$db")" = glance ] || fail "$db is not owned by glance"
schema=$(setpriv --reuid=glance --regid=glance --init-groups -- \
    glance-manage --config-file /etc/glance/glance-registry.conf db_version)
[ "$schema" -gt 0 ] || fail "schema version $schema after installation"
ok "database migrated by postinst: $db at schema version $schema"
for link in multi-user.target.wants/glance-api.service \
    multi-user.target.wants/glance-registry.service timers.target.wants/glance-scrubber.timer \
    timers.target.wants/glance-cache-prefetcher.timer timers.target.wants/glance-cache-pruner.timer \
    timers.target.wants/glance-cache-reaper.timer; do
    [ -L "/etc/systemd/system/$link" ] || fail "/etc/systemd/system/$link: not enabled"
done
ok "glance-api.service, glance-registry.service, glance-scrubber.timer, the cache timers enabled"
if pgrep -u glance >/dev/null; then fail "a glance process runs after installation"; fi
ok "nothing started"

step "/usr/bin/glance: glance-rs's client; python3-glanceclient's diverted"
# Our client in place, the Python one (if installed) renamed by the preinst's diversion.
glance_diverted() { # WHEN
    dpkg-divert --list '/usr/bin/glance*'
    dpkg-query -S /usr/bin/glance || true
    [ "$(dpkg-divert --listpackage /usr/bin/glance)" = glance-rs ] ||
        fail "$1: /usr/bin/glance not diverted by glance-rs: $(dpkg-divert --list /usr/bin/glance)"
    [ "$(dpkg-divert --truename /usr/bin/glance)" = /usr/bin/glance.glanceclient ] ||
        fail "$1: diverted to $(dpkg-divert --truename /usr/bin/glance)"
    [ "$(dpkg-divert --list | grep -c glance)" -eq 1 ] || fail "$1: more than one diversion"
    cmp "$work/deb-root/usr/bin/glance" /usr/bin/glance || fail "$1: /usr/bin/glance is not ours"
    # dpkg lists both owners of a diverted path, in either order.
    dpkg-query -S /usr/bin/glance | grep -qE '^([^:]*, )?glance-rs(, [^:]*)?: /usr/bin/glance$' ||
        fail "$1: glance-rs does not own /usr/bin/glance"
    if [ "$glanceclient" = yes ]; then
        cmp "$work/glance.python" /usr/bin/glance.glanceclient ||
            fail "$1: /usr/bin/glance.glanceclient is not python3-glanceclient's /usr/bin/glance"
        dpkg-query -W -f='${Status}' python3-glanceclient | grep -q 'ok installed' ||
            fail "$1: python3-glanceclient is no longer installed"
        ok "$1: /usr/bin/glance is glance-rs's; python3-glanceclient's is /usr/bin/glance.glanceclient"
    else
        ok "$1: /usr/bin/glance is glance-rs's (diverted, python3-glanceclient not installed)"
    fi
}
glance_diverted "installed"
still_installed "installed"
version_out=$(env -i PATH=/usr/bin:/bin glance --version) || fail "glance --version failed"
[ "$version_out" = "glance $version (glance-rs, images API v1)" ] ||
    fail "glance --version: $version_out"
ok "glance --version: $version_out"
[ "$(man -w glance)" = /usr/share/man/man1/glance.1.gz ] || fail "man -w glance: $(man -w glance)"
ok "man glance: /usr/share/man/man1/glance.1.gz"
completed=$(env -i PATH=/usr/bin:/bin bash --norc -c \
    'source /usr/share/bash-completion/completions/glance; COMP_LINE="glance de"
     COMP_POINT=${#COMP_LINE}; _glance_bash; echo "${COMPREPLY[*]}"') ||
    fail "the installed bash completion failed"
[ "$completed" = "delete details" ] || fail "installed completion of 'glance de': $completed"
ok "installed bash completion: glance de -> $completed"

step "reinstall (the upgrade path of the maintainer scripts)"
apt_get install --no-remove --reinstall "$deb"
[ "$(setpriv --reuid=glance --regid=glance --init-groups -- \
    glance-manage --config-file /etc/glance/glance-registry.conf db_version)" = "$schema" ] ||
    fail "schema changed on reinstall"
ok "upgrade path ran: database still at $schema"
glance_diverted "reinstalled"

step "systemd-analyze verify (installed units, programs and man pages)"
(cd / && systemd-analyze verify /usr/lib/systemd/system/glance-api.service \
    /usr/lib/systemd/system/glance-registry.service \
    /usr/lib/systemd/system/glance-scrubber.service \
    /usr/lib/systemd/system/glance-scrubber.timer \
    /usr/lib/systemd/system/glance-cache-{prefetcher,pruner,reaper}.{service,timer}) \
    > "$work/verify" 2>&1 ||
    { cat "$work/verify"; fail "systemd-analyze verify failed"; }
# It prints nothing on success; anything about our units is a finding.
if grep -v '^+' "$work/verify" | grep -i 'glance'; then fail "systemd-analyze verify complained"; fi
ok "systemd-analyze verify: no findings"
for page in glance.1 glance-api.conf.5 glance-api.8 glance-manage.8; do
    [ -z "$(MANWIDTH=80 man --warnings -l "/usr/share/man/man${page##*.}/$page.gz" 2>&1 >/dev/null)" ] ||
        fail "installed $page renders with warnings"
done
man -w glance-api >/dev/null || fail "man cannot find glance-api"
ok "installed man pages found and render"

# --- Run the installed glance-api -----------------------------------------------------------
step "run the installed glance-api as glance"
# The installed config, moved to an ephemeral loopback port; nothing else changes.
conf="$work/glance-api.conf"
sed -e 's/^bind_host = .*/bind_host = 127.0.0.1/' -e 's/^bind_port = .*/bind_port = 0/' \
    /etc/glance/glance-api.conf > "$conf"
chmod 644 "$conf"
diff /etc/glance/glance-api.conf "$conf" > "$work/conf.diff" || true
cat "$work/conf.diff"
[ "$(grep -c '^[<>]' "$work/conf.diff")" -eq 4 ] || fail "unexpected config changes"
# A notify socket like systemd's, to see READY=1 / RELOADING=1 / STOPPING=1.
chown glance:glance "$work"
sock="$work/notify.sock"
setpriv --reuid=glance --regid=glance --init-groups -- \
    socat -u "UNIX-RECV:$sock" - > "$work/notify.log" &
notify_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "notify socket not created"
# setpriv execs: $! is glance-api itself, so signals reach it as systemd's would.
(cd "$work" && exec env NOTIFY_SOCKET="$sock" setpriv --reuid=glance --regid=glance \
    --init-groups -- /usr/bin/glance-api --config-file "$conf") \
    > "$work/api.out" 2> "$work/api.err" &
server_pid=$!
addr=""
for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$work/api.out" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/api.out" "$work/api.err"; fail "glance-api exited"; }
    sleep 0.1
done
[ -n "$addr" ] || { cat "$work/api.err"; fail "glance-api did not print 'listening on'"; }
ok "glance-api (pid $server_pid, user $(ps -o user= -p "$server_pid")) listening on $addr"
# socat writes the datagrams back to back, without separators.
notified() { grep -o "$1" "$work/notify.log" | wc -l; }
for _ in $(seq 50); do [ "$(notified READY=1)" -ge 1 ] && break; sleep 0.1; done
[ "$(notified READY=1)" -ge 1 ] || fail "no READY=1 on NOTIFY_SOCKET"
ok "sent READY=1 to NOTIFY_SOCKET"
body=$(curl -sS -f "http://$addr/v1/images") || fail "GET /v1/images failed"
[ "$(printf '%s' "$body" | tr -d ' ')" = '{"images":[]}' ] || fail "GET /v1/images answered $body"
ok "GET /v1/images -> $body"
printf 'glance-rs package test image\n' > "$work/image.raw"
created=$(curl -sS -f -X POST "http://$addr/v1/images" \
    -H 'Content-Type: application/octet-stream' -H 'x-image-meta-name: pkgtest' \
    -H 'x-image-meta-disk_format: raw' -H 'x-image-meta-container_format: bare' \
    --data-binary @"$work/image.raw") || fail "POST /v1/images failed"
id=$(printf '%s' "$created" | sed -n 's/.*"id": *"\([0-9a-f-]*\)".*/\1/p')
[ -n "$id" ] || fail "no image id in $created"
curl -sS -f -o "$work/image.back" "http://$addr/v1/images/$id" || fail "GET image data failed"
cmp "$work/image.raw" "$work/image.back" || fail "image data differs"
[ "$(stat -c %U "/var/lib/glance/images/$id")" = glance ] ||
    fail "image file not in /var/lib/glance/images or not owned by glance"
ok "uploaded image $id into /var/lib/glance/images and read it back"
# The installed client against it, as an ordinary user with a clean environment: it adds a
# public image (index lists public images only: there is no authentication here), lists it.
port=${addr##*:}
as_user() { (cd / && env -i PATH=/usr/bin:/bin setpriv --reuid=nobody --regid=nogroup \
    --clear-groups -- "$@"); }
added=$(as_user glance -H 127.0.0.1 -p "$port" add name=pkgtest-cli is_public=true \
    disk_format=raw container_format=bare --file "$work/image.raw") ||
    fail "glance add failed: $added"
cli_id=$(printf '%s' "$added" | sed -n 's/^Added new image with ID: *//p')
[ -n "$cli_id" ] || fail "glance add printed: $added"
ok "glance -H 127.0.0.1 -p $port add ... --file (as nobody): $added"
index=$(as_user glance -H 127.0.0.1 -p "$port" index) ||
    fail "glance -H 127.0.0.1 -p $port index failed"
printf '%s\n' "$index" | sed 's/^/    | /'
printf '%s\n' "$index" | grep -qE "^$cli_id +pkgtest-cli +raw +bare +29\$" ||
    fail "glance index does not list image $cli_id (pkgtest-cli raw bare 29)"
ok "glance -H 127.0.0.1 -p $port index (as nobody) lists $cli_id"
kill -HUP "$server_pid"
for _ in $(seq 50); do [ "$(notified READY=1)" -ge 2 ] && break; sleep 0.1; done
[ "$(notified RELOADING=1)" -eq 1 ] || fail "no RELOADING=1 after SIGHUP"
[ "$(notified READY=1)" -eq 2 ] || fail "no READY=1 after SIGHUP"
curl -sS -f -o /dev/null "http://$addr/v1/images" || fail "not serving after SIGHUP"
grep -q "configuration re-read from $conf" "$work/api.err" ||
    { cat "$work/api.err"; fail "SIGHUP did not re-read the configuration"; }
ok "SIGHUP (ExecReload): config re-read, RELOADING=1, READY=1, still serving"
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" -eq 0 ] || { cat "$work/api.err"; fail "glance-api exited $rc on SIGTERM"; }
for _ in $(seq 50); do [ "$(notified STOPPING=1)" -ge 1 ] && break; sleep 0.1; done
[ "$(notified STOPPING=1)" -eq 1 ] || fail "no STOPPING=1 on SIGTERM"
kill "$notify_pid" 2>/dev/null || true
wait "$notify_pid" 2>/dev/null || true
notify_pid=""
ok "SIGTERM: STOPPING=1, exit 0 (notify datagrams: $(cat "$work/notify.log"))"

step "the installed glance-scrubber runs as glance"
setpriv --reuid=glance --regid=glance --init-groups -- \
    glance-scrubber --config-file /etc/glance/glance-scrubber.conf ||
    fail "glance-scrubber one pass failed"
ok "glance-scrubber: one pass, exit 0"
for p in $cache_programs; do
    # The packaged glance-api.conf has image_cache_enabled = False: nothing to do, exit 0.
    setpriv --reuid=glance --regid=glance --init-groups -- \
        "$p" --config-file /etc/glance/glance-api.conf || fail "$p failed"
done
ok "glance-cache-prefetcher, -pruner, -reaper: one pass each, exit 0"

# --- Remove, then purge ---------------------------------------------------------------------
step "remove"
apt_get remove "$PKG"
for f in /usr/bin/glance-api /usr/lib/systemd/system/glance-api.service \
    /usr/share/man/man8/glance-api.8.gz /usr/share/man/man1/glance.1.gz "/$bash_completion" \
    /usr/share/zsh/vendor-completions/_glance; do
    [ ! -e "$f" ] || fail "$f remains after remove"
done
dpkg-divert --list '/usr/bin/glance*'
dpkg-query -S /usr/bin/glance || true
python_glance_restored "removed"
still_installed "removed"
for f in /etc/glance/glance-api.conf "$db" "/var/lib/glance/images/$id" /var/log/glance; do
    [ -e "$f" ] || fail "$f was deleted by remove (only purge may)"
done
ok "programs gone; configs, database, image data and logs kept"

step "purge"
apt_get purge "$PKG"
we_installed=no
for f in /etc/glance /var/lib/glance /var/log/glance /etc/logrotate.d/glance-rs \
    /etc/systemd/system/multi-user.target.wants/glance-api.service \
    /etc/systemd/system/timers.target.wants/glance-scrubber.timer \
    /etc/systemd/system/timers.target.wants/glance-cache-prefetcher.timer; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f remains after purge"
done
if dpkg-query -W "$PKG" >/dev/null 2>&1; then fail "dpkg still knows $PKG"; fi
ok "configs, data, logs and enablement links gone; the glance user stays by design"
python_glance_restored "purged"
still_installed "purged"
if [ "$glanceclient" = yes ]; then
    env -i PATH=/usr/bin:/bin glance --version > "$work/python-glance.out" 2>&1 ||
        { cat "$work/python-glance.out"; fail "python3-glanceclient's glance --version failed"; }
    ok "python3-glanceclient's glance --version: $(tr '\n' ' ' < "$work/python-glance.out")"
fi

step "done in $((SECONDS - started)) s"
echo "package.sh: all packaging checks passed"
