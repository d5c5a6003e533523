#!/usr/bin/env python3
"""bench_decode.py — decode speed with and without a JSON schema, same server, same run.

Brings up the e2e stack (nginx + sparkd on the default model, CPU engine) and sends
streamed chat requests in alternation: plain (ignore_eos, so it runs to max_tokens) and
constrained by tests/grammar/bench_schema.json (response_format json_schema, strict),
temperature 1 (or the third argument) with a fixed seed per round. Decode speed of one request = (completion tokens - 1) /
(time of the last content chunk - time of the first), so the prompt's prefill is not in
it; the table gives the median over the rounds of each kind and their ratio. The schema
outputs are validated with the jsonschema package.

    build/venv/bin/python3 tests/grammar/bench_decode.py [ROUNDS] [MAX_TOKENS] [TEMPERATURE]
"""
import http.client
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402


def stream(st, body):
    """(decode tok/s, content text, completion tokens)."""
    c = http.client.HTTPSConnection("127.0.0.1", st.port, context=st.ssl_ctx(), timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body),
              {"Authorization": "Bearer " + harness.API_KEY, "Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("status %d: %s" % (r.status, r.read()[:300]))
    times, text, usage = [], [], None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        j = json.loads(line[6:])
        if j.get("usage"):
            usage = j["usage"]
        for ch in j.get("choices", []):
            d = ch.get("delta", {}).get("content")
            if d:
                times.append(time.perf_counter())
                text.append(d)
    c.close()
    n = usage["completion_tokens"] if usage else len(times)
    # tokens from usage (a chunk can carry more than one token: UTF-8 and stop-string holdback)
    rate = (n - 1) / (times[-1] - times[0]) if len(times) > 2 and times[-1] > times[0] else float("nan")
    return rate, "".join(text), n


def main():
    import jsonschema
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 96
    temp = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    schema = json.load(open(os.path.join(HERE, "bench_schema.json")))
    st = harness.Stack()
    plain, constrained, valid, toks = [], [], 0, []
    try:
        st.start()
        base = {"model": "gemma-3-270m", "temperature": temp, "max_tokens": max_tokens, "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "Write an order for a shop as JSON."}]}
        stream(st, dict(base, seed=0, max_tokens=8))  # warm-up
        for k in range(rounds):
            rate, _, _ = stream(st, dict(base, seed=k, ignore_eos=True))
            plain.append(rate)
            rate, text, n = stream(st, dict(base, seed=k, response_format={
                "type": "json_schema", "json_schema": {"name": "order", "schema": schema, "strict": True}}))
            constrained.append(rate)
            toks.append(n)
            try:
                jsonschema.validate(json.loads(text), schema)
                valid += 1
            except Exception:  # noqa: BLE001 — a cut (max_tokens) output does not parse
                pass
    finally:
        st.stop()
    mp, mc = statistics.median(plain), statistics.median(constrained)
    print("temperature %g" % temp)
    print("| decode | rounds | median tok/s | min | max |")
    print("|---|---|---|---|---|")
    print("| plain (ignore_eos, %d tokens) | %d | %.1f | %.1f | %.1f |" % (max_tokens, rounds, mp, min(plain), max(plain)))
    print("| json_schema bench_schema.json (%d..%d tokens) | %d | %.1f | %.1f | %.1f |" %
          (min(toks), max(toks), rounds, mc, min(constrained), max(constrained)))
    print("constrained / plain: %.3f; %d of %d constrained outputs validate (the rest cut by max_tokens)" %
          (mc / mp, valid, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
