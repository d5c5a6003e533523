#!/usr/bin/env bash
# run_fuzz.sh NAME SECONDS — builds the libFuzzer target tests/fuzz/NAME.c
# (clang, ASan+UBSan) and runs it for SECONDS over a copy of its seed corpus
# tests/fuzz/corpus/<NAME without "fuzz_">/ (and tests/fuzz/<that>.dict if present).
# Exits non-zero on a finding; the crashing input is kept under build/fuzz-findings/.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 NAME SECONDS" >&2; exit 2; }
NAME=$1 SECS=$2
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SHORT=${NAME#fuzz_}
OUT=${FUZZ_OUT:-build}   # build dir, relative to the repository or absolute
BIN="$OUT/fuzz/$NAME"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
if [ -n "${FUZZ_CC_SRCS:-}" ]; then
    # Build from an explicit source list (when other appliance/*.c do not compile yet).
    mkdir -p "$(dirname "$BIN")"
    clang -std=c11 -D_GNU_SOURCE -O1 -g $(find appliance -type d -printf "-iquote %p ") -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -o "$BIN" "tests/fuzz/$NAME.c" $FUZZ_CC_SRCS -lm -pthread
else
    make -s OUT="$OUT" "$OUT/fuzz/$NAME"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sparkd-fuzz-$SHORT.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/corpus" "$WORK/artifacts"
if [ -d "tests/fuzz/corpus/$SHORT" ]; then cp -r "tests/fuzz/corpus/$SHORT/." "$WORK/corpus/"; fi
DICT=()
[ -f "tests/fuzz/$SHORT.dict" ] && DICT=(-dict="tests/fuzz/$SHORT.dict")
set +e
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
"$BIN" "$WORK/corpus" "${DICT[@]}" -max_total_time="$SECS" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$WORK/artifacts/" 2>"$WORK/log"
RC=$?
set -e
grep -E '^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb|Done)' "$WORK/log" || true
if [ "$RC" != 0 ] || [ -n "$(ls -A "$WORK/artifacts")" ]; then
    mkdir -p "$ROOT/build/fuzz-findings"
    cp "$WORK"/artifacts/* "$ROOT/build/fuzz-findings/" 2>/dev/null || true
    grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "$WORK/log" | head -n 40 || true
    echo "FINDING: $NAME exited $RC; inputs in build/fuzz-findings/"
    exit 1
fi
echo "ok - $NAME ran ${SECS}s with no finding"
