#!/bin/sh
# `picopay demo` with a bad number, an out-of-range value or an unknown option: exit 2 and
# exactly one line on stderr, nothing on stdout, nothing started (docs: README "picopay demo").
picopay="$1"
fail=0
for args in "--devices 5x" "--devices 0" "--rate 201" "--seconds -1" "--firmware 9" "--bogus" "--token --firmware 1"; do
  # shellcheck disable=SC2086
  "$picopay" demo $args >/tmp/picopay-demo-args.out.$$ 2>/tmp/picopay-demo-args.err.$$
  rc=$?
  lines=$(wc -l </tmp/picopay-demo-args.err.$$)
  if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || [ -s /tmp/picopay-demo-args.out.$$ ]; then
    echo "picopay demo $args: exit $rc, $lines stderr line(s), stdout: $(cat /tmp/picopay-demo-args.out.$$)"
    cat /tmp/picopay-demo-args.err.$$
    fail=1
  fi
done
rm -f /tmp/picopay-demo-args.out.$$ /tmp/picopay-demo-args.err.$$
exit $fail
