// weights.cu — the repacked weight layout (cuda_kern.h: "P64 planes"): sizes, the repack
// from GGUF bytes, row dequantization (embedding lookup), and mm-input preparation.
#include "cuda_kern.h"

#include "kern_util.cuh"
#include "mmin.cuh"
#include "qfmt.cuh"

extern "C" int cuda_weight_type_ok(uint32_t type) { return qfmt_of(type).ok; }

extern "C" uint64_t cuda_weight_bytes(uint32_t type, int64_t rows, int64_t cols) {
    const qfmt f = qfmt_of(type);
    if (!f.ok || rows <= 0 || cols <= 0 || cols % 64 || (f.raw_be == 256 && cols % 256)) return 0;
    return wplanes_of(type, rows, cols).total;
}

// ------------------------------------------------------------------------------ repack

// The unsigned code (Q8_0: the int8 byte; floats: their bits) of element i of a GGUF
// block at b (any alignment).
template <uint32_t F>
__device__ __forceinline__ uint32_t raw_code(const uint8_t *b, int i) {
    if constexpr (F == QT_F32) {
        return (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
               (uint32_t)b[4 * i + 3] << 24;
    } else if constexpr (F == QT_F16 || F == QT_BF16) {
        return (uint32_t)b[2 * i] | (uint32_t)b[2 * i + 1] << 8;
    } else if constexpr (F == QT_Q8_0) {
        return b[2 + i];
    } else if constexpr (F == QT_Q4_0 || F == QT_Q4_1 || F == QT_MXFP4) {
        const uint8_t *qs = b + (F == QT_Q4_0 ? 2 : F == QT_Q4_1 ? 4 : 1);
        return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
    } else if constexpr (F == QT_Q5_0 || F == QT_Q5_1) {
        const uint8_t *qh = b + (F == QT_Q5_0 ? 2 : 4), *qs = qh + 4;
        const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                           (uint32_t)qh[3] << 24;
        const uint32_t lo = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
        return lo | ((h >> i) & 1) << 4;
    } else if constexpr (F == QT_Q4_K || F == QT_Q5_K) {
        const int j = i >> 5, l = i & 31;
        const uint8_t *qs = b + (F == QT_Q4_K ? 16 : 48);
        uint32_t c = (qs[32 * (j >> 1) + l] >> (4 * (j & 1))) & 15;
        if constexpr (F == QT_Q5_K) c |= ((b[16 + l] >> j) & 1) << 4;
        return c;
    } else { // Q6_K
        const int h = i >> 7, r = i & 127, qq = r >> 5, l = r & 31;
        const uint8_t ql = b[64 * h + l + (qq & 1) * 32];
        const uint32_t lo = (qq & 2) ? ql >> 4 : ql & 15;
        const uint32_t hi = (b[128 + 32 * h + l] >> (2 * qq)) & 3;
        return lo | hi << 4;
    }
}

// One thread per (row, 64-element chunk): gathers the chunk's codes in natural order and
// writes them in P64 order to the planes, plus the meta entries that start in the chunk.
template <uint32_t F>
__global__ void repack_kernel(uint8_t *base, wplanes pl, const uint8_t *raw, uint64_t raw_row_bytes,
                              int64_t row0, int64_t n, int K) {
    constexpr qfmt f = qfmt_of(F);
    const int nch = K / 64;
    const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * nch) return;
    const int64_t rl = id / nch;
    const int ci = (int)(id % nch);
    const int64_t row = row0 + rl;
    const uint8_t *rr = raw + (uint64_t)rl * raw_row_bytes;
    uint32_t code[64];
#pragma unroll 4
    for (int e = 0; e < 64; e++) {
        const int k = ci * 64 + e;
        code[e] = raw_code<F>(rr + (uint64_t)(k / f.raw_be) * f.raw_bb, k % f.raw_be);
    }
    uint8_t *cr = base + pl.codes + (uint64_t)row * pl.code_pitch;
    if constexpr (f.cbits == 4) {
        uint32_t *dst = (uint32_t *)(cr + (size_t)ci * 32);
        for (int c = 0; c < 4; c++)
            for (int w = 0; w < 2; w++) {
                uint32_t word = 0;
                for (int t = 0; t < 8; t++) {
                    const int i = 8 * w + 2 * (t & 3) + (t >> 2); // quarter element
                    word |= (code[perm64(16 * c + i)] & 15u) << (4 * t);
                }
                dst[2 * c + w] = word;
            }
    } else if constexpr (f.cbits == 8) {
        uint8_t *dst = cr + (size_t)ci * 64;
        for (int p = 0; p < 64; p++) dst[p] = (uint8_t)code[perm64(p)];
    } else if constexpr (f.cbits == 16) {
        uint16_t *dst = (uint16_t *)(cr + (size_t)ci * 128);
        for (int p = 0; p < 64; p++) dst[p] = (uint16_t)code[perm64(p)];
    } else {
        uint32_t *dst = (uint32_t *)(cr + (size_t)ci * 256);
        for (int p = 0; p < 64; p++) dst[p] = code[perm64(p)];
    }
    if constexpr (f.hbits > 0) {
        uint8_t *hr = base + pl.hi + (uint64_t)row * pl.hi_pitch;
        for (int c = 0; c < 4; c++) {
            uint32_t word = 0;
            for (int b = 0; b < 16; b++) {
                const int bb = b & 7;
                const int i = 8 * (bb >> 2) + 2 * (bb & 3) + (b >> 3); // quarter element
                const uint32_t v = code[perm64(16 * c + i)] >> 4;
                if constexpr (f.hbits == 1) word |= (v & 1u) << b;
                else word |= (v & 3u) << ((b >> 3) * 16 + 2 * bb);
            }
            if constexpr (f.hbits == 1) ((uint16_t *)(hr + (size_t)ci * 8))[c] = (uint16_t)word;
            else ((uint32_t *)(hr + (size_t)ci * 16))[c] = word;
        }
    }
    if constexpr (f.meta_bytes > 0) {
        uint8_t *mr = base + pl.meta + (uint64_t)row * pl.meta_pitch;
        for (int k = ci * 64; k < ci * 64 + 64; k += f.meta_elems) {
            if (k % f.meta_elems) continue;
            const uint8_t *blk = rr + (uint64_t)(k / f.raw_be) * f.raw_bb;
            uint8_t *d = mr + (size_t)(k / f.meta_elems) * f.meta_bytes;
            if constexpr (F == QT_Q6_K) {
                d[0] = blk[208];
                d[1] = blk[209];
                d[2] = d[3] = 0;
                for (int i = 0; i < 16; i++) d[4 + i] = blk[192 + i];
            } else {
                for (int i = 0; i < f.meta_bytes; i++) d[i] = blk[i];
            }
        }
    }
}

// Dequantized element (exact, as quant.c) of position p of chunk ci of row r.
template <uint32_t F>
__device__ __forceinline__ float dequant_at(const uint8_t *base, const wplanes &pl, int64_t r, int ci,
                                            int p) {
    constexpr qfmt f = qfmt_of(F);
    quarter q;
    quarter_load<F>(q, base + pl.codes + (uint64_t)r * pl.code_pitch, base + pl.hi + (uint64_t)r * pl.hi_pitch,
                    ci, p >> 4);
    const float c = quarter_value<F>(q, p & 15);
    if constexpr (f.group == 0) return c;
    else {
        const int e = ci * 64 + perm64(p);
        float s, m;
        group_sm<F>(base + pl.meta + (uint64_t)r * pl.meta_pitch, e / f.group, s, m);
        return f.has_min ? __fadd_rn(__fmul_rn(s, c), m) : __fmul_rn(s, c);
    }
}

template <uint32_t F>
__global__ void rows_kernel(const uint8_t *base, wplanes pl, int64_t rows, int K, const int32_t *ids,
                            float scale, float *out) {
    const int i = blockIdx.y;
    const int32_t r = ids[i];
    float *o = out + (size_t)i * K;
    for (int pos = blockIdx.x * blockDim.x + threadIdx.x; pos < K; pos += gridDim.x * blockDim.x) {
        const int ci = pos >> 6, p = pos & 63;
        float v = 0.0f;
        if (r >= 0 && r < rows) v = __fmul_rn(dequant_at<F>(base, pl, r, ci, p), scale);
        o[ci * 64 + perm64(p)] = v;
    }
}

#define FOR_EACH_QT(X)                                                                      \
    X(QT_F32) X(QT_F16) X(QT_BF16) X(QT_Q8_0) X(QT_Q4_0) X(QT_Q4_1) X(QT_Q5_0) X(QT_Q5_1)    \
    X(QT_Q4_K) X(QT_Q5_K) X(QT_Q6_K) X(QT_MXFP4)

static int check_weight(const cuda_weight *w, const char *fn, err *e) {
    if (!w || !w->base || !cuda_weight_bytes(w->type, w->rows, w->cols))
        return err_set(e, ERR_INVALID, "%s: weight of type %u, %lld x %lld not usable", fn,
                       w ? w->type : 0u, w ? (long long)w->rows : 0LL, w ? (long long)w->cols : 0LL);
    return 0;
}

extern "C" int cuda_weight_repack(const cuda_weight *w, const void *raw, int64_t row0, int64_t n,
                                  void *stream, err *e) {
    int rc = check_weight(w, "cuda_weight_repack", e);
    if (rc) return rc;
    if (!raw || row0 < 0 || n < 0 || row0 + n > w->rows)
        return err_set(e, ERR_INVALID, "cuda_weight_repack: rows [%lld, %lld) of %lld",
                       (long long)row0, (long long)(row0 + n), (long long)w->rows);
    if (n == 0) return 0;
    const qfmt f = qfmt_of(w->type);
    const wplanes pl = wplanes_of(w->type, w->rows, w->cols);
    const uint64_t rrb = (uint64_t)(w->cols / f.raw_be) * (uint64_t)f.raw_bb;
    const int64_t threads = n * (w->cols / 64);
    const unsigned grid = (unsigned)((threads + 127) / 128);
    switch (w->type) {
#define X(T)                                                                                 \
    case T:                                                                                  \
        repack_kernel<T><<<grid, 128, 0, CUDA_STREAM(stream)>>>((uint8_t *)w->base, pl,      \
                                                              (const uint8_t *)raw, rrb, row0, n, (int)w->cols); \
        break;
        FOR_EACH_QT(X)
#undef X
    }
    CUDA_LAUNCHED();
    return 0;
}

extern "C" int cuda_weight_rows(const cuda_weight *w, const int32_t *ids, int n, float scale, float *out,
                                void *stream, err *e) {
    int rc = check_weight(w, "cuda_weight_rows", e);
    if (rc) return rc;
    if (n < 0 || n > 65535 || (n && (!ids || !out)))
        return err_set(e, ERR_INVALID, "cuda_weight_rows: %d rows", n);
    if (n == 0) return 0;
    const wplanes pl = wplanes_of(w->type, w->rows, w->cols);
    dim3 grid((unsigned)((w->cols + 255) / 256), (unsigned)n);
    switch (w->type) {
#define X(T)                                                                                 \
    case T:                                                                                  \
        rows_kernel<T><<<grid, 256, 0, CUDA_STREAM(stream)>>>((const uint8_t *)w->base, pl, w->rows, \
                                                             (int)w->cols, ids, scale, out); \
        break;
        FOR_EACH_QT(X)
#undef X
    }
    CUDA_LAUNCHED();
    return 0;
}

// ------------------------------------------------------------------------------ mm input

extern "C" uint64_t cuda_mmin_bytes(int T, int K, int forms) {
    const uint64_t n = (uint64_t)T * (uint64_t)K;
    uint64_t b = 0;
    if (forms & CUDA_MMIN_XP) b += align256(n * 4);
    if (forms & CUDA_MMIN_F16) b += 2 * align256(n * 2);
    if (forms & CUDA_MMIN_BF16) b += 2 * align256(n * 2);
    if (forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) b += align256(n / 32 * 4) + align256((uint64_t)T * 4);
    if (forms & CUDA_MMIN_Q8) b += align256(n) + 2 * align256(n / 32 * 4);
    return b;
}

extern "C" void cuda_mmin_carve(cuda_mmin *m, void *buf, int T, int K, int forms) {
    const uint64_t n = (uint64_t)T * (uint64_t)K;
    uint8_t *p = (uint8_t *)buf;
    m->T = T;
    m->K = K;
    m->forms = forms;
    m->xp = NULL;
    m->hi = m->lo = m->bhi = m->blo = NULL;
    m->gsum = m->tscale = NULL;
    m->q8 = NULL;
    m->q8d = m->q8s = NULL;
    if (forms & CUDA_MMIN_XP) { m->xp = (float *)p; p += align256(n * 4); }
    if (forms & CUDA_MMIN_F16) {
        m->hi = (uint16_t *)p; p += align256(n * 2);
        m->lo = (uint16_t *)p; p += align256(n * 2);
    }
    if (forms & CUDA_MMIN_BF16) {
        m->bhi = (uint16_t *)p; p += align256(n * 2);
        m->blo = (uint16_t *)p; p += align256(n * 2);
    }
    if (forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) {
        m->gsum = (float *)p; p += align256(n / 32 * 4);
        m->tscale = (float *)p; p += align256((uint64_t)T * 4);
    }
    if (forms & CUDA_MMIN_Q8) {
        m->q8 = (int8_t *)p; p += align256(n);
        m->q8d = (float *)p; p += align256(n / 32 * 4);
        m->q8s = (float *)p;
    }
}

extern "C" int cuda_mmin_forms_for(uint32_t type, int T) {
    if (type == QT_F32 || T == 1) return CUDA_MMIN_XP;
    return type == QT_BF16 ? CUDA_MMIN_BF16 : CUDA_MMIN_F16;
}

__global__ void mmin_prepare_kernel(const float *x, int ldx, cuda_mmin m) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const float *row = x + (size_t)blockIdx.x * ldx;
    mmin_emit(m, blockIdx.x, [&](int k) { return row[k]; }, red);
}

// Only the f32 form (small batches): a permutation, one element per thread.
__global__ void mmin_xp_kernel(const float *x, int ldx, int K, float *xp) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.y;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < K; k += gridDim.x * blockDim.x)
        xp[(size_t)t * K + (k & ~63) + inv_perm64(k & 63)] = x[(size_t)t * ldx + k];
}

extern "C" int cuda_mmin_prepare(const float *x, int ldx, cuda_mmin *m, int T, void *stream, err *e) {
    if (!x || !m || T < 1 || m->K % 64 || ldx < m->K || !m->forms)
        return err_set(e, ERR_INVALID, "cuda_mmin_prepare: T %d K %d ldx %d", T, m ? m->K : 0, ldx);
    m->T = T;
    const int rc = elt_prepare(x, ldx, m, T, stream, e); // layer.cu: -1 = not taken (or SPARKD_ELT_OLD)
    if (rc >= 0) return rc;
    if (m->forms == CUDA_MMIN_XP && T <= 65535) {
        CUDA_TRY(cuda_launch(mmin_xp_kernel, dim3((unsigned)((m->K + 255) / 256), (unsigned)T), dim3(256), 0, stream, x,
                             ldx, m->K, m->xp));
        return 0;
    }
    CUDA_TRY(cuda_launch(mmin_prepare_kernel, dim3((unsigned)T), dim3(T <= 16 ? 1024 : 256), 0, stream, x, ldx, *m));
    return 0;
}
