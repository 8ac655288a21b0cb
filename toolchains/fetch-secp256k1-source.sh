#!/usr/bin/env bash
# Fetches Debian's libsecp256k1 source package into DEST (a directory under a build
# directory, never the repository) with `apt-get source`, and prints the path of the
# unpacked source tree on stdout. Nothing from it is copied into the repository.
#
#   toolchains/fetch-secp256k1-source.sh <dest-dir> [suite]
#
# Suite: trixie by default (libsecp256k1 0.5.x). Why not bookworm's 0.2.0, which the host
# build links: 0.2.0's smallest signing table (ECMULT_GEN_PREC_BITS=2) is 32 KiB of flash,
# which alone breaks the 64 KiB firmware budget; 0.5 has a 2 KiB signing table
# (COMB_BLOCKS=2, COMB_TEETH=5). Both have the same API picopay uses (preallocated
# context, recoverable ECDSA).
#
# If no deb-src line for the suite is configured, adds one in
# /etc/apt/sources.list.d/picopay-deb-src.sources and runs `apt-get update` (needs root,
# as in CI). Idempotent: an already unpacked tree in DEST is reused.
set -euo pipefail
dest=${1:?usage: fetch-secp256k1-source.sh <dest-dir> [suite]}
suite=${2:-trixie}
pkg=libsecp256k1
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

existing=$(find "$dest" -maxdepth 1 -type d -name "${pkg}-*" | sort | tail -n 1)
if [ -n "$existing" ] && [ -f "$existing/src/secp256k1.c" ] && [ -f "$dest/.suite-$suite" ]; then
  echo "$existing"
  exit 0
fi

# A downloaded Sources index for the suite means a deb-src line is configured and updated.
have_src() { apt-get indextargets --format '$(IDENTIFIER) $(CODENAME)' 2>/dev/null | grep -qx "Sources $suite" ; }
if ! have_src; then
  list=/etc/apt/sources.list.d/picopay-deb-src.sources
  if [ "$(id -u)" != 0 ]; then
    echo "fetch-secp256k1-source: no deb-src for $suite and not root to add one ($list)" >&2
    exit 1
  fi
  if ! grep -qs "Suites:.*\b$suite\b" "$list"; then
    cat >> "$list" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

SRC
  fi
  apt-get update >&2
  have_src || { echo "fetch-secp256k1-source: $pkg/$suite still unknown to apt" >&2; exit 1; }
fi

# dpkg-source (dpkg-dev) unpacks the package; xz-utils for the tarballs.
command -v dpkg-source >/dev/null || { echo "fetch-secp256k1-source: dpkg-dev is not installed" >&2; exit 1; }
rm -rf "$dest"/${pkg}-* "$dest"/${pkg}_* "$dest"/.suite-*
( cd "$dest" && apt-get source -q "$pkg/$suite" >&2 ) 2> >(grep -v 'unsandboxed' >&2)
tree=$(find "$dest" -maxdepth 1 -type d -name "${pkg}-*" | sort | tail -n 1)
[ -f "$tree/src/secp256k1.c" ] || { echo "fetch-secp256k1-source: no source tree in $dest" >&2; exit 1; }
touch "$dest/.suite-$suite"
echo "$tree"
