#!/usr/bin/env python3
"""make_synth_moe.py — deterministic synthetic mixture-of-experts GGUF files:
gpt-oss (arch "gpt-oss") and Qwen3-MoE (arch "qwen3moe"), with the metadata keys,
tensor names, shapes and tensor types llama.cpp's convert_hf_to_gguf.py (and, for the
Q4_K_M preset, llama-quantize) write for the published checkpoints. Random weights.
Same arguments -> byte-identical file (the SHA-256 is printed at the end).

    make_synth_moe.py --out g.gguf --preset gpt-oss-tiny
    make_synth_moe.py --out q.gguf --preset qwen3moe-tiny
    make_synth_moe.py --out 20b.gguf --preset gpt-oss-20b [--layers N]    (GPU machine)

Presets (tiny ones are the golden models: every feature, small dims)
  gpt-oss-tiny   hidden 192 (not a power of two, like 2880), 4 layers (sliding window 16
                 on layers 0 and 2, full on 1 and 3), 4 query heads x 64, 2 KV heads,
                 8 experts of 192 top-4, q/k/v/o biases, router and expert biases,
                 learned sinks, YaRN (factor 32 over 4096, theta 150000), vocab 609
  qwen3moe-tiny  hidden 256, 4 layers, 8 query heads x 64 (q width 512 != hidden),
                 2 KV heads, QK-norm, 16 experts of 256 top-8 (renormalized), vocab 606;
                 stored as a Q4_K_M file (see TYPES)
  gpt-oss-20b    24 layers, hidden 2880, 64 x 64 heads, 8 KV, 32 experts of 2880 top-4,
                 window 128, vocab 201088 (o200k_harmony's size; harmony specials at their ids)
  gpt-oss-120b   the same with 36 layers and 128 experts
  qwen3-30b-a3b  48 layers, hidden 2048, 32 x 128 heads, 4 KV, 128 experts of 768 top-8,
                 vocab 151936, Q4_K_M
  --layers N cuts any preset to its first N layers (same bytes per layer).
  --header-only writes the header, metadata and tensor table and extends the file to its
  full size without writing the data (a sparse file: a 63 GB gpt-oss-120b costs a few MB
  of disk), for tests of what only reads headers (`sparkd info`, memory plans).

Tensor types, as the published files store them:
  gpt-oss  (ggml-org's gpt-oss-{20b,120b} GGUF: "MXFP4 MoE"): expert gate/up/down MXFP4;
           token_embd, output, attn_q/k/v/output Q8_0; router (ffn_gate_inp) and every
           1-D or bias tensor F32 (sinks, norms, q/k/v/o biases, router and expert biases).
  qwen3moe (Q4_K_M by llama-quantize): attn_q/k/output, ffn_gate/up_exps, token_embd
           Q4_K; attn_v and ffn_down_exps Q6_K on the "more bits" layers (first and last
           eighth, and every third between), Q4_K elsewhere; output Q6_K; router and
           norms F32.

Weights: each tensor has its own generator, default_rng([seed, crc32(name)]).
  * Q8_0 / MXFP4 in the tiny presets: uniform float32 values (unit variance times the
    tensor's scale) quantized by the gguf package's reference quantizer; the references
    use gguf's dequantization of the stored bytes.
  * K-quants (gguf 0.19 has no quantizer for them) and every quantized tensor of the real-
    shape presets (the quantizer would take hours on 60 GB): the stored codes are drawn
    directly — random 4/6/8-bit codes with per-block scales chosen so the dequantized
    values have the tensor's RMS (see codes_*). Every such block is a valid block of its
    type; gguf's dequantizer is still what the references read.
Scales (activation RMS stays O(1) through the layers):
  token_embd 1; attn q/k/v, router 1/sqrt(in) (router 2/sqrt(in): spread routing);
  attn_output 0.5/sqrt(in); expert gate/up 1/sqrt(in) (gpt-oss: 3/sqrt(in), so that
  about 2% of gate/up values pass the SwiGLU clamp of 7 and the clamp is exercised);
  expert down 0.5/sqrt(in) (gpt-oss 0.3/sqrt(in)); output 3/sqrt(in); norms 1 + 0.1u;
  biases 0.5u (o bias 0.2u, down bias 0.1u); sinks 0.5 + 1.5u (u: unit-variance uniform).
"""
import argparse
import hashlib
import os
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import gguf
except ImportError:
    sys.exit("make_synth_moe.py: needs the gguf package (pip install gguf==0.19.0)")
from make_synth import TRAIN_TEXT, bytes_to_unicode, draw, learn_merges  # noqa: E402

Q = gguf.GGMLQuantizationType

# o200k_harmony's special tokens (ids in the 201088-entry vocabulary)
HARMONY_SPECIALS = [(199998, "<|startoftext|>"), (199999, "<|endoftext|>"), (200002, "<|return|>"),
                    (200003, "<|constrain|>"), (200005, "<|channel|>"), (200006, "<|start|>"),
                    (200007, "<|end|>"), (200008, "<|message|>"), (200012, "<|call|>")]
QWEN_SPECIALS = [(151643, "<|endoftext|>"), (151644, "<|im_start|>"), (151645, "<|im_end|>")]

# A short harmony-shaped template (written for these tests) and the ChatML one.
HARMONY_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|start|>' + message['role'] + '<|message|>' + message['content'] + '<|end|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start|>assistant' }}{%- endif %}"
)
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

GPT_OSS = dict(arch="gpt-oss", n_head_kv=8, head_dim=64, n_used=4, n_ctx=131072,
               rope_base=150000.0, eps=1e-5, yarn_factor=32.0, yarn_orig_ctx=4096,
               yarn_beta_fast=32.0, yarn_beta_slow=1.0, specials=HARMONY_SPECIALS,
               template=HARMONY_TEMPLATE, eos="<|return|>", bos="<|startoftext|>", pad="<|endoftext|>",
               pre="gpt-4o")
QWEN3MOE = dict(arch="qwen3moe", head_dim=128, n_used=8, n_ctx=40960, rope_base=1e6, eps=1e-6,
                specials=QWEN_SPECIALS, template=CHATML_TEMPLATE, eos="<|im_end|>",
                bos="<|endoftext|>", pad="<|endoftext|>", pre="qwen2")

PRESETS = {
    # YaRN over an original context of 256 (real: 4096) puts the correction range on pairs
    # 0.65..9.95 (real: 8.09..17.40), frequencies fast enough that rounding the range (as
    # llama.cpp does) moves the logits of the golden prompts well past the tolerance.
    "gpt-oss-tiny": dict(GPT_OSS, n_embd=192, n_layer=4, n_head=4, n_head_kv=2, n_expert=8,
                         n_ff_exp=192, n_vocab=None, swa=16, n_ctx=8192, yarn_orig_ctx=256, codes=False),
    # The same weights with the real YaRN context (4096): what llama.cpp's reference runs on
    # (its rounding of the range then moves these logits by ~0.02 only).
    "gpt-oss-tiny-yarn4k": dict(GPT_OSS, n_embd=192, n_layer=4, n_head=4, n_head_kv=2, n_expert=8,
                                n_ff_exp=192, n_vocab=None, swa=16, codes=False),
    "gpt-oss-20b": dict(GPT_OSS, n_embd=2880, n_layer=24, n_head=64, n_expert=32, n_ff_exp=2880,
                        n_vocab=201088, swa=128, codes=True),
    "gpt-oss-120b": dict(GPT_OSS, n_embd=2880, n_layer=36, n_head=64, n_expert=128, n_ff_exp=2880,
                         n_vocab=201088, swa=128, codes=True),
    "qwen3moe-tiny": dict(QWEN3MOE, n_embd=256, n_layer=4, n_head=8, n_head_kv=2, head_dim=64,
                          n_expert=16, n_ff_exp=256, n_ff=1024, n_vocab=None, codes=False),
    # experts twice as wide: the K-quant down matrices (256-element blocks) can be split
    # over 2 tensor-parallel ranks (tests/tp/test_shard.py, tests/gpu/tp.sh)
    "qwen3moe-tiny-tp": dict(QWEN3MOE, n_embd=256, n_layer=4, n_head=8, n_head_kv=2, head_dim=64,
                             n_expert=16, n_ff_exp=512, n_ff=1024, n_vocab=None, codes=False),
    # 7 experts: not divisible by 2 ranks, refused by tensor parallel's moe_split = experts
    # (tests/tp/test_shard.py)
    "qwen3moe-tiny-e7": dict(QWEN3MOE, n_embd=256, n_layer=2, n_head=8, n_head_kv=2, head_dim=64, n_used=4,
                             n_expert=7, n_ff_exp=256, n_ff=1024, n_vocab=None, codes=False),
    "qwen3-30b-a3b": dict(QWEN3MOE, n_embd=2048, n_layer=48, n_head=32, n_head_kv=4, n_expert=128,
                          n_ff_exp=768, n_ff=6144, n_vocab=151936, codes=True),
}


def build_vocab(n_vocab, specials):
    """tokens, types, merges, {special text: id}. Byte chars (GPT-2 order), learned merges,
    then either the specials appended (n_vocab None) or a fixed-size vocabulary padded with
    [PAD<id>] UNUSED entries and the specials at their real ids."""
    _, byte_chars = bytes_to_unicode()
    merges = learn_merges(TRAIN_TEXT, 341)
    tokens = list(byte_chars)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    n_learned = len(tokens)
    if n_vocab is None:
        ids = {s: n_learned + k for k, (_, s) in enumerate(specials)}
        n_vocab = n_learned + len(specials)
    else:
        ids = {s: i for i, s in specials}
    types = [gguf.TokenType.NORMAL] * n_learned
    for i in range(n_learned, n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    for s, i in ids.items():
        if i < n_learned:
            raise ValueError("special id inside the learned tokens")
        tokens[i] = s
        types[i] = gguf.TokenType.CONTROL
    return tokens, types, [f"{a} {b}" for a, b in merges], ids


def more_bits(i, n):
    """llama-quantize's use_more_bits: the layers Q4_K_M keeps at Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_plan(hp, n_vocab):
    """[(name, numpy shape, scale, kind, qtype)], numpy shape = ggml ne reversed
    (experts: (n_expert, rows, cols)). kind: "w" matrix, "norm", "bias", "sink"."""
    e, d = hp["n_embd"], hp["head_dim"]
    q, kv = hp["n_head"] * d, hp["n_head_kv"] * d
    ne, f = hp["n_expert"], hp["n_ff_exp"]
    oss = hp["arch"] == "gpt-oss"
    L = hp["n_layer_full"]  # the uncut depth decides the Q4_K_M layer types

    def mat(name, shape, scale, qt):
        return (name, shape, scale, "w", qt)

    def vec(name, shape, scale, kind):
        return (name, shape, scale, kind, Q.F32)

    if oss:
        plan = [mat("token_embd.weight", (n_vocab, e), 1.0, Q.Q8_0)]
        for i in range(hp["n_layer"]):
            b = f"blk.{i}."
            plan += [
                vec(b + "attn_norm.weight", (e,), 0.1, "norm"),
                mat(b + "attn_q.weight", (q, e), 1 / np.sqrt(e), Q.Q8_0),
                vec(b + "attn_q.bias", (q,), 0.5, "bias"),
                mat(b + "attn_k.weight", (kv, e), 1 / np.sqrt(e), Q.Q8_0),
                vec(b + "attn_k.bias", (kv,), 0.5, "bias"),
                mat(b + "attn_v.weight", (kv, e), 1 / np.sqrt(e), Q.Q8_0),
                vec(b + "attn_v.bias", (kv,), 0.5, "bias"),
                mat(b + "attn_output.weight", (e, q), 0.5 / np.sqrt(q), Q.Q8_0),
                vec(b + "attn_output.bias", (e,), 0.2, "bias"),
                vec(b + "attn_sinks.weight", (hp["n_head"],), 1.5, "sink"),
                vec(b + "post_attention_norm.weight", (e,), 0.1, "norm"),
                mat(b + "ffn_gate_inp.weight", (ne, e), 2 / np.sqrt(e), Q.F32),
                vec(b + "ffn_gate_inp.bias", (ne,), 0.5, "bias"),
                mat(b + "ffn_gate_exps.weight", (ne, f, e), 3 / np.sqrt(e), Q.MXFP4),
                vec(b + "ffn_gate_exps.bias", (ne, f), 0.5, "bias"),
                mat(b + "ffn_up_exps.weight", (ne, f, e), 3 / np.sqrt(e), Q.MXFP4),
                vec(b + "ffn_up_exps.bias", (ne, f), 0.5, "bias"),
                mat(b + "ffn_down_exps.weight", (ne, e, f), 0.3 / np.sqrt(f), Q.MXFP4),
                vec(b + "ffn_down_exps.bias", (ne, e), 0.1, "bias"),
            ]
        plan += [vec("output_norm.weight", (e,), 0.1, "norm"),
                 mat("output.weight", (n_vocab, e), 3 / np.sqrt(e), Q.Q8_0)]
        return plan

    plan = [mat("token_embd.weight", (n_vocab, e), 1.0, Q.Q4_K)]
    for i in range(hp["n_layer"]):
        b = f"blk.{i}."
        hi = Q.Q6_K if more_bits(i, L) else Q.Q4_K
        plan += [
            vec(b + "attn_norm.weight", (e,), 0.1, "norm"),
            mat(b + "attn_q.weight", (q, e), 1 / np.sqrt(e), Q.Q4_K),
            mat(b + "attn_k.weight", (kv, e), 1 / np.sqrt(e), Q.Q4_K),
            mat(b + "attn_v.weight", (kv, e), 1 / np.sqrt(e), hi),
            mat(b + "attn_output.weight", (e, q), 0.5 / np.sqrt(q), Q.Q4_K),
            vec(b + "attn_q_norm.weight", (d,), 0.1, "norm"),
            vec(b + "attn_k_norm.weight", (d,), 0.1, "norm"),
            vec(b + "ffn_norm.weight", (e,), 0.1, "norm"),
            mat(b + "ffn_gate_inp.weight", (ne, e), 2 / np.sqrt(e), Q.F32),
            mat(b + "ffn_gate_exps.weight", (ne, f, e), 1 / np.sqrt(e), Q.Q4_K),
            mat(b + "ffn_up_exps.weight", (ne, f, e), 1 / np.sqrt(e), Q.Q4_K),
            mat(b + "ffn_down_exps.weight", (ne, e, f), 0.5 / np.sqrt(f), hi),
        ]
    plan += [vec("output_norm.weight", (e,), 0.1, "norm"),
             mat("output.weight", (n_vocab, e), 3 / np.sqrt(e), Q.Q6_K)]
    return plan


# ---- stored codes drawn directly (valid blocks of each type, RMS = scale) ----

def f16_bytes(x):
    return np.asarray(x, dtype=np.float16).view(np.uint8).reshape(-1, 2)


def codes_q8_0(rng, n_blocks, scale):
    """Q8_0: d (f16) then 32 int8. Codes uniform in [-127, 127] (RMS 73.6), d = scale/73.6
    times a per-block factor in [0.75, 1.25)."""
    d = np.float32(scale / 73.6) * (np.float32(0.75) + np.float32(0.5) * rng.random(n_blocks, dtype=np.float32))
    qs = rng.integers(-127, 128, size=(n_blocks, 32), dtype=np.int8).view(np.uint8)
    return np.concatenate([f16_bytes(d), qs], axis=1)


def codes_mxfp4(rng, n_blocks, scale):
    """MXFP4: E8M0 exponent e, then 16 bytes of e2m1 codes. Value = kvalues[q] * 2^(e-128)
    (ggml's doubled kvalues, halved scale); uniform codes have RMS 2.926 * 2^(e-127), so
    e = 127 + round(log2(scale / 2.926)), jittered by -1..+1 per block."""
    e0 = 127 + int(round(np.log2(scale / 2.926)))
    e = (e0 + rng.integers(-1, 2, size=(n_blocks, 1))).astype(np.uint8)
    qs = rng.integers(0, 256, size=(n_blocks, 16), dtype=np.uint8)
    return np.concatenate([e, qs], axis=1)


def codes_q4_k(rng, n_blocks, scale):
    """Q4_K (256 values): d, dmin (f16), 12 bytes of 6-bit sub-block scales/mins, 128 bytes
    of nibbles. Value = d*sc*q - dmin*m; with dmin = 7.5 d (exact: d a power of two) and
    m = sc it is d*sc*(q - 7.5), symmetric. sc uniform in [32, 63]: RMS = 211 d."""
    d = np.float32(2.0 ** round(np.log2(scale / 211.0)))
    sc = rng.integers(32, 64, size=(n_blocks, 8), dtype=np.uint8)
    mn = sc
    packed = np.empty((n_blocks, 12), dtype=np.uint8)
    packed[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((mn[:, 4:8] & 0x0F) << 4)
    qs = rng.integers(0, 256, size=(n_blocks, 128), dtype=np.uint8)
    head = np.concatenate([f16_bytes(np.full(n_blocks, d)), f16_bytes(np.full(n_blocks, d * 7.5))], axis=1)
    return np.concatenate([head, packed, qs], axis=1)


def codes_q6_k(rng, n_blocks, scale):
    """Q6_K (256 values): ql[128], qh[64], 16 int8 scales, d (f16). Value = d*sc*(q - 32),
    q uniform 6-bit (RMS 18.5), sc uniform in [32, 127]: RMS = 1553 d."""
    d = np.float32(scale / 1553.0)
    ql = rng.integers(0, 256, size=(n_blocks, 128), dtype=np.uint8)
    qh = rng.integers(0, 256, size=(n_blocks, 64), dtype=np.uint8)
    sc = rng.integers(32, 128, size=(n_blocks, 16), dtype=np.int8).view(np.uint8)
    return np.concatenate([ql, qh, sc, f16_bytes(np.full(n_blocks, d))], axis=1)


CODES = {Q.Q8_0: codes_q8_0, Q.MXFP4: codes_mxfp4, Q.Q4_K: codes_q4_k, Q.Q6_K: codes_q6_k}
CHUNK_ELEMS = 1 << 24
NO_QUANTIZER = (Q.Q4_K, Q.Q6_K)  # gguf 0.19 dequantizes these, cannot quantize


class Streamed:
    """A tensor GGUFWriter.write_tensor_data can write without holding it: nbytes and
    tofile(), which draws and writes the data chunk by chunk."""

    def __init__(self, nbytes, chunks):
        self.nbytes = nbytes
        self._chunks = chunks

    def tofile(self, fout):
        n = 0
        for c in self._chunks():
            c.tofile(fout)
            n += c.nbytes
        assert n == self.nbytes, (n, self.nbytes)


def tensor_bytes(shape, qt):
    rows = int(np.prod(shape[:-1]))  # 1 for a vector
    return rows * gguf.quants.quant_shape_to_byte_shape((shape[-1],), qt)[0]


def make_tensor(name, shape, scale, kind, qt, seed, codes):
    """A Streamed tensor of the stored bytes."""
    nbytes = tensor_bytes(shape, qt)

    def chunks():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        n = int(np.prod(shape))
        if kind == "norm":
            yield np.float32(1.0) + draw(rng, n, scale)
            return
        if kind == "bias":
            yield draw(rng, n, scale)
            return
        if kind == "sink":
            yield np.float32(0.5) + draw(rng, n, scale)
            return
        cols = shape[-1]
        rows = n // cols
        step = max(1, CHUNK_ELEMS // cols)
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            if qt == Q.F32:
                yield draw(rng, (r1 - r0) * cols, scale)
            elif codes or qt in NO_QUANTIZER:
                bs = gguf.constants.GGML_QUANT_SIZES[qt][0]
                yield CODES[qt](rng, (r1 - r0) * cols // bs, scale).reshape(-1)
            else:
                x = draw(rng, (r1 - r0) * cols, scale).reshape(r1 - r0, cols)
                yield gguf.quants.quantize(x, qt).reshape(-1)
    return Streamed(nbytes, chunks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--layers", type=int, help="cut the depth to N layers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--header-only", action="store_true", help="no tensor data: a sparse file of the full size")
    args = ap.parse_args()

    t0 = time.time()
    hp = dict(PRESETS[args.preset])
    hp["n_layer_full"] = hp["n_layer"]
    if args.layers is not None:
        if not 1 <= args.layers <= hp["n_layer"]:
            ap.error(f"--layers must be 1..{hp['n_layer']}")
        hp["n_layer"] = args.layers
    tokens, types, merges, sp = build_vocab(hp["n_vocab"], hp["specials"])
    n_vocab = len(tokens)
    arch = hp["arch"]
    oss = arch == "gpt-oss"

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    w = gguf.GGUFWriter(tmp, arch)
    name = f"sparkd-synth-{args.preset}-L{hp['n_layer']}-s{args.seed}"
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_block_count(hp["n_layer"])
    w.add_context_length(hp["n_ctx"])
    w.add_embedding_length(hp["n_embd"])
    # gpt-oss: feed_forward_length = intermediate_size (= the expert width);
    # qwen3moe: intermediate_size of the config (unused by MoE layers)
    w.add_feed_forward_length(hp["n_ff_exp"] if oss else hp["n_ff"])
    w.add_head_count(hp["n_head"])
    w.add_head_count_kv(hp["n_head_kv"])
    if oss:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(hp["yarn_factor"])
        w.add_rope_scaling_orig_ctx_len(hp["yarn_orig_ctx"])
        w.add_rope_scaling_yarn_beta_fast(hp["yarn_beta_fast"])
        w.add_rope_scaling_yarn_beta_slow(hp["yarn_beta_slow"])
    w.add_rope_freq_base(hp["rope_base"])
    w.add_layer_norm_rms_eps(hp["eps"])
    w.add_expert_count(hp["n_expert"])
    w.add_expert_used_count(hp["n_used"])
    w.add_key_length(hp["head_dim"])
    w.add_value_length(hp["head_dim"])
    if oss:
        w.add_sliding_window(hp["swa"])
    w.add_expert_feed_forward_length(hp["n_ff_exp"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_MXFP4_MOE if oss else gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(hp["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(sp[hp["bos"]])
    w.add_eos_token_id(sp[hp["eos"]])
    w.add_pad_token_id(sp[hp["pad"]])
    w.add_add_bos_token(False)
    w.add_chat_template(hp["template"])

    plan = tensor_plan(hp, n_vocab)
    for tname, shape, _, kind, qt in plan:
        nb = tensor_bytes(shape, qt)
        if qt == Q.F32:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), nb)
        else:
            bshape = tuple(shape[:-1]) + (gguf.quants.quant_shape_to_byte_shape((shape[-1],), qt)[0],)
            w.add_tensor_info(tname, bshape, np.dtype(np.uint8), nb, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    if args.header_only:
        w.fout[0].flush()
        align = lambda n: (n + w.data_alignment - 1) // w.data_alignment * w.data_alignment  # noqa: E731
        size = align(w.fout[0].tell()) + sum(align(tensor_bytes(sh, qt)) for _, sh, _, _, qt in plan)
        w.fout[0].truncate(size)
        w.fout[0].close()
        w.fout = None
    else:
        for tname, shape, scale, kind, qt in plan:
            w.write_tensor_data(make_tensor(tname, shape, scale, kind, qt, args.seed, hp["codes"]))
        w.close()
    os.replace(tmp, args.out)

    print(f"{args.out}: {name}, vocab {n_vocab} ({len(merges)} merges), "
          f"{os.path.getsize(args.out)} bytes{' (header only, sparse)' if args.header_only else ''}, "
          f"{time.time() - t0:.1f} s")
    if not args.header_only:
        h = hashlib.sha256()
        with open(args.out, "rb") as fp:
            while chunk := fp.read(1 << 24):
                h.update(chunk)
        print(f"sha256 {h.hexdigest()}")


if __name__ == "__main__":
    main()
