#!/usr/bin/env bash
# run-unit.sh BIN... — runs each cmocka test binary in turn (their own output
# shows which cases failed) and ends with one summary line counting test cases:
#   unit: N passed, N failed
# Cases are read from cmocka's "[  PASSED  ] N test(s)" / "[  FAILED  ] N test(s)"
# lines; a binary that exits non-zero without saying why (a crash, a sanitizer
# report) counts as one failure. Exit status is 1 if anything failed.
set -uo pipefail

passed=0 failed=0 failures=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for bin in "$@"; do
    echo "== $bin"
    "$bin" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    # a binary may run several groups: their counts add up
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{n += $1} END {print n + 0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{n += $1} END {print n + 0}')
    passed=$((passed + ${p:-0}))
    if [ "$rc" -ne 0 ]; then
        failed=$((failed + (${f:-0} > 0 ? ${f:-0} : 1)))
        failures+=("$bin (exit $rc)")
    else
        failed=$((failed + ${f:-0}))
    fi
done
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
