#!/bin/sh
# Test of the rig itself (ctest rig_vm, two boots): run-in-vm.sh returns the command's exit
# status, keeps stdout and stderr apart, makes VM_RW dirs writable while other host paths
# stay untouched, passes VM_ENV variables in, and reports 125 when the VM is killed.
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/can-run.sh" || exit 77
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
MARK=/var/tmp/rig-test-$$
export RIG_TEST_VALUE="a b'c"
VM_RW=$D VM_ENV=RIG_TEST_VALUE "$HERE/run-in-vm.sh" sh -c \
  'echo out; echo err >&2; echo "$RIG_TEST_VALUE" > "$1/rw"; echo x > "$2"; exit 7' sh "$D" "$MARK" \
  > "$D/stdout" 2> "$D/stderr"
rc=$?
[ $rc = 7 ] || fail "exit status $rc, expected 7"
[ "$(cat "$D/stdout")" = out ] || fail "stdout: $(cat "$D/stdout")"
grep -qx err "$D/stderr" || fail "stderr: $(cat "$D/stderr")"
[ "$(cat "$D/rw" 2>/dev/null)" = "a b'c" ] || fail "VM_RW write or VM_ENV value missing: $(cat "$D/rw" 2>&1)"
[ ! -e "$MARK" ] || { rm -f "$MARK"; fail "a write outside VM_RW reached the host"; }
echo "PASS status, stdout/stderr, VM_RW, VM_ENV, read-only host"
VM_TIMEOUT=3 "$HERE/run-in-vm.sh" sleep 60 > /dev/null 2> "$D/stderr"
rc=$?
[ $rc = 125 ] || fail "killed VM gave $rc, expected 125"
grep -q 'VM_TIMEOUT' "$D/stderr" || fail "no timeout message: $(cat "$D/stderr")"
echo "PASS 125 when the VM is killed"
