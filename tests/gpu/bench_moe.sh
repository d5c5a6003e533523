#!/usr/bin/env bash
# tests/gpu/bench_moe.sh — MoE speed ON the GPU machine: sparkd and the llama.cpp CUDA peer on
# the same synthetic files with the real shapes (tests/golden/make_synth_moe.py: gpt-oss-20b,
# gpt-oss-120b with MXFP4 experts and the rest as the published GGUFs store it, Qwen3-30B-A3B
# as Q4_K_M), cut to fewer layers so the files fit the machine's disk and the call's minutes.
#
#   BIN=sparkd PEER=dir WHL=dir OUT=dir tests/gpu/bench_moe.sh gen     (models, in the background)
#   BIN=sparkd PEER=dir OUT=dir tests/gpu/bench_moe.sh run              (benches, table last)
#
# PEER: llama-bench and llama-batched-bench built for sm_90a (tests/gpu/build_llamacpp_cuda.sh);
# they need the machine's libcudart.so.13 / libcublas.so.13 (LD_LIBRARY_PATH below).
# Per model, both engines, KV f16, flash attention on for llama.cpp:
#   pp2048 and tg64 at batch 1   sparkd bench -p 2048 -n 64 -r 2 | llama-bench -p 2048 -n 64
#   generated tok/s, 64 seqs     (sparkd bench --npl 64 -p 128 -n 32: prompts of 128, 32 steps)
#                                | llama-batched-bench -npp 128 -ntg 32 -npl 64 (S_TG)
# Depths: L20 (of 24), L120 (of 36), LQ (of 48) layers (defaults 4, 2, 8). Bytes per decode
# token of the cut file and of the full model come from tests/gpu/moe_bytes.py (weights only:
# the token's experts, the dense part, the output head); % of bandwidth = bytes x tok/s over
# the read probe of the same call (sparkd device). The last column is the bandwidth bound of
# the full model on GB10 (85% of 273 GB/s, what a read probe reaches there): decode cannot
# beat it; how far below it sparkd lands depends on per-launch costs that the cut files
# measure (BENCHMARKS.md fits them from the two gpt-oss depths).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-build/sparkd}
OUT=${OUT:-build/gpu-out}
M=${MOE_MODELS:-/tmp/sparkd-moe}
PY=${PY:-python3}
L20=${L20:-4}
L120=${L120:-2}
LQ=${LQ:-8}
mkdir -p "$OUT" "$M"
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
case "${1:-run}" in
gen)
    if [ -n "${WHL:-}" ]; then $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHL"/*.whl; fi
    S="$ROOT/tests/golden/make_synth_moe.py"
    t0=$SECONDS
    nice $PY "$S" --out "$M/gpt-oss-20b.gguf" --preset gpt-oss-20b --layers "$L20" >"$M/gen-20b.log" 2>&1 &
    nice $PY "$S" --out "$M/gpt-oss-120b.gguf" --preset gpt-oss-120b --layers "$L120" >"$M/gen-120b.log" 2>&1 &
    nice $PY "$S" --out "$M/qwen3-30b-a3b.gguf" --preset qwen3-30b-a3b --layers "$LQ" >"$M/gen-q30.log" 2>&1 &
    wait
    echo "generated in $((SECONDS - t0)) s"
    ls -la "$M"
    tail -n 2 "$M"/gen-*.log
    touch "$M/gen.done"
    ;;
run)
    export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
    while [ ! -f "$M/gen.done" ]; do sleep 1; done
    BW=$("$BIN" device 2>/dev/null | sed -n 's/.*read bandwidth \([0-9.]*\) GB\/s.*/\1/p' | head -n 1)
    BW=${BW:-4400}
    echo "read probe: $BW GB/s"
    LB=$PEER/llama-bench
    LBB=$PEER/llama-batched-bench
    ROWS=()
    for spec in "gpt-oss-20b:24" "gpt-oss-120b:36" "qwen3-30b-a3b:48"; do
        name=${spec%%:*}
        full=${spec##*:}
        f="$M/$name.gguf"
        [ -f "$f" ] || { echo "== $name: no file"; continue; }
        read -r _ bytes _ _ _ _ _ layers _ _ _ fbytes < <($PY "$ROOT/tests/gpu/moe_bytes.py" "$f" --full-layers "$full")
        echo "== $name ($layers of $full layers): $bytes bytes per decode token, $fbytes at full depth"
        s1=$(timeout 150 "$BIN" bench -m "$f" --device cuda --kv f16 -p 2048 -n 64 -r 2 2>&1); echo "$s1"
        s_pp=$(echo "$s1" | sed -n 's/^pp2048: \([0-9.]*\).*/\1/p')
        s_tg=$(echo "$s1" | sed -n 's/^tg64: \([0-9.]*\).*/\1/p')
        s2=$(timeout 150 "$BIN" bench -m "$f" --device cuda --kv f16 -p 128 -n 32 --npl 64 2>&1); echo "$s2"
        s_b=$(echo "$s2" | sed -n 's/^npl 64: .*; tg 32 x 64: \([0-9.]*\) tok\/s.*/\1/p')
        l_pp=; l_tg=; l_b=
        if [ -x "$LB" ]; then
            l1=$(timeout 150 "$LB" -m "$f" -p 2048 -n 64 -fa 1 -ngl 99 -ctk f16 -ctv f16 -r 2 2>&1); echo "$l1" | grep -a '^|'
            l_pp=$(echo "$l1" | grep -E '\| +pp2048 +\|' | sed 's/.*| *\([0-9.]*\) ± [0-9.]* *|$/\1/')
            l_tg=$(echo "$l1" | grep -E '\| +tg64 +\|' | sed 's/.*| *\([0-9.]*\) ± [0-9.]* *|$/\1/')
        fi
        if [ -x "$LBB" ]; then
            l2=$(timeout 120 "$LBB" -m "$f" -c 10240 -b 2048 -ub 512 -npp 128 -ntg 32 -npl 64 -ngl 99 -fa on 2>&1); echo "$l2" | grep -a '^|\|^main'
            # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
            l_b=$(echo "$l2" | grep -E '^\| +128 \| +32 \| +64 \|' | awk -F'|' '{gsub(/ /, "", $9); print $9}')
        fi
        ROWS+=("$name|$layers/$full|$bytes|$fbytes|${s_pp:-}|${l_pp:-}|${s_tg:-}|${l_tg:-}|${s_b:-}|${l_b:-}")
    done
    echo
    echo "| model (layers) | pp2048 sparkd / llama.cpp | tg64 b=1 sparkd / llama.cpp | %BW sparkd / llama.cpp | tok/s 64 seqs sparkd / llama.cpp | MB/token cut / full | GB10 b=1 bound, full depth |"
    echo "|---|---|---|---|---|---|---|"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r name lay bytes fbytes spp lpp stg ltg sb lb <<<"$r"
        awk -v n="$name" -v lay="$lay" -v b="$bytes" -v fb="$fbytes" -v spp="$spp" -v lpp="$lpp" -v stg="$stg" \
            -v ltg="$ltg" -v sb="$sb" -v lb="$lb" -v bw="$BW" 'function r(a, c) { return (a + 0 > 0 && c + 0 > 0) ? sprintf(" (%.2fx)", a / c) : "" }
            function pct(t) { return t + 0 > 0 ? sprintf("%.0f%%", 100 * b * t / (bw * 1e9)) : "-" }
            BEGIN {
                printf "| %s (%s) | %s / %s%s | %s / %s%s | %s / %s | %s / %s%s | %.0f / %.0f | %.0f tok/s |\n", n, lay, spp,
                    lpp, r(spp, lpp), stg, ltg, r(stg, ltg), pct(stg), pct(ltg), sb, lb, r(sb, lb), b / 1e6, fb / 1e6,
                    0.85 * 273e9 / fb
            }'
    done
    ;;
esac
