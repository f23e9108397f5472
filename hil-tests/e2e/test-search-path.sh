#!/bin/sh
# End to end: the station binary finds fixtures and jobs through its search path
# (station/paths.h), never through the build tree. The build-tree binary finds the source
# tree's files through build/share/station; a copy of it in an empty prefix finds nothing
# (and says where it looked); the same copy with a share directory beside it, a
# ~/.config/station/fixture.yaml, an /etc-like directory's job, $STATION_FIXTURE.
set -u
: "${STATION_BIN:?}" "${STATION_SOURCE_DIR:?}" "${STATION_BINARY_DIR:?}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
check() { # check NAME CMD...: CMD must succeed
  n=$1; shift
  if "$@" > "$T/out" 2>&1; then echo "PASS $n"; else echo "FAIL $n"; sed 's/^/  | /' "$T/out"; fail=1; fi
}
one_fixture() { # one_fixture FILE SERIAL: a one-slot virtual fixture whose unit has SERIAL
  cat > "$1" <<EOT
name: $2
gpio: { backend: virtual }
slots:
  - id: 1
    lines: { boot0: B, reset: { name: R, active_low: true } }
    usb_port: vusb-1
    unit: { serial: "$2" }
EOT
}

# 1. The build-tree binary: default fixture and a job by name, from the source tree.
check build-tree-default sh -c '"$STATION_BIN" dfu list | grep -q "serial \"0A1B2C3D4E01\""'
# (found: it names its image, whether or not jobs/generated/ holds it yet)
check build-tree-job-name sh -c '"$STATION_BIN" job check demo-usb-dfu 2>&1 | grep -q "demo-combined.bin"'

# 2. A moved copy with nothing beside it: no default fixture, and no build-tree path tried.
mkdir -p "$T/p/bin" "$T/home"
cp "$STATION_BIN" "$T/p/bin/station"
st() { HOME=$T/home XDG_CONFIG_HOME= STATION_FIXTURE= "$T/p/bin/station" "$@"; }
moved_fails() {
  st dfu list > "$T/m.out" 2>&1; rc=$?
  cat "$T/m.out"
  [ $rc = 2 ] && grep -q "no default fixture found" "$T/m.out" &&
    grep -q "$T/p/share/station/fixtures/virtual.yaml" "$T/m.out" &&
    ! grep -q "$STATION_BINARY_DIR\|$STATION_SOURCE_DIR" "$T/m.out"
}
check moved-no-build-tree moved_fails
moved_job_fails() {
  st job check demo-usb-dfu > "$T/j.out" 2>&1; rc=$?
  cat "$T/j.out"
  [ $rc = 2 ] && grep -q 'job "demo-usb-dfu" not found' "$T/j.out" &&
    ! grep -q "$STATION_SOURCE_DIR" "$T/j.out"
}
check moved-job-not-found moved_job_fails
# `station produce` looks its job up the same way as `run` and `job check`.
moved_produce_fails() {
  st produce demo-usb-dfu > "$T/p.out" 2>&1; rc=$?
  cat "$T/p.out"
  [ $rc = 2 ] && grep -q 'job "demo-usb-dfu" not found' "$T/p.out"
}
check moved-produce-job-not-found moved_produce_fails

# 3. A share directory beside the moved binary: its virtual fixture is the default.
mkdir -p "$T/p/share/station/fixtures"
one_fixture "$T/p/share/station/fixtures/virtual.yaml" SHARE0001
check share-default sh -c 'HOME=$0/home XDG_CONFIG_HOME= STATION_FIXTURE= "$0/p/bin/station" dfu list | grep -q SHARE0001' "$T"
# 4. ~/.config/station/fixture.yaml beats the share directory; a named fixture under it too.
mkdir -p "$T/home/.config/station/fixtures"
one_fixture "$T/home/.config/station/fixture.yaml" HOME0001
one_fixture "$T/home/.config/station/fixtures/jig2.yaml" JIG20001
check config-default sh -c 'HOME=$0/home XDG_CONFIG_HOME= STATION_FIXTURE= "$0/p/bin/station" dfu list | grep -q HOME0001' "$T"
check config-named sh -c 'HOME=$0/home XDG_CONFIG_HOME= STATION_FIXTURE= "$0/p/bin/station" -f jig2 dfu list | grep -q JIG20001' "$T"
# 5. $STATION_FIXTURE beats both, by name.
check env-fixture sh -c 'HOME=$0/home XDG_CONFIG_HOME= STATION_FIXTURE=jig2 "$0/p/bin/station" dfu list | grep -q JIG20001' "$T"
exit $fail
