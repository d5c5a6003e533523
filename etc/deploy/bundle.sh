#!/usr/bin/env bash
# etc/deploy/bundle.sh [OUT_DIR] — the air-gapped bundle (INSTALL.md section 3), one command:
#
#   build/sparkd-bundle-ARCH/             the shipping part of a checkout, same layout:
#     build/sparkd-static                   fully static CPU binary (runs anywhere on ARCH)
#     build/sparkd                          the glibc build (with the CUDA unit when it was built)
#     models/MODEL.gguf                     the model ($SPARKD_BUNDLE_MODEL, default: the embedded one)
#     etc/  nginx/  INSTALL.md  firmware-notes/  README.md
#     SHA256SUMS                            every file above, made by coreutils' sha256sum
#   build/sparkd-bundle-ARCH.tar          the same directory as one file to carry
#   build/sparkd-bundle-ARCH.tar.sha256   the tar's own digest (check it after the move)
#
# etc/sparkd.ini in the bundle points at the bundled model and carries its digest
# ([model] sha256, from sha256sum), so sparkd re-checks the model while loading it —
# here and wherever the INI is installed. On the far side:
#   tar xf sparkd-bundle-ARCH.tar && cd sparkd-bundle-ARCH
#   build/sparkd-static verify --manifest SHA256SUMS      # every file: OK, or exit 1
# then INSTALL.md section 1 from "Install" on (the commands are the same from here).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${1:-$ROOT/build}
MODEL=${SPARKD_BUNDLE_MODEL:-$ROOT/models/gemma-3-270m-q4_k_m.gguf}
ARCH=$(uname -m)
NAME=sparkd-bundle-$ARCH
B="$OUT/$NAME"
log() { printf '[bundle] %s\n' "$*" >&2; }

for f in build/sparkd build/sparkd-static "$MODEL"; do
    [ -f "$f" ] || { log "missing $f (run ./build.sh first)"; exit 1; }
done
rm -rf "$B" "$B.tar" "$B.tar.sha256"
mkdir -p "$B/build" "$B/models"
cp -p build/sparkd build/sparkd-static "$B/build/"
mb=$(basename "$MODEL")
# a hard link where possible: the model is the bundle's bulk, and tar copies it anyway
ln "$(readlink -f "$MODEL")" "$B/models/$mb" 2>/dev/null || cp -p "$MODEL" "$B/models/$mb"
cp -rp etc nginx firmware-notes "$B/"
cp -p INSTALL.md README.md "$B/"
digest=$(sha256sum "$B/models/$mb" | cut -d' ' -f1)
sed -i -e "s|^path = .*|path = ../models/$mb|" -e "s|^; sha256 = .*|sha256 = $digest|" "$B/etc/sparkd.ini"
grep -q "^sha256 = $digest\$" "$B/etc/sparkd.ini" || { log "could not set [model] sha256"; exit 1; }
(cd "$B" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum -b >SHA256SUMS)
log "$(wc -l <"$B/SHA256SUMS") files in $B/SHA256SUMS"
tar -C "$OUT" -cf "$B.tar" "$NAME"
(cd "$OUT" && sha256sum "$NAME.tar" >"$NAME.tar.sha256")
log "$B.tar ($(du -h "$B.tar" | cut -f1)); its digest in $NAME.tar.sha256"
echo "$B.tar"
