#!/usr/bin/env python3
"""The whole-box memory plan for the mixture-of-experts models, from header-only files.

make_synth_moe.py --header-only writes gpt-oss-120b's (and Qwen3-30B-A3B's) header,
metadata and tensor table with the published files' tensor types and extends the file to
its full size without data (sparse: ~4 MB of disk for 63 GB). `sparkd info` reads only
the header and prints the engine's plan; this test checks it against arithmetic done here
from the gguf package's reading of the same file:
  weights   = the tensors' bytes (gguf-py's n_bytes, summed)
  KV/token  = attention layers x 2 (K, V) x KV heads x (head_dim x element bytes + the f32
              scale per (position, head) row of q8)
and the verdicts on a 128 GB machine (--memory-limit 122070 MiB = 128.0e9 bytes):
  gpt-oss-120b, 131072 positions, 1 sequence, f16 KV    fits
  gpt-oss-120b, 131072 positions, 8 sequences, q8 KV    fits
  gpt-oss-120b, 131072 positions, 8 sequences, f16 KV   does not (140.7 GB: every layer's
                                                        KV is kept for every position)
"""
import os
import re
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ok, exit_code  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
BIN = os.environ.get("SPARKD_BIN", os.path.join(BUILD, "sparkd"))
PY = os.environ.get("SPARKD_PY", sys.executable)
GEN = os.path.join(ROOT, "tests", "golden", "make_synth_moe.py")
LIMIT_MIB = 122070  # 128.0e9 bytes


def info(path, *args):
    return subprocess.run([BIN, "info", "-m", path, "-t", "2"] + list(args), capture_output=True, text=True,
                          timeout=300)


def num(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def main():
    import gguf
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gpt-oss-120b.gguf")
        r = subprocess.run([PY, GEN, "--out", path, "--preset", "gpt-oss-120b", "--header-only"],
                           capture_output=True, text=True)
        ok(r.returncode == 0, "header-only gpt-oss-120b written", r.stderr[-400:])
        st = os.stat(path)
        ok(st.st_size > 63e9 and st.st_blocks * 512 < 64 << 20,
           "a %.1f GB file in %.1f MB of disk" % (st.st_size / 1e9, st.st_blocks * 512 / 1e6))
        g = gguf.GGUFReader(path)
        weights = sum(int(t.n_bytes) for t in g.tensors)
        types = {}
        for t in g.tensors:
            types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        ok(types == {"F32": 433, "Q8_0": 146, "MXFP4": 108},
           "tensor types as ggml-org's gpt-oss-120b GGUF stores them (MXFP4 experts, Q8_0 attention and "
           "embeddings, F32 router/norms/biases/sinks): %s" % types)

        r = info(path, "-c", "131072", "--seqs", "1", "--kv", "f16", "--memory-limit", str(LIMIT_MIB))
        out = r.stdout
        ok(r.returncode == 0, "info exits 0", r.stderr[-400:])
        ok("architecture   gpt-oss" in out and "36 (18 with a sliding window of 128, 18 global)" in out,
           "36 layers, 18 sliding over 128", out)
        ok("4 of 128 experts of 2880, softmax over the top-k logits, SwiGLU (gpt-oss)" in out, "MoE line", out)
        ok("yarn x32" in out and "base 150000" in out, "YaRN x32, theta 150000", out)
        w_mb = num(r"weights ([0-9.]+) MB", out)
        ok(w_mb is not None and abs(w_mb - weights / 1e6) < 0.1,
           "plan's weights %.1f MB = the tensors' bytes %.1f MB" % (w_mb or -1, weights / 1e6))
        kv_layers, heads, hd = 36, 8, 64
        f16_tok = kv_layers * 2 * heads * hd * 2
        ok(num(r"KV cache\s+([0-9.]+) KB/token", out) == round(f16_tok / 1e3, 1),
           "f16 KV %.1f KB/token = 36 x 2 x 8 x 64 x 2 bytes" % (f16_tok / 1e3))
        ok("the plan fits" in out, "131072 positions at batch 1, f16 KV: fits 128 GB",
           [l for l in out.splitlines() if "plan" in l or "memory" in l])

        r = info(path, "-c", "131072", "--seqs", "8", "--kv", "q8", "--memory-limit", str(LIMIT_MIB))
        out = r.stdout
        q8_tok = kv_layers * 2 * heads * (hd * 1 + 4)
        ok(num(r"KV cache\s+([0-9.]+) KB/token", out) == round(q8_tok / 1e3, 1),
           "q8 KV %.1f KB/token = 36 x 2 x 8 x (64 + 4 scale bytes)" % (q8_tok / 1e3))
        kv_mb = num(r"\+ KV ([0-9.]+) MB", out)
        ok(kv_mb is not None and abs(kv_mb - q8_tok * 131072 * 8 / 1e6) < 0.1,
           "8 x 131072 positions: KV %.1f MB = %.1f MB" % (kv_mb or -1, q8_tok * 131072 * 8 / 1e6))
        total = num(r"buffers [0-9.]+ MB = ([0-9.]+) MB", out)
        ok(total is not None and total < 128e3 and "the plan fits" in out,
           "8 sequences of 131072, q8 KV: %.1f GB fits 128 GB" % ((total or 0) / 1e3),
           [l for l in out.splitlines() if "plan" in l or "memory" in l])

        r = info(path, "-c", "131072", "--seqs", "8", "--kv", "f16", "--memory-limit", str(LIMIT_MIB))
        ok("the plan does not fit" in r.stdout,
           "negative control: 8 sequences of 131072 with f16 KV (%.1f GB) does not fit" %
           ((num(r"buffers [0-9.]+ MB = ([0-9.]+) MB", r.stdout) or 0) / 1e3))

        qpath = os.path.join(d, "qwen3-30b-a3b.gguf")
        r = subprocess.run([PY, GEN, "--out", qpath, "--preset", "qwen3-30b-a3b", "--header-only"],
                           capture_output=True, text=True)
        r = info(qpath, "-c", "40960", "--seqs", "8", "--kv", "f16", "--memory-limit", str(LIMIT_MIB))
        out = r.stdout
        ok(r.returncode == 0 and "8 of 128 experts of 768, top-k of the softmax, renormalized, SwiGLU" in out,
           "Qwen3-30B-A3B: 8 of 128 experts of 768, renormalized", out + r.stderr[-300:])
        qtok = 48 * 2 * 4 * 128 * 2
        ok(num(r"KV cache\s+([0-9.]+) KB/token", out) == round(qtok / 1e3, 1) and "the plan fits" in out,
           "Qwen3-30B-A3B: %.1f KB/token f16, 8 x 40960 positions fit 128 GB" % (qtok / 1e3))
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
