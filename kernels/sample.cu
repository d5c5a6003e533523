// sample.cu — picking tokens on the GPU (semantics: cuda_kern.h, cuda_sample_row), so only
// ids and logprobs cross to the host.
//
// One 1024-thread CTA per row. The processed logits (bias, NaN, mask, penalties) go to a
// work row; greedy is a first-maximum reduction. Sampling never sorts the vocabulary:
// every cut (top-k by count, top-p and the draw by probability mass, min-p by value) is a
// prefix of the descending order (logit desc, id asc), found by a 4-pass radix search
// over the logits' order-preserving 32-bit keys with per-digit histograms of count or
// mass. Masses are fixed point (probability relative to the maximum times 2^31, summed
// in 64-bit integers), so the histograms are exact and the result does not depend on
// thread timing; probabilities below 2^-31 of the top one count as zero. Tied logits are
// resolved in id order by a block scan.
#include "cuda_kern.h"

#include "kern_util.cuh"

extern "C" int cuda_hd_smp(void); // hd.cu (round 11): SPARKD_HD_SMP

#define SMP_THREADS 1024
// First passes over many CTAs (second generation): grid (slices of SMP_SLICE tokens, rows),
// SMP_PRE_THREADS threads holding SMP_SLICE / SMP_PRE_THREADS tokens each in registers.
#define SMP_PRE_THREADS 256
#define SMP_PER 8
#define SMP_SLICE (SMP_PRE_THREADS * SMP_PER)

// Sampling rows (temperature > 0) whose tokens of non-zero fixed-point mass (the
// candidates: a prefix of the descending order, since mass grows with the logit) number at
// most SMP_LCAP run the sampling passes over a list of just those, in id order; every
// result is the one the full row gives (tokens of zero mass move no cut by mass, never
// get drawn, and a count cut past them keeps the same mass). More: the full row.
#define SMP_LCAP 16384
#define SMP_SCAP 1024 // candidates a slice may hold (more: the full row)
#define SMP_MAXP 512 // slices a row may have for the list (V <= SMP_MAXP * SMP_SLICE)
// Top logprobs (n_top > 0) likewise walk only the raw tokens at or above tau, the n_top-th
// largest of the slices' raw maxima (n_top slices hold a token >= tau, so the n_top best
// and all their ties are among them): <= SMP_RCAP a slice, <= SMP_RLCAP in all; else the row.
#define SMP_RCAP 64
#define SMP_RLCAP 2048

// Per (row, slice) partials of the first passes.
struct smp_part {
    float rmx, rse;   // raw: max (NaN as -inf) and sum of exp(raw - rmx) over the slice
    float best;       // processed: first maximum (value, then lowest id)
    int32_t best_i;
    int32_t nfin;     // processed values > -inf
    int32_t ncand;    // candidates of the slice (sample_cand_kernel)
    int32_t nraw;     // raw tokens >= tau of the slice (top logprobs; SMP_RCAP + 1: none kept)
    int32_t pad;
};
__host__ __device__ __forceinline__ int smp_slices(int V) { return (V + SMP_SLICE - 1) / SMP_SLICE; }
__host__ __device__ __forceinline__ size_t smp_al(size_t b) { return (b + 255) & ~(size_t)255; }
// The work buffer: processed rows (n, V) f32 | partials (n, slices) | per-slice candidate
// ids (n, slices, SMP_SCAP) int32 | list ids (n, SMP_LCAP) | list values | per-slice raw
// top ids (n, slices, SMP_RCAP).
struct smp_work {
    float *w;
    smp_part *parts;
    int32_t *sid, *lid;
    float *lv;
    int32_t *rsid;
};
__host__ __device__ __forceinline__ smp_work smp_carve(void *base, int n, int V) {
    char *p = (char *)base;
    smp_work k;
    k.w = (float *)p; p += smp_al((size_t)n * V * 4);
    k.parts = (smp_part *)p; p += smp_al((size_t)n * smp_slices(V) * sizeof(smp_part));
    k.sid = (int32_t *)p; p += smp_al((size_t)n * smp_slices(V) * SMP_SCAP * 4);
    k.lid = (int32_t *)p; p += smp_al((size_t)n * SMP_LCAP * 4);
    k.lv = (float *)p; p += smp_al((size_t)n * SMP_LCAP * 4);
    k.rsid = (int32_t *)p;
    return k;
}

extern "C" uint64_t cuda_sample_work_bytes(int n, int n_vocab) {
    return (uint64_t)(size_t)((char *)smp_carve(NULL, n, n_vocab).rsid +
                              smp_al((size_t)n * smp_slices(n_vocab) * SMP_RCAP * 4));
}

__device__ __forceinline__ uint32_t fkey(float f) { // order-preserving: larger float -> larger key
    const uint32_t b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}
__device__ __forceinline__ float key_f(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? k & 0x7fffffffu : ~k);
}

struct smp_shared {
    unsigned int cnt[256];
    unsigned long long mass[256];
    float red[32];
    unsigned long long red64[32];
    uint32_t found_key;
    unsigned long long found_above;
    uint32_t found_ties;
    uint32_t kmin;
    int32_t tie_id;
    int32_t list_n;
    int32_t list_id[64];
    float list_v[64];
    uint32_t scan[SMP_THREADS / 32];
    int32_t pre[SMP_MAXP + 1]; // candidates before each slice (list mode)
};

__device__ __forceinline__ unsigned long long block_sum64(unsigned long long v, smp_shared &sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) sh.red64[w] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? sh.red64[lane] : 0ull;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Radix search: the first prefix of the descending key order whose metric (count, or
// fixed-point mass) reaches target. kf(i, key, metric) -> bool (token present). Leaves in
// sh: found_key, found_above (metric of keys strictly greater), found_ties (count at key).
template <bool MASS, bool PAR = false, class KF>
__device__ void radix_find(int V, KF kf, unsigned long long target, smp_shared &sh) {
    uint32_t prefix = 0;
    unsigned long long above = 0;
    for (int level = 0; level < 4; level++) {
        const int shift = 24 - 8 * level;
        for (int i = threadIdx.x; i < 256; i += blockDim.x) {
            sh.cnt[i] = 0;
            sh.mass[i] = 0;
        }
        __syncthreads();
        // warp-aggregated: the lanes that fall in one digit add once (logit keys share
        // their top bits, so per-lane atomics would serialize on a handful of bins)
        for (int base = 0; base < V; base += blockDim.x) {
            const int i = base + threadIdx.x;
            uint32_t k = 0;
            unsigned long long ms = 0;
            int d = -1;
            if (i < V && kf(i, k, ms) && (level == 0 || (k >> (shift + 8)) == (prefix >> (shift + 8))))
                d = (k >> shift) & 255;
            const unsigned peers = __match_any_sync(0xffffffffu, d);
            if (d < 0) continue;
            const int leader = __ffs(peers) - 1;
            const unsigned n = __popc(peers);
            unsigned long long msum = 0;
            if (MASS) {
                const unsigned lo = __reduce_add_sync(peers, (unsigned)(ms & 0xffffu));
                const unsigned hi = __reduce_add_sync(peers, (unsigned)(ms >> 16));
                msum = (unsigned long long)lo + ((unsigned long long)hi << 16);
            }
            if ((int)(threadIdx.x & 31) == leader) {
                atomicAdd(&sh.cnt[d], n);
                if (MASS && msum) atomicAdd(&sh.mass[d], msum);
            }
        }
        __syncthreads();
        if (PAR) {
            // warp 0: the same choice as the serial scan below: the first digit d (from
            // 255 down) with tokens whose prefix metric above + sum_{d' >= d} reaches target;
            // else the lowest non-empty digit (lane l owns digits 255 - 8l .. 248 - 8l)
            if (threadIdx.x < 32) {
                const int lane = threadIdx.x;
                unsigned long long part = 0;
                unsigned ne = 0; // bit j: digit 255 - 8 lane - j has tokens
#pragma unroll 1
                for (int j = 0; j < 8; j++) {
                    const int d = 255 - 8 * lane - j;
                    part += MASS ? sh.mass[d] : (unsigned long long)sh.cnt[d];
                    if (sh.cnt[d]) ne |= 1u << j;
                }
                unsigned long long incl = part;
#pragma unroll
                for (int o = 1; o < 32; o <<= 1) {
                    const unsigned long long t = __shfl_up_sync(0xffffffffu, incl, o);
                    if (lane >= o) incl += t;
                }
                const unsigned long long total = __shfl_sync(0xffffffffu, incl, 31);
                unsigned long long run = above + incl - part;
                int hit = -1;
                unsigned long long hit_run = 0;
#pragma unroll 1
                for (int j = 0; j < 8; j++) {
                    const int d = 255 - 8 * lane - j;
                    const unsigned long long mm = MASS ? sh.mass[d] : (unsigned long long)sh.cnt[d];
                    if (hit < 0 && (ne >> j & 1u) && run + mm >= target) { hit = d; hit_run = run; }
                    run += mm;
                }
                const unsigned hits = __ballot_sync(0xffffffffu, hit >= 0);
                const unsigned nes = __ballot_sync(0xffffffffu, ne != 0);
                if (hits) {
                    if (lane == __ffs(hits) - 1) {
                        sh.found_key = prefix | ((uint32_t)hit << shift);
                        sh.found_above = hit_run;
                        sh.found_ties = sh.cnt[hit];
                    }
                } else {
                    const int ll = nes ? 31 - __clz(nes) : 0; // the lane of the lowest non-empty digit
                    if (lane == ll) {
                        const int d = nes ? 255 - 8 * lane - (31 - __clz(ne)) : 0;
                        const unsigned long long mm = MASS ? sh.mass[d] : (unsigned long long)sh.cnt[d];
                        sh.found_key = prefix | ((uint32_t)d << shift);
                        sh.found_above = above + total - mm;
                        sh.found_ties = sh.cnt[d];
                    }
                }
            }
        } else if (threadIdx.x == 0) {
            unsigned long long run = above;
            int d = 255, last_nonempty = -1;
            for (; d >= 0; d--) {
                const unsigned long long mm = MASS ? sh.mass[d] : (unsigned long long)sh.cnt[d];
                if (sh.cnt[d]) last_nonempty = d;
                if (sh.cnt[d] && run + mm >= target) break;
                run += mm;
            }
            if (d < 0) { // target beyond the total (rounding): the last non-empty digit
                d = last_nonempty < 0 ? 0 : last_nonempty;
                run -= MASS ? sh.mass[d] : (unsigned long long)sh.cnt[d];
            }
            sh.found_key = prefix | ((uint32_t)d << shift);
            sh.found_above = run;
            sh.found_ties = sh.cnt[d];
        }
        __syncthreads();
        prefix = sh.found_key;
        above = sh.found_above;
        __syncthreads();
    }
}

// The j-th (0-based) id in ascending order among tokens whose key equals key -> sh.tie_id
// (-1 if fewer). Also emits the first `emit` of them into sh.list (if emit > 0).
template <class KF>
__device__ void tie_find(int V, KF kf, uint32_t key, int j, int emit, smp_shared &sh) {
    const int per = (V + blockDim.x - 1) / blockDim.x;
    const int i0 = threadIdx.x * per, i1 = min(V, i0 + per);
    uint32_t n = 0;
    for (int i = i0; i < i1; i++) {
        uint32_t k;
        unsigned long long ms;
        if (kf(i, k, ms) && k == key) n++;
    }
    // exclusive scan of n over the block
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint32_t incl = n;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const uint32_t t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    if (threadIdx.x == 0) sh.tie_id = -1;
    if (lane == 31) sh.scan[w] = incl;
    __syncthreads();
    if (threadIdx.x == 0) {
        uint32_t run = 0;
        for (int k = 0; k < (int)(blockDim.x >> 5); k++) {
            const uint32_t t = sh.scan[k];
            sh.scan[k] = run;
            run += t;
        }
    }
    __syncthreads();
    uint32_t before = sh.scan[w] + incl - n;
    if (n && (before <= (uint32_t)j || (emit > 0 && before < (uint32_t)emit))) {
        for (int i = i0; i < i1; i++) {
            uint32_t k;
            unsigned long long ms;
            if (!(kf(i, k, ms) && k == key)) continue;
            if (before == (uint32_t)j) sh.tie_id = i;
            if ((int)before < emit) {
                const int at = atomicAdd(&sh.list_n, 1);
                if (at < 64) {
                    sh.list_id[at] = i;
                    sh.list_v[at] = key_f(key);
                }
            }
            before++;
        }
    }
    __syncthreads();
}

// (first-maximum order: value desc, then id asc)
__device__ __forceinline__ void smp_best(float &best, int &best_i, float v, int i) {
    if (v > best || (v == best && i < best_i)) { best = v; best_i = i; }
}

// The first passes of a slice of a row: the raw maximum and sum of exponentials, the
// processed logits (bias, NaN, mask, penalties; the same arithmetic as sample_kernel)
// into the work row, their first maximum and finite count -> one smp_part.
// Round 11 (hd; SPARKD_HD_SMP, kernels/hd.cu): LEAN skips what the row does not need: the counts
// where the penalties are neutral (rep_pen 1, freq_pen and pres_pen +0: x - (0 c + 0) = x, the same
// bits), the work row where the row is greedy (temperature not > 0: only the sampling passes of
// sample_cand_kernel and sample_kernel read it; their top logprobs and logprobs read the raw
// logits). A 64-row greedy step without penalties then reads the logits alone (39 MB at V 151936)
// instead of the logits, the counts and a work-row store (117 MB). The parts are the same bits.
// LEAN = false: today's kernel (its SASS is sample_pre_kernel's of main, sm_90a and sm_121a).
// FIN (cuda_sample_greedy, with LEAN: every row greedy, no top logprobs): the row's last CTA to
// finish (a ticket a row, reset by that CTA) also does what sample_kernel<true> does for such a row
// (lse of the parts, first maximum, token and logprob), in one launch instead of three. Its sums
// take the parts in sample_kernel's thread order (part p in thread p, block_sum: zeros elsewhere),
// so the outputs are the same bits (parts <= SMP_PRE_THREADS).
__device__ unsigned int smp_hd_ticket[65536]; // (rows of one call) CTAs of the row done; 0 between calls
template <bool LEAN, bool FIN = false>
__global__ __launch_bounds__(SMP_PRE_THREADS) void sample_pre_kernel(const cuda_sample_args A) {
    __shared__ float red[32];
    __shared__ float rb[SMP_PRE_THREADS / 32];
    __shared__ int ri[SMP_PRE_THREADS / 32];
    const int row = blockIdx.y, tid = threadIdx.x;
    const cuda_sample_row R = A.rows[row];
    const int V = A.n_vocab;
    const float *raw = A.logits + (size_t)R.logits_row * A.ld;
    float *w = A.work + (size_t)row * V;
    const int i0 = blockIdx.x * SMP_SLICE, i1 = min(V, i0 + SMP_SLICE);
    float v[SMP_PER];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < SMP_PER; j++) {
        const int i = i0 + j * SMP_PRE_THREADS + tid;
        v[j] = -INFINITY;
        if (i < i1) {
            const float r = raw[i];
            v[j] = isnan(r) ? -INFINITY : r;
            mx = fmaxf(mx, v[j]);
        }
    }
    const float rmx = block_max(mx, red);
    float se = 0.0f;
#pragma unroll
    for (int j = 0; j < SMP_PER; j++) se += rmx == -INFINITY ? 0.0f : expf(v[j] - rmx); // exp(-inf) = 0 past i1
    se = block_sum(se, red);
    if (R.n_bias > 0) { // the bias entries of this slice, added in the work row
#pragma unroll
        for (int j = 0; j < SMP_PER; j++) {
            const int i = i0 + j * SMP_PRE_THREADS + tid;
            if (i < i1) w[i] = v[j];
        }
        __syncthreads();
        for (int b = tid; b < R.n_bias; b += SMP_PRE_THREADS) {
            const int id = A.bias_ids[R.bias_off + b];
            if (id >= i0 && id < i1) atomicAdd(&w[id], A.bias_vals[R.bias_off + b]);
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < SMP_PER; j++) {
            const int i = i0 + j * SMP_PRE_THREADS + tid;
            if (i < i1) v[j] = __ldcg(&w[i]);
        }
    }
    // LEAN: no counts where the penalties are neutral; the processed row only for sampling rows
    const bool pen = !LEAN || !(R.rep_pen == 1.0f && __float_as_uint(R.freq_pen) == 0u && __float_as_uint(R.pres_pen) == 0u);
    const bool keep_w = !LEAN || R.temperature > 0.0f;
    const uint32_t *cnt = A.counts && pen ? A.counts + (size_t)R.slot * V : NULL;
    const uint32_t *mask = R.mask_off >= 0 ? A.masks + R.mask_off : NULL;
    float best = -INFINITY;
    int best_i = 0x7fffffff, nfin = 0;
#pragma unroll
    for (int j = 0; j < SMP_PER; j++) {
        const int i = i0 + j * SMP_PRE_THREADS + tid;
        if (i >= i1) continue;
        float x = v[j];
        if (isnan(x)) x = -INFINITY;
        if (mask && !((mask[i >> 5] >> (i & 31)) & 1u)) x = -INFINITY;
        if (cnt) {
            const uint32_t c = cnt[i];
            if (c) {
                if (R.rep_pen != 1.0f) x = x > 0 ? x / R.rep_pen : x * R.rep_pen;
                x -= R.freq_pen * (float)c + R.pres_pen;
            }
        }
        if (keep_w) w[i] = x;
        nfin += x != -INFINITY;
        smp_best(best, best_i, x, i);
    }
    const int lane = tid & 31, wp = tid >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
        smp_best(best, best_i, ob, oi);
        nfin += __shfl_xor_sync(0xffffffffu, nfin, o);
    }
    __syncthreads();
    if (lane == 0) { rb[wp] = best; ri[wp] = best_i; red[wp] = __int_as_float(nfin); }
    __syncthreads();
    if (tid == 0) {
        int nf = 0;
        for (int k = 0; k < SMP_PRE_THREADS / 32; k++) {
            smp_best(best, best_i, rb[k], ri[k]);
            nf += __float_as_int(red[k]);
        }
        smp_part *pp = smp_carve(A.work, A.n, V).parts + (size_t)row * gridDim.x + blockIdx.x;
        pp->rmx = rmx;
        pp->rse = se;
        pp->best = best;
        pp->best_i = best_i;
        pp->nfin = nf;
    }
    if constexpr (FIN) {
        __shared__ int last;
        if (tid == 0) {
            __threadfence(); // this CTA's part before its ticket
            last = atomicAdd(&smp_hd_ticket[row], 1u) == gridDim.x - 1;
        }
        __syncthreads();
        if (!last) return;
        __threadfence();
        const smp_part *pp = smp_carve(A.work, A.n, V).parts + (size_t)row * gridDim.x;
        const int P = (int)gridDim.x;
        float m = -INFINITY;
        for (int p = tid; p < P; p += SMP_PRE_THREADS) m = fmaxf(m, __ldcg(&pp[p].rmx));
        const float M = block_max(m, red);
        float s2 = 0.0f, b2 = -INFINITY;
        int bi2 = 0x7fffffff;
        for (int p = tid; p < P; p += SMP_PRE_THREADS) {
            const float qm = __ldcg(&pp[p].rmx), qs = __ldcg(&pp[p].rse), qb = __ldcg(&pp[p].best);
            const int qi = __ldcg(&pp[p].best_i);
            if (qm != -INFINITY) s2 += qs * expf(qm - M);
            smp_best(b2, bi2, qb, qi);
        }
        s2 = block_sum(s2, red);
        const float lse = M + logf(s2);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, b2, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi2, o);
            smp_best(b2, bi2, ob, oi);
        }
        __syncthreads();
        if (lane == 0) { rb[wp] = b2; ri[wp] = bi2; }
        __syncthreads();
        if (tid == 0) {
            for (int k = 0; k < SMP_PRE_THREADS / 32; k++) smp_best(b2, bi2, rb[k], ri[k]);
            const int32_t tok = bi2 < V ? bi2 : 0;
            const float v = raw[tok];
            cuda_sample_out *out = A.out + row;
            out->token = tok;
            out->logprob = isnan(v) ? -INFINITY : v - lse;
            out->n_top = 0;
            smp_hd_ticket[row] = 0u; // every CTA of the row has taken its ticket
        }
    }
}

// The candidates of a slice of a sampling row (temperature > 0): the ids whose mass
// pm(v) = floor(min(exp((v - max) / temperature), 1) 2^31) is not zero, in id order, to the
// slice's place in sid (the first SMP_SCAP); their count to its part. Greedy rows: 0.
__global__ __launch_bounds__(SMP_PRE_THREADS) void sample_cand_kernel(const cuda_sample_args A) {
    __shared__ float red[32];
    __shared__ int wsum[SMP_PRE_THREADS / 32];
    const int row = blockIdx.y, tid = threadIdx.x, P = gridDim.x;
    const cuda_sample_row R = A.rows[row];
    const int V = A.n_vocab;
    const smp_work k = smp_carve(A.work, A.n, V);
    smp_part *pp = k.parts + (size_t)row * P;
    const int lane = tid & 31, wp = tid >> 5;
    const int i0 = blockIdx.x * SMP_SLICE, i1 = min(V, i0 + SMP_SLICE);
    // exclusive scan of c over the block (thread order = id order) -> before, total
    auto scan = [&](int c, int &before, int &total) {
        int incl = c;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int t = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += t;
        }
        __syncthreads();
        if (lane == 31) wsum[wp] = incl;
        __syncthreads();
        before = incl - c;
        total = 0;
        for (int q = 0; q < SMP_PRE_THREADS / 32; q++) {
            if (q < wp) before += wsum[q];
            total += wsum[q];
        }
    };
    const int n_top = min(min(R.n_top, CUDA_SAMPLE_TOP), V);
    if (n_top > 0) {
        // tau: the n_top-th largest slice maximum (ties by slice index); -inf: keep none
        __shared__ float tau_sh;
        if (tid == 0) tau_sh = -INFINITY;
        __syncthreads();
        for (int p = tid; p < P; p += SMP_PRE_THREADS) {
            const float r = pp[p].rmx;
            int rank = 0;
            for (int q = 0; q < P; q++) {
                const float o = pp[q].rmx;
                rank += o > r || (o == r && q < p);
            }
            if (rank == n_top - 1) tau_sh = r;
        }
        __syncthreads();
        const float tau = tau_sh;
        const float *raw = A.logits + (size_t)R.logits_row * A.ld;
        unsigned keep = 0;
        int c = 0;
        if (tau != -INFINITY) {
#pragma unroll
            for (int j = 0; j < SMP_PER; j++) {
                const int i = i0 + tid * SMP_PER + j;
                if (i < i1 && raw[i] >= tau) { // NaN: never
                    keep |= 1u << j;
                    c++;
                }
            }
        }
        int before, total;
        scan(c, before, total);
        int32_t *ids = k.rsid + ((size_t)row * P + blockIdx.x) * SMP_RCAP;
#pragma unroll
        for (int j = 0; j < SMP_PER; j++)
            if (keep >> j & 1u) {
                if (before < SMP_RCAP) ids[before] = i0 + tid * SMP_PER + j;
                before++;
            }
        if (tid == 0) pp[blockIdx.x].nraw = tau == -INFINITY ? SMP_RCAP + 1 : total;
    }
    if (!(R.temperature > 0.0f)) {
        if (tid == 0) pp[blockIdx.x].ncand = 0;
        return;
    }
    float m = -INFINITY;
    for (int p = tid; p < P; p += SMP_PRE_THREADS) m = fmaxf(m, pp[p].best);
    const float pmx = block_max(m, red), temp = R.temperature;
    const float *w = k.w + (size_t)row * V;
    unsigned keep = 0;
    int c = 0;
#pragma unroll
    for (int j = 0; j < SMP_PER; j++) {
        const int i = i0 + tid * SMP_PER + j;
        if (i < i1 && pmx != -INFINITY) {
            const float v = w[i];
            if (v != -INFINITY && __float2uint_rd(fminf(expf((v - pmx) / temp), 1.0f) * 2147483648.0f) > 0u) {
                keep |= 1u << j;
                c++;
            }
        }
    }
    int before, total;
    scan(c, before, total);
    int32_t *ids = k.sid + ((size_t)row * P + blockIdx.x) * SMP_SCAP;
#pragma unroll
    for (int j = 0; j < SMP_PER; j++)
        if (keep >> j & 1u) {
            if (before < SMP_SCAP) ids[before] = i0 + tid * SMP_PER + j;
            before++;
        }
    if (tid == 0) pp[blockIdx.x].ncand = total;
}

// PRE = 0: the whole row in this CTA (first generation); PRE = 1: the first passes came
// from sample_pre_kernel (parts: its slices of this row), this CTA combines them and runs
// the sampling passes (temperature > 0) and the top logprobs.
// The ids that slices 0..parts-1 listed (slice p's pre[p + 1] - pre[p] ids at sid[p * cap...])
// gathered in order into lid[0, total), with val[id] beside them in lv. Every thread of the block.
__device__ void smp_gather(const int32_t *pre, int parts, int total, const int32_t *sid, int cap, const float *val,
                           int32_t *lid, float *lv) {
    for (int q = threadIdx.x; q < total; q += blockDim.x) {
        int lo = 0, hi = parts - 1; // the last slice s with pre[s] <= q
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            if (pre[mid] <= q) lo = mid;
            else hi = mid - 1;
        }
        const int id = sid[(size_t)lo * cap + (q - pre[lo])];
        lid[q] = id;
        lv[q] = val[id];
    }
}

template <bool PRE>
__global__ __launch_bounds__(SMP_THREADS) void sample_kernel(const cuda_sample_args A, int parts) {
    __shared__ smp_shared sh;
    const cuda_sample_row R = A.rows[blockIdx.x];
    const int V = A.n_vocab;
    const float *raw = A.logits + (size_t)R.logits_row * A.ld;
    float *w = A.work + (size_t)blockIdx.x * V;
    cuda_sample_out *out = A.out + blockIdx.x;
    float lse, best = -INFINITY;
    int best_i = 0x7fffffff, nfin = -1;
    if (PRE) {
        const smp_part *pp = smp_carve(A.work, A.n, V).parts + (size_t)blockIdx.x * parts;
        float m = -INFINITY;
        for (int p = threadIdx.x; p < parts; p += blockDim.x) m = fmaxf(m, pp[p].rmx);
        const float M = block_max(m, sh.red);
        float se = 0.0f;
        unsigned long long nf = 0;
        for (int p = threadIdx.x; p < parts; p += blockDim.x) {
            const smp_part q = pp[p];
            if (q.rmx != -INFINITY) se += q.rse * expf(q.rmx - M);
            smp_best(best, best_i, q.best, q.best_i);
            nf += (unsigned long long)q.nfin;
        }
        se = block_sum(se, sh.red);
        lse = M + logf(se);
        nfin = (int)block_sum64(nf, sh);
    } else {
    // raw log-sum-exp (logprobs)
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float v = raw[i];
        w[i] = isnan(v) ? -INFINITY : v;
        mx = fmaxf(mx, w[i]);
    }
    const float raw_mx = block_max(mx, sh.red);
    float se = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) se += raw_mx == -INFINITY ? 0.0f : expf(w[i] - raw_mx);
    se = block_sum(se, sh.red);
    lse = raw_mx + logf(se);
    // processed logits
    for (int b = threadIdx.x; b < R.n_bias; b += blockDim.x) {
        const int id = A.bias_ids[R.bias_off + b];
        if (id >= 0 && id < V) atomicAdd(&w[id], A.bias_vals[R.bias_off + b]);
    }
    __syncthreads();
    const uint32_t *cnt = A.counts ? A.counts + (size_t)R.slot * V : NULL;
    const uint32_t *mask = R.mask_off >= 0 ? A.masks + R.mask_off : NULL;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = w[i];
        if (isnan(v)) v = -INFINITY;
        if (mask && !((mask[i >> 5] >> (i & 31)) & 1u)) v = -INFINITY;
        if (cnt && cnt[i]) {
            if (R.rep_pen != 1.0f) v = v > 0 ? v / R.rep_pen : v * R.rep_pen;
            v -= R.freq_pen * (float)cnt[i] + R.pres_pen;
        }
        w[i] = v;
        if (v > best || (v == best && i < best_i)) { best = v; best_i = i; }
    }
    } // !PRE
    // first maximum over the block
    {
        const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
            if (ob > best || (ob == best && oi < best_i)) { best = ob; best_i = oi; }
        }
        __syncthreads();
        if (lane == 0) { sh.red[wp] = best; sh.list_id[wp] = best_i; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int k = 1; k < (int)(blockDim.x >> 5); k++)
                if (sh.red[k] > sh.red[0] || (sh.red[k] == sh.red[0] && sh.list_id[k] < sh.list_id[0])) {
                    sh.red[0] = sh.red[k];
                    sh.list_id[0] = sh.list_id[k];
                }
        }
        __syncthreads();
        best = sh.red[0];
        best_i = sh.list_id[0];
        __syncthreads();
    }
    int32_t tok = best_i < V ? best_i : 0;
    if (R.temperature > 0.0f && best != -INFINITY) {
        // the values the passes below walk: the whole row, or the candidate list (PRE)
        const float *cw = w;
        const int32_t *cid = NULL;
        int Vc = V;
        if (PRE && parts <= SMP_MAXP) {
            const smp_work wk = smp_carve(A.work, A.n, V);
            const smp_part *pp = wk.parts + (size_t)blockIdx.x * parts;
            if (threadIdx.x == 0) {
                int run = 0;
                for (int p = 0; p < parts; p++) {
                    sh.pre[p] = run;
                    run += pp[p].ncand > SMP_SCAP ? SMP_LCAP + 1 : pp[p].ncand; // a full slice: no list
                    if (run > SMP_LCAP) run = SMP_LCAP + 1;
                }
                sh.pre[parts] = run;
            }
            __syncthreads();
            const int total = sh.pre[parts];
            if (total <= SMP_LCAP) {
                int32_t *lid = wk.lid + (size_t)blockIdx.x * SMP_LCAP;
                float *lv = wk.lv + (size_t)blockIdx.x * SMP_LCAP;
                const int32_t *sid = wk.sid + (size_t)blockIdx.x * parts * SMP_SCAP;
                smp_gather(sh.pre, parts, total, sid, SMP_SCAP, w, lid, lv);
                __syncthreads();
                cw = lv;
                cid = lid;
                Vc = total;
                nfin = total;
            }
            __syncthreads();
        }
        const float pmx = best, temp = R.temperature;
        const float S = 2147483648.0f; // 2^31
        auto pm = [&](float v) -> unsigned long long {
            return (unsigned long long)__float2uint_rd(fminf(expf((v - pmx) / temp), 1.0f) * S);
        };
        auto kf = [&](int i, uint32_t &k, unsigned long long &ms) -> bool {
            const float v = cw[i];
            if (v == -INFINITY) return false;
            k = fkey(v);
            ms = pm(v);
            return true;
        };
        // A cut is a prefix of the descending order: every key above `key` and the first
        // `ties` tokens (by id) at `key`. (0, all) keeps everything.
        auto mass_of = [&](uint32_t key, unsigned long long ties) -> unsigned long long {
            unsigned long long s = 0, at = 0;
            for (int i = threadIdx.x; i < Vc; i += blockDim.x) {
                const float v = cw[i];
                if (v == -INFINITY) continue;
                const uint32_t k = fkey(v);
                if (k > key) s += pm(v);
                else if (k == key) at++;
            }
            s = block_sum64(s, sh);
            at = block_sum64(at, sh);
            const unsigned long long t = ties < at ? ties : at;
            return s + (t ? t * pm(key_f(key)) : 0ull);
        };
        uint32_t bkey = 0;
        unsigned long long bties = ~0ull;
        auto tighten = [&](uint32_t k, unsigned long long t) {
            if (k > bkey || (k == bkey && t < bties)) { bkey = k; bties = t; }
        };
        // the candidate set, as sampler.c picks it: top-k; else the top m for m = 256,
        // 1024, ... until it holds top_p of the mass (top_p < 1) or all but 1e-6 of it
        if (nfin < 0) {
            nfin = 0;
            for (int i = threadIdx.x; i < Vc; i += blockDim.x) nfin += cw[i] != -INFINITY;
            nfin = (int)block_sum64((unsigned long long)nfin, sh);
        }
        if (R.top_k > 0 && R.top_k < V) {
            if (R.top_k < nfin) {
                radix_find<false, PRE>(Vc, kf, (unsigned long long)R.top_k, sh);
                tighten(sh.found_key, (unsigned long long)R.top_k - sh.found_above);
            }
        } else {
            const unsigned long long all = mass_of(0, ~0ull);
            int mm = Vc < 256 ? Vc : 256;
            while (mm < nfin && mm < Vc) {
                radix_find<false, PRE>(Vc, kf, (unsigned long long)mm, sh);
                const uint32_t k = sh.found_key;
                const unsigned long long t = (unsigned long long)mm - sh.found_above;
                const unsigned long long in = mass_of(k, t);
                const bool done = R.top_p < 1.0f ? (double)in >= (double)R.top_p * (double)all
                                                 : (double)(all - in) <= 1e-6 * (double)all;
                if (done) { tighten(k, t); break; }
                mm = mm * 4 < Vc ? mm * 4 : Vc;
            }
        }
        auto cut_mass = [&]() { return mass_of(bkey, bties); };
        if (R.top_p < 1.0f) {
            const unsigned long long mu = cut_mass();
            unsigned long long tp = (unsigned long long)ceil((double)R.top_p * (double)mu);
            if (tp < 1) tp = 1;
            radix_find<true, PRE>(Vc, kf, tp, sh);
            const unsigned long long pk = pm(key_f(sh.found_key));
            const unsigned long long need = pk ? (tp - sh.found_above + pk - 1) / pk : 1;
            tighten(sh.found_key, need < 1 ? 1 : need);
        }
        if (R.min_p > 0.0f) {
            // smallest key whose probability (relative to the top) is >= min_p
            uint32_t kmin = 0xffffffffu;
            for (int i = threadIdx.x; i < Vc; i += blockDim.x) {
                const float v = cw[i];
                if (v != -INFINITY && expf((v - pmx) / temp) >= R.min_p) kmin = min(kmin, fkey(v));
            }
            if (threadIdx.x == 0) sh.kmin = 0xffffffffu;
            __syncthreads();
            atomicMin(&sh.kmin, kmin);
            __syncthreads();
            tighten(sh.kmin, ~0ull);
        }
        const unsigned long long mb = cut_mass();
        if (mb > 0) {
            unsigned long long r = (unsigned long long)((double)R.u * (double)mb);
            if (r >= mb) r = mb - 1;
            radix_find<true, PRE>(Vc, kf, r + 1, sh);
            const unsigned long long pk = pm(key_f(sh.found_key));
            const unsigned long long j = pk ? (r - sh.found_above) / pk : 0;
            if (threadIdx.x == 0) sh.list_n = 0;
            __syncthreads();
            tie_find(Vc, kf, sh.found_key, (int)j, 0, sh);
            if (sh.tie_id >= 0) tok = cid ? cid[sh.tie_id] : sh.tie_id;
        }
    }
    // logprobs of the raw logits
    if (threadIdx.x == 0) {
        const float v = raw[tok];
        out->token = tok;
        out->logprob = isnan(v) ? -INFINITY : v - lse;
        out->n_top = 0;
    }
    const int n_top = min(min(R.n_top, CUDA_SAMPLE_TOP), V);
    if (n_top > 0) {
        // the values walked: the raw row, or (PRE) the list of raw tokens >= tau
        const float *rv = raw;
        const int32_t *rid = NULL;
        int Vr = V;
        if (PRE && parts <= SMP_MAXP) {
            const smp_work wk = smp_carve(A.work, A.n, V);
            const smp_part *pp = wk.parts + (size_t)blockIdx.x * parts;
            __syncthreads(); // the sampling list (same memory) is done with
            if (threadIdx.x == 0) {
                int run = 0;
                for (int p = 0; p < parts; p++) {
                    sh.pre[p] = run;
                    run += pp[p].nraw > SMP_RCAP ? SMP_RLCAP + 1 : pp[p].nraw;
                    if (run > SMP_RLCAP) run = SMP_RLCAP + 1;
                }
                sh.pre[parts] = run;
            }
            __syncthreads();
            const int total = sh.pre[parts];
            if (total <= SMP_RLCAP && total >= n_top) {
                int32_t *lid = wk.lid + (size_t)blockIdx.x * SMP_LCAP;
                float *lv = wk.lv + (size_t)blockIdx.x * SMP_LCAP;
                const int32_t *rs = wk.rsid + (size_t)blockIdx.x * parts * SMP_RCAP;
                smp_gather(sh.pre, parts, total, rs, SMP_RCAP, raw, lid, lv);
                __syncthreads();
                rv = lv;
                rid = lid;
                Vr = total;
            }
            __syncthreads();
        }
        auto kr = [&](int i, uint32_t &k, unsigned long long &ms) -> bool {
            const float v = rv[i];
            k = fkey(isnan(v) ? -INFINITY : v);
            ms = 0;
            return true;
        };
        radix_find<false, PRE>(Vr, kr, (unsigned long long)n_top, sh);
        const uint32_t kk = sh.found_key;
        const int need = n_top - (int)sh.found_above;
        if (threadIdx.x == 0) sh.list_n = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < Vr; i += blockDim.x) {
            uint32_t k;
            unsigned long long ms;
            kr(i, k, ms);
            if (k > kk) {
                const int at = atomicAdd(&sh.list_n, 1);
                if (at < 64) { sh.list_id[at] = i; sh.list_v[at] = key_f(k); }
            }
        }
        __syncthreads();
        tie_find(Vr, kr, kk, -1, need, sh);
        if (threadIdx.x == 0) {
            const int n = min(sh.list_n, n_top);
            if (rid) // list index -> token id (the list is in id order)
                for (int a = 0; a < min(sh.list_n, 64); a++) sh.list_id[a] = rid[sh.list_id[a]];
            // insertion sort: value desc, id asc
            for (int a = 1; a < min(sh.list_n, 64); a++) {
                const int id = sh.list_id[a];
                const float v = sh.list_v[a];
                int b = a - 1;
                while (b >= 0 && (sh.list_v[b] < v || (sh.list_v[b] == v && sh.list_id[b] > id))) {
                    sh.list_id[b + 1] = sh.list_id[b];
                    sh.list_v[b + 1] = sh.list_v[b];
                    b--;
                }
                sh.list_id[b + 1] = id;
                sh.list_v[b + 1] = v;
            }
            out->n_top = n;
            for (int a = 0; a < n; a++) {
                out->top_ids[a] = sh.list_id[a];
                out->top_logprobs[a] = sh.list_v[a] - lse;
            }
        }
    }
}

extern "C" int cuda_sample(const cuda_sample_args *a, void *stream, err *e) {
    if (!a || !a->logits || !a->rows || !a->work || !a->out || a->n < 1 || a->n > 65535 || a->n_vocab < 1 ||
        a->ld < a->n_vocab)
        return err_set(e, ERR_INVALID, "cuda_sample: n %d vocab %d", a ? a->n : 0, a ? a->n_vocab : 0);
    if (cuda_elt_old()) {
        sample_kernel<false><<<a->n, SMP_THREADS, 0, CUDA_STREAM(stream)>>>(*a, 0);
        CUDA_LAUNCHED();
        return 0;
    }
    const int parts = smp_slices(a->n_vocab);
    if (cuda_hd_smp()) // round 11 hd (SPARKD_HD_SMP): the first pass without what the row does not need
        sample_pre_kernel<true><<<dim3((unsigned)parts, (unsigned)a->n), SMP_PRE_THREADS, 0, CUDA_STREAM(stream)>>>(*a);
    else
        sample_pre_kernel<false><<<dim3((unsigned)parts, (unsigned)a->n), SMP_PRE_THREADS, 0, CUDA_STREAM(stream)>>>(*a);
    CUDA_LAUNCHED();
    sample_cand_kernel<<<dim3((unsigned)parts, (unsigned)a->n), SMP_PRE_THREADS, 0, CUDA_STREAM(stream)>>>(*a);
    CUDA_LAUNCHED();
    sample_kernel<true><<<a->n, SMP_THREADS, 0, CUDA_STREAM(stream)>>>(*a, parts);
    CUDA_LAUNCHED();
    return 0;
}

// Round 11 (hd): rows that are all greedy with no top logprobs (the caller knows: engine.cu asks
// cuda_hd_greedy of its host rows) in one launch: sample_pre_kernel<true, true>, the same outputs as
// cuda_sample. Vocabularies of more than SMP_PRE_THREADS slices (V > 524288): cuda_sample. One call
// at a time a device (smp_hd_ticket: the engine's calls are ordered on its stream).
extern "C" int cuda_sample_greedy(const cuda_sample_args *a, void *stream, err *e) {
    if (!a || !a->logits || !a->rows || !a->work || !a->out || a->n < 1 || a->n > 65535 || a->n_vocab < 1 ||
        a->ld < a->n_vocab)
        return err_set(e, ERR_INVALID, "cuda_sample_greedy: n %d vocab %d", a ? a->n : 0, a ? a->n_vocab : 0);
    const int parts = smp_slices(a->n_vocab);
    if (parts > SMP_PRE_THREADS) return cuda_sample(a, stream, e);
    sample_pre_kernel<true, true><<<dim3((unsigned)parts, (unsigned)a->n), SMP_PRE_THREADS, 0, CUDA_STREAM(stream)>>>(*a);
    CUDA_LAUNCHED();
    return 0;
}

__global__ void counts_add_kernel(uint32_t *counts, int n_vocab, const int32_t *slot, const int32_t *tok, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        if (tok[i] >= 0 && tok[i] < n_vocab && slot[i] >= 0) atomicAdd(&counts[(size_t)slot[i] * n_vocab + tok[i]], 1u);
}

extern "C" int cuda_counts_add(uint32_t *counts, int n_vocab, const int32_t *slot, const int32_t *tok, int n,
                               void *stream, err *e) {
    if (!counts || n < 0 || (n && (!slot || !tok)))
        return err_set(e, ERR_INVALID, "cuda_counts_add: n %d", n);
    if (n == 0) return 0;
    counts_add_kernel<<<(n + 255) / 256 < 64 ? (n + 255) / 256 : 64, 256, 0, CUDA_STREAM(stream)>>>(counts, n_vocab, slot, tok, n);
    CUDA_LAUNCHED();
    return 0;
}
