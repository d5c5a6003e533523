#!/usr/bin/env python3
"""Golden references for the mixture-of-experts architectures from HF transformers:
GptOssForCausalLM and Qwen3MoeForCausalLM, float32, eager attention, eager experts.

transformers' own GGUF loader reads neither architecture, so this script reads the GGUF
with the gguf package (tensors dequantized by gguf-py: MXFP4 experts, Q8_0, Q4_K, Q6_K ->
float32), builds the HF config from the GGUF metadata, and puts every tensor into the HF
module by name — the inverse of what llama.cpp's convert_hf_to_gguf.py does:
  gpt-oss   ffn_{gate,up}_exps (E, I, H) -> experts.gate_up_proj (E, H, 2I), gate in the
            even columns and up in the odd ones (HF keeps the checkpoint's interleave);
            ffn_{gate,up}_exps.bias -> gate_up_proj_bias (E, 2I) the same way;
            ffn_down_exps (E, H, I) -> down_proj (E, I, H); attn_sinks -> self_attn.sinks;
            post_attention_norm -> post_attention_layernorm; ffn_gate_inp -> mlp.router.
  qwen3moe  ffn_gate_exps / ffn_up_exps (E, I, H) -> gate_up_proj (E, 2I, H) (gate first);
            ffn_down_exps (E, H, I) -> down_proj; ffn_gate_inp -> mlp.gate.
Every parameter of the HF model must be set from the file (checked), so a name or shape
mistake fails here instead of silently keeping a random init.

What the GGUF does not say and is taken from the published configs:
  gpt-oss   layer types alternate sliding/full starting with sliding (llama.cpp's
            sliding-window pattern 2: layer i slides when i % 2 == 0); the YaRN correction
            range is not rounded (config "truncate": false, as OpenAI's reference code and
            HF do; llama.cpp rounds it, which is one reason its reference differs slightly);
            SwiGLU alpha 1.702, limit 7.0; attention bias on q/k/v/o.
  qwen3moe  norm_topk_prob true (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B); every layer sparse.

The greedy loop and the recorded fields are those of make_refs.py (full forward per step,
argmax, first maximum on ties; top-64 and strided first-step logits; margins).

usage: make_refs_moe.py MODEL.gguf OUT.json --prompts-file IDS.json --synth-args "..."
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

TOPK = 64
STRIDE = 97  # the vocabularies here have ~600 entries: sample every 97th id


def read_gguf(path):
    import gguf
    r = gguf.GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer.ggml.") and k not in ("tokenizer.ggml.pre", "tokenizer.ggml.model"):
            continue
        try:
            meta[k] = f.contents()
        except Exception:  # noqa: BLE001 - metadata the reference does not need
            pass
    tensors = {}
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = np.ascontiguousarray(x, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])
    n_vocab = len(r.fields["tokenizer.ggml.tokens"].data)
    return meta, tensors, n_vocab


def build(meta, T, n_vocab):
    """(HF model, its rope_parameters, {hf param name: float32 array})."""
    import torch  # noqa: F401
    arch = meta["general.architecture"]
    g = lambda k, d=None: meta.get(f"{arch}.{k}", d)  # noqa: E731
    L = g("block_count")
    P = {}
    if arch == "gpt-oss":
        from transformers import GptOssConfig, GptOssForCausalLM
        rope = {"rope_type": "yarn", "rope_theta": float(g("rope.freq_base")),
                "factor": float(g("rope.scaling.factor")),
                "original_max_position_embeddings": int(g("rope.scaling.original_context_length")),
                "beta_fast": float(g("rope.scaling.yarn_beta_fast", 32.0)),
                "beta_slow": float(g("rope.scaling.yarn_beta_slow", 1.0)),
                "truncate": False}
        cfg = GptOssConfig(
            vocab_size=n_vocab, hidden_size=g("embedding_length"), intermediate_size=g("expert_feed_forward_length"),
            num_hidden_layers=L, num_attention_heads=g("attention.head_count"),
            num_key_value_heads=g("attention.head_count_kv"), head_dim=g("attention.key_length"),
            num_local_experts=g("expert_count"), num_experts_per_tok=g("expert_used_count"),
            sliding_window=g("attention.sliding_window"),
            layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)],
            max_position_embeddings=g("context_length"), rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")),
            rope_parameters=rope, attention_bias=True, tie_word_embeddings=False, swiglu_limit=7.0,
            attn_implementation="eager", experts_implementation="eager")
        model = GptOssForCausalLM(cfg)
        for i in range(L):
            b, h = f"blk.{i}.", f"model.layers.{i}."
            for ours, hf in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"), ("attn_output", "o_proj")):
                P[h + f"self_attn.{hf}.weight"] = T[b + ours + ".weight"]
                P[h + f"self_attn.{hf}.bias"] = T[b + ours + ".bias"]
            P[h + "self_attn.sinks"] = T[b + "attn_sinks.weight"]
            P[h + "input_layernorm.weight"] = T[b + "attn_norm.weight"]
            P[h + "post_attention_layernorm.weight"] = T[b + "post_attention_norm.weight"]
            P[h + "mlp.router.weight"] = T[b + "ffn_gate_inp.weight"]
            P[h + "mlp.router.bias"] = T[b + "ffn_gate_inp.bias"]
            gate, up = T[b + "ffn_gate_exps.weight"], T[b + "ffn_up_exps.weight"]  # (E, I, H)
            E, I, H = gate.shape
            gu = np.empty((E, H, 2 * I), dtype=np.float32)
            gu[:, :, 0::2] = gate.transpose(0, 2, 1)
            gu[:, :, 1::2] = up.transpose(0, 2, 1)
            P[h + "mlp.experts.gate_up_proj"] = gu
            gub = np.empty((E, 2 * I), dtype=np.float32)
            gub[:, 0::2] = T[b + "ffn_gate_exps.bias"]
            gub[:, 1::2] = T[b + "ffn_up_exps.bias"]
            P[h + "mlp.experts.gate_up_proj_bias"] = gub
            P[h + "mlp.experts.down_proj"] = np.ascontiguousarray(T[b + "ffn_down_exps.weight"].transpose(0, 2, 1))
            P[h + "mlp.experts.down_proj_bias"] = T[b + "ffn_down_exps.bias"]
    elif arch == "qwen3moe":
        from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
        rope = {"rope_type": "default", "rope_theta": float(g("rope.freq_base"))}
        cfg = Qwen3MoeConfig(
            vocab_size=n_vocab, hidden_size=g("embedding_length"), intermediate_size=g("feed_forward_length"),
            moe_intermediate_size=g("expert_feed_forward_length"), num_hidden_layers=L,
            num_attention_heads=g("attention.head_count"), num_key_value_heads=g("attention.head_count_kv"),
            head_dim=g("attention.key_length"), num_experts=g("expert_count"),
            num_experts_per_tok=g("expert_used_count"), norm_topk_prob=True, decoder_sparse_step=1,
            mlp_only_layers=[], max_position_embeddings=g("context_length"),
            rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")), rope_parameters=rope,
            attention_bias=False, tie_word_embeddings=False,
            attn_implementation="eager", experts_implementation="eager")
        model = Qwen3MoeForCausalLM(cfg)
        for i in range(L):
            b, h = f"blk.{i}.", f"model.layers.{i}."
            for ours, hf in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"), ("attn_output", "o_proj")):
                P[h + f"self_attn.{hf}.weight"] = T[b + ours + ".weight"]
            P[h + "self_attn.q_norm.weight"] = T[b + "attn_q_norm.weight"]
            P[h + "self_attn.k_norm.weight"] = T[b + "attn_k_norm.weight"]
            P[h + "input_layernorm.weight"] = T[b + "attn_norm.weight"]
            P[h + "post_attention_layernorm.weight"] = T[b + "ffn_norm.weight"]
            P[h + "mlp.gate.weight"] = T[b + "ffn_gate_inp.weight"]
            P[h + "mlp.experts.gate_up_proj"] = np.concatenate(
                [T[b + "ffn_gate_exps.weight"], T[b + "ffn_up_exps.weight"]], axis=1)
            P[h + "mlp.experts.down_proj"] = T[b + "ffn_down_exps.weight"]
    else:
        sys.exit("make_refs_moe.py: architecture %r is not gpt-oss or qwen3moe" % arch)
    P["model.embed_tokens.weight"] = T["token_embd.weight"]
    P["model.norm.weight"] = T["output_norm.weight"]
    P["lm_head.weight"] = T["output.weight"]
    return model, rope, P


def load_params(model, P):
    import torch
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(P))
    extra = sorted(set(P) - set(own))
    if missing or extra:
        sys.exit("make_refs_moe.py: parameter sets differ: HF has but the file does not give %s; "
                 "the file gives but HF lacks %s" % (missing, extra))
    with torch.no_grad():
        for k, p in own.items():
            v = torch.from_numpy(np.array(P[k], dtype=np.float32))
            if tuple(v.shape) != tuple(p.shape):
                sys.exit("make_refs_moe.py: %s: HF shape %s, file gives %s" % (k, tuple(p.shape), tuple(v.shape)))
            p.copy_(v)


class Probe:
    """Counts gate/up values the gpt-oss SwiGLU clamp changes (the feature must be hit) and
    the smallest gap between the k-th and (k+1)-th router logit over every token routed
    (how far the reference's expert choice is from a tie)."""

    def __init__(self, model):
        self.n = self.total = 0
        self.router_gap = float("inf")
        for layer in model.model.layers:
            router = getattr(layer.mlp, "router", None) or layer.mlp.gate
            router.register_forward_hook(self.on_router)
            ex = layer.mlp.experts
            if hasattr(ex, "limit"):  # gpt-oss experts
                orig = ex._apply_gate

                def wrapped(gate_up, _orig=orig, _lim=ex.limit):
                    gate, up = gate_up[..., ::2], gate_up[..., 1::2]
                    self.n += int((gate > _lim).sum()) + int((up.abs() > _lim).sum())
                    self.total += gate_up.numel()
                    return _orig(gate_up)
                ex._apply_gate = wrapped

    def on_router(self, module, inputs, output):
        import torch
        logits = output[0]
        v = torch.topk(logits, module.top_k + 1, dim=-1).values
        self.router_gap = min(self.router_gap, float((v[:, -2] - v[:, -1]).min()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-new", type=int, default=40)
    ap.add_argument("--prompts-file", required=True, help="JSON list of token-id lists")
    ap.add_argument("--synth-args", default="", help="make_synth_moe.py arguments that regenerate the model")
    a = ap.parse_args()

    import torch
    import transformers
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_grad_enabled(False)

    t0 = time.time()
    meta, T, n_vocab = read_gguf(a.model)
    model, rope, P = build(meta, T, n_vocab)
    load_params(model, P)
    model.to(a.device).eval()
    probe = Probe(model)
    print("loaded %s in %.1fs" % (meta["general.architecture"], time.time() - t0), file=sys.stderr)
    rot = model.model.rotary_emb
    print("rope inv_freq[:4] %s attention_scaling %s" % (rot.inv_freq[:4].tolist(), rot.attention_scaling),
          file=sys.stderr)

    with open(a.prompts_file) as fh:
        prompts = json.load(fh)
    cases = []
    for ids in prompts:
        ids = list(ids)
        logits = model(torch.tensor([ids], device=a.device)).logits[0, -1].float().cpu()
        top = torch.topk(logits, TOPK)
        gen, margins, cur = [], [], list(ids)
        for _ in range(a.n_new):
            row = model(torch.tensor([cur], device=a.device)).logits[0, -1].float().cpu()
            v = torch.topk(row, 2)
            nxt = int(torch.argmax(row))
            margins.append(float(v.values[0] - v.values[1]))
            gen.append(nxt)
            cur.append(nxt)
        cases.append({
            "prompt": None, "prompt_ids": ids, "greedy_ids": gen, "greedy_text": None,
            "min_margin": min(margins), "margins": margins,
            "top_ids": top.indices.tolist(), "top_logits": top.values.tolist(),
            "stride": STRIDE, "strided_logits": logits[::STRIDE].tolist(),
            "logit_max": float(logits.max()), "logit_std": float(logits.std()),
        })
        print("%d prompt ids -> %s min margin %.4f" % (len(ids), gen[:8], min(margins)), file=sys.stderr)

    ref = {
        "made_by": "tests/golden/make_refs_moe.py",
        "reference": "HF transformers %s (%s from the GGUF tensors dequantized by gguf-py, float32, eager "
                     "attention and experts, TF32 off), torch %s, device %s"
                     % (transformers.__version__, type(model).__name__, torch.__version__, a.device),
        "model_file": os.path.basename(a.model),
        "model_sha256": hashlib.sha256(open(a.model, "rb").read()).hexdigest(),
        "synth_script": "make_synth_moe.py",
        "synth_args": a.synth_args.split() if a.synth_args else None,
        "hf_rope_parameters": rope,
        "prompt_ids_source": "token ids (%s)" % os.path.basename(a.prompts_file),
        "n_new": a.n_new,
        "swiglu_clamped_fraction": (probe.n / probe.total) if probe.total else None,
        "router_min_gap": probe.router_gap,
        "cases": cases,
    }
    with open(a.out, "w") as fh:
        json.dump(ref, fh, indent=1)
    if probe.total:
        print("SwiGLU clamp hit %d of %d gate/up values (%.3f%%)" % (probe.n, probe.total, 100.0 * probe.n / probe.total),
              file=sys.stderr)
    print("smallest router gap between the k-th and (k+1)-th expert logit: %.3g" % probe.router_gap, file=sys.stderr)


if __name__ == "__main__":
    main()
