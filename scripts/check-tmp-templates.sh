#!/bin/bash
# Fails on a hard-coded /tmp scratch name in the tree's C, shell and CMake files: tests and
# benchmarks take theirs from $TMPDIR, C through st_test_tmpl (station/core/testutil.h),
# shell through `mktemp -d` / `mktemp -t` (which honour TMPDIR). A line that must keep /tmp
# says why and carries the marker tmp-ok (on it or on the line above).
# Usage: check-tmp-templates.sh SOURCE_DIR (ctest check_tmp_templates), or
#        check-tmp-templates.sh --self-test (ctest check_tmp_templates_self: it must catch a
#        planted template in C and in shell, and let a tmp-ok line pass).
set -u
if [ "${1:-}" = --self-test ]; then
    t=$(mktemp -d) || exit 1
    trap 'rm -rf "$t"' EXIT
    T=/tm; T=$T'p'
    printf 'char d[] = "%s/x-XXXXXX";\n' "$T" > "$t/bad.c"
    printf 'd=$(mktemp -d %s/y-XXXXXX)\n' "$T" > "$t/bad.sh"
    printf '/* tmp-ok: a reason */\nchar d[] = "%s/z-XXXXXX";\n' "$T" > "$t/ok.c"
    out=$("$0" "$t"); rc=$?
    echo "$out"
    [ $rc -eq 1 ] || { echo "FAIL: exit $rc on planted templates, want 1"; exit 1; }
    for f in bad.c bad.sh; do
        grep -q "$f:" <<<"$out" || { echo "FAIL: $f not reported"; exit 1; }
    done
    ! grep -q "ok.c:" <<<"$out" || { echo "FAIL: the tmp-ok line was reported"; exit 1; }
    echo "self-test passed"
    exit 0
fi
src=${1:?usage: check-tmp-templates.sh SOURCE_DIR}
# A C string naming a path in the system tmp directory, or a mkdtemp/mktemp template there.
# (The character classes keep this line from matching itself.)
pat='"/tm[p]/|/tm[p]/[^ "]*XXX'
hits=$(grep -rnE -B1 --include='*.c' --include='*.sh' --include='*.cmake' \
           --include='CMakeLists.txt' --exclude-dir='build*' --exclude-dir=.git "$pat" "$src" |
       awk -v pat="$pat" '
           /^--$/ { prev = ""; next }
           { line = $0; sub(/^[^:-]*[-:][0-9]+[-:]/, "", line) }
           $0 ~ pat && match($0, /^[^:]*:[0-9]+:/) {
               if (line !~ /tmp-ok/ && prev !~ /tmp-ok/) print
           }
           { prev = line }')
if [ -n "$hits" ]; then
    echo "hard-coded /tmp scratch names (use st_test_tmpl or mktemp -d, or mark tmp-ok with a reason):"
    echo "$hits"
    exit 1
fi
echo "no hard-coded /tmp scratch names"
