#!/usr/bin/env bash
# run_main.sh — `./build.sh run [PORT] [RUNDIR]`: nginx (TLS on 127.0.0.1:PORT) in front of
# sparkd (FastCGI on a unix socket) serving the embedded default model on CPU. Prints
# requests that work as printed (each is run once first and its answer checked), then
# stays in the foreground until Ctrl-C (sparkd drains, both exit).
#   PORT    HTTPS port (default 8443, or a free one if 8443 is taken; a PORT given and
#           taken is an error)
#   RUNDIR  where this instance keeps its socket, key, certificate, INI and logs
#           (default build/run). Two instances coexist with two ports and two run dirs:
#             ./build.sh run 8443 build/run-a    and    ./build.sh run 8444 build/run-b
# Environment: SPARKD_PORT / SPARKD_RUN (same as the arguments), SPARKD_BIN,
#              SPARKD_MODEL (default models/gemma-3-270m-q4_k_m.gguf).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT_ARG=${1:-${SPARKD_PORT:-}}
RUN=${2:-${SPARKD_RUN:-$ROOT/build/run}}
mkdir -p "$RUN/tmp"
RUN=$(cd "$RUN" && pwd)
MODEL=${SPARKD_MODEL:-$ROOT/models/gemma-3-270m-q4_k_m.gguf}
BIN=${SPARKD_BIN:-$ROOT/build/sparkd}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
say() { printf '[run] %s\n' "$*"; }

case "$PORT_ARG" in
    "") ;;
    *[!0-9]*) say "PORT must be a number 1..65535 (got '$PORT_ARG')"; exit 2 ;;
    *) [ "$PORT_ARG" -ge 1 ] && [ "$PORT_ARG" -le 65535 ] || { say "PORT must be 1..65535 (got $PORT_ARG)"; exit 2; } ;;
esac
# one instance per run directory: its socket, key and logs are its own
if [ -f "$RUN/sparkd.pid" ] && kill -0 "$(cat "$RUN/sparkd.pid")" 2>/dev/null; then
    say "$RUN is in use by sparkd PID $(cat "$RUN/sparkd.pid"); give another run directory: ./build.sh run PORT DIR"
    exit 1
fi
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "$PORT_ARG" ]; then
    PORT=$PORT_ARG
    port_free "$PORT" || { say "port $PORT is taken; give another: ./build.sh run PORT [DIR]"; exit 1; }
else
    PORT=8443
    port_free "$PORT" || PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi

[ -f "$RUN/tls/cert.pem" ] && openssl x509 -checkend 86400 -noout -in "$RUN/tls/cert.pem" >/dev/null 2>&1 ||
    "$ROOT/nginx/gen-selfsigned.sh" "$RUN/tls" >/dev/null
KEY="sk-local-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
DIGEST=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
SOCK="$RUN/sparkd.sock"

# sparkd's INI: the shipped one, with this run's socket, model and key
sed -e "s|^listen = .*|listen = unix:$SOCK|" -e "s|^path = .*|path = $MODEL|" \
    -e "s|^chat_template_file = .*|chat_template_file = $ROOT/etc/templates/gemma3.jinja|" \
    -e "s|^; api_key_sha256 = .*|api_key_sha256 = $DIGEST|" "$ROOT/etc/sparkd.ini" >"$RUN/sparkd.ini"
"$ROOT/nginx/render.sh" --listen "127.0.0.1:$PORT" --cert "$RUN/tls/cert.pem" --key "$RUN/tls/key.pem" \
    --socket "$SOCK" --max-conns 128 >"$RUN/sparkd.conf"
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
sed -e "s|@PREFIX@|$RUN|g" -e "s|@USER_LINE@|$USER_LINE|" "$ROOT/nginx/standalone.conf.in" >"$RUN/nginx.conf"

SPARKD_PID="" NGINX_PID=""
stop() {
    trap - INT TERM EXIT
    [ -n "$NGINX_PID" ] && kill -TERM "$NGINX_PID" 2>/dev/null || true
    [ -n "$SPARKD_PID" ] && kill -TERM "$SPARKD_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$RUN/sparkd.pid"
    say "stopped"
}
trap stop INT TERM EXIT

"$BIN" serve --config "$RUN/sparkd.ini" 2>"$RUN/sparkd.log" &
SPARKD_PID=$!
echo "$SPARKD_PID" >"$RUN/sparkd.pid"
"$NGINX" -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/error.log" &
NGINX_PID=$!

say "starting nginx (https://127.0.0.1:$PORT) and sparkd ($MODEL); run directory $RUN"
code=000
for _ in $(seq 1 600); do
    if ! kill -0 "$SPARKD_PID" 2>/dev/null; then say "sparkd exited:"; cat "$RUN/sparkd.log"; exit 1; fi
    if ! kill -0 "$NGINX_PID" 2>/dev/null; then say "nginx exited:"; cat "$RUN/error.log"; exit 1; fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$RUN/tls/cert.pem" "https://127.0.0.1:$PORT/health" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
done
[ "$code" = 200 ] || { say "not ready; see $RUN/sparkd.log"; exit 1; }

# The demo: completions the default model gets right. Gemma 3 270M is a small *base*
# model (not instruction-tuned): it continues text well and answers chat poorly.
BASE="curl -s --cacert $RUN/tls/cert.pem https://127.0.0.1:$PORT"
AUTH="-H 'Authorization: Bearer $KEY' -H 'Content-Type: application/json'"
demo() { # prompt, max_tokens, what the continuation must contain
    local body
    body=$(python3 -c 'import json,sys; print(json.dumps({"model":"gemma-3-270m","prompt":sys.argv[1],"max_tokens":int(sys.argv[2]),"temperature":0}))' "$1" "$2")
    local line="$BASE/v1/completions $AUTH -d '$body'"
    local out text
    out=$(eval "$line") || { say "self-check failed: $line"; exit 1; }
    text=$(printf %s "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["text"])' 2>/dev/null) ||
        { say "self-check failed: $out"; exit 1; }
    case "$text" in *"$3"*) ;; *) say "self-check: expected '$3' in the continuation of '$1', got '$text'"; exit 1 ;; esac
    printf '%s\n  -> %s\n\n' "$line" "$(printf %s "$1$text" | tr '\n' ' ' | sed 's/  */ /g')"
}
say "ready. Requests (each was just run; the answer follows its arrow):"
echo
demo "The capital of France is the city of" 4 "Paris"
demo "Monday, Tuesday, Wednesday," 8 "Thursday, Friday"
demo $'def add(a, b):\n    return' 4 "a + b"
cat <<MSG
[run] Also: "stream":true for SSE; /v1/models, /v1/chat/completions, /metrics, /health.
[run] The default model, Gemma 3 270M, is a small base model (not instruction-tuned), here
      for smoke tests: it continues text (above) but its chat answers are noise. To serve
      a real chat or reasoning model, bring its GGUF and follow INSTALL.md section 6.
[run] key: $KEY   logs: $RUN/sparkd.log, $RUN/error.log
[run] Ctrl-C to stop.
MSG
wait "$SPARKD_PID"
