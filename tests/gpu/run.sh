#!/usr/bin/env bash
# tests/gpu/run.sh — the CUDA engine's proof, run ON the GPU machine (H100/H200), one call:
#
#   BIN=path/to/sparkd OUT=results/ tests/gpu/run.sh [steps]
#
# steps (default: all): env selftest bench synth models memcheck racecheck serve perf
#   selftest   every kernel against its CPU reference (sparkd selftest)
#   synth      synthetic models made HERE by tests/golden/make_synth.py (needs the gguf
#              wheel: WHL=dir with gguf-0.19.0-py3-none-any.whl): every weight format on
#              the tiny Qwen3 shape, Llama with each RoPE scaling, Qwen2 (biases), and the
#              Qwen3-8B shape (LAYERS of its 36 layers, default 2) in Q8_0 and Q4_K_M
#   models     sparkd selftest --model-only on each: the CUDA engine against the CPU engine
#              (logits, 32 greedy tokens, sampled tokens, batched vs solo), KV f32 and the
#              other KV types on two of them
#   memcheck / racecheck   compute-sanitizer over the kernel selftest (--quick) and over a
#              model-level check
#   serve      tests/gpu/serve_gpu.py on the GPU engine (64 concurrent streams = solo,
#              disconnect, 429, drain)
#   tp         sparkd selftest --model-only --tp 2: the tensor-parallel sharding math on one
#              GPU (both shards in this process, partial sums added on the device) against
#              the whole-model engine; NCCL across two GPUs is tests/gpu/tp.sh
#   perf       sparkd bench on the Qwen3-8B-shaped models (and the llama.cpp peer if
#              PEER=dir with llama-bench)
#   moeself    the MoE kernels against their CPU references (SPARKD_SELFTEST_ONLY=moe;
#              with SPARKD_MOE_BENCH=1 also their speed at the real expert shapes)
#   moegolden  tests/golden/test_golden.py on the GPU engine for gpt-oss-tiny,
#              gpt-oss-tiny-yarn4k and qwen3moe-tiny (greedy ids equal HF transformers',
#              logits within 0.02; needs WHL for the generator; SPARKD_BUILD=dir holding
#              tests/tool_logits of the same build)
#   moemodels  sparkd selftest --model-only on the MoE tiny files (CUDA engine vs CPU engine,
#              batched vs solo), KV f32 and f16
#   moememcheck compute-sanitizer memcheck over the MoE kernel selftest and the gpt-oss-tiny
#              model check
# Each step writes $OUT/<step>.txt; a short table is printed last. Exit status non-zero if
# any step failed. Nothing is downloaded: the binary (built where nvcc is) and the wheel
# come with the call; models are generated here, never carried.
set -uo pipefail
BIN=${BIN:-build/sparkd}
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT"
STEPS=${*:-env selftest synth models tp serve memcheck racecheck perf}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
M=${MODELS:-/tmp/sparkd-models}
PY=${PY:-python3}
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
    selftest) step selftest ${T_SELFTEST:-180} "$BIN" selftest ${SELFTEST_ARGS:-} ;;
    bench) step bench ${T_BENCH:-120} "$BIN" selftest --bench ;;
    memcheck) step memcheck ${T_SAN:-150} bash -c "{ [ '${SAN_KERNELS:-1}' = 0 ] || '$SAN' --tool memcheck --leak-check no --error-exitcode 9 '$BIN' selftest --quick; } && SPARKD_MODELCHECK_QUICK=1 '$SAN' --tool memcheck --leak-check no --error-exitcode 9 '$BIN' selftest --model-only -m $M/tiny-q4_k_m.gguf --kv q8" ;;
    racecheck) step racecheck ${T_SAN:-150} bash -c "SPARKD_MODELCHECK_QUICK=1 '$SAN' --tool racecheck --racecheck-report analysis --error-exitcode 9 '$BIN' selftest --model-only -m $M/tiny-q8_0.gguf" ;;
    synth) step synth ${T_SYNTH:-240} bash -c "
        set -e; mkdir -p $M
        if [ -n '${WHL:-}' ]; then $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHL:-.}/*.whl; fi
        export PYTHONPATH=/tmp/site:\${PYTHONPATH:-}
        S=$ROOT/tests/golden/make_synth.py
        for w in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k mxfp4 q4_k_m; do $PY \$S --out $M/tiny-\$w.gguf --preset tiny --wtype \$w & done
        for r in none linear yarn llama3; do $PY \$S --out $M/llama-\$r.gguf --preset llama-tiny --rope-scaling \$r & done
        $PY \$S --out $M/qwen2-tiny.gguf --preset qwen2-tiny &
        $PY \$S --out $M/q8b-q8_0.gguf --preset qwen3-8b --layers ${LAYERS:-2} --wtype q8_0 &
        $PY \$S --out $M/q8b-q4_k_m.gguf --preset qwen3-8b --layers ${LAYERS:-2} --wtype q4_k_m &
        wait; ls -la $M" ;;
    models) step models ${T_MODELS:-300} bash -c "
        f=0
        if [ '${MODEL_SET:-all}' = quick ]; then list='$M/tiny-q4_k_m.gguf $M/tiny-bf16.gguf $M/llama-yarn.gguf'; kvs='q8 fp8'
        else list='$M/tiny-*.gguf $M/llama-*.gguf $M/qwen2-tiny.gguf $M/q8b-q8_0.gguf $M/q8b-q4_k_m.gguf'; kvs='f16 q8 bf16 fp8'; fi
        for g in \$list; do '$BIN' selftest --model-only -m \$g || f=\$((f + 1)); done
        for kv in \$kvs; do '$BIN' selftest --model-only -m $M/tiny-q4_k_m.gguf --kv \$kv || f=\$((f + 1)); done
        [ '${MODEL_SET:-all}' = quick ] || '$BIN' selftest --model-only -m $M/q8b-q4_k_m.gguf --kv f16 || f=\$((f + 1))
        exit \$f" ;;
    tp) step tp ${T_TP:-200} bash -c "
        f=0
        for g in $M/tiny-q8_0.gguf $M/tiny-f16.gguf $M/qwen2-tiny.gguf $M/q8b-q8_0.gguf; do
            '$BIN' selftest --model-only -m \$g --tp 2 || f=\$((f + 1)); done
        '$BIN' selftest --model-only -m $M/tiny-q8_0.gguf --tp 2 --kv q8 || f=\$((f + 1))
        exit \$f" ;;
    serve) step serve ${T_SERVE:-200} env SPARKD_BIN="$BIN" SPARKD_MODEL=$M/q8b-q4_k_m.gguf $PY "$ROOT/tests/gpu/serve_gpu.py" ;;
    perf) step perf ${T_PERF:-200} bash -c "
        for g in $M/q8b-q8_0.gguf $M/q8b-q4_k_m.gguf; do echo \"== \$g\"; '$BIN' bench -m \$g --device cuda -p 512 -n 128 -r 3 2>&1 | tail -n 6; done
        if [ -n '${PEER:-}' ]; then for g in $M/q8b-q8_0.gguf $M/q8b-q4_k_m.gguf; do LD_LIBRARY_PATH=/usr/local/cuda/lib64:\${LD_LIBRARY_PATH:-} ${PEER:-.}/llama-bench -m \$g -p 512 -n 128 -fa 1 -r 3 2>&1 | tail -n 5; done; fi" ;;
    moeself) step moeself ${T_MOESELF:-180} env SPARKD_SELFTEST_ONLY=moe "$BIN" selftest ${SELFTEST_ARGS:-} ;;
    moegolden) step moegolden ${T_MOEGOLDEN:-240} bash -c "
        if [ -n '${WHL:-}' ]; then $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHL:-.}/*.whl; fi
        export PYTHONPATH=/tmp/site:\${PYTHONPATH:-}
        SPARKD_DEVICE=cuda SPARKD_GOLDEN_ONLY=gpt-oss-tiny.json,gpt-oss-tiny-yarn4k.json,qwen3moe-tiny.json \
        SPARKD_BIN='$BIN' SPARKD_BUILD='${SPARKD_BUILD:-$ROOT/build}' SPARKD_ROOT='$ROOT' SPARKD_PY='$PY' \
        $PY '$ROOT/tests/golden/test_golden.py'" ;;
    moemodels) step moemodels ${T_MOEMODELS:-240} bash -c "
        f=0; G='${SPARKD_BUILD:-$ROOT/build}/golden'
        for g in \$G/gpt-oss-tiny.gguf \$G/qwen3moe-tiny.gguf; do '$BIN' selftest --model-only -m \$g || f=\$((f + 1)); done
        '$BIN' selftest --model-only -m \$G/gpt-oss-tiny.gguf --kv f16 || f=\$((f + 1))
        exit \$f" ;;
    moememcheck) step moememcheck ${T_SAN:-150} bash -c "SPARKD_SELFTEST_ONLY=moe '$SAN' --tool memcheck --leak-check no --error-exitcode 9 '$BIN' selftest --quick && SPARKD_MODELCHECK_QUICK=1 '$SAN' --tool memcheck --leak-check no --error-exitcode 9 '$BIN' selftest --model-only -m '${SPARKD_BUILD:-$ROOT/build}/golden/gpt-oss-tiny.gguf'" ;;
    *) echo "unknown step $s" >&2; fails=$((fails + 1)) ;;
    esac
done
echo
echo "| step | result | checks |"
echo "|---|---|---|"
for s in $STEPS; do
    f="$OUT/$s.txt"
    checks=$(grep -aE '^[0-9]+ checks, [0-9]+ failed' "$f" 2>/dev/null | tail -n 1)
    [ -z "$checks" ] && checks="$(grep -ac '^ok - ' "$f" 2>/dev/null) ok, $(grep -ac '^not ok - ' "$f" 2>/dev/null) not ok"
    san=$(grep -aE 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" 2>/dev/null | tail -n 1)
    echo "| $s | ${RES[$s]:-not run} | $checks $san |"
done
grep -ah '^not ok' "$OUT"/*.txt | head -n 40
exit $((fails > 0))
