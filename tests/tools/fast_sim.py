#!/usr/bin/env python3
"""fast_sim.py — a numpy reference forward of Gemma 3 (the default model, gemma-3-270m
Q4_K_M) that emulates the CUDA engine's `--precision fast` input rounding product by
product, to find which products' int8 activations move the logits (kernels/PERF.md,
"Round 5, helper fastacc").

The forward follows appliance/model/arch_gemma3.c and appliance/engine/cpu/cpu.c:
embeddings (Q8_0 rows) * sqrt(dim), pre-attention RMSNorm, q/k/v, per-head QK RMSNorm,
NeoX RoPE (local layers base 10000, global every 6th layer base rope.freq_base), f32 KV,
sliding window on local layers, post-attention norm, GeGLU (tanh GELU), post-FFN norm,
output norm, tied head; weights dequantized by the `gguf` package (f32). All math in f32.

The CUDA engine's products at precision fast read (kernels/engine.cu, gemv.cu, gemm.cu):
  T == 1 (GEMV):  Q8_0 / Q4_0 / Q4_K / Q6_K weights: the input row quantized to int8 per
                  natural block of 32 (d = amax / 127 in f32, q = roundf(x / d)) -> "q8";
                  other types (Q5_0 ...) the f32 row -> "exact".
  T > 1 (GEMM):   Q8_0 / Q4_K / Q6_K (mmq): the same int8 rows -> "q8"; other types the
                  f16 tensor-core kernel with the hi half only (row scaled by 2^-e so its
                  amax is in [2^13, 2^14), rounded to f16) -> "f16".
  head:           T = rows that want logits (1 for a prompt or a decode step).
At precision exact every product is "exact" (hi + lo halves: ~22 bits, f32 for this study).

A policy maps product kind (qkv, o, gateup, down, head) -> rounding mode:
  gpu     as the GPU does it at fast (by weight type and T, above)
  exact   f32 input
  q8      int8 per 32 at any T (also types the GPU would not take)
  f16     the hi-half f16 rounding
  q8f16   "gpu", but where the GPU would use q8 use f16 instead (the product leaves the int8 path)
  q8rX    "gpu", but rows whose amax / rms > X leave the int8 path (f32/f16 instead)
  g16     "gpu", with int8 blocks of 16 instead of 32 (kernel-side alternative, not built)
  g2      "gpu", with two int8 terms per block (q8x2; kernel-side alternative, not built)
  hf      round 6's f16 product (gemm.cu hfast_kernel) at T >= FAST_SIM_HF_MIN_T (default 33)
          for the types it takes (HF_TYPES): the input's f16 hi form times the weights rounded
          once to f16 as the kernel builds them, f16(f16(s) * (code - off) + f16(m)) per group;
          exact elsewhere (a narrow model's fast below the threshold)
  hfgpu   "gpu", but where hf applies hf instead (a wide model's fast with hfast)
Policies are written KIND=MODE,KIND=MODE (unnamed kinds: gpu); "fast" = all gpu, "exact"
= all exact, "hf" = all hf.

Run (from the repository root; ~2-6 minutes per policy on 2 cores):
  build/venv/bin/python3 tests/tools/fast_sim.py check       # the forward vs the CPU engine
        (needs build/tests/tool_logits; prints rel L2 of first-step logits, must be ~1e-6)
  build/venv/bin/python3 tests/tools/fast_sim.py study [POLICY ...]
        for each policy: rel L2 of first-step logits vs exact on the engine check's four
        random prompts (kernels/modelcheck.cu: 1, 7, 67, 300 tokens) and on the 12 golden
        prompts; along HF's greedy path of each golden case (tests/golden/gemma3-270m*.json,
        teacher-forced, prompt as one T > 1 step then T = 1 steps) the steps where the
        policy's argmax differs from HF's and HF's top-2 margin there (FAST_SIM_QUICK=1:
        first steps only; FAST_SIM_JSON=FILE: the results as JSON).
  build/venv/bin/python3 tests/tools/fast_sim.py stats       # activation amax / rms per product
"""
import json
import os
import sys
import subprocess
import time

import numpy as np

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODEL = os.environ.get("SPARKD_MODEL", os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
F32 = np.float32

# weight types (gguf GGMLQuantizationType names) the GPU's int8 paths take
DP4A_TYPES = {"Q8_0", "Q4_0", "Q4_K", "Q6_K"}  # gemv.cu gdq_type (T == 1)
MMQ_TYPES = {"Q8_0", "Q4_K", "Q6_K"}  # mmq.cu cuda_mmq_type_ok (T > 1)
HF_TYPES = {"Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q5_K", "Q6_K"}  # gemm.cu cuda_hfast_type_ok
HF_MIN_T = int(os.environ.get("FAST_SIM_HF_MIN_T", "33"))
KINDS = ("qkv", "o", "gateup", "down", "head")


# ---------------------------------------------------------------- input roundings

def round_away(v):
    """roundf: halves away from zero (numpy's round is to even)."""
    return np.where(v >= 0, np.floor(v + F32(0.5)), np.ceil(v - F32(0.5))).astype(F32)


def q8(x, block=32):
    """The dp4a GEMV / mmq input: per natural block of 32, d = amax / 127 (f32),
    q = roundf(x / d), q = 0 where amax = 0; returns q * d (what the int8 product
    multiplies, up to f32 summation order)."""
    T, K = x.shape
    b = x.reshape(T, K // block, block)
    a = np.abs(b).max(axis=2, keepdims=True)
    d = (a / F32(127.0)).astype(F32)
    safe = np.where(d == 0, F32(1), d)
    q = np.where(a == 0, F32(0), round_away((b / safe).astype(F32)))
    return (q * d).astype(F32).reshape(T, K)


def q8x2(x):
    """Two int8 terms per block of 32: q8 of x, then q8 of what it left (a kernel-side
    alternative: twice the int8 products, ~2^-14 of the block's amax)."""
    a = q8(x)
    return (a + q8((x - a).astype(F32))).astype(F32)


def f16hi(x):
    """The f16 tensor-core kernel at exact = 0: the row scaled by 2^-e (amax in
    [2^13, 2^14)), rounded to f16 (hi half only), scaled back."""
    a = np.abs(x).max(axis=1, keepdims=True)
    _, ex = np.frexp(a)
    e = np.clip(ex.astype(np.int32) - 14, -120, 120)
    e = np.where(a > 0, e, 0)
    s = np.ldexp(F32(1), -e).astype(F32)
    h = (x * s).astype(np.float16).astype(F32)
    return (h / s).astype(F32)


def row_ratio(x):
    """amax / rms of each row."""
    rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=1)) + 1e-30
    return np.abs(x).max(axis=1) / rms


def hf_weight(w, typ, raw):
    """The weights as hfast_kernel multiplies them: per scale group f16(s16 * q + m16) with
    s16 = f16(s), m16 = f16(m) (s, m in f32 as quant.c / group_sm), rounded once.
    w: the f32 dequantized matrix (rows, cols); raw: its GGUF bytes (rows, row_bytes)."""
    if typ in ("Q8_0", "Q4_0", "Q5_0"):  # d * (code - off) is exact in f32; d is f16 already
        return w.astype(np.float16).astype(F32)
    rows, cols = w.shape
    nb = cols // 256
    if typ == "Q6_K":
        b = raw.reshape(rows, nb, 210)
        d = b[:, :, 208:210].copy().view(np.float16).astype(F32)  # (rows, nb, 1)
        sc = b[:, :, 192:208].view(np.int8).astype(F32)  # (rows, nb, 16)
        s = (d * sc).astype(F32)
        wg = w.reshape(rows, nb, 16, 16).astype(np.float64)
        sd = s[..., None].astype(np.float64)
        q = np.where(sd != 0, np.round(wg / np.where(sd != 0, sd, 1)), 0)
        out = s[..., None].astype(np.float16).astype(np.float64) * q
        return out.astype(np.float16).astype(F32).reshape(rows, cols)
    if typ in ("Q4_K", "Q5_K"):
        bb = 144 if typ == "Q4_K" else 176
        b = raw.reshape(rows, nb, bb)
        d = b[:, :, 0:2].copy().view(np.float16).astype(F32)
        dmin = b[:, :, 2:4].copy().view(np.float16).astype(F32)
        S = b[:, :, 4:16].astype(np.int32)
        sc = np.zeros((rows, nb, 8), np.int32)
        mn = np.zeros((rows, nb, 8), np.int32)
        for j in range(8):  # quant.c kscale_min
            if j < 4:
                sc[..., j] = S[..., j] & 63
                mn[..., j] = S[..., j + 4] & 63
            else:
                sc[..., j] = (S[..., j + 4] & 0xF) | ((S[..., j - 4] >> 6) << 4)
                mn[..., j] = (S[..., j + 4] >> 4) | ((S[..., j] >> 6) << 4)
        s = (d * sc.astype(F32)).astype(F32)
        m = (-(dmin * mn.astype(F32))).astype(F32)
        wg = w.reshape(rows, nb, 8, 32).astype(np.float64)
        sd, md = s[..., None].astype(np.float64), m[..., None].astype(np.float64)
        q = np.where(sd != 0, np.round((wg - md) / np.where(sd != 0, sd, 1)), 0)
        out = s[..., None].astype(np.float16).astype(np.float64) * q + m[..., None].astype(np.float16).astype(np.float64)
        return out.astype(np.float16).astype(F32).reshape(rows, cols)
    raise ValueError(typ)


# ---------------------------------------------------------------- model

class Gemma3:
    def __init__(self, path=MODEL):
        import gguf
        r = gguf.GGUFReader(path)

        def fld(k, default=None):
            f = r.fields.get(k)
            if f is None:
                return default
            return f.parts[f.data[0]].tolist()[0]

        self.dim = fld("gemma3.embedding_length")
        self.n_layer = fld("gemma3.block_count")
        self.ffn = fld("gemma3.feed_forward_length")
        self.n_head = fld("gemma3.attention.head_count")
        self.n_kv = fld("gemma3.attention.head_count_kv")
        self.hd = fld("gemma3.attention.key_length")
        self.eps = F32(fld("gemma3.attention.layer_norm_rms_epsilon"))
        self.base = F32(fld("gemma3.rope.freq_base", 10000.0))
        self.window = fld("gemma3.attention.sliding_window", 0)
        self.pattern = fld("gemma3.attention.sliding_window_pattern", 6)
        self.softcap = fld("gemma3.final_logit_softcapping", 0.0)
        self.W, self.types, self.raw, self.W16 = {}, {}, {}, {}
        for t in r.tensors:
            w = gguf.quants.dequantize(t.data, t.tensor_type)
            self.W[t.name] = np.ascontiguousarray(w, dtype=F32)
            self.types[t.name] = t.tensor_type.name
            if t.tensor_type.name in HF_TYPES:
                self.raw[t.name] = t.data
        self.V = self.W["token_embd.weight"].shape[0]
        self.head = "output.weight" if "output.weight" in self.W else "token_embd.weight"
        self.scale = F32(1.0) / np.sqrt(F32(self.hd))
        half = self.hd // 2

        def inv_freq(base):
            i = np.arange(half, dtype=F32)
            return (F32(1.0) / np.power(F32(base), (F32(2) * i) / F32(self.hd))).astype(F32)

        self.inv = {0: inv_freq(self.base), 1: inv_freq(10000.0)}
        self.local = [self.window > 0 and self.pattern > 0 and (il + 1) % self.pattern != 0 for il in range(self.n_layer)]

    def hfw(self, n):
        if n not in self.W16:
            self.W16[n] = hf_weight(self.W[n], self.types[n], np.asarray(self.raw[n]))
        return self.W16[n]

    def wname(self, il, n):
        return "blk.%d.%s.weight" % (il, n)


def rmsnorm(x, w, eps):
    ss = (x * x).sum(axis=-1, keepdims=True, dtype=F32)
    r = F32(1.0) / np.sqrt(ss / F32(x.shape[-1]) + eps)
    return (x * r * w).astype(F32)


def gelu_tanh(x):
    c = F32(0.7978845608028654)
    return (F32(0.5) * x * (F32(1.0) + np.tanh(c * (x + F32(0.044715) * x * x * x)))).astype(F32)


def rope_neox(v, pos, inv):
    """v (T, H, hd), pos (T,)"""
    half = inv.shape[0]
    th = (pos.astype(F32)[:, None] * inv[None, :]).astype(F32)
    cs, sn = np.cos(th)[:, None, :].astype(F32), np.sin(th)[:, None, :].astype(F32)
    x0, x1 = v[..., :half], v[..., half:]
    return np.concatenate([x0 * cs - x1 * sn, x0 * sn + x1 * cs], axis=-1).astype(F32)


class Policy:
    """KIND=MODE[,KIND=MODE...]; KIND may be `all` and may carry @A-B (layers A..B only,
    e.g. all@0-3=exact); later parts override earlier ones."""

    def __init__(self, spec):
        self.spec = spec
        self.rules = []  # (kinds, layer range or None, mode), last match wins
        if spec == "exact":
            self.rules.append((KINDS, None, "exact"))
        elif spec in ("hf", "hfgpu"):
            self.rules.append((KINDS, None, spec))
        elif spec not in ("fast", "gpu"):
            for part in spec.split(","):
                k, m = part.split("=")
                lr = None
                if "@" in k:
                    k, r = k.split("@")
                    a, b = r.split("-") if "-" in r else (r, r)
                    lr = (int(a), int(b))
                ks = KINDS if k == "all" else (k,)
                for kk in ks:
                    assert kk in KINDS, k
                self.rules.append((ks, lr, m))

    def mode(self, kind, il):
        m = "gpu"
        for ks, lr, mm in self.rules:
            if kind in ks and (lr is None or (il is not None and lr[0] <= il <= lr[1])):
                m = mm
        return m

    def apply(self, kind, wtype, x, stats=None, il=None):
        """the input the product multiplies (il: the layer, None for the head)"""
        m = self.mode(kind, il)
        T = x.shape[0]
        if m == "exact":
            return x
        if m == "q8":
            return q8(x)
        if m == "f16":
            return f16hi(x)
        if m in ("hf", "hfgpu") and T >= HF_MIN_T and wtype in HF_TYPES:
            return (f16hi(x), "hfw")  # Session.mm multiplies the hfast weights
        if m == "hf":
            return x
        if m == "hfgpu":
            m = "gpu"
        # GPU modes
        int8 = (wtype in DP4A_TYPES) if T == 1 else (wtype in MMQ_TYPES)
        other = (lambda v: v) if T == 1 else f16hi  # what the non-int8 path reads
        if not int8:
            return other(x)
        if m == "gpu":
            return q8(x)
        if m == "g16":
            return q8(x, 16)
        if m == "g2":
            return q8x2(x)
        if m == "q8f16":
            return other(x)
        if m.startswith("q8r"):
            thr = float(m[3:])
            r = row_ratio(x)
            out = q8(x)
            big = r > thr
            if big.any():
                out[big] = other(x[big])
            if stats is not None:
                stats.setdefault(kind, [0, 0])
                stats[kind][0] += int(big.sum())
                stats[kind][1] += T
            return out
        raise ValueError(m)


class Session:
    """One sequence: an f32 KV cache, forward of T tokens at a time."""

    def __init__(self, g, pol, n_ctx=512):
        self.g, self.pol = g, pol
        self.K = np.zeros((g.n_layer, n_ctx, g.n_kv, g.hd), F32)
        self.Vc = np.zeros((g.n_layer, n_ctx, g.n_kv, g.hd), F32)
        self.n = 0
        self.stats = {}
        self.record = None  # dict kind -> list of input rows (stats mode)

    def mm(self, kind, x, names, il=None):
        g = self.g
        outs = []
        for n in names:
            xi = self.pol.apply(kind, g.types[n], x, self.stats, il)
            W = g.W[n]
            if isinstance(xi, tuple):
                xi, W = xi[0], g.hfw(n)
            if self.record is not None:
                self.record.setdefault(kind, []).append(x)
            outs.append((xi @ W.T).astype(F32))
        return outs

    def forward(self, ids):
        g = self.g
        T = len(ids)
        pos = np.arange(self.n, self.n + T)
        E = g.W["token_embd.weight"]
        x = (E[np.array(ids)] * np.sqrt(F32(g.dim))).astype(F32)  # sqrtf(dim) as arch_gemma3.c
        for il in range(g.n_layer):
            W = lambda n: g.W[g.wname(il, n)]
            xn = rmsnorm(x, W("attn_norm"), g.eps)
            q, k, v = self.mm("qkv", xn, [g.wname(il, "attn_q"), g.wname(il, "attn_k"), g.wname(il, "attn_v")], il)
            q = rmsnorm(q.reshape(T, g.n_head, g.hd), W("attn_q_norm"), g.eps)
            k = rmsnorm(k.reshape(T, g.n_kv, g.hd), W("attn_k_norm"), g.eps)
            inv = g.inv[1 if g.local[il] else 0]
            q, k = rope_neox(q, pos, inv), rope_neox(k, pos, inv)
            self.K[il, self.n:self.n + T] = k
            self.Vc[il, self.n:self.n + T] = v.reshape(T, g.n_kv, g.hd)
            S = self.n + T
            Kc, Vc = self.K[il, :S], self.Vc[il, :S]
            grp = g.n_head // g.n_kv
            att = np.zeros((T, g.n_head, g.hd), F32)
            sp = np.arange(S)
            mask = sp[None, :] <= pos[:, None]
            if g.local[il]:
                mask &= sp[None, :] >= (pos[:, None] - g.window + 1)
            for h in range(g.n_head):
                hk = h // grp
                sc = (q[:, h, :] @ Kc[:, hk, :].T).astype(F32) * g.scale
                sc = np.where(mask, sc, -np.inf).astype(F32)
                mx = sc.max(axis=1, keepdims=True)
                p = np.exp(sc - mx).astype(F32)
                p = p / p.sum(axis=1, keepdims=True, dtype=F32)
                att[:, h, :] = (p @ Vc[:, hk, :]).astype(F32)
            (o,) = self.mm("o", att.reshape(T, g.n_head * g.hd), [g.wname(il, "attn_output")], il)
            o = rmsnorm(o, W("post_attention_norm"), g.eps)
            x = (x + o).astype(F32)
            xn = rmsnorm(x, W("ffn_norm"), g.eps)
            ga, up = self.mm("gateup", xn, [g.wname(il, "ffn_gate"), g.wname(il, "ffn_up")], il)
            a = (gelu_tanh(ga) * up).astype(F32)
            (o,) = self.mm("down", a, [g.wname(il, "ffn_down")], il)
            o = rmsnorm(o, W("post_ffw_norm"), g.eps)
            x = (x + o).astype(F32)
        self.n += T
        xo = rmsnorm(x[-1:], g.W["output_norm.weight"], g.eps)
        (lg,) = self.mm("head", xo, [g.head])
        lg = lg[0]
        if g.softcap:
            lg = (F32(g.softcap) * np.tanh(lg / F32(g.softcap))).astype(F32)
        return lg


# ---------------------------------------------------------------- prompts

def modelcheck_prompts(V, lens=(1, 7, 67, 300)):
    """kernels/modelcheck.cu's random prompts (xorshift64 from 0x5eed1234 ^ V)."""
    M = (1 << 64) - 1
    x = 0x5eed1234 ^ V
    out = []
    for n in lens:
        p = []
        for _ in range(n):
            x ^= (x << 13) & M
            x ^= x >> 7
            x ^= (x << 17) & M
            p.append(x % V)
        out.append(p)
    return out


def golden_cases():
    cases = []
    for f in ("gemma3-270m.json", "gemma3-270m-hfids.json"):
        ref = json.load(open(os.path.join(ROOT, "tests", "golden", f)))
        for i, c in enumerate(ref["cases"]):
            cases.append(("%s#%d" % (f.split(".json")[0], i), c))
    return cases


def rel_l2(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.sqrt(((a - b) ** 2).sum() / (b ** 2).sum()))


# ---------------------------------------------------------------- commands

def cpu_logits(ids):
    tool = os.path.join(BUILD, "tests", "tool_logits")
    r = subprocess.run([tool, MODEL, "1", "1", "0"] + [str(i) for i in ids], capture_output=True, text=True,
                       env=dict(os.environ, SPARKD_DEVICE="cpu"), check=True)
    for line in r.stdout.splitlines():
        if line.startswith("strided "):
            return np.array([float(v) for v in line.split()[1:]], F32)
    raise RuntimeError("no strided line")


def cmd_check(g):
    worst = 0.0
    prompts = modelcheck_prompts(g.V, (1, 7, 67)) + [c["prompt_ids"] for _, c in golden_cases()[:2]]
    for p in prompts:
        ref = cpu_logits(p)
        s = Session(g, Policy("exact"))
        lg = s.forward(p)
        r = rel_l2(lg, ref)
        worst = max(worst, r)
        print("check prompt %3d tokens: rel L2 vs CPU engine %.2e, max |diff| %.2e, argmax %d / %d" % (
            len(p), r, float(np.abs(lg - ref).max()), int(lg.argmax()), int(ref.argmax())))
    print("%s - numpy forward within 1e-5 of the CPU engine (worst %.2e)" % ("ok" if worst < 1e-5 else "not ok", worst))
    return 0 if worst < 1e-5 else 1


def run_policy(g, spec, exact_cache):
    pol = Policy(spec)
    t0 = time.time()
    res = {"policy": spec, "modelcheck": [], "golden_first": [], "flips": [], "rows_left": {}}
    # engine check prompts: first-step logits vs exact
    for p in modelcheck_prompts(g.V):
        key = ("mc", len(p))
        if key not in exact_cache:
            exact_cache[key] = Session(g, Policy("exact")).forward(p)
        s = Session(g, pol)
        lg = s.forward(p)
        res["modelcheck"].append((len(p), rel_l2(lg, exact_cache[key])))
        for k, v in s.stats.items():
            a = res["rows_left"].setdefault(k, [0, 0])
            a[0] += v[0]
            a[1] += v[1]
    # goldens: teacher-forced along HF's greedy path
    for name, c in golden_cases():
        s = Session(g, pol)
        ids = c["prompt_ids"]
        lg = s.forward(ids)
        key = ("g", name)
        if key not in exact_cache:
            exact_cache[key] = Session(g, Policy("exact")).forward(ids)
        res["golden_first"].append((name, rel_l2(lg, exact_cache[key])))
        gi = c["greedy_ids"]
        for step in range(0 if os.environ.get("FAST_SIM_QUICK") else len(gi)):
            if step:
                lg = s.forward([gi[step - 1]])
            am = int(lg.argmax())
            if am != gi[step]:
                top = np.sort(lg)[-2:]
                res["flips"].append((name, step, c["margins"][step], float(lg[am] - lg[gi[step]])))
        for k, v in s.stats.items():
            a = res["rows_left"].setdefault(k, [0, 0])
            a[0] += v[0]
            a[1] += v[1]
    res["seconds"] = time.time() - t0
    return res


def print_res(res):
    mc = " ".join("%d:%.2e" % (n, r) for n, r in res["modelcheck"])
    gf = [r for _, r in res["golden_first"]]
    first = {}
    for name, step, m, d in res["flips"]:
        first.setdefault(name, (step, m))
    print("policy %-40s modelcheck rel L2 [%s] max %.2e | golden first-step rel L2 max %.2e mean %.2e" % (
        res["policy"], mc, max(r for _, r in res["modelcheck"]), max(gf), sum(gf) / len(gf)))
    if os.environ.get("FAST_SIM_QUICK"):
        print("    (FAST_SIM_QUICK: greedy paths not run)")
    else:
        print("    golden cases off HF's path: %d of 12 %s; argmax != HF at %d of 480 teacher-forced steps" % (
            len(first), " ".join("%s@%d(m %.3f)" % (n.replace("gemma3-270m", "g"), s, m) for n, (s, m) in first.items()),
            len(res["flips"])))
    if res["rows_left"]:
        print("    rows off the int8 path: " + " ".join("%s %d/%d" % (k, v[0], v[1]) for k, v in res["rows_left"].items()))
    print("    (%.0f s)" % res["seconds"])
    sys.stdout.flush()


def cmd_study(g, specs):
    cache = {}
    out = []
    for spec in specs:
        res = run_policy(g, spec, cache)
        print_res(res)
        out.append(res)
    dst = os.environ.get("FAST_SIM_JSON")
    if dst:
        json.dump(out, open(dst, "w"), indent=1)
    return 0


def cmd_stats(g):
    """amax / rms of each product's input rows (exact forward, golden prompts + engine check 67)."""
    s = None
    rec = {}
    for name, c in golden_cases()[:6]:
        s = Session(g, Policy("exact"))
        s.record = {}
        s.forward(c["prompt_ids"])
        for k, v in s.record.items():
            rec.setdefault(k, []).extend(v)
    for k in KINDS:
        X = np.concatenate(rec[k], axis=0)
        r = row_ratio(X)
        b = X.reshape(X.shape[0], -1, 32)
        br = np.abs(b).max(axis=2) / (np.sqrt((b.astype(np.float64) ** 2).mean(axis=2)) + 1e-30)
        qe = q8(X) - X
        rel = np.sqrt((qe.astype(np.float64) ** 2).sum(axis=1) / ((X.astype(np.float64) ** 2).sum(axis=1) + 1e-30))
        print("%-7s rows %5d K %4d: amax/rms median %.1f p99 %.1f max %.1f | int8 rel err per row median %.2e p99 %.2e max %.2e" % (
            k, X.shape[0], X.shape[1], np.median(r), np.percentile(r, 99), r.max(), np.median(rel),
            np.percentile(rel, 99), rel.max()))
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    g = Gemma3()
    if sys.argv[1] == "check":
        return cmd_check(g)
    if sys.argv[1] == "study":
        return cmd_study(g, sys.argv[2:] or ["exact", "fast"])
    if sys.argv[1] == "stats":
        return cmd_stats(g)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
