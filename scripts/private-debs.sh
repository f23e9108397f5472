#!/usr/bin/env bash
# Fetches Debian packages into a private directory and unpacks them there, without touching
# the system's apt sources, apt state or dpkg database: a separate apt state/cache/sources
# directory per NAME, `apt-get download`, `dpkg -x` into NAME/root. Idempotent and cached:
# a second run with the same arguments does nothing (the stamp holds the arguments and the
# list of .debs). Used for libgpiod 2 (Debian 13), trixie's qemu-user and the arm64/armhf
# sysroots of the cross builds.
#
#   private-debs.sh NAME SUITE ARCHS PKG[:ARCH]...
#     NAME   directory under $STATION_DEPS (default /var/cache/station-deps)
#     SUITE  bookworm | trixie (Debian's archive at $STATION_DEB_MIRROR, default deb.debian.org)
#     ARCHS  comma-separated architectures apt may list (the host's first: amd64,arm64)
# Prints the unpacked root (NAME/root) on stdout, progress on stderr.
# PRIVATE_DEBS_ONLY="./usr/bin/a ./usr/bin/b": unpack only these members (a big package).
# PRIVATE_DEBS_RECURSE=ARCH: also every ARCH package the given ones depend on, recursively
# (a sysroot must hold what the libraries themselves link: libpq5 -> Kerberos, LDAP, ...).
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 NAME SUITE ARCHS PKG..." >&2; exit 2; }
name=$1 suite=$2 archs=$3; shift 3
base=${STATION_DEPS:-/var/cache/station-deps}/$name
mirror=${STATION_DEB_MIRROR:-http://deb.debian.org/debian}
root=$base/root
mkdir -p "$base"
# One fetch at a time per NAME (several worktrees' CI runs share the cache).
exec 9>"$base.lock"
flock 9
want="fmt2 $suite $archs $* $mirror ${PRIVATE_DEBS_ONLY:-} ${PRIVATE_DEBS_RECURSE:-}"
if [ -f "$base/stamp" ] && [ "$(head -1 "$base/stamp")" = "$want" ] && [ -d "$root" ]; then
  echo "$root"
  exit 0
fi
mkdir -p "$base/apt/state/lists/partial" "$base/apt/cache/archives/partial" "$base/apt/etc/preferences.d" \
         "$base/debs"
# trixie's Release is signed by the 13/trixie keys, which Debian 12's debian-archive-keyring
# already ships (/usr/share/keyrings/debian-archive-trixie-*.gpg).
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
  > "$base/apt/sources.list"
# The system's apt.conf.d still applies (proxies); everything that says what exists is ours.
opts=(-o "Dir::State=$base/apt/state" -o "Dir::State::status=/dev/null"
      -o "Dir::Cache=$base/apt/cache" -o "Dir::Etc::SourceList=$base/apt/sources.list"
      -o "Dir::Etc::SourceParts=/dev/null" -o "Dir::Etc::Preferences=/dev/null"
      -o "Dir::Etc::PreferencesParts=$base/apt/etc/preferences.d"
      -o "APT::Architecture=$(dpkg --print-architecture)" -o "APT::Architectures=$archs"
      -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1" -o "Acquire::Languages=none" -q)
echo "private-debs: $name: apt-get update ($suite, $archs)" >&2
apt-get "${opts[@]}" update >&2
rm -f "$base"/debs/*.deb
pkgs=("$@")
if [ -n "${PRIVATE_DEBS_RECURSE:-}" ]; then
  # Real packages only (virtual ones print as <name>) of that architecture (host tools the
  # -dev packages pull in, such as libc-dev-bin, are not needed), plus those asked for.
  mapfile -t pkgs < <({ printf '%s\n' "$@"
    apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances "$@" 2>/dev/null |
      grep -E "^[a-z0-9][^ ]*:${PRIVATE_DEBS_RECURSE}\$"; } | sort -u)
fi
echo "private-debs: $name: download ${pkgs[*]}" >&2
(cd "$base/debs" && apt-get "${opts[@]}" download "${pkgs[@]}" >&2)
rm -rf "$root.new"
mkdir -p "$root.new"
for d in "$base"/debs/*.deb; do
  if [ -n "${PRIVATE_DEBS_ONLY:-}" ]; then
    # shellcheck disable=SC2086
    dpkg-deb --fsys-tarfile "$d" | tar -x -C "$root.new" $PRIVATE_DEBS_ONLY
  else
    dpkg -x "$d" "$root.new"
  fi
done
# Make the tree usable as a sysroot: absolute symlinks (libz.so -> /lib/...) point into it
# rather than at the host's files, and a merged-/usr release gets lib -> usr/lib (its
# libc.so linker script names /lib/...).
find "$root.new" -type l -lname '/*' | while read -r l; do
  t=$(readlink "$l")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$root.new$t")" "$l"
done
[ -e "$root.new/lib" ] || ln -s usr/lib "$root.new/lib"
rm -rf "$root"
mv "$root.new" "$root"
{ echo "$want"; (cd "$base/debs" && ls); } > "$base/stamp"
echo "$root"
