#!/usr/bin/env python3
"""test_tp_cpu.py — the tensor-parallel sharding math on the CPU engine, without a GPU.

tests/unit/tool_tpcpu runs the unsharded CPU engine and 2 CPU engines over the packed
shard views (appliance/engine/shard.c) in lockstep, the ranks' partial outputs of the
attention output projection and of the FFN summed after each (the all-reduce), and
compares the ranks' vocabulary rows put together with the unsharded logits over a prompt
and teacher-forced decode steps (relative L2 < 1e-4, greedy tokens equal). The
references are the unsharded engine's own logits (checked elsewhere against HF
transformers: tests/golden); what this checks is that cutting the model changes nothing.
Negative controls in the tool (without the all-reduce; expert down biases on every rank)
must fail to match, or the check could not fail. The experts' zero padding the CUDA
engine uploads (shard_copy_experts) is run on the CPU too and must change nothing. Models: the dense synthetic Qwen3 (Q8_0,
F16), Qwen2 (q/k/v biases), gpt-oss-tiny (MXFP4 experts with biases, sinks, sliding
window) and qwen3moe-tiny-tp (Q4_K/Q6_K experts); qwen3moe-tiny (a 256-wide K-quant down
matrix) is refused by the columns split.

moe_split = experts (whole experts per rank, shard.h) on gpt-oss-tiny, qwen3moe-tiny-tp and
qwen3moe-tiny (the file the columns split refuses): the same comparison, and the controls
that must fail: no all-reduce; the expert down biases on rank 0 alone (the columns rule,
wrong by experts: gpt-oss-tiny); every rank's experts taken for experts 0.. (the expert
offset dropped).
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ok, exit_code  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
PY = os.environ.get("SPARKD_PY", sys.executable)
TOOL = os.path.join(BUILD, "tests", "tool_tpcpu")
SYNTH = os.path.join(ROOT, "tests", "golden", "make_synth.py")
SYNTH_MOE = os.path.join(ROOT, "tests", "golden", "make_synth_moe.py")

MODELS = [  # label, file, generator, args
    ("tiny q8_0", "tiny-q8_0.gguf", SYNTH, ["--preset", "tiny", "--wtype", "q8_0"]),
    ("tiny f16", "tiny-f16.gguf", SYNTH, ["--preset", "tiny", "--wtype", "f16"]),
    ("qwen2-tiny (biases)", "qwen2-tiny.gguf", SYNTH, ["--preset", "qwen2-tiny", "--wtype", "q8_0"]),
    ("gpt-oss-tiny (MXFP4 experts)", "gpt-oss-tiny.gguf", SYNTH_MOE, ["--preset", "gpt-oss-tiny"]),
    ("qwen3moe-tiny-tp (K-quant experts)", "qwen3moe-tiny-tp.gguf", SYNTH_MOE, ["--preset", "qwen3moe-tiny-tp"]),
]


def model(d, fn, gen, args):
    p = os.path.join(d, fn)
    if not os.path.exists(p):
        subprocess.run([PY, gen, "--out", p] + args, check=True, stdout=subprocess.DEVNULL, timeout=600)
    return p


def main():
    if not ok(os.path.exists(TOOL), "tool_tpcpu built", TOOL):
        return exit_code()
    d = os.path.join(BUILD, "tp-models")
    os.makedirs(d, exist_ok=True)
    for label, fn, gen, args in MODELS:
        p = model(d, fn, gen, args)
        r = subprocess.run([TOOL, p, "2", "6"], capture_output=True, text=True, timeout=300)
        lines = r.stdout.splitlines()
        oks = [l for l in lines if l.startswith("ok - ")]
        bad = [l for l in lines if l.startswith("not ok")]
        moe_bias = "gpt-oss" in fn
        want = 4 if moe_bias else 3
        ok(r.returncode == 0 and not bad and len(oks) == want,
           "%s: 2 CPU ranks equal the unsharded engine; %d checks (%s)" % (label, want, "; ".join(
               l[5:] for l in oks)), r.stdout[-600:] + r.stderr[-300:])
    # the CUDA engine pads each rank's experts to a multiple of 64 (gpt-oss over 2 ranks:
    # 1440 -> 1472) with shard_copy_experts; the same layout on the CPU must change nothing
    # (zero rows of gate/up and their biases, zero MXFP4 blocks of down)
    p = os.path.join(d, "gpt-oss-tiny.gguf")
    for size, pad, what in ((2, 128, "96 -> 128 per rank"), (1, 128, "192 -> 256, unsharded")):
        r = subprocess.run([TOOL, p, str(size), "6", str(pad)], capture_output=True, text=True, timeout=300)
        lines = r.stdout.splitlines()
        bad = [l for l in lines if l.startswith("not ok")]
        ok(r.returncode == 0 and not bad and "# experts padded to a multiple of %d" % pad in r.stdout and
           sum(l.startswith("ok - ") for l in lines) == (4 if size > 1 else 2),
           "gpt-oss-tiny, %d rank(s), experts zero-padded %s: equal to the unpadded unsharded engine (%s)" % (
               size, what, next((l[5:] for l in lines if l.startswith("ok - ")), "")), r.stdout[-600:] + r.stderr[-300:])
    p = model(d, "qwen3moe-tiny.gguf", SYNTH_MOE, ["--preset", "qwen3moe-tiny"])
    r = subprocess.run([TOOL, p, "2"], capture_output=True, text=True, timeout=300)
    ok(r.returncode == 3 and "ffn_down_exps" in r.stdout and "blocks of 256" in r.stdout,
       "qwen3moe-tiny over 2 ranks: refused (its K-quant down matrix is 256 wide)", r.stdout + r.stderr)
    # moe_split = experts: whole experts per rank; qwen3moe-tiny splits this way
    for label, fn, pad, want in (("gpt-oss-tiny (MXFP4 experts, biases)", "gpt-oss-tiny.gguf", 0, 5),
                                 ("gpt-oss-tiny, experts zero-padded 192 -> 256", "gpt-oss-tiny.gguf", 128, 5),
                                 ("qwen3moe-tiny-tp (K-quant experts)", "qwen3moe-tiny-tp.gguf", 0, 4),
                                 ("qwen3moe-tiny (refused by columns)", "qwen3moe-tiny.gguf", 0, 4)):
        r = subprocess.run([TOOL, os.path.join(d, fn), "2", "6", str(pad), "experts"], capture_output=True, text=True,
                           timeout=300)
        lines = r.stdout.splitlines()
        oks = [l for l in lines if l.startswith("ok - ")]
        bad = [l for l in lines if l.startswith("not ok")]
        ok(r.returncode == 0 and not bad and len(oks) == want and "# moe_split experts" in lines,
           "%s, moe_split experts: 2 CPU ranks of whole experts equal the unsharded engine; %d checks (%s)" % (
               label, want, "; ".join(l[5:] for l in oks)), r.stdout[-700:] + r.stderr[-300:])
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
