#!/usr/bin/env python3
"""Issue 10 target 4: time to first token and inter-token latency through the whole server
path — HTTPS client -> nginx (TLS) -> FastCGI -> scheduler -> CUDA engine — against the
engine's own figures from `sparkd bench` on the same model in the same call. Runs ON the GPU
machine (tests/gpu/bench.sh step `serve`):

    SPARKD_BIN=sparkd SPARKD_MODEL=q8b.gguf [SPARKD_NGINX=nginx SPARKD_NGINX_PARAMS=fastcgi_params] python3 tests/gpu/serve_latency.py

1. engine: `sparkd bench --npl 1,64 -p 512 -n 128 --kv f16`: the prefill time of one
   512-token prompt and the decode step time (ms/step) at 1 and 64 sequences.
2. server: nginx + sparkd (tests/e2e/harness.py's stack: self-signed TLS, the product's
   nginx site) with the CUDA engine, max_seqs 64, KV f16. Streaming /v1/completions with
   512 random token ids as the prompt (distinct per request: no prefix-cache hits), 128
   tokens, ignore_eos, greedy.
   - solo: one request at a time (the first is a warm-up): TTFT, and ITL as the mean gap
     (last token time - first token time) / (tokens - 1) and the p50 of the chunk gaps;
   - 64 concurrent streams: TTFT p50/p99, ITL p50/p99 over every chunk gap, and the
     steady-state ITL (gaps that start after the last stream's first token: all 64 decoding).
3. checks (`ok` / `not ok`): server TTFT (solo) within 10% of the engine's prefill + one step,
   server ITL (solo) and steady ITL (64) within 10% of the engine's step at 1 and 64.
A chunk can carry more than one token where a token ends inside a UTF-8 character; the
token counts come from the usage record (stream_options.include_usage), so the mean ITL is
exact and the gap percentiles are over chunks (their count is printed beside the tokens).
"""
import http.client
import json
import os
import random
import re
import ssl
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402

BIN = os.path.abspath(os.environ.get("SPARKD_BIN", "build/sparkd"))
MODEL = os.path.abspath(os.environ["SPARKD_MODEL"])
harness.BIN, harness.MODEL = BIN, MODEL
if os.environ.get("SPARKD_NGINX"):
    harness.NGINX = os.environ["SPARKD_NGINX"]
N_PROMPT, N_GEN, N_STREAMS = 512, 128, int(os.environ.get("N_STREAMS", "64"))
FAILED = 0
DEVICE = os.environ.get("SPARKD_DEVICE", "cuda")  # cpu: a smoke run of this script on a small model
VOCAB_HI = int(os.environ.get("VOCAB_HI", "100000"))  # prompt ids are drawn from [VOCAB_HI / 10, VOCAB_HI)


def ok(cond, name):
    global FAILED
    print(("ok - " if cond else "not ok - ") + name, flush=True)
    FAILED += 0 if cond else 1


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))] if xs else float("nan")


def engine_figures():
    out = subprocess.run([BIN, "bench", "-m", MODEL, "--device", DEVICE, "--kv", "f16", "--npl", "1,%d" % N_STREAMS,
                          "-p", str(N_PROMPT), "-n", str(N_GEN)], capture_output=True, text=True, timeout=300).stdout
    print(out.strip(), flush=True)
    fig = {}
    for m in re.finditer(r"npl (\d+): pp \d+ x \d+: [\d.]+ tok/s \(([\d.]+) s\); tg \d+ x \d+: [\d.]+ tok/s \(([\d.]+) ms/step\)", out):
        fig[int(m.group(1))] = (float(m.group(2)), float(m.group(3)) / 1e3)
    return fig


def stream(st, ids, res):
    """One streaming completion; res gets t0, chunk arrival times, tokens, error."""
    body = json.dumps({"model": "synth", "prompt": ids, "max_tokens": N_GEN, "ignore_eos": True, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    c = http.client.HTTPSConnection("127.0.0.1", st.port, context=ssl.create_default_context(cafile=st.cert), timeout=300)
    try:
        res["t0"] = time.perf_counter()
        c.request("POST", "/v1/completions", body, {"Content-Type": "application/json",
                                                     "Authorization": "Bearer " + harness.API_KEY})
        r = c.getresponse()
        if r.status != 200:
            res["error"] = "HTTP %d %s" % (r.status, r.read()[:200])
            return
        times = []
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                res["tokens"] = ev["usage"]["completion_tokens"]
            if ev.get("choices") and ev["choices"][0].get("text"):
                times.append(time.perf_counter())
        res["times"] = times
    except Exception as e:  # noqa: BLE001 — reported as a failed check
        res["error"] = repr(e)
    finally:
        c.close()


def prompt(rng, vocab_hi):
    return [rng.randrange(vocab_hi // 10, vocab_hi) for _ in range(N_PROMPT)]


def main():
    fig = engine_figures()
    if 1 not in fig or N_STREAMS not in fig:
        ok(False, "engine figures parsed from sparkd bench")
        return 1
    (pp1, step1), (_, step64) = fig[1], fig[N_STREAMS]
    st = harness.Stack(ini_extra={
        "server": {"workers": str(2 * N_STREAMS + 16)},
        "model": {"id": "synth", "context": str(N_PROMPT + N_GEN + 64)},
        "engine": {"device": DEVICE, "kv_type": "f16", "max_seqs": str(N_STREAMS),
                   "max_batched_tokens": "2048"},
        "limits": {"max_queue": str(N_STREAMS), "max_tokens": str(N_GEN), "max_body_bytes": "4194304"},
    }, max_conns=2 * N_STREAMS + 16,
        render_extra=["--fastcgi-params", os.environ["SPARKD_NGINX_PARAMS"]] if os.environ.get("SPARKD_NGINX_PARAMS") else None)
    try:
        print("# stack ready in %.1f s" % st.start(wait=False).wait_ready(timeout=240), flush=True)
        rng = random.Random(7)
        solo = []
        for i in range(4):
            res = {}
            stream(st, prompt(rng, VOCAB_HI), res)
            if res.get("error") or not res.get("times"):
                ok(False, "solo stream %d: %s" % (i, res.get("error", "no tokens")))
                return 1
            if i:
                solo.append(res)
        ttft = statistics.median(r["times"][0] - r["t0"] for r in solo)
        itl = statistics.median((r["times"][-1] - r["times"][0]) / (r["tokens"] - 1) for r in solo)
        gaps = [b - a for r in solo for a, b in zip(r["times"], r["times"][1:])]
        print("solo: TTFT %.2f ms (engine prefill + 1 step %.2f ms); ITL mean %.3f ms, chunk gap p50 %.3f p99 %.3f ms"
              " (engine step %.3f ms); %d tokens in %d chunks" % (
                  ttft * 1e3, (pp1 + step1) * 1e3, itl * 1e3, pct(gaps, .5) * 1e3, pct(gaps, .99) * 1e3, step1 * 1e3,
                  solo[0]["tokens"], len(solo[0]["times"])), flush=True)
        ok(ttft <= 1.10 * (pp1 + step1), "solo TTFT within 10%% of the engine's (%.2f vs %.2f ms)" % (ttft * 1e3, (pp1 + step1) * 1e3))
        ok(itl <= 1.10 * step1, "solo ITL within 10%% of the engine's step (%.3f vs %.3f ms)" % (itl * 1e3, step1 * 1e3))

        results = [{} for _ in range(N_STREAMS)]
        ths = [threading.Thread(target=stream, args=(st, prompt(rng, VOCAB_HI), results[i])) for i in range(N_STREAMS)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        errs = [r.get("error") for r in results if r.get("error") or not r.get("times")]
        ok(not errs, "%d concurrent streams completed (%s)" % (N_STREAMS, errs[:2]))
        if errs:
            return 1
        ttfts = [r["times"][0] - r["t0"] for r in results]
        all_gaps = [b - a for r in results for a, b in zip(r["times"], r["times"][1:])]
        t_all = max(r["times"][0] for r in results)
        steady = [b - a for r in results for a, b in zip(r["times"], r["times"][1:]) if a >= t_all]
        # the mean step while all streams decode: each stream's tokens after t_all over the time they took
        span = [(r["times"][-1] - max(t_all, r["times"][0]), sum(1 for t in r["times"] if t > t_all)) for r in results]
        steady_mean = statistics.median(s / n for s, n in span if n > 1)
        tok = sum(r["tokens"] for r in results)
        wall = max(r["times"][-1] for r in results) - min(r["t0"] for r in results)
        print("%d streams: TTFT p50 %.1f p99 %.1f ms; ITL (all chunk gaps) p50 %.2f p99 %.2f ms; steady (all decoding) "
              "p50 %.2f p99 %.2f ms, mean %.2f ms (engine step at %d: %.2f ms); %d tokens in %.2f s = %.0f tok/s" % (
                  N_STREAMS, pct(ttfts, .5) * 1e3, pct(ttfts, .99) * 1e3, pct(all_gaps, .5) * 1e3, pct(all_gaps, .99) * 1e3,
                  pct(steady, .5) * 1e3, pct(steady, .99) * 1e3, steady_mean * 1e3, N_STREAMS, step64 * 1e3, tok, wall,
                  tok / wall), flush=True)
        ok(steady_mean <= 1.10 * step64, "steady ITL at %d streams within 10%% of the engine's step (%.2f vs %.2f ms)" % (
            N_STREAMS, steady_mean * 1e3, step64 * 1e3))
    finally:
        st.stop()
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
