#!/usr/bin/env python3
"""test_shard.py — the tensor-parallel shard views (appliance/engine/shard.c) against
slices cut here from the gguf package's own reader (GGUFReader), on synthetic models.

For every rank of a 2-way split: the bytes of each sliced tensor (tool_shard prints the
SHA-256 of what shard_copy_rows packs) must equal the slice numpy cuts from the raw
tensor: rows [r*n/N, (r+1)*n/N) of wq/wk/wv/w_gate/w_up and of the biases and sinks,
the same byte columns of every row of wo/w_down (quantization blocks whole), vocabulary
rows [V*r/N, V*(r+1)/N) of the output matrix; the norms and the embedding whole; the
hyper-parameters the rank's (heads, KV heads, FFN width divided). The ranks' slices
together must cover each tensor exactly once. Mixture of experts (gpt-oss-tiny: MXFP4
experts with biases; qwen3moe-tiny-tp: Q4_K/Q6_K experts): rows [r*f, (r+1)*f) of every
expert's gate/up, the same columns of every expert's down and gate/up bias, the router
whole on every rank, the down bias on rank 0 only. Models that cannot be split are
refused with their reason (Gemma 3 270M: one KV head; 4 ranks of 2 KV heads;
qwen3moe-tiny: a K-quant down matrix 256 wide cannot be cut in two).

moe_split = experts (tool_shard MODEL N experts): rank r's expert tensors are experts
[r*E/N, (r+1)*E/N) of the stacked gate/up/down and the same rows of the (width, E) gate,
up and down biases, byte-equal to gguf's; the router whole on every rank; the experts'
width whole; every expert on exactly one rank (the ranks' ranges tile 0..E); the rest
(attention, vocabulary) as above. qwen3moe-tiny, refused by columns, splits this way; a
number of experts not divisible by the ranks is refused.
"""
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ok, exit_code  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
PY = os.environ.get("SPARKD_PY", sys.executable)
TOOL = os.path.join(BUILD, "tests", "tool_shard")
SYNTH = os.path.join(ROOT, "tests", "golden", "make_synth.py")

try:
    import numpy as np
    import gguf
except ImportError:
    print("not ok - test_shard needs numpy and gguf (build/venv)")
    sys.exit(1)

ROW_SLICED = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_gate.weight", "ffn_up.weight",
              "attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_sinks.weight")
COL_SLICED = ("attn_output.weight", "ffn_down.weight",
              # mixture of experts: the same columns of every expert's down, and of the
              # (experts, F) gate/up biases (each expert's row of F values)
              "ffn_down_exps.weight", "ffn_gate_exps.bias", "ffn_up_exps.bias")
EXPERT_ROW_SLICED = ("ffn_gate_exps.weight", "ffn_up_exps.weight")  # rows of every expert
RANK0_ONLY = ("ffn_down_exps.bias",)  # added once: rank 0 keeps it whole, the others none


EXPERT_SPLIT = ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight",
                "ffn_gate_exps.bias", "ffn_up_exps.bias", "ffn_down_exps.bias")  # by experts: whole experts


def tool(model, size, split=None):
    r = subprocess.run([TOOL, model, str(size)] + ([split] if split else []), capture_output=True, text=True,
                       timeout=300)
    return r.returncode, r.stdout, r.stderr


def raw_rows(t):
    """The tensor as (rows, row_bytes) uint8, rows in file order."""
    d = np.asarray(t.data)
    rows = int(np.prod([int(x) for x in t.shape[1:]])) if len(t.shape) > 1 else 1
    return d.reshape(-1).view(np.uint8).reshape(rows, -1)


def expected(t, size, rank, n_vocab):
    """(ne0, ne1, sha256) of rank's slice of tensor t, or None when the rank keeps it whole."""
    name = t.name
    raw = raw_rows(t)
    ne0 = int(t.shape[0])
    ne1 = int(t.shape[1]) if len(t.shape) > 1 else 1
    ne2 = int(t.shape[2]) if len(t.shape) > 2 else 1
    if name == "output.weight":
        a, b = n_vocab * rank // size, n_vocab * (rank + 1) // size
        return ne0, b - a, 1, hashlib.sha256(raw[a:b].tobytes()).hexdigest()
    short = name.split(".", 2)[-1]
    if short in EXPERT_ROW_SLICED:  # (ne2 experts, ne1 rows, bytes): rows [r*f, (r+1)*f) of each
        n = ne1 // size
        ex = raw.reshape(ne2, ne1, -1)[:, rank * n:(rank + 1) * n]
        return ne0, n, ne2, hashlib.sha256(np.ascontiguousarray(ex).tobytes()).hexdigest()
    if short in ROW_SLICED:
        if ne1 == 1:  # a vector: its elements are split
            n = ne0 // size
            eb = raw.shape[1] // ne0
            return n, 1, 1, hashlib.sha256(raw[0, rank * n * eb:(rank + 1) * n * eb].tobytes()).hexdigest()
        n = ne1 // size
        return ne0, n, 1, hashlib.sha256(raw[rank * n:(rank + 1) * n].tobytes()).hexdigest()
    if short in COL_SLICED:
        bs, ts = gguf.GGML_QUANT_SIZES[t.tensor_type]
        n = ne0 // size
        assert n % bs == 0
        c0, c1 = rank * n // bs * ts, (rank + 1) * n // bs * ts
        return n, ne1, ne2, hashlib.sha256(np.ascontiguousarray(raw[:, c0:c1]).tobytes()).hexdigest()
    return None


def check_model(label, path, size):
    rc, out, err = tool(path, size)
    if not ok(rc == 0, "%s: %d-way views built" % (label, size), err + out[-400:]):
        return
    rd = gguf.GGUFReader(path)
    tens = {t.name: t for t in rd.tensors}
    n_vocab = int(tens["token_embd.weight"].shape[1])
    lines = [ln.split() for ln in out.splitlines()]
    hp = {int(l[1]): l for l in lines if l[2] == "hp"}
    got = {(int(l[1]), l[3]): (int(l[5]), int(l[7]), int(l[9]), l[11]) for l in lines if l[2] == "tensor"}
    whole = {(int(l[1]), l[3]) for l in lines if l[2] == "whole"}
    moe = [l for l in lines if l[2] == "moe"]
    heads = int(rd.fields["%s.attention.head_count" % arch_of(rd)].parts[-1][0])
    kvh = int(rd.fields["%s.attention.head_count_kv" % arch_of(rd)].parts[-1][0])
    fexp = rd.fields.get("%s.expert_feed_forward_length" % arch_of(rd))
    ffn = 0 if fexp else int(rd.fields["%s.feed_forward_length" % arch_of(rd)].parts[-1][0])
    if fexp:
        fe = int(fexp.parts[-1][0])
        n_layer = int(rd.fields["%s.block_count" % arch_of(rd)].parts[-1][0])
        ne = int(rd.fields["%s.expert_count" % arch_of(rd)].parts[-1][0])
        want = [[str(r), "moe", str(il), "ffn_dim", str(fe // size), "down_b",
                 "yes" if r == 0 and "blk.0.ffn_down_exps.bias" in tens else "no", "experts", "0", str(ne)]
                for r in range(size) for il in range(n_layer)]
        ok([l[1:] for l in moe] == want, "%s: every MoE layer's experts %d -> %d wide per rank, the down bias on rank 0 "
           "only" % (label, fe, fe // size), [l for l in moe][:3])
        for r in range(size):
            for name in tens:
                if name.endswith("ffn_gate_inp.weight") or name.endswith("ffn_gate_inp.bias"):
                    ok((r, name) in whole, "%s rank %d: router %s whole" % (label, r, name))
                    break
            rb = [n for n in tens if n.split(".", 2)[-1] in RANK0_ONLY]
            if rb:
                has = [n for n in rb if (r, n) in whole]
                ok(len(has) == (len(rb) if r == 0 else 0) and not any((r, n) in got for n in rb),
                   "%s rank %d: expert down biases %s" % (label, r, "whole" if r == 0 else "absent"), has[:2])
    for r in range(size):
        h = hp.get(r)
        v0, vn = n_vocab * r // size, n_vocab * (r + 1) // size - n_vocab * r // size
        ok(h is not None and [int(h[4]), int(h[6]), int(h[8]), int(h[10]), int(h[12]), int(h[13])] ==
           [heads // size, kvh // size, ffn // size, n_vocab, v0, vn],
           "%s rank %d: heads %d/%d, FFN %d, vocabulary rows [%d, %d)" % (label, r, heads // size, kvh // size,
                                                                         ffn // size, v0, v0 + vn), h)
        bad, n_sliced, n_whole = [], 0, 0
        for name, t in tens.items():
            want = expected(t, size, r, n_vocab)
            if want is None:
                if (r, name) in whole:
                    n_whole += 1
                continue
            n_sliced += 1
            if got.get((r, name)) != want:
                bad.append((name, got.get((r, name)), want))
        ok(not bad and n_sliced > 0, "%s rank %d: %d sliced tensors equal gguf's slices" % (label, r, n_sliced), bad[:3])
        ok(n_whole > 0 and not any((r, n) in got for n in tens if n.endswith("_norm.weight") or n == "token_embd.weight"),
           "%s rank %d: norms and embedding whole (%d)" % (label, r, n_whole))
    # the slices of all ranks cover each tensor once: sizes add up
    for name, t in tens.items():
        if expected(t, size, 0, n_vocab) is None:
            continue
        parts = [got.get((r, name)) for r in range(size)]
        if any(p is None for p in parts):
            ok(False, "%s %s: every rank has a slice" % (label, name))
            break
        raw = raw_rows(t)
        total = sum(p[0] * p[1] * p[2] for p in parts)
        if total != int(np.prod([int(x) for x in t.shape])):
            ok(False, "%s %s: slices cover %d of %d elements" % (label, name, total, raw.size))
            break
    else:
        ok(True, "%s: the ranks' slices cover every sliced tensor exactly" % label)


def check_experts(label, path, size):
    """moe_split = experts: whole experts per rank, byte-equal to gguf's; attention as by columns."""
    rc, out, err = tool(path, size, "experts")
    if not ok(rc == 0, "%s, experts: %d-way views built" % (label, size), err + out[-400:]):
        return
    rd = gguf.GGUFReader(path)
    tens = {t.name: t for t in rd.tensors}
    n_vocab = int(tens["token_embd.weight"].shape[1])
    lines = [ln.split() for ln in out.splitlines()]
    got = {(int(l[1]), l[3]): (int(l[5]), int(l[7]), int(l[9]), l[11]) for l in lines if l[2] == "tensor"}
    whole = {(int(l[1]), l[3]) for l in lines if l[2] == "whole"}
    moe = [l for l in lines if l[2] == "moe"]
    E = int(rd.fields["%s.expert_count" % arch_of(rd)].parts[-1][0])
    fe = int(rd.fields["%s.expert_feed_forward_length" % arch_of(rd)].parts[-1][0])
    n_layer = int(rd.fields["%s.block_count" % arch_of(rd)].parts[-1][0])
    n = E // size
    has_db = "blk.0.ffn_down_exps.bias" in tens
    want = [[str(r), "moe", str(il), "ffn_dim", str(fe), "down_b", "yes" if has_db else "no", "experts", str(r * n),
             str(n)] for r in range(size) for il in range(n_layer)]
    ok([l[1:] for l in moe] == want, "%s, experts: every MoE layer's rank r holds experts [%d r, %d (r+1)) of %d, "
       "%d wide%s" % (label, n, n, E, fe, ", each with its down bias" if has_db else ""), moe[:3])
    for r in range(size):
        bad, n_exp, n_other = [], 0, 0
        for name, t in tens.items():
            short = name.split(".", 2)[-1]
            if short in EXPERT_SPLIT:
                raw = raw_rows(t)
                ne0, ne1 = int(t.shape[0]), int(t.shape[1])
                if len(t.shape) > 2:  # stacked (E, rows, bytes): experts [r*n, (r+1)*n)
                    sl = raw.reshape(int(t.shape[2]), ne1, -1)[r * n:(r + 1) * n]
                    w = (ne0, ne1, n, hashlib.sha256(np.ascontiguousarray(sl).tobytes()).hexdigest())
                else:  # a (width, E) bias: rows [r*n, (r+1)*n)
                    w = (ne0, n, 1, hashlib.sha256(raw[r * n:(r + 1) * n].tobytes()).hexdigest())
                n_exp += 1
            else:
                w = expected(t, size, r, n_vocab)
                if w is None:
                    continue
                n_other += 1
            if got.get((r, name)) != w:
                bad.append((name, got.get((r, name)), w))
        ok(not bad and n_exp >= 3 * n_layer, "%s, experts, rank %d: %d expert tensors and %d other sliced tensors equal "
           "gguf's slices" % (label, r, n_exp, n_other), bad[:3])
        routers = [nm for nm in tens if nm.endswith("ffn_gate_inp.weight") or nm.endswith("ffn_gate_inp.bias")]
        ok(routers and all((r, nm) in whole for nm in routers), "%s, experts, rank %d: the routers whole (%d)" % (
            label, r, len(routers)))
    # every expert on exactly one rank: the ranges tile [0, E)
    cover = sorted((int(l[9]), int(l[10])) for l in moe if l[3] == "0")
    ok(cover == [(r * n, n) for r in range(size)] and sum(c[1] for c in cover) == E,
       "%s, experts: the ranks' experts are disjoint and cover all %d" % (label, E), cover)


def arch_of(rd):
    f = rd.fields["general.architecture"]
    return bytes(f.parts[-1]).decode()


def main():
    if not os.path.exists(TOOL):
        ok(False, "tool_shard built", TOOL)
        return 1
    d = os.path.join(BUILD, "tp-models")
    os.makedirs(d, exist_ok=True)
    models = [("tiny q8_0", "tiny-q8_0.gguf", ["--preset", "tiny", "--wtype", "q8_0"]),
              ("tiny f16", "tiny-f16.gguf", ["--preset", "tiny", "--wtype", "f16"]),
              ("qwen2-tiny (biases)", "qwen2-tiny.gguf", ["--preset", "qwen2-tiny", "--wtype", "q8_0"])]
    for label, fn, args in models:
        p = os.path.join(d, fn)
        if not os.path.exists(p):
            subprocess.run([PY, SYNTH, "--out", p] + args, check=True, stdout=subprocess.DEVNULL, timeout=600)
        check_model(label, p, 2)
    moe = os.path.join(ROOT, "tests", "golden", "make_synth_moe.py")
    for label, fn, preset in [("gpt-oss-tiny (MXFP4 experts, biases)", "gpt-oss-tiny.gguf", "gpt-oss-tiny"),
                              ("qwen3moe-tiny-tp (Q4_K/Q6_K experts)", "qwen3moe-tiny-tp.gguf", "qwen3moe-tiny-tp")]:
        p = os.path.join(d, fn)
        if not os.path.exists(p):
            subprocess.run([PY, moe, "--out", p, "--preset", preset], check=True, stdout=subprocess.DEVNULL, timeout=600)
        check_model(label, p, 2)
    rc, out, _ = tool(os.path.join(d, "gpt-oss-tiny.gguf"), 3)
    ok(rc == 3 and "refused:" in out and "divide" in out, "gpt-oss-tiny over 3 ranks: refused (heads)", out)
    # qwen3moe-tiny's down matrices are Q4_K/Q6_K 256 columns wide: half is not a 256-block
    p = os.path.join(d, "qwen3moe-tiny.gguf")
    if not os.path.exists(p):
        subprocess.run([PY, moe, "--out", p, "--preset", "qwen3moe-tiny"], check=True, stdout=subprocess.DEVNULL,
                       timeout=600)
    rc, out, _ = tool(p, 2)
    ok(rc == 3 and "ffn_down_exps" in out and "whole blocks of 256" in out,
       "qwen3moe-tiny (K-quant down, 256 wide) over 2 ranks: refused naming the down tensor and the block", out)
    check_experts("qwen3moe-tiny (K-quant, refused by columns)", p, 2)
    for label, fn in (("gpt-oss-tiny (MXFP4 experts, biases)", "gpt-oss-tiny.gguf"),
                      ("qwen3moe-tiny-tp (Q4_K/Q6_K experts)", "qwen3moe-tiny-tp.gguf")):
        check_experts(label, os.path.join(d, fn), 2)
    p7 = os.path.join(d, "qwen3moe-tiny-e7.gguf")  # 7 experts, heads that divide by 2
    if not os.path.exists(p7):
        subprocess.run([PY, moe, "--out", p7, "--preset", "qwen3moe-tiny-e7"], check=True, stdout=subprocess.DEVNULL,
                       timeout=600)
    rc, out, _ = tool(p7, 2, "experts")
    ok(rc == 3 and "7 experts, not divisible" in out and "moe_split = experts" in out,
       "7 experts over 2 ranks by experts: refused naming the reason", out)
    rc, out, _ = tool(os.path.join(d, "gpt-oss-tiny.gguf"), 3, "experts")
    ok(rc == 3 and "refused:" in out, "gpt-oss-tiny over 3 ranks by experts: refused", out)
    rc, out, _ = tool(os.path.join(d, "tiny-q8_0.gguf"), 2, "experts")
    ok(rc == 0 and "moe" not in out.split(), "a dense model by experts: split as by columns (no MoE layer)", out[-300:])
    rc, out, _ = tool(os.path.join(d, "tiny-q8_0.gguf"), 4)
    ok(rc == 3 and "refused:" in out and "2 KV heads must both divide" in out, "4 ranks of 2 KV heads: refused", out)
    gem = os.environ.get("SPARKD_MODEL", os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
    if os.path.exists(gem):
        rc, out, _ = tool(gem, 2)
        ok(rc == 3 and "1 KV heads" in out, "Gemma 3 270M (one KV head) over 2 ranks: refused with the reason", out)
    rc, out, _ = tool(os.path.join(d, "tiny-q8_0.gguf"), 9)
    ok(rc == 3 and "size 9" in out, "9 ranks: refused", out)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
