#!/usr/bin/env python3
"""Golden tests: sparkd against references made by HF transformers
(tests/golden/make_refs.py; how each file was made is recorded inside it and in
tests/golden/README.md).

For every reference file and every case:
  - the prompt ids sparkd's tokenizer produces equal HF's (text prompts);
  - `sparkd run --temp 0` generates exactly HF's greedy ids (on the engine
    SPARKD_DEVICE names, e.g. cuda; the CPU engine by default);
  - first-step logits agree: the top-16 ids in the same order where HF's
    logits are separated by more than the tolerance, and every compared logit
    (top 64 + a strided sample of the vocabulary) within LOGIT_ATOL.
"""
import hashlib
import json
import os
import subprocess
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ok, exit_code  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
BIN = os.environ.get("SPARKD_BIN", os.path.join(BUILD, "sparkd"))
SAN = BUILD.rstrip("/").endswith("-san")
HERE = os.path.dirname(os.path.abspath(__file__))
LOGIT_ATOL = 0.02  # absolute, on logits of magnitude ~10-40 (float32 vs float32, different summation order)
# The same references on another engine (tests/gpu/run.sh: SPARKD_DEVICE=cuda): `sparkd run
# --device` and tool_logits (which reads SPARKD_DEVICE) use it; SPARKD_GOLDEN_ONLY=a,b keeps
# the reference files whose names start with one of the prefixes.
DEVICE = os.environ.get("SPARKD_DEVICE", "") or os.environ.get("SPARKD_GOLDEN_DEVICE", "")
ONLY = [x for x in os.environ.get("SPARKD_GOLDEN_ONLY", "").split(",") if x]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def model_for(ref):
    """The GGUF a reference was made from: the default model, or a synthetic one
    regenerated here byte-identically (checked by SHA-256) by the script named in the
    reference (make_synth.py unless it says otherwise)."""
    if ref.get("synth_args"):
        out = os.path.join(BUILD, "golden", ref["model_file"])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not os.path.exists(out) or sha256(out) != ref["model_sha256"]:
            py = os.environ.get("SPARKD_PY", sys.executable)
            script = os.path.join(HERE, ref.get("synth_script", "make_synth.py"))
            subprocess.run([py, script, "--out", out] + ref["synth_args"], check=True, stdout=subprocess.DEVNULL)
        return out
    return os.environ.get("SPARKD_MODEL", os.path.join(ROOT, "models", ref["model_file"]))


def parse_ids(stderr, label):
    for line in stderr.splitlines():
        if line.startswith(label):
            return [int(x) for x in line[len(label):].split()]
    return None


def greedy_ok(ref, case, gids):
    """(pass, what was compared). A float32 reference: every greedy id equal. A second
    reference: equal up to the first difference, and that difference (if any) at a step
    where the reference's own margin is under 2 x its tolerance, so its choice there was
    within its noise; the ids after it are not compared."""
    ref_ids = case["greedy_ids"]
    first_diff = next((i for i, (a, b) in enumerate(zip(gids, ref_ids)) if a != b), None)
    if first_diff is None and len(gids) == len(ref_ids):
        return True, "%d greedy tokens equal the reference's" % len(ref_ids)
    if not ref.get("second_reference") or first_diff is None:
        return False, "first difference at step %s" % first_diff
    m = case["margins"][first_diff]
    return m < 2 * ref["logit_atol"], ("greedy tokens equal the reference's up to step %d, where its margin %.3f "
                                       "is under 2 x %.3g" % (first_diff, m, ref["logit_atol"]))


def check_case(ref, model, ci, case):
    name = "%s case %d%s" % (ref["model_file"], ci, " on " + DEVICE if DEVICE else "")
    atol = ref.get("logit_atol", LOGIT_ATOL)
    if ref.get("second_reference"):
        name += " (%s)" % ref["reference"].split(" ")[0]
    n_new = len(case["greedy_ids"])
    if case.get("prompt") is not None:
        cmd = [BIN, "run", "-m", model, "-p", case["prompt"], "-n", str(n_new), "--temp", "0",
               "--print-ids", "--ignore-eos", "-c", "512", "-t", "2"] + (["--device", DEVICE] if DEVICE else [])
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600)
        ok(r.returncode == 0, name + " sparkd run exits 0", r.stderr[-500:])
        pids = parse_ids(r.stderr, "prompt ids:")
        ok(pids == case["prompt_ids"], name + " prompt ids equal HF tokenizer's",
           "sparkd %s vs HF %s" % (pids, case["prompt_ids"]))
        gids = parse_ids(r.stderr, "generated ids:")
        first_diff = next((i for i, (a, b) in enumerate(zip(gids or [], case["greedy_ids"])) if a != b), None)
        ok(gids == case["greedy_ids"], name + " %d greedy tokens equal HF transformers'" % n_new,
           "first difference at step %s (HF margin there %.4f): sparkd %s vs HF %s" % (
               first_diff, case["margins"][first_diff] if first_diff is not None else float("nan"),
               gids, case["greedy_ids"]))
    # first-step logits (and, for id-only cases, the greedy continuation) from
    # the engine directly
    gen = 0 if case.get("prompt") is not None else n_new
    tool = os.path.join(BUILD, "tests", "tool_logits")
    r = subprocess.run([tool, model, str(len(case["top_ids"])), str(case["stride"]), str(gen)] +
                       [str(i) for i in case["prompt_ids"]], capture_output=True, text=True, timeout=900)
    ok(r.returncode == 0, name + " tool_logits exits 0", r.stderr[-500:])
    if r.returncode != 0:
        return
    lines = {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in r.stdout.strip().splitlines()}
    if gen:
        gids = [int(x) for x in lines["greedy"].split()]
        passed, what = greedy_ok(ref, case, gids)
        ok(passed, name + " (from ids) " + what, "sparkd %s vs reference %s" % (gids, case["greedy_ids"]))
    top = [(int(a), float(b)) for a, b in (x.split(":") for x in lines["top"].split())]
    strided = [float(x) for x in lines["strided"].split()]
    ours_top_ids = [i for i, _ in top]
    hf_vals = case["top_logits"]
    # order must agree where HF's gaps exceed the tolerance
    order_ok = True
    for k in range(16):
        if ours_top_ids[k] != case["top_ids"][k]:
            gap = min(abs(hf_vals[k] - hf_vals[k - 1]) if k else 1e9,
                      abs(hf_vals[k] - hf_vals[k + 1]) if k + 1 < len(hf_vals) else 1e9)
            if gap > 2 * atol:
                order_ok = False
    ok(order_ok, name + " top-16 order equals the reference's", "sparkd %s vs reference %s" % (ours_top_ids[:16], case["top_ids"][:16]))
    # values: HF's top ids looked up in ours via the strided/top sets
    ours = dict(top)
    diffs = [abs(ours[i] - v) for i, v in zip(case["top_ids"], hf_vals) if i in ours]
    diffs += [abs(a - b) for a, b in zip(strided, case["strided_logits"])]
    ok(len(strided) == len(case["strided_logits"]), name + " strided logits count")
    mx = max(diffs) if diffs else float("inf")
    ok(mx <= atol, name + " %d logits within %.3g of the reference (max abs diff %.2e)" % (len(diffs), atol, mx))


def main():
    refs = sorted(f for f in os.listdir(HERE) if f.endswith(".json") and "prompts" not in f)
    ok(len(refs) >= 3, "golden reference files present (%d)" % len(refs))
    if ONLY:
        refs = [f for f in refs if any(f.startswith(p) for p in ONLY)]
        ok(len(refs) >= 1, "reference files matching %s: %s" % (ONLY, refs))
    for f in refs:
        with open(os.path.join(HERE, f)) as fh:
            ref = json.load(fh)
        if not isinstance(ref, dict) or "cases" not in ref:
            continue  # e.g. gemma3-prompts.json, an input of make_refs.py
        model = model_for(ref)
        if ref.get("model_sha256"):
            ok(sha256(model) == ref["model_sha256"], f + " model file matches the reference's SHA-256")
        cases = ref["cases"]
        if SAN:  # the sanitizer pass is ~3x slower: two cases are enough to catch memory errors
            cases = cases[:2]
        for ci, case in enumerate(cases):
            check_case(ref, model, ci, case)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
