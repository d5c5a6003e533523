#!/usr/bin/env python3
"""The second golden reference: llama.cpp (CPU) on the same synthetic GGUF files.

Builds tests/golden/llamacpp_logits.c against a built llama.cpp tree (the one
tests/bench/build_llamacpp.sh makes: static libllama/libggml*), runs it per prompt of an
id-prompts file and writes a reference JSON in make_refs.py's format, marked
"second_reference" so test_golden.py applies its looser checks (see there):
llama.cpp's CPU matmuls quantize the activations to 8 bits for quantized weights, keeps
its own summation order, and for gpt-oss rounds the YaRN correction range (HF does not).

usage: make_refs_llamacpp.py LLAMA_TREE LLAMA_BUILD MODEL.gguf OUT.json --prompts-file F
                             --synth-args "..." [--n-new 40]
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOPK = 64
STRIDE = 97


def build_tool(tree, build, out):
    libs = []
    for pat in ("src/libllama.a", "ggml/src/libggml.a", "ggml/src/libggml-cpu.a", "ggml/src/libggml-base.a"):
        hit = glob.glob(os.path.join(build, pat)) or glob.glob(os.path.join(build, "**", os.path.basename(pat)),
                                                               recursive=True)
        if not hit:
            sys.exit("make_refs_llamacpp.py: %s not found under %s" % (pat, build))
        libs.append(hit[0])
    cmd = ["cc", "-O2", "-std=c11", "-I", os.path.join(tree, "include"), "-I", os.path.join(tree, "ggml", "include"),
           os.path.join(HERE, "llamacpp_logits.c"), "-o", out] + libs + ["-lstdc++", "-lm", "-lpthread", "-fopenmp"]
    subprocess.run(cmd, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tree")
    ap.add_argument("build")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--prompts-file", required=True)
    ap.add_argument("--synth-args", required=True)
    ap.add_argument("--n-new", type=int, default=40)
    ap.add_argument("--logit-atol", type=float, required=True,
                    help="the tolerance test_golden.py applies to this reference's logits")
    a = ap.parse_args()

    tool = os.path.join(a.build, "llamacpp_logits")
    build_tool(a.tree, a.build, tool)
    with open(a.prompts_file) as fh:
        prompts = json.load(fh)
    cases = []
    for ids in prompts:
        r = subprocess.run([tool, a.model, str(a.n_new), str(TOPK), str(STRIDE)] + [str(i) for i in ids],
                           capture_output=True, text=True, check=True)
        lines = {l.split(" ", 1)[0]: l.split(" ", 1)[1].split() for l in r.stdout.strip().splitlines()}
        top = [(int(x.split(":")[0]), float(x.split(":")[1])) for x in lines["top"]]
        strided = [float(x) for x in lines["strided"]]
        margins = [float(x) for x in lines["margins"]]
        cases.append({
            "prompt": None, "prompt_ids": list(ids), "greedy_ids": [int(x) for x in lines["greedy"]],
            "greedy_text": None, "min_margin": min(margins), "margins": margins,
            "top_ids": [i for i, _ in top], "top_logits": [v for _, v in top],
            "stride": STRIDE, "strided_logits": strided,
        })
        print("%d prompt ids -> %s min margin %.4f" % (len(ids), cases[-1]["greedy_ids"][:8], min(margins)))
    ver = open(os.path.join(a.tree, ".sparkd-from")).read().strip() if os.path.exists(
        os.path.join(a.tree, ".sparkd-from")) else "unknown"
    ref = {
        "made_by": "tests/golden/make_refs_llamacpp.py",
        "reference": "llama.cpp from llama-cpp-python 0.3.36's sources (sdist sha256 %s), CPU, F32 KV cache, "
                     "flash attention off, through libllama (tests/golden/llamacpp_logits.c)" % ver,
        "second_reference": True,
        "logit_atol": a.logit_atol,
        "model_file": os.path.basename(a.model),
        "model_sha256": hashlib.sha256(open(a.model, "rb").read()).hexdigest(),
        "synth_script": "make_synth_moe.py",
        "synth_args": a.synth_args.split(),
        "prompt_ids_source": "token ids (%s)" % os.path.basename(a.prompts_file),
        "n_new": a.n_new,
        "cases": cases,
    }
    with open(a.out, "w") as fh:
        json.dump(ref, fh, indent=1)


if __name__ == "__main__":
    main()
