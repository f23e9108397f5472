#!/bin/bash
# The operator screen of `station produce` as a person sees it: the station runs in a tmux
# pane (a real terminal), and the pane's text (tmux capture-pane) must show the slot panels
# with PASS and FAIL in block letters, the totals with the yield, and after Ctrl-C the
# closing summary. Then the same run with TERM=dumb must give plain lines.
# Usage: test-produce-screen.sh STATION_BINARY. Exit 77 (skip) without tmux.
set -u
STATION=$1
command -v tmux >/dev/null || { echo "SKIP: tmux is not installed (Debian package tmux)"; exit 77; }
dir=$(mktemp -d /tmp/st-screen-XXXXXX)
sock="st-screen-$$"
cleanup() { tmux -L "$sock" kill-server 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- pane:"; cat "$dir/pane.txt" 2>/dev/null; exit 1; }

sha=$("$STATION" image generate "$dir/img.bin" | awk '{print $NF}')
cat > "$dir/job.yaml" <<EOF
name: screen
target: stm32g431xx
images:
  combined: { path: img.bin, load_addr: 0x08000000, sha256: $sha }
steps:
  - enter-bootloader
  - flash: { image: combined }
  - verify: { image: combined }
EOF
# Slot 1's unit passes, slot 2's fails; the simulated operator leaves both in for a minute,
# so the verdicts stay on the screen.
slot() {
  cat <<EOF
  - id: $1
    name: $2
    lines: { boot0: B$1, reset: { name: R$1, active_low: true }, button: BTN$1, present: P$1,
             led_pass: LP$1, led_fail: LF$1, led_busy: LB$1 }
    usb_port: vusb-$1
    unit:
      serial: "0A1B2C3D4E0$1"
      faults: [ $3 ]
      operator: { units: 1, arrive_ms: 1, press_ms: 1, remove_ms: 60000 }
EOF
}
{
  printf 'name: screen\ngpio: { backend: virtual }\ntiming: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n'
  slot 1 left ""
  slot 2 right '"corrupt-page:0x08004000"'
} > "$dir/fixture.yaml"

# Wait (bounded) until the pane shows $1; the pane text is left in pane.txt.
wait_pane() {
  for _ in $(seq 1 600); do
    tmux -L "$sock" capture-pane -p -t produce > "$dir/pane.txt" 2>/dev/null
    grep -q -- "$1" "$dir/pane.txt" && return 0
    sleep 0.1
  done
  return 1
}

run_in_tmux() { # $1: TERM for the station
  tmux -L "$sock" -f /dev/null new-session -d -s produce -x 120 -y 40 \
    "cd '$dir' && TERM=$1 '$STATION' produce job.yaml -f fixture.yaml --reports reports --lot LOT-7 --station line-2; echo EXIT=\$?; sleep 120"
}

run_in_tmux "${TERM_FOR_TEST:-screen}"
wait_pane "TOTAL units 2" || fail "no totals line with both units"
grep -q "yield 50.0%" "$dir/pane.txt" || fail "yield"
grep -q "slot 1 (left)" "$dir/pane.txt" || fail "slot 1 panel title"
grep -q "slot 2 (right)" "$dir/pane.txt" || fail "slot 2 panel title"
grep -q "lot LOT-7  station line-2" "$dir/pane.txt" || fail "header"
# The verdict words in block letters, row by row as the font draws them.
P=("#### " "#   #" "#### " "#    " "#    ")
A=(" ### " "#   #" "#####" "#   #" "#   #")
S=(" ####" "#    " " ### " "    #" "#### ")
F=("#####" "#    " "#### " "#    " "#    ")
I=("#####" "  #  " "  #  " "  #  " "#####")
L=("#    " "#    " "#    " "#    " "#####")
for r in 0 1 2 3 4; do
  pass="${P[$r]} ${A[$r]} ${S[$r]} ${S[$r]}"
  failw="${F[$r]} ${A[$r]} ${I[$r]} ${L[$r]}"
  # capture-pane drops trailing blanks
  pass="${pass%"${pass##*[! ]}"}"
  failw="${failw%"${failw##*[! ]}"}"
  grep -qF -- "$pass" "$dir/pane.txt" || fail "row $r of PASS in block letters: '$pass'"
  grep -qF -- "$failw" "$dir/pane.txt" || fail "row $r of FAIL in block letters: '$failw'"
done
grep -q "last: FAIL" "$dir/pane.txt" || fail "slot 2's last verdict"
grep -q "verify" "$dir/pane.txt" || fail "slot 2's cause (verify)"
# Ctrl-C: nothing in flight, so the station stops at once and says what it did.
tmux -L "$sock" send-keys -t produce C-c
wait_pane "EXIT=" || fail "no exit after Ctrl-C"
grep -q "EXIT=1" "$dir/pane.txt" || fail "exit status (want 1: a unit failed)"
grep -q "stopped (Interrupt): 2 units, 1 passed, 1 failed" "$dir/pane.txt" || fail "closing summary"
tmux -L "$sock" kill-server
rm -rf "$dir/reports"

# TERM=dumb (and likewise output that is not a terminal): plain lines, no panels.
run_in_tmux dumb
wait_pane "slot 2: FAIL" || fail "plain lines with TERM=dumb"
grep -q "slot 1: PASS report" "$dir/pane.txt" || fail "plain PASS line"
grep -q "TOTAL units" "$dir/pane.txt" && fail "panels drawn on a dumb terminal"
echo "ok: operator screen in tmux (block letters, totals, Ctrl-C), plain lines on TERM=dumb"
exit 0
