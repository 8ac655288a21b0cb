#!/usr/bin/env bash
# scripts/test --help (and -h) prints its usage and exits 0 without setting up or
# building: the build dir it would use is not created, apt and cmake are not run.
# usage: test_help.sh SOURCE_DIR
set -euo pipefail
src=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/picopay-testhelp-XXXXXX")
trap 'rm -rf "$work"' EXIT
# PATH without cmake, apt-get or ctest: a run that tried to build would fail.
mkdir "$work/bin"
for t in bash env cat dirname sed grep head; do ln -s "$(command -v "$t")" "$work/bin/$t"; done
for flag in --help -h; do
  out=$(cd "$work" && env -i PATH="$work/bin" BUILD_DIR="$work/nobuild" "$src/scripts/test" "$flag") \
    || { echo "FAIL: scripts/test $flag exited non-zero" >&2; exit 1; }
  grep -q '^usage: scripts/test' <<<"$out" || { echo "FAIL: no usage line: $out" >&2; exit 1; }
  grep -q -- '-L core' <<<"$out" && grep -qw install <<<"$out" || { echo "FAIL: the labels are not listed: $out" >&2; exit 1; }
  [ ! -e "$work/nobuild" ] || { echo "FAIL: scripts/test $flag created the build dir" >&2; exit 1; }
done
echo "PASS"
