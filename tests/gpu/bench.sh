#!/usr/bin/env bash
# tests/gpu/bench.sh — issue 10's speed table: sparkd and llama.cpp side by side on one GPU in
# one call, with the ceilings measured in the same call. Runs ON the GPU machine:
#
#   BIN=path/to/sparkd PEER=llamacpp-cuda.tar.xz WHL=dir-with-gguf-wheel OUT=dir \
#       tests/gpu/bench.sh [steps]
#
# steps (default: all, in this order):
#   env      nvidia-smi; `sparkd device`: the read-bandwidth probe and the mma.sync peak
#            (m16n8k16 f16 -> f32, the instruction the prefill GEMM issues)
#   synth    synthetic models made HERE (never carried) by tests/golden/make_synth.py: tiny
#            ones and the 8B shape cut to 2 layers for the correctness step; then, in the
#            background while 'check' runs, the Qwen3-8B shape with LAYERS (default 36) layers
#            in Q8_0 and Q4_K_M with --period 2 (layer i repeats layer i % 2's weights: every
#            byte is still stored and read once per layer; seconds instead of minutes)
#   wait     joins that background generation
#   check    sparkd selftest (every kernel against its CPU reference) and the CUDA engine
#            against the CPU engine (selftest --model-only) on CHECK_MODELS
#   kbench   SPARKD_KBENCH=decode sparkd selftest --bench: each decode product's GEMV time,
#            GB/s and share of the probe, over the K splits
#   mmq      (not in the default list) the int8 tensor-core products of precision fast:
#            SPARKD_KBENCH=prefill (f16 exact / f16 fast / int8 mmq per Qwen3-8B product),
#            SPARKD_MM_FAST=1 model checks, pp512 and 64 sequences with --precision fast,
#            SPARKD_MMQ=1 (int8) against SPARKD_MMQ=0 (one f16)
#   sparkd   sparkd bench on both models (KV f16, as llama.cpp's default cache), --precision
#            PREC (default fast): -p 512 -n 128 -r 3 (llama-bench's pp512 / tg128); --npl
#            1,8,32,64 -p 512 -n 128 (llama-batched-bench); --depth 32768 --npl 1,8 -n 128 on
#            Q4_K_M (decode at 32K of context, prefix shared); beside them pp512 / tg128 / 64
#            sequences at --precision exact and the decode step without PDL (SPARKD_NO_PDL=1)
#   peer     llama.cpp (the CUDA peer of tests/gpu/build_llamacpp_cuda.sh, unpacked here; its
#            libcudart/libcublas come from this machine's CUDA toolkit): llama-bench -p 512
#            -n 128 -fa 1 -ngl 99; llama-batched-bench -npp 512 -ntg 128 -npl 1,8,32,64;
#            llama-bench -p 0 -n 128 -d 32768 and llama-batched-bench -npp 32768 -ntg 128
#            -npl 8 -pps -kvu on Q4_K_M
#   serve    tests/gpu/serve_latency.py on the Q8_0 model: TTFT and ITL (p50/p99, 64 streams)
#            through nginx (TLS) -> FastCGI -> scheduler -> GPU against sparkd bench's own figures
#            (NGX=dir with bin/nginx, bin/openssl, lib/ and fastcgi_params where the machine has no nginx)
#   MODE=decode: the sparkd and peer steps time only batch-1 decode and the --depth runs
#   table    tests/gpu/bench_table.py: one table, sparkd | llama.cpp | ceiling | ratios, with
#            bytes per token and FLOPs per token counted from the model files
# Each step appends to $OUT/<step>.txt; the table is printed last ($OUT/table.md).
set -uo pipefail
BIN=${BIN:-build/sparkd}
OUT=${OUT:-build/bench-out}
mkdir -p "$OUT"
STEPS=${*:-env synth check wait sparkd peer table kbench}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
M=${MODELS:-/tmp/sparkd-bench}
PY=${PY:-python3}
LAYERS=${LAYERS:-36}
JOBS=${JOBS:-$(nproc)}
KV=${KV:-f16}
export PREC=${PREC:-fast} # the sparkd step's --precision (fast: int8 activations, the speed mode; exact rows are printed beside)
DEPTH=${DEPTH:-32768}
mkdir -p "$M"
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
declare -A RES
fails=0
step() { # name, timeout, command...
    local name=$1 t=$2; shift 2
    local t0=$SECONDS
    echo "=== $name ($(date +%T))" >&2
    timeout "$t" "$@" >>"$OUT/$name.txt" 2>&1
    local rc=$?
    RES[$name]="rc=$rc $((SECONDS - t0))s"
    [ $rc = 0 ] || fails=$((fails + 1))
    tail -n 4 "$OUT/$name.txt" >&2
}
synth() { # out args...
    local out=$1; shift
    [ -s "$out" ] || $PY "$ROOT/tests/golden/make_synth.py" --out "$out" "$@" | tail -n 2
}
Q8=$M/q8b-L$LAYERS-q8_0.gguf
Q4=$M/q8b-L$LAYERS-q4_k_m.gguf
CHECK_MODELS=${CHECK_MODELS:-"$M/tiny-q4_k_m.gguf $M/tiny-q6_k.gguf $M/tiny-f16.gguf $M/tiny-q5_1.gguf $M/tiny-mxfp4.gguf $M/llama-yarn.gguf $M/qwen2-tiny.gguf $M/q8b-L2-q8_0.gguf $M/q8b-L2-q4_k_m.gguf"}
for s in $STEPS; do
    case $s in
    env) step env 60 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv; '$BIN' device" ;;
    synth) step synth ${T_SYNTH:-120} bash -c "
        set -e
        if [ -n '${WHL:-}' ]; then $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHL:-.}/*.whl; fi
        $(declare -f synth); PY=$PY; ROOT=$ROOT
        for w in q4_k_m q8_0 q6_k f16 q5_1 mxfp4; do synth $M/tiny-\$w.gguf --preset tiny --wtype \$w & done
        synth $M/llama-yarn.gguf --preset llama-tiny --rope-scaling yarn &
        synth $M/qwen2-tiny.gguf --preset qwen2-tiny &
        wait
        synth $M/q8b-L2-q8_0.gguf --preset qwen3-8b --layers 2 --wtype q8_0 --period 2 --jobs $JOBS &
        synth $M/q8b-L2-q4_k_m.gguf --preset qwen3-8b --layers 2 --wtype q4_k_m --period 2 --jobs $JOBS &
        wait"
        # the full-depth models are made while the correctness step runs (step 'wait' joins)
        ( synth $Q8 --preset qwen3-8b --layers $LAYERS --wtype q8_0 --period 2 --jobs $JOBS &
          synth $Q4 --preset qwen3-8b --layers $LAYERS --wtype q4_k_m --period 2 --jobs $JOBS & wait
          ls -la $M; df -h $M | tail -n 1 ) >>"$OUT/synth.txt" 2>&1 &
        BIG=$! ;;
    wait) t0=$SECONDS; wait ${BIG:-0}; RES[wait]="rc=$? $((SECONDS - t0))s"; tail -n 4 "$OUT/synth.txt" >&2
        $PY "$HERE/bench_table.py" "$OUT" "$Q8" "$Q4" "$KV" "$DEPTH" --counts ;;
    check) step check ${T_CHECK:-400} bash -c "
        f=0
        '$BIN' selftest ${SELFTEST_ARGS:-} || f=\$((f + 1))
        for g in $CHECK_MODELS; do echo \"== \$g\"; '$BIN' selftest --model-only -m \$g || f=\$((f + 1)); done
        [ '${CHECK_EXTRA:-1}' = 0 ] && exit \$f
        '$BIN' selftest --model-only -m $M/tiny-q4_k_m.gguf --kv f16 || f=\$((f + 1))
        SPARKD_NO_PDL=1 SPARKD_NO_PAIR=1 '$BIN' selftest --model-only -m $M/q8b-L2-q4_k_m.gguf || f=\$((f + 1))
        # the int8 (dp4a) decode GEMV forced (precision fast's GEMV): its own logits bound 5e-2
        for g in q8b-L2-q8_0 q8b-L2-q4_k_m tiny-q6_k; do SPARKD_GEMV_DP4A=1 '$BIN' selftest --model-only -m $M/\$g.gguf || f=\$((f + 1)); done
        echo '== information only: single-f16 activations in the tensor-core products (SPARKD_MM_FAST=1)'
        SPARKD_MM_FAST=1 '$BIN' selftest --model-only -m $M/q8b-L2-q4_k_m.gguf | sed 's/^not ok/(fast) not ok/; s/^ok/(fast) ok/'
        exit \$f" ;;
    kbench) step kbench ${T_KBENCH:-150} env SPARKD_KBENCH=decode "$BIN" selftest --bench ;;
    mmq) step mmq ${T_MMQ:-550} bash -c "
        f=0
        SPARKD_KBENCH=prefill '$BIN' selftest --bench || f=\$((f + 1))
        for g in q8b-L2-q8_0 q8b-L2-q4_k_m tiny-q6_k tiny-q4_k_m; do
            echo \"== SPARKD_MM_FAST=1 \$g\"; SPARKD_MM_FAST=1 '$BIN' selftest --model-only -m $M/\$g.gguf || f=\$((f + 1)); done
        for g in $Q8 $Q4; do for v in 1 0; do
            echo \"== \$g --precision fast SPARKD_MMQ=\$v\"
            SPARKD_MMQ=\$v '$BIN' bench -m \$g --device cuda --kv $KV --precision fast -p 512 -n 128 -r 3 2>&1 | tail -n 3
            SPARKD_MMQ=\$v '$BIN' bench -m \$g --device cuda --kv $KV --precision fast -p 512 -n 128 --npl 1,64 -b 2048 2>&1 | tail -n 2
        done; done
        exit \$f" ;;
    sparkd) if [ "${MODE:-full}" = decode ]; then step sparkd ${T_SPARKD:-400} bash -c "
        for g in $Q8 $Q4; do echo \"== \$g\"; '$BIN' bench -m \$g --device cuda --kv $KV --precision $PREC -p 8 -n 128 -r 2 2>&1 | tail -n 3; done
        for g in $Q8 $Q4; do echo \"== \$g SPARKD_GEMV_DP4A=1\"; SPARKD_GEMV_DP4A=1 '$BIN' bench -m \$g --device cuda --kv $KV -p 8 -n 128 -r 2 2>&1 | tail -n 3; done
        echo \"== $Q4 depth\"
        '$BIN' bench -m $Q4 --device cuda --kv $KV --precision $PREC -n 128 --depth $DEPTH --npl 1,8 2>&1 | tail -n 3"
        else step sparkd ${T_SPARKD:-400} bash -c "
        for g in $Q8 $Q4; do
            echo \"== \$g\"
            '$BIN' bench -m \$g --device cuda --kv $KV --precision $PREC -p 512 -n 128 -r 3 2>&1 | tail -n 3
            '$BIN' bench -m \$g --device cuda --kv $KV --precision $PREC -p 512 -n 128 --npl 1,8,32,64 -b 2048 2>&1 | tail -n 5
        done
        echo \"== $Q4 depth\"
        '$BIN' bench -m $Q4 --device cuda --kv $KV --precision $PREC -n 128 --depth $DEPTH --npl 1,8 2>&1 | tail -n 3
        for g in $Q8 $Q4; do echo \"== \$g precision exact\"
            '$BIN' bench -m \$g --device cuda --kv $KV --precision exact -p 512 -n 128 -r 2 2>&1 | tail -n 2
            '$BIN' bench -m \$g --device cuda --kv $KV --precision exact -p 512 -n 128 --npl 64 -b 2048 2>&1 | tail -n 1; done
        echo \"== $Q8 SPARKD_NO_PDL=1\"
        SPARKD_NO_PDL=1 '$BIN' bench -m $Q8 --device cuda --kv $KV --precision $PREC -p 8 -n 128 -r 2 2>&1 | tail -n 1"; fi ;;
    peer) step peer ${T_PEER:-400} bash -c "
        set -e
        P=/tmp/peer; mkdir -p \$P
        [ -x \$P/cuda-bin/llama-bench ] || tar -xJf '${PEER:-llamacpp-cuda.tar.xz}' -C \$P
        CU=\$(dirname \$(dirname \$(readlink -f \$(command -v nvcc || echo /usr/local/cuda/bin/nvcc))))
        export LD_LIBRARY_PATH=\$CU/lib64:\$CU/targets/x86_64-linux/lib:/usr/local/cuda/lib64:\${LD_LIBRARY_PATH:-}
        if [ '${MODE:-full}' = decode ]; then
            for g in $Q8 $Q4; do echo \"== \$g\"; \$P/cuda-bin/llama-bench -m \$g -p 0 -n 128 -fa 1 -ngl 99 -r 2 -o jsonl; done
        else
        for g in $Q8 $Q4; do
            echo \"== \$g\"
            \$P/cuda-bin/llama-bench -m \$g -p 512 -n 128 -fa 1 -ngl 99 -r 2 -o jsonl 2>/dev/null
            \$P/cuda-bin/llama-batched-bench -m \$g -c 41984 -b 2048 -ub 512 -npp 512 -ntg 128 -npl 1,8,32,64 -ngl 99 -fa on --output-format jsonl
        done
        fi
        echo \"== $Q4 depth\"
        \$P/cuda-bin/llama-bench -m $Q4 -p 0 -n 128 -d $DEPTH -fa 1 -ngl 99 -r 1 -o jsonl
        \$P/cuda-bin/llama-batched-bench -m $Q4 -c $((DEPTH + 8 * 128 + 256)) -b 2048 -ub 512 -npp $DEPTH -ntg 128 -npl 8 -pps -kvu -ngl 99 -fa on --output-format jsonl" ;;
    serve) step serve ${T_SERVE:-300} env SPARKD_BIN="$BIN" SPARKD_MODEL=$Q8 PATH="${NGX:+$NGX/bin:}$PATH" \
        LD_LIBRARY_PATH="${NGX:+$NGX/lib:}${LD_LIBRARY_PATH:-}" ${NGX:+SPARKD_NGINX=$NGX/bin/nginx SPARKD_NGINX_PARAMS=$NGX/fastcgi_params} \
        $PY "$HERE/serve_latency.py" ;;
    table) t0=$SECONDS; $PY "$HERE/bench_table.py" "$OUT" "$Q8" "$Q4" "$KV" "$DEPTH" >/dev/null; RES[table]="rc=$? $((SECONDS - t0))s" ;;
    *) echo "unknown step $s" >&2; fails=$((fails + 1)) ;;
    esac
done
echo
echo "| step | result | checks |"
echo "|---|---|---|"
for s in $STEPS; do
    f="$OUT/$s.txt"
    [ -f "$f" ] || f=/dev/null
    checks=$(grep -aE '^[0-9]+ checks, [0-9]+ failed' "$f" 2>/dev/null | tail -n 1)
    [ -z "$checks" ] && checks="$(grep -ac '^ok - ' "$f" 2>/dev/null) ok, $(grep -ac '^not ok - ' "$f" 2>/dev/null) not ok"
    echo "| $s | ${RES[$s]:-not run} | $checks |"
done
grep -ah '^not ok\|FAIL' "$OUT"/check.txt 2>/dev/null | head -n 30
[ -f "$OUT/table.md" ] && cat "$OUT/table.md"
exit $((fails > 0))
