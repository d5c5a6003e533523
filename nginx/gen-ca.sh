#!/usr/bin/env bash
# gen-ca.sh DIR HOSTNAME [IP] — a local certificate authority and a server certificate
# it signs, for a network without a public CA or Tailscale (air-gapped; INSTALL.md
# section 3). Writes DIR/ca.pem + DIR/ca-key.pem (ECDSA P-256, 10 years; keep the key
# offline) and DIR/cert.pem + DIR/key.pem (1 year; SAN: HOSTNAME, localhost, 127.0.0.1
# and IP if given). An existing CA in DIR is reused, so renewing the server certificate
# is running this again. Clients trust DIR/ca.pem (curl --cacert, or the OS store).
set -euo pipefail
dir=${1:?usage: gen-ca.sh DIR HOSTNAME [IP]}
host=${2:?usage: gen-ca.sh DIR HOSTNAME [IP]}
ip=${3:-}
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca-key.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=sparkd local CA ($host)" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
fi
san="DNS:$host,DNS:localhost,IP:127.0.0.1${ip:+,IP:$ip}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$host" \
    -keyout "$tmp/key.pem" -out "$tmp/req.pem" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >"$tmp/ext"
openssl x509 -req -in "$tmp/req.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days 365 -extfile "$tmp/ext" -out "$tmp/cert.pem" 2>/dev/null
rm -f "$dir/ca.srl"
install -m 0600 "$tmp/key.pem" "$dir/key.pem"
install -m 0644 "$tmp/cert.pem" "$dir/cert.pem"
chmod 0644 "$dir/ca.pem"
echo "$dir/cert.pem (signed by $dir/ca.pem)"
