#!/usr/bin/env bash
# fuzz.sh — builds every libFuzzer target in tests/fuzz/ with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for N seconds from its
# committed seed corpus (tests/fuzz/corpus/NAME, copied: the committed one
# stays small). A target names the sources it links and the libraries it
# needs on lines of their own, as unit tests do:
#     /* deps: core/scan.c core/pool.c */
#     /* libs: -lyaml */
# Exit status: 0 when every target ran clean, 1 on a finding (the crashing
# input is kept in tests/fuzz/out/artifacts/ and printed), 2 on a build error.
#   tools/fuzz.sh [SECONDS] [TARGET...]      (SECONDS default 30, or $FUZZ_SECONDS)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-${FUZZ_SECONDS:-30}}
[ $# -gt 0 ] && shift
OUT=${FUZZ_BUILD:-tests/fuzz/out}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC is missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p "$OUT/artifacts"

if [ $# -gt 0 ]; then targets=("$@"); else
    targets=(); for f in tests/fuzz/fuzz_*.c; do n=${f##*/}; targets+=("${n%.c}"); done
fi
CFLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -std=c11 -D_GNU_SOURCE -I. $(pkg-config --cflags libevent 2>/dev/null))

build() {
    local t=$1 src=tests/fuzz/$1.c deps libs
    deps=$(sed -n 's|^/\* deps: \(.*\) \*/$|\1|p' "$src")
    libs=$(sed -n 's|^/\* libs: \(.*\) \*/$|\1|p' "$src")
    # shellcheck disable=SC2086
    "$CC" "${CFLAGS[@]}" "$src" $deps -o "$OUT/$t" $libs
}

rc=0
for t in "${targets[@]}"; do
    name=${t#fuzz_}
    echo "== fuzz: $t (${SECS}s)"
    build "$t" || { echo "fuzz: $t does not build" >&2; exit 2; }
    work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-fuzz-$name.XXXXXX")
    seeds=tests/fuzz/corpus/$name
    [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
    set +e
    "$OUT/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$t-" "$work" >"$OUT/$t.log" 2>&1
    st=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$t.log")
    rm -rf "$work"
    if [ $st -ne 0 ]; then
        echo "fuzz: $t FOUND A PROBLEM (exit $st); log $OUT/$t.log:" >&2
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$OUT/$t.log" | head -20 >&2
        rc=1
    else
        echo "   $t: clean, ${runs:-?} executions"
    fi
done
exit $rc
