#!/usr/bin/env bash
# tests/gpu/moe.sh — issue 11's GPU proof in one device call: the MoE kernels against their
# CPU references, the MoE goldens on the GPU engine, the CUDA engine against the CPU engine
# on the MoE tiny files, then the speed table (tests/gpu/bench_moe.sh) while the real-shape
# files are generated in the background from the start.
#
#   BIN=sparkd SPARKD_BUILD=dir(with tests/tool_logits) WHL=dir PEER=dir OUT=dir tests/gpu/moe.sh
#
# Files under $OUT: gen.txt, env.txt, moeself.txt, moegolden.txt, moemodels.txt,
# bench_moe.txt (and moememcheck.txt with MOE_MEMCHECK=1). Tables printed last.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export BIN=${BIN:-build/sparkd} OUT=${OUT:-build/gpu-out} PY=${PY:-python3}
export WHL PEER SPARKD_BUILD
mkdir -p "$OUT"
t0=$SECONDS
bash "$ROOT/tests/gpu/bench_moe.sh" gen >"$OUT/gen.txt" 2>&1 &
STEPS="env moeself moegolden moemodels"
[ "${MOE_MEMCHECK:-0}" = 1 ] && STEPS="$STEPS moememcheck"
SPARKD_MOE_BENCH=${SPARKD_MOE_BENCH:-1} T_MOESELF=${T_MOESELF:-120} T_MOEGOLDEN=${T_MOEGOLDEN:-120} \
    T_MOEMODELS=${T_MOEMODELS:-90} bash "$ROOT/tests/gpu/run.sh" $STEPS >"$OUT/run.txt" 2>&1
echo "correctness steps done at $((SECONDS - t0)) s" >&2
timeout "${T_BENCH_MOE:-200}" bash "$ROOT/tests/gpu/bench_moe.sh" run >"$OUT/bench_moe.txt" 2>&1
echo "benches done at $((SECONDS - t0)) s" >&2
grep -ah '^# moe bench' "$OUT/moeself.txt" 2>/dev/null
grep -ah '^not ok' "$OUT"/*.txt | head -n 30
grep -ah 'checks, [0-9]* failed\|passed, [0-9]* failed\|^ok - moe mxf8f6f4' "$OUT"/*.txt | head
tail -n 12 "$OUT/run.txt"
grep -a -A8 '^| model (layers)' "$OUT/bench_moe.txt"
