// engine.cu — the CUDA backend (engine_cuda_ops, engine.h): plan, create (weights
// streamed through a bounded pinned staging buffer and repacked on the device), forward
// over the paged KV cache by layer kinds, sampling on the device.
//
// Per forward call (T = new tokens of all sequences):
//   host: token ids, positions, entry of each token, block tables, attention tiles and
//         the rows whose logits are wanted -> one pinned buffer -> one copy to the device
//   x = embed(tokens) * embd_scale;  in = mm input of rmsnorm(x) * attn_norm[0]
//   per layer (attention mixer, dense FFN; the only kinds the CPU runs today):
//     q,k,v = in Wq^T, Wk^T, Wv^T          (one launch when the three share a type)
//     bias, QK-norm, RoPE; K/V -> cache     (cuda_qkv_rope_store)
//     att = attention over the blocks       (cuda_attention)
//     o = mm(att) Wo^T
//     x += post(o + bo); in = mm input of rmsnorm(x) * ffn_norm     (cuda_resid_norm)
//     gate, up = in Wg^T, Wu^T; in2 = mm input of act(gate) * up
//     o = in2 Wd^T
//     x += post(o); in = mm input of rmsnorm(x) * next attn_norm (or, after the last
//     layer, only the rows whose logits are wanted, with output_norm)
//   logits = in Wout^T (+ soft-cap)
// Decode steps (every entry one token, all wanting logits) are captured once per batch
// size into a CUDA graph and replayed: only the metadata buffer changes between steps.
//
// Memory: planned once (cuda_layout) and allocated in create: device weights (the P64
// layout of cuda_kern.h, plus f32 norm vectors), the KV pool, activations, logits,
// sampling buffers, and a pinned host staging buffer. On an integrated GPU (GB10) what is
// free comes from /proc/meminfo (MemAvailable + SwapFree), elsewhere from cudaMemGetInfo.
#include "cuda.h"
#include "cuda_kern.h"
#include "cuda_moe.h"
#include "dq.h"

extern "C" uint64_t cuda_fc_img_bytes(int T, int K);      // gemm.cu (round 11 fc): the x images of T tokens, K wide
extern "C" void cuda_fc_provide(void *buf, uint64_t bytes); // gemm.cu: this device's planned image buffer
extern "C" void cuda_fc_withdraw(const void *buf);          // gemm.cu: ... withdrawn if still this one

#include <cuda_fp8.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kern_util.cuh"
#include "tp.h"

extern "C" {
#include "engine.h"
#include "quant.h"
#include "shard.h"
#include "sysmem.h"
}

#define CU_KV_BLOCK 16
#define CU_STAGE (64ull << 20)   // pinned staging for the weight upload, two halves
#define CU_MAX_GRAPHS 64
#define CU_ATT_SPLIT_MAX 32   // CTAs over the context of one decode token and KV head
#define CU_ATT_SPLIT_WIDE 4   // ... when the batch alone fills the GPU
#define CU_SPLITK (32ull << 20) // room for split-K partials (cuda_mm_args.work)

namespace {

struct layer_w {
    cuda_weight wq, wk, wv, wo, wg, wu, wd;
    float *attn_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
    float *q_norm, *k_norm, *bq, *bk, *bv, *bo, *sinks;
    // MODEL_FFN_MOE: router (n_expert, dim) F32; stacked experts (n_expert * rows, cols)
    cuda_weight router, eg, eu, ed;
    float *router_b, *gate_b, *up_b, *down_b; // (n_expert), (n_expert, moe_f) x 2, (n_expert, dim)
    int moe_f; // rows of one expert's gate/up on the device: its width rounded up to 64 (moe_width)
};

// Everything create allocates, computed from the model and the options alone.
struct cuda_layout {
    int T, S, V, dim, q_dim, kv_dim, ffn, n_kv_layers, max_blocks, n_blocks, max_tiles;
    int sms;             // multiprocessors (split heuristics)
    int split_tokens;    // batches of at most this many tokens may split attention CU_ATT_SPLIT_MAX ways
    uint64_t attn_work;  // bytes of attention partials
    int dec, dec_items, dec_nsl; // decode attention from a plan (attn.cu, cuda_attn_dec_plan): on, grid items, slots per token
    int pf;              // steps without a plan: the tensor-core prefill kernel (attn.cu, cuda_attn_pf_ok), tiles of cuda_attn_pf_tokens
    uint64_t weights, kv, work, staging;
    uint64_t kv_layer_elems; // elements of one layer's K (= V) pool
    uint64_t meta_bytes;
    int forms_dim, forms_q, forms_ffn; // union of the input forms the products may need
    int moe_E, moe_k, moe_ffn;         // largest MoE layer (0: none)
    uint64_t moe_work;                 // cuda_moe_work_bytes of it at T tokens
    uint64_t fc_img;                   // gemm.cu's x images of the prompt products (SPARKD_FC=4; 0: none)
};

struct graph_entry {
    int B;
    int dq; // (engine.dq_short at capture: batch 1 with the dq chain, dq.cu)
    cudaGraphExec_t exec;
};

} // namespace

struct engine {
    const model *m;
    engine_opts opt;
    cuda_layout lay;
    int dev;
    int fault;
    cudaStream_t st;

    // device memory: one allocation for the weights, one for the KV pool, one for work
    uint8_t *dweights, *dkv, *dwork;
    uint64_t used_weights, used_kv, used_work;
    layer_w *L;        // host array (n_layer)
    cuda_weight embd, out;
    float *out_norm;
    float *inv_freq;   // (n_rope, head_dim / 2)
    int32_t *kv_of_layer; // host (n_layer)

    // activations
    float *x, *q, *k, *v, *att, *o, *gate, *up; // (T, ..) rows
    cuda_mmin in_dim, in_q, in_ffn, in_out;
    float *logits;     // (S, V)
    float *attn_work;
    float *moe_logits; // (T, moe_E) router logits
    void *moe_work;    // (lay.moe_work bytes) cuda_moe_ffn scratch
    int moe_native;    // SPARKD_MXFP4_NATIVE=1 on an sm_121 GPU: block-scaled MXFP4 GEMM
    // samplers
    uint32_t *counts;  // (S, V)
    float *smp_work;
    cuda_sample_row *d_rows;
    cuda_sample_out *d_sout;
    uint32_t *d_masks;
    int32_t *d_bias_ids;
    float *d_bias_vals;
    int32_t *d_acc;    // (2, n) pending accepts: slots then tokens

    // per-step metadata (device + pinned host mirror, same layout)
    uint8_t *d_meta, *h_meta;
    uint8_t *d_stage;  // (CU_STAGE) raw GGUF rows on their way to the repack
    float *splitk;     // (CU_SPLITK bytes) split-K partials
    void *fc_img;      // (lay.fc_img bytes) gemm.cu's x images, registered with cuda_fc_provide; NULL: none
    bool fz_run;       // round 8 fz: run_layers at T >= 2 defers the layer products' split-K reduces
    cuda_part fz_pp[3]; // (mm: the last deferred product's partials, output j's in [j])
    int32_t *d_tok, *d_pos, *d_seq, *d_bt, *d_rows_out;
    cuda_attn_tile *d_tiles;
    int n_tiles, n_out, n_split;
    cuda_attn_item *d_items; // (lay.dec_items) decode plan of this step
    int32_t *d_nslot;        // (S) its partial slots per token
    int dec_items;           // > 0: this step's attention runs the plan over this many items

    // host state
    uint8_t *h_stage;   // pinned: weight staging, then sampling inputs/outputs
    float *h_logits;    // (V) a row handed out by ops->logits
    int n_last;
    int entry_slot[1024];
    int entry_row[1024]; // logits row of entry i, -1 none
    int32_t *acc_slot, *acc_tok;
    int n_acc, acc_cap;
    graph_entry graphs[CU_MAX_GRAPHS];
    int n_graphs;
    int dq_short;     // this step: one token at <= cuda_dq_max_ctx() positions (dq.cu's chain; graphs keyed by it)
    int use_graphs;
    int fast_mm;      // [engine] precision = fast (or SPARKD_MM_FAST): products read one f16 input
    int int8_kinds;   // at fast: the ENG_MM_* product kinds that read int8 inputs (fast_int8_kinds)
    int release_host; // integrated GPU: give back the host pages of uploaded weights
    int sms;          // multiprocessors (grid-size heuristics)
    // tensor parallel (kernels/tp.h): m is this rank's shard view; NULL = the whole model
    tp_ctx *tp;
};

namespace {

uint64_t a256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

int is_kquant(uint32_t t) { return t == QUANT_Q4_K || t == QUANT_Q5_K || t == QUANT_Q6_K; }

// A matrix the products use: supported type, cols a multiple of 128 (256 for K-quants).
int check_matrix(const model_tensor *t, err *e) {
    if (!t) return 0;
    const quant_traits *qt = quant_traits_of(t->dtype);
    if (!cuda_weight_type_ok(t->dtype))
        return err_set(e, ERR_UNSUPPORTED, "tensor '%s' has type %s, not supported by the CUDA engine", t->name,
                       qt ? qt->name : "unknown");
    if (t->n_dims != 2 || !cuda_weight_bytes(t->dtype, t->ne[1], t->ne[0]))
        return err_set(e, ERR_UNSUPPORTED, "tensor '%s': rows of %lld elements (the CUDA engine needs a multiple of %d)",
                       t->name, (long long)t->ne[0], is_kquant(t->dtype) ? 256 : 128);
    return 0;
}

uint64_t mat_bytes(const model_tensor *t) { return t ? a256(cuda_weight_bytes(t->dtype, t->ne[1], t->ne[0])) : 0; }
uint64_t vec_bytes(const model_tensor *t) { return t ? a256((uint64_t)t->ne[0] * (t->n_dims > 1 ? t->ne[1] : 1) * 4) : 0; }

// Layout bits above the CUDA_MMIN_* ones (forms_at strips them): something reads the XP
// form at any T (an F32 weight's GEMV, the MoE kernels); some weight takes the f16/bf16 tensor-core form even
// at precision fast (mmq does not compute with its type).
#define ENG_FORM_XP 0x100
#define ENG_FORM_TC 0x200
#define ENG_FORM_Q8_0 0x400 // a Q8_0 weight reads it (hfast leaves Q8_0 below its own threshold to mmq)
#define ENG_FORM_NQ8_0 0x800 // a weight of another type (or the MoE experts) reads it
#define ENG_FORMS_MASK 0xff

// Product kinds, for precision fast's int8 choice (fast_int8_kinds): which products read
// their input quantized to int8 per block of 32 (the dp4a GEMV at T == 1, mmq at T > 1).
#define ENG_MM_QKV 1
#define ENG_MM_O 2
#define ENG_MM_FFN 4   // gate and up
#define ENG_MM_DOWN 8
#define ENG_MM_HEAD 16
#define ENG_MM_ALL 31
// "auto": int8 inputs only for models of at least this hidden size. On gemma-3-270m
// (dim 640) int8 inputs in any one product kind move the logits by 0.7-1.6e-2 (rel L2;
// 5.2e-2 all together, over the engine check's 5e-2 bound) and the head's alone turns the
// greedy path off HF transformers' in 3 of 12 golden cases (tests/tools/fast_sim.py,
// kernels/PERF.md "Round 5, helper fastacc"). The threshold rests on that one real model
// (the synthetic Qwen3-8B's random weights say nothing about a trained one's sensitivity).
#define ENG_FAST_INT8_MIN_DIM 2048

// The product kinds that read int8 inputs at precision fast: SPARKD_FAST_ALL=1 every kind
// (round 4's fast); SPARKD_FAST_INT8 = all | none | auto | a list of qkv,o,ffn,down,head;
// default auto (all where dim >= ENG_FAST_INT8_MIN_DIM, else none). A kind left out
// computes as at precision exact (mm_exact).
int fast_int8_kinds(const model *m) {
    const char *all = getenv("SPARKD_FAST_ALL");
    if (all && atoi(all)) return ENG_MM_ALL;
    const char *s = getenv("SPARKD_FAST_INT8");
    int k = m->hp.dim >= ENG_FAST_INT8_MIN_DIM ? ENG_MM_ALL : 0;
    if (s && *s && strcmp(s, "auto")) {
        k = 0;
        if (!strcmp(s, "all")) k = ENG_MM_ALL;
        static const struct { const char *name; int bit; } names[] = {
            {"qkv", ENG_MM_QKV}, {"o", ENG_MM_O}, {"ffn", ENG_MM_FFN}, {"down", ENG_MM_DOWN}, {"head", ENG_MM_HEAD}};
        for (const char *p = s; *p;) {
            const size_t n = strcspn(p, ",");
            for (size_t i = 0; i < sizeof names / sizeof *names; i++)
                if (strlen(names[i].name) == n && !strncmp(p, names[i].name, n)) k |= names[i].bit;
            p += n + (p[n] == ',');
        }
    }
    if (s || getenv("SPARKD_LOAD_STATS"))
        fprintf(stderr, "precision fast: int8 inputs for%s%s%s%s%s%s (SPARKD_FAST_INT8=%s, dim %d)\n",
                k & ENG_MM_QKV ? " qkv" : "", k & ENG_MM_O ? " o" : "", k & ENG_MM_FFN ? " ffn" : "",
                k & ENG_MM_DOWN ? " down" : "", k & ENG_MM_HEAD ? " head" : "", k ? "" : " no product",
                s ? s : "auto", m->hp.dim);
    return k;
}

int forms_for(const model_tensor *t) {
    if (!t) return 0;
    // + the int8 rows of the mmq product (precision fast, T > 1; forms_at drops them when exact)
    return cuda_mmin_forms_for(t->dtype, 1) | cuda_mmin_forms_for(t->dtype, 2) |
           (cuda_mmq_type_ok(t->dtype) ? CUDA_MMIN_Q8 : t->dtype == QUANT_F32 ? ENG_FORM_XP : ENG_FORM_TC) |
           (t->dtype == QUANT_Q8_0 ? ENG_FORM_Q8_0 : ENG_FORM_NQ8_0);
}

// ---- mixture of experts (MODEL_FFN_MOE, kernels/moe.cu): layout, upload, forward ----

// A stacked expert tensor (ne = [cols, rows, n_expert]) as one matrix of rows * n_expert
// rows over the same bytes (expert e's rows start at e * rows).
model_tensor expert_rows(const model_tensor *t) {
    model_tensor v = *t;
    v.n_dims = 2;
    v.ne[1] = t->ne[1] * (t->n_dims > 2 ? t->ne[2] : 1);
    v.ne[2] = 1;
    return v;
}

// The experts' width on the device: the model's (or a tensor-parallel shard's: F/N,
// e.g. 1440 for gpt-oss-20b over 2 ranks) rounded up to the kernels' multiple of 64. The
// padding is zero rows of gate/up (and zero biases: act(0, 0) = 0 for every activation)
// and zero blocks of down's columns, so it adds nothing to the sum.
int moe_width(const model_moe *M) { return (M->ffn_dim + 63) / 64 * 64; }

// A stacked expert tensor's device shape: rows * n_expert rows of cols, the expert width
// padded (gate/up: rows; down: cols).
model_tensor expert_padded(const model_tensor *t, int f, int fp, int down) {
    model_tensor v = expert_rows(t);
    if (down) v.ne[0] = fp;
    else v.ne[1] = (int64_t)fp * (t->n_dims > 2 ? t->ne[2] : 1);
    (void)f;
    return v;
}

uint64_t expert_bias_bytes(const model_tensor *t, int fp) {
    return t ? a256((uint64_t)fp * (t->n_dims > 1 ? t->ne[1] : 1) * 4) : 0;
}

int moe_layout(const model_layer *L, cuda_layout *l, err *e) {
    const model_moe *M = &L->moe;
    const int fp = moe_width(M);
    int rc;
    if (M->shared.w_gate)
        return err_set(e, ERR_UNSUPPORTED, "a shared expert is not supported by the CUDA engine yet");
    if (M->n_expert > CUDA_MOE_MAX_EXPERTS || M->n_used > CUDA_MOE_MAX_USED || M->ffn_dim < 1)
        return err_set(e, ERR_UNSUPPORTED, "%d experts (top %d) of width %d: the CUDA engine takes up to %d (top %d)",
                       M->n_expert, M->n_used, M->ffn_dim, CUDA_MOE_MAX_EXPERTS, CUDA_MOE_MAX_USED);
    if (fp != M->ffn_dim) { // padded: the down matrix gains whole zero blocks only
        const quant_traits *q = quant_traits_of(M->down_exps->dtype);
        const int b = q ? q->block_elems : 0;
        if (!b || M->ffn_dim % b || (fp - M->ffn_dim) % b)
            return err_set(e, ERR_UNSUPPORTED, "experts of width %d: the CUDA engine pads them to %d, which blocks of %d "
                                               "of '%s' do not allow", M->ffn_dim, fp, b, M->down_exps->name);
    }
    if ((rc = check_matrix(M->router, e))) return rc;
    const model_tensor *ex[3] = {M->gate_exps, M->up_exps, M->down_exps};
    for (int i = 0; i < 3; i++) {
        const model_tensor v = expert_padded(ex[i], M->ffn_dim, fp, i == 2);
        if (!cuda_moe_type_ok(ex[i]->dtype))
            return err_set(e, ERR_UNSUPPORTED, "tensor '%s': experts of type %u have no CUDA MoE kernel", ex[i]->name,
                           ex[i]->dtype);
        if ((rc = check_matrix(&v, e))) return rc;
        l->weights += mat_bytes(&v);
    }
    if (M->gate_exps->dtype != M->up_exps->dtype)
        return err_set(e, ERR_UNSUPPORTED, "experts' gate and up tensors have different types");
    l->weights += mat_bytes(M->router) + vec_bytes(M->router_b) + expert_bias_bytes(M->gate_b, fp) +
                  expert_bias_bytes(M->up_b, fp) + vec_bytes(M->down_b);
    l->forms_dim |= forms_for(M->router) | CUDA_MMIN_F16 | ENG_FORM_TC | ENG_FORM_XP | ENG_FORM_NQ8_0; // router: f32 rows; experts: f16 hi/lo (+ xp, moe.cu)
    if (M->n_expert > l->moe_E) l->moe_E = M->n_expert;
    if (M->n_used > l->moe_k) l->moe_k = M->n_used;
    if (fp > l->moe_ffn) l->moe_ffn = fp;
    return 0;
}

int layout_of(const model *m, const engine_opts *o, cuda_layout *l, err *e) {
    const model_hparams *hp = &m->hp;
    memset(l, 0, sizeof *l);
    if (o->n_ctx < 1 || o->max_seqs < 1 || o->max_tokens < 1 || o->n_kv_blocks < 0 || o->max_seqs > 1024)
        return err_set(e, ERR_INVALID, "engine options out of range (ctx %d, seqs %d (max 1024), batch %d)", o->n_ctx,
                       o->max_seqs, o->max_tokens);
    if (o->kv_type < 0 || o->kv_type >= ENGINE_KV_COUNT)
        return err_set(e, ERR_INVALID, "kv_type %d", (int)o->kv_type);
    if (hp->head_dim % 8 || hp->head_dim > 256 || hp->n_head % hp->n_head_kv)
        return err_set(e, ERR_UNSUPPORTED, "head_dim %d (the CUDA attention needs a multiple of 8, at most 256)",
                       hp->head_dim);
    if (hp->act != MODEL_ACT_SILU && hp->act != MODEL_ACT_GELU_TANH && hp->act != MODEL_ACT_SWIGLU_OAI)
        return err_set(e, ERR_UNSUPPORTED, "FFN activation %d is not supported by the CUDA engine yet", (int)hp->act);
    if (hp->dim % 64 || hp->ffn_dim % 64 || (hp->n_head * hp->head_dim) % 64)
        return err_set(e, ERR_UNSUPPORTED, "widths %d/%d/%d: the CUDA engine needs multiples of 64", hp->dim,
                       hp->ffn_dim, hp->n_head * hp->head_dim);
    for (int r = 0; r < m->n_rope; r++)
        if (m->rope[r].n_rot > hp->head_dim || (m->rope[r].n_rot & 1))
            return err_set(e, ERR_UNSUPPORTED, "rope %d rotates %d of %d dims", r, m->rope[r].n_rot, hp->head_dim);
    int rc;
    if ((rc = check_matrix(m->token_embd, e)) || (rc = check_matrix(m->output, e))) return rc;
    l->weights = mat_bytes(m->token_embd) + (m->output != m->token_embd ? mat_bytes(m->output) : 0) +
                 vec_bytes(m->output_norm);
    l->forms_dim = l->forms_q = l->forms_ffn = CUDA_MMIN_XP;
    l->forms_dim |= forms_for(m->output);
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        if (L->mixer != MODEL_MIXER_ATTENTION)
            return err_set(e, ERR_UNSUPPORTED, "layer %d: mixer kind %d is not supported by the CUDA engine", il,
                           (int)L->mixer);
        if (L->ffn == MODEL_FFN_MOE) {
            if ((rc = moe_layout(L, l, e))) return rc;
        } else if (L->ffn != MODEL_FFN_DENSE || hp->act == MODEL_ACT_SWIGLU_OAI) {
            return err_set(e, ERR_UNSUPPORTED, "layer %d: FFN kind %d with activation %d is not supported by the CUDA "
                                               "engine", il, (int)L->ffn, (int)hp->act);
        }
        const model_attention *A = &L->attn;
        const model_tensor *mats[7] = {A->wq, A->wk, A->wv, A->wo, L->dense.w_gate, L->dense.w_up, L->dense.w_down};
        for (int i = 0; i < 7; i++) {
            if ((rc = check_matrix(mats[i], e))) return rc;
            l->weights += mat_bytes(mats[i]);
        }
        const model_tensor *vecs[11] = {L->attn_norm, L->post_attn_norm, L->ffn_norm, L->post_ffn_norm, A->q_norm,
                                        A->k_norm, A->bq, A->bk, A->bv, A->bo, A->sinks};
        for (int i = 0; i < 11; i++) l->weights += vec_bytes(vecs[i]);
        l->forms_dim |= forms_for(A->wq) | forms_for(A->wk) | forms_for(A->wv) | forms_for(L->dense.w_gate) |
                        forms_for(L->dense.w_up);
        l->forms_q |= forms_for(A->wo);
        l->forms_ffn |= forms_for(L->dense.w_down);
    }
    l->weights += a256((uint64_t)m->n_rope * (hp->head_dim / 2) * 4);
    l->T = o->max_tokens;
    l->S = o->max_seqs;
    l->V = hp->n_vocab;
    l->dim = hp->dim;
    l->q_dim = hp->n_head * hp->head_dim;
    l->kv_dim = hp->n_head_kv * hp->head_dim;
    l->ffn = hp->ffn_dim;
    l->n_kv_layers = model_n_kv_layers(m);
    l->max_blocks = (o->n_ctx + CU_KV_BLOCK - 1) / CU_KV_BLOCK;
    if ((rc = engine_kv_pool_blocks(o, CU_KV_BLOCK, &l->n_blocks, e))) return rc;
    const engine_kv_type kt = o->kv_type;
    l->kv_layer_elems = (uint64_t)l->n_blocks * CU_KV_BLOCK * l->kv_dim;
    const uint64_t scales = engine_kv_scale_bytes(kt) ? (uint64_t)l->n_blocks * CU_KV_BLOCK * hp->n_head_kv : 0;
    l->kv = (uint64_t)l->n_kv_layers * 2 * (a256(l->kv_layer_elems * engine_kv_elem_bytes(kt)) + a256(scales * 4));
    const int G = hp->n_head / hp->n_head_kv;
    l->max_tiles = l->T + l->S; // every sequence can end in a partial tile
    // attention partials (cuda_forward picks the split): CU_ATT_SPLIT_MAX ways for batches
    // whose tiles x KV heads stay under 2 x the SMs, CU_ATT_SPLIT_WIDE ways otherwise
    l->sms = 0;
    if (cudaDeviceGetAttribute(&l->sms, cudaDevAttrMultiProcessorCount, o->device) != cudaSuccess || l->sms < 1) {
        cudaGetLastError();
        l->sms = 132;
    }
    {
        const int few_tiles = 2 * l->sms / hp->n_head_kv + 1;
        const int tok = few_tiles * cuda_attn_tile_tokens(G);
        l->split_tokens = tok < l->T ? tok : l->T;
        const uint64_t a1 = cuda_attn_work_bytes_tokens(l->split_tokens, hp->n_head, hp->head_dim, CU_ATT_SPLIT_MAX);
        const uint64_t a2 = cuda_attn_work_bytes_tokens(l->T, hp->n_head, hp->head_dim, CU_ATT_SPLIT_WIDE);
        l->attn_work = a1 > a2 ? a1 : a2;
        // the tensor-core decode kernel (SPARKD_ATTN_OLD=1: the kernel above for decode too, A/B)
        l->dec = cuda_attn_dec_ok(hp->n_head, hp->n_head_kv, hp->head_dim, (int)kt) && l->S <= 1024 &&
                 !getenv("SPARKD_ATTN_OLD");
        if (l->dec) {
            l->dec_items = cuda_attn_dec_items(l->S, hp->n_head_kv, l->sms);
            l->dec_nsl = cuda_attn_dec_nsl(l->S);
            const uint64_t a3 = cuda_attn_dec_work_bytes(l->S, hp->n_head, hp->head_dim, l->dec_nsl);
            if (a3 > l->attn_work) l->attn_work = a3;
        }
        // prompt chunks (and any step without a plan) on the tensor cores
        // (SPARKD_ATTN_OLD_PREFILL=1 or SPARKD_ATTN_OLD=1: the f32 kernel, A/B)
        l->pf = cuda_attn_pf_ok(hp->n_head, hp->n_head_kv, hp->head_dim, (int)kt) && !getenv("SPARKD_ATTN_OLD") &&
                !getenv("SPARKD_ATTN_OLD_PREFILL");
    }
    const uint64_t T = (uint64_t)l->T, S = (uint64_t)l->S, V = (uint64_t)l->V;
    uint64_t w = 0;
    w += a256(T * l->dim * 4) * 2;                 // x, o
    w += a256(T * l->q_dim * 4) * 2;               // q, att
    w += a256(T * l->kv_dim * 4) * 2;              // k, v
    w += a256(T * l->ffn * 4) * 2;                 // gate, up
    w += a256(cuda_mmin_bytes(l->T, l->dim, l->forms_dim));
    w += a256(cuda_mmin_bytes(l->T, l->q_dim, l->forms_q));
    w += a256(cuda_mmin_bytes(l->T, l->ffn, l->forms_ffn));
    w += a256(cuda_mmin_bytes(l->S, l->dim, l->forms_dim));
    w += a256(S * V * 4);                          // logits
    w += a256(l->attn_work);
    w += a256(S * V * 4);                          // counts
    w += a256(cuda_sample_work_bytes(l->S, l->V));
    w += a256(S * sizeof(cuda_sample_row)) + a256(S * sizeof(cuda_sample_out));
    w += a256(S * ((V + 31) / 32) * 4);            // masks
    w += a256(S * 256 * 4) * 2;                    // logit bias (256 per row)
    w += a256(2 * S * 64 * 4);                     // pending accepts
    l->meta_bytes = a256(T * 4) * 3 + a256(S * l->max_blocks * 4) + a256(S * 4) + a256(l->max_tiles * sizeof(cuda_attn_tile));
    l->meta_bytes += a256((uint64_t)l->dec_items * sizeof(cuda_attn_item)) + a256(S * 4); // decode plan, its slot counts
    w += l->meta_bytes;
    w += CU_STAGE;                                 // device side of the weight upload
    w += CU_SPLITK;                                // split-K partials of small products
    // x images of the prompt products at precision fast (gemm.cu, SPARKD_FC=4: T rounded up to 128 tokens x the
    // widest K, f16; 0 where hfw does not run), planned here so no product allocates
    if (o->precision == ENGINE_PRECISION_FAST || getenv("SPARKD_MM_FAST") != NULL) {
        int kmax = l->dim > l->q_dim ? l->dim : l->q_dim;
        if (l->ffn > kmax) kmax = l->ffn;
        if (l->moe_ffn > kmax) kmax = l->moe_ffn;
        l->fc_img = a256(cuda_fc_img_bytes(l->T, kmax));
        w += l->fc_img;
    }
    if (l->moe_E) {
        l->moe_work = cuda_moe_work_bytes(l->T, l->dim, l->moe_ffn, l->moe_E, l->moe_k);
        w += a256(l->moe_work) + a256(T * l->moe_E * 4); // MoE scratch, router logits
    }
    l->work = w;
    l->staging = CU_STAGE;
    return 0;
}

int cu_fail(engine *g, err *e, cudaError_t rc, const char *what, int line) {
    g->fault = 1;
    return cuda_fail(e, rc, what, __FILE__, line);
}
#define G_TRY(call)                                                                        \
    do {                                                                                   \
        cudaError_t rc_ = (call);                                                          \
        if (rc_ != cudaSuccess) return cu_fail(g, e, rc_, #call, __LINE__);                \
    } while (0)
#define K_TRY(call)                                                                        \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_) { g->fault = 1; return rc_; }                                             \
    } while (0)

int cuda_plan(const model *m, const engine_opts *o, engine_plan *p, err *e) {
    memset(p, 0, sizeof *p);
    cuda_layout l;
    int rc = layout_of(m, o, &l, e);
    if (rc) return rc;
    p->weights_bytes = l.weights;
    p->kv_bytes = l.kv;
    p->work_bytes = l.work + l.staging;
    p->total_bytes = p->weights_bytes + p->kv_bytes + p->work_bytes;
    p->kv_bytes_per_token = engine_kv_bytes_per_token(m, o->kv_type);
    p->kv_block = CU_KV_BLOCK;
    p->n_kv_blocks = l.n_blocks;
    p->prefix_cache = 1;
    int integrated = 0;
    if (cudaSetDevice(o->device) != cudaSuccess ||
        cudaDeviceGetAttribute(&integrated, cudaDevAttrIntegrated, o->device) != cudaSuccess) {
        cudaGetLastError();
        return err_set(e, ERR_UNSUPPORTED, "CUDA device %d is not usable", o->device);
    }
    if (integrated) {
        // GB10: one memory; cudaMemGetInfo ignores reclaimable page cache
        if (sysmem_available(&p->available_bytes, NULL) == 0) p->available_from = "/proc/meminfo MemAvailable + SwapFree";
    } else {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
            p->available_bytes = fr;
            p->available_from = "cudaMemGetInfo";
        }
        cudaGetLastError();
    }
    if ((rc = engine_plan_check_limit(p, o, e))) return rc;
    const double MB = 1048576.0;
    // on an integrated GPU the host's copy of the weights (if the model was read into
    // memory) is already counted as used by MemAvailable
    if (p->available_bytes && p->total_bytes > p->available_bytes)
        return err_set(e, ERR_NOMEM,
                       "the GPU has %.1f MB free (%s) but weights %.1f MB + KV cache %.1f MB + buffers %.1f MB need %.1f MB",
                       p->available_bytes / MB, p->available_from, p->weights_bytes / MB, p->kv_bytes / MB,
                       p->work_bytes / MB, p->total_bytes / MB);
    return 0;
}

// ----------------------------------------------------------------------------- create

struct uploader {
    engine *g;
    uint8_t *h;          // pinned staging (CU_STAGE bytes, two halves)
    uint8_t *d_raw;      // device raw staging (two halves)
    cudaEvent_t ev[2];
    int half;
    uint64_t done, total;
    double t0;
    int progress;
    int host_src; // src points into the model's weight buffer (not a temporary)
};

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void up_progress(uploader *u, uint64_t n) {
    const uint64_t step = 1ull << 30;
    const uint64_t before = u->done / step;
    u->done += n;
    if (u->progress && u->done / step != before)
        fprintf(stderr, "\rloading weights to the GPU: %.1f / %.1f GB", u->done / 1e9, u->total / 1e9);
}

// Source bytes of a tensor: the model's host buffer (read into memory at load).
const uint8_t *src_of(const model_tensor *t) { return (const uint8_t *)t->data; }

// Copies n bytes into the next staging half (waiting until the GPU is done with it) and
// returns the device address the half's bytes will have after the async copy.
uint8_t *up_chunk(uploader *u, const uint8_t *src, uint64_t n, err *e) {
    engine *g = u->g;
    const uint64_t hb = CU_STAGE / 2;
    u->half ^= 1;
    if (cudaEventSynchronize(u->ev[u->half]) != cudaSuccess) { cu_fail(g, e, cudaGetLastError(), "staging", __LINE__); return NULL; }
    uint8_t *h = u->h + u->half * hb, *d = u->d_raw + u->half * hb;
    memcpy(h, src, n);
    if (g->release_host && u->host_src) {
        // GB10: host and device memory are one DRAM; the bytes now live in the staging
        // buffer, so the model's copy of them is returned to the system page by page
        const uintptr_t a = ((uintptr_t)src + 4095) & ~(uintptr_t)4095, b = ((uintptr_t)src + n) & ~(uintptr_t)4095;
        if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
    }
    if (cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, g->st) != cudaSuccess) {
        cu_fail(g, e, cudaGetLastError(), "cudaMemcpyAsync(weights)", __LINE__);
        return NULL;
    }
    up_progress(u, n);
    return d;
}

void up_mark(uploader *u) { cudaEventRecord(u->ev[u->half], u->g->st); }

// Tensor parallel: rows [r0, r0 + n) of a tensor of the shard view (column slices are
// gathered row by row) into the next staging half; the host copy stays (every rank
// reads only its slices of it).
uint8_t *up_rows(uploader *u, const model_tensor *t, int64_t r0, int64_t n, err *e) {
    engine *g = u->g;
    const uint64_t hb = CU_STAGE / 2;
    u->half ^= 1;
    if (cudaEventSynchronize(u->ev[u->half]) != cudaSuccess) { cu_fail(g, e, cudaGetLastError(), "staging", __LINE__); return NULL; }
    uint8_t *h = u->h + u->half * hb, *d = u->d_raw + u->half * hb;
    shard_copy_rows(tp_shard(g->tp), t, r0, n, h);
    if (cudaMemcpyAsync(d, h, (size_t)n * t->row_bytes, cudaMemcpyHostToDevice, g->st) != cudaSuccess) {
        cu_fail(g, e, cudaGetLastError(), "cudaMemcpyAsync(weights)", __LINE__);
        return NULL;
    }
    up_progress(u, (uint64_t)n * t->row_bytes);
    return d;
}

int upload_matrix(uploader *u, const model_tensor *t, cuda_weight *w, err *e) {
    engine *g = u->g;
    w->type = t->dtype;
    w->rows = t->ne[1];
    w->cols = t->ne[0];
    w->base = g->dweights + g->used_weights;
    g->used_weights += mat_bytes(t);
    const uint64_t rb = t->row_bytes, per = (CU_STAGE / 2) / rb;
    if (per < 1) return err_set(e, ERR_UNSUPPORTED, "tensor '%s': a row of %llu bytes exceeds the staging buffer", t->name,
                                (unsigned long long)rb);
    const uint8_t *src = src_of(t);
    u->host_src = 1;
    for (int64_t r0 = 0; r0 < w->rows; r0 += (int64_t)per) {
        const int64_t n = w->rows - r0 < (int64_t)per ? w->rows - r0 : (int64_t)per;
        uint8_t *d = g->tp ? up_rows(u, t, r0, n, e) : up_chunk(u, src + (uint64_t)r0 * rb, (uint64_t)n * rb, e);
        if (!d) return ERR_IO;
        K_TRY(cuda_weight_repack(w, d, r0, n, g->st, e));
        up_mark(u);
    }
    // whether precision fast's f16 product (hfast) may compute with it (weights inside f16)
    if (cuda_hfast_type_ok(w->type)) K_TRY(cuda_hfast_check(w, g->st, e));
    return 0;
}

// A vector (norm weights, biases, sinks) as f32 on the device, or NULL.
int upload_vec(uploader *u, const model_tensor *t, float **out, err *e) {
    engine *g = u->g;
    *out = NULL;
    if (!t) return 0;
    const int64_t n = t->ne[0] * (t->n_dims > 1 ? t->ne[1] : 1);
    float *tmp = (float *)malloc((size_t)n * 4);
    if (!tmp) return err_set(e, ERR_NOMEM, "out of memory");
    quant_dequant_row(t->dtype, src_of(t), tmp, n);
    *out = (float *)(g->dweights + g->used_weights);
    g->used_weights += vec_bytes(t);
    u->host_src = 0;
    uint8_t *d = up_chunk(u, (const uint8_t *)tmp, (uint64_t)n * 4, e);
    free(tmp);
    if (!d) return ERR_IO;
    G_TRY(cudaMemcpyAsync(*out, d, (size_t)n * 4, cudaMemcpyDeviceToDevice, g->st));
    up_mark(u);
    return 0;
}

// A stacked expert tensor t (a tensor of the model or of the shard view) as the device
// matrix of expert_padded, staged by shard_copy_experts (the layout tests/tp/test_tp_cpu.py
// runs on the CPU): gate/up (down = 0): expert e's f rows at e * fp, rows [f, fp) zero;
// down (down = 1): each row's f columns then fp - f zero columns (whole zero blocks:
// moe_layout).
int upload_experts(uploader *u, const model_tensor *t, int f, int fp, int down, cuda_weight *w, err *e) {
    engine *g = u->g;
    const shard *sh = g->tp ? tp_shard(g->tp) : NULL;
    const model_tensor v = expert_padded(t, f, fp, down);
    w->type = t->dtype;
    w->rows = v.ne[1];
    w->cols = v.ne[0];
    w->base = g->dweights + g->used_weights;
    g->used_weights += mat_bytes(&v);
    uint64_t rb = 0; // device-side source row bytes (padded)
    if (quant_row_bytes(t->dtype, v.ne[0], &rb) || !rb) return err_set(e, ERR_UNSUPPORTED, "tensor '%s'", t->name);
    const uint64_t hb = CU_STAGE / 2, per = hb / rb;
    if (per < 1) return err_set(e, ERR_UNSUPPORTED, "tensor '%s': a row of %llu bytes exceeds the staging buffer", t->name,
                                (unsigned long long)rb);
    for (int64_t r0 = 0; r0 < w->rows; r0 += (int64_t)per) {
        const int64_t n = w->rows - r0 < (int64_t)per ? w->rows - r0 : (int64_t)per;
        u->half ^= 1;
        if (cudaEventSynchronize(u->ev[u->half]) != cudaSuccess) {
            cu_fail(g, e, cudaGetLastError(), "staging", __LINE__);
            return ERR_IO;
        }
        uint8_t *h = u->h + u->half * hb, *d = u->d_raw + u->half * hb;
        shard_copy_experts(sh, t, f, fp, down, r0, n, rb, h);
        if (cudaMemcpyAsync(d, h, (size_t)n * rb, cudaMemcpyHostToDevice, g->st) != cudaSuccess) {
            cu_fail(g, e, cudaGetLastError(), "cudaMemcpyAsync(weights)", __LINE__);
            return ERR_IO;
        }
        up_progress(u, (uint64_t)n * rb);
        K_TRY(cuda_weight_repack(w, d, r0, n, g->st, e));
        up_mark(u);
    }
    return 0;
}

// An expert bias (ne = [f, n_expert], f32; a shard's is a column slice) as (n_expert, fp)
// f32 on the device, zeros past f; or NULL.
int upload_expert_bias(uploader *u, const model_tensor *t, int f, int fp, float **out, err *e) {
    engine *g = u->g;
    *out = NULL;
    if (!t) return 0;
    const int64_t E = t->n_dims > 1 ? t->ne[1] : 1;
    float *tmp = (float *)calloc((size_t)(E * fp), 4);
    uint8_t *row = (uint8_t *)malloc(t->row_bytes);
    if (!tmp || !row) {
        free(tmp);
        free(row);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    const shard *sh = g->tp ? tp_shard(g->tp) : NULL;
    for (int64_t x = 0; x < E; x++) {
        shard_copy_rows(sh, t, x, 1, row);
        quant_dequant_row(t->dtype, row, tmp + x * fp, f);
    }
    free(row);
    *out = (float *)(g->dweights + g->used_weights);
    g->used_weights += expert_bias_bytes(t, fp);
    u->host_src = 0;
    uint8_t *d = up_chunk(u, (const uint8_t *)tmp, (uint64_t)E * fp * 4, e);
    free(tmp);
    if (!d) return ERR_IO;
    G_TRY(cudaMemcpyAsync(*out, d, (size_t)E * fp * 4, cudaMemcpyDeviceToDevice, g->st));
    up_mark(u);
    return 0;
}

// MoE: the router, the three stacked expert tensors (one matrix each) and the biases.
// Unpadded and unsharded, the experts go up as one matrix straight from the weight buffer.
int upload_moe(uploader *u, const model_moe *M, layer_w *W, err *e) {
    const int f = M->ffn_dim, fp = moe_width(M);
    W->moe_f = fp;
    int rc;
    if ((rc = upload_matrix(u, M->router, &W->router, e))) return rc;
    if (fp == f && !u->g->tp) {
        const model_tensor vg = expert_rows(M->gate_exps), vu = expert_rows(M->up_exps), vd = expert_rows(M->down_exps);
        if ((rc = upload_matrix(u, &vg, &W->eg, e)) || (rc = upload_matrix(u, &vu, &W->eu, e)) ||
            (rc = upload_matrix(u, &vd, &W->ed, e)))
            return rc;
    } else if ((rc = upload_experts(u, M->gate_exps, f, fp, 0, &W->eg, e)) ||
               (rc = upload_experts(u, M->up_exps, f, fp, 0, &W->eu, e)) ||
               (rc = upload_experts(u, M->down_exps, f, fp, 1, &W->ed, e))) {
        return rc;
    }
    if ((rc = upload_vec(u, M->router_b, &W->router_b, e)) || (rc = upload_expert_bias(u, M->gate_b, f, fp, &W->gate_b, e)) ||
        (rc = upload_expert_bias(u, M->up_b, f, fp, &W->up_b, e)) || (rc = upload_vec(u, M->down_b, &W->down_b, e)))
        return rc;
    return 0;
}

void cuda_destroy(engine *g) {
    if (!g) return;
    cudaSetDevice(g->dev);
    for (int i = 0; i < g->n_graphs; i++) cudaGraphExecDestroy(g->graphs[i].exec);
    cuda_fc_withdraw(g->fc_img); // (it lived in dwork)
    cudaFree(g->dweights);
    cudaFree(g->dkv);
    cudaFree(g->dwork);
    cudaFreeHost(g->h_meta);
    cudaFreeHost(g->h_stage);
    if (g->st) cudaStreamDestroy(g->st);
    free(g->L);
    free(g->kv_of_layer);
    free(g->h_logits);
    free(g->acc_slot);
    free(g->acc_tok);
    delete g;
}

int create_engine(engine **out, const model *m, const engine_opts *o, tp_ctx *tp, err *e) {
    *out = NULL;
    engine_plan plan;
    int rc = cuda_plan(m, o, &plan, e);
    if (rc) return rc;
    if (!m->weights && !m->weights_mapped)
        return err_set(e, ERR_INVALID, "the model was loaded without its weights (header only)");
    engine *g = new engine();
    memset((void *)g, 0, sizeof *g);
    g->m = m;
    g->opt = *o;
    g->dev = o->device;
    g->tp = tp;
    layout_of(m, o, &g->lay, e);
    const cuda_layout &l = g->lay;
    const model_hparams *hp = &m->hp;
    const double t0 = now_s();
#define C_TRY(call)                                                                        \
    do {                                                                                   \
        cudaError_t rc_ = (call);                                                          \
        if (rc_ != cudaSuccess) { rc = cuda_fail(e, rc_, #call, __FILE__, __LINE__); goto fail; } \
    } while (0)
    C_TRY(cudaSetDevice(g->dev));
    {
        int integrated = 0;
        C_TRY(cudaDeviceGetAttribute(&integrated, cudaDevAttrIntegrated, g->dev));
        g->release_host = integrated && m->weights && !getenv("SPARKD_KEEP_HOST_WEIGHTS");
        C_TRY(cudaDeviceGetAttribute(&g->sms, cudaDevAttrMultiProcessorCount, g->dev));
    }
    C_TRY(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking));
    C_TRY(cudaMalloc((void **)&g->dweights, l.weights));
    C_TRY(cudaMalloc((void **)&g->dkv, l.kv));
    C_TRY(cudaMalloc((void **)&g->dwork, l.work));
    C_TRY(cudaHostAlloc((void **)&g->h_stage, CU_STAGE, cudaHostAllocDefault));
    C_TRY(cudaHostAlloc((void **)&g->h_meta, l.meta_bytes, cudaHostAllocDefault));
    g->L = (layer_w *)calloc((size_t)hp->n_layer, sizeof(layer_w));
    g->kv_of_layer = (int32_t *)calloc((size_t)hp->n_layer, sizeof(int32_t));
    g->h_logits = (float *)malloc((size_t)l.V * 4);
    g->acc_cap = 64 * l.S;
    g->acc_slot = (int32_t *)malloc((size_t)g->acc_cap * 4);
    g->acc_tok = (int32_t *)malloc((size_t)g->acc_cap * 4);
    if (!g->L || !g->kv_of_layer || !g->h_logits || !g->acc_slot || !g->acc_tok) {
        rc = err_set(e, ERR_NOMEM, "out of memory");
        goto fail;
    }
    {
        // carve the work buffer
        uint8_t *p = g->dwork;
        auto take = [&](uint64_t b) { uint8_t *r = p; p += a256(b); g->used_work += a256(b); return r; };
        const uint64_t T = l.T, S = l.S, V = l.V;
        g->x = (float *)take(T * l.dim * 4);
        g->o = (float *)take(T * l.dim * 4);
        g->q = (float *)take(T * l.q_dim * 4);
        g->att = (float *)take(T * l.q_dim * 4);
        g->k = (float *)take(T * l.kv_dim * 4);
        g->v = (float *)take(T * l.kv_dim * 4);
        g->gate = (float *)take(T * l.ffn * 4);
        g->up = (float *)take(T * l.ffn * 4);
        cuda_mmin_carve(&g->in_dim, take(cuda_mmin_bytes(l.T, l.dim, l.forms_dim)), l.T, l.dim, l.forms_dim & ENG_FORMS_MASK);
        cuda_mmin_carve(&g->in_q, take(cuda_mmin_bytes(l.T, l.q_dim, l.forms_q)), l.T, l.q_dim, l.forms_q & ENG_FORMS_MASK);
        cuda_mmin_carve(&g->in_ffn, take(cuda_mmin_bytes(l.T, l.ffn, l.forms_ffn)), l.T, l.ffn, l.forms_ffn & ENG_FORMS_MASK);
        cuda_mmin_carve(&g->in_out, take(cuda_mmin_bytes(l.S, l.dim, l.forms_dim)), l.S, l.dim, l.forms_dim & ENG_FORMS_MASK);
        g->logits = (float *)take(S * V * 4);
        g->attn_work = (float *)take(l.attn_work);
        g->counts = (uint32_t *)take(S * V * 4);
        g->smp_work = (float *)take(cuda_sample_work_bytes(l.S, l.V));
        g->d_rows = (cuda_sample_row *)take(S * sizeof(cuda_sample_row));
        g->d_sout = (cuda_sample_out *)take(S * sizeof(cuda_sample_out));
        g->d_masks = (uint32_t *)take(S * ((V + 31) / 32) * 4);
        g->d_bias_ids = (int32_t *)take(S * 256 * 4);
        g->d_bias_vals = (float *)take(S * 256 * 4);
        g->d_acc = (int32_t *)take(2 * S * 64 * 4);
        g->d_stage = take(CU_STAGE);
        g->splitk = (float *)take(CU_SPLITK);
        if (l.fc_img) cuda_fc_provide(g->fc_img = take(l.fc_img), l.fc_img); // (cuda_destroy withdraws it)
        if (l.moe_E) {
            g->moe_work = take(l.moe_work);
            g->moe_logits = (float *)take(T * l.moe_E * 4);
        }
        g->d_meta = take(l.meta_bytes);
        g->used_work -= a256(l.meta_bytes); // counted once below, with its parts
        uint8_t *q = g->d_meta;
        auto carve = [&](uint64_t b) { uint8_t *r = q; q += a256(b); return r; };
        g->d_tok = (int32_t *)carve(T * 4);
        g->d_pos = (int32_t *)carve(T * 4);
        g->d_seq = (int32_t *)carve(T * 4);
        g->d_bt = (int32_t *)carve(S * l.max_blocks * 4);
        g->d_rows_out = (int32_t *)carve(S * 4);
        g->d_tiles = (cuda_attn_tile *)carve(l.max_tiles * sizeof(cuda_attn_tile));
        g->d_items = (cuda_attn_item *)carve((uint64_t)l.dec_items * sizeof(cuda_attn_item));
        g->d_nslot = (int32_t *)carve(S * 4);
        g->used_work += l.meta_bytes;
        C_TRY(cudaMemsetAsync(g->counts, 0, S * V * 4, g->st));
    }
    {
        uploader u;
        memset(&u, 0, sizeof u);
        u.g = g;
        u.h = g->h_stage;
        u.d_raw = g->d_stage;
        u.total = l.weights;
        u.progress = m->weights_bytes > (1ull << 30);
        u.half = 1;
        C_TRY(cudaEventCreateWithFlags(&u.ev[0], cudaEventDisableTiming));
        C_TRY(cudaEventCreateWithFlags(&u.ev[1], cudaEventDisableTiming));
        C_TRY(cudaEventRecord(u.ev[0], g->st));
        C_TRY(cudaEventRecord(u.ev[1], g->st));
        rc = upload_matrix(&u, m->token_embd, &g->embd, e);
        if (!rc && m->output != m->token_embd) rc = upload_matrix(&u, m->output, &g->out, e);
        else g->out = g->embd;
        if (!rc) rc = upload_vec(&u, m->output_norm, &g->out_norm, e);
        for (int il = 0, nk = 0; il < hp->n_layer && !rc; il++) {
            const model_layer *L = &m->layers[il];
            layer_w *W = &g->L[il];
            const model_attention *A = &L->attn;
            g->kv_of_layer[il] = L->mixer == MODEL_MIXER_ATTENTION ? nk++ : -1;
            if (!rc) rc = upload_matrix(&u, A->wq, &W->wq, e);
            if (!rc) rc = upload_matrix(&u, A->wk, &W->wk, e);
            if (!rc) rc = upload_matrix(&u, A->wv, &W->wv, e);
            if (!rc) rc = upload_matrix(&u, A->wo, &W->wo, e);
            if (L->ffn == MODEL_FFN_MOE) {
                if (!rc) rc = upload_moe(&u, &L->moe, W, e);
            } else {
                if (!rc) rc = upload_matrix(&u, L->dense.w_gate, &W->wg, e);
                if (!rc) rc = upload_matrix(&u, L->dense.w_up, &W->wu, e);
                if (!rc) rc = upload_matrix(&u, L->dense.w_down, &W->wd, e);
            }
            const model_tensor *vt[11] = {L->attn_norm, L->post_attn_norm, L->ffn_norm, L->post_ffn_norm, A->q_norm,
                                          A->k_norm, A->bq, A->bk, A->bv, A->bo, A->sinks};
            float **vd[11] = {&W->attn_norm, &W->post_attn_norm, &W->ffn_norm, &W->post_ffn_norm, &W->q_norm,
                              &W->k_norm, &W->bq, &W->bk, &W->bv, &W->bo, &W->sinks};
            for (int i = 0; i < 11 && !rc; i++) rc = upload_vec(&u, vt[i], vd[i], e);
        }
        if (!rc) {
            u.host_src = 0;
            const int half = hp->head_dim / 2;
            float *inv = (float *)calloc((size_t)(m->n_rope ? m->n_rope : 1) * half, 4);
            if (!inv) rc = err_set(e, ERR_NOMEM, "out of memory");
            for (int r = 0; r < m->n_rope && !rc; r++) engine_rope_inv_freq(&m->rope[r], inv + (size_t)r * half);
            g->inv_freq = (float *)(g->dweights + g->used_weights);
            g->used_weights += a256((uint64_t)m->n_rope * half * 4);
            if (!rc && m->n_rope) {
                uint8_t *d = up_chunk(&u, (const uint8_t *)inv, (uint64_t)m->n_rope * half * 4, e);
                if (!d) rc = ERR_IO;
                else if (cudaMemcpyAsync(g->inv_freq, d, (size_t)m->n_rope * half * 4, cudaMemcpyDeviceToDevice, g->st))
                    rc = err_set(e, ERR_IO, "inv_freq upload");
                up_mark(&u);
            }
            free(inv);
        }
        if (!rc && cudaStreamSynchronize(g->st) != cudaSuccess) rc = cuda_fail(e, cudaGetLastError(), "upload", __FILE__, __LINE__);
        cudaEventDestroy(u.ev[0]);
        cudaEventDestroy(u.ev[1]);
        if (rc) goto fail;
        if (u.progress) fprintf(stderr, "\n");
        const double dt = now_s() - t0;
        if (u.progress || getenv("SPARKD_LOAD_STATS"))
            fprintf(stderr, "weights on the GPU: %.2f GB in %.2f s (%.2f GB/s)\n", l.weights / 1e9, dt, l.weights / 1e9 / dt);
    }
    C_TRY(cudaMemsetAsync(g->dkv, 0, l.kv, g->st));
    C_TRY(cudaStreamSynchronize(g->st));
    g->use_graphs = !getenv("SPARKD_NO_GRAPHS") && (!tp || tp_graphs_ok(tp));
    {
        const char *nat = getenv("SPARKD_MXFP4_NATIVE");
        g->moe_native = nat && !strcmp(nat, "1") && cuda_moe_native_ok();
    }
    // [engine] precision = fast (--precision fast): one f16 input per MMA term in the
    // tensor-core products (and, through this same flag, the decode GEMV's input);
    // SPARKD_MM_FAST=1 forces it for an A/B without editing the configuration
    g->fast_mm = g->opt.precision == ENGINE_PRECISION_FAST || getenv("SPARKD_MM_FAST") != NULL;
    g->int8_kinds = fast_int8_kinds(g->m);
    {
        // programmatic dependent launch (kern_util.cuh): sm_90+ (H100/H200, GB10)
        int major = 0;
        C_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, g->dev));
        cuda_pdl_set(major >= 9 && !getenv("SPARKD_NO_PDL"));
    }
    *out = g;
    return 0;
fail:
    cuda_destroy(g);
    return rc ? rc : ERR_IO;
#undef C_TRY
}

int cuda_create(engine **out, const model *m, const engine_opts *o, err *e) {
    if (o->parallel && o->parallel->size > 1)
        return err_set(e, ERR_INVALID, "tensor parallel needs engine_tp_ops, not the plain CUDA engine");
    return create_engine(out, m, o, NULL, e);
}

void cuda_usage(const engine *g, engine_usage *u) {
    u->weights_bytes = g->used_weights;
    u->kv_bytes = g->lay.kv;
    u->state_bytes = 0;
    u->work_bytes = g->used_work + CU_STAGE;
}

// ----------------------------------------------------------------------------- forward

cuda_kv_layer kv_layer(engine *g, int kl) {
    const cuda_layout &l = g->lay;
    const engine_kv_type kt = g->opt.kv_type;
    const uint64_t eb = a256(l.kv_layer_elems * engine_kv_elem_bytes(kt));
    const uint64_t sb = engine_kv_scale_bytes(kt) ? a256((uint64_t)l.n_blocks * CU_KV_BLOCK * g->m->hp.n_head_kv * 4) : 0;
    uint8_t *base = g->dkv + (uint64_t)kl * 2 * (eb + sb);
    cuda_kv_layer r;
    r.k = base;
    r.v = base + eb;
    r.k_scale = sb ? (float *)(base + 2 * eb) : NULL;
    r.v_scale = sb ? (float *)(base + 2 * eb + sb) : NULL;
    return r;
}

// engine_kv_type and CUDA_KV_* share their values
static_assert((int)ENGINE_KV_F32 == CUDA_KV_F32 && (int)ENGINE_KV_F16 == CUDA_KV_F16 && (int)ENGINE_KV_Q8 == CUDA_KV_Q8 &&
                  (int)ENGINE_KV_BF16 == CUDA_KV_BF16 && (int)ENGINE_KV_FP8 == CUDA_KV_FP8,
              "kv type values");

// cuda_mm_args.exact of a product of this kind (ENG_MM_*) over x: 0 at precision fast for
// the kinds that take int8 inputs; a kind fast keeps off int8 computes as at exact (f16 hi
// + lo at T > 1, the f32 GEMV at T == 1), or with SPARKD_FAST_F16=1 from the hi half only
// at T > 1 (round 3's fast; at T == 1 exact = 0 is the dp4a path for Q8_0/Q4_0/Q4_K/Q6_K)
int fast_f16_env() {
    static int v = -1;
    if (v < 0) {
        const char *s = getenv("SPARKD_FAST_F16");
        v = s && atoi(s) ? 1 : 0;
    }
    return v;
}
int mm_exact(const engine *g, int kind, const cuda_mmin *x) {
    return !g->fast_mm || (!(g->int8_kinds & kind) && (x->T == 1 || !fast_f16_env()));
}
// At fast, a kind kept off int8 (narrow models) still takes the f16 product (hfast) at
// T >= SPARKD_HFAST_MIN_T for the weight types hfast computes with: f16 weights and input
// moved gemma-3-270m's logits by <= 3.8e-3 (engine check prompts) and no golden greedy step
// (tests/tools/fast_sim.py study hf; kernels/PERF.md "Round 6, helper hfast"), but on the
// GPU (round 6 final call) one of gemma's 76 golden checks then missed (a logit 2.22e-2 from
// HF's, tolerance 2e-2; greedy tokens and top-16 order all equal) for +3% of prompt speed, so
// it is opt-in: SPARKD_HFAST_NARROW=1. Default: those products stay exact.
int hfast_narrow(const engine *g, int kind, const cuda_mmin *x, uint32_t type) {
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("SPARKD_HFAST_NARROW");
        on = v && v[0] == '1' ? 1 : 0;
    }
    return on && g->fast_mm && !(g->int8_kinds & kind) && x->T >= cuda_hfast_min_t_type(type) && cuda_hfast_type_ok(type);
}

// The input a product of this kind reads: x, or at fast for a kind kept off int8 a copy
// without the int8 rows (cuda_matmul then takes the f16 kernel at T > 1, never mmq).
cuda_mmin mm_input(const engine *g, int kind, const cuda_mmin *x) {
    cuda_mmin v = *x;
    if (g->fast_mm && !(g->int8_kinds & kind)) v.forms &= ~CUDA_MMIN_Q8;
    return v;
}

extern "C" int cuda_w64_takes(int T, uint32_t type); // gemm.cu (round 9): the product takes w64_kernel
extern "C" void cuda_w64_scope(int on);              // gemm.cu: cuda_matmul routes by cuda_w64_takes (the engine's products)
// cuda_matmul for the engine's products: w64_kernel at 33..64 tokens where cuda_w64_takes says so.
int mm_scoped(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e) {
    cuda_w64_scope(1);
    const int rc = cuda_matmul(a, x, stream, e);
    cuda_w64_scope(0);
    return rc;
}

// parts (NULL: every split product reduces its own partials): round 8 fz, each product that
// splits K leaves its partials in g->splitk for the consumer (parts[j]: output j's, zero where
// y was written); a second launch (matrices of another type) takes the room after the first's.
int mm_p(engine *g, int kind, cuda_mmin *x0, int n, const cuda_weight *w0, float *y0, const cuda_weight *w1, float *y1,
         const cuda_weight *w2, float *y2, cuda_part *parts, err *e) {
    const cuda_weight *ws[3] = {w0, w1, w2};
    float *ys[3] = {y0, y1, y2};
    cuda_mmin xv = mm_input(g, kind, x0);
    cuda_mmin *x = &xv;
    uint64_t used = 0; // bytes of g->splitk holding deferred partials
    if (parts) memset(parts, 0, 3 * sizeof *parts);
    // one launch for the matrices that share the first one's type, then the others
    int done[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        cuda_defer d;
        memset(&d, 0, sizeof d);
        int js[3], nj = 0;
        a.exact = mm_exact(g, kind, x) && !hfast_narrow(g, kind, x, ws[i]->type);
        a.work = g->splitk + used / sizeof(float);
        a.work_bytes = CU_SPLITK - used;
        if (parts) {
            d.on = 1;
            a.defer = &d;
        }
        for (int j = i; j < n; j++)
            if (!done[j] && ws[j]->type == ws[i]->type) {
                a.w[a.n] = ws[j];
                a.y[a.n] = ys[j];
                a.ldy[a.n] = (int)ws[j]->rows;
                a.n++;
                done[j] = 1;
                js[nj++] = j;
            }
        K_TRY(mm_scoped(&a, x, g->st, e));
        if (parts) {
            for (int k = 0; k < nj; k++) parts[js[k]] = d.part[k];
            used += (d.used + 255) & ~(uint64_t)255;
        }
    }
    return 0;
}
// The layer's products (run_layers): with g->fz_run (fz at T >= 2) q+k+v, o, gate+up and down leave
// their split-K partials to their consumers, described in g->fz_pp (the last such product's).
int mm(engine *g, int kind, cuda_mmin *x0, int n, const cuda_weight *w0, float *y0, const cuda_weight *w1, float *y1,
       const cuda_weight *w2, float *y2, err *e) {
    const bool d = g->fz_run && (kind == ENG_MM_QKV || kind == ENG_MM_O || kind == ENG_MM_FFN || kind == ENG_MM_DOWN);
    return mm_p(g, kind, x0, n, w0, y0, w1, y1, w2, y2, d ? g->fz_pp : NULL, e);
}

// SPARKD_FZ (round 8): 1 (default) = at T >= 2 the split-K partials of q+k+v, o, gate+up and
// down are summed by their consumers (qkv_rope_store, resid_norm, the activation) instead of
// a reduce launch each, the same bits; 0 = every product reduces itself (round 7's launches).
extern "C" int cuda_pp_mode(void); // gemm.cu: SPARKD_PP's bits (round 9 pp: 1 hfw3 partials deferred, 2 paired gate+up)

int fz_on() { return cuda_env_int("SPARKD_FZ", 1) != 0; }
// SPARKD_FZ_ATT=0: with SPARKD_FZ on, the decode attention still writes f32 rows and a prepare
// launch makes o's input (default 1: where o reads the int8 rows alone the combine writes them)
int fz_att() { return cuda_env_int("SPARKD_FZ_ATT", 1) != 0; }

// SPARKD_NO_PAIR: gate/up and the activation as separate launches at T == 1 (A/B tests); set
// to anything, "0" and "" too (so not cuda_env_int, where "0" is off and "" the default)
int getenv_cached_no_pair() {
    static int v = -1;
    if (v < 0) v = getenv("SPARKD_NO_PAIR") ? 1 : 0;
    return v;
}

int mmq_env_on() { // mmq.cu's switch (SPARKD_MMQ=0: the f16 kernel reads the F16 form instead)
    return cuda_env_int("SPARKD_MMQ", 1) != 0;
}

int forms_at(int forms_all, int T, int fast) {
    // the forms a product of T rows reads: XP alone for T == 1, the tensor-core ones else
    // (the int8 rows of mmq only at precision fast)
    if (T == 1) return CUDA_MMIN_XP;
    // fast at T >= SPARKD_HFAST_MIN_T: the f16 product (hfast) reads the F16 form as exact does
    // (SPARKD_FAST_MM=int8: the int8 rows as before); Q8_0 weights below their own threshold
    // (SPARKD_HFAST_MIN_T_Q8, 65) keep the int8 rows too (mmq)
    if (fast && T >= cuda_hfast_min_t()) {
        // (w64, round 9: none where Q8_0's products at this T take w64_kernel, which reads the f16 form)
        const int q8 = T < cuda_hfast_min_t_type(QUANT_Q8_0) && (forms_all & ENG_FORM_Q8_0) && mmq_env_on() &&
                       !cuda_elt_old() && !cuda_w64_takes(T, QUANT_Q8_0);
        // only Q8_0 weights read this input and all of them stay on mmq at this T: the int8 rows
        // alone, as below (the f16 hi + lo rows cost a 64-sequence Q8_0 step 3.7%, nobody read them)
        if (!(q8 && !(forms_all & ENG_FORM_NQ8_0))) return forms_at(forms_all, T, 0) | (q8 ? CUDA_MMIN_Q8 : 0);
    }
    if (cuda_elt_old()) // every form the weights may read (A/B with the first generation)
        return (fast ? forms_all : forms_all & ~CUDA_MMIN_Q8) & ENG_FORMS_MASK;
    if (!fast || !mmq_env_on() || !(forms_all & CUDA_MMIN_Q8)) // XP at T > 1 only where ENG_FORM_XP says
        return forms_all & ~CUDA_MMIN_Q8 & ~(forms_all & ENG_FORM_XP ? 0 : CUDA_MMIN_XP) & ENG_FORMS_MASK;
    // fast with mmq: the int8 rows, + f16/bf16 only for weights mmq does not take, + XP where read
    return CUDA_MMIN_Q8 | (forms_all & ENG_FORM_TC ? forms_all & (CUDA_MMIN_F16 | CUDA_MMIN_BF16) : 0) |
           (forms_all & ENG_FORM_XP ? CUDA_MMIN_XP : 0) |
           (T <= cuda_gemms_max_t() ? forms_all & CUDA_MMIN_F16 : 0); // + f16 hi for gemms.cu (hsmall)
}

// The forms of an input the products of these kinds (ENG_MM_*) read: forms_at of the
// precision, at fast the int8 rows only where one of them takes int8 inputs and the f16
// forms too where one of them does not (fast_int8_kinds).
extern "C" int cuda_t64_g2_head(int T); // gemms.cu: SPARKD_T64_G2's level at T tokens (gemms2 reads the f16 form)
extern "C" void cuda_pe_nolo(int on); // pe.cu (round 11): resid / prepare may skip the low halves this forward
extern "C" int cuda_e64_attn_prep(const cuda_attn_args *aa, cuda_mmin *m, int T, void *stream, err *e); // e64.cu (round 12)
extern "C" int cuda_l32_qkv_takes(const cuda_qkv_args *qa, int T); // l32.cu (round 13): SPARKD_L32_QKV
extern "C" int cuda_l32_qkv_attention(const cuda_qkv_args *qa, const cuda_attn_args *aa, const cuda_tokens *tk, void *stream, err *e);
int input_forms(const engine *g, int forms_all, int T, int kinds) {
    if (!g->fast_mm) return forms_at(forms_all, T, 0);
    const int k8 = g->int8_kinds & kinds;
    return (k8 ? forms_at(forms_all, T, 1) : 0) | (k8 != kinds ? forms_at(forms_all, T, 0) : 0) |
           ((kinds == ENG_MM_HEAD || (kinds & ENG_MM_FFN)) && cuda_t64_g2_head(T) == 2
                ? forms_all & CUDA_MMIN_F16 : 0); // t64: Q8_0's head and gate+up on gemms2 (SPARKD_T64_G2=2)
}

// MoE FFN of layer il over in_dim (T rows) into o: router logits (F32 router: the GEMV
// kernel at any T, on the f32 form), then routing, experts and their weighted sum.
int moe_forward(engine *g, int il, int T, err *e) {
    const model_hparams *hp = &g->m->hp;
    const model_moe *M = &g->m->layers[il].moe;
    layer_w *W = &g->L[il];
    K_TRY(mm(g, ENG_MM_ALL, &g->in_dim, 1, &W->router, g->moe_logits, NULL, NULL, NULL, NULL, e));
    cuda_moe_args a;
    memset(&a, 0, sizeof a);
    a.T = T;
    a.dim = hp->dim;
    a.ffn = W->moe_f; // padded to 64 (moe_width)
    a.n_expert = M->n_expert;
    a.expert0 = M->expert0;        // expert parallelism: the weights hold [expert0, +n_local)
    a.n_local = M->n_expert_local;
    a.n_used = M->n_used;
    a.gating = M->gating == MODEL_MOE_TOPK_SOFTMAX ? CUDA_MOE_TOPK_SOFTMAX : CUDA_MOE_SOFTMAX_TOPK;
    a.norm_topk = M->norm_topk;
    a.act = hp->act == MODEL_ACT_SWIGLU_OAI ? (int)CUDA_MOE_ACT_SWIGLU_OAI
            : hp->act == MODEL_ACT_GELU_TANH ? (int)CUDA_ACT_GELU_TANH : (int)CUDA_ACT_SILU;
    a.act_alpha = hp->act_alpha;
    a.act_limit = hp->act_limit;
    a.logits = g->moe_logits;
    a.router_b = W->router_b;
    a.gate = &W->eg;
    a.up = &W->eu;
    a.down = &W->ed;
    a.gate_b = W->gate_b;
    a.up_b = W->up_b;
    a.down_b = W->down_b;
    a.x = &g->in_dim;
    a.out = g->o;
    a.path = g->moe_native && T > CUDA_MOE_GEMV_MAX_T && W->eg.type == QUANT_MXFP4 && W->ed.type == QUANT_MXFP4
                 ? (int)CUDA_MM_FORCE_NATIVE : (int)CUDA_MM_AUTO;
    a.exact = 1;
    a.work = g->moe_work;
    a.work_bytes = g->lay.moe_work;
    K_TRY(cuda_moe_ffn(&a, g->st, e));
    return 0;
}

extern "C" int cuda_hd_head_work(int T); // hd.cu (round 11): the head of T tokens gets the split-K room
// The layer stack and the head over the metadata already on the device.
int run_layers(engine *g, int T, int n_out, err *e) {
    const model *m = g->m;
    const model_hparams *hp = &m->hp;
    const cuda_layout &l = g->lay;
    g->in_dim.forms = input_forms(g, l.forms_dim, T, ENG_MM_QKV | ENG_MM_FFN);
    g->in_q.forms = input_forms(g, l.forms_q, T, ENG_MM_O);
    g->in_ffn.forms = input_forms(g, l.forms_ffn, T, ENG_MM_DOWN);
    g->in_out.forms = input_forms(g, l.forms_dim, n_out, ENG_MM_HEAD);
    cuda_pe_nolo(g->fast_mm && g->int8_kinds == ENG_MM_ALL && !l.moe_E && !g->tp); // round 11 pe: no product reads lo (pe.cu)
    K_TRY(cuda_weight_rows(&g->embd, g->d_tok, T, hp->embd_scale, g->x, g->st, e));
    cuda_resid_args ra;
    memset(&ra, 0, sizeof ra);
    ra.x = g->x; ra.norm_w = g->L[0].attn_norm; ra.n = T; ra.dim = hp->dim; ra.eps = hp->norm_eps; ra.out = &g->in_dim;
    K_TRY(cuda_resid_norm(&ra, g->st, e));
    cuda_tokens tk = {g->d_pos, g->d_seq, g->d_bt, l.max_blocks, T};
    // fz: deferred split-K partials at T >= 2 (not with tensor parallel: its all-reduce reads o):
    // mm() of the layer's products fills g->fz_pp, read by the consumer right after
    const bool fz = T >= 2 && fz_on() && !g->tp && !cuda_elt_old();
    g->fz_run = fz;
    cuda_part *pp = g->fz_pp;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        const model_attention *A = &L->attn;
        layer_w *W = &g->L[il];
        const cuda_kv_layer kv = kv_layer(g, g->kv_of_layer[il]);
        K_TRY(mm(g, ENG_MM_QKV, &g->in_dim, 3, &W->wq, g->q, &W->wk, g->k, &W->wv, g->v, e));
        const model_rope *R = &m->rope[A->rope];
        cuda_qkv_args qa;
        memset(&qa, 0, sizeof qa);
        qa.q = g->q; qa.k = g->k; qa.v = g->v; qa.ldq = l.q_dim; qa.ldk = qa.ldv = l.kv_dim;
        qa.bq = W->bq; qa.bk = W->bk; qa.bv = W->bv; qa.q_norm = W->q_norm; qa.k_norm = W->k_norm; qa.eps = hp->norm_eps;
        qa.inv_freq = g->inv_freq + (size_t)A->rope * (hp->head_dim / 2);
        qa.n_rot = R->n_rot; qa.neox = R->style == MODEL_ROPE_NEOX; qa.mscale = R->attn_factor;
        qa.n_head = hp->n_head; qa.n_kv = hp->n_head_kv; qa.head_dim = hp->head_dim;
        qa.kv = kv; qa.kv_type = (int)g->opt.kv_type; qa.kv_block = CU_KV_BLOCK;
        if (fz) { qa.pq = pp[0]; qa.pk = pp[1]; qa.pv = pp[2]; }
        // round 10 dq: at one token the whole chain (norm, RoPE, KV store, attention, merge) in one launch (dq.cu)
        const bool dq = g->dq_short && !g->tp && g->in_q.forms == CUDA_MMIN_XP && cuda_dq_takes(&qa, T, l.attn_work);
        // round 13 l32 (l32.cu, SPARKD_L32_QKV): one token past dq's contexts: norm / RoPE / KV store inside the attention launch
        const bool l32q = !dq && g->in_q.forms == CUDA_MMIN_XP && g->dec_items > 0 && !g->tp && cuda_l32_qkv_takes(&qa, T);
        if (!dq && !l32q) K_TRY(cuda_qkv_rope_store(&qa, &tk, g->st, e));
        cuda_attn_args aa;
        memset(&aa, 0, sizeof aa);
        aa.q = g->q; aa.out = g->att; aa.ldq = aa.ldo = l.q_dim; aa.kv = kv; aa.kv_type = (int)g->opt.kv_type;
        aa.kv_block = CU_KV_BLOCK; aa.block_tables = g->d_bt; aa.max_blocks = l.max_blocks; aa.tiles = g->d_tiles;
        aa.n_tiles = g->n_tiles; aa.n_head = hp->n_head; aa.n_kv = hp->n_head_kv; aa.head_dim = hp->head_dim;
        aa.scale = A->scale; aa.window = A->window; aa.sinks = W->sinks; aa.n_split = g->n_split; aa.work = g->attn_work;
        aa.pf_fast = g->fast_mm; // (prefill and the decode plan: Q and P one f16 each at precision fast)
        if (g->dec_items > 0) {
            aa.plan = g->d_items; aa.plan_nslot = g->d_nslot; aa.plan_items = g->dec_items; aa.plan_nsl = l.dec_nsl;
        } else {
            aa.prefill = l.pf; // (the tiles were cut to cuda_attn_pf_tokens then)
        }
        if (dq) {
            aa.out = g->in_q.xp;
            aa.out_p64 = 1;
            K_TRY(cuda_dq_attention(&qa, &aa, &tk, g->st, e));
            g->in_q.T = T;
        } else if (g->in_q.forms == CUDA_MMIN_XP) {
            // one token (GEMV next): attention writes the f32 P64 input of Wo itself
            aa.out = g->in_q.xp;
            aa.out_p64 = 1;
            K_TRY(l32q ? cuda_l32_qkv_attention(&qa, &aa, &tk, g->st, e) : cuda_attention(&aa, g->st, e));
            g->in_q.T = T;
        } else if (fz && fz_att() && g->dec_items > 0 && g->in_q.forms == CUDA_MMIN_Q8 && hp->head_dim % 32 == 0) {
            // fz: the int8 rows alone (Q8_0 at 33..64 tokens, mmq next): the combine writes them
            aa.out_q8 = g->in_q.q8; aa.out_q8d = g->in_q.q8d; aa.out_q8s = g->in_q.q8s;
            K_TRY(cuda_attention(&aa, g->st, e));
            g->in_q.T = T;
        } else {
            const int ep = cuda_e64_attn_prep(&aa, &g->in_q, T, g->st, e); // round 12 e64 (e64.cu; SPARKD_E64 mask 4): one kernel
            if (ep > 0) K_TRY(ep);
            if (ep < 0) {
                K_TRY(cuda_attention(&aa, g->st, e));
                K_TRY(cuda_mmin_prepare(g->att, l.q_dim, &g->in_q, T, g->st, e));
            }
        }
        K_TRY(mm(g, ENG_MM_O, &g->in_q, 1, &W->wo, g->o, NULL, NULL, NULL, NULL, e));
        if (g->tp) K_TRY(tp_allreduce(g->tp, g->o, (size_t)T * hp->dim, g->st, e)); // partial sums of the heads
        memset(&ra, 0, sizeof ra);
        ra.x = g->x; ra.o = g->o; ra.o_bias = W->bo; ra.post_w = W->post_attn_norm; ra.norm_w = W->ffn_norm;
        if (fz) ra.o_part = pp[0];
        ra.n = T; ra.dim = hp->dim; ra.eps = hp->norm_eps; ra.out = &g->in_dim;
        K_TRY(cuda_resid_norm(&ra, g->st, e));
        if (L->ffn == MODEL_FFN_MOE) {
            K_TRY(moe_forward(g, il, T, e)); // o = the experts' weighted sum
        } else {
            const int act = hp->act == MODEL_ACT_GELU_TANH ? CUDA_ACT_GELU_TANH : CUDA_ACT_SILU;
            if (T == 1 && g->in_ffn.forms == CUDA_MMIN_XP && W->wg.type == W->wu.type && W->wg.type != QUANT_F32 &&
                !getenv_cached_no_pair()) {
                // one token: gate and up in one GEMV that writes act(gate) * up as Wd's input
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = 2; a.w[0] = &W->wg; a.w[1] = &W->wu; a.y[0] = g->gate; a.y[1] = g->up;
                // the input as mm() gives it (mm_input: no int8 rows where this kind keeps f32/f16 inputs)
                cuda_mmin xin = mm_input(g, ENG_MM_FFN, &g->in_dim);
                a.ldy[0] = a.ldy[1] = l.ffn; a.exact = mm_exact(g, ENG_MM_FFN, &xin); a.pair_act = act + 1; a.act_out = &g->in_ffn;
                K_TRY(cuda_matmul(&a, &xin, g->st, e));
            } else if (T >= 65 && (cuda_pp_mode() & 2) && W->wg.type == W->wu.type && W->wg.type != QUANT_F32) {
                // prefill (round 9 pp, SPARKD_PP bit 2): gate, up and the activation in one call; where hfw3
                // runs the product its epilogue computes act(gate) * up, else the launches below (the same
                // as mm() + cuda_act_mm_part: its input, exact flag, work room and fz's deferred partials)
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                cuda_defer d;
                memset(&d, 0, sizeof d);
                const cuda_mmin xin = mm_input(g, ENG_MM_FFN, &g->in_dim);
                a.n = 2; a.w[0] = &W->wg; a.w[1] = &W->wu; a.y[0] = g->gate; a.y[1] = g->up; a.ldy[0] = a.ldy[1] = l.ffn;
                a.exact = mm_exact(g, ENG_MM_FFN, &xin) && !hfast_narrow(g, ENG_MM_FFN, &xin, W->wg.type);
                a.work = g->splitk; a.work_bytes = CU_SPLITK;
                if (fz) { d.on = 1; a.defer = &d; }
                a.pair_act = act + 1; a.act_out = &g->in_ffn;
                K_TRY(cuda_matmul(&a, &xin, g->st, e));
            } else {
                K_TRY(mm(g, ENG_MM_FFN, &g->in_dim, 2, &W->wg, g->gate, &W->wu, g->up, NULL, NULL, e));
                K_TRY(cuda_act_mm_part(g->gate, g->up, l.ffn, T, l.ffn, act, fz ? &pp[0] : NULL, fz ? &pp[1] : NULL,
                                       &g->in_ffn, g->st, e));
            }
            K_TRY(mm(g, ENG_MM_DOWN, &g->in_ffn, 1, &W->wd, g->o, NULL, NULL, NULL, NULL, e));
        }
        if (g->tp) K_TRY(tp_allreduce(g->tp, g->o, (size_t)T * hp->dim, g->st, e)); // partial sums of the FFN columns (dense or every expert's)
        memset(&ra, 0, sizeof ra);
        ra.x = g->x; ra.o = g->o; ra.post_w = W->post_ffn_norm; ra.dim = hp->dim; ra.eps = hp->norm_eps;
        if (fz && L->ffn != MODEL_FFN_MOE) ra.o_part = pp[0];
        if (il + 1 < hp->n_layer) {
            ra.norm_w = g->L[il + 1].attn_norm; ra.n = T; ra.out = &g->in_dim;
        } else {
            if (n_out == 0) {
                ra.norm_w = g->out_norm; ra.n = T; ra.xout = g->o; // the residual still gets its last add
                ra.out = NULL;
            } else {
                ra.norm_w = g->out_norm; ra.rows = g->d_rows_out; ra.n = n_out; ra.out = &g->in_out;
            }
        }
        K_TRY(cuda_resid_norm(&ra, g->st, e));
    }
    g->fz_run = false;
    if (n_out) {
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = 1; a.w[0] = &g->out; a.y[0] = g->logits; a.ldy[0] = l.V; a.exact = mm_exact(g, ENG_MM_HEAD, &g->in_out);
        if (g->tp) { a.y[0] = tp_logits_shard(g->tp); a.ldy[0] = (int)g->out.rows; } // this rank's vocabulary rows
        if (cuda_hd_head_work(n_out)) { a.work = g->splitk; a.work_bytes = CU_SPLITK; } // round 11 hd: split-K room (hd.cu)
        const cuda_mmin hx = mm_input(g, ENG_MM_HEAD, &g->in_out);
        K_TRY(mm_scoped(&a, &hx, g->st, e));
        if (g->tp) K_TRY(tp_gather_logits(g->tp, g->logits, n_out, l.V, g->st, e)); // on rank 0
        if (hp->final_softcap > 0.0f) K_TRY(cuda_softcap(g->logits, l.V, n_out, l.V, hp->final_softcap, g->st, e));
    }
    return 0;
}

int cuda_forward(engine *g, const engine_seq *seqs, int n, err *e) {
    if (g->fault) return err_set(e, ERR_IO, "the CUDA engine failed earlier and must be restarted");
    g->n_last = 0;
    int rc = engine_check_batch(seqs, n, &g->opt, CU_KV_BLOCK, g->lay.n_blocks, g->m->hp.n_vocab, e);
    if (rc) return rc;
    const cuda_layout &l = g->lay;
    const model_hparams *hp = &g->m->hp;
    const int G = hp->n_head / hp->n_head_kv;
    const int QT = l.pf ? cuda_attn_pf_tokens(G) : cuda_attn_tile_tokens(G); // (max_tiles = T + S holds for both)
    // metadata, in the device layout
    uint8_t *q = g->h_meta;
    auto carve = [&](uint64_t b) { uint8_t *r = q; q += a256(b); return r; };
    int32_t *tok = (int32_t *)carve((uint64_t)l.T * 4), *pos = (int32_t *)carve((uint64_t)l.T * 4),
            *seq = (int32_t *)carve((uint64_t)l.T * 4), *bt = (int32_t *)carve((uint64_t)l.S * l.max_blocks * 4),
            *rows = (int32_t *)carve((uint64_t)l.S * 4);
    cuda_attn_tile *tiles = (cuda_attn_tile *)carve((uint64_t)l.max_tiles * sizeof(cuda_attn_tile));
    cuda_attn_item *items = (cuda_attn_item *)carve((uint64_t)l.dec_items * sizeof(cuda_attn_item));
    int32_t *nslot = (int32_t *)carve((uint64_t)l.S * 4);
    int T = 0, n_out = 0, n_tiles = 0, max_ctx = 0, decode = 1;
    for (int i = 0; i < n; i++) {
        const engine_seq *s = &seqs[i];
        const int nb = (s->pos + s->n - 1) / CU_KV_BLOCK + 1;
        memcpy(bt + (size_t)i * l.max_blocks, s->blocks, (size_t)nb * 4);
        for (int k = 0; k < s->n; k += QT) {
            tiles[n_tiles].seq = i;
            tiles[n_tiles].t0 = T + k;
            tiles[n_tiles].n = s->n - k < QT ? s->n - k : QT;
            tiles[n_tiles].pos0 = s->pos + k;
            n_tiles++;
        }
        for (int t = 0; t < s->n; t++) {
            tok[T] = s->tokens[t];
            pos[T] = s->pos + t;
            seq[T] = i;
            T++;
        }
        g->entry_slot[i] = s->slot;
        g->entry_row[i] = -1;
        if (s->want & ENGINE_WANT_LOGITS) {
            g->entry_row[i] = n_out;
            rows[n_out++] = T - 1;
        } else {
            decode = 0;
        }
        if (s->n != 1) decode = 0;
        if (s->pos + s->n > max_ctx) max_ctx = s->pos + s->n;
    }
    // split long contexts over more CTAs when the grid would be small (the partials
    // buffer holds CU_ATT_SPLIT_MAX ways for split_tokens tokens, CU_ATT_SPLIT_WIDE for all)
    int split = 1;
    if (n_tiles * hp->n_head_kv < 2 * g->sms && max_ctx > 1024) {
        split = max_ctx / 512;
        const int cap = T <= l.split_tokens ? CU_ATT_SPLIT_MAX : CU_ATT_SPLIT_WIDE;
        if (split > cap) split = cap;
    }
    // graphs are replayed at any context length: their split is fixed by the batch size
    if (decode && g->use_graphs)
        split = n * hp->n_head_kv < 2 * g->sms && n <= l.split_tokens ? CU_ATT_SPLIT_MAX : CU_ATT_SPLIT_WIDE;
    // one token per sequence: the decode plan (groups sharing leading blocks read them once)
    g->dec_items = 0;
    if (l.dec && n_tiles == n && T == n) {
        const int ni = cuda_attn_dec_items_p(n, hp->n_head_kv, l.sms, g->fast_mm); // (<= l.dec_items)
        if (cuda_attn_dec_plan(tiles, n_tiles, bt, l.max_blocks, CU_KV_BLOCK, hp->n_head / hp->n_head_kv, ni, l.dec_nsl,
                               items, nslot) > 0)
            g->dec_items = ni;
    }
    G_TRY(cudaMemcpyAsync(g->d_meta, g->h_meta, l.meta_bytes, cudaMemcpyHostToDevice, g->st));
    g->n_tiles = n_tiles;
    g->n_out = n_out;
    g->n_split = split;
    g->dq_short = n == 1 && max_ctx <= cuda_dq_max_ctx(); // (dq.cu: SPARKD_DQ_CTX)
    if (decode && g->use_graphs) {
        // replay (or capture) the step for this batch size
        graph_entry *ge = NULL;
        for (int i = 0; i < g->n_graphs; i++)
            if (g->graphs[i].B == n && g->graphs[i].dq == g->dq_short && g->graphs[i].exec) ge = &g->graphs[i];
        if (!ge && g->n_graphs < CU_MAX_GRAPHS) {
            cudaGraph_t graph;
            G_TRY(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeRelaxed));
            rc = run_layers(g, T, n_out, e);
            cudaError_t ce = cudaStreamEndCapture(g->st, &graph);
            if (rc) return rc;
            if (ce != cudaSuccess) return cu_fail(g, e, ce, "cudaStreamEndCapture", __LINE__);
            cudaGraphExec_t exec;
            ce = cudaGraphInstantiate(&exec, graph, 0);
            cudaGraphDestroy(graph);
            if (ce != cudaSuccess) return cu_fail(g, e, ce, "cudaGraphInstantiate", __LINE__);
            ge = &g->graphs[g->n_graphs++];
            ge->B = n;
            ge->dq = g->dq_short;
            ge->exec = exec;
        }
        if (ge) {
            G_TRY(cudaGraphLaunch(ge->exec, g->st));
        } else {
            K_TRY(run_layers(g, T, n_out, e));
        }
    } else {
        // Prompt steps (T >= SPARKD_PP_PDL_T, default 65: the hfw3 / hf2 products) launch without
        // PDL: on an H200 the Qwen3-8B pp512 step ran 18,794 tok/s with PDL and 21,776 without
        // (round 9 run 1, SPARKD_NO_PDL=1; kernels/PERF.md "Round 9, lead"). SPARKD_PP_PDL_T=0:
        // PDL in every step, as round 8.
        const int pdl_t = cuda_env_int("SPARKD_PP_PDL_T", 65); // (read once, cached by cuda_env_int)
        const int off = pdl_t > 0 && T >= pdl_t ? cuda_pdl_suspend(1) : -1;
        rc = run_layers(g, T, n_out, e);
        if (off >= 0) cuda_pdl_suspend(off);
        K_TRY(rc);
    }
    // one step at a time: the host needs the results next (sampling, or the next
    // chunk's metadata in the same pinned buffer), and a fault surfaces here as ERR_IO
    if (g->tp) K_TRY(tp_wait(g->tp, g->st, e)); // with the peers' watchdog
    else G_TRY(cudaStreamSynchronize(g->st));
    g->n_last = n;
    return 0;
}

// ----------------------------------------------------------------------------- sampling

int check_slot(engine *g, int slot, err *e) {
    if (slot < 0 || slot >= g->opt.max_seqs) return err_set(e, ERR_INVALID, "slot %d out of range", slot);
    return 0;
}

int flush_accepts(engine *g, err *e) {
    if (!g->n_acc) return 0;
    const int n = g->n_acc;
    int32_t *h = (int32_t *)g->h_stage;
    memcpy(h, g->acc_slot, (size_t)n * 4);
    memcpy(h + n, g->acc_tok, (size_t)n * 4);
    G_TRY(cudaMemcpyAsync(g->d_acc, h, (size_t)n * 8, cudaMemcpyHostToDevice, g->st));
    K_TRY(cuda_counts_add(g->counts, g->lay.V, g->d_acc, g->d_acc + n, n, g->st, e));
    G_TRY(cudaStreamSynchronize(g->st)); // the staging buffer is reused right after
    g->n_acc = 0;
    return 0;
}

int cuda_slot_reset(engine *g, int slot, const int32_t *tokens, int n, err *e) {
    int rc = check_slot(g, slot, e);
    if (rc) return rc;
    if (g->fault) return err_set(e, ERR_IO, "the CUDA engine failed earlier and must be restarted");
    if ((rc = flush_accepts(g, e))) return rc;
    G_TRY(cudaMemsetAsync(g->counts + (size_t)slot * g->lay.V, 0, (size_t)g->lay.V * 4, g->st));
    for (int i = 0; i < n; i++) {
        if (g->n_acc == g->acc_cap && (rc = flush_accepts(g, e))) return rc;
        g->acc_slot[g->n_acc] = slot;
        g->acc_tok[g->n_acc++] = tokens[i];
    }
    return flush_accepts(g, e);
}

int cuda_slot_accept(engine *g, int slot, int32_t token, err *e) {
    int rc = check_slot(g, slot, e);
    if (rc) return rc;
    if (g->n_acc == g->acc_cap && (rc = flush_accepts(g, e))) return rc;
    g->acc_slot[g->n_acc] = slot;
    g->acc_tok[g->n_acc++] = token;
    return 0;
}

extern "C" int cuda_hd_greedy(const cuda_sample_row *rows, int n); // hd.cu (round 11): every row greedy, no top
extern "C" int cuda_sample_greedy(const cuda_sample_args *a, void *stream, err *e); // sample.cu: then one launch
int cuda_sample_ops(engine *g, const engine_sample_in *in, int n, engine_sample_out *out, err *e) {
    if (g->fault) return err_set(e, ERR_IO, "the CUDA engine failed earlier and must be restarted");
    const cuda_layout &l = g->lay;
    if (n < 1 || n > l.S) return err_set(e, ERR_INVALID, "sample: %d rows", n);
    int rc = flush_accepts(g, e);
    if (rc) return rc;
    const int words = (l.V + 31) / 32;
    // host staging: rows, masks, bias ids, bias values (each at a 256-byte boundary)
    uint8_t *h = g->h_stage;
    cuda_sample_row *rows = (cuda_sample_row *)h;
    uint32_t *masks = (uint32_t *)(h + a256((uint64_t)l.S * sizeof(cuda_sample_row)));
    int32_t *bid = (int32_t *)((uint8_t *)masks + a256((uint64_t)l.S * words * 4));
    float *bval = (float *)((uint8_t *)bid + a256((uint64_t)l.S * 256 * 4));
    int n_masks = 0, n_bias = 0;
    for (int i = 0; i < n; i++) {
        const engine_sample_in *s = &in[i];
        if (s->seq < 0 || s->seq >= g->n_last || g->entry_row[s->seq] < 0)
            return err_set(e, ERR_INVALID, "forward entry %d has no logits", s->seq);
        if (s->n_top < 0 || s->n_top > ENGINE_MAX_TOP)
            return err_set(e, ERR_INVALID, "n_top %d out of range [0, %d]", s->n_top, ENGINE_MAX_TOP);
        if (!(s->u >= 0.0f && s->u < 1.0f)) return err_set(e, ERR_INVALID, "uniform draw out of [0, 1)");
        if (s->n_bias < 0 || s->n_bias > 256 - 0 || n_bias + s->n_bias > l.S * 256)
            return err_set(e, ERR_INVALID, "%d logit_bias entries (at most 256 per row)", s->n_bias);
        cuda_sample_row &R = rows[i];
        memset(&R, 0, sizeof R);
        R.logits_row = g->entry_row[s->seq];
        R.slot = g->entry_slot[s->seq];
        R.temperature = s->sp->temperature;
        R.top_p = s->sp->top_p;
        R.min_p = s->sp->min_p;
        R.rep_pen = s->sp->repetition_penalty;
        R.freq_pen = s->sp->frequency_penalty;
        R.pres_pen = s->sp->presence_penalty;
        R.top_k = s->sp->top_k;
        R.u = s->u;
        R.mask_off = -1;
        if (s->mask) {
            R.mask_off = n_masks * words;
            memcpy(masks + (size_t)n_masks * words, s->mask, (size_t)words * 4);
            n_masks++;
        }
        R.bias_off = n_bias;
        R.n_bias = s->n_bias;
        if (s->n_bias) {
            memcpy(bid + n_bias, s->bias_ids, (size_t)s->n_bias * 4);
            memcpy(bval + n_bias, s->bias_vals, (size_t)s->n_bias * 4);
            n_bias += s->n_bias;
        }
        R.n_top = s->n_top;
    }
    G_TRY(cudaMemcpyAsync(g->d_rows, rows, (size_t)n * sizeof(cuda_sample_row), cudaMemcpyHostToDevice, g->st));
    if (n_masks) G_TRY(cudaMemcpyAsync(g->d_masks, masks, (size_t)n_masks * words * 4, cudaMemcpyHostToDevice, g->st));
    if (n_bias) {
        G_TRY(cudaMemcpyAsync(g->d_bias_ids, bid, (size_t)n_bias * 4, cudaMemcpyHostToDevice, g->st));
        G_TRY(cudaMemcpyAsync(g->d_bias_vals, bval, (size_t)n_bias * 4, cudaMemcpyHostToDevice, g->st));
    }
    cuda_sample_args a;
    memset(&a, 0, sizeof a);
    a.logits = g->logits; a.ld = l.V; a.n_vocab = l.V; a.rows = g->d_rows; a.n = n; a.counts = g->counts;
    a.masks = g->d_masks; a.bias_ids = g->d_bias_ids; a.bias_vals = g->d_bias_vals; a.work = g->smp_work;
    a.out = g->d_sout;
    K_TRY(cuda_hd_greedy(rows, n) ? cuda_sample_greedy(&a, g->st, e) : cuda_sample(&a, g->st, e)); // round 11 hd (hd.cu)
    cuda_sample_out *ho = (cuda_sample_out *)h; // the inputs are on the device by now (same stream)
    G_TRY(cudaMemcpyAsync(ho, g->d_sout, (size_t)n * sizeof(cuda_sample_out), cudaMemcpyDeviceToHost, g->st));
    G_TRY(cudaStreamSynchronize(g->st));
    for (int i = 0; i < n; i++) {
        static_assert(CUDA_SAMPLE_TOP == ENGINE_MAX_TOP, "top logprobs");
        out[i].token = ho[i].token;
        out[i].logprob = ho[i].logprob;
        out[i].n_top = in[i].n_top ? ho[i].n_top : 0;
        for (int k = 0; k < out[i].n_top; k++) {
            out[i].top_ids[k] = ho[i].top_ids[k];
            out[i].top_logprobs[k] = ho[i].top_logprobs[k];
        }
        if (!in[i].logprob && !in[i].n_top) out[i].logprob = 0.0f;
    }
    return 0;
}

const float *cuda_logits(engine *g, int seq, err *e) {
    if (seq < 0 || seq >= g->n_last || g->entry_row[seq] < 0) {
        err_set(e, ERR_INVALID, "forward entry %d has no logits", seq);
        return NULL;
    }
    const size_t V = (size_t)g->lay.V;
    if (cudaMemcpyAsync(g->h_logits, g->logits + (size_t)g->entry_row[seq] * V, V * 4, cudaMemcpyDeviceToHost, g->st) !=
            cudaSuccess ||
        cudaStreamSynchronize(g->st) != cudaSuccess) {
        cu_fail(g, e, cudaGetLastError(), "logits", __LINE__);
        return NULL;
    }
    return g->h_logits;
}

} // namespace

// Tensor parallel (tp.h): one rank's engine over its shard view.
extern "C" int cuda_engine_create_rank(engine **out, const model *view, const engine_opts *o, tp_ctx *tp, err *e) {
    engine_opts oo = *o;
    oo.parallel = NULL;
    return create_engine(out, view, &oo, tp, e);
}

// ----------------------------------------------------------------------------- bench

namespace {

__device__ __forceinline__ uint32_t fill_hash(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return (uint32_t)x;
}

// n elements of one KV pool (K or V of a layer) of kv_type: values uniform in [-1, 1)
// (f32/f16/bf16), random int8 / e4m3 codes with scale 1/127 / 1/448 (q8/fp8).
__global__ void fill_kv_kernel(void *base, float *scale, uint64_t n, uint64_t n_rows, int kv_type, uint64_t seed) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const uint32_t h = fill_hash(seed * 0x9e3779b97f4a7c15ull + i);
        const float u = (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
        switch (kv_type) {
        case CUDA_KV_F32: ((float *)base)[i] = u; break;
        case CUDA_KV_F16: ((__half *)base)[i] = __float2half_rn(u); break;
        case CUDA_KV_BF16: ((__nv_bfloat16 *)base)[i] = __float2bfloat16_rn(u); break;
        case CUDA_KV_Q8: ((int8_t *)base)[i] = (int8_t)(int)(u * 127.0f); break;
        default: ((uint8_t *)base)[i] = (uint8_t)((h & 0x7f) < 0x7f ? (h & 0xff) : 0x3e); break; // no NaN codes
        }
    }
    if (scale)
        for (uint64_t r = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; r < n_rows; r += stride)
            scale[r] = kv_type == CUDA_KV_Q8 ? 1.0f / 127.0f : 1.0f / 448.0f;
}

} // namespace

// Blocks [0, n_blocks) of the KV pool (< 0: all) filled with random values (benchmarks of decode at a long context
// without its prefill: the attention reads the same bytes whatever they hold).
extern "C" int cuda_bench_fill_kv(struct engine *g, int n_blocks, unsigned long long seed, err *e) {
    if (g->fault) return err_set(e, ERR_IO, "the CUDA engine failed earlier and must be restarted");
    const cuda_layout &l = g->lay;
    if (n_blocks < 0 || n_blocks > l.n_blocks) n_blocks = l.n_blocks;
    const uint64_t rows = (uint64_t)n_blocks * CU_KV_BLOCK * g->m->hp.n_head_kv;
    const uint64_t elems = rows * g->m->hp.head_dim;
    for (int kl = 0; kl < l.n_kv_layers; kl++) {
        const cuda_kv_layer kv = kv_layer(g, kl);
        fill_kv_kernel<<<2048, 256, 0, g->st>>>(kv.k, kv.k_scale, elems, rows, (int)g->opt.kv_type, seed * 2 * (kl + 1));
        G_TRY(cudaGetLastError());
        fill_kv_kernel<<<2048, 256, 0, g->st>>>(kv.v, kv.v_scale, elems, rows, (int)g->opt.kv_type,
                                                seed * 2 * (kl + 1) + 1);
        G_TRY(cudaGetLastError());
    }
    G_TRY(cudaStreamSynchronize(g->st));
    return 0;
}

extern "C" const engine_ops engine_cuda_ops = {
    "cuda",          cuda_plan,        cuda_create,     cuda_destroy, cuda_forward,
    cuda_slot_reset, cuda_slot_accept, cuda_sample_ops, cuda_logits,  cuda_usage,
};
