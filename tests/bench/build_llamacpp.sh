#!/usr/bin/env bash
# tests/bench/build_llamacpp.sh — build the llama.cpp peer we benchmark against (CPU).
#
# The only registry reachable here is PyPI, so the source comes from the llama-cpp-python
# sdist (pinned version + SHA-256), which vendors a full llama.cpp tree. We copy out only the
# folders a build of llama-bench / llama-completion / llama-simple / llama-tokenize needs
# (CPU and CUDA backends kept, every other backend dropped), with small CMakeLists for
# tools/, examples/ and pocs/ that add just those targets. That pruned tree is both what we
# build here and what build/peer/llamacpp-src.tar.xz carries to a GPU machine, so building
# it here proves the tarball is complete.
#
#   tests/bench/build_llamacpp.sh          download (once), prune, build; skips what is done
#   tests/bench/build_llamacpp.sh bench    ... then llama-bench on $SPARKD_MODEL, 2 threads
#
# On a GPU machine, from the tarball (see the echo at the end for the exact command):
#   tar xJf llamacpp-src.tar.xz && cd llama.cpp && cmake -B build-cuda ... -DGGML_CUDA=ON
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

PIN=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
PEER="$ROOT/build/peer"
SDIST="$PEER/llama_cpp_python-$PIN.tar.gz"
SRC="$PEER/llama.cpp"            # pruned source tree
BUILD="$SRC/build"                # CPU build
TARBALL="$PEER/llamacpp-src.tar.xz"
TARGETS="llama-bench llama-completion llama-simple llama-tokenize"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
PY=${SPARKD_PY:-python3}

log() { printf '[peer] %s\n' "$*" >&2; }
mkdir -p "$PEER"

# 1. the sdist, checked by hash
if [ ! -f "$SDIST" ] || [ "$(sha256sum "$SDIST" | cut -d' ' -f1)" != "$SDIST_SHA256" ]; then
    log "pip download llama-cpp-python==$PIN (sdist)"
    rm -f "$SDIST"
    "$PY" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
        "llama-cpp-python==$PIN" -d "$PEER"
    got=$(sha256sum "$SDIST" | cut -d' ' -f1)
    if [ "$got" != "$SDIST_SHA256" ]; then
        log "SHA-256 mismatch for $SDIST: got $got"; exit 1
    fi
fi

# 2. the pruned tree (stamp records which sdist it came from)
STAMP="$SRC/.sparkd-from"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$SDIST_SHA256" ]; then
    log "extracting and pruning vendor/llama.cpp"
    rm -rf "$SRC" "$PEER/x"
    mkdir -p "$PEER/x"
    tar -xzf "$SDIST" -C "$PEER/x" "llama_cpp_python-$PIN/vendor/llama.cpp"
    FULL="$PEER/x/llama_cpp_python-$PIN/vendor/llama.cpp"
    mkdir -p "$SRC"
    for d in CMakeLists.txt LICENSE licenses cmake include src common vendor ggml/CMakeLists.txt \
             ggml/cmake ggml/include tools/llama-bench tools/completion tools/tokenize \
             examples/simple; do
        mkdir -p "$SRC/$(dirname "$d")"
        cp -a "$FULL/$d" "$SRC/$d"
    done
    # ggml/src: the core files plus the CPU and CUDA backends (ggml_add_backend only enters
    # the folder of a backend that is switched on, so the others can go).
    mkdir -p "$SRC/ggml/src"
    find "$FULL/ggml/src" -maxdepth 1 -type f -exec cp -a {} "$SRC/ggml/src/" \;
    cp -a "$FULL/ggml/src/ggml-cpu" "$FULL/ggml/src/ggml-cuda" "$SRC/ggml/src/"
    # miniaudio is only for the audio tools we do not build; keep its CMakeLists valid
    # by dropping the subdirectory from vendor/CMakeLists.txt instead.
    rm -rf "$SRC/vendor/miniaudio"
    sed -i '/add_subdirectory(miniaudio)/d' "$SRC/vendor/CMakeLists.txt"
    cat >"$SRC/tools/CMakeLists.txt" <<'EOF'
# pruned by sparkd tests/bench/build_llamacpp.sh: only the tools the benchmark needs
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(llama-bench)
add_subdirectory(completion)
add_subdirectory(tokenize)
EOF
    cat >"$SRC/examples/CMakeLists.txt" <<'EOF'
# pruned by sparkd tests/bench/build_llamacpp.sh
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(simple)
EOF
    mkdir -p "$SRC/pocs"
    echo "# pruned by sparkd tests/bench/build_llamacpp.sh" >"$SRC/pocs/CMakeLists.txt"
    rm -rf "$PEER/x"
    echo "$SDIST_SHA256" >"$STAMP"
    rm -f "$TARBALL"
fi

# 3. the tarball for GPU machines (source only; deterministic order and mtimes)
if [ ! -f "$TARBALL" ]; then
    log "packing $TARBALL"
    tar --sort=name --mtime='2000-01-01 00:00Z' --owner=0 --group=0 --numeric-owner \
        --exclude='llama.cpp/build' --exclude='llama.cpp/build-*' --exclude='llama.cpp/.sparkd-from' \
        -C "$PEER" -cf - llama.cpp | xz -9e -T1 >"$TARBALL.tmp"
    mv "$TARBALL.tmp" "$TARBALL"
fi

# PEER_PRUNE_ONLY=1: stop after the pruned tree and tarball (tests/gpu/build_llamacpp_cuda.sh)
[ -n "${PEER_PRUNE_ONLY:-}" ] && exit 0

# 4. the CPU build. ISA: x86-64-v3 (AVX2, FMA, F16C, BMI2), the same level sparkd's Makefile
# builds for, so the comparison is like for like. Not GGML_NATIVE: on this Xeon, -march=native
# turns on ggml's AMX path, whose first `ldtilecfg` dies with SIGSEGV here (the CPU flags
# list amx_tile but the VM does not grant the AMX state), seen in llama-bench under gdb.
CMAKE_FLAGS="-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
 -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
 -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
 -DGGML_CUDA=OFF -DGGML_METAL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
 -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF"
if [ "$(uname -m)" = aarch64 ]; then
    CMAKE_FLAGS="-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
 -DGGML_CUDA=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
 -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF"
fi
have_all=1
for t in $TARGETS; do [ -x "$BUILD/bin/$t" ] || have_all=0; done
[ "$(cat "$BUILD/.sparkd-flags" 2>/dev/null)" = "$CMAKE_FLAGS" ] || have_all=0
if [ "$have_all" = 0 ]; then
    log "cmake configure + build ($TARGETS) with $JOBS jobs"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    cmake -S "$SRC" -B "$BUILD" $CMAKE_FLAGS >"$PEER/cmake-configure.log"
    cmake --build "$BUILD" -j "$JOBS" --target $TARGETS >"$PEER/cmake-build.log"
    t1=$(date +%s)
    echo "$CMAKE_FLAGS" >"$BUILD/.sparkd-flags"
    log "built in $((t1 - t0)) s"
    echo "$((t1 - t0))" >"$PEER/build-seconds"
else
    log "already built (rm -rf $BUILD to rebuild)"
fi

log "tarball $(stat -c %s "$TARBALL") bytes; on the GPU machine:"
log "  tar xJf llamacpp-src.tar.xz && cd llama.cpp && cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DGGML_CUDA_NCCL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF && cmake --build build-cuda -j --target $TARGETS"

if [ "${1:-}" = bench ]; then
    MODEL=${SPARKD_MODEL:-$ROOT/models/gemma-3-270m-q4_k_m.gguf}
    # Other jobs on a 2-core machine swing these numbers by 10x (OpenMP threads spin-wait):
    # the load average is printed so a reader can tell a quiet run from a contended one.
    log "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$BUILD/bin/llama-bench" -m "$MODEL" -t 2 -p 128 -n 64 -r 3
    log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
