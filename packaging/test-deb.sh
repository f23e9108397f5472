#!/bin/sh
# Tests a station .deb: lintian reports no errors; Depends names the package of every shared
# library the programs need (those the host's dpkg knows); installed with dpkg into a private root
# (dpkg --root, no container; maintainer scripts run chrootless with $DPKG_ROOT set), the
# installed station prints its version, runs the virtual job from the installed files
# alone (job, image and fixture found through the share directory beside the installed
# binary), the sysusers file made the service user with the udev rules' groups, the
# systemd unit verifies; then the package is purged and nothing of it is left.
# Usage: test-deb.sh STATION.deb   (root: dpkg --root unpacks files owned by root)
set -u
DEB=${1:?usage: test-deb.sh STATION.deb}
[ "$(id -u)" = 0 ] || { echo "skipped: dpkg --root needs root"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
R=$T/root
fail=0
step() { # step NAME CMD...: CMD must succeed
  n=$1; shift
  if "$@" > "$T/out" 2>&1; then echo "PASS $n"; else echo "FAIL $n"; sed 's/^/  | /' "$T/out"; fail=1; fi
}

if command -v lintian >/dev/null; then
  step lintian lintian --fail-on error "$DEB"
  [ -s "$T/out" ] && sed 's/^/  | /' "$T/out"
else
  echo "SKIP lintian: not installed"
fi

mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/log" "$R/etc"
: > "$R/var/lib/dpkg/status"
# The private root has no libraries: the host's satisfy the binary (same release), so the
# dependencies are not checked in the root (--force-depends).
dpkg_r() { dpkg --root="$R" --log="$T/dpkg.log" --force-depends --force-script-chrootless "$@"; }
step install dpkg_r -i "$DEB"
step status sh -c 'dpkg --root="$0" -s station | grep -q "^Status: install ok installed"' "$R"
step version sh -c '"$0/usr/bin/station" --version | grep -qx "station [0-9.]*"' "$R"
step sim-version sh -c '"$0/usr/bin/station-sim" --version | grep -q "^station-sim "' "$R"

# Depends names the package of every shared library the programs need (the list in
# cmake/StationInstall.cmake is written by hand for the native build: it must not fall
# behind the link line). Libraries no installed package owns (a private libgpiod) are
# named by their soname's package guess only when dpkg knows them.
deps_cover() {
  deps=$(dpkg-deb -f "$DEB" Depends | sed 's/([^)]*)//g; s/ //g' | tr ',' '\n')
  miss=""
  for so in $(objdump -p "$R/usr/bin/station" "$R/usr/bin/station-sim" | awk '$1 == "NEEDED" { print $2 }' | sort -u); do
    path=$(ldconfig -p | awk -v so="$so" '$1 == so { print $NF; exit }')
    [ -n "$path" ] || continue
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$pkg" ] || continue
    echo "$so: $pkg"
    printf '%s\n' "$deps" | grep -qx "$pkg" || miss="$miss $pkg($so)"
  done
  [ -z "$miss" ] || { echo "not in Depends:$miss"; return 1; }
}
step depends deps_cover

# The virtual job from the installed files only: `demo-usb-dfu` by name, its image under
# share/station/jobs/generated, the default (virtual) fixture from share/station/fixtures.
fx=""
[ -e /etc/station ] && fx="-f $R/usr/share/station/fixtures/virtual.yaml" # host config wins otherwise
mkdir -p "$T/home" "$T/reports"
run_job() {
  # shellcheck disable=SC2086
  (cd "$T" && HOME=$T/home XDG_CONFIG_HOME= STATION_FIXTURE= "$R/usr/bin/station" --plain $fx \
    run demo-usb-dfu --reports "$T/reports") || return 1
  np=$(grep -l '^verdict: pass' "$T"/reports/*.yaml 2>/dev/null | wc -l)
  echo "$np passing report(s)"
  [ "$np" = 2 ] && grep -q "$R/usr/share/station/jobs/generated/demo-combined.bin" "$T"/reports/*.yaml
}
step virtual-job run_job
step man-page sh -c 'zcat "$0/usr/share/man/man1/station.1.gz" | grep -q "^\.TH station"' "$R"

# The service user and groups (postinst: systemd-sysusers --root).
step sysusers sh -c 'grep -q "^station:" "$0/etc/passwd" && grep -q "^gpio:.*station" "$0/etc/group" &&
  grep -q "^plugdev:.*station" "$0/etc/group" && grep -q "^dialout:.*station" "$0/etc/group"' "$R"
if command -v systemd-analyze >/dev/null; then
  # The unit as installed, pointed at the installed binary (verify checks ExecStart).
  mkdir -p "$T/units"
  sed "s|/usr/bin/station|$R/usr/bin/station|" "$R/usr/lib/systemd/system/station@.service" \
    > "$T/units/station@.service"
  # Its hardening as systemd scores it (0 best, 10 worst; "OK" is below 5): at most 2.5
  # (--threshold is in tenths; the unit scores 2.0, IP allowed for MQTT live status).
  step unit-exposure sh -c 'cd "$0/units" && systemd-analyze security --offline=true --threshold=25 \
    --no-pager station@.service | tail -n 1' "$T"
  [ -s "$T/out" ] && sed 's/^/  | /' "$T/out"
  step unit-verify sh -c 'MANPATH=$0/usr/share/man systemd-analyze verify "$1/units/station@demo.service" 2>&1 |
    tee /dev/stderr | grep -v "^$" | { ! grep -q .; }' "$R" "$T"
fi

# Purge: every file the package brought is gone; only dpkg's own database and the users
# sysusers created stay (Debian keeps system users).
step purge dpkg_r --purge station
left=$(cd "$R" && find . -path ./var/lib/dpkg -prune -o -path ./var/log -prune -o -path ./etc -prune \
  -o ! -type d -print)
step nothing-left test -z "$left"
[ -z "$left" ] || echo "$left" | sed 's/^/  | left: /'
step not-installed sh -c '! dpkg --root="$0" -s station 2>/dev/null | grep -q "^Status: install ok"' "$R"
exit $fail
