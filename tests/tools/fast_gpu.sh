#!/usr/bin/env bash
# fast_gpu.sh — the GPU check of precision fast's per-kind int8 policy (kernels/engine.cu
# fast_int8_kinds; kernels/PERF.md "Round 5, helper fastacc"). Run on the device machine after
# tests/gpu/gemma_gpu.sh has assembled the default model ($M/g.gguf), unpacked the CUDA build
# of this branch ($M/bin/sparkd, $M/build/tests/tool_logits) and installed the gguf wheel
# (/tmp/site), in the repository root:
#   M=/root/m OUT=/tmp/out bash tests/tools/fast_gpu.sh
# Writes $OUT/fa-*.txt and $OUT/fa-summary.txt (one line per step: name, rc, seconds, and the
# lines that say whether it passed). What success looks like is in the comment of each step.
M=${M:-/root/m}; R=$PWD; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
B=${B:-$M/bin/sparkd}; PY=${PY:-python3}; G=$M/g.gguf
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1
step() { local n=$1 t=$2; shift 2; local t0=$(date +%s); timeout $t "$@" > $OUT/fa-$n.txt 2>&1; local rc=$?
  echo "$n rc=$rc $(( $(date +%s) - t0 )) s: $(grep -c '^ok' $OUT/fa-$n.txt) ok, $(grep -c '^not ok' $OUT/fa-$n.txt) not ok" | tee -a $OUT/fa-summary.txt; }
rel() { grep -o 'prompt [0-9]* tokens: rel L2 [0-9.e+-]*' $OUT/fa-$1.txt | sed 's/ tokens: rel L2//' | tr '\n' ' ' | sed "s/^/    $1 rel L2 by prompt length: /" | tee -a $OUT/fa-summary.txt; echo | tee -a $OUT/fa-summary.txt; }

# 1. gemma at fast with the new default (auto: dim 640 < 2048, no int8): the stderr line says
#    "int8 inputs for no product"; 12 ok, 0 not ok; rel L2 as at exact (~1e-4 or less).
step auto 120 env SPARKD_MM_FAST=1 SPARKD_LOAD_STATS=1 $B selftest --model-only -m $G; rel auto
# 2. round 4's fast (SPARKD_FAST_ALL=1): expected to fail as in round 4 (rel L2 ~5.2e-2 at
#    1 token; emulation 5.2e-2 3.5e-2 5.2e-3 2.5e-2 for prompts of 1/7/67/300).
step all 120 env SPARKD_MM_FAST=1 SPARKD_FAST_ALL=1 $B selftest --model-only -m $G; rel all
# 3. the emulation against the GPU, one int8 kind at a time (tests/tools/fast_sim.py
#    predictions for prompts 1/7/67/300; single roundings make them noisy, ~2x):
#    head 2.7e-3 1.0e-2 3.0e-3 3.2e-3 | o 1.8e-3 2.3e-2 8.9e-3 2.5e-3 | down 6.1e-3 2.9e-2 8.3e-3 7.9e-3
#    | qkv 3.1e-2 1.2e-2 1.3e-2 7.7e-3. Pass/fail lines do not matter here, the numbers do.
for k in head o down qkv; do step only-$k 120 env SPARKD_MM_FAST=1 SPARKD_FAST_INT8=$k $B selftest --model-only -m $G; rel only-$k; done
# 4. the goldens at fast (auto): same result as at exact, 0 not ok (greedy ids equal HF's in all
#    12 gemma cases, logits within 0.02).
step golden 200 env SPARKD_MM_FAST=1 SPARKD_DEVICE=cuda SPARKD_GOLDEN_ONLY=gemma3-270m \
  SPARKD_BIN=$B SPARKD_BUILD=$M/build SPARKD_ROOT=$R SPARKD_MODEL=$G SPARKD_PY=$PY $PY $R/tests/golden/test_golden.py
# 5. the speed model is untouched: a 2-layer synthetic Qwen3-8B (dim 4096) keeps every kind on
#    int8 ("int8 inputs for qkv o ffn down head"), rel L2 6e-3-8e-3 as in round 4.
[ -s $M/q8b-L2-q4_k_m.gguf ] || $PY $R/tests/golden/make_synth.py --out $M/q8b-L2-q4_k_m.gguf --preset qwen3-8b --layers 2 \
  --wtype q4_k_m --period 2 --jobs 8 > $OUT/fa-synth.txt 2>&1
step q8b 120 env SPARKD_MM_FAST=1 SPARKD_LOAD_STATS=1 $B selftest --model-only -m $M/q8b-L2-q4_k_m.gguf; rel q8b
grep -h "precision fast:" $OUT/fa-auto.txt $OUT/fa-q8b.txt | sed 's/^/    /' | tee -a $OUT/fa-summary.txt
# 6. gemma speed, information: exact vs fast (auto: expected equal to exact) vs round 4's fast.
step bench-exact 60 $B bench -m $G --device cuda -p 512 -n 128 -r 2 --precision exact
step bench-fast 60 $B bench -m $G --device cuda -p 512 -n 128 -r 2 --precision fast
step bench-fast-all 60 env SPARKD_FAST_ALL=1 $B bench -m $G --device cuda -p 512 -n 128 -r 2 --precision fast
for n in bench-exact bench-fast bench-fast-all; do echo "    $n: $(grep -E '^(pp|tg)' $OUT/fa-$n.txt | tr -s ' ' | tr '\n' ';')" | tee -a $OUT/fa-summary.txt; done
