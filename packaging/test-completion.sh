#!/bin/bash
# Tests the bash completion of station and station-sim (packaging/*.bash-completion)
# against the built binaries: commands, subcommands, every option --help lists, job and
# fixture names from the search path, *.yaml files, option values.
set -u
: "${STATION_BIN:?}" "${STATION_SIM_BIN:?}"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/station.bash-completion"
. "$here/station-sim.bash-completion"
compopt() { :; } # only works inside a real completion
fail=0
tmp_cmds=$(mktemp)
# comp FUNC WORD...: the completions for the last WORD.
comp() {
  local f=$1; shift
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
  "$f"
  printf '%s\n' "${COMPREPLY[@]}" | sort -u | tr '\n' ' '
}
# expect NAME GOT WANT...: every WANT word is in GOT.
expect() {
  local n=$1 got=$2 w; shift 2
  for w in "$@"; do
    case " $got " in *" $w "*) ;; *) echo "FAIL $n: \"$w\" not offered (got: $got)"; fail=1; return ;; esac
  done
  echo "PASS $n"
}
refuse() { # refuse NAME GOT WORD...: no WORD is offered
  local n=$1 got=$2 w; shift 2
  for w in "$@"; do
    case " $got " in *" $w "*) echo "FAIL $n: \"$w\" offered"; fail=1; return ;; esac
  done
  echo "PASS $n"
}
S=$STATION_BIN
cmds=$("$S" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z]*\) .*/\1/p' | sort -u)
[ -n "$cmds" ] || { echo "FAIL no commands parsed from --help"; fail=1; }
# shellcheck disable=SC2086
expect commands "$(comp _station "$S" '')" $cmds run dfu can serial report job fixture image
expect can-sub "$(comp _station "$S" can '')" scan flash
expect fixture-sub "$(comp _station "$S" -f x fixture '')" check
# Every option of every command's own --help is offered after that command.
"$S" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z]*\( [a-z][a-z]*\)\{0,1\}\)\( [A-Z].*\|  .*\)$/\1/p' > "$tmp_cmds"
while read -r c; do
  o=$("$S" $c --help | sed -n 's/^  \(-[A-Za-z], \)\{0,1\}\(--[a-z0-9-]*\).*/\2/p')
  [ -n "$o" ] || { echo "FAIL $c: no options in its --help"; fail=1; continue; }
  # shellcheck disable=SC2086
  expect "options of '$c'" "$(comp _station "$S" $c --)" $o
done < "$tmp_cmds"
expect top-options "$(comp _station "$S" --)" --fixture --help --version
expect option-prefix "$(comp _station "$S" --fi)" --fixture
expect run-option "$(comp _station "$S" run --sl)" --slot
expect job-names "$(comp _station "$S" run de)" demo-usb-dfu
expect job-after-option "$(comp _station "$S" run -f virtual --reports /tmp de)" demo-usb-dfu
expect fixture-names "$(comp _station "$S" --plain -f vir)" virtual virtual-can
expect fixture-names-long "$(comp _station "$S" run --fixture vir)" virtual virtual-can
expect job-check "$(comp _station "$S" job check demo)" demo-usb-dfu
refuse no-second-arg "$(comp _station "$S" job check demo-usb-dfu de)" demo-usb-dfu
T=$(mktemp -d); trap 'rm -rf "$T" "$tmp_cmds"' EXIT
mkdir "$T/sub"; : > "$T/a.yaml"; : > "$T/b.txt"
got=$(cd "$T" && comp _station "$S" fixture check '')
expect yaml-files "$got" a.yaml sub/
refuse not-other-files "$got" b.txt
# station-sim
expect sim-endpoints "$(comp _station_sim "$STATION_SIM_BIN" '')" usbip units slcan pty
expect sim-options "$(comp _station_sim "$STATION_SIM_BIN" usbip --mo)" --model
expect sim-models "$(comp _station_sim "$STATION_SIM_BIN" pty --model '')" echo katapult klipper
exit $fail
