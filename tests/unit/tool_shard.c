/* tool_shard — what each rank's shard view of a model holds, for tests/tp/test_shard.py.
 *
 *   tool_shard MODEL SIZE [columns|experts]
 * prints, for every rank r of SIZE (MoE layers split as the third argument says,
 * columns by default):
 *   rank R hp n_head N n_head_kv N ffn_dim N n_vocab N vocab V0 VN
 *   rank R tensor NAME ne0 NE0 ne1 NE1 ne2 NE2 sha256 HEX
 *   rank R moe LAYER ffn_dim F down_b yes|no experts E0 N  (MoE layers: the experts the
 *                                                           view holds, [E0, E0 + N))
 * one tensor line for every tensor the view slices (the bytes shard_copy_rows packs for
 * all its rows), and for the tensors it keeps whole "rank R whole NAME" — or, when the
 * model cannot be split, "refused: MESSAGE" and exit status 3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "model.h"
#include "sha256.h"
#include "shard.h"

static void dump(int r, const shard *s, const model_tensor *src, const model_tensor *t) {
    if (!t) return;
    if (t == src) {
        printf("rank %d whole %s\n", r, t->name);
        return;
    }
    const int64_t rows = t->n_dims == 1 ? 1 : t->ne[1] * (t->n_dims > 2 ? t->ne[2] : 1);
    uint8_t *buf = malloc(t->row_bytes * (uint64_t)rows);
    if (!buf) exit(1);
    shard_copy_rows(s, t, 0, rows, buf);
    uint8_t d[32];
    char hx[65];
    sha256_of(buf, t->row_bytes * (uint64_t)rows, d);
    sha256_hex(d, hx);
    printf("rank %d tensor %s ne0 %lld ne1 %lld ne2 %lld sha256 %s\n", r, t->name, (long long)t->ne[0],
           (long long)(t->n_dims == 1 ? 1 : t->ne[1]), (long long)(t->n_dims > 2 ? t->ne[2] : 1), hx);
    free(buf);
}

int main(int argc, char **argv) {
    const int split = argc == 4 ? engine_moe_split_parse(argv[3]) : ENGINE_MOE_SPLIT_COLUMNS;
    if ((argc != 3 && argc != 4) || split < 0) {
        fprintf(stderr, "usage: tool_shard MODEL SIZE [columns|experts]\n");
        return 2;
    }
    err e = {0};
    model *m;
    if (model_load(&m, argv[1], NULL, &e)) {
        fprintf(stderr, "error: %s\n", e.msg);
        return 1;
    }
    const int size = atoi(argv[2]);
    if (shard_check(m, size, (engine_moe_split)split, &e)) {
        printf("refused: %s\n", e.msg);
        model_free(m);
        return 3;
    }
    for (int r = 0; r < size; r++) {
        shard *s;
        if (shard_open(&s, m, size, r, (engine_moe_split)split, &e)) {
            printf("refused: %s\n", e.msg);
            return 3;
        }
        const model *v = shard_model(s);
        int v0, vn;
        shard_vocab(m->hp.n_vocab, size, r, &v0, &vn);
        printf("rank %d hp n_head %d n_head_kv %d ffn_dim %d n_vocab %d vocab %d %d\n", r, v->hp.n_head, v->hp.n_head_kv,
               v->hp.ffn_dim, v->hp.n_vocab, v0, vn);
        dump(r, s, m->token_embd, v->token_embd);
        dump(r, s, m->output, v->output);
        for (int il = 0; il < m->hp.n_layer; il++) {
            const model_layer *L = &m->layers[il], *V = &v->layers[il];
            dump(r, s, L->attn.wq, V->attn.wq);
            dump(r, s, L->attn.wk, V->attn.wk);
            dump(r, s, L->attn.wv, V->attn.wv);
            dump(r, s, L->attn.wo, V->attn.wo);
            dump(r, s, L->attn.bq, V->attn.bq);
            dump(r, s, L->attn.bk, V->attn.bk);
            dump(r, s, L->attn.bv, V->attn.bv);
            dump(r, s, L->attn.bo, V->attn.bo);
            dump(r, s, L->attn.sinks, V->attn.sinks);
            dump(r, s, L->attn.q_norm, V->attn.q_norm);
            dump(r, s, L->attn.k_norm, V->attn.k_norm);
            dump(r, s, L->attn_norm, V->attn_norm);
            dump(r, s, L->ffn_norm, V->ffn_norm);
            dump(r, s, L->dense.w_gate, V->dense.w_gate);
            dump(r, s, L->dense.w_up, V->dense.w_up);
            dump(r, s, L->dense.w_down, V->dense.w_down);
            if (L->ffn == MODEL_FFN_MOE) {
                const model_moe *M = &L->moe, *VM = &V->moe;
                printf("rank %d moe %d ffn_dim %d down_b %s experts %d %d\n", r, il, VM->ffn_dim, VM->down_b ? "yes" : "no",
                       VM->expert0, VM->n_expert_local);
                dump(r, s, M->router, VM->router);
                dump(r, s, M->router_b, VM->router_b);
                dump(r, s, M->gate_exps, VM->gate_exps);
                dump(r, s, M->up_exps, VM->up_exps);
                dump(r, s, M->down_exps, VM->down_exps);
                dump(r, s, M->gate_b, VM->gate_b);
                dump(r, s, M->up_b, VM->up_b);
                dump(r, s, M->down_b, VM->down_b);
            }
        }
        shard_free(s);
    }
    model_free(m);
    return 0;
}
