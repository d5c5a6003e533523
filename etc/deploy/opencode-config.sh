#!/usr/bin/env bash
# etc/deploy/opencode-config.sh BASE_URL INI... — an OpenCode provider config (opencode.json) for
# the sparkd instances whose INI files are given: one provider per instance (one sparkd
# serves one model), each model listed under the id it serves ([model] id, else the file
# name without .gguf) with its context ([model] context; 0 = the model's, capped at 4096)
# and output limit ([limits] max_tokens, at most the context). The API key is read by
# OpenCode from $SPARKD_API_KEY. Several instances behind one name: give BASE_URL once per
# INI as URL=INI, e.g.
#   etc/deploy/opencode-config.sh https://spark.TAILNET.ts.net/v1 /etc/sparkd/sparkd.ini > opencode.json
#   etc/deploy/opencode-config.sh https://spark:8443/v1=/etc/sparkd/qwen3.ini https://spark:8444/v1=/etc/sparkd/oss.ini
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BASE_URL INI... | URL=INI..." >&2; exit 2; }
default_url=""
case "$1" in *=*) ;; *) default_url=$1; shift ;; esac
[ $# -ge 1 ] || { echo "usage: $0 BASE_URL INI... | URL=INI..." >&2; exit 2; }
ini_get() { # file section key -> value (last one wins, inline ' ;' comments cut)
    awk -v s="[$2]" -v k="$3" '
        { sub(/^[ \t]+/, ""); sub(/[ \t\r]+$/, "") }
        /^\[/ { sec = $0; gsub(/[ \t]/, "", sec); next }
        sec == s && index($0, "=") { key = substr($0, 1, index($0, "=") - 1); gsub(/[ \t]/, "", key)
            if (key == k) { v = substr($0, index($0, "=") + 1); sub(/[ \t]+;.*$/, "", v); gsub(/^[ \t]+|[ \t]+$/, "", v); val = v } }
        END { print val }' "$1"
}
json_str() { printf '"%s"' "$(printf %s "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"; }
echo '{'
echo '  "$schema": "https://opencode.ai/config.json",'
echo '  "provider": {'
n=0
for arg in "$@"; do
    case "$arg" in *=*) url=${arg%%=*}; ini=${arg#*=} ;; *) url=$default_url; ini=$arg ;; esac
    [ -n "$url" ] || { echo "$0: no base URL for $ini" >&2; exit 2; }
    [ -r "$ini" ] || { echo "$0: cannot read $ini" >&2; exit 1; }
    id=$(ini_get "$ini" model id)
    if [ -z "$id" ]; then id=$(basename "$(ini_get "$ini" model path)"); id=${id%.gguf}; fi
    ctx=$(ini_get "$ini" model context); ctx=${ctx:-2048}; [ "$ctx" = 0 ] && ctx=4096
    out=$(ini_get "$ini" limits max_tokens); out=${out:-4096}; [ "$out" -gt "$ctx" ] && out=$ctx
    n=$((n + 1))
    key="sparkd"; [ $# -gt 1 ] && key="sparkd-$id"
    sep=","; [ $n -eq $# ] && sep=""
    cat <<JSON
    $(json_str "$key"): {
      "npm": "@ai-sdk/openai-compatible",
      "name": $(json_str "sparkd ($id)"),
      "options": { "baseURL": $(json_str "$url"), "apiKey": "{env:SPARKD_API_KEY}" },
      "models": {
        $(json_str "$id"): { "name": $(json_str "$id"), "limit": { "context": $ctx, "output": $out } }
      }
    }$sep
JSON
done
echo '  }'
echo '}'
