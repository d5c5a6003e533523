#!/usr/bin/env bash
# render.sh — fill nginx/sparkd.conf.in's placeholders.
#   nginx/render.sh --listen 443 --cert /etc/sparkd/tls/cert.pem --key /etc/sparkd/tls/key.pem \
#                   --socket /run/sparkd/sparkd.sock [--max-conns 128] \
#                   [--client-conns N] [--client-rate R] [--client-burst B] \
#                   [--fastcgi-params /etc/nginx/fastcgi_params] > site.conf
# --max-conns: requests passed to sparkd at once, at most sparkd's [server] workers
#   (128 = what workers = auto gives the default max_seqs 4).
# --client-conns: requests one client address may have in flight (default: --max-conns).
# --client-rate, --client-burst: requests per second one client address may start
#   (default 50) and the burst above it (default 200); beyond them nginx answers 429.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
listen=443 cert=/etc/sparkd/tls/cert.pem key=/etc/sparkd/tls/key.pem socket=/run/sparkd/sparkd.sock
params=/etc/nginx/fastcgi_params maxconns=128 clientconns="" rate=50 burst=200
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) listen=$2 ;; --cert) cert=$2 ;; --key) key=$2 ;; --socket) socket=$2 ;;
        --fastcgi-params) params=$2 ;; --max-conns) maxconns=$2 ;;
        --client-conns) clientconns=$2 ;; --client-rate) rate=$2 ;; --client-burst) burst=$2 ;;
        *) echo "render.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
[ -n "$clientconns" ] || clientconns=$maxconns
for n in "$maxconns" "$clientconns" "$rate" "$burst"; do
    case "$n" in ""|*[!0-9]*|0) echo "render.sh: --max-conns, --client-conns, --client-rate, --client-burst want numbers > 0" >&2; exit 2 ;; esac
done
for v in "$listen" "$cert" "$key" "$socket" "$params"; do
    case "$v" in *[\;\{\}\ \|]*) echo "render.sh: refusing value with ; { } | or space: $v" >&2; exit 2 ;; esac
done
sed -e "s|@LISTEN@|$listen|g" -e "s|@CERT@|$cert|g" -e "s|@KEY@|$key|g" -e "s|@SOCKET@|$socket|g" \
    -e "s|@FASTCGI_PARAMS@|$params|g" -e "s|@MAX_CONNS@|$maxconns|g" -e "s|@CLIENT_CONNS@|$clientconns|g" \
    -e "s|@CLIENT_RATE@|$rate|g" -e "s|@CLIENT_BURST@|$burst|g" "$here/sparkd.conf.in"
