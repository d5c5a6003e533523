#!/usr/bin/env python3
"""tests/gpu/kbreak.py — sums an ncu raw CSV (gpu__time_duration.sum per launch) per forward step.

    ncu --clock-control none --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,\
launch__registers_per_thread --csv --page raw sparkd bench ... > k.csv
    python3 tests/gpu/kbreak.py k.csv [MARKER]

A step starts at each launch whose kernel name begins with MARKER (default rows_kernel, the
embedding lookup that opens every sparkd forward); weight repacking at load is skipped. With
MARKER '-' all launches are summed as one step (llama.cpp, whose steps have no single opener).
"""
import collections
import csv
import re
import sys


def load(path):
    with open(path, errors="replace") as f:
        lines = [ln for ln in f if ln.startswith('"')]
    r = csv.reader(lines)
    hdr = next(r)
    next(r)  # units
    ik, it, ig = hdr.index("Kernel Name"), hdr.index("gpu__time_duration.sum"), hdr.index("Grid Size")
    rows = []
    for x in r:
        try:
            t = float(x[it].replace(",", ""))
        except ValueError:
            continue
        rows.append((re.sub(r"\(.*", "", x[ik]).replace("void ", "")[:80], t, x[ig]))
    return rows


def main():
    rows = [r for r in load(sys.argv[1]) if not r[0].startswith("repack")]
    mk = sys.argv[2] if len(sys.argv) > 2 else "rows_kernel"
    steps, cur = [], None
    for r in rows:
        if cur is None or (mk != "-" and r[0].startswith(mk)):
            cur = []
            steps.append(cur)
        cur.append(r)
    for si, s in enumerate(steps):
        tot = sum(r[1] for r in s)
        agg = collections.OrderedDict()
        for n, t, g in s:
            a = agg.setdefault(n, [0, 0.0, []])
            a[0] += 1
            a[1] += t
            if g not in a[2]:
                a[2].append(g)
        print(f"--- step {si}: {len(s)} kernels, {tot / 1e3:.1f} us")
        for k, (c, t, gs) in sorted(agg.items(), key=lambda x: -x[1][1]):
            print(f"   {t / 1e3:10.1f} us {100 * t / tot:5.1f}%  x{c:4d}  {k}  grids={gs[:3]}")


if __name__ == "__main__":
    main()
