#!/usr/bin/env python3
"""The GB10 host is aarch64: cross-compile the CPU engine for it (gcc-aarch64-linux-gnu,
-Werror, static) and run it under qemu-user. test_quant must pass on the portable
(non-AVX2) paths, and the forward pass must reproduce HF transformers' golden greedy ids
and logits on the synthetic Qwen3 and Llama (yarn) references. Normal pass only."""
import glob
import json
import os
import shutil
import subprocess
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ok, exit_code, failed  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
CC = "aarch64-linux-gnu-gcc"


# appliance/ sources by module name, and the folders on the include path (as the Makefile has them)
APP = {os.path.basename(p)[:-2]: os.path.relpath(p, ROOT)
       for p in glob.glob(os.path.join(ROOT, "appliance", "**", "*.c"), recursive=True)}
APP_DIRS = sorted({os.path.dirname(p) for p in APP.values()} | {"appliance"})


def cross(out, srcs):
    inc = [a for d in APP_DIRS + ["tests/unit"] for a in ("-iquote", d)]
    cmd = [CC, "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-march=armv8.2-a", "-pthread",
           ] + inc + ["-static", "-o", out] + srcs + ["-lm"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def main():
    if BUILD.rstrip("/").endswith("-san"):
        print("ok - aarch64 cross-check runs in the normal pass only")
        return 0
    if not shutil.which(CC) or not shutil.which("qemu-aarch64"):
        ok(False, "gcc-aarch64-linux-gnu and qemu-user installed (build.sh installs them)")
        return 1
    outdir = os.path.join(BUILD, "aarch64")
    os.makedirs(outdir, exist_ok=True)
    # the model, the engine seam and the CPU backend with what they stand on (not the
    # INI reader or SHA-256, which BearSSL backs and nothing here needs)
    engine = sorted(p for p in APP.values() if p.split(os.sep)[1] in ("base", "format", "model", "engine")
                    and os.path.basename(p) not in ("config.c", "sha256.c")) + [APP["sampler"]]
    r = cross(os.path.join(outdir, "test_quant"), ["tests/unit/test_quant.c"] +
              [APP[m] for m in ("quant", "quant_gemv", "qtypes", "err")])
    ok(r.returncode == 0, "test_quant cross-compiles for aarch64 with -Werror", r.stderr)
    r = cross(os.path.join(outdir, "tool_logits"), ["tests/unit/tool_logits.c"] + engine)
    ok(r.returncode == 0, "the CPU engine cross-compiles for aarch64 with -Werror", r.stderr)
    if failed():
        return 1
    r = subprocess.run(["qemu-aarch64", os.path.join(outdir, "test_quant")], capture_output=True, text=True, timeout=600)
    n_ok = sum(l.startswith("ok - ") for l in r.stdout.splitlines())
    bad = [l for l in r.stdout.splitlines() if l.startswith("not ok")]
    ok(r.returncode == 0 and n_ok > 50 and not bad, "test_quant on aarch64 (qemu): %d ok, %d not ok" % (n_ok, len(bad)), bad[:3])
    py = os.environ.get("SPARKD_PY", sys.executable)
    for ref_name in ("qwen3-tiny.json", "llama-tiny-rope-yarn.json"):
        ref = json.load(open(os.path.join(ROOT, "tests", "golden", ref_name)))
        model = os.path.join(outdir, ref["model_file"])
        if not os.path.exists(model):
            subprocess.run([py, os.path.join(ROOT, "tests/golden/make_synth.py"), "--out", model] + ref["synth_args"],
                           check=True, stdout=subprocess.DEVNULL)
        for ci, c in enumerate(ref["cases"][:3]):
            r = subprocess.run(["qemu-aarch64", os.path.join(outdir, "tool_logits"), model, "64", str(c["stride"]),
                                str(len(c["greedy_ids"]))] + [str(i) for i in c["prompt_ids"]],
                               capture_output=True, text=True, timeout=600)
            lines = dict(l.split(" ", 1) for l in r.stdout.strip().splitlines() if " " in l)
            greedy = [int(x) for x in lines.get("greedy", "").split()]
            strided = [float(x) for x in lines.get("strided", "").split()]
            diff = max((abs(a - b) for a, b in zip(strided, c["strided_logits"])), default=float("inf"))
            ok(r.returncode == 0 and greedy == c["greedy_ids"] and diff <= 0.02,
               "aarch64 %s case %d: %d greedy ids equal HF's, logits within %.1e" % (ref_name, ci, len(greedy), diff),
               r.stderr)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
