#!/usr/bin/env bash
# tests/gpu/run.sh — the CUDA engine's proof, run ON the GPU machine (H100/H200), one call:
#
#   BIN=path/to/sparkd OUT=results/ tests/gpu/run.sh [steps]
#
# steps (default: all): env selftest bench memcheck racecheck
# Each step writes $OUT/<step>.txt; a short table is printed last. Exit status non-zero if
# any step failed. Nothing is downloaded: the binary (built where nvcc is, see
# tests/gpu/README.md) and everything else come with the call.
set -uo pipefail
BIN=${BIN:-build/sparkd}
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT"
STEPS=${*:-env selftest bench memcheck racecheck}
declare -A RES
fails=0
step() { # name, timeout, command...
    local name=$1 t=$2; shift 2
    local t0=$SECONDS
    echo "=== $name" >&2
    timeout "$t" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    RES[$name]="rc=$rc $((SECONDS - t0))s"
    [ $rc = 0 ] || fails=$((fails + 1))
    tail -n 3 "$OUT/$name.txt" >&2
}
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
for s in $STEPS; do
    case $s in
    env) step env 60 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; $BIN device" ;;
    selftest) step selftest ${T_SELFTEST:-180} "$BIN" selftest ;;
    bench) step bench ${T_BENCH:-120} "$BIN" selftest --bench ;;
    memcheck) step memcheck ${T_SAN:-120} "$SAN" --tool memcheck --leak-check no --error-exitcode 9 "$BIN" selftest --quick ;;
    racecheck) step racecheck ${T_SAN:-120} "$SAN" --tool racecheck --racecheck-report analysis --error-exitcode 9 "$BIN" selftest --quick ;;
    *) echo "unknown step $s" >&2; fails=$((fails + 1)) ;;
    esac
done
echo
echo "| step | result | checks |"
echo "|---|---|---|"
for s in $STEPS; do
    f="$OUT/$s.txt"
    checks=$(grep -aE '^[0-9]+ checks, [0-9]+ failed' "$f" 2>/dev/null | tail -n 1)
    san=$(grep -aE 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" 2>/dev/null | tail -n 1)
    echo "| $s | ${RES[$s]:-not run} | $checks $san |"
done
grep -ah '^not ok' "$OUT"/*.txt | head -n 40
exit $((fails > 0))
