#!/usr/bin/env bash
# Runs on the lent GPU machine (one call): HF transformers references for the synthetic
# mixture-of-experts models (gpt-oss-tiny, qwen3moe-tiny), on the CPU (committed) and on
# CUDA (a cross-check), then times the real-shape presets the speed work generates there.
# Results go to $OUT. Carried: the gguf wheel (and transformers 5.17.0 in case the machine
# has another version) in $WHL; the golden scripts in $G when they are not yet on main.
set -euo pipefail
G=${GOLDEN_DIR:-tests/golden}
WHL=${WHL:-.whl}
M=/root/m; mkdir -p $M
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $WHL/gguf-*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
if ! python3 -c 'import transformers, sys; sys.exit(transformers.__version__ != "5.17.0")'; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $WHL/transformers-*.whl
fi
python3 -c 'import torch, transformers, gguf; print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())' || true
nproc
# preset:seed — seeds picked so that no greedy step of the reference is a near-tie
# (seeds 0..5 tried for gpt-oss, 0..2 for qwen3moe; every margin is in the references)
MODELS="gpt-oss-tiny:1 gpt-oss-tiny-yarn4k:1 qwen3moe-tiny:2"
for ps in $MODELS; do
  p=${ps%%:*}; s=${ps##*:}
  python3 $G/make_synth_moe.py --out $M/$p.gguf --preset $p --seed $s
done
# CPU references (committed), all models at once
for ps in $MODELS; do
  p=${ps%%:*}; s=${ps##*:}
  OMP_NUM_THREADS=$(( $(nproc) / 3 )) python3 $G/make_refs_moe.py $M/$p.gguf $OUT/$p.json --device cpu \
    --prompts-file $G/synth-prompts.json --synth-args "--preset $p --seed $s" >$OUT/$p.log 2>&1 &
done
wait
grep -hv Warning $OUT/*.log | grep -E "loaded|->|clamp|router|Error|error" || true
# CUDA cross-check (not committed)
for ps in $MODELS; do
  p=${ps%%:*}; s=${ps##*:}
  python3 $G/make_refs_moe.py $M/$p.gguf $OUT/$p-cuda.json --device cuda \
    --prompts-file $G/synth-prompts.json --synth-args "--preset $p --seed $s" 2>&1 | grep -E -- "->|Error|error" || true
done
# Real-shape presets: how long one layer (plus embeddings) takes to write there
for p in gpt-oss-20b gpt-oss-120b qwen3-30b-a3b; do
  python3 $G/make_synth_moe.py --out $M/$p-L1.gguf --preset $p --layers 1 | head -n 1
  rm -f $M/$p-L1.gguf
done
df -h /root | tail -n 1
