#!/usr/bin/env python3
"""test_quant_ref.py — appliance/format/quant.c against the `gguf` Python package.

1. Dequantization, bit for bit: random blocks of every CPU type (random bytes,
   with the f16 scale fields redrawn so they are finite, plus edge scales: +0,
   -0, negative, subnormal, the largest half, every E8M0 exponent for MXFP4)
   go through gguf.quants.dequantize and through tool_quant; the float32
   outputs must be identical as uint32 patterns. NaN: only the plain types
   (F32/F16/BF16) can produce NaN here (their random bytes include NaN
   patterns); those are compared bit for bit too, payload included.
2. quant_dot_row and quant_matmul against float64 numpy on the gguf-dequantized
   weights. Tolerance: |y - ref| <= 1e-5 * sum_k |w_k * x_k| per output (error
   relative to the magnitude of the terms, so cancellation cannot make it
   meaningless); shapes cover T = 1, 2, 3, 7, 64, K = 32 .. 8192 and row ranges
   that are not multiples of any tile. Outputs outside [r0, r1) must stay NaN.
3. quant_f32_to_f16 against numpy's float32 -> float16 cast (round to nearest
   even) on random and special values; NaN inputs must give a NaN.
4. The KV cache's bf16 and fp8 (e4m3) conversions against `ml_dtypes` (bfloat16,
   float8_e4m3fn): every fp8 byte decoded, and random, special and halfway values
   encoded (round to nearest even). Above 464 (halfway past the largest fp8, 448,
   where rounding would overflow) ml_dtypes gives NaN, while the KV store saturates
   to +-448 as CUDA's __NV_SATFINITE does (the GPU's KV store): those are checked
   against that rule instead.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

BUILD = os.environ.get("SPARKD_BUILD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
TOOL = os.path.join(BUILD, "tests", "tool_quant")
FAILED = 0
# the sanitizer build runs the same checks with fewer blocks and shapes
SAN = os.path.basename(os.path.normpath(BUILD)).endswith("san")

TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1,
         Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.MXFP4]
# byte offsets of the f16 scale fields inside one block
F16_FIELDS = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208], Q.MXFP4: [],
}
EDGE_F16 = np.array([0x0000, 0x8000, 0x7bff, 0xfbff, 0x0001, 0x8001, 0x03ff,
                     0x3c00, 0xbc00, 0x0400], dtype=np.uint16)


def check(ok, name, why=""):
    global FAILED
    if ok:
        print(f"ok - {name}")
    else:
        FAILED += 1
        print(f"not ok - {name}{': ' + why if why else ''}")
    sys.stdout.flush()


def tool(*args):
    r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tool_quant {args[0]} exited {r.returncode}: {r.stderr.strip()}")


def finite_f16(rng, n, lo_exp=None, hi_exp=None):
    """n random finite halves (uint16): every finite pattern equally likely,
    or, with an exponent range, magnitudes in [2^lo, 2^hi) of random sign."""
    if lo_exp is None:
        h = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
        bad = (h & 0x7c00) == 0x7c00
        h[bad] &= 0xbfff  # exponent 0x1f -> 0x0f: finite
        return h
    mag = 2.0 ** rng.uniform(lo_exp, hi_exp, size=n)
    sign = rng.choice([-1.0, 1.0], size=n)
    return (mag * sign).astype(np.float16).view(np.uint16)


def random_blocks(rng, qt, nblocks, scales="any"):
    be, bb = GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(nblocks, bb), dtype=np.uint32).astype(np.uint8)
    if qt in F16_FIELDS:
        for off in F16_FIELDS[qt]:
            if scales == "any":
                h = finite_f16(rng, nblocks)
                # a slice of blocks gets the edge values
                k = min(len(EDGE_F16), nblocks)
                h[:k] = EDGE_F16[(np.arange(k) + off) % len(EDGE_F16)]
            else:
                h = finite_f16(rng, nblocks, -9, -3)
            raw[:, off:off + 2] = h.view(np.uint8).reshape(nblocks, 2)
    if qt == Q.MXFP4:
        if scales == "any":
            raw[:256, 0] = np.arange(256, dtype=np.uint8)[:min(256, nblocks)]
        else:
            raw[:, 0] = rng.integers(118, 126, size=nblocks).astype(np.uint8)
    if qt in (Q.F32, Q.F16, Q.BF16) and scales != "any":
        vals = rng.standard_normal(nblocks).astype(np.float32)
        if qt == Q.F32:
            raw = vals.view(np.uint8).reshape(nblocks, 4)
        elif qt == Q.F16:
            raw = vals.astype(np.float16).view(np.uint8).reshape(nblocks, 2)
        else:
            raw = (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(nblocks, 2)
    return raw


def ref_dequant(qt, raw):
    with np.errstate(over="ignore"):  # MXFP4's largest exponent overflows to inf
        return np.asarray(quants.dequantize(raw.reshape(-1), qt), dtype=np.float32).reshape(-1)


def test_dequant(rng, tmp):
    for qt in TYPES:
        be, bb = GGML_QUANT_SIZES[qt]
        nblocks = (1000 if SAN else 4096) * (32 if be == 1 else 1)
        raw = random_blocks(rng, qt, nblocks)
        ref = ref_dequant(qt, raw)
        fin, fout = os.path.join(tmp, "dq.bin"), os.path.join(tmp, "dq.out")
        raw.tofile(fin)
        tool("dequant", int(qt), fin, fout)
        got = np.fromfile(fout, dtype=np.float32)
        same = got.shape == ref.shape and np.array_equal(got.view(np.uint32), ref.view(np.uint32))
        why = ""
        if not same and got.shape == ref.shape:
            i = int(np.flatnonzero(got.view(np.uint32) != ref.view(np.uint32))[0])
            why = f"element {i} (block {i // be}): got {got[i]!r} want {ref[i]!r}"
        nnan = int(np.isnan(ref).sum())
        check(same, f"dequant {qt.name} {nblocks} blocks bit-exact"
              + (f" ({nnan} NaN outputs)" if nnan else ""), why)


def norm_err(y, ref, scale):
    return np.max(np.abs(y.astype(np.float64) - ref) / np.maximum(scale, 1e-30))


def test_matmul(rng, tmp):
    shapes = [  # (K, N, T, r0, r1)
        (256, 37, 1, 3, 34), (256, 37, 7, 0, 37), (640, 29, 64, 5, 26),
        (2048, 19, 7, 1, 18), (8192, 9, 3, 2, 9), (768, 23, 2, 4, 23),
        (512, 33, 64, 0, 33), (1024, 21, 65, 7, 20), (1280, 14, 64, 1, 13),
    ]
    if SAN:
        shapes = shapes[:5]
    small_k = [(32, 13, 7, 1, 12), (96, 11, 1, 0, 11), (544, 17, 5, 3, 16)]
    odd_k = [(33, 7, 3, 1, 6), (1, 5, 2, 0, 5), (1000, 9, 1, 2, 9)]
    for qt in TYPES:
        be, bb = GGML_QUANT_SIZES[qt]
        sh = [s for s in shapes + small_k + odd_k if s[0] % be == 0]
        worst_dot = worst_mm = 0.0
        bad, bad_dot = [], []
        for (K, N, T, r0, r1) in sh:
            nb = N * K // be
            raw = random_blocks(rng, qt, nb, scales="sane")
            Wf = ref_dequant(qt, raw).reshape(N, K).astype(np.float64)
            ldx = K + 3
            X = rng.standard_normal((T, ldx)).astype(np.float32)
            X64 = X[:, :K].astype(np.float64)
            ref = X64 @ Wf.T                     # (T, N)
            scale = np.abs(X64) @ np.abs(Wf).T   # sum |w x| per output
            fw, fx, fy = (os.path.join(tmp, n) for n in ("w.bin", "x.bin", "y.bin"))
            raw.tofile(fw)
            X.tofile(fx)
            # dot: every row against X[0]
            tool("dot", int(qt), K, fw, fx, fy)
            yd = np.fromfile(fy, dtype=np.float32)
            e = norm_err(yd, ref[0], scale[0]) if yd.shape == (N,) else np.inf
            worst_dot = max(worst_dot, e)
            if not e <= 1e-5:
                bad_dot.append(f"dot K={K} N={N} err {e:.2e}")
            # matmul with strided X and Y
            ldy = N + 5
            tool("matmul", int(qt), K, T, r0, r1, ldx, ldy, fw, fx, fy)
            Y = np.fromfile(fy, dtype=np.float32)
            if Y.shape != (T * ldy,):
                bad.append(f"matmul K={K} T={T}: wrong output size")
                continue
            Y = Y.reshape(T, ldy)
            inside = Y[:, r0:r1]
            e = norm_err(inside, ref[:, r0:r1], scale[:, r0:r1])
            worst_mm = max(worst_mm, e)
            if not e <= 1e-5:
                bad.append(f"matmul K={K} N={N} T={T} r={r0}..{r1} err {e:.2e}")
            outside = np.concatenate([Y[:, :r0].ravel(), Y[:, r1:].ravel()])
            if not np.all(np.isnan(outside)):
                bad.append(f"matmul K={K} T={T} r={r0}..{r1} wrote outside its rows")
        check(not bad_dot, f"dot {qt.name} {len(sh)} shapes vs float64, worst {worst_dot:.1e} <= 1e-5",
              "; ".join(bad_dot[:4]))
        check(not bad, f"matmul {qt.name} {len(sh)} shapes (T 1..65, K up to 8192) vs float64, "
              f"worst {worst_mm:.1e} <= 1e-5, rows outside [r0,r1) untouched", "; ".join(bad[:4]))


def test_f16enc(rng, tmp):
    special = np.array([0.0, -0.0, np.inf, -np.inf, 65504.0, 65519.99, 65520.0, -65520.0,
                        2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 3 * 2.0 ** -25,
                        2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 1.0 + 2.0 ** -11,
                        1.0 + 3 * 2.0 ** -11, 1e-10, 1e10], dtype=np.float32)
    bits = rng.integers(0, 1 << 32, size=200000, dtype=np.uint64).astype(np.uint32)
    vals = np.concatenate([special, bits.view(np.float32),
                           rng.standard_normal(100000).astype(np.float32) * 1e-5,
                           rng.standard_normal(100000).astype(np.float32) * 1e3])
    fin, fout = os.path.join(tmp, "f.bin"), os.path.join(tmp, "h.bin")
    vals.tofile(fin)
    tool("f16enc", fin, fout)
    got = np.fromfile(fout, dtype=np.uint16)
    with np.errstate(over="ignore", invalid="ignore"):
        want = vals.astype(np.float16).view(np.uint16)
    nan = np.isnan(vals)
    ok_num = got.shape == want.shape and np.array_equal(got[~nan], want[~nan])
    ok_nan = got.shape == want.shape and bool(np.all(np.isnan(got[nan].view(np.float16))))
    why = ""
    if got.shape == want.shape and not ok_num:
        i = int(np.flatnonzero((got != want) & ~nan)[0])
        why = f"{vals[i]!r}: got {got[i]:#06x} want {want[i]:#06x}"
    check(ok_num, f"f32->f16 matches numpy on {int((~nan).sum())} non-NaN values (RNE)", why)
    check(ok_nan, f"f32->f16 keeps {int(nan.sum())} NaNs NaN")


def test_kv_formats(rng, tmp):
    try:
        import ml_dtypes
    except ImportError:
        check(False, "ml_dtypes installed (build.sh installs it)")
        return
    fdec = os.path.join(tmp, "fp8dec.bin")
    tool("fp8dec", fdec)
    got = np.fromfile(fdec, dtype=np.float32)
    want = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    nan = np.isnan(want)
    check(got.shape == want.shape and np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
          and bool(np.all(np.isnan(got[nan]))), "fp8 e4m3: all 256 bytes decode as ml_dtypes' float8_e4m3fn")
    # halfway points between neighbouring fp8 values and their float32 neighbours
    fin = want[~nan & (want >= 0)]
    fin = np.unique(fin)
    mids = ((fin[1:].astype(np.float64) + fin[:-1]) / 2).astype(np.float32)
    near = np.concatenate([mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(1e9))])
    special = np.array([0.0, -0.0, 448.0, 463.99, 464.0, 479.99, 2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -11,
                        2.0 ** -6, 2.0 ** -6 - 2.0 ** -10, 1e-30], dtype=np.float32)
    bits = rng.integers(0, 1 << 32, size=200000, dtype=np.uint64).astype(np.uint32)
    vals = np.concatenate([special, near, -near, bits.view(np.float32),
                           rng.standard_normal(100000).astype(np.float32) * 100,
                           rng.standard_normal(100000).astype(np.float32) * 1e-2])
    fi, fo = os.path.join(tmp, "kv_in.bin"), os.path.join(tmp, "kv_out.bin")
    vals.tofile(fi)
    tool("fp8enc", fi, fo)
    got = np.fromfile(fo, dtype=np.uint8)
    with np.errstate(over="ignore", invalid="ignore"):
        want = vals.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
        mag = np.abs(vals)
    nan = np.isnan(vals)
    inrange = ~nan & (mag <= 464)
    sat = ~nan & (mag > 464)
    ok_num = got.shape == want.shape and np.array_equal(got[inrange], want[inrange])
    why = ""
    if got.shape == want.shape and not ok_num:
        i = int(np.flatnonzero((got != want) & inrange)[0])
        why = f"{vals[i]!r}: got {got[i]:#04x} want {want[i]:#04x}"
    check(ok_num, f"f32->fp8 e4m3 matches ml_dtypes on {int(inrange.sum())} values up to 464 (RNE)", why)
    sat_want = np.where(np.signbit(vals[sat]), 0xFE, 0x7E).astype(np.uint8)
    check(got.shape == want.shape and np.array_equal(got[sat], sat_want) and bool(np.all((got[nan] & 0x7F) == 0x7F)),
          f"f32->fp8: {int(sat.sum())} values above 464 (and infinities) saturate to +-448, NaN stays NaN")
    tool("bf16enc", fi, fo)
    got = np.fromfile(fo, dtype=np.uint16)
    with np.errstate(over="ignore", invalid="ignore"):
        want = vals.astype(ml_dtypes.bfloat16).view(np.uint16)
    ok_num = got.shape == want.shape and np.array_equal(got[~nan], want[~nan])
    why = ""
    if got.shape == want.shape and not ok_num:
        i = int(np.flatnonzero((got != want) & ~nan)[0])
        why = f"{vals[i]!r}: got {got[i]:#06x} want {want[i]:#06x}"
    check(ok_num and bool(np.all(np.isnan(got[nan].astype(np.uint32).__lshift__(16).view(np.float32)))),
          f"f32->bf16 matches ml_dtypes on {int((~nan).sum())} values (RNE), NaN stays NaN", why)


def main():
    if not os.path.exists(TOOL):
        check(False, "tool_quant built", TOOL + " missing")
        return 1
    rng = np.random.default_rng(20240607)
    with tempfile.TemporaryDirectory(prefix="quant_ref_") as tmp:
        test_dequant(rng, tmp)
        test_f16enc(rng, tmp)
        test_kv_formats(rng, tmp)
        test_matmul(rng, tmp)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
