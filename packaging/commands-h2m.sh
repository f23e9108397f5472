#!/bin/sh
# Writes a help2man include file with a COMMANDS section: `station COMMAND --help` of every
# command `station --help` lists (drivers add commands), so station(1) carries each
# command's own options, from the program itself.   Usage: commands-h2m.sh STATION > FILE
set -eu
st=$1
echo "[COMMANDS]"
printf '%s\n' "Each command's own help (\\fBstation COMMAND \\-\\-help\\fR):"
"$st" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z]*\( [a-z][a-z]*\)\{0,1\}\)\( [A-Z].*\|  .*\)$/\1/p' |
while read -r c; do
  echo ".SS \"station $c\""
  echo ".nf"
  # shellcheck disable=SC2086
  "$st" $c --help | sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/' -e 's/-/\\-/g'
  echo ".fi"
done
