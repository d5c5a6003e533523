#!/usr/bin/env bash
# tests/gpu/tp.sh — tensor parallelism on a machine with two GPUs, one call:
#
#   BIN=path/to/sparkd OUT=results/ WHL=dir-with-gguf-wheel [PEER=llamacpp-cuda.tar.xz|dir] tests/gpu/tp.sh [steps]
#
# steps (default: all): env synth local nccl serve peer
#   env     the GPUs, their links (nvidia-smi topo -m), the NCCL library found
#   synth   synthetic models made HERE (tests/golden/make_synth.py): tiny Qwen3 (Q8_0, F16),
#           tiny Qwen2 (q/k/v biases), the Qwen3-8B shape cut to LAYERS (default 4) layers;
#           mixture of experts (tests/golden/make_synth_moe.py): gpt-oss-tiny (MXFP4 experts
#           of 192: 96 per rank, padded to 128 on the device), qwen3moe-tiny-tp (Q4_K/Q6_K
#           experts of 512), qwen3moe-tiny (experts of 256), the gpt-oss-20b shape cut to MOE_LAYERS (default 4) layers
#           (32 experts of 2880 top-4: 1440 per rank, padded to 1472)
#   local   sparkd selftest --model-only --tp 2 on GPU 0 alone: both shards in one process,
#           partial sums added on the device, against the whole-model engine; MoE models
#           again with --moe-split experts (whole experts per rank; also qwen3moe-tiny,
#           whose 256-wide K-quant experts the columns split refuses)
#   nccl    rank 1 = `sparkd serve --tp 2 --tp-rank 1` on GPU 1, rank 0 = `sparkd selftest
#           --tp 2 --tp-addr` on GPU 0: TP=2 over NCCL against TP=1 (logits, greedy ids,
#           batched = solo) and decode speed at 1 and 64 sequences, both in one process;
#           qwen3moe-tiny with --moe-split experts on both ranks
#   serve   tests/gpu/tp_serve.py: the front end on the pair, a missing peer at start, a
#           peer killed mid-stream (503, no hang)
#   peer    llama.cpp's llama-bench on the same models (Qwen3-8B shape, gpt-oss-20b shape):
#           one GPU (-sm none), -sm layer, -sm row. PEER: the llamacpp-cuda.tar.xz of
#           build/peer (unpacked to /tmp/peer, as tests/gpu/bench.sh does) or a directory
#           holding llama-bench
# NCCL_NVLS_ENABLE=0 for every process (NVLink multicast stays off). Each step writes
# $OUT/<step>.txt; a table is printed last.
set -uo pipefail
BIN=$(readlink -f "${BIN:-build/sparkd}")
OUT=${OUT:-build/gpu-tp}
mkdir -p "$OUT"
STEPS=${*:-env synth local nccl serve peer}
HERE=$(cd "$(dirname "$0")" && pwd)
M=${MODELS:-/tmp/sparkd-tp-models}
PY=${PY:-python3}
SYNTH=${SYNTH:-$HERE/../golden/make_synth.py}
SYNTH_MOE=${SYNTH_MOE:-$HERE/../golden/make_synth_moe.py}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# libnccl.so.2: the toolkit's, else the one PyTorch's nvidia-nccl wheel carries
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib $($PY -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null); do
    [ -e "$d/libnccl.so.2" ] && { export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; NCCL_DIR=$d; break; }
done
declare -A RES
fails=0
step() { # name, timeout, command...
    local name=$1 t=$2; shift 2
    local t0=$SECONDS
    echo "=== $name" >&2
    timeout -k 5 "$t" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    RES[$name]="rc=$rc $((SECONDS - t0))s"
    [ $rc = 0 ] || fails=$((fails + 1))
    tail -n 4 "$OUT/$name.txt" >&2
}
# rank 1 (GPU 1) in the background, rank 0's command in the foreground (GPU 0)
pair() { # model, port, rank-0 command...
    local model=$1 port=$2; shift 2
    CUDA_VISIBLE_DEVICES=1 "$BIN" serve -m "$model" --device cuda --tp 2 --tp-rank 1 --tp-addr 127.0.0.1:$port ${PEER_ARGS:-} \
        >"$OUT/rank1-$port.log" 2>&1 &
    local r1=$!
    CUDA_VISIBLE_DEVICES=0 "$@" --tp-addr 127.0.0.1:$port
    local rc=$?
    for _ in $(seq 50); do kill -0 $r1 2>/dev/null || break; sleep 0.2; done
    kill -9 $r1 2>/dev/null
    wait $r1
    local rc1=$?
    echo "# rank 1 exit $rc1:"; tail -n 3 "$OUT/rank1-$port.log"
    return $(( rc != 0 ? rc : rc1 ))
}
for s in $STEPS; do
    case $s in
    env) step env 60 bash -c "nvidia-smi -L; nvidia-smi topo -m; echo NCCL: ${NCCL_DIR:-none}; ls -la ${NCCL_DIR:-/nonexistent}/libnccl* 2>&1 | head -3; CUDA_VISIBLE_DEVICES=0 '$BIN' device" ;;
    synth) step synth ${T_SYNTH:-150} bash -c "
        set -e; mkdir -p $M
        if [ -n '${WHL:-}' ]; then $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHL:-.}/*.whl; fi
        export PYTHONPATH=/tmp/site:\${PYTHONPATH:-}
        $PY $SYNTH --out $M/tiny-q8_0.gguf --preset tiny --wtype q8_0 &
        $PY $SYNTH --out $M/tiny-f16.gguf --preset tiny --wtype f16 &
        $PY $SYNTH --out $M/qwen2-tiny.gguf --preset qwen2-tiny --wtype q8_0 &
        $PY $SYNTH --out $M/q8b-q8_0.gguf --preset qwen3-8b --layers ${LAYERS:-4} --wtype q8_0 &
        $PY $SYNTH_MOE --out $M/gpt-oss-tiny.gguf --preset gpt-oss-tiny &
        $PY $SYNTH_MOE --out $M/qwen3moe-tiny-tp.gguf --preset qwen3moe-tiny-tp &
        $PY $SYNTH_MOE --out $M/qwen3moe-tiny.gguf --preset qwen3moe-tiny &
        $PY $SYNTH_MOE --out $M/oss20b.gguf --preset gpt-oss-20b --layers ${MOE_LAYERS:-4} &
        wait; ls -la $M" ;;
    local) step local ${T_LOCAL:-300} bash -c "
        f=0
        for g in $M/tiny-q8_0.gguf $M/tiny-f16.gguf $M/qwen2-tiny.gguf $M/q8b-q8_0.gguf \
                 $M/gpt-oss-tiny.gguf $M/qwen3moe-tiny-tp.gguf $M/oss20b.gguf; do
            CUDA_VISIBLE_DEVICES=0 '$BIN' selftest --model-only -m \$g --tp 2 || f=\$((f + 1)); done
        # moe_split = experts: whole experts per rank (qwen3moe-tiny: refused by columns)
        for g in $M/gpt-oss-tiny.gguf $M/qwen3moe-tiny-tp.gguf $M/qwen3moe-tiny.gguf $M/oss20b.gguf; do
            CUDA_VISIBLE_DEVICES=0 '$BIN' selftest --model-only -m \$g --tp 2 --moe-split experts || f=\$((f + 1)); done
        CUDA_VISIBLE_DEVICES=0 '$BIN' selftest --model-only -m $M/tiny-q8_0.gguf --tp 2 --kv q8 || f=\$((f + 1))
        exit \$f" ;;
    nccl) step nccl ${T_NCCL:-200} bash -c "
        f=0
        $(declare -f pair); BIN='$BIN'; OUT='$OUT'
        SPARKD_MODELCHECK_QUICK=1 pair $M/tiny-q8_0.gguf 29521 '$BIN' selftest --model-only -m $M/tiny-q8_0.gguf --tp 2 || f=\$((f + 1))
        pair $M/q8b-q8_0.gguf 29522 '$BIN' selftest --model-only -m $M/q8b-q8_0.gguf --tp 2 || f=\$((f + 1))
        SPARKD_MODELCHECK_QUICK=1 pair $M/gpt-oss-tiny.gguf 29523 '$BIN' selftest --model-only -m $M/gpt-oss-tiny.gguf --tp 2 || f=\$((f + 1))
        pair $M/oss20b.gguf 29524 '$BIN' selftest --model-only -m $M/oss20b.gguf --tp 2 || f=\$((f + 1))
        PEER_ARGS='--moe-split experts' SPARKD_MODELCHECK_QUICK=1 pair $M/qwen3moe-tiny.gguf 29525 '$BIN' selftest --model-only -m $M/qwen3moe-tiny.gguf --tp 2 --moe-split experts || f=\$((f + 1))
        exit \$f" ;;
    serve) step serve ${T_SERVE:-150} env SPARKD_BIN="$BIN" SPARKD_MODEL=$M/q8b-q8_0.gguf FCGI_CLIENT_DIR="${FCGI_CLIENT_DIR:-}" \
        $PY "$HERE/tp_serve.py" ;;
    peer) step peer ${T_PEER:-180} bash -c "
        [ -n '${PEER:-}' ] || { echo 'no PEER'; exit 1; }
        LB=${PEER:-.}/llama-bench
        if [ -f '${PEER:-}' ]; then
            mkdir -p /tmp/peer; [ -x /tmp/peer/cuda-bin/llama-bench ] || tar -xJf '${PEER:-}' -C /tmp/peer
            LB=/tmp/peer/cuda-bin/llama-bench
        fi
        CU=\$(dirname \$(dirname \$(readlink -f \$(command -v nvcc || echo /usr/local/cuda/bin/nvcc))))
        export LD_LIBRARY_PATH=\$CU/lib64:\$CU/targets/x86_64-linux/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:\${LD_LIBRARY_PATH:-}
        for g in $M/q8b-q8_0.gguf $M/oss20b.gguf; do
            for sm in none layer row; do
                echo \"== \$(basename \$g) -sm \$sm\"
                \$LB -m \$g -ngl 99 -sm \$sm -fa 1 -p 512 -n 128 -r 2 2>&1 | grep -E '^\\||error' | tail -n 3
            done
        done" ;;
    *) echo "unknown step $s" >&2; fails=$((fails + 1)) ;;
    esac
done
echo
grep -ah '^# tp2 decode speed\|^# tensor-parallel check' "$OUT/nccl.txt" 2>/dev/null
grep -aA4 '^== .* -sm' "$OUT/peer.txt" 2>/dev/null | grep -a 'pp512\|tg128\|==\|error' 
echo
echo "| step | result | ok | not ok |"
echo "|---|---|---|---|"
for s in $STEPS; do
    f="$OUT/$s.txt"
    echo "| $s | ${RES[$s]:-not run} | $(grep -ac '^ok - ' "$f" 2>/dev/null) | $(grep -ac '^not ok - ' "$f" 2>/dev/null) |"
done
grep -ah '^not ok' "$OUT"/*.txt | head -n 30
exit $((fails > 0))
