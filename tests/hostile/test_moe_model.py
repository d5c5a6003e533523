#!/usr/bin/env python3
"""Hostile mixture-of-experts files: each case takes a valid synthetic gpt-oss or qwen3moe
file (make_synth_moe.py), changes one thing through the gguf package (drop a tensor, change
a key, a tensor's shape or type) and expects `sparkd info` to refuse it with the exact
message naming the problem. The unchanged files are the controls (exit 0)."""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ok, exit_code  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
BIN = os.environ.get("SPARKD_BIN", os.path.join(BUILD, "sparkd"))
PY = os.environ.get("SPARKD_PY", sys.executable)
GEN = os.path.join(ROOT, "tests", "golden", "make_synth_moe.py")


def rewrite(src, dst, drop_tensor=None, set_key=None, drop_key=None, tensor_fn=None):
    """Copies src to dst through gguf-py with one change. set_key = (key, value, GGUFValueType);
    tensor_fn(name, data, qtype) -> (data, qtype) or None to keep."""
    import gguf
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k == drop_key:
            continue
        if set_key and k == set_key[0]:
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, f.contents(), vt, sub_type=f.types[-1])
        else:
            w.add_key_value(k, f.contents(), vt)
    if set_key:
        w.add_key_value(set_key[0], set_key[1], set_key[2])
    for t in r.tensors:
        if t.name == drop_tensor:
            continue
        data, qt = np.array(t.data), t.tensor_type
        if tensor_fn:
            res = tensor_fn(t.name, data, qt)
            if res is not None:
                data, qt = res
        if qt in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor(t.name, data, raw_dtype=qt)
        else:
            w.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def info(path):
    r = subprocess.run([BIN, "info", "-m", path], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr.strip()


def main():
    import gguf
    V = gguf.GGUFValueType
    with tempfile.TemporaryDirectory() as d:
        base = {}
        for p in ("gpt-oss-tiny", "qwen3moe-tiny"):
            base[p] = os.path.join(d, p + ".gguf")
            subprocess.run([PY, GEN, "--out", base[p], "--preset", p], check=True, stdout=subprocess.DEVNULL)
            rc, err = info(base[p])
            ok(rc == 0, "control %s loads" % p, err)
            copy = os.path.join(d, p + "-copy.gguf")
            rewrite(base[p], copy)
            rc, err = info(copy)
            ok(rc == 0, "control %s rewritten unchanged through gguf-py loads" % p, err)

        def f16_bias(name, data, qt):
            if name == "blk.2.ffn_gate_exps.bias":
                return data.astype(np.float16), gguf.GGMLQuantizationType.F16
            return None

        def seven_experts(name, data, qt):
            if name == "blk.0.ffn_up_exps.weight":
                return data[:7], qt
            return None

        def router_rows(name, data, qt):
            if name == "blk.3.ffn_gate_inp.weight":
                return data[:15], qt
            return None

        cases = [
            ("gpt-oss-tiny", "no sinks", dict(drop_tensor="blk.1.attn_sinks.weight"),
             "missing tensor 'blk.1.attn_sinks.weight'"),
            ("gpt-oss-tiny", "no down experts",
             dict(drop_tensor="blk.3.ffn_down_exps.weight"), "missing tensor 'blk.3.ffn_down_exps.weight'"),
            ("gpt-oss-tiny", "7 experts in one stacked tensor", dict(tensor_fn=seven_experts),
             "tensor 'blk.0.ffn_up_exps.weight' has shape [192, 192, 7] (3 dims), expected [192, 192, 8]"),
            ("gpt-oss-tiny", "expert bias in F16", dict(tensor_fn=f16_bias),
             "tensor 'blk.2.ffn_gate_exps.bias' is F16; expert biases must be F32"),
            ("gpt-oss-tiny", "no sliding window key", dict(drop_key="gpt-oss.attention.sliding_window"),
             "missing metadata key gpt-oss.attention.sliding_window"),
            ("gpt-oss-tiny", "top-9 of 8 experts", dict(set_key=("gpt-oss.expert_used_count", 9, V.UINT32)),
             "gpt-oss.expert_used_count = 9 out of range [1, 8]"),
            ("qwen3moe-tiny", "no expert width", dict(drop_key="qwen3moe.expert_feed_forward_length"),
             "missing metadata key qwen3moe.expert_feed_forward_length"),
            ("qwen3moe-tiny", "expert count as a string", dict(set_key=("qwen3moe.expert_count", "16", V.STRING)),
             None),
            ("qwen3moe-tiny", "router for 15 experts", dict(tensor_fn=router_rows),
             "tensor 'blk.3.ffn_gate_inp.weight' has shape [256, 15] (2 dims), expected [256, 16]"),
            ("qwen3moe-tiny", "no k norm", dict(drop_tensor="blk.0.attn_k_norm.weight"),
             "missing tensor 'blk.0.attn_k_norm.weight'"),
        ]
        for i, (p, what, change, want) in enumerate(cases):
            path = os.path.join(d, "case%d.gguf" % i)
            rewrite(base[p], path, **change)
            rc, err = info(path)
            if want is None:  # the exact wording belongs to the metadata reader: a clean refusal
                ok(rc == 1 and err.startswith("error: ") and "expert_count" in err,
                   "%s: %s refused naming the key" % (p, what), err)
            else:
                ok(rc == 1 and err.endswith(want), "%s: %s -> %s" % (p, what, want), err)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
