#!/usr/bin/env python3
"""hf_json_to_gguf.py — writes a tensor-less GGUF holding only the tokenizer of
an HF tokenizer.json (byte-level BPE: Qwen2/3, Llama 3), with the
tokenizer.ggml.* keys as llama.cpp's convert_hf_to_gguf.py writes them:
model = "gpt2", pre, tokens (ids in order, added tokens included), token_type
(1 normal, 3 control = special added token, 4 user-defined = non-special added
token), merges as "a b" strings, bos/eos/padding ids, add_bos_token.

    hf_json_to_gguf.py tokenizer.json tokenizer_config.json PRE OUT.gguf
"""
import json
import sys

import gguf


def convert(tok_json, cfg_json, pre, out, arch="llama", extra=None):
    """extra(writer, n_vocab): adds more keys and tensors before the file is written
    (tests/api/make_script_models.py makes whole tiny models this way)."""
    j = json.load(open(tok_json, encoding="utf-8"))
    cfg = json.load(open(cfg_json, encoding="utf-8")) if cfg_json else {}
    model = j["model"]
    assert model["type"] == "BPE", model["type"]
    vocab = dict(model["vocab"])
    added = {a["id"]: a for a in j.get("added_tokens", [])}
    n = max(list(vocab.values()) + list(added.keys())) + 1
    tokens = [None] * n
    types = [gguf.TokenType.NORMAL] * n
    for text, i in vocab.items():
        tokens[i] = text
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    for i in range(n):  # holes (convert_hf_to_gguf pads the same way)
        if tokens[i] is None:
            tokens[i] = "[PAD%d]" % i
            types[i] = gguf.TokenType.UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    def tid(name):
        v = cfg.get(name)
        if isinstance(v, dict):
            v = v.get("content")
        if v is None:
            return None
        return tokens.index(v)

    w = gguf.GGUFWriter(out, arch)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for name, add in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                      ("pad_token", w.add_pad_token_id)):
        i = tid(name)
        if i is not None:
            add(i)
    w.add_add_bos_token(bool(cfg.get("add_bos_token", pre == "llama-bpe")))
    if extra:
        extra(w, n)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n


if __name__ == "__main__":
    print(convert(sys.argv[1], sys.argv[2] if sys.argv[2] != "-" else None, sys.argv[3], sys.argv[4]))
