#!/usr/bin/env bash
# tests/gpu/build_llamacpp_cuda.sh — the llama.cpp CUDA peer (llama-bench, llama-batched-bench)
# built HERE (nvcc, no GPU) for sm_90a, packed as build/peer/llamacpp-cuda.tar.xz so a GPU call
# carries binaries instead of spending device minutes compiling.
#
# Source: the pruned tree of tests/bench/build_llamacpp.sh (llama-cpp-python 0.3.36 sdist,
# checked by SHA-256) plus tools/batched-bench from the same sdist. The binaries link ggml
# statically, libstdc++/libgcc statically, and cudart/cublas dynamically: the GPU machine's
# CUDA 13 toolkit provides libcudart.so.13 and libcublas.so.13 (tests/gpu/bench.sh sets
# LD_LIBRARY_PATH). nice'd: it takes a long time on a 2-core machine and must not starve tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PEER="$ROOT/build/peer"
SRC="$PEER/llama.cpp-cuda"
OUT="$PEER/llamacpp-cuda.tar.xz"
JOBS=${JOBS:-2}
log() { printf '[peer-cuda] %s\n' "$*" >&2; }
[ -f "$OUT" ] && { log "$OUT exists"; exit 0; }
SPARKD_PY=${SPARKD_PY:-$ROOT/build/venv/bin/python3} PEER_PRUNE_ONLY=1 "$ROOT/tests/bench/build_llamacpp.sh" >/dev/null 2>&1 || true
[ -d "$PEER/llama.cpp/ggml/src/ggml-cuda" ] || { log "pruned tree missing"; exit 1; }
if [ ! -d "$SRC" ]; then
    cp -a "$PEER/llama.cpp" "$SRC"
    rm -rf "$SRC/build"
    tar -xzf "$PEER/llama_cpp_python-0.3.36.tar.gz" -C "$PEER" "llama_cpp_python-0.3.36/vendor/llama.cpp/tools/batched-bench"
    cp -a "$PEER/llama_cpp_python-0.3.36/vendor/llama.cpp/tools/batched-bench" "$SRC/tools/"
    rm -rf "$PEER/llama_cpp_python-0.3.36"
    echo 'add_subdirectory(batched-bench)' >>"$SRC/tools/CMakeLists.txt"
fi
t0=$(date +%s)
nice -n 19 cmake -S "$SRC" -B "$SRC/build-cuda" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_OPENMP=OFF \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DGGML_CUDA_NCCL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" >"$PEER/cuda-configure.log"
nice -n 19 cmake --build "$SRC/build-cuda" -j "$JOBS" --target llama-bench llama-batched-bench >"$PEER/cuda-build.log" 2>&1
log "built in $(( $(date +%s) - t0 )) s"
mkdir -p "$PEER/cuda-bin"
cp "$SRC/build-cuda/bin/llama-bench" "$SRC/build-cuda/bin/llama-batched-bench" "$PEER/cuda-bin/"
strip "$PEER/cuda-bin/"*
# one large dictionary: the two binaries share nearly all their bytes (ggml + its cubins), so
# the second costs little (43 MB for both, vs 74+ MB with the default dictionary)
tar -C "$PEER" -cf - cuda-bin | xz -T1 --lzma2=preset=6,dict=192MiB >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
log "$OUT: $(stat -c %s "$OUT") bytes"
