/* cuda_kern.h — the inference kernels' C interface (prefix cuda_).
 *
 * Owns nothing: every buffer is the caller's (device memory unless a comment says host),
 * every launch is enqueued on the caller's stream (a cudaStream_t passed as void *; NULL =
 * the default stream) and none synchronizes. Each function returns 0 or an err_code with e
 * set (ERR_INVALID for bad arguments before anything is launched, ERR_IO/ERR_UNSUPPORTED
 * for a failed launch, see cuda.h for the mapping); asynchronous faults surface at the
 * caller's next synchronization.
 *
 * One .cu file per kernel family: weights.cu (layouts, repack, dequant/embedding),
 * gemv.cu (T = 1 products), gemm.cu (tensor-core products), layer.cu (norms, activation,
 * QK-norm + RoPE + KV store, soft-capping), attn.cu (paged attention), sample.cu
 * (sampling); selftest.cu checks every one of them against CPU references.
 *
 * ---------------------------------------------------------------------------------------
 * Weight layout ("P64 planes"). A matrix of N rows (output features) by K elements (input
 * features, K % 64 == 0) is repacked at load from the GGUF bytes into up to three planes,
 * each starting 256-byte aligned inside one allocation of cuda_weight_bytes():
 *   codes  (N, K * cbits / 8) bytes: cbits = 4 (every 4/5/6-bit format and MXFP4: the low
 *          4 bits of each code), 8 (Q8_0: int8), 16 (F16/BF16 values), 32 (F32 values)
 *   hi     (N, K * hbits / 8) bytes: the 5th bit (Q5_0, Q5_1, Q5_K: hbits 1) or the 5th and
 *          6th bits (Q6_K: hbits 2) of each code
 *   meta   (N, K / meta_elems) entries of meta_bytes: the format's block header, verbatim:
 *          Q8_0/Q4_0/Q5_0 f16 d (2 B per 32); Q4_1/Q5_1 f16 d, f16 m (4 B per 32); MXFP4
 *          E8M0 byte (per 32); Q4_K/Q5_K the 16-byte superblock head d, dmin, scales[12]
 *          (per 256); Q6_K f16 d, 2 pad bytes, int8 scales[16] (20 B per 256)
 * Inside every 64-element chunk of a row, elements are stored in the order of the
 * tensor-core fragments (mma.m16n8k16): position p holds element
 *   perm64(p) = 32*((p & 15) >> 3) + 2*(p >> 4) + (p & 1) + 8*((p & 7) >> 1)
 * so quad lane c of a warp finds its 16 A-fragment values of all four k16 steps in one
 * contiguous 1/4 of the chunk (8 bytes of 4-bit codes, 16 of int8, 32 of f16). Within that
 * quarter, 4-bit codes are two 32-bit words of 8 nibbles; nibble k (k < 4) of word w is
 * quarter element 8w + 2k and nibble k + 4 is element 8w + 2k + 1, so
 * (word >> 4k) & 0x000F000F isolates one pair. The 1-bit plane gives each quarter a
 * 16-bit word: bit b < 8 is element 8*(b >> 2) + 2*(b & 3), bit 8 + b the element after it;
 * the 2-bit plane a 32-bit word: bits 2b..2b+1 (b < 8) likewise, bits 16 + 2b.. the next.
 * The code of an element is the format's unsigned code (Q8_0: signed); the weight is
 * s * (code - offset) + m with the per-group scale s and min m taken from meta exactly as
 * appliance/format/quant.c computes them (so dequantization is bit-exact with it).
 *
 * Activation layout ("mm input", cuda_mmin): what a product reads. For T = 1 (and F32
 * weights) the f32 row in the same P64 order (xp); for tensor-core products the row scaled
 * by a power of two 2^-e_t (so its largest element is below 2^14) split into a high and a
 * low f16 (or bf16) part in P64 order, x * 2^-e_t = hi + lo to about 22 significant bits,
 * plus per-32-group sums of the scaled row (for formats with a min) and 2^e_t itself.
 * ------------------------------------------------------------------------------------- */
#ifndef SPARKD_CUDA_KERN_H
#define SPARKD_CUDA_KERN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "err.h"

/* ---------------------------------------------------------------- weights */

typedef struct cuda_weight {
    uint32_t type;  /* ggml type id (quant.h) */
    int64_t rows;   /* N: output features */
    int64_t cols;   /* K: input features, K % 64 == 0 (K % 256 for K-quants) */
    void *base;     /* device: cuda_weight_bytes(type, rows, cols) bytes, 256-byte aligned */
} cuda_weight;

/* 1 if the kernels compute with this type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K
 * Q6_K MXFP4). */
int cuda_weight_type_ok(uint32_t type);
/* Bytes of the repacked layout of a rows x cols matrix, or 0 when the type is not
 * supported or cols is not a multiple of 64 (256 for K-quants). */
uint64_t cuda_weight_bytes(uint32_t type, int64_t rows, int64_t cols);
/* Repacks rows [row0, row0 + n) of w from GGUF bytes:
 *   raw  device, n rows of the GGUF layout (row_bytes = quant_row_bytes(type, cols) each,
 *        contiguous), only 2-byte aligned is required
 * into w's planes. Rows can arrive in any order of chunks (streamed loading). */
int cuda_weight_repack(const cuda_weight *w, const void *raw, int64_t row0, int64_t n,
                       void *stream, err *e);
/* out[i][k] = scale * dequant(w row ids[i])[k] for i < n: the embedding lookup, and the
 * exact inverse of the repack (selftest compares it bit for bit with quant.c).
 *   ids  device (n) int32 row ids, each in [0, rows) (others give zeros)
 *   out  device (n, cols) f32 */
int cuda_weight_rows(const cuda_weight *w, const int32_t *ids, int n, float scale, float *out,
                     void *stream, err *e);

/* ---------------------------------------------------------------- mm input */

enum {
    CUDA_MMIN_XP = 1,   /* f32 P64 rows: GEMV (T == 1) and F32 weights */
    CUDA_MMIN_F16 = 2,  /* f16 hi/lo + sums + scales: tensor-core products, f16 weights/codes */
    CUDA_MMIN_BF16 = 4, /* bf16 hi/lo + sums + scales: tensor-core products of BF16 weights */
    CUDA_MMIN_Q8 = 8,   /* int8 rows + per-32 scales and sums: the int8 tensor-core products
                         * (mmq.cu) of precision fast, Q8_0/Q4_K/Q6_K weights, T > 1 */
};

typedef struct cuda_mmin {
    int T;            /* rows (tokens) present */
    int K;            /* row length, % 64 == 0 */
    int forms;        /* CUDA_MMIN_* written by the producer */
    float *xp;        /* (T, K) f32, P64 order */
    uint16_t *hi, *lo;   /* (T, K) f16 bits, P64 order: x * 2^-e_t = hi + lo */
    uint16_t *bhi, *blo; /* (T, K) bf16 bits, same */
    float *gsum;      /* (T, K / 32) sum of x * 2^-e_t over each group of 32 (natural order) */
    float *tscale;    /* (T) 2^e_t */
    /* Q8 form: the unscaled row quantized per natural block of 32 as the dp4a GEMV does
     * (d = amax / 127 in f32, q = roundf(x / d), q = 0 when amax = 0) */
    int8_t *q8;       /* (T, K) int8 codes q, P64 order */
    float *q8d;       /* (T, K / 32) d of each block (natural order) */
    float *q8s;       /* (T, K / 32) d * sum(q) of each block (the mins of Q4_K) */
} cuda_mmin;

/* Bytes of a cuda_mmin of T rows of K for these forms (cuda_mmin_carve lays them out). */
uint64_t cuda_mmin_bytes(int T, int K, int forms);
/* Points m's arrays into buf (device, cuda_mmin_bytes(T, K, forms) bytes, 256-aligned). */
void cuda_mmin_carve(cuda_mmin *m, void *buf, int T, int K, int forms);
/* The forms a product with weights of this type at T rows needs. */
int cuda_mmin_forms_for(uint32_t type, int T);

/* mm input from plain rows: x (T, K) f32 row-major with row stride ldx -> m (m->T = T). */
int cuda_mmin_prepare(const float *x, int ldx, cuda_mmin *m, int T, void *stream, err *e);

/* ---------------------------------------------------------------- products */

#define CUDA_MM_MAX_MATS 3
/* Y_i = X W_i^T for up to three matrices of one type that share the input (q/k/v,
 * gate/up): y[i] is (T, w[i]->rows) f32 with row stride ldy[i]; accumulate = 1 adds to y
 * (residual). T == 1 and F32 use the GEMV kernel, otherwise the tensor-core GEMM;
 * CUDA_MM_FORCE_* overrides (tests, tuning). exact = 0 lets the GEMM skip the low f16 half
 * of the input (one MMA instead of two; ~11 bits of input precision) and the GEMV of Q8_0,
 * Q4_0, Q4_K, Q6_K weights quantize the input to int8 per block of 32 (scale amax / 127;
 * products by __dp4a, gemv.cu). */
enum { CUDA_MM_AUTO = 0, CUDA_MM_FORCE_GEMV = 1, CUDA_MM_FORCE_GEMM = 2 };
/* One output matrix of a split-K product whose reduce launch was deferred to its consumer
 * (cuda_mm_args.defer; round 8 fz, kernels/fz_part.cuh sums them). nz == 0 and g2 == 0: the
 * product wrote y itself. nz > 0: element r of token t is sum over z = 0..nz-1, in that order
 * from 0.0f (as splitk_reduce), of p[z * zs + t * ld + r]; y was not written. g2 = 1 (gemms2's
 * persistent grid): y holds the tiles no CTA range boundary cuts; row r's tile tile0 + r / ld
 * (ld = rows a tile), when cut, is the sum over its CTAs c0..c1 in order of p[((2 c + slot) *
 * zs + t) * ld + r % ld] (zs = T; slot 0 where the tile starts c's range, else 1; G CTAs over
 * N = tiles x nst index entries: as gemms2_reduce_kernel). */
typedef struct cuda_part {
    const float *p;
    long long zs, N;
    int ld, nz;
    int g2, G, nst, tile0;
} cuda_part;
/* Set cuda_mm_args.defer to one of these with on = 1: a product that splits K then leaves its
 * partials in the work buffer (no reduce launch) and describes them in part[i] (matrix i);
 * used: bytes of work they take from its start (they must outlive the consumer's launch).
 * Products that do not split (or a path without this: GEMV, clusters) leave part[i] zero. */
typedef struct cuda_defer {
    int on;
    uint64_t used;
    cuda_part part[CUDA_MM_MAX_MATS];
} cuda_defer;
typedef struct cuda_mm_args {
    int n;                                  /* matrices, 1..CUDA_MM_MAX_MATS, same type and cols */
    const cuda_weight *w[CUDA_MM_MAX_MATS];
    float *y[CUDA_MM_MAX_MATS];
    int ldy[CUDA_MM_MAX_MATS];
    int accumulate;
    int path;                               /* CUDA_MM_AUTO / FORCE_* */
    int exact;                              /* 1: hi + lo (default for correctness) */
    float *work;       /* optional device scratch: lets small grids split K over CTAs */
    uint64_t work_bytes; /* (the partials are summed in a fixed order: deterministic) */
    cuda_defer *defer;   /* NULL: every split product sums its partials itself (reduce launch) */
    /* Paired gated activation (GEMV path only: T == 1, quantized or 16-bit weights): with
     * pair_act = CUDA_ACT_* + 1, n == 2, w[0] = gate and w[1] = up of the same shape, the
     * product writes act(gate) * up straight into act_out's f32 P64 rows (XP form,
     * act_out->K == rows, act_out->T is set to T) and y is not written. 0 = off. */
    int pair_act;
    cuda_mmin *act_out;
} cuda_mm_args;
int cuda_matmul(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e);
/* Tuning (selftest --bench): warps of a GEMV CTA that split K, 1, 2, 4 or 8; 0 = the
 * built-in choice (SPARKD_GEMV_WK sets it at the first product). */
void cuda_gemv_wk_set(int wk);
/* Tests and benches: 1 = the GEMV's int8 (__dp4a) path also for exact products (Q8_0, Q4_0,
 * Q4_K, Q6_K); 0 = only for exact = 0. SPARKD_GEMV_DP4A=1 sets 1 at the first product
 * (temporary, for the lead's A/B under precision = exact). */
void cuda_gemv_dp4a_set(int on);
/* The int8 path's persistent kernel (gemv4_kernel, gemv.cu): 0 = never (the per-32-rows
 * gemv_dq_kernel; SPARKD_GEMV4_OLD=1 sets it), 1 = where the product has at least one row
 * quad per resident warp (default), 2 = for every int8 product (tests), -1 = as the
 * environment says. */
void cuda_gemv4_set(int mode);
/* The int8 GEMVs' round-5 kernels (gemv.cu): 1 (default) = x quantized by lanes owning runs
 * of 8 (gdq_quantize8: fewer shuffles and divisions in the chain, the same bytes) and the Q4_K
 * step without divergence handling; 0 = the round-4 kernels exactly; 2 = 1 (and never the L2
 * prefetch); 3 = 1 plus the L2 prefetch of the iterations past the register ring before
 * pdl_wait (GPU run 1's default, 1-5% slower a product; at 1 it runs only with
 * SPARKD_GEMV_PF_KB=n > 0). SPARKD_GEMV_PRE=0..3 sets it at the
 * first product; -1 = as the environment says. Results are bit-identical either way. */
void cuda_gemv_pre_set(int on);
/* Round 7 (gemv.cu q4v_kernel): Q4_K / Q6_K / Q8_0 int8 GEMVs with a lane owning whole chunks: 0 = off
 * (as round 5), 1 = on at SPARKD_GEMV_PRE != 0 (default), 2 = every Q4_K / Q6_K / Q8_0 int8 product;
 * -1 = as SPARKD_Q4V=0|1|2 says. cuda_gemv_q6v_set: 0 = Q6_K stays on round 5's kernels at mode
 * 1 (SPARKD_Q6V=0), 1 = not, -1 = as the environment says. Launches so far (tests: which
 * kernel ran). */
void cuda_gemv_q4v_set(int mode);
void cuda_gemv_q6v_set(int on);
/* Q8_0's switch, as cuda_gemv_q6v_set's (SPARKD_Q8V=0: Q8_0 stays on round 5's gemv4 / gemv_dq at mode 1). */
void cuda_gemv_q8v_set(int on);
/* q4v's warps per CTA: 16 (one CTA an SM) or 8 (two) forced (SPARKD_Q4V_W=16|8); 0 = as the
 * environment says, unset there: 16. */
void cuda_gemv_q4v_warps_set(int nw);
int cuda_gemv_q4v_launches(void);
/* gemv4's K split (warps per row quad): 1 = where the round-4 rule splits K, a larger split
 * when it gives the busiest warp >= 10% fewer iterations (q+k+v on an H200: 4 instead of 2;
 * measured +-5%, not a win); 0 (default) = the round-4 rule; -1 = as SPARKD_GEMV4_BAL=0|1 says. A different split
 * sums in a different order (not the same bits as the round-4 split). */
void cuda_gemv4_bal_set(int on);
/* Benches: every later int8 GEMV launch at SPARKD_GEMV_PRE >= 1 records, per CTA, 5 globaltimer
 * stamps (ns: start, ring loads issued, pdl_wait returned, x quantized, done; gemv4 on Q6_K
 * none: its registers are full) into the next grid x 5 entries of buf (device, cap entries;
 * in launch order, grid order); NULL = off. Returns the entries the previous buffer took. */
size_t cuda_gemv_trace_set(unsigned long long *buf, size_t cap);
/* 1 if the int8 tensor-core product (mmq.cu) computes with this weight type (Q8_0, Q4_K, Q6_K):
 * cuda_matmul takes it for T > 1 when exact = 0 and the input carries CUDA_MMIN_Q8. */
int cuda_mmq_type_ok(uint32_t type);
/* Tests and benches: 0 keeps exact = 0 products of T > 1 on the f16 tensor-core kernel
 * even with a Q8 input (A/B); 1 (default) allows mmq. SPARKD_MMQ=0 sets 0 at the first
 * product. */
void cuda_mmq_set(int on);
/* precision fast's f16 product (gemm.cu hfast_kernel: weights rounded once to f16 in the
 * fragment, the hi form alone; Q8_0, Q4_K, Q5_K, Q6_K, Q4_0, Q5_0): cuda_matmul takes it for exact = 0,
 * T >= cuda_hfast_min_t() and an input with the F16 form, before mmq. min_t: the threshold
 * (SPARKD_HFAST_MIN_T, default 33; a huge value when SPARKD_FAST_MM=int8 turns it off);
 * cuda_hfast_set(n) sets it and the Q8_0 one (0 = off, -1 = as the environment says). cuda_hfast_check
 * records whether w's weights stay inside the f16 range (synchronizes the stream; the
 * engine calls it at load, cuda_matmul for a matrix not yet checked unless capturing). */
int cuda_hfast_type_ok(uint32_t type);
int cuda_hfast_min_t(void);
/* The threshold for one weight type: Q8_0 SPARKD_HFAST_MIN_T_Q8 (default 65: at T = 64 the int8
 * product measured as fast), others cuda_hfast_min_t(). */
int cuda_hfast_min_t_type(uint32_t type);
void cuda_hfast_set(int min_t);
int cuda_hfast_check(const cuda_weight *w, void *stream, err *e);

/* The small-batch f16 product (gemms.cu): cuda_matmul takes it for exact = 0, 2 <= T <=
 * cuda_gemms_max_t() (SPARKD_HSMALL_MAX_T, default 32; 0 when SPARKD_HSMALL=0), Q8_0 / Q4_K /
 * Q6_K weights and an input with the CUDA_MMIN_F16 form. cuda_gemms_set (tests, benches): on
 * 1/0 or -1 = as the environment says, max_t likewise. cuda_gemms_launches: launches so far. */
int cuda_gemms_max_t(void);
void cuda_gemms_set(int on, int max_t);
long cuda_gemms_launches(void);
int cuda_gemms_wants(const cuda_mm_args *a, const cuda_mmin *x);
int cuda_gemms_launch(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e);
/* Its K split for T tokens, K, `tiles` CTAs (of 128 rows; 256 at T > 16 with SPARKD_HSMALL_WIDE
 * on), ws_rows rows and wbytes of weights in all, work_bytes of partials room: splits and
 * 128-element units per CTA; 0 when none fits. */
int cuda_gemms_plan(int T, int K, int tiles, int ws_rows, uint64_t wbytes, uint64_t work_bytes, int *ks, int *upc);

/* ---------------------------------------------------------------- layer ops */

/* The residual stage between sub-blocks, one row r = rows ? rows[i] : i per output i < n:
 *   if o:      o' = o[r] + o_bias (o_bias optional, (dim) f32)
 *              x[r] += post_w ? rmsnorm(o') * post_w : o'            (x updated in place)
 *   if out:    out row i = mm input of rmsnorm(x[r]) * norm_w
 *   if xout:   xout row i = rmsnorm(x[r]) * norm_w (plain f32, (n, dim))
 * rmsnorm(v) = v * (1 / sqrt(mean(v^2) + eps)), multiplied in that order (as the CPU).
 *   x (.., dim) f32 residual; o (.., dim) f32 or NULL; post_w, norm_w (dim) f32 device. */
typedef struct cuda_resid_args {
    float *x;
    const float *o;
    const float *o_bias;
    const float *post_w;
    const float *norm_w;
    const int32_t *rows; /* device (n) or NULL */
    int n, dim;
    float eps;
    cuda_mmin *out;      /* forms given by out->forms; out->T is set to n */
    float *xout;
    cuda_part o_part;    /* o as deferred split-K partials (zero: o itself) */
} cuda_resid_args;
int cuda_resid_norm(const cuda_resid_args *a, void *stream, err *e);

/* Tests and benches: 1 = the first generation of the element-wise kernels (resid_norm,
 * act_mm, mmin_prepare: one CTA per row, two passes; qkv_rope_store; cuda_sample: one CTA
 * per row over the whole vocabulary) and every input form the layer's weights may read
 * (the engine); 0 (default) = the second generation (layer.cu: vectorized rows and 2-D
 * grids; sample.cu: first passes over many CTAs, sampling over the candidate list) and
 * only the forms the products of this T and precision read. SPARKD_ELT_OLD=1 sets 1 at
 * the first call. */
void cuda_elt_old_set(int on);
int cuda_elt_old(void);

enum { CUDA_ACT_SILU = 0, CUDA_ACT_GELU_TANH = 1 }; /* = model_act's first two */
/* h = act(gate) * up (T, ffn) f32 rows (stride ld) -> out (mm input of h, out->T = T). */
int cuda_act_mm(const float *gate, const float *up, int ld, int T, int ffn, int act,
                cuda_mmin *out, void *stream, err *e);
/* The same with gate / up given as deferred partials (cuda_part; p NULL: plain gate / up). */
int cuda_act_mm_part(const float *gate, const float *up, int ld, int T, int ffn, int act, const cuda_part *pg,
                     const cuda_part *pu, cuda_mmin *out, void *stream, err *e);

/* KV cache (one layer): K and V pools of n_blocks blocks; block b, kv head h holds
 * kv_block positions of head_dim elements contiguous:
 *   elem(b, h, o, d) at ((b * n_kv + h) * kv_block + o) * head_dim + d
 * of kv_type (CUDA_KV_*); Q8/FP8 rows carry one f32 scale at
 *   scale[(b * n_kv + h) * kv_block + o]   (amax / 127 resp. amax / 448). */
enum { CUDA_KV_F32 = 0, CUDA_KV_F16, CUDA_KV_Q8, CUDA_KV_BF16, CUDA_KV_FP8 }; /* = engine_kv_type */
typedef struct cuda_kv_layer {
    void *k, *v;
    float *k_scale, *v_scale; /* Q8/FP8 only */
} cuda_kv_layer;

/* Per-token bookkeeping of one forward call (device arrays, T entries):
 *   pos[t]    position of token t in its sequence
 *   seq[t]    which sequence (row of the block table)
 * block_tables (n_seq, max_blocks) int32: block of positions [i*kv_block, (i+1)*kv_block). */
typedef struct cuda_tokens {
    const int32_t *pos;
    const int32_t *seq;
    const int32_t *block_tables;
    int max_blocks;
    int T;
} cuda_tokens;

/* Per token t: q (T, n_head*hd), k, v (T, n_kv*hd) f32 rows with strides ldq/ldk/ldv:
 *   + bias (bq/bk/bv, optional); q, k: per-head RMSNorm with q_norm/k_norm (optional, hd
 *   f32); RoPE of the first n_rot dims with inv_freq (n_rot/2 f32) at pos[t] (angle
 *   pos * inv_freq[i], cos/sin times mscale); neox = rotate halves (i, i + n_rot/2), else
 *   adjacent pairs (2i, 2i+1); then q is written back in place and k, v are stored in the
 *   cache at their position through the block table (converted to kv_type). */
typedef struct cuda_qkv_args {
    float *q, *k, *v;
    int ldq, ldk, ldv;
    const float *bq, *bk, *bv;
    const float *q_norm, *k_norm;
    float eps;
    const float *inv_freq;
    int n_rot, neox;
    float mscale;
    int n_head, n_kv, head_dim;
    cuda_kv_layer kv;
    int kv_type, kv_block;
    cuda_part pq, pk, pv; /* q / k / v as deferred split-K partials (zero: q / k / v) */
} cuda_qkv_args;
int cuda_qkv_rope_store(const cuda_qkv_args *a, const cuda_tokens *tk, void *stream, err *e);

/* logits (n, n_vocab) f32 with row stride ld: l = cap * tanh(l / cap). */
int cuda_softcap(float *logits, int ld, int n, int n_vocab, float cap, void *stream, err *e);

/* ---------------------------------------------------------------- attention */

/* A tile of query tokens of one sequence: tokens [t0, t0 + n) of the forward batch, at
 * consecutive positions pos0.., n <= cuda_attn_tile_tokens(n_head / n_kv). */
typedef struct cuda_attn_tile {
    int32_t seq, t0, n, pos0;
} cuda_attn_tile;
int cuda_attn_tile_tokens(int group);

typedef struct cuda_attn_args {
    const float *q;   /* (T, n_head*hd) f32, RoPE applied, row stride ldq */
    float *out;       /* (T, n_head*hd) f32, row stride ldo */
    int ldq, ldo;
    cuda_kv_layer kv;
    int kv_type, kv_block;
    const int32_t *block_tables; /* (n_seq, max_blocks) */
    int max_blocks;
    const cuda_attn_tile *tiles; /* device (n_tiles) */
    int n_tiles;
    int n_head, n_kv, head_dim; /* head_dim % 4 == 0, <= 256 */
    float scale;      /* multiplier of q.k */
    int window;       /* 0 = full causal; else positions (pos - window, pos] */
    const float *sinks; /* (n_head) f32 or NULL: extra softmax term exp(sink), no value */
    int n_split;      /* >= 1: CTAs over each tile's positions (long contexts) */
    float *work;      /* cuda_attn_work_bytes(n_tiles, ...) bytes when n_split > 1 (or
                       * cuda_attn_work_bytes_tokens(T, ...) for tokens [0, T) of the batch) */
    int out_p64;      /* 1: out rows are written in P64 order (the f32 mm input of the next
                       * product, cuda_mmin.xp with K = n_head * hd, ldo = K) */
    /* Decode plan (optional; every tile one token, f16 KV, cuda_attn_dec_ok): when set,
     * the tensor-core decode kernel runs the plan's items instead of n_split, writing
     * partials to work (cuda_attn_dec_work_bytes) that a log-sum-exp combine merges. */
    const struct cuda_attn_item *plan; /* device (plan_items) */
    const int32_t *plan_nslot;         /* device (T): partial slots of token t */
    int plan_items, plan_nsl;          /* grid.x of the kernel; slots per token */
    /* Prefill on the tensor cores (no plan; cuda_attn_pf_ok): tiles of up to
     * cuda_attn_pf_tokens(n_head / n_kv) tokens, any n (prompt chunks, several tokens of a
     * sequence, single tokens); n_split and work as for the kernel above. */
    int prefill;
    int pf_fast;      /* prefill and the decode plan (attn_dec2_kernel): Q and P as one f16 each
                       * (precision fast), else hi + lo halves */
    /* Round 8 fz: with the decode plan, out_q8 set (and out_p64 0): the combine writes the
     * output as the int8 form of a cuda_mmin (q8 (T, K) P64, q8d / q8s (T, K / 32); K = ldo =
     * n_head * hd; as cuda_mmin_prepare would from out) instead of out's f32 rows. */
    int8_t *out_q8;
    float *out_q8d, *out_q8s;
} cuda_attn_args;

/* One work item of the decode plan: positions [p0, p1) of one KV head (every head runs every
 * item: the round-3 kernel item blockIdx.x x head blockIdx.y, the current one item-major,
 * CTA i = item i / n_kv x head i % n_kv) for the n member tokens (tile indices; n > 1 only
 * when they share the physical blocks holding [p0, p1): the shared-prefix "cascade" pass),
 * part `part` of `nparts` of that range after the layer's window clips it. Member m's
 * partial goes to slot[m] of its token. n = 0: idle. */
#define CUDA_ATTN_MEMBERS 8
typedef struct cuda_attn_item {
    int32_t n, p0, p1, part, nparts;
    int16_t tile[CUDA_ATTN_MEMBERS], slot[CUDA_ATTN_MEMBERS];
} cuda_attn_item;
/* Whether the decode kernel takes this shape (kv_type f16, head_dim 64 or 128, group <= 32). */
int cuda_attn_dec_ok(int n_head, int n_kv, int head_dim, int kv_type);
/* Items of the plan grid for a decode batch of n tokens (fixed per n: graphs replay it). */
int cuda_attn_dec_items(int n, int n_kv, int sms);
/* The same for precision fast (fast = 1: as above, the most items) or exact (0: SPARKD_A8's kernel runs at fast only). */
int cuda_attn_dec_items_p(int n, int n_kv, int sms, int fast);
/* The decode kernel's A/B (benches): old = 1 the round-3 kernel and plan, 0 the pipelined one,
 * -1 unchanged; waves >= 1: resident-CTA waves the plan's grid is sized to. Defaults from
 * SPARKD_ATTN_DEC_OLD / SPARKD_ATTN_DEC_WAVES. Call before the plans it should change. */
void cuda_attn_dec_tune(int old, int waves);
/* The round-6 decode kernel (attn_dec3_kernel): mode 1 on (default), 0 attn_dec2_kernel
 * (SPARKD_ATT8=0), 2 the selftest's control (a wrong result), 3 on with warp pairs for items of
 * more than 16 rows, 4 on without them (1: pairs unless SPARKD_ATT8_PAIR=0); -1 unchanged.
 * Returns the old mode. */
int cuda_attn_dec_att8(int mode);
/* Rows of a shared-prefix (cascade) item at most (0: the default, 32; SPARKD_ATT8_ROWS); returns
 * the old setting. */
int cuda_attn_dec_rows(int rows);
/* Partial slots per token for batches of up to max_seqs tokens. */
int cuda_attn_dec_nsl(int max_seqs);
uint64_t cuda_attn_dec_work_bytes(int T, int n_head, int head_dim, int nsl);
/* Host: fills items[0, n_items) (idle ones n = 0) and nslot[0, n_tiles) for decode tiles
 * (host copies, n == 1 each, t0 = token index = tile index) with block tables bt (n_seq,
 * max_blocks): groups of tiles whose tables start with the same block ids get one pass over
 * that shared run (cascade), every tile one over its own rest; ranges split over the items
 * in proportion to their length (current plan: sorted longest first). No allocation.
 * Returns the items used. */
int cuda_attn_dec_plan(const cuda_attn_tile *tiles, int n_tiles, const int32_t *bt, int max_blocks, int kv_block,
                       int group, int n_items, int nsl, cuda_attn_item *items, int32_t *nslot);
/* Whether the prefill kernel takes this shape (kv_type f16, head_dim 64 or 128, group <= 64),
 * and the query tokens of its tiles (64 rows = tokens x group). */
int cuda_attn_pf_ok(int n_head, int n_kv, int head_dim, int kv_type);
int cuda_attn_pf_tokens(int group);
uint64_t cuda_attn_work_bytes(int n_tiles, int n_head, int n_kv, int head_dim, int n_split);
uint64_t cuda_attn_work_bytes_tokens(int T, int n_head, int head_dim, int n_split);
int cuda_attention(const cuda_attn_args *a, void *stream, err *e);

/* ---------------------------------------------------------------- sampling */

#define CUDA_SAMPLE_TOP 20
/* One row to sample. Semantics are appliance/serve/sampler.c's: logit_bias added to the
 * raw logits, NaN -> -inf, grammar mask (-inf where the bit is clear), repetition penalty
 * (l > 0 ? l / rp : l * rp) and frequency/presence penalties (l -= f * count + p) for
 * tokens with count > 0; greedy (first maximum) when temperature <= 0; else top-k, then
 * probabilities exp((l - max) / temperature), top-p (the shortest prefix of the
 * descending order whose mass reaches top_p of the top-k set), min-p (keep p >= min_p *
 * p_max), and the draw: the first token whose running mass exceeds u * kept mass, in
 * descending order of logit (ties: lower id first). Logprobs are log-softmax of the raw
 * logits (before bias, penalties, mask and temperature). */
typedef struct cuda_sample_row {
    int32_t logits_row;     /* row of the logits matrix */
    int32_t slot;           /* penalty history row of counts */
    float temperature, top_p, min_p, rep_pen, freq_pen, pres_pen;
    int32_t top_k;
    float u;                /* uniform [0, 1) */
    int32_t mask_off;       /* word offset of this row's mask in masks, -1 = none */
    int32_t bias_off, n_bias; /* entries in bias_ids/bias_vals */
    int32_t n_top;          /* 0..CUDA_SAMPLE_TOP alternatives */
} cuda_sample_row;

typedef struct cuda_sample_out {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_ids[CUDA_SAMPLE_TOP];
    float top_logprobs[CUDA_SAMPLE_TOP];
} cuda_sample_out;

typedef struct cuda_sample_args {
    const float *logits;       /* (.., n_vocab) f32, row stride ld */
    int ld, n_vocab;
    const cuda_sample_row *rows; /* device (n) */
    int n;
    const uint32_t *counts;    /* (slots, n_vocab) token occurrence counts (penalties) */
    const uint32_t *masks;     /* words, see mask_off */
    const int32_t *bias_ids;
    const float *bias_vals;
    float *work;               /* cuda_sample_work_bytes(n, n_vocab) */
    cuda_sample_out *out;      /* device (n) */
} cuda_sample_args;
uint64_t cuda_sample_work_bytes(int n, int n_vocab);
int cuda_sample(const cuda_sample_args *a, void *stream, err *e);
/* counts[slot[i]][tok[i]] += 1 for i < n (accepting tokens into the penalty history). */
int cuda_counts_add(uint32_t *counts, int n_vocab, const int32_t *slot, const int32_t *tok, int n,
                    void *stream, err *e);

/* ---------------------------------------------------------------- selftest */

/* Runs every kernel against CPU references on fresh random inputs (odd shapes, outputs
 * poisoned before each run) and prints a table to f (a FILE *): kernel, shape, max error,
 * tolerance, time. quick = 1 skips the largest shapes. Returns the number of failures, or
 * -1 with e set when no usable GPU was found. */
int cuda_selftest(void *f, int quick, err *e);
/* Product throughput table (GEMV and tensor-core paths over formats and token counts,
 * weights rotated through copies well beyond the L2) after a read-bandwidth probe. */
int cuda_kbench(void *f, err *e);
/* The CUDA engine against the CPU engine on one model file (modelcheck.cu): first-step
 * logits, greedy and sampled continuations, batched vs solo. kv_type: engine_kv_type.
 * Returns the number of failed checks, or -1 with e set. */
int cuda_model_check(void *f, const char *path, int kv_type, err *e);

#ifdef __cplusplus
}
#endif

#endif
