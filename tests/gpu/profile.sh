#!/usr/bin/env bash
# tests/gpu/profile.sh — Nsight Compute over the three kernels that set issue 10's figures, on
# the Qwen3-8B-shaped synthetic models (runs ON the GPU machine, after run.sh's synth step):
#
#   BIN=path/to/sparkd OUT=dir [MODELS=/tmp/sparkd-models] tests/gpu/profile.sh
#
#   decode   gemv_kernel at batch 1 (one token's products of one layer + the output head), Q8_0 and Q4_K_M
#   prefill  gemm_kernel at 512 prompt tokens, Q8_0 and Q4_K_M
#   attn     attn_kernel / attn_combine_kernel decoding at 32K of context (Q4_K_M, KV f16), batch 1
# Sections: speed of light (DRAM and SM throughput), memory workload, scheduler (issue slots),
# warp states (stall reasons), occupancy, launch. `--clock-control none` (METHOD.md: leave the
# clocks alone). Graphs off (SPARKD_NO_GRAPHS=1) so each kernel is its own launch.
set -uo pipefail
BIN=${BIN:-build/sparkd}
OUT=${OUT:-build/profile-out}
M=${MODELS:-/tmp/sparkd-models}
mkdir -p "$OUT"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
SEC="--section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section Occupancy --section LaunchStats"
export SPARKD_NO_GRAPHS=1
prof() { # name, kernel regex, skip, count, sparkd args...
    local name=$1 k=$2 skip=$3 count=$4; shift 4
    echo "=== $name" >&2
    timeout 240 "$NCU" --clock-control none -k "regex:$k" --launch-skip "$skip" --launch-count "$count" $SEC \
        "$BIN" "$@" >"$OUT/prof-$name.txt" 2>&1
    echo "rc=$? $(grep -c "^  void" "$OUT/prof-$name.txt") kernels" >&2
}
for w in q8_0 q4_k_m; do
    # 2 layers x 4 products + the output head = 9 GEMVs a token; skip the prompt and 2 tokens
    prof decode-$w '^gemv_kernel' 40 9 bench -m "$M/q8b-$w.gguf" --device cuda --kv f16 -p 8 -n 12 -r 1
    prof prefill-$w '^gemm_kernel' 0 5 bench -m "$M/q8b-$w.gguf" --device cuda --kv f16 -p 512 -n 1 -r 1
done
prof attn32k '^attn_' 8 4 bench -m "$M/q8b-q4_k_m.gguf" --device cuda --kv f16 --depth 32768 --npl 1 -n 8 -r 1
