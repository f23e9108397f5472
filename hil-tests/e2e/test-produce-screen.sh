#!/bin/bash
# The operator screen of `station produce` as a person sees it: the station runs in a tmux
# pane (a real terminal), and the pane's text (tmux capture-pane) must show the slot panels
# with PASS and FAIL in block letters, the totals with the yield, and after Ctrl-C the
# closing summary. Then the same run with TERM=dumb must give plain lines.
# Usage: test-produce-screen.sh STATION_BINARY. Exit 77 (skip) without tmux.
set -u
STATION=$1
command -v tmux >/dev/null || { echo "SKIP: tmux is not installed (Debian package tmux)"; exit 77; }
dir=$(mktemp -d -t st-screen-XXXXXX)
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

# Everything the operator must see once both units are done; prints the first thing missing.
# The screen is redrawn in place, so a capture can catch a redraw half done: the checks are
# retried on fresh captures until they all hold at once (bounded by wait_all).
screen_ok() {
  local f=$dir/pane.txt
  grep -q "TOTAL units 2" "$f" || { echo "no totals line with both units"; return 1; }
  grep -q "yield 50.0%" "$f" || { echo "yield"; return 1; }
  grep -q "slot 1 (left)" "$f" || { echo "slot 1 panel title"; return 1; }
  grep -q "slot 2 (right)" "$f" || { echo "slot 2 panel title"; return 1; }
  grep -q "lot LOT-7  station line-2" "$f" || { echo "header"; return 1; }
  # The verdict words in block letters, row by row as the font draws them.
  local P=("#### " "#   #" "#### " "#    " "#    ")
  local A=(" ### " "#   #" "#####" "#   #" "#   #")
  local S=(" ####" "#    " " ### " "    #" "#### ")
  local F=("#####" "#    " "#### " "#    " "#    ")
  local I=("#####" "  #  " "  #  " "  #  " "#####")
  local L=("#    " "#    " "#    " "#    " "#####")
  local r pass failw
  for r in 0 1 2 3 4; do
    pass="${P[$r]} ${A[$r]} ${S[$r]} ${S[$r]}"
    failw="${F[$r]} ${A[$r]} ${I[$r]} ${L[$r]}"
    # capture-pane drops trailing blanks
    pass="${pass%"${pass##*[! ]}"}"
    failw="${failw%"${failw##*[! ]}"}"
    grep -qF -- "$pass" "$f" || { echo "row $r of PASS in block letters: '$pass'"; return 1; }
    grep -qF -- "$failw" "$f" || { echo "row $r of FAIL in block letters: '$failw'"; return 1; }
  done
  grep -q "last: FAIL" "$f" || { echo "slot 2's last verdict"; return 1; }
  grep -q "verify" "$f" || { echo "slot 2's cause (verify)"; return 1; }
}

# Wait (bounded, 60 s) until check $1 holds on one capture; fail with what was missing.
wait_all() {
  local why=""
  for _ in $(seq 1 600); do
    tmux -L "$sock" capture-pane -p -t produce > "$dir/pane.txt" 2>/dev/null
    why=$("$1") && return 0
    sleep 0.1
  done
  fail "$why"
}

run_in_tmux "${TERM_FOR_TEST:-screen}"
wait_all screen_ok
# Ctrl-C: nothing in flight, so the station stops at once and says what it did.
tmux -L "$sock" send-keys -t produce C-c
wait_pane "EXIT=" || fail "no exit after Ctrl-C"
grep -q "EXIT=1" "$dir/pane.txt" || fail "exit status (want 1: a unit failed)"
grep -q "stopped (Interrupt): 2 units, 1 passed, 1 failed" "$dir/pane.txt" || fail "closing summary"
tmux -L "$sock" kill-server
rm -rf "$dir/reports"

# TERM=dumb (and likewise output that is not a terminal): plain lines, no panels.
dumb_ok() {
  grep -q "slot 2: FAIL" "$dir/pane.txt" || { echo "plain lines with TERM=dumb"; return 1; }
  grep -q "slot 1: PASS report" "$dir/pane.txt" || { echo "plain PASS line"; return 1; }
}
run_in_tmux dumb
wait_all dumb_ok
grep -q "TOTAL units" "$dir/pane.txt" && fail "panels drawn on a dumb terminal"
echo "ok: operator screen in tmux (block letters, totals, Ctrl-C), plain lines on TERM=dumb"
exit 0
