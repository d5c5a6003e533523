"""kquant.py — numpy quantizers for ggml's Q4_K, Q5_K and Q6_K blocks (the gguf package
0.19 dequantizes them but has no quantizer), written here from the block layouts so
make_synth.py can write K-quant and Q4_K_M-style synthetic models.

Plain min/max rounding (no search for the best scales, unlike llama.cpp's quantizer):
the files only have to be valid blocks whose dequantization (gguf-py, bit-exact with
sparkd's CPU engine) defines the weights. Each function takes float32 rows (n, k) with
k % 256 == 0 and returns uint8 (n, k / 256 * block_bytes).
"""
import numpy as np


def _f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def _pack_scales(sc, mn):
    """sc, mn: (B, 8) ints in 0..63 -> (B, 12) uint8, the inverse of get_scale_min_k4."""
    s = np.zeros(sc.shape[:-1] + (12,), dtype=np.uint8)
    for j in range(4):
        s[..., j] = (sc[..., j] & 63) | ((sc[..., j + 4] >> 4) << 6)
        s[..., j + 4] = (mn[..., j] & 63) | ((mn[..., j + 4] >> 4) << 6)
        s[..., j + 8] = (sc[..., j + 4] & 15) | ((mn[..., j + 4] & 15) << 4)
    return s


def _q45k(x, bits):
    n, k = x.shape
    nb = k // 256
    qmax = (1 << bits) - 1
    xb = x.reshape(n * nb, 8, 32).astype(np.float32)
    lo = np.minimum(xb.min(axis=2), 0.0)               # offsets are >= 0: weight = s*q - off
    off = -lo
    scale = (xb.max(axis=2) + off) / qmax
    d = scale.max(axis=1) / 63.0
    dmin = off.max(axis=1) / 63.0
    d16, dmin16 = _f16(d), _f16(dmin)
    dd, dm = d16.astype(np.float32), dmin16.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(dd[:, None] > 0, np.rint(scale / dd[:, None]), 0).clip(0, 63).astype(np.int32)
        mn = np.where(dm[:, None] > 0, np.rint(off / dm[:, None]), 0).clip(0, 63).astype(np.int32)
        es = dd[:, None] * sc                              # effective sub-block scale
        em = dm[:, None] * mn                              # effective offset
        q = np.where(es[:, :, None] > 0, np.rint((xb + em[:, :, None]) / es[:, :, None]), 0)
    q = q.clip(0, qmax).astype(np.uint8)                   # (B, 8, 32)
    out = []
    out.append(d16.view(np.uint8).reshape(-1, 2))
    out.append(dmin16.view(np.uint8).reshape(-1, 2))
    out.append(_pack_scales(sc, mn))
    if bits == 5:
        qh = np.zeros((n * nb, 32), dtype=np.uint8)
        for j in range(8):
            qh |= ((q[:, j, :] >> 4) & 1) << j
        out.append(qh)
    low = q & 15
    qs = (low[:, 0::2, :] | (low[:, 1::2, :] << 4)).reshape(n * nb, 128)  # group g: sub-blocks 2g, 2g+1
    out.append(qs)
    return np.concatenate(out, axis=1).reshape(n, -1)


def quantize_q4_k(x):
    return _q45k(x, 4)


def quantize_q5_k(x):
    return _q45k(x, 5)


def quantize_q6_k(x):
    n, k = x.shape
    nb = k // 256
    xb = x.reshape(n * nb, 16, 16).astype(np.float32)
    amax = np.abs(xb).max(axis=2)
    scale = amax / 31.0
    d = scale.max(axis=1) / 127.0
    d16 = _f16(d)
    dd = d16.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(dd[:, None] > 0, np.rint(scale / dd[:, None]), 0).clip(-128, 127).astype(np.int32)
        es = dd[:, None] * sc
        q = np.where(es[:, :, None] != 0, np.rint(xb / es[:, :, None]), 0)
    q = (q.clip(-32, 31) + 32).astype(np.uint8).reshape(n * nb, 256)     # unsigned 6-bit codes
    ql = np.zeros((n * nb, 128), dtype=np.uint8)
    qh = np.zeros((n * nb, 64), dtype=np.uint8)
    for h in range(2):
        for quarter in range(4):
            v = q[:, 128 * h + 32 * quarter: 128 * h + 32 * quarter + 32]
            col = slice(64 * h + (quarter & 1) * 32, 64 * h + (quarter & 1) * 32 + 32)
            if quarter & 2:
                ql[:, col] |= (v & 15) << 4
            else:
                ql[:, col] |= v & 15
            qh[:, 32 * h: 32 * h + 32] |= ((v >> 4) & 3) << (2 * quarter)
    scales = sc.astype(np.int8).view(np.uint8)
    out = np.concatenate([ql, qh, scales, d16.view(np.uint8).reshape(-1, 2)], axis=1)
    return out.reshape(n, -1)
