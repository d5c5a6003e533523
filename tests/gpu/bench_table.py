#!/usr/bin/env python3
"""bench_table.py OUT Q8 Q4 KV DEPTH — the table tests/gpu/bench.sh prints last.

Reads OUT/env.txt (probe, mma peak), OUT/sparkd.txt (sparkd bench), OUT/peer.txt (llama-bench
and llama-batched-bench JSON lines) and counts from each model file (gguf package):
  bytes per decoded token = every tensor but token_embd (one row of it is read) + the KV
            cache read at the step's context (n_layer x 2 x n_kv x head_dim x bytes of KV)
  FLOPs per prompt token  = 2 x the matrices' parameters without token_embd and the output
            head (logits are made for the last prompt token only) + attention (4 x n_layer x
            n_head x head_dim x the mean causal context)
Ceilings: decode tok/s = probe / bytes per token; prompt tok/s = mma.sync peak / FLOPs per token.
Writes OUT/table.md and prints it.
"""
import json
import os
import re
import sys

import gguf

OUT, Q8, Q4, KV, DEPTH = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
COUNTS_ONLY = len(sys.argv) > 6 and sys.argv[6] == "--counts"  # write OUT/counts.json and stop
KV_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "q8": 1, "fp8": 1}[KV]


def read(name):
    p = os.path.join(OUT, name)
    return open(p, errors="replace").read() if os.path.exists(p) else ""


def model_counts(path):
    """Counts of a model file, from OUT/counts.json when the file is not here."""
    cj = os.path.join(OUT, "counts.json")
    if not COUNTS_ONLY and not os.path.exists(path) and os.path.exists(cj):
        c = json.load(open(cj))[path]
        mm, outp = c.pop("mm_params"), c.pop("out_params")
        c["flop_tok"] = lambda ctx: 2 * (mm - outp) + 4 * c["n_layer"] * c["n_head"] * c["hd"] * ctx
        return c
    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"]
    arch = bytes(arch.parts[arch.data[0]]).decode()

    def kv(key):
        f = r.fields[f"{arch}.{key}"]
        return int(f.parts[f.data[0]][0])
    n_layer, n_head, n_kv = kv("block_count"), kv("attention.head_count"), kv("attention.head_count_kv")
    hd = kv("attention.key_length")
    wbytes = mm_params = out_params = 0
    for t in r.tensors:
        n = int(t.n_elements)
        if t.name == "token_embd.weight":
            wbytes += int(t.n_bytes) // int(t.shape[-1])  # one row
            continue
        wbytes += int(t.n_bytes)
        if len(t.shape) == 2:
            mm_params += n
            if t.name == "output.weight":
                out_params += n
    if COUNTS_ONLY:
        return dict(wbytes=wbytes, kv_pos=n_layer * 2 * n_kv * hd * KV_BYTES, n_layer=n_layer, n_head=n_head, hd=hd,
                    mm_params=mm_params, out_params=out_params)
    return dict(wbytes=wbytes, kv_pos=n_layer * 2 * n_kv * hd * KV_BYTES, n_layer=n_layer, n_head=n_head, hd=hd,
                flop_tok=lambda ctx: 2 * (mm_params - out_params) + 4 * n_layer * n_head * hd * ctx)


if COUNTS_ONLY:
    json.dump({p: model_counts(p) for p in (Q8, Q4) if os.path.exists(p)}, open(os.path.join(OUT, "counts.json"), "w"),
              indent=1)
    sys.exit(0)


def sections(text):
    """{header: [lines]} for '== header' sections."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            cur = line[3:].strip()
            out.setdefault(cur, [])
        elif cur is not None:
            out[cur].append(line)
    return out


def num(pat, lines):
    for line in lines:
        m = re.search(pat, line)
        if m:
            return float(m.group(1))
    return None


env = read("env.txt")
probe = num(r"read bandwidth ([\d.]+) GB/s", env.splitlines())
peak16 = num(r"f16->f32 peak ([\d.]+) TFLOP/s", env.splitlines())
peak8 = num(r"s8->s32 peak ([\d.]+) TOPS", env.splitlines())
# the prompt ceiling is the peak of the MMA kind the prompt products issue at this precision
peak = peak8 if os.environ.get("PREC", "fast") == "fast" and peak8 else peak16
sp = sections(read("sparkd.txt"))
pe = sections(read("peer.txt"))


def peer_json(header):
    rows = []
    for line in pe.get(header, []):
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def llb(rows, n_prompt, n_gen, depth=0):
    for j in rows:
        if j.get("n_prompt") == n_prompt and j.get("n_gen") == n_gen and j.get("n_depth", 0) == depth and "avg_ts" in j:
            return j["avg_ts"]
    return None


def lbb(rows, pl, key):
    for j in rows:
        if j.get("pl") == pl and key in j:
            return j[key]
    return None


def f(v, d=0):
    return "—" if v is None else f"{v:,.{d}f}"


def ratio(a, b):
    return "—" if a is None or b is None or b == 0 else f"**{a / b:.2f}×**"


def pct(v, c):
    return "—" if v is None or c is None or c == 0 else f"{100 * v / c:.0f}%"


rows = []
for name, path in (("Q8_0", Q8), ("Q4_K_M", Q4)):
    if not os.path.exists(path) and not os.path.exists(os.path.join(OUT, "counts.json")):
        continue
    c = model_counts(path)
    s, p = sp.get(path, []), peer_json(path)
    bpt = c["wbytes"] + 64 * c["kv_pos"]  # tg128 from an empty context: mean 64 positions
    ceil_tg = probe * 1e9 / bpt if probe else None
    tg, tg_p = num(r"^tg128: ([\d.]+)", s), llb(p, 0, 128)
    rows.append((f"{name} decode batch 1, tg128 (tok/s)", tg, tg_p, ceil_tg,
                 f"{bpt / 1e9:.2f} GB/token; target ≥ 85% of the probe"))
    fl = c["flop_tok"](256)  # pp512: mean causal context 256
    ceil_pp = peak * 1e12 / fl if peak else None
    pp, pp_p = num(r"^pp512: ([\d.]+)", s), llb(p, 512, 0)
    rows.append((f"{name} prompt pp512 (tok/s)", pp, pp_p, ceil_pp,
                 f"{fl / 1e9:.1f} GFLOP/token; target ≥ 2× llama.cpp and ≥ 50% of the mma.sync peak"))
    for B in (1, 8, 32, 64):
        st = num(rf"^npl {B}: .*tg 128 x {B}: ([\d.]+) tok/s", s)
        bw = probe * 1e9 * B / (c["wbytes"] + B * 576 * c["kv_pos"]) if probe else None
        cp = peak * 1e12 / c["flop_tok"](576) if peak else None
        rows.append((f"{name} generated tok/s, {B} sequences (512-token prompts)", st, lbb(p, B, "speed_tg"),
                     min(x for x in (bw, cp) if x) if (bw or cp) else None,
                     "ceiling: the lower of weights once per step + each sequence's KV over the probe, and "
                     "the FLOPs over the mma.sync peak" + ("; target ≥ 2.5×" if B == 64 else "")))
    for B in (1, 8, 32, 64):
        st = num(rf"^npl {B}: pp 512 x {B}: ([\d.]+) tok/s", s)
        rows.append((f"{name} prompt tok/s, {B} sequences x 512", st, lbb(p, B, "speed_pp"), None, ""))
    if name == "Q4_K_M":
        sd = sp.get(path + " depth", [])
        pd = peer_json(path + " depth")
        for B in (1, 8):
            st = num(rf"^depth \d+ npl {B}: tg 128 x {B}: ([\d.]+) tok/s", sd)
            pv = llb(pd, 0, 128, DEPTH) if B == 1 else lbb(pd, 8, "speed_tg")
            bstep = c["wbytes"] + DEPTH * c["kv_pos"] * B
            rows.append((f"{name} decode at {DEPTH} context, {B} sequence{'s' if B > 1 else ''} (tok/s)", st, pv,
                         probe * 1e9 * B / bstep if probe else None,
                         f"ceiling counts each sequence's {DEPTH * c['kv_pos'] / 1e9:.1f} GB of KV (the prefix is "
                         f"shared, so L2 may beat it); target ≥ 2×"))
    ex = sp.get(f"{path} precision exact", [])
    if ex:
        rows.append((f"{name} at --precision exact: pp512 (tok/s)", num(r"^pp512: ([\d.]+)", ex), pp_p,
                     peak16 * 1e12 / fl if peak16 else None,
                     "f16 hi + lo activations (the default precision); ceiling from the f16 peak"))
        rows.append((f"{name} at --precision exact: tg128 (tok/s)", num(r"^tg128: ([\d.]+)", ex), tg_p, ceil_tg, ""))
        rows.append((f"{name} at --precision exact: 64 sequences (generated tok/s)",
                     num(r"^npl 64: .*tg 128 x 64: ([\d.]+) tok/s", ex), lbb(p, 64, "speed_tg"), None, ""))
    if name == "Q8_0":
        ab = num(r"^tg\d+: ([\d.]+)", sp.get(f"{path} SPARKD_NO_PDL=1", []))
        if ab is not None:
            rows.append((f"{name} decode batch 1 with SPARKD_NO_PDL=1 (A/B)", ab, None, ceil_tg, "what PDL is worth"))

PREC = os.environ.get("PREC", "fast")
lines = [f"Probe {f(probe)} GB/s, mma.sync m16n8k16 f16->f32 peak {f(peak16, 1)} TFLOP/s, m16n8k32 s8->s32 peak "
         f"{f(peak8, 1)} TOPS (the prompt ceilings use {'the s8' if peak is peak8 and peak8 else 'the f16'} one), KV {KV}, "
         f"sparkd --precision {PREC} unless a row says otherwise.", "",
         "| figure | sparkd | llama.cpp | ceiling | sparkd / llama.cpp | sparkd of ceiling | llama.cpp of ceiling | counted |",
         "|---|---|---|---|---|---|---|---|"]
for what, a, b, cl, note in rows:
    lines.append(f"| {what} | {f(a, 1)} | {f(b, 1)} | {f(cl)} | {ratio(a, b)} | {pct(a, cl)} | {pct(b, cl)} | {note} |")
text = "\n".join(lines) + "\n"
open(os.path.join(OUT, "table.md"), "w").write(text)
print(text)
