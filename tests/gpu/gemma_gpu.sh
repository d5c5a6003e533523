#!/usr/bin/env bash
# Kept from the call in BENCHMARKS.md ("The merged build"): the default model arrives as
# .carry-g/p0..p3 (split -n 5, one chunk a call, copied to /root/m) and .carry-g/last/p4 with
# the xz-compressed stripped sparkd and tests/tool_logits of a CUDA build and the gguf wheel.
# The device call that ends the chunk chain: assemble the default model, then check the
# merged CUDA build (kernels, the engine vs the CPU engine on real weights, goldens vs HF).
M=${M:-/root/m}; R=$PWD; OUT=${OUT:-/tmp/out}; mkdir -p $OUT $M/bin $M/build/tests
cp .carry-g/last/p4 $M/p4
cat $M/p0 $M/p1 $M/p2 $M/p3 $M/p4 > $M/g.gguf
echo "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818  $M/g.gguf" | sha256sum -c > $OUT/sha.txt 2>&1 || { cat $OUT/sha.txt; exit 3; }
python3 -c "import lzma,shutil,sys; [shutil.copyfileobj(lzma.open(a), open(b, 'wb')) for a, b in zip(sys.argv[1::2], sys.argv[2::2])]" \
  .carry-g/last/sparkd.xz $M/bin/sparkd .carry-g/last/tool_logits.xz $M/build/tests/tool_logits
chmod +x $M/bin/sparkd $M/build/tests/tool_logits
PY=python3
$PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry-g/last/*.whl > $OUT/pip.txt 2>&1
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1
B=$M/bin/sparkd
step() { local n=$1 t=$2; shift 2; local t0=$(date +%s); timeout $t "$@" > $OUT/$n.txt 2>&1; local rc=$?
  echo "$n rc=$rc $(( $(date +%s) - t0 )) s" | tee -a $OUT/steps.txt; }
step env 20 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; $B device"
step selftest 90 $B selftest --quick
step gemma_engine 60 $B selftest --model-only -m $M/g.gguf
step golden 150 env SPARKD_DEVICE=cuda SPARKD_GOLDEN_ONLY=gemma3-270m,gpt-oss-tiny.json,gpt-oss-tiny-yarn4k.json,qwen3moe-tiny.json,qwen3-tiny \
  SPARKD_BIN=$B SPARKD_BUILD=$M/build SPARKD_ROOT=$R SPARKD_MODEL=$M/g.gguf SPARKD_PY=$PY $PY $R/tests/golden/test_golden.py
step moe_engine 60 bash -c "f=0; for g in $M/build/golden/gpt-oss-tiny.gguf $M/build/golden/qwen3moe-tiny.gguf; do $B selftest --model-only -m \$g || f=\$((f+1)); done; exit \$f"
step gemma_bench 40 $B bench -m $M/g.gguf --device cuda -p 512 -n 128 -r 2
grep -c "^ok" $OUT/golden.txt > $OUT/golden_counts.txt; grep -c "not ok" $OUT/golden.txt >> $OUT/golden_counts.txt
