#!/usr/bin/env bash
# etc/static/musl-deps.sh [OUT] — static musl builds of sparkd's C dependencies, made from
# Debian's own source packages (nothing vendored in this tree):
#
#   apt-get source bearssl      (the host distribution's sources: Debian main, or Ubuntu
#                                main+universe on DGX OS; hashes checked against the
#                                signed Sources index by apt)
#   musl-gcc -O2 ...  ->  OUT/lib/libbearssl.a, OUT/include/
#
# apt runs with a private sources list and state directory under OUT/apt, so the
# host's /etc/apt is never touched and no root is needed for this step (needs the
# Debian packages dpkg-dev and musl-tools). Each library is compiled from the list
# of its C files below, with a config header written here, instead of its own
# autotools/cmake build: the same objects Debian's build makes, fewer build tools.
# A stamp (OUT/.stamp) names the source versions; the step reruns when it is absent or
# older than this script.
# Not here: JSON, the INI file and FastCGI, which sparkd handles itself (jsonv.c, jw.c,
# config.c, fcgi/wire.c). (inih's Debian source was not reachable from the build machines: 404.)
set -euo pipefail
OUT=${1:-build/musl-deps}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CC=${MUSL_CC:-musl-gcc}
CFLAGS="-O2 -g0 -fPIE -fstack-protector-strong -w"
PKGS="bearssl"
# The host's own distribution's sources: Debian (CI, dev machines) or Ubuntu (DGX OS).
. /etc/os-release 2>/dev/null || true
case "${ID:-debian}" in
    ubuntu)
        case "$(dpkg --print-architecture 2>/dev/null || echo amd64)" in
            amd64|i386) def_mirror=http://archive.ubuntu.com/ubuntu ;;
            *) def_mirror=http://ports.ubuntu.com/ubuntu-ports ;;
        esac
        def_comp="main universe" keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg ;;
    *) def_mirror=http://deb.debian.org/debian def_comp=main keyring=/usr/share/keyrings/debian-archive-keyring.gpg ;;
esac
MIRROR=${SPARKD_DEBIAN_MIRROR:-$def_mirror}
SUITE=${SPARKD_DEBIAN_SUITE:-${VERSION_CODENAME:-bookworm}}
COMPONENTS=${SPARKD_DEBIAN_COMPONENTS:-$def_comp}
log() { printf '[musl-deps] %s\n' "$*" >&2; }

command -v "$CC" >/dev/null || { log "$CC not found (Debian: musl-tools)"; exit 1; }
command -v dpkg-source >/dev/null || { log "dpkg-source not found (Debian: dpkg-dev)"; exit 1; }

# done already, by this version of the script
if [ "$OUT/.stamp" -nt "$0" ] && [ -f "$OUT/lib/libbearssl.a" ]; then exit 0; fi

APT="$OUT/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/src"
echo "deb-src [signed-by=$keyring] $MIRROR $SUITE $COMPONENTS" >"$APT/sources.list"
AOPT=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Debug::NoLocking=1)
# apt drops to the _apt user for downloads when it runs as root; that user cannot
# write into a private tree, so download as ourselves.
[ "$(id -u)" = 0 ] && AOPT+=(-o APT::Sandbox::User=root)
log "apt-get update (deb-src $MIRROR $SUITE $COMPONENTS, private lists under $APT)"
apt-get "${AOPT[@]}" -qq update
rm -rf "$APT/src" && mkdir -p "$APT/src"
log "apt-get source $PKGS"
(cd "$APT/src" && apt-get "${AOPT[@]}" -qq source $PKGS >/dev/null)
src() { find "$APT/src" -maxdepth 1 -mindepth 1 -type d -name "$1-*" | head -n 1; }

B="$OUT/obj"
rm -rf "$B" "$OUT/include" "$OUT/lib" && mkdir -p "$B" "$OUT/include" "$OUT/lib"
compile() { # lib name, include flags, sources...
    local name=$1 inc=$2; shift 2
    mkdir -p "$B/$name"
    local objs=() s o
    for s in "$@"; do
        o="$B/$name/$(echo "${s#"$APT/src/"}" | tr / _).o"
        objs+=("$o")
        # shellcheck disable=SC2086
        "$CC" $CFLAGS $inc -c -o "$o" "$s" &
        [ "$(jobs -r | wc -l)" -ge "$(nproc)" ] && wait -n
    done
    wait
    ar rcs "$OUT/lib/lib$name.a" "${objs[@]}"
}

# BearSSL: every file under src/ (what its Makefile's `lib` target builds).
S=$(src bearssl)
mapfile -t files < <(find "$S/src" -name '*.c' | sort)
compile bearssl "-I$S/inc -I$S/src" "${files[@]}"
mkdir -p "$OUT/include/bearssl" && cp "$S"/inc/*.h "$OUT/include/bearssl/" && cp "$S"/inc/*.h "$OUT/include/"

vers=""
for p in $PKGS; do vers="$vers $(basename "$(src "$p")")"; done
echo "$vers" >"$OUT/.stamp"
log "built$vers -> $OUT/lib"
