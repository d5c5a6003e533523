#!/usr/bin/env python3
"""moe_bytes.py — weight bytes one decode token reads from a MoE GGUF, and the same for the
model at its full depth (the speed files are cut to fewer layers to fit the disk).

    moe_bytes.py FILE --full-layers N

Per token at batch 1: every tensor except the token embedding (one row of it) and the
stacked expert tensors (*_exps: n_used of n_expert experts each) is read once; of the expert
tensors n_used / n_expert of the bytes. KV reads are left out (the benches decode at a
context of at most ~160 positions: under 1% of these bytes). Prints one line:
    bytes_per_token <B> head_bytes <H> per_layer <P> layers <L> full_layers <N> full_bytes <F>
where head = output head + norms outside the layers, per_layer = the average over the file's
layers, full = head + N * per_layer (the cut files repeat the real per-layer shapes; the
real models' per-layer bytes differ only where llama-quantize mixes types by depth).
"""
import argparse
import re
import sys

try:
    import gguf
except ImportError:
    sys.exit("moe_bytes.py: needs the gguf package")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--full-layers", type=int, required=True)
    a = ap.parse_args()
    r = gguf.GGUFReader(a.file)
    arch = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")
    def kv(key):
        f = r.fields[key]
        return int(f.parts[-1][0])
    n_expert, n_used = kv(arch + ".expert_count"), kv(arch + ".expert_used_count")
    layers = {}
    head = 0
    for t in r.tensors:
        nb = int(t.n_bytes)
        if t.name == "token_embd.weight":
            nb = nb // int(t.shape[-1])  # one row
        elif "_exps" in t.name:
            nb = nb * n_used // n_expert
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m:
            layers[int(m.group(1))] = layers.get(int(m.group(1)), 0) + nb
        else:
            head += nb
    L = len(layers)
    per = sum(layers.values()) / max(L, 1)
    total = head + sum(layers.values())
    full = head + a.full_layers * per
    print("bytes_per_token %d head_bytes %d per_layer %d layers %d full_layers %d full_bytes %d" %
          (total, head, per, L, a.full_layers, full))


if __name__ == "__main__":
    main()
