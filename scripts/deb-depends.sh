#!/usr/bin/env bash
# The Depends line of a cross-built package, from the target's own packages (what
# dpkg-shlibdeps does from the dpkg database, which a private sysroot does not have): each
# shared library the binaries need (NEEDED) is looked up in the .debs the sysroot was
# unpacked from, and the package that ships it is required at least at that version; libc6
# at the highest GLIBC_x.y symbol version the binaries use.
#   deb-depends.sh OBJDUMP DEBS_DIR BINARY...     prints e.g. "libc6 (>= 2.34), libgpiod3 (>= 2.2.1), ..."
set -euo pipefail
objdump=$1 debs=$2; shift 2
needed=$("$objdump" -p "$@" | awk '$1 == "NEEDED" { print $2 }' | sort -u)
glibc=$("$objdump" -T "$@" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
out=("libc6 (>= ${glibc:-2.34})")
for so in $needed; do
  case $so in libc.so.*|ld-linux*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*) continue ;; esac
  deb=""
  for d in "$debs"/*.deb; do
    if dpkg-deb -c "$d" | awk '{ print ($(NF-1) == "->") ? $(NF-2) : $NF }' | grep -q "/$so\$"; then deb=$d; break; fi
  done
  [ -n "$deb" ] || { echo "deb-depends: no package in $debs ships $so" >&2; exit 1; }
  pkg=$(dpkg-deb -f "$deb" Package)
  ver=$(dpkg-deb -f "$deb" Version)
  ver=${ver%-*}      # upstream version (epoch kept)
  ver=${ver%%+*}
  ver=${ver%%~*}
  out+=("$pkg (>= $ver)")
done
(IFS=,; echo "${out[*]}" | sed 's/,/, /g')
