#!/usr/bin/env python3
"""make_synth.py — write a deterministic synthetic Qwen3-family dense GGUF.

The file carries the metadata keys and tensor names that llama.cpp's convert_hf_to_gguf.py
writes for a Qwen3 checkpoint (arch "qwen3"), a small byte-level BPE tokenizer of the
Qwen2 kind (tokenizer.ggml.model=gpt2, pre=qwen2) whose merges are learned here from a
fixed English text, and random weights quantized with the gguf package's reference
quantizer. Same arguments -> byte-identical file (the SHA-256 is printed at the end).

    make_synth.py --out tiny.gguf --preset tiny [--wtype q8_0] [--seed 0]
    make_synth.py --out q8b.gguf  --preset qwen3-8b --layers 8 --wtype q8_0
    make_synth.py --out q8b.gguf  --preset qwen3-8b --wtype q8_0 --period 4 --jobs 16

--period K (speed benchmarks of full-depth shapes): layer i holds the weights of layer
i % K, and every 16M-element chunk of a matrix has its own generator, so the chunks are
drawn and quantized by --jobs processes; a different file than without --period (the
same arguments still give the same bytes, whatever --jobs is). Every weight byte is still
stored (and read by an engine) once per layer.

Presets
  tiny      hidden 256, 4 layers, 4 heads x 128, 2 KV heads, ffn 768, vocab = tokenizer
            size (600), context 4096, rope base 1e6, eps 1e-6, untied output
  qwen3-8b  Qwen3-8B shapes: hidden 4096, 36 layers, 32 heads x 128, 8 KV heads,
            ffn 12288, vocab 151936 (token list padded with [PAD<id>] entries the way
            the converter pads ids the HF tokenizer lacks), context 40960

Weights: each tensor has its own generator, default_rng([seed, crc32(name)]), so a file
cut with --layers N holds exactly the first N layers of the uncut one. Values are uniform
with unit variance (U(-sqrt3, sqrt3)) times a per-tensor scale — uniform instead of normal
because numpy draws float32 uniforms ~8x faster than normals, which matters for the
multi-GB presets; the std, and so every activation size below, is the same. Scales:
  token_embd          1.0           rows already RMS ~1, like a normalized residual
  attn_q/k/v, gate/up 1/sqrt(in)    normalized input -> outputs of RMS ~1
  attn_output, down   0.5/sqrt(in)  residual grows by ~0.5 per sublayer (stays O(1..10))
  output              3/sqrt(in)    logits with std ~3: a clear but not one-hot softmax
  *_norm              1 + 0.1 u     near 1, but not exactly 1, so a missing norm shows
Matrices go through gguf.quants.quantize (wtype); norms stay F32. K-quants (q4_k, ...) are
not offered: gguf 0.19 has no quantizer for them (dequantize only).
"""
import argparse
import codecs
import hashlib
import os
import sys
import time
import zlib

import numpy as np

try:
    import gguf
except ImportError:  # the repository's venv has it; say so instead of a trace
    sys.exit("make_synth.py: needs the gguf package (pip install gguf==0.19.0)")

ARCH = "qwen3"  # default; presets may name another (llama-tiny: "llama")

PRESETS = {
    # n_vocab None = the tokenizer's own size
    # head_dim 128 (not 64): transformers' GGUF reader for qwen3 ignores attention.key_length
    # and Qwen3Config defaults head_dim to 128, so any other value breaks the HF reference.
    # q width (4 x 128 = 512) != hidden (256), as in the real Qwen3-0.6B/4B.
    "tiny": dict(n_embd=256, n_layer=4, n_head=4, n_head_kv=2, head_dim=128, n_ff=768,
                 n_vocab=None, n_ctx=4096, rope_base=1e6, eps=1e-6),
    "qwen3-8b": dict(n_embd=4096, n_layer=36, n_head=32, n_head_kv=8, head_dim=128,
                     n_ff=12288, n_vocab=151936, n_ctx=40960, rope_base=1e6, eps=1e-6),
    # Llama family: no QK-norm, head_dim = n_embd / n_head (transformers takes it from
    # rope.dimension_count), weights stored in the converter's permuted q/k layout
    # (random weights need no actual permutation: transformers un-permutes them on load,
    # which is exactly what makes the reference exercise sparkd's "norm" RoPE style).
    # Qwen2: q/k/v carry biases, no QK-norm, head_dim = n_embd / n_head.
    "qwen2-tiny": dict(arch="qwen2", n_embd=256, n_layer=4, n_head=4, n_head_kv=2, head_dim=64,
                       n_ff=768, n_vocab=None, n_ctx=4096, rope_base=1e6, eps=1e-6),
    "llama-tiny": dict(arch="llama", n_embd=256, n_layer=4, n_head=4, n_head_kv=2, head_dim=64,
                       n_ff=768, n_vocab=None, n_ctx=4096, rope_base=10000.0, eps=1e-5),
}

# --rope-scaling for the llama preset: the variants a GGUF can carry.
#   linear: llama.rope.scaling.type=linear, .factor
#   yarn:   .type=yarn, .factor, .original_context_length (context = factor x original)
#   llama3: no type key; a rope_freqs.weight tensor of per-dimension divisors, computed
#           the way llama.cpp's converter does from Llama 3.1's rope_scaling parameters.
ROPE_ORIG_CTX = 1024
LLAMA3_LOW, LLAMA3_HIGH = 1.0, 4.0


def llama3_rope_freqs(head_dim, base, factor, orig_ctx=ROPE_ORIG_CTX):
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    low_wl, high_wl = orig_ctx / LLAMA3_LOW, orig_ctx / LLAMA3_HIGH
    out = []
    for f in freqs:
        wl = 2 * np.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (orig_ctx / wl - LLAMA3_LOW) / (LLAMA3_HIGH - LLAMA3_LOW)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)

WTYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "bf16": gguf.GGMLQuantizationType.BF16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
    "q4_1": gguf.GGMLQuantizationType.Q4_1,
    "q5_0": gguf.GGMLQuantizationType.Q5_0,
    "q5_1": gguf.GGMLQuantizationType.Q5_1,
    "mxfp4": gguf.GGMLQuantizationType.MXFP4,
    "q4_k": gguf.GGMLQuantizationType.Q4_K,
    "q5_k": gguf.GGMLQuantizationType.Q5_K,
    "q6_k": gguf.GGMLQuantizationType.Q6_K,
    # llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the output and for attn_v / ffn_down in
    # the first and last eighth of the layers and every third layer between (tensor_qtype)
    "q4_k_m": gguf.GGMLQuantizationType.Q4_K,
}
KQUANT = {gguf.GGMLQuantizationType.Q4_K: "quantize_q4_k", gguf.GGMLQuantizationType.Q5_K: "quantize_q5_k",
          gguf.GGMLQuantizationType.Q6_K: "quantize_q6_k"}


def tensor_qtype(wtype, name, n_layer):
    """The ggml type a matrix gets under --wtype (only q4_k_m varies by tensor)."""
    q = WTYPES[wtype]
    if wtype != "q4_k_m":
        return q
    if name == "output.weight":
        return gguf.GGMLQuantizationType.Q6_K
    if name.endswith("attn_v.weight") or name.endswith("ffn_down.weight"):
        i = int(name.split(".")[1])
        if i < n_layer // 8 or i >= 7 * n_layer // 8 or (i - n_layer // 8) % 3 == 2:
            return gguf.GGMLQuantizationType.Q6_K
    return q
# general.file_type (llama_ftype) for a file whose matrices are all of one type
FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
    "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0, "q5_1": gguf.LlamaFileType.MOSTLY_Q5_1,
    "mxfp4": gguf.LlamaFileType.MOSTLY_MXFP4_MOE, "q4_k": gguf.LlamaFileType.MOSTLY_Q4_K_S,
    "q5_k": gguf.LlamaFileType.MOSTLY_Q5_K_S, "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K,
    "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M,
}

# The Qwen2 pre-tokenizer split (what llama.cpp calls pre=qwen2).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3 ids of the three specials in its 151936-entry vocab
QWEN3_SPECIAL_BASE = 151643

# A short ChatML template (the layout Qwen uses), written for these tests.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Training text for the merges: our own prose plus the Zen of Python (stdlib, fixed).
TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. A server that answers questions must first
read the model from disk, then build the tokenizer, then wait for requests. Each request
carries a list of messages; the template turns them into a prompt, the tokenizer turns the
prompt into numbers, and the model turns the numbers into the next word. It is the same
loop again and again: read, think, answer, and read again.

When the weights are large, the time it takes to read them matters more than anything
else. The memory of the machine is shared between the processor and the graphics chip, so
the program should ask how much memory is really available before it starts, and it
should never keep two copies of the same weights. There are 1234 ways to get this wrong
and only a few to get it right; the tests are there to tell them apart.

She said: "I've seen it work, but I'm not sure it'll work for you." He answered that
they'd try it tomorrow, at 9:30, with 2 or 3 friends. What's the weather like? It's
sunny today, and the forecast says it will rain on Monday, Tuesday and Wednesday.
Numbers like 3.14159, 2718 and 42 appear in text; so do lists: one, two, three, four.
"""


def _zen():
    """The Zen of Python, without the print that importing `this` does."""
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


TRAIN_TEXT += _zen()


def bytes_to_unicode():
    """GPT-2's byte -> printable char map, in GPT-2 vocab order (printables first)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


def learn_merges(text, n_merges):
    """Plain BPE over Qwen2 pre-tokens; ties go to the lexicographically smallest pair."""
    from tokenizers import Regex, pre_tokenizers
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    counts = {}
    for piece, _ in pre.pre_tokenize_str(text):
        counts[piece] = counts.get(piece, 0) + 1
    words = [[list(w), c] for w, c in sorted(counts.items())]
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        a, b = best[0]
        merges.append((a, b))
        for w in words:
            syms, out, i = w[0], [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            w[0] = out
    return merges


def build_vocab(n_vocab, n_merges=341):
    """tokens, token types, merges and special ids.

    Layout: 256 byte chars (GPT-2 order), merge results in merge order, then the specials;
    with a fixed n_vocab (qwen3-8b) the specials sit at Qwen3's ids 151643..151645 and every
    other id is a "[PAD<id>]" UNUSED entry, as the converter writes for ids HF lacks.
    """
    _, byte_chars = bytes_to_unicode()
    merges = learn_merges(TRAIN_TEXT, n_merges)
    tokens = list(byte_chars)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:  # two merges may spell the same token; keep one entry
            seen.add(a + b)
            tokens.append(a + b)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    if n_vocab is None:
        special_base = len(tokens)
        n_vocab = len(tokens) + len(SPECIALS)
    else:
        special_base = QWEN3_SPECIAL_BASE
        if special_base < len(tokens) or n_vocab < special_base + len(SPECIALS):
            raise ValueError("vocab too small for the learned tokens")
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    for k, s in enumerate(SPECIALS):
        tokens[special_base + k] = s
        types[special_base + k] = gguf.TokenType.CONTROL
    ids = {s: special_base + k for k, s in enumerate(SPECIALS)}
    return tokens, types, [f"{a} {b}" for a, b in merges], ids


def tensor_plan(hp, n_vocab):
    """(name, numpy shape (rows=out, cols=in), scale, is_norm) in the converter's order.

    ggml ne is the reverse of these shapes: token_embd ne = {n_embd, n_vocab}.
    """
    e, d, f = hp["n_embd"], hp["head_dim"], hp["n_ff"]
    q, kv = hp["n_head"] * d, hp["n_head_kv"] * d
    plan = [("token_embd.weight", (n_vocab, e), 1.0, False)]
    for i in range(hp["n_layer"]):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (e,), 0.1, True),
            (b + "attn_q.weight", (q, e), 1 / np.sqrt(e), False),
            (b + "attn_k.weight", (kv, e), 1 / np.sqrt(e), False),
            (b + "attn_v.weight", (kv, e), 1 / np.sqrt(e), False),
            (b + "attn_output.weight", (e, q), 0.5 / np.sqrt(q), False),
        ]
        if hp.get("arch") == "qwen2":  # biases: small values around 0 ("bias" kind)
            plan += [
                (b + "attn_q.bias", (q,), 0.5, "bias"),
                (b + "attn_k.bias", (kv,), 0.5, "bias"),
                (b + "attn_v.bias", (kv,), 0.5, "bias"),
            ]
        if hp.get("arch", "qwen3") == "qwen3":
            plan += [
                (b + "attn_q_norm.weight", (d,), 0.1, True),
                (b + "attn_k_norm.weight", (d,), 0.1, True),
            ]
        plan += [
            (b + "ffn_norm.weight", (e,), 0.1, True),
            (b + "ffn_gate.weight", (f, e), 1 / np.sqrt(e), False),
            (b + "ffn_up.weight", (f, e), 1 / np.sqrt(e), False),
            (b + "ffn_down.weight", (e, f), 0.5 / np.sqrt(f), False),
        ]
    plan += [("output_norm.weight", (e,), 0.1, True),
             ("output.weight", (n_vocab, e), 3 / np.sqrt(e), False)]
    return plan


SQRT3 = np.float32(np.sqrt(3.0))
CHUNK_ELEMS = 1 << 24  # rows are drawn and quantized ~64 MB of float32 at a time


def draw(rng, n, scale):
    """n float32 values, unit-variance uniform times scale."""
    x = rng.random(n, dtype=np.float32)
    x *= np.float32(2.0)
    x -= np.float32(1.0)
    x *= SQRT3 * np.float32(scale)
    return x


def quantize_rows(x, qtype):
    if qtype in KQUANT:
        import kquant  # tests/golden/kquant.py: gguf 0.19 has no K-quant quantizer
        return getattr(kquant, KQUANT[qtype])(x)
    if qtype == gguf.GGMLQuantizationType.F32:
        return x
    if qtype == gguf.GGMLQuantizationType.F16:
        return x.astype(np.float16)
    return gguf.quants.quantize(x, qtype)


def _chunk_job(job):
    """--period: rows [r0, r1) of a matrix from their own generator (a worker process)."""
    name, cols, r0, r1, scale, seed, qtype = job
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), r0])
    return quantize_rows(draw(rng, (r1 - r0) * cols, scale).reshape(r1 - r0, cols), qtype)


def make_tensor_chunked(name, shape, scale, is_norm, seed, qtype, pool):
    """--period: as make_tensor, one generator per chunk of rows, chunks in pool."""
    if is_norm:
        return make_tensor(name, shape, scale, is_norm, seed, qtype)[0]
    rows, cols = shape
    step = max(1, CHUNK_ELEMS // cols)
    jobs = [(name, cols, r0, min(rows, r0 + step), scale, seed, qtype) for r0 in range(0, rows, step)]
    parts = pool.map(_chunk_job, jobs, chunksize=1) if pool else [_chunk_job(j) for j in jobs]
    return np.concatenate(parts, axis=0)


def make_tensor(name, shape, scale, is_norm, seed, qtype):
    """Returns (bytes-as-ndarray ready for write_tensor_data, ggml type)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if is_norm == "bias":
        return draw(rng, shape[0], scale), gguf.GGMLQuantizationType.F32
    if is_norm:
        return np.float32(1.0) + draw(rng, shape[0], scale), gguf.GGMLQuantizationType.F32
    rows, cols = shape
    if qtype == gguf.GGMLQuantizationType.F32:
        out_dtype, row_bytes = np.float32, cols
    elif qtype == gguf.GGMLQuantizationType.F16:
        out_dtype, row_bytes = np.float16, cols
    else:
        out_dtype = np.uint8
        row_bytes = gguf.quants.quant_shape_to_byte_shape((cols,), qtype)[0]
    out = np.empty((rows, row_bytes), dtype=out_dtype)
    step = max(1, CHUNK_ELEMS // cols)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        x = draw(rng, (r1 - r0) * cols, scale).reshape(r1 - r0, cols)
        if qtype in KQUANT:
            import kquant  # tests/golden/kquant.py: gguf 0.19 has no K-quant quantizer
            out[r0:r1] = getattr(kquant, KQUANT[qtype])(x)
        else:
            out[r0:r1] = gguf.quants.quantize(x, qtype)
    return out, qtype


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--layers", type=int, help="cut the depth to N layers")
    ap.add_argument("--wtype", choices=sorted(WTYPES), default="q8_0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rope-scaling", choices=["none", "linear", "yarn", "llama3"], default="none",
                    help="llama preset only")
    ap.add_argument("--rope-factor", type=float, default=4.0)
    ap.add_argument("--period", type=int, default=0,
                    help="layer i repeats layer i %% K, chunk-wise generators (speed benchmarks)")
    ap.add_argument("--jobs", type=int, default=1, help="with --period: processes")
    args = ap.parse_args()

    t0 = time.time()
    hp = dict(PRESETS[args.preset])
    if args.layers is not None:
        if not 1 <= args.layers <= hp["n_layer"]:
            ap.error(f"--layers must be 1..{hp['n_layer']}")
        hp["n_layer"] = args.layers
    tokens, types, merges, sp = build_vocab(hp["n_vocab"])
    n_vocab = len(tokens)
    qtype = WTYPES[args.wtype]

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    arch = hp.get("arch", ARCH)
    if args.rope_scaling != "none" and arch != "llama":
        ap.error("--rope-scaling applies to the llama preset")
    if args.rope_scaling == "yarn":
        hp["n_ctx"] = int(args.rope_factor * ROPE_ORIG_CTX)
    w = gguf.GGUFWriter(tmp, arch)
    name = f"sparkd-synth-{args.preset}-L{hp['n_layer']}-{args.wtype}-s{args.seed}"
    if args.rope_scaling != "none":
        name += f"-rope-{args.rope_scaling}{args.rope_factor:g}"
    if args.period:
        name += f"-period{args.period}"
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_block_count(hp["n_layer"])
    w.add_context_length(hp["n_ctx"])
    w.add_embedding_length(hp["n_embd"])
    w.add_feed_forward_length(hp["n_ff"])
    w.add_head_count(hp["n_head"])
    w.add_head_count_kv(hp["n_head_kv"])
    w.add_rope_freq_base(hp["rope_base"])
    w.add_layer_norm_rms_eps(hp["eps"])
    w.add_key_length(hp["head_dim"])
    w.add_value_length(hp["head_dim"])
    if arch == "llama":
        w.add_rope_dimension_count(hp["head_dim"])
    if args.rope_scaling in ("linear", "yarn"):
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR if args.rope_scaling == "linear"
                                else gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(args.rope_factor)
    if args.rope_scaling == "yarn":
        w.add_rope_scaling_orig_ctx_len(ROPE_ORIG_CTX)
    w.add_file_type(FILE_TYPES[args.wtype])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch in ("qwen2", "qwen3") else "llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(sp["<|im_end|>"])
    w.add_pad_token_id(sp["<|endoftext|>"])
    w.add_bos_token_id(sp["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    plan = tensor_plan(hp, n_vocab)
    rope_freqs = None
    if args.rope_scaling == "llama3":
        rope_freqs = llama3_rope_freqs(hp["head_dim"], hp["rope_base"], args.rope_factor)
        w.add_tensor_info("rope_freqs.weight", rope_freqs.shape, np.dtype(np.float32), rope_freqs.nbytes)
    for tname, shape, _, is_norm in plan:
        if is_norm:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), shape[0] * 4)
            continue
        qtype = tensor_qtype(args.wtype, tname, hp["n_layer"])
        rows, cols = shape
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), rows * cols * 4)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor_info(tname, shape, np.dtype(np.float16), rows * cols * 2)
        else:
            bshape = gguf.quants.quant_shape_to_byte_shape(shape, qtype)
            w.add_tensor_info(tname, bshape, np.dtype(np.uint8), bshape[0] * bshape[1],
                              raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    if rope_freqs is not None:
        w.write_tensor_data(rope_freqs)
    if args.period:
        import multiprocessing
        pool = multiprocessing.Pool(args.jobs) if args.jobs > 1 else None
        cache = {}
        for tname, shape, scale, is_norm in plan:
            qt = tensor_qtype(args.wtype, tname, hp["n_layer"])
            src = tname
            if tname.startswith("blk."):
                _, i, rest = tname.split(".", 2)
                src = f"blk.{int(i) % args.period}.{rest}"
            key = (src, qt)
            if key not in cache:
                cache[key] = make_tensor_chunked(src, shape, scale, is_norm, args.seed, qt, pool)
            w.write_tensor_data(cache[key])
        if pool:
            pool.close()
    else:
        for tname, shape, scale, is_norm in plan:
            data, _ = make_tensor(tname, shape, scale, is_norm, args.seed, tensor_qtype(args.wtype, tname, hp["n_layer"]))
            w.write_tensor_data(data)
    w.close()
    os.replace(tmp, args.out)

    h = hashlib.sha256()
    with open(args.out, "rb") as fp:
        while chunk := fp.read(1 << 24):
            h.update(chunk)
    size = os.path.getsize(args.out)
    print(f"{args.out}: {name}, vocab {n_vocab} ({len(merges)} merges), "
          f"{size} bytes, {time.time() - t0:.1f} s")
    print(f"sha256 {h.hexdigest()}")


if __name__ == "__main__":
    main()
